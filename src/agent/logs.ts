/**
 * LogStore keeps every task's output on its node, past the life of its
 * container: Swarm and Nomad read logs from the engine, so a removed
 * container (an old task, a rescheduled one) takes its logs with it. The
 * agent copies each container's output as it is written (`LogCollector`,
 * following the engine's log stream from the last line it has), into
 * append-only segment files under `<data-dir>/logs/<task>/`, one record per
 * line: `<RFC 3339 time with nanoseconds> <o|e> <text>`. Retention is per
 * node, by age (24 h) and size (100 MiB), oldest segment first, as
 * journald's and Docker's local driver rotate.
 *
 * Readers (the agent's listener, for the server's `logs` calls) pull from
 * the files at their own pace: a follower reads to the end, then waits for
 * the next append, so a slow reader never holds up collection or memory.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Driver, TaskHandle } from './driver.js';

export interface LogStoreOptions {
  dir: string;
  /** Total bytes kept on this node (default 100 MiB). */
  maxBytes?: number;
  /** Lines older than this are removed, a segment at a time (default 24 h). */
  maxAgeMs?: number;
  /** A task's file is rotated at this size (default 8 MiB, or maxBytes / 8 when smaller). */
  segmentBytes?: number;
  now?: () => number;
}

interface Segment {
  seq: number;
  size: number;
  /** When it was last written (ms). */
  mtime: number;
}

class TaskLog {
  segments: Segment[] = [];
  /** Descriptor of the last segment, while it is being written. */
  fd?: number;
  /** Time of the last record, RFC 3339 with 9 fraction digits (sorts as text). */
  lastTime = '';
  /** Readers waiting for the next append. */
  waiters = new Set<() => void>();
  constructor(
    readonly task: string,
    readonly service: string,
    readonly dir: string,
  ) {}

  path(seq: number): string {
    return join(this.dir, `${String(seq).padStart(8, '0')}.log`);
  }

  size(): number {
    let n = 0;
    for (const s of this.segments) n += s.size;
    return n;
  }

  wake(): void {
    const w = [...this.waiters];
    this.waiters.clear();
    for (const f of w) f();
  }
}

export interface ReadOptions {
  /** Last N lines (per task). */
  tail?: number;
  /** Only records at or after this time (RFC 3339, any precision). */
  since?: string;
  grep?: RegExp;
  follow?: boolean;
  signal?: AbortSignal;
}

/** A task name as a file name: task names are object names (a-z, 0-9, '.', '-', '_'), anything else is refused. */
// `~` joins a task's name and one of its other containers' (agent/pod.ts).
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,252}$/;

/** nanoTime normalises an RFC 3339 UTC time to 9 fraction digits, so times compare as text. */
export function nanoTime(t: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(t);
  if (m) return `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}Z`;
  const ms = Date.parse(t);
  if (Number.isNaN(ms)) throw new Error(`not a time: ${t}`);
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

export class LogStore {
  private readonly tasks = new Map<string, TaskLog>();
  private readonly maxBytes: number;
  private readonly maxAgeMs: number;
  private readonly segmentBytes: number;
  private readonly now: () => number;
  private total = 0;
  private readonly newTaskListeners = new Set<(task: string, service: string) => void>();

  constructor(private readonly opts: LogStoreOptions) {
    this.maxBytes = opts.maxBytes ?? 100 * 1024 * 1024;
    this.maxAgeMs = opts.maxAgeMs ?? 24 * 3600_000;
    this.segmentBytes = opts.segmentBytes ?? Math.max(64 * 1024, Math.min(8 * 1024 * 1024, Math.floor(this.maxBytes / 8)));
    this.now = opts.now ?? Date.now;
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    this.load();
  }

  /** load indexes the segments left by a previous run. */
  private load(): void {
    for (const task of readdirSync(this.opts.dir)) {
      if (!SAFE_NAME.test(task)) continue;
      const dir = join(this.opts.dir, task);
      let service = '';
      try {
        service = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')).service ?? '';
      } catch {
        continue;
      }
      const log = new TaskLog(task, service, dir);
      for (const f of readdirSync(dir)) {
        const m = /^(\d{8})\.log$/.exec(f);
        if (!m) continue;
        const st = statSync(join(dir, f));
        log.segments.push({ seq: Number(m[1]), size: st.size, mtime: st.mtimeMs });
      }
      log.segments.sort((a, b) => a.seq - b.seq);
      const last = log.segments.at(-1);
      if (last && last.size > 0) log.lastTime = lastRecordTime(log.path(last.seq), last.size);
      this.total += log.size();
      this.tasks.set(task, log);
    }
  }

  /** lastTime is the time of the last record kept for the task ('' when none): collection resumes after it. */
  lastTime(task: string): string {
    return this.tasks.get(task)?.lastTime ?? '';
  }

  list(filter: { service?: string; task?: string } = {}): { task: string; service: string; bytes: number }[] {
    const out: { task: string; service: string; bytes: number }[] = [];
    for (const l of this.tasks.values()) {
      if (filter.task !== undefined && l.task !== filter.task) continue;
      if (filter.service !== undefined && l.service !== filter.service) continue;
      out.push({ task: l.task, service: l.service, bytes: l.size() });
    }
    return out.sort((a, b) => a.task.localeCompare(b.task));
  }

  totalBytes(): number {
    return this.total;
  }

  onNewTask(fn: (task: string, service: string) => void): () => void {
    this.newTaskListeners.add(fn);
    return () => this.newTaskListeners.delete(fn);
  }

  private ensure(task: string, service: string): TaskLog {
    let log = this.tasks.get(task);
    if (log) return log;
    if (!SAFE_NAME.test(task)) throw new Error(`unsafe task name for a log directory: ${JSON.stringify(task)}`);
    const dir = join(this.opts.dir, task);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'meta.json'), JSON.stringify({ task, service }) + '\n');
    log = new TaskLog(task, service, dir);
    this.tasks.set(task, log);
    for (const fn of this.newTaskListeners) fn(task, service);
    return log;
  }

  /**
   * append writes whole records (each ending in a newline) for a task, the
   * last of them at `lastTime`. Synchronous: a reader that saw the new size
   * finds the bytes in the file.
   */
  append(task: string, service: string, records: string, lastTime: string): void {
    if (!records) return;
    const log = this.ensure(task, service);
    let seg = log.segments.at(-1);
    if (!seg || seg.size >= this.segmentBytes || log.fd === undefined) {
      if (log.fd !== undefined) closeSync(log.fd);
      if (!seg || seg.size >= this.segmentBytes) {
        seg = { seq: (seg?.seq ?? 0) + 1, size: 0, mtime: this.now() };
        log.segments.push(seg);
      }
      log.fd = openSync(log.path(seg.seq), 'a', 0o600);
    }
    const buf = Buffer.from(records, 'utf8');
    writeSync(log.fd, buf);
    seg.size += buf.length;
    seg.mtime = this.now();
    this.total += buf.length;
    log.lastTime = lastTime;
    log.wake();
    if (this.total > this.maxBytes) this.prune();
  }

  /** closeTask closes the task's open file (its container is gone); its records stay until retention removes them. */
  closeTask(task: string): void {
    const log = this.tasks.get(task);
    if (log?.fd !== undefined) {
      closeSync(log.fd);
      log.fd = undefined;
    }
  }

  /**
   * prune removes segments older than maxAge, then the oldest segments until
   * the node is under maxBytes (a reader already in a removed file finishes
   * it: the file lives on while open). Returns the bytes removed.
   */
  prune(): number {
    const cutoff = this.now() - this.maxAgeMs;
    const all: { log: TaskLog; seg: Segment }[] = [];
    for (const log of this.tasks.values()) for (const seg of log.segments) all.push({ log, seg });
    all.sort((a, b) => a.seg.mtime - b.seg.mtime);
    let removed = 0;
    for (const { log, seg } of all) {
      if (seg.mtime >= cutoff && this.total <= this.maxBytes) break;
      // Never the segment being written while it is the only thing over the limit's worth: it would only be rewritten.
      if (seg === log.segments.at(-1) && log.fd !== undefined && seg.mtime >= cutoff) continue;
      if (seg === log.segments.at(-1) && log.fd !== undefined) {
        closeSync(log.fd);
        log.fd = undefined;
      }
      rmSync(log.path(seg.seq), { force: true });
      log.segments = log.segments.filter((s) => s !== seg);
      this.total -= seg.size;
      removed += seg.size;
      if (log.segments.length === 0 && log.fd === undefined) {
        rmSync(log.dir, { recursive: true, force: true });
        this.tasks.delete(log.task);
        log.wake();
      }
    }
    return removed;
  }

  /**
   * read yields the task's records in order (as text chunks of whole lines,
   * each line `<time> <o|e> <text>\n`), filtered; with follow it then waits
   * for appends until the signal aborts.
   */
  async *read(task: string, o: ReadOptions = {}): AsyncGenerator<string> {
    const log = this.tasks.get(task);
    if (!log) return;
    const since = o.since ? nanoTime(o.since) : undefined;
    let seq = log.segments[0]?.seq ?? 1;
    let off = 0;
    if (o.tail !== undefined) ({ seq, off } = await this.tailStart(log, Math.max(0, o.tail)));
    const filter = since !== undefined || o.grep !== undefined;
    let carry = '';
    const buf = Buffer.allocUnsafe(256 * 1024);
    while (!o.signal?.aborted) {
      const seg = log.segments.find((s) => s.seq >= seq);
      if (seg && seg.seq !== seq) {
        seq = seg.seq;
        off = 0;
      }
      if (seg && off < seg.size) {
        const fh = await open(log.path(seg.seq), 'r').catch(() => undefined);
        if (!fh) {
          seq++;
          off = 0;
          continue;
        }
        try {
          while (off < seg.size && !o.signal?.aborted) {
            const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, seg.size - off), off);
            if (bytesRead <= 0) break;
            off += bytesRead;
            let text = carry + buf.toString('utf8', 0, bytesRead);
            const end = text.lastIndexOf('\n');
            carry = text.slice(end + 1);
            text = text.slice(0, end + 1);
            if (filter) text = filterRecords(text, since, o.grep);
            if (text) yield text;
          }
        } finally {
          await fh.close();
        }
        continue;
      }
      if (log.segments.some((s) => s.seq > seq)) {
        seq++;
        off = 0;
        continue;
      }
      if (!o.follow || !this.tasks.has(task)) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          log.waiters.delete(done);
          o.signal?.removeEventListener('abort', done);
          resolve();
        };
        log.waiters.add(done);
        o.signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** tailStart finds where the last n records of a task begin. */
  private async tailStart(log: TaskLog, n: number): Promise<{ seq: number; off: number }> {
    let need = n;
    for (let i = log.segments.length - 1; i >= 0; i--) {
      const seg = log.segments[i]!;
      if (seg.size === 0) continue;
      let data: Buffer;
      try {
        const fh = await open(log.path(seg.seq), 'r');
        try {
          data = Buffer.allocUnsafe(seg.size);
          await fh.read(data, 0, seg.size, 0);
        } finally {
          await fh.close();
        }
      } catch {
        return { seq: seg.seq + 1, off: 0 };
      }
      // Records end in '\n': the (need+1)-th newline from the end closes the record before the tail.
      let pos = seg.size - 1;
      while (need > 0) {
        const nl = data.lastIndexOf(10, pos - 1);
        need--;
        if (nl < 0) {
          pos = -1;
          break;
        }
        pos = nl;
      }
      if (need === 0 && pos >= 0) return { seq: seg.seq, off: pos + 1 };
      if (n === 0) return { seq: seg.seq, off: seg.size };
    }
    return { seq: log.segments[0]?.seq ?? 1, off: 0 };
  }

  close(): void {
    for (const log of this.tasks.values()) {
      if (log.fd !== undefined) closeSync(log.fd);
      log.fd = undefined;
      log.wake();
    }
  }
}

/** filterRecords keeps the records (whole lines) at or after `since` whose text matches `grep`. */
function filterRecords(text: string, since: string | undefined, grep: RegExp | undefined): string {
  let out = '';
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length - 1;
    const line = text.slice(start, end + 1);
    start = end + 1;
    if (since !== undefined && line.slice(0, 30) < since) continue;
    if (grep) {
      grep.lastIndex = 0;
      if (!grep.test(line.slice(33, -1))) continue;
    }
    out += line;
  }
  return out;
}

/** lastRecordTime reads the time of a file's last record. */
function lastRecordTime(path: string, size: number): string {
  const fd = openSync(path, 'r');
  try {
    const n = Math.min(size, 64 * 1024);
    const buf = Buffer.allocUnsafe(n);
    readSync(fd, buf, 0, n, size - n);
    const text = buf.toString('utf8').replace(/\n+$/, '');
    const line = text.slice(text.lastIndexOf('\n') + 1);
    return /^\S+/.exec(line)?.[0] ?? '';
  } finally {
    closeSync(fd);
  }
}

/**
 * LogCollector copies each task's container output into the LogStore: one
 * engine log stream per container run, from just after the last record
 * kept (so an agent restart or a container restart loses and repeats
 * nothing), until the container stops.
 */
export class LogCollector {
  private readonly active = new Map<string, { run: string; abort: AbortController; done: Promise<void> }>();
  /** Runs (container id @ start time) read to their end. */
  private readonly finished = new Map<string, string>();
  private closed = false;

  constructor(
    private readonly store: LogStore,
    private readonly driver: Driver,
    private readonly log: Logger,
  ) {}

  /**
   * collect makes sure the task's current container run is being copied.
   * `run` names the run (container id and start time): a run read to its
   * end is not read again.
   */
  collect(task: string, service: string, handle: TaskHandle, run: string): void {
    if (this.closed || !this.driver.followLogs) return;
    const cur = this.active.get(task);
    if (cur && cur.run === run) return;
    if (this.finished.get(task) === run) return;
    cur?.abort.abort();
    const abort = new AbortController();
    const done = this.driver
      .followLogs(handle, this.store.lastTime(task), (records, last) => this.store.append(task, service, records, last), abort.signal)
      .then(
        () => {
          if (!abort.signal.aborted) this.finished.set(task, run);
        },
        (err) => {
          if (!abort.signal.aborted) this.log.debug({ task, err: String(err) }, 'log stream broke; it resumes at the next check');
        },
      )
      .finally(() => {
        if (this.active.get(task)?.abort === abort) this.active.delete(task);
      });
    this.active.set(task, { run, abort, done });
  }

  /** drain waits (at most timeoutMs) for the task's stream to reach the end of its stopped container, before the container is removed. */
  async drain(task: string, timeoutMs = 2000): Promise<void> {
    const cur = this.active.get(task);
    if (cur) await Promise.race([cur.done, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    this.forget(task);
  }

  /** forget stops following the task (its container is gone). */
  forget(task: string): void {
    this.active.get(task)?.abort.abort();
    this.active.delete(task);
    this.finished.delete(task);
    this.store.closeTask(task);
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.active.values()];
    for (const a of all) a.abort.abort();
    await Promise.allSettled(all.map((a) => a.done));
    this.active.clear();
  }
}
