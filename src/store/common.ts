/**
 * What the store backends share: the txn/watch/lease engine (`BaseStore`) on
 * top of a small synchronous storage interface (`KvBackend`), key ordering,
 * continue tokens, and the event-store helpers.
 *
 * Why one engine: compare evaluation, revision assignment, watch fan-out,
 * progress notifications and lease expiry are the subtle parts of the Store
 * contract. Writing them once means the memory and SQLite backends differ only
 * in how they keep rows, and the conformance suite tests one set of rules.
 */
import { systemClock, type Clock } from '../base/clock.js';
import { matchesEventQuery, type EventQuery, type NewEvent, type StoredEvent } from './events.js';
import {
  MAX_TXN_OPS,
  attachParsed,
  StoreClosedError,
  StoreCompactedError,
  StoreError,
  StoreFutureRevisionError,
  StoreLeaseNotFoundError,
  StoreTooManyOpsError,
  compareHolds,
  compareKeys,
  prefixEnd,
  type Compare,
  type KeyValue,
  type Lease,
  type Op,
  type RangeOptions,
  type RangeResult,
  type Store,
  type TxnResult,
  type Watch,
  type WatchBatch,
  type WatchEvent,
  type WatchHandlers,
} from './store.js';

/** StoreOptions configures either backend; every timer runs on `clock`. */
export interface StoreOptions {
  /** Time source for lease expiry and progress notifications (default: the system clock). */
  clock?: Clock;
  /** How often each live watcher gets a progress notification (default 5000 ms). */
  progressIntervalMs?: number;
  /** How often expired leases are looked for (default 1000 ms). */
  leaseCheckIntervalMs?: number;
  /** How long one group commit may take before the txns after it wait for the next turn (default GROUP_COMMIT_BUDGET_MS). */
  groupCommitBudgetMs?: number;
}

/** DEFAULT_PROGRESS_INTERVAL_MS: etcd-like cadence that keeps quiet, filtered watchers above compaction. */
export const DEFAULT_PROGRESS_INTERVAL_MS = 5_000;
/** DEFAULT_LEASE_CHECK_INTERVAL_MS bounds how late past its TTL a lease's keys are deleted. */
export const DEFAULT_LEASE_CHECK_INTERVAL_MS = 1_000;
/**
 * GROUP_COMMIT_BUDGET_MS: a group commit takes the queued txns in order until
 * it has run this long; the rest commit in the next turn of the event loop,
 * after timers and I/O. A busy server's agents post thousands of status
 * writes between two turns, and one commit of all of them (with the watch
 * events it sends) held the event loop for hundreds of milliseconds.
 */
export const GROUP_COMMIT_BUDGET_MS = 25;
/** CATCHUP_BATCH_EVENTS caps the events in one replayed watch batch, so a long replay is not one giant array per callback. */
export const CATCHUP_BATCH_EVENTS = 1_000;

export { compareKeys };

/** rangeEnd is the exclusive upper bound of a prefix scan, or undefined when it has none (prefix ''). */
export function rangeEnd(prefix: string): string | undefined {
  const end = prefixEnd(prefix);
  return end === '\u{10FFFF}' ? undefined : end;
}

/** lowerBound returns the index of the first key in sorted `keys` that is >= key (code-point order). */
export function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(keys[mid]!, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** encodeContinue makes the opaque range continue token: the next key, base64url-encoded. */
export function encodeContinue(nextKey: string): string {
  return Buffer.from(nextKey, 'utf8').toString('base64url');
}

/** decodeContinue reverses encodeContinue; garbage decodes to some key, which range then clamps into the prefix. */
export function decodeContinue(token: string): string {
  return Buffer.from(token, 'base64url').toString('utf8');
}

/** deletedKv is the kv of a delete event: the key and the delete's revision, everything else zero (as etcd). */
export function deletedKv(key: string, revision: number): KeyValue {
  return Object.freeze({ key, value: '', createRevision: 0, modRevision: revision, version: 0, lease: 0 });
}

/** LeaseRecord is a lease as a backend keeps it: TTL and absolute expiry in clock milliseconds. */
export interface LeaseRecord {
  id: number;
  ttlSeconds: number;
  expiresAt: number;
}

/**
 * KvBackend is the synchronous storage a backend provides to BaseStore. It
 * keeps versions and leases; it never decides anything (BaseStore evaluates
 * compares, assigns revisions, validates leases and notifies watchers).
 */
export interface KvBackend {
  revision(): number;
  compactRevision(): number;
  /** Current value of key, undefined when absent. */
  get(key: string): KeyValue | undefined;
  /**
   * Live keys starting with prefix, from `start` (>= prefix) on, as of revision
   * `rev`, in key order; at most `limit` (0 = all).
   */
  range(prefix: string, start: string, rev: number, limit: number): KeyValue[];
  /** Every change under prefix with revision > afterRevision, in order, with prevKv when kept. */
  history(prefix: string, afterRevision: number): WatchEvent[];
  /** Runs fn as one atomic write transaction. fn only reads until it calls write(). */
  atomically<T>(fn: () => T): T;
  /** Runs fn against one consistent read snapshot. */
  snapshot<T>(fn: () => T): T;
  /** Appends one txn's events (all at `revision`, which is revision() + 1) and advances the revision. */
  write(revision: number, events: readonly WatchEvent[]): void;
  /** Drops superseded versions and tombstones at or below revision; records the compact revision. */
  compact(revision: number): void;
  /** Keys currently attached to lease id. */
  keysWithLease(id: number): string[];
  leaseCreate(ttlSeconds: number, expiresAt: number): number;
  lease(id: number): LeaseRecord | undefined;
  leaseSetExpiry(id: number, expiresAt: number): void;
  leaseDelete(id: number): void;
  /** Ids of leases with expiresAt <= now. */
  expiredLeases(now: number): number[];
  close(): void | Promise<void>;
}

/** TxnWriter collects one txn's events against the backend's current state, with a read-your-writes overlay. */
class TxnWriter {
  readonly events: WatchEvent[] = [];
  private readonly staged = new Map<string, KeyValue | undefined>();
  /** What this txn read from the backend: a compare and the put after it read a key once (nothing else writes during a txn). */
  private readonly read = new Map<string, KeyValue | undefined>();

  constructor(private readonly kv: KvBackend, readonly revision: number) {}

  current(key: string): KeyValue | undefined {
    if (this.staged.has(key)) return this.staged.get(key);
    if (this.read.has(key)) return this.read.get(key);
    const kv = this.kv.get(key);
    this.read.set(key, kv);
    return kv;
  }

  put(key: string, value: string, lease: number, parsed?: unknown): void {
    const prev = this.current(key);
    const kv: KeyValue = Object.freeze({
      key,
      value,
      createRevision: prev ? prev.createRevision : this.revision,
      modRevision: this.revision,
      version: prev ? prev.version + 1 : 1,
      lease,
    });
    this.staged.set(key, kv);
    if (parsed !== undefined) attachParsed(kv, parsed);
    const event: WatchEvent = prev ? { type: 'put', kv, prevKv: prev } : { type: 'put', kv };
    this.events.push(Object.freeze(event));
  }

  delete(key: string): void {
    const prev = this.current(key);
    if (!prev) return;
    this.staged.set(key, undefined);
    const event: WatchEvent = { type: 'delete', kv: deletedKv(key, this.revision), prevKv: prev };
    this.events.push(Object.freeze(event));
  }
}

/** PendingTxn is a txn waiting for the next group commit. */
interface PendingTxn {
  compares: readonly Compare[];
  success: readonly Op[];
  failure: readonly Op[];
  resolve: (r: TxnResult) => void;
  reject: (err: unknown) => void;
}

/** WriteFailed carries a backend write's error out of a group commit, which must then roll back whole. */
class WriteFailed extends Error {
  constructor(override readonly cause: unknown) {
    super('backend write failed');
  }
}

/** Applied is what one txn did inside a backend transaction: its result, its revision and its events. */
interface Applied<T> {
  value: T;
  revision: number;
  events: WatchEvent[];
}

/**
 * WatchDelivery hands one watch's batches to its handlers, in order, each in
 * a microtask after it was queued: a handler that writes to the store never
 * re-enters the code that queued the batch. A handler that throws ends the
 * watch with onError(thrown); an Error queued ends it with that error, after
 * the batches queued before it. `onEnd` runs once when the watch ends either
 * way, so its owner can stop feeding it.
 */
export class WatchDelivery {
  private queue: (WatchBatch | Error)[] = [];
  private scheduled = false;
  private ended = false;

  constructor(
    private readonly handlers: WatchHandlers,
    private readonly onEnd: () => void,
  ) {}

  /** closed: the watch was closed by its owner or ended; nothing more is delivered. */
  get closed(): boolean {
    return this.ended;
  }

  push(item: WatchBatch | Error): void {
    if (this.ended) return;
    this.queue.push(item);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.drain());
  }

  /** close ends delivery without telling the handlers (Watch.close()). */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.queue.length = 0;
    this.onEnd();
  }

  private drain(): void {
    this.scheduled = false;
    while (!this.ended && this.queue.length > 0) {
      const item = this.queue.shift()!;
      if (item instanceof Error) {
        this.end(item);
        return;
      }
      try {
        this.handlers.onBatch(item);
      } catch (err) {
        this.end(err instanceof Error ? err : new Error(String(err)));
        return;
      }
    }
  }

  private end(err: Error): void {
    this.close();
    this.handlers.onError(err);
  }
}

/** Watcher is one open watch: its filter, its delivery and how far it has been sent. */
interface Watcher {
  prefix: string;
  delivery: WatchDelivery;
  /** Highest revision queued so far; later events at or below it are not sent again. */
  cursor: number;
}

/** LONE_SURROGATE finds half a UTF-16 pair on its own: such a string has no UTF-8 form (no stable order, no SQLite round trip). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** validateTxn rejects what etcd rejects before a txn runs: too many ops, bad keys, overlapping writes. */
export function validateTxn(compares: readonly Compare[], success: readonly Op[], failure: readonly Op[]): void {
  const ops = success.length + failure.length;
  if (ops > MAX_TXN_OPS || compares.length > MAX_TXN_OPS) throw new StoreTooManyOpsError(Math.max(ops, compares.length));
  for (const branch of [success, failure]) {
    const puts = new Set<string>();
    for (const op of branch) {
      if (op.type === 'put') {
        if (op.key === '' || LONE_SURROGATE.test(op.key)) throw new StoreError(`invalid key ${JSON.stringify(op.key)}`, 'invalid_key');
        if (LONE_SURROGATE.test(op.value)) throw new StoreError(`value of ${JSON.stringify(op.key)} is not well-formed UTF-16`, 'invalid_value');
        if (puts.has(op.key)) throw new StoreError(`duplicate key ${JSON.stringify(op.key)} in txn`, 'duplicate_key');
        puts.add(op.key);
      }
    }
    for (const op of branch) {
      if (op.type === 'put') continue;
      const overlaps = op.type === 'delete' ? puts.has(op.key) : [...puts].some((k) => k.startsWith(op.prefix));
      if (overlaps) throw new StoreError(`txn both puts and deletes ${JSON.stringify(op.type === 'delete' ? op.key : op.prefix)}`, 'duplicate_key');
    }
  }
}

/**
 * BaseStore implements the Store contract over a KvBackend: one engine for
 * both backends, so they cannot drift apart on the subtle rules.
 *
 * Delivery: watch batches are queued per watcher and handed over in a
 * microtask, in revision order, so a handler that writes to the store never
 * re-enters a txn. A handler that throws ends its watch with onError(thrown).
 * close() delivers what is already queued, then onError(StoreClosedError) to
 * every open watch; every later call throws StoreClosedError (close itself is
 * idempotent).
 */
export abstract class BaseStore implements Store {
  private closed = false;
  private readonly clock: Clock;
  private readonly watchers = new Set<Watcher>();
  private readonly timers: (() => void)[] = [];
  /** Txns waiting for the next group commit, in the order issued. */
  private pending: PendingTxn[] = [];
  private readonly groupBudgetMs: number;

  protected constructor(readonly backend: string, private readonly kv: KvBackend, opts: StoreOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.groupBudgetMs = opts.groupCommitBudgetMs ?? GROUP_COMMIT_BUDGET_MS;
    this.every(opts.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS, () => this.sendProgress());
    this.every(opts.leaseCheckIntervalMs ?? DEFAULT_LEASE_CHECK_INTERVAL_MS, () => this.expireLeases());
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.ensureOpen();
    return this.kv.get(key);
  }

  async range(prefix: string, opts: RangeOptions = {}): Promise<RangeResult> {
    this.ensureOpen();
    return this.kv.snapshot(() => {
      const rev = opts.atRevision || this.kv.revision(); // 0 means current, as in etcd
      this.checkReadable(rev);
      let start = opts.continue !== undefined ? decodeContinue(opts.continue) : prefix;
      if (compareKeys(start, prefix) < 0) start = prefix;
      const limit = opts.limit && opts.limit > 0 ? Math.floor(opts.limit) : 0;
      const kvs = this.kv.range(prefix, start, rev, limit ? limit + 1 : 0);
      if (limit && kvs.length > limit) {
        const next = kvs.pop()!;
        return { kvs, revision: rev, continue: encodeContinue(next.key) };
      }
      return { kvs, revision: rev };
    });
  }

  /**
   * txn queues the txn for the next group commit (see flush): the txns issued
   * in one turn of the event loop commit together in one backend transaction
   * (as many as fit in the group's time budget), each at its own revision, in
   * the order issued.
   */
  txn(compares: Compare[], success: Op[], failure: Op[] = []): Promise<TxnResult> {
    try {
      this.ensureOpen();
      validateTxn(compares, success, failure);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<TxnResult>((resolve, reject) => {
      this.pending.push({ compares, success, failure, resolve, reject });
      if (this.pending.length === 1) setImmediate(() => this.flush());
    });
  }

  /**
   * flush commits the queued txns as one backend transaction (a group commit,
   * as etcd's backend batches its writes): a commit costs far more than a row,
   * so under load many small writers cost little more than one large one. Each
   * txn still runs alone: one refused before it writes (an unknown lease) is
   * refused on its own, while a backend write that fails (nothing Baton
   * expects) rolls back the whole group and refuses every txn in it. Watchers
   * hear each committed txn, in order, only after the whole group is durable.
   *
   * A group takes the queued txns in order until it has run `budgetMs`; the
   * rest wait for the next turn, so timers, heartbeats and reads are served
   * between two groups of a long queue.
   */
  private flush(budgetMs = this.groupBudgetMs): void {
    const queue = this.pending;
    if (queue.length === 0) return;
    const outcomes: ({ ok: true; r: Applied<boolean> } | { ok: false; err: unknown })[] = [];
    const began = performance.now();
    // Nothing is queued while this runs: the group's writes are synchronous, and watchers and callers hear of them after.
    let taken = 0;
    try {
      this.kv.atomically(() => {
        while (taken < queue.length) {
          const p = queue[taken++]!;
          try {
            outcomes.push({ ok: true, r: this.apply((w) => this.runTxn(w, p)) });
          } catch (err) {
            // A txn refused before it wrote (an unknown lease) is refused alone; a failed write aborts the group.
            if (err instanceof WriteFailed) throw err.cause;
            outcomes.push({ ok: false, err });
          }
          if (performance.now() - began >= budgetMs) break;
        }
      });
    } catch (err) {
      const group = queue.splice(0, taken);
      if (queue.length) setImmediate(() => this.flush());
      for (const p of group) p.reject(err);
      return;
    }
    const batch = queue.splice(0, taken);
    if (queue.length) setImmediate(() => this.flush());
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i]!;
      if (!o.ok) {
        batch[i]!.reject(o.err);
        continue;
      }
      if (o.r.events.length) this.notify(o.r.revision, o.r.events);
      batch[i]!.resolve({ succeeded: o.r.value, revision: o.r.revision });
    }
  }

  private runTxn(w: TxnWriter, t: PendingTxn): boolean {
    const succeeded = t.compares.every((c) => compareHolds(c, w.current(c.key)));
    for (const op of succeeded ? t.success : t.failure) {
      switch (op.type) {
        case 'put':
          if (op.lease && !this.liveLease(op.lease)) throw new StoreLeaseNotFoundError(op.lease);
          w.put(op.key, op.value, op.lease ?? 0, op.parsed);
          break;
        case 'delete':
          w.delete(op.key);
          break;
        case 'deletePrefix':
          for (const kv of this.kv.range(op.prefix, op.prefix, w.revision - 1, 0)) w.delete(kv.key);
          break;
      }
    }
    return succeeded;
  }

  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Watch {
    this.ensureOpen();
    const w: Watcher = { prefix, delivery: new WatchDelivery(handlers, () => this.watchers.delete(w)), cursor: afterRevision };
    const close = () => w.delivery.close();
    // Replay and registration happen in this one synchronous step, so no write can fall between them.
    this.kv.snapshot(() => {
      const compacted = this.kv.compactRevision();
      if (afterRevision < compacted) {
        w.delivery.push(new StoreCompactedError(afterRevision, compacted));
        return;
      }
      let batch: WatchEvent[] = [];
      const flush = () => {
        w.delivery.push({ events: batch, revision: batch[batch.length - 1]!.kv.modRevision });
        batch = [];
      };
      for (const e of this.kv.history(prefix, afterRevision)) {
        if (batch.length >= CATCHUP_BATCH_EVENTS && batch[batch.length - 1]!.kv.modRevision !== e.kv.modRevision) flush();
        batch.push(e);
      }
      if (batch.length) flush();
      w.cursor = Math.max(afterRevision, this.kv.revision());
      this.watchers.add(w);
    });
    const requestProgress = () => {
      if (!w.delivery.closed && !this.closed) this.progress(w, this.kv.revision());
    };
    return { close, requestProgress };
  }

  async compact(revision: number): Promise<void> {
    this.ensureOpen();
    this.kv.atomically(() => {
      const current = this.kv.revision();
      const compacted = this.kv.compactRevision();
      if (revision > current) throw new StoreFutureRevisionError(revision, current);
      if (revision < compacted) throw new StoreCompactedError(revision, compacted);
      if (revision > compacted) this.kv.compact(revision);
    });
  }

  async currentRevision(): Promise<number> {
    this.ensureOpen();
    return this.kv.revision();
  }

  async compactRevision(): Promise<number> {
    this.ensureOpen();
    return this.kv.compactRevision();
  }

  async leaseGrant(ttlSeconds: number): Promise<Lease> {
    this.ensureOpen();
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new StoreError(`lease TTL must be a positive whole number of seconds, not ${ttlSeconds}`, 'invalid_ttl');
    }
    const id = this.kv.atomically(() => this.kv.leaseCreate(ttlSeconds, this.clock.now() + ttlSeconds * 1000));
    return { id, ttlSeconds };
  }

  async leaseKeepAlive(id: number): Promise<void> {
    this.ensureOpen();
    const lease = this.liveLease(id);
    if (!lease) {
      this.expireLeases();
      throw new StoreLeaseNotFoundError(id);
    }
    this.kv.atomically(() => this.kv.leaseSetExpiry(id, this.clock.now() + lease.ttlSeconds * 1000));
  }

  async leaseRevoke(id: number): Promise<void> {
    this.ensureOpen();
    this.mutate((w) => {
      if (!this.kv.lease(id)) throw new StoreLeaseNotFoundError(id);
      this.revokeIn(w, id);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush(Infinity); // what was issued before close commits
    this.closed = true;
    for (const cancel of this.timers) cancel();
    for (const w of [...this.watchers]) w.delivery.push(new StoreClosedError());
    this.watchers.clear();
    await this.kv.close();
  }

  private ensureOpen(): void {
    if (this.closed) throw new StoreClosedError();
  }

  /** checkReadable throws unless rev is between the compact revision and the current one. */
  private checkReadable(rev: number): void {
    const current = this.kv.revision();
    if (rev > current) throw new StoreFutureRevisionError(rev, current);
    const compacted = this.kv.compactRevision();
    if (rev < compacted) throw new StoreCompactedError(rev, compacted);
  }

  /**
   * mutate runs fn in one backend transaction at the next revision; if fn wrote
   * anything, the events are committed at that one revision and then sent to
   * watchers. A txn that writes nothing leaves the revision where it was.
   */
  private mutate<T>(fn: (w: TxnWriter) => T): { value: T; revision: number } {
    let r: Applied<T>;
    try {
      r = this.kv.atomically(() => this.apply(fn));
    } catch (err) {
      throw err instanceof WriteFailed ? err.cause : err;
    }
    if (r.events.length) this.notify(r.revision, r.events);
    return { value: r.value, revision: r.revision };
  }

  /** apply runs fn at the next revision inside the caller's backend transaction and writes its events, if any. */
  private apply<T>(fn: (w: TxnWriter) => T): Applied<T> {
    const w = new TxnWriter(this.kv, this.kv.revision() + 1);
    const value = fn(w);
    if (w.events.length === 0) return { value, revision: w.revision - 1, events: w.events };
    try {
      this.kv.write(w.revision, w.events);
    } catch (err) {
      // Some rows may be written: only rolling back the enclosing backend transaction undoes them.
      throw new WriteFailed(err);
    }
    return { value, revision: w.revision, events: w.events };
  }

  private liveLease(id: number): LeaseRecord | undefined {
    const lease = this.kv.lease(id);
    return lease && lease.expiresAt > this.clock.now() ? lease : undefined;
  }

  private revokeIn(w: TxnWriter, id: number): void {
    for (const key of this.kv.keysWithLease(id)) w.delete(key);
    this.kv.leaseDelete(id);
  }

  /** expireLeases deletes the keys of every expired lease in one revision and forgets the leases. */
  private expireLeases(): void {
    const expired = this.kv.expiredLeases(this.clock.now());
    if (expired.length === 0) return;
    this.mutate((w) => {
      for (const id of expired) this.revokeIn(w, id);
    });
  }

  private sendProgress(): void {
    if (this.watchers.size === 0) return;
    const current = this.kv.revision();
    for (const w of this.watchers) this.progress(w, current);
  }

  /** progress tells w it has everything up to `current`: changes are queued at commit, so all of them are already ahead of this in its queue. */
  private progress(w: Watcher, current: number): void {
    w.cursor = Math.max(w.cursor, current);
    w.delivery.push({ events: [], revision: w.cursor, progress: true });
  }

  private notify(revision: number, events: readonly WatchEvent[]): void {
    for (const w of this.watchers) {
      if (revision <= w.cursor) continue;
      const mine = w.prefix === '' ? events.slice() : events.filter((e) => e.kv.key.startsWith(w.prefix));
      if (mine.length === 0) continue;
      w.cursor = revision;
      w.delivery.push({ events: mine, revision });
    }
  }


  /** every runs fn every ms on the clock until close(); the next tick is armed first so a throwing fn cannot stop it. */
  private every(ms: number, fn: () => void): void {
    let cancel = () => {};
    const tick = () => {
      if (this.closed) return;
      cancel = this.clock.setTimeout(tick, ms);
      fn();
    };
    cancel = this.clock.setTimeout(tick, ms);
    this.timers.push(() => cancel());
  }
}

/** DEFAULT_EVENT_TTL_MS keeps Events for an hour, as Kubernetes does. */
export const DEFAULT_EVENT_TTL_MS = 60 * 60 * 1000;
/** DEFAULT_MAX_EVENTS bounds an event store under an event storm, whatever the TTL. */
export const DEFAULT_MAX_EVENTS = 10_000;
/** DEFAULT_EVENT_SERIES_WINDOW_MS: a repeat within 10 minutes of an event's last occurrence adds to its count. */
export const DEFAULT_EVENT_SERIES_WINDOW_MS = 10 * 60 * 1000;

/** EventStoreOptions configures either event store. */
export interface EventStoreOptions {
  /** Source of `time` for events recorded without one. */
  clock?: Clock;
  /** prune(now) removes events older than now - ttlMs (default one hour). */
  ttlMs?: number;
  /** The oldest events are dropped beyond this many (default 10000). */
  maxEvents?: number;
  /** A repeat within this long of an event's last occurrence adds to its count (default 10 minutes; 0: never). */
  seriesWindowMs?: number;
}

/** toStoredEvent fills id and time and drops absent optional fields, so both backends return identical shapes. */
export function toStoredEvent(e: NewEvent, id: number, now: number): StoredEvent {
  const time = e.time ?? now;
  const out: StoredEvent = {
    id,
    time,
    lastTime: time,
    count: 1,
    type: e.type,
    reason: e.reason,
    message: e.message,
    kind: e.kind,
    name: e.name,
    source: e.source,
  };
  if (e.uid !== undefined) out.uid = e.uid;
  if (e.node !== undefined) out.node = e.node;
  if (e.service !== undefined) out.service = e.service;
  return out;
}

/**
 * EventSeries finds the event a new one repeats, for either store: it keeps
 * the latest event of each series (by a key of every field but the times)
 * last seen within the window, in order of last occurrence, at most
 * `max` (the store's own cap: a forgotten series only starts a new row).
 * The store tells it which events it still holds (`holds`), and forgets
 * pruned ones through forgetBefore.
 */
export class EventSeries {
  private readonly open = new Map<string, StoredEvent>();

  constructor(
    private readonly windowMs: number,
    private readonly max: number,
  ) {}

  /** repeatOf returns the stored event that `e`, occurring at `time`, repeats, or undefined. */
  repeatOf(e: NewEvent, time: number, holds: (s: StoredEvent) => boolean): StoredEvent | undefined {
    if (this.windowMs <= 0) return undefined;
    if (this.open.size > this.max + (this.max >> 2)) this.trim(time);
    const s = this.open.get(seriesKey(e));
    return s && holds(s) && time - s.lastTime <= this.windowMs ? s : undefined;
  }

  /**
   * trim drops the series seen longest ago, down to `max` and past the
   * window. It runs once the map holds a quarter more than `max`, not at
   * every event: a Map walked from its start after deletions at its front
   * steps over every deleted slot until it is rehashed, so dropping one entry
   * per event cost a walk per event (a deploy of 100,000 tasks spent a second
   * of the server's time in it). What stays past the window is never
   * matched: repeatOf checks the window itself.
   */
  private trim(time: number): void {
    for (const [k, s] of this.open) {
      if (this.open.size <= this.max && s.lastTime >= time - this.windowMs) break;
      this.open.delete(k);
    }
  }

  /** seen records `s` as the latest of its series (a new event, or one whose count just grew). */
  seen(s: StoredEvent): void {
    if (this.windowMs <= 0) return;
    const k = seriesKey(s);
    this.open.delete(k);
    this.open.set(k, s);
  }

  /** forgetBefore drops the series last seen before `cutoff` (their events were pruned). */
  forgetBefore(cutoff: number): void {
    for (const [k, s] of this.open) if (s.lastTime < cutoff) this.open.delete(k);
  }
}

/** listEvents answers an EventQuery from events in id order (an in-memory event store's array): the newest `limit` matches, oldest first, as copies. */
export function listEvents(events: readonly StoredEvent[], q: EventQuery = {}): StoredEvent[] {
  // Ids ascend, so afterId is a binary search rather than a filter over everything.
  let lo = 0;
  let hi = events.length;
  const after = q.afterId ?? 0;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (events[mid]!.id <= after) lo = mid + 1;
    else hi = mid;
  }
  const out: StoredEvent[] = [];
  for (let i = events.length - 1; i >= lo; i--) {
    const e = events[i]!;
    if (!matchesEventQuery(e, q)) continue;
    out.push({ ...e });
    if (q.limit && out.length >= q.limit) break;
  }
  return out.reverse();
}

/** pruneEvents removes, in place, the events last seen before cutoff from an in-memory store's array (telling `dropped` of each); returns how many. */
export function pruneEvents(events: StoredEvent[], cutoff: number, dropped?: (e: StoredEvent) => void): number {
  const before = events.length;
  let kept = 0;
  for (const e of events) {
    if (e.lastTime >= cutoff) events[kept++] = e;
    else dropped?.(e);
  }
  events.length = kept;
  return before - kept;
}

/** repeat adds one occurrence at `time` to a stored event (in place: the store's own copy). */
export function repeat(s: StoredEvent, time: number): void {
  s.count++;
  s.lastTime = Math.max(s.lastTime, time);
}

function seriesKey(e: NewEvent): string {
  return JSON.stringify([e.type, e.reason, e.kind, e.name, e.uid ?? null, e.source, e.node ?? null, e.service ?? null, e.message]);
}

/**
 * EventSubscribers is the live side of an event store. One subscriber that
 * throws neither stops the others nor fails record(); its error is rethrown
 * from a microtask so it still surfaces.
 */
export class EventSubscribers {
  private readonly fns = new Set<(e: StoredEvent) => void>();

  add(fn: (e: StoredEvent) => void): () => void {
    const entry = (e: StoredEvent) => fn(e);
    this.fns.add(entry);
    return () => {
      this.fns.delete(entry);
    };
  }

  emit(e: StoredEvent): void {
    for (const fn of this.fns) {
      try {
        fn(e);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}
