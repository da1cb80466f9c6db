/**
 * WorkQueue is the Kubernetes controller work queue: keys, not events.
 *
 * - A key added many times before a worker takes it is processed once
 *   (level-triggered: the reconciler re-reads current state anyway).
 * - A key is never handed to two workers at once; a key added while being
 *   processed is processed again afterwards.
 * - A failed key is retried after a per-key exponential backoff; success
 *   forgets its failures.
 * - `addAfter` schedules a key on the injected clock (for "check again when
 *   this deadline passes" without polling).
 * - Keys whose handlers finish at once run one after another only while the
 *   event loop's turn is short (TURN_BUDGET_MS); then the rest waits for
 *   the next turn.
 */
import { KeyedBackoff, type BackoffOptions } from './backoff.js';
import { systemClock, type Clock } from './clock.js';
import { turnBusyMs } from './yield.js';

/**
 * A queue starts no further key in a turn of the event loop that has run
 * this long already (base/yield.ts turnBusyMs): the next key waits for the
 * next turn, so a burst of keys (a large deploy makes every service's
 * reconcile due at once) does not hold every request and heartbeat until it
 * is done. One key's own work is not cut.
 */
export const TURN_BUDGET_MS = 20;

export interface WorkQueueOptions {
  name: string;
  workers?: number;
  backoff?: BackoffOptions;
  clock?: Clock;
  onError?: (key: string, err: unknown) => void;
  /** Called after each run of the handler with its duration (metrics). */
  onProcessed?: (key: string, ms: number, failed: boolean) => void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly delayed = new Map<string, { at: number; cancel: () => void }>();
  private readonly backoff: KeyedBackoff;
  private readonly clock: Clock;
  private active = 0;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  /** A pump waits for the next turn of the event loop (TURN_BUDGET_MS). */
  private pumpDeferred = false;

  constructor(
    private readonly handler: (key: string) => Promise<void>,
    private readonly opts: WorkQueueOptions,
  ) {
    this.backoff = new KeyedBackoff(opts.backoff ?? { initialMs: 50, maxMs: 30_000 });
    this.clock = opts.clock ?? systemClock;
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** addAfter adds key once ms have passed; an earlier pending schedule wins. */
  addAfter(key: string, ms: number): void {
    if (this.stopped) return;
    if (ms <= 0) return this.add(key);
    const at = this.clock.now() + ms;
    const existing = this.delayed.get(key);
    if (existing && existing.at <= at) return;
    existing?.cancel();
    const cancel = this.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, cancel });
  }

  get length(): number {
    return this.queue.length;
  }

  /** idle resolves when nothing is queued or processing (delayed keys do not count). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** start takes keys again after a stop (a controller that leads again, on a server that lost and regained the leadership). */
  start(): void {
    this.stopped = false;
  }

  stop(): void {
    this.stopped = true;
    for (const d of this.delayed.values()) d.cancel();
    this.delayed.clear();
    this.queue.length = 0;
    this.queued.clear();
    this.notifyIdle();
  }

  private isIdle(): boolean {
    return this.queue.length === 0 && this.active === 0;
  }

  private notifyIdle(): void {
    if (!this.isIdle()) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const r of w) r();
  }

  private pump(): void {
    if (this.pumpDeferred) return;
    if (this.queue.length > 0 && turnBusyMs() > TURN_BUDGET_MS) {
      this.pumpDeferred = true;
      setImmediate(() => {
        this.pumpDeferred = false;
        this.pump();
      });
      return;
    }
    const workers = this.opts.workers ?? 1;
    while (!this.stopped && this.active < workers && this.queue.length > 0) {
      const key = this.queue.shift()!;
      this.queued.delete(key);
      this.processing.add(key);
      this.active++;
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    let failed = false;
    const t0 = performance.now();
    try {
      await this.handler(key);
    } catch (err) {
      failed = true;
      this.opts.onError?.(key, err);
    }
    this.opts.onProcessed?.(key, performance.now() - t0, failed);
    this.processing.delete(key);
    this.active--;
    if (!this.stopped) {
      if (failed) {
        this.addAfter(key, this.backoff.next(key));
      } else {
        this.backoff.forget(key);
      }
      if (this.dirty.delete(key)) this.add(key);
    }
    this.pump();
    this.notifyIdle();
  }
}
