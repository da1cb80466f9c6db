/**
 * EtcdEventStore: cluster Events in etcd, beside the objects, for several
 * servers: `baton events` on any server lists and follows the events every
 * server recorded.
 *
 * Design (the Kubernetes apiserver's): each event is a key of its own under
 * the events' prefix (a Store `view` of its own, never inside the objects'
 * key space, so no object watch or list sees one), attached to a lease
 * shared by every event written in one window (`leaseWindowMs`, a minute)
 * whose TTL is the event TTL plus the window: etcd deletes a window's events
 * together when its lease ends (one revision for all of them), and nothing
 * ever has to find old events to delete them. What this keeps out of the
 * revision log's cost: events never wake a controller (no object watch
 * covers them); the writes of a burst go in one txn of up to 128 puts after
 * `writeDelayMs`; a repeat (Kubernetes' event series) rewrites its one key,
 * at most once per write; expiry is a lease's work, not a delete per event;
 * and compaction drops their superseded versions with everything else's.
 * What it does not: each write still takes a revision in the one etcd, as
 * Kubernetes' events do unless given an etcd of their own; `prefix` lets a
 * deployment point them at another (a view of another EtcdStore).
 *
 * The EventStore interface is synchronous, so reads are served from memory:
 * an index of the events held (by id, capped at `maxEvents`, the oldest
 * dropped, and deleted from etcd too) that starts from a list of the prefix
 * and follows it with a watch, so another server's events arrive within a
 * watch's latency (and reach this server's subscribers then). record()
 * assigns the id at once: ids are `ms × 1024 + writer`, where ms is the
 * recording time made strictly increasing per writer and the writer number
 * comes from a counter in etcd at open, so servers never give one id twice
 * and ids order events by time across servers. A server may hear of
 * another's event after it listed past its id: `afterId` is exact for one
 * server's own events, and a follower (subscribe) hears every one.
 */
import { systemClock, type Clock } from '../../base/clock.js';
import { DEFAULT_EVENT_SERIES_WINDOW_MS, DEFAULT_EVENT_TTL_MS, DEFAULT_MAX_EVENTS, EventSeries, EventSubscribers, listEvents, pruneEvents, repeat, toStoredEvent, type EventStoreOptions } from '../common.js';
import type { EventQuery, EventStore, NewEvent, StoredEvent } from '../events.js';
import { MAX_TXN_OPS, StoreClosedError, type Op, type Store, type Watch, type WatchBatch } from '../store.js';

export interface EtcdEventStoreOptions extends EventStoreOptions {
  /** Events written within one window share one lease (default 60 s, the apiserver's lease reuse). */
  leaseWindowMs?: number;
  /** A recorded event is written this long after (default 100 ms), with every other recorded meanwhile. */
  writeDelayMs?: number;
  /** After a failed write, the next try comes this long after (default 1 s). */
  retryMs?: number;
}

/** Where a server's events live in etcd: a view beside the objects' prefix ("/baton/"), never inside it. */
export const EVENTS_ETCD_PREFIX = '/baton-events/';
export const DEFAULT_EVENT_LEASE_WINDOW_MS = 60_000;
export const DEFAULT_EVENT_WRITE_DELAY_MS = 100;

/** WRITERS: ids leave room for this many writer numbers per millisecond. */
const WRITERS = 1024;
const EVENT_KEYS = 'e/';
const WRITER_COUNTER = 'writers';

/** eventKey: ids zero-padded, so key order is id order. */
const eventKey = (id: number) => `${EVENT_KEYS}${String(id).padStart(16, '0')}`;

export class EtcdEventStore implements EventStore {
  readonly ttlMs: number;
  private readonly maxEvents: number;
  private readonly clock: Clock;
  private readonly leaseWindowMs: number;
  private readonly writeDelayMs: number;
  private readonly retryMs: number;
  private readonly seriesWindowMs: number;
  /** Events held, in id order. */
  private readonly events: StoredEvent[] = [];
  private readonly byId = new Map<number, StoredEvent>();
  private readonly subscribers = new EventSubscribers();
  private readonly series: EventSeries;
  /** Events to write (new, or repeated since written), and ids to delete (dropped for the cap). */
  private toWrite = new Map<number, StoredEvent>();
  private toDelete = new Set<number>();
  private writeTimer?: NodeJS.Timeout;
  /** The write in flight; it resolves to its error, if it failed. */
  private writing?: Promise<unknown>;
  private lease?: { id: number; windowEnd: number };
  private lastMs = 0;
  private watch?: Watch;
  private closed = false;

  /** open claims a writer number, lists the events held in `store` (the events' own view) and follows them. */
  static async open(store: Store, opts: EtcdEventStoreOptions = {}): Promise<EtcdEventStore> {
    const s = new EtcdEventStore(store, (await claimWriter(store)) % WRITERS, opts);
    await s.sync();
    return s;
  }

  private constructor(
    private readonly store: Store,
    private readonly writer: number,
    opts: EtcdEventStoreOptions,
  ) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_EVENT_TTL_MS;
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    this.clock = opts.clock ?? systemClock;
    this.leaseWindowMs = opts.leaseWindowMs ?? DEFAULT_EVENT_LEASE_WINDOW_MS;
    this.writeDelayMs = opts.writeDelayMs ?? DEFAULT_EVENT_WRITE_DELAY_MS;
    this.retryMs = opts.retryMs ?? 1_000;
    this.seriesWindowMs = opts.seriesWindowMs ?? DEFAULT_EVENT_SERIES_WINDOW_MS;
    this.series = new EventSeries(this.seriesWindowMs, this.maxEvents);
  }

  record(e: NewEvent): StoredEvent {
    const time = e.time ?? this.clock.now();
    let stored = this.series.repeatOf(e, time, (s) => this.byId.get(s.id) === s);
    if (stored) repeat(stored, time);
    else {
      stored = toStoredEvent(e, this.nextId(time), time);
      this.hold(stored);
    }
    this.series.seen(stored);
    this.toWrite.set(stored.id, stored);
    this.scheduleWrite(this.writeDelayMs);
    this.subscribers.emit({ ...stored });
    return { ...stored };
  }

  /** flush starts writing what was recorded now; flushed() says when it is in etcd. */
  flush(): void {
    this.scheduleWrite(0);
  }

  /** flushed resolves once everything recorded before the call is written; it rejects with the error of a write that failed (which is tried again later). */
  async flushed(): Promise<void> {
    while (!this.closed && (this.writing || this.toWrite.size || this.toDelete.size)) {
      if (!this.writing) this.write();
      const err = await this.writing;
      if (err) throw err;
    }
  }

  list(q: EventQuery = {}): StoredEvent[] {
    return listEvents(this.events, q);
  }

  subscribe(fn: (e: StoredEvent) => void): () => void {
    return this.subscribers.add(fn);
  }

  /** prune forgets events last seen before now - ttlMs; their keys go with their lease. */
  prune(now: number): number {
    const cutoff = now - this.ttlMs;
    this.series.forgetBefore(cutoff);
    return pruneEvents(this.events, cutoff, (e) => this.byId.delete(e.id));
  }

  /** close writes what is recorded and stops following; the store itself is its owner's to close. */
  async close(): Promise<void> {
    await this.flushed().catch(() => {});
    this.closed = true;
    clearTimeout(this.writeTimer);
    this.watch?.close();
  }

  /** nextId: this writer's next id, above every id it holds (its own before a restart included). */
  private nextId(time: number): number {
    const highest = this.events.length ? Math.floor(this.events[this.events.length - 1]!.id / WRITERS) : 0;
    this.lastMs = Math.max(this.lastMs + 1, time, highest + 1);
    return this.lastMs * WRITERS + this.writer;
  }

  /** hold adds an event to the index in id order, dropping (and deleting) the oldest beyond the cap. */
  private hold(e: StoredEvent): void {
    let i = this.events.length;
    while (i > 0 && this.events[i - 1]!.id > e.id) i--;
    this.events.splice(i, 0, e);
    this.byId.set(e.id, e);
    while (this.events.length > this.maxEvents) {
      const dropped = this.events.shift()!;
      this.byId.delete(dropped.id);
      this.toWrite.delete(dropped.id);
      this.toDelete.add(dropped.id);
    }
  }

  /** sync lists what etcd holds into the index and watches from there (again after a watch ended). */
  private async sync(): Promise<void> {
    const listed = await listAll(this.store, EVENT_KEYS);
    const cutoff = this.clock.now() - this.ttlMs;
    for (const kv of listed.kvs) {
      const e = parseEvent(kv.value);
      if (!e || e.lastTime < cutoff || this.byId.has(e.id)) continue;
      this.hold(e);
    }
    // Series still open carry on across a restart, as in the SQLite store.
    const open = this.events.filter((e) => e.lastTime >= this.clock.now() - this.seriesWindowMs).sort((x, y) => x.lastTime - y.lastTime);
    for (const e of open) this.series.seen(e);
    this.watch = this.store.watch(EVENT_KEYS, listed.revision, {
      onBatch: (b) => this.onBatch(b),
      onError: (err) => {
        if (this.closed || err instanceof StoreClosedError) return;
        // Compacted past, or the store is gone for now: list again and follow from there.
        const retry = () => void this.sync().catch(() => setTimeout(retry, this.retryMs).unref());
        retry();
      },
    });
  }

  /** onBatch takes in what the watch saw: other writers' events (told to subscribers) and deletions (leases ended, caps). */
  private onBatch(b: WatchBatch): void {
    for (const ev of b.events) {
      if (ev.type === 'delete') {
        const id = Number(ev.kv.key.slice(EVENT_KEYS.length));
        const held = this.byId.get(id);
        if (!held) continue;
        this.byId.delete(id);
        const i = this.events.indexOf(held);
        if (i >= 0) this.events.splice(i, 1);
        continue;
      }
      const e = parseEvent(ev.kv.value);
      if (!e || e.id % WRITERS === this.writer) continue; // our own: held already, and newer here than what etcd echoes
      const held = this.byId.get(e.id);
      if (held) {
        if (held.count === e.count && held.lastTime === e.lastTime) continue;
        held.count = e.count;
        held.lastTime = e.lastTime;
      } else this.hold(e);
      this.subscribers.emit({ ...(held ?? e) });
    }
  }

  private scheduleWrite(delayMs: number): void {
    if (this.closed || this.writing) return; // a write in flight schedules the next when it ends
    if (this.writeTimer && delayMs > 0) return;
    clearTimeout(this.writeTimer);
    this.writeTimer = setTimeout(() => this.write(), delayMs).unref();
  }

  /** write puts the recorded events (with the window's lease) and deletes the dropped ones, 128 ops a txn. */
  private write(): void {
    this.writeTimer = undefined;
    if (this.writing || (this.toWrite.size === 0 && this.toDelete.size === 0)) return;
    const puts = [...this.toWrite.values()].map((e) => ({ id: e.id, value: JSON.stringify(e) }));
    const deletes = [...this.toDelete];
    this.toWrite = new Map();
    this.toDelete = new Set();
    this.writing = (async () => {
      const lease = await this.leaseNow();
      const ops: Op[] = [
        ...puts.map((p): Op => ({ type: 'put', key: eventKey(p.id), value: p.value, lease })),
        ...deletes.map((id): Op => ({ type: 'delete', key: eventKey(id) })),
      ];
      for (let i = 0; i < ops.length; i += MAX_TXN_OPS) await this.store.txn([], ops.slice(i, i + MAX_TXN_OPS));
    })().then(
      () => {
        this.writing = undefined;
        if (this.toWrite.size || this.toDelete.size) this.scheduleWrite(this.writeDelayMs);
        return undefined;
      },
      (err: unknown) => {
        // Unavailable, or the lease ended under us: write again later what was not superseded meanwhile.
        this.writing = undefined;
        this.lease = undefined;
        for (const p of puts) {
          const e = this.byId.get(p.id);
          if (e && !this.toWrite.has(p.id)) this.toWrite.set(p.id, e);
        }
        for (const id of deletes) this.toDelete.add(id);
        if (!this.closed) this.scheduleWrite(this.retryMs);
        return err;
      },
    );
  }

  /** leaseNow is the lease of the current window, granted when the window starts: TTL the event TTL plus the window. */
  private async leaseNow(): Promise<number> {
    const now = this.clock.now();
    if (this.lease && now < this.lease.windowEnd) return this.lease.id;
    const l = await this.store.leaseGrant(Math.ceil((this.ttlMs + this.leaseWindowMs) / 1000));
    this.lease = { id: l.id, windowEnd: now + this.leaseWindowMs };
    return l.id;
  }
}

/** claimWriter takes the next writer number from the counter in etcd (compare-and-swap on its revision). */
async function claimWriter(store: Store): Promise<number> {
  for (;;) {
    const kv = await store.get(WRITER_COUNTER);
    const n = (kv ? Number(kv.value) || 0 : 0) + 1;
    const r = await store.txn([{ key: WRITER_COUNTER, target: 'mod', op: '=', value: kv?.modRevision ?? 0 }], [{ type: 'put', key: WRITER_COUNTER, value: String(n) }]);
    if (r.succeeded) return n;
  }
}

/** listAll reads every key under prefix at one revision, in pages. */
async function listAll(store: Store, prefix: string): Promise<{ kvs: { value: string }[]; revision: number }> {
  const first = await store.range(prefix, { limit: 1_000 });
  const kvs = [...first.kvs];
  let cont = first.continue;
  while (cont) {
    const page = await store.range(prefix, { limit: 1_000, continue: cont, atRevision: first.revision });
    kvs.push(...page.kvs);
    cont = page.continue;
  }
  return { kvs, revision: first.revision };
}

/** parseEvent reads a stored event written by a server of this cluster; anything else is skipped. */
function parseEvent(value: string): StoredEvent | undefined {
  try {
    const e = JSON.parse(value) as StoredEvent;
    const ok =
      Number.isSafeInteger(e.id) && Number.isFinite(e.time) && Number.isFinite(e.lastTime) && Number.isSafeInteger(e.count) &&
      (e.type === 'Normal' || e.type === 'Warning') && [e.reason, e.message, e.kind, e.name, e.source].every((x) => typeof x === 'string') &&
      [e.uid, e.node, e.service].every((x) => x === undefined || typeof x === 'string');
    return ok ? e : undefined;
  } catch {
    return undefined;
  }
}
