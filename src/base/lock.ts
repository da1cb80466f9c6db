/**
 * lockDir gives one process exclusive use of a data directory. Two servers (or
 * agents) on one directory would corrupt each other's view of the world, so
 * the second exits with a clear error. A lock left by a dead process is taken
 * over.
 */
import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { BatonError } from './errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** lockDir returns a release function; it throws BatonError when another live process holds the directory. */
export function lockDir(dir: string, what: string): () => void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'LOCK');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n${what}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(file, 'utf8').split('\n')[0] === String(process.pid)) rmSync(file, { force: true });
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder = NaN;
      let holderWhat = '';
      try {
        const [p, w] = readFileSync(file, 'utf8').split('\n');
        holder = Number(p);
        holderWhat = w ?? '';
      } catch {
        continue;
      }
      if (Number.isInteger(holder) && holder !== process.pid && alive(holder)) {
        throw new BatonError('BATON_ERR_CONFLICT', `data directory ${dir} is in use by process ${holder} (${holderWhat || 'baton'}); stop it first or pass another --data-dir`);
      }
      rmSync(file, { force: true });
    }
  }
  throw new BatonError('BATON_ERR_CONFLICT', `could not lock data directory ${dir}`);
}
