/**
 * What the Store conformance cases share: how a backend is made and how time
 * reaches it, the case context, a watch recorder, and waits that mean the
 * same on every backend. Imported only by tests.
 *
 * Backend-neutral, not looser: a case never assumes its store starts at
 * revision 0 (it reads its start, `base`, and checks revisions relative to
 * it), keeps its keys under a prefix of its own (so every case can share one
 * etcd cluster without wiping it), and lets time pass through `Time`: on a
 * fake clock exactly as before, on real time (etcd's leases and progress
 * notifications) with short TTLs and deadlines of five times the goal.
 */
import { expect } from 'vitest';
import { FakeClock } from '../base/clock.js';
import { DEFAULT_PROGRESS_INTERVAL_MS } from './common.js';
import type { KeyValue, Store, WatchBatch, WatchEvent } from './store.js';

/** StoreFactory makes a store for one case: its keys under `prefix` (a backend that starts empty may ignore it), its timers on `clock` when it takes one. */
export type StoreFactory = (opts: { clock: FakeClock; prefix: string }) => Promise<Store>;

/**
 * StoreTime says how time reaches a backend: `fake`, its leases and progress
 * notifications run on the FakeClock the factory is given; `real`, they run
 * on the backend's own clock (etcd), a lease case counts in TTLs of
 * `leaseTtlSeconds`, a deleted lease's keys go within `leaseSlackMs` of its
 * TTL, and a quiet watch hears progress every `progressIntervalMs`.
 */
export type StoreTime = { kind: 'fake' } | { kind: 'real'; leaseTtlSeconds: number; leaseSlackMs: number; progressIntervalMs: number };

export interface ConformanceOptions {
  time?: StoreTime;
}

/**
 * settle lets every queued microtask, timer due now and immediate run, so
 * watch batches already due have been delivered: a timer turn, then a few
 * check-phase turns, because a txn issued while a batch is delivered commits
 * in a setImmediate (group commit), which a loaded machine may run after a
 * timer of 0 ms has fired.
 */
export const settle = async (): Promise<void> => {
  await new Promise<void>((resolve) => setTimeout(resolve, 0));
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How long a real backend may take to deliver what is due (a catch-up watch waits for etcd's 100 ms sync loop). */
const REAL_DELIVERY_MS = 5_000;
/** FAKE_STEP_MS: a fake clock is moved in steps this long while a case waits for something to happen in time. */
const FAKE_STEP_MS = 100;

/** Time lets time pass for a case, on a fake clock or for real. */
export class Time {
  /** ttl is the lease TTL (seconds) lease cases count in. */
  readonly ttl: number;
  /** progressMs: how often a quiet watch hears a progress notification. */
  readonly progressMs: number;
  /** leaseSlackMs: how long past its TTL a lease's keys may take to go. */
  readonly leaseSlackMs: number;

  constructor(
    readonly spec: StoreTime,
    readonly clock: FakeClock,
  ) {
    this.ttl = spec.kind === 'fake' ? 10 : spec.leaseTtlSeconds;
    this.progressMs = spec.kind === 'fake' ? DEFAULT_PROGRESS_INTERVAL_MS : spec.progressIntervalMs;
    this.leaseSlackMs = spec.kind === 'fake' ? 1_000 : spec.leaseSlackMs;
  }

  get fake(): boolean {
    return this.spec.kind === 'fake';
  }

  /** elapse lets ms pass: a fake clock advances (firing its timers), real time is slept. */
  async elapse(ms: number): Promise<void> {
    if (this.fake) {
      this.clock.advance(ms);
      await settle();
    } else {
      await sleep(ms);
    }
  }

  /** letTimersRun gives a store's periodic work a chance to fire (into a closed or ended watch, say): a minute on a fake clock, two progress intervals for real. */
  letTimersRun(): Promise<void> {
    return this.elapse(this.fake ? 60_000 : 2 * this.progressMs);
  }

  /**
   * within waits until cond holds as time passes for up to `ms`: a fake clock
   * is advanced in steps and must get there within ms; real time is polled
   * for up to five times ms.
   */
  async within(ms: number, what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
    const limit = this.fake ? ms : 5 * ms;
    let passed = 0;
    const started = Date.now();
    for (;;) {
      if (this.fake) await settle();
      if (await cond()) return;
      if (this.fake) {
        if (passed >= limit) break;
        const step = Math.min(FAKE_STEP_MS, limit - passed);
        this.clock.advance(step);
        passed += step;
      } else {
        if (Date.now() - started >= limit) break;
        await sleep(10);
      }
    }
    throw new Error(`${what}: not within ${limit} ms`);
  }

  /** delivered waits for what is already due (no time passing): one settle on a fake clock, up to five seconds for real. */
  async delivered(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
    if (this.fake) {
      await settle();
      if (await cond()) return;
      throw new Error(`${what}: not delivered`);
    }
    const deadline = Date.now() + REAL_DELIVERY_MS;
    while (!(await cond())) {
      if (Date.now() > deadline) throw new Error(`${what}: not delivered within ${REAL_DELIVERY_MS} ms`);
      await sleep(5);
    }
  }
}

/** CaseContext is what a case works with; `open` makes one more store of the same kind (under a prefix of its own). */
export interface CaseContext {
  store: Store;
  /** The store's revision when the case began. */
  base: number;
  time: Time;
  open(): Promise<Store>;
}

export const put = (s: Store, key: string, value: string, lease?: number) => s.txn([], [{ type: 'put', key, value, ...(lease ? { lease } : {}) }]);
export const del = (s: Store, key: string) => s.txn([], [{ type: 'delete', key }]);
export const keysOf = (kvs: KeyValue[]) => kvs.map((kv) => kv.key);

/** byteOrder sorts keys by UTF-8 bytes, independently of the backends' own comparison. */
export const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** summary reduces events to comparable tuples. */
export const summary = (events: WatchEvent[]) => events.map((e) => [e.type, e.kv.key, e.kv.modRevision, e.prevKv?.value]);

/** Recorder collects what one watch delivers. A backend may send progress batches at any time, so cases compare event batches unless progress is the point. */
export interface Recorder {
  batches: WatchBatch[];
  errors: Error[];
  close(): void;
  requestProgress(): void;
  /** Events of the non-progress batches, flattened. */
  events(): WatchEvent[];
  eventBatches(): WatchBatch[];
  progress(): WatchBatch[];
}

export function record(s: Store, prefix: string, afterRevision: number, onBatch?: (b: WatchBatch) => void): Recorder {
  const batches: WatchBatch[] = [];
  const errors: Error[] = [];
  const w = s.watch(prefix, afterRevision, {
    onBatch: (b) => {
      batches.push(b);
      onBatch?.(b);
    },
    onError: (e) => errors.push(e),
  });
  return {
    batches,
    errors,
    close: () => w.close(),
    requestProgress: () => w.requestProgress(),
    events: () => batches.flatMap((b) => (b.progress ? [] : b.events)),
    eventBatches: () => batches.filter((b) => !b.progress),
    progress: () => batches.filter((b) => b.progress),
  };
}

/**
 * caughtUp asks w for progress and waits until it says it has everything up
 * to `rev`: after it, nothing at or below rev is still to come, so a case
 * can say what did not arrive.
 */
export async function caughtUp(time: Time, w: Recorder, rev: number): Promise<void> {
  w.requestProgress();
  await time.within(2 * time.progressMs, `progress to ${rev}`, () => w.progress().some((b) => b.revision >= rev));
}

/** checkOrder: batches never go back; an event batch is above everything before it; a progress batch never below it. */
export function checkOrder(w: Recorder): void {
  let last = -Infinity;
  for (const b of w.batches) {
    if (b.progress) {
      expect(b.events).toEqual([]);
      expect(b.revision).toBeGreaterThanOrEqual(last);
    } else {
      expect(b.revision).toBeGreaterThan(last);
      for (const e of b.events) {
        expect(e.kv.modRevision).toBeGreaterThan(last);
        expect(e.kv.modRevision).toBeLessThanOrEqual(b.revision);
      }
    }
    last = b.revision;
  }
}
