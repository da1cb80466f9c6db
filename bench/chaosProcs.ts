/**
 * bench:chaos — the processes the bench starts, kills and starts again:
 * OwnChild (a child process handled by its PID, SIGKILL as a crash would),
 * BatonProc (a `baton server` or `baton agent` restarted with the same
 * command line, its log in a file), the teardown flag that stops anything
 * from being started once the cleanup began, and the small file and port
 * helpers they use.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { BATON_BIN, sleep, stopChild } from './lib.js';

/** Set once the teardown began (the end, or Ctrl-C): nothing is started any more, so nothing outlives it. */
let closing = false;

/** beginTeardown: from now on nothing is started (and nothing stopped with SIGSTOP). */
export function beginTeardown(): void {
  closing = true;
}

export const refuseWhenClosing = (what: string) => {
  if (closing) throw new Error(`interrupted: not starting ${what} during the teardown`);
};

/**
 * OwnChild is a child process the bench started (the private dockerd, a
 * Baton process): killed only by its PID, and told apart from a crash by
 * expectExit.
 */
export abstract class OwnChild {
  child?: ChildProcess;
  protected exited?: Promise<void>;
  /** Set while the bench itself killed or stopped it (an exit then is no violation). */
  expectExit = false;

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** track makes a child just spawned the one this stands for. */
  protected track(child: ChildProcess): void {
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', () => r()));
    this.expectExit = false;
  }

  /** kill9 kills it with SIGKILL, as a crash would, and waits for its exit. */
  async kill9(): Promise<void> {
    if (!this.running) return;
    this.expectExit = true;
    this.child!.kill('SIGKILL');
    await this.exited;
  }
}

/**
 * BatonProc is a `baton server` or `baton agent` the bench runs and
 * restarts with the same command line; its stderr (the log) is appended to
 * a file, its stdout read for the server's ready lines.
 */
export class BatonProc extends OwnChild {
  stopped = false;
  /** Byte offset of the log file at the last start. */
  private logStart = 0;
  private stdout = '';

  constructor(
    readonly what: string,
    readonly args: string[],
    readonly logFile: string,
    private readonly env: Record<string, string>,
  ) {
    super();
  }

  /** start spawns it; with ready, waits (up to timeoutMs) until stdout matched every pattern and returns the first groups. */
  async start(ready: RegExp[] = [], timeoutMs = 60_000): Promise<string[]> {
    refuseWhenClosing(this.what);
    this.logStart = fileSize(this.logFile);
    const err = openSync(this.logFile, 'a');
    const child = spawn(process.execPath, [BATON_BIN, ...this.args], { cwd: fileURLToPath(new URL('../..', import.meta.url)), env: { ...process.env, ...this.env }, stdio: ['ignore', 'pipe', err] });
    closeSync(err);
    this.track(child);
    this.stopped = false;
    this.stdout = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => (this.stdout = (this.stdout + s).slice(-16_000)));
    if (!ready.length) return [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ms = ready.map((r) => r.exec(this.stdout));
      if (ms.every(Boolean)) return ms.map((m) => m![1] ?? '');
      if (!this.running) throw new Error(`${this.what} exited (${child.exitCode ?? child.signalCode}) before it was up:\n${this.stdout}\n${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`${this.what} was not up within ${timeoutMs / 1000} s:\n${this.stdout}\n${this.logTail()}`);
      await sleep(50);
    }
  }

  /** logged: whether the log has a line matching re since the last start. */
  logged(re: RegExp): boolean {
    return re.test(readFrom(this.logFile, this.logStart));
  }

  signal(sig: 'SIGSTOP' | 'SIGCONT'): void {
    if (!this.running || (closing && sig === 'SIGSTOP')) return;
    this.child!.kill(sig);
    this.stopped = sig === 'SIGSTOP';
  }

  /** stop: SIGCONT if stopped, SIGTERM, SIGKILL after graceMs; by its PID. */
  async stop(graceMs = 15_000): Promise<void> {
    if (!this.running) return;
    this.expectExit = true;
    if (this.stopped) this.signal('SIGCONT');
    await stopChild(this.child!, this.what, graceMs);
  }

  logTail(n = 30): string {
    return readFrom(this.logFile, Math.max(0, fileSize(this.logFile) - 64_000)).split('\n').slice(-n).join('\n');
  }
}

function fileSize(f: string): number {
  try {
    return statSync(f).size;
  } catch {
    return 0;
  }
}

function readFrom(f: string, offset: number): string {
  let fd: number;
  try {
    fd = openSync(f, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    if (size <= offset) return '';
    const buf = Buffer.alloc(size - offset);
    readSync(fd, buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** freePort: a port free on 127.0.0.1 now (the server keeps it across restarts: the agents remember its URL). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
