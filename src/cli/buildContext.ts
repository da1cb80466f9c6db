/**
 * Packing a build context (Compose `build:`) the way `docker build` sends
 * one, so the same files always give the same digest:
 *
 * - every file, directory and symbolic link under the context directory,
 *   less what `.dockerignore` excludes (Docker's own matching rules, through
 *   @balena/dockerignore); the Dockerfile and .dockerignore are always sent,
 *   as the docker CLI does;
 * - in byte order of their paths, with owner 0:0, a zero modification time
 *   and only the permission bits kept: the archive depends on contents,
 *   names and modes alone;
 * - a Dockerfile outside the context, or `dockerfile_inline`, goes in as
 *   `.baton.Dockerfile`;
 * - at most MAX_BUILD_CONTEXT_BYTES of file contents; a larger context is
 *   refused, naming its key and line, before anything is sent.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import * as dockerignore from '@balena/dockerignore';
import { pack, type Header } from 'tar-stream';
import { BatonError, type ErrorDetail } from '../base/errors.js';
import { MAX_BUILD_CONTEXT_BYTES } from '../api/build.js';
import type { LocalBuild } from '../manifest/compose/index.js';

export interface PackedContext {
  /** "sha256:<hex>" of the archive. */
  digest: string;
  data: Buffer;
  /** The Dockerfile's path inside the archive. */
  dockerfile: string;
  /** How many files it holds. */
  files: number;
}

/** Where a Dockerfile from outside the context, or an inline one, goes in the archive. */
export const OUTSIDE_DOCKERFILE = '.baton.Dockerfile';

interface Entry {
  name: string;
  stat: Stats;
  abs: string;
}

function refuse(b: LocalBuild, key: string, message: string): never {
  const detail: ErrorDetail = { path: key ? `${b.keyPath}.${key}` : b.keyPath, message, ...(b.line !== undefined ? { line: b.line } : {}) };
  throw new BatonError('BATON_ERR_MANIFEST', `${detail.path}: ${message}; nothing was applied`, [detail]);
}

/** packContext packs a build's context; every problem is a BATON_ERR_MANIFEST naming the build's key path and line. */
export async function packContext(b: LocalBuild, maxBytes = MAX_BUILD_CONTEXT_BYTES): Promise<PackedContext> {
  let st: Stats;
  try {
    st = statSync(b.contextDir);
  } catch {
    refuse(b, 'context', `the build context ${b.contextDir} does not exist`);
  }
  if (!st.isDirectory()) refuse(b, 'context', `the build context ${b.contextDir} is not a directory`);

  let patterns: string[] = [];
  try {
    patterns = readFileSync(join(b.contextDir, '.dockerignore'), 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  } catch {
    /* none */
  }
  // A CommonJS module whose `module.exports` is the function: it arrives as the namespace's default.
  const ig = (dockerignore as unknown as { default: () => { add(p: string[]): { ignores(path: string): boolean } } }).default().add(patterns);
  const negations = patterns.some((p) => p.startsWith('!'));

  // The Dockerfile: inside the context (sent even when ignored), or added under a name of our own.
  let dockerfile = OUTSIDE_DOCKERFILE;
  let extra: Buffer | undefined;
  if ('inline' in b.dockerfile) extra = Buffer.from(b.dockerfile.inline);
  else {
    const abs = resolve(b.contextDir, b.dockerfile.path);
    const rel = relative(b.contextDir, abs);
    let text: Buffer;
    try {
      text = readFileSync(abs);
    } catch {
      refuse(b, 'dockerfile', `the Dockerfile ${abs} does not exist`);
    }
    if (rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)) dockerfile = rel.split(sep).join('/');
    else extra = text;
  }
  const always = new Set([dockerfile, '.dockerignore']);

  const entries: Entry[] = [];
  let bytes = extra?.length ?? 0;
  const walk = (dir: string, prefix: string) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      refuse(b, 'context', `cannot read ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    for (const n of names) {
      const name = prefix + n;
      const abs = join(dir, n);
      const stat = lstatSync(abs);
      // A file of that name would be replaced by the Dockerfile from elsewhere.
      const ignored = (ig.ignores(name) && !always.has(name)) || (extra !== undefined && name === OUTSIDE_DOCKERFILE);
      if (stat.isDirectory()) {
        // An excluded directory is skipped whole, unless a "!" pattern may take back something inside it.
        if (ignored && !negations) continue;
        if (!ignored) entries.push({ name, stat, abs });
        walk(abs, name + '/');
        continue;
      }
      if (ignored || !(stat.isFile() || stat.isSymbolicLink())) continue;
      if (stat.isFile()) {
        bytes += stat.size;
        if (bytes > maxBytes) refuse(b, 'context', `the build context is over ${Math.round(maxBytes / 1048576)} MiB (the limit) once .dockerignore has excluded what it names; exclude what the build does not need`);
      }
      entries.push({ name, stat, abs });
    }
  };
  walk(b.contextDir, '');
  entries.sort((x, y) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)));

  const tar = pack();
  const chunks: Buffer[] = [];
  tar.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const ended = new Promise<void>((res, rej) => {
    tar.on('end', () => res());
    tar.on('error', rej);
  });
  const header = (name: string, stat: Stats | undefined, h: Partial<Header>): Header => ({ name, mode: stat ? stat.mode & 0o7777 : 0o644, mtime: new Date(0), uid: 0, gid: 0, uname: '', gname: '', ...h }) as Header;
  let files = 0;
  for (const e of entries) {
    if (e.stat.isDirectory()) tar.entry(header(e.name, e.stat, { type: 'directory' }));
    else if (e.stat.isSymbolicLink()) tar.entry(header(e.name, e.stat, { type: 'symlink', linkname: readlinkSync(e.abs) }));
    else {
      const body = readFileSync(e.abs);
      tar.entry(header(e.name, e.stat, { type: 'file', size: body.length }), body);
      files++;
    }
  }
  if (extra) {
    tar.entry(header(OUTSIDE_DOCKERFILE, undefined, { type: 'file', size: extra.length }), extra);
    files++;
  }
  tar.finalize();
  await ended;
  const data = Buffer.concat(chunks);
  return { digest: `sha256:${createHash('sha256').update(data).digest('hex')}`, data, dockerfile, files };
}
