/**
 * LineMerger: a k-way merge of streams of log lines, each already in time
 * order, into one stream in time order: how `baton logs SERVICE` puts the
 * lines of every task (an agent merging its tasks) and of every node (the
 * server merging its agents) in one order, as `kubectl logs` with
 * `--prefix` over a Deployment's pods cannot.
 *
 * Memory stays bounded: a source is read a chunk at a time, and only when
 * its buffered lines are used up. The key of a line is its time as fixed-
 * width text (RFC 3339 with 9 fraction digits), so keys compare as text.
 *
 * Finished sources (a read that ends) merge exactly. Followed sources never
 * end, and a quiet one would hold back every other; sources may also be
 * added while following (a task that starts, a node that joins). So a
 * followed merge goes by a watermark, `now - latenessMs`: a line older than
 * that has reached the merger from wherever it was written, and goes out in
 * order with every other such line; newer lines wait for it (each line is
 * shown up to latenessMs late, and no quiet source stalls the rest).
 */
import TinyQueue from 'tinyqueue';

export interface LineMergeOptions {
  /** The line's time as fixed-width text (lines of one source come in this order). */
  key: (line: string) => string;
  /** Sources that never end (following): the watermark lets lines out. */
  follow?: boolean;
  /** How long after a line's time it surely has arrived, when following (default 500 ms). */
  latenessMs?: number;
  now?: () => number;
  signal?: AbortSignal;
}

interface Cursor {
  it: AsyncIterator<string>;
  lines: string[];
  i: number;
  done: boolean;
  /** Added, not read yet: a followed merge gives it up to latenessMs to say what it holds (its older lines) before going on. */
  fresh?: number;
  reading?: Promise<void>;
}

/** lineTime: the time of a log line `<who> <time> <o|e> <text>`, as fixed-width text ('' when it has none). */
export function lineTime(line: string): string {
  const sp = line.indexOf(' ');
  return sp < 0 ? '' : line.slice(sp + 1, sp + 31);
}

/** keyAt: a time in ms as key text (9 fraction digits, UTC). */
export function keyAt(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

/** Lines held back before a chunk is handed on. */
const CHUNK_LINES = 256;

export class LineMerger {
  private readonly cursors: Cursor[] = [];
  private readonly latenessMs: number;
  private readonly now: () => number;
  /** Resolves the merge's wait when a source gets input, ends, or is added. */
  private wake?: () => void;
  /** Something happened since the merge last looked (so its next wait returns at once). */
  private notified = false;

  constructor(private readonly o: LineMergeOptions) {
    this.latenessMs = o.latenessMs ?? 500;
    this.now = o.now ?? Date.now;
  }

  /** add merges another source: chunks of whole lines (each ending in '\n'). */
  add(source: AsyncIterable<string>): void {
    this.cursors.push({ it: source[Symbol.asyncIterator](), lines: [], i: 0, done: false, fresh: this.now() });
    this.notify();
  }

  /** read fills an empty cursor with its next chunk (or marks it done). */
  private read(c: Cursor): Promise<void> {
    c.reading ??= (async () => {
      try {
        for (;;) {
          const r = await c.it.next();
          if (r.done) {
            c.done = true;
            return;
          }
          const lines = r.value.split('\n');
          lines.pop();
          if (lines.length) {
            c.lines = lines;
            c.i = 0;
            return;
          }
        }
      } catch {
        // A source that fails ends (its reader reports why in the stream).
        c.done = true;
      } finally {
        c.reading = undefined;
        c.fresh = undefined;
        this.notify();
      }
    })();
    return c.reading;
  }

  /** lines yields the merged lines, in chunks of whole lines, until every source ended (or, following, the signal aborts). */
  async *lines(): AsyncGenerator<string> {
    const { key, signal } = this.o;
    const head = (c: Cursor) => c.lines[c.i]!;
    let out: string[] = [];
    while (!signal?.aborted) {
      // Sources out of lines read on; unless following, the merge waits for every one of them.
      const empty = this.cursors.filter((c) => !c.done && c.i >= c.lines.length);
      for (const c of empty) void this.read(c);
      if (!this.o.follow && empty.length) {
        await Promise.all(empty.map((c) => c.reading));
        continue;
      }
      // A source just added may hold lines older than the watermark: its first chunk first (for a while).
      const fresh = this.o.follow ? this.cursors.filter((c) => c.fresh !== undefined && this.now() - c.fresh < this.latenessMs) : [];
      if (fresh.length) {
        await this.waitForInput(Math.max(10, Math.min(...fresh.map((c) => c.fresh! + this.latenessMs - this.now()))));
        continue;
      }
      const live = this.cursors.filter((c) => c.i < c.lines.length);
      if (live.length === 0) {
        if (this.cursors.every((c) => c.done) && !this.o.follow) break;
        if (out.length) {
          yield out.join('\n') + '\n';
          out = [];
        }
        await this.waitForInput(undefined);
        continue;
      }
      // Following, the watermark: no source, known or yet to come, can still send a line before it.
      const watermark = this.o.follow ? keyAt(this.now() - this.latenessMs) : undefined;
      const heap = new TinyQueue(live, (a, b) => (key(head(a)) < key(head(b)) ? -1 : key(head(a)) > key(head(b)) ? 1 : 0));
      let moved = false;
      while (heap.length) {
        const c = heap.peek()!;
        const line = head(c);
        const k = key(line);
        if (watermark !== undefined && k > watermark) break;
        heap.pop();
        out.push(line);
        c.i++;
        moved = true;
        if (c.i < c.lines.length) heap.push(c);
        // A source out of lines may hold an earlier line than the others' heads: read it first (unless following and it is quiet).
        else if (!c.done) break;
        if (out.length >= CHUNK_LINES) break;
      }
      if (out.length >= CHUNK_LINES || (!moved && out.length)) {
        yield out.join('\n') + '\n';
        out = [];
      }
      if (!moved) {
        // Held by the watermark: until input comes, or the earliest head is old enough to go.
        const earliest = Math.min(...live.map((c) => Date.parse(key(head(c)))));
        await this.waitForInput(Number.isFinite(earliest) ? Math.max(10, earliest + this.latenessMs - this.now()) : 100);
      }
    }
    if (out.length) yield out.join('\n') + '\n';
  }

  private notify(): void {
    this.notified = true;
    this.wake?.();
  }

  /** waitForInput waits until a source gets input, ends or is added (or did since the last wait), or ms pass, or the signal aborts. */
  private waitForInput(ms: number | undefined): Promise<void> {
    if (this.notified) {
      this.notified = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        if (timer) clearTimeout(timer);
        this.o.signal?.removeEventListener('abort', done);
        this.wake = undefined;
        this.notified = false;
        resolve();
      };
      const timer = ms !== undefined ? setTimeout(done, ms) : undefined;
      this.wake = done;
      this.o.signal?.addEventListener('abort', done, { once: true });
    });
  }
}
