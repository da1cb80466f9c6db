/**
 * Checkpointer runs SQLite's WAL checkpoints on a worker thread, off the
 * server's event loop.
 *
 * Why: in WAL mode every commit appends to the -wal file, and by default the
 * committing connection copies the WAL back into the database (and, with
 * synchronous=NORMAL, fsyncs both) whenever it passes 1,000 pages, inside
 * that commit. Under a burst of writes that is about half of all commit time,
 * spent on the one thread that also serves the API. A second connection may
 * checkpoint while the first writes (PASSIVE mode never blocks it), so the
 * worker does it every `intervalMs`, as litestream and many SQLite-backed
 * servers do. The writer keeps its own auto-checkpoint at a high mark
 * (FALLBACK_PAGES), so the WAL stays bounded if the worker falls behind or
 * dies, and falls back to SQLite's default if the worker cannot run.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';

/** The writer checkpoints by itself past this many WAL pages (64 MiB of 4 KiB pages). */
export const FALLBACK_PAGES = 16_384;
/** SQLite's default auto-checkpoint, restored when the worker is gone. */
const DEFAULT_PAGES = 1000;
/** After a checkpoint resets the WAL, its file is truncated to this size. */
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;

/**
 * The worker's code: CommonJS evaluated in a worker (no file to find beside
 * compiled or test-transformed sources). It opens its own connection, runs a
 * PASSIVE checkpoint every interval, and on "stop" closes and exits.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (e) {
    parentPort.postMessage({ error: String((e && e.message) || e) });
  }
}, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export class Checkpointer {
  private worker: Worker | undefined;
  private readonly exited: Promise<void>;
  /** The last error the worker reported (it keeps trying), for diagnostics. */
  lastError: string | undefined;

  constructor(
    private readonly db: Database.Database,
    path: string,
    intervalMs = 100,
  ) {
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
    db.pragma(`wal_autocheckpoint = ${FALLBACK_PAGES}`);
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module: createRequire(import.meta.url).resolve('better-sqlite3'), path, intervalMs },
      // A checkpointer needs little: keep its heap small.
      resourceLimits: { maxOldGenerationSizeMb: 32 },
    });
    this.worker = worker;
    worker.unref();
    worker.on('message', (m: { error?: string }) => (this.lastError = m.error));
    this.exited = new Promise<void>((resolve) => {
      worker.once('exit', () => {
        this.worker = undefined;
        // Gone before stop() (it could not open the file, or crashed): the writer checkpoints by itself again.
        if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${DEFAULT_PAGES}`);
        resolve();
      });
    });
    worker.on('error', (e) => (this.lastError = String(e)));
  }

  /** running: the worker is up (false once it stopped or failed). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /** stop closes the worker's connection and waits for it to exit (a stuck one is terminated after 5 s). */
  async stop(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    w.postMessage('stop');
    const t = setTimeout(() => void w.terminate(), 5000);
    await this.exited;
    clearTimeout(t);
  }
}
