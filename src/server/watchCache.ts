/**
 * WatchCache holds one store watch per kind and serves everything else from
 * memory: lists, filtered watches (an agent's `spec.nodeName=<node>`), and the
 * server's own controllers. Fan-out therefore costs one store watch per kind,
 * however many agents and clients watch, and a change to one node's task
 * reaches one agent, not all of them.
 *
 * A watcher resuming from a revision older than the cache's window gets
 * GoneError and must list again, as with a compacted store.
 */
import type { Store, Watch, WatchBatch } from '../store/store.js';
import { BatonError } from '../base/errors.js';
import { StoreCompactedError } from '../store/store.js';
import { storePrefix, type KindInfo } from '../api/kinds.js';
import { decode, decodeWatched, stableStringify, type AnyObject } from './registry.js';

export interface CacheEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: AnyObject;
  prev?: AnyObject;
  revision: number;
}

export type FieldFilter = Record<string, string>;

/** isStatusOnly: a change of an object's status alone (same generation, labels and annotations), which its own writer need not hear back. */
export function isStatusOnly(e: CacheEvent): boolean {
  return (
    e.type === 'MODIFIED' &&
    e.prev !== undefined &&
    e.prev.metadata.generation === e.object.metadata.generation &&
    stableStringify(e.prev.metadata.labels) === stableStringify(e.object.metadata.labels) &&
    stableStringify(e.prev.metadata.annotations ?? {}) === stableStringify(e.object.metadata.annotations ?? {})
  );
}

export class GoneError extends Error {
  constructor(readonly requested: number, readonly oldest: number) {
    super(`resourceVersion ${requested} is too old (oldest available ${oldest}); list again`);
  }
}

interface Subscriber {
  /** Events at or below this revision were already reflected in what the subscriber listed. */
  after: number;
  matches: (o: AnyObject) => boolean;
  onEvents: (events: CacheEvent[], revision: number) => void;
  onError: (err: Error) => void;
  /** The field selector term this subscriber is filed under, when it has one (see `triggers`). */
  trigger?: [field: string, value: string];
}

export class WatchCache {
  readonly objects = new Map<string, AnyObject>();
  private history: CacheEvent[] = [];
  private oldestRevision = 0;
  private _revision = 0;
  private watch?: Watch;
  /** Every subscriber. */
  private subs = new Set<Subscriber>();
  /** Subscribers without a field selector: each event is offered to all of them. */
  private broad = new Set<Subscriber>();
  /**
   * Subscribers with a field selector, filed by its first term (Kubernetes'
   * indexed watch triggers): a change to one node's task is offered to that
   * node's watcher only, so fan-out costs what it delivers, not the number
   * of watchers (5,000 agents watching their own tasks).
   */
  private triggers = new Map<string, Map<string, Set<Subscriber>>>();
  private listeners = new Set<(e: CacheEvent) => void>();
  private stopped = false;
  private revisionWaiters: { rev: number; resolve: () => void }[] = [];
  private indexes = new Map<string, { fn: (o: AnyObject) => string | undefined; map: Map<string, Map<string, AnyObject>> }>();

  constructor(
    private readonly store: Store,
    readonly kind: KindInfo,
    private readonly windowSize = 20_000,
  ) {}

  get revision(): number {
    return this._revision;
  }

  /** How many watchers (HTTP watches) this cache feeds. */
  get watcherCount(): number {
    return this.subs.size;
  }

  async start(): Promise<void> {
    // List, then watch from the list's revision: nothing lost, nothing twice.
    const r = await this.store.range(storePrefix(this.kind.plural));
    this.objects.clear();
    for (const idx of this.indexes.values()) idx.map.clear();
    for (const kv of r.kvs) {
      const o = decode(kv);
      this.objects.set(o.metadata.name, o);
      this.indexPut(o, undefined);
    }
    this.history = [];
    this.oldestRevision = r.revision;
    this.setRevision(r.revision);
    this.watch = this.store.watch(storePrefix(this.kind.plural), r.revision, {
      onBatch: (b) => this.apply(b),
      onError: (err) => this.restart(err),
    });
  }

  stop(): void {
    this.stopped = true;
    this.watch?.close();
    for (const s of this.subs) s.onError(new Error('server shutting down'));
    this.clearSubs();
  }

  private addSub(sub: Subscriber): void {
    this.subs.add(sub);
    if (!sub.trigger) return void this.broad.add(sub);
    const [field, value] = sub.trigger;
    let byValue = this.triggers.get(field);
    if (!byValue) this.triggers.set(field, (byValue = new Map()));
    let set = byValue.get(value);
    if (!set) byValue.set(value, (set = new Set()));
    set.add(sub);
  }

  private removeSub(sub: Subscriber): void {
    this.subs.delete(sub);
    this.broad.delete(sub);
    if (!sub.trigger) return;
    const byValue = this.triggers.get(sub.trigger[0]);
    const set = byValue?.get(sub.trigger[1]);
    set?.delete(sub);
    if (set && set.size === 0) byValue!.delete(sub.trigger[1]);
  }

  private clearSubs(): void {
    this.subs.clear();
    this.broad.clear();
    this.triggers.clear();
  }

  /** interested lists the subscribers an event could matter to: the broad ones, and those filed under the old or new object's field values. */
  private interested(events: CacheEvent[]): Set<Subscriber> {
    if (this.triggers.size === 0) return this.broad;
    const out = new Set(this.broad);
    for (const [field, byValue] of this.triggers) {
      const get = this.kind.fields[field]!;
      for (const e of events) {
        for (const o of [e.object, e.prev]) {
          if (!o) continue;
          const set = byValue.get(get(o) ?? '');
          if (set) for (const s of set) out.add(s);
        }
      }
    }
    return out;
  }

  /**
   * addIndex maintains a secondary index (client-go's Indexer), e.g. tasks by
   * service or by node, so a reconcile reads its own objects without scanning
   * every object of the kind. Idempotent by name.
   */
  addIndex(name: string, fn: (o: AnyObject) => string | undefined): void {
    if (this.indexes.has(name)) return;
    const map = new Map<string, Map<string, AnyObject>>();
    this.indexes.set(name, { fn, map });
    for (const o of this.objects.values()) this.indexPut(o, undefined);
  }

  /** eachIndexed iterates the objects whose index value equals `value`, without copying them into an array (the cache must not change meanwhile). */
  eachIndexed(name: string, value: string): Iterable<AnyObject> {
    const idx = this.indexes.get(name);
    if (!idx) throw new Error(`no index "${name}" on ${this.kind.plural}`);
    return idx.map.get(value)?.values() ?? [];
  }

  /** byIndex returns the objects whose index value equals `value`. */
  byIndex(name: string, value: string): AnyObject[] {
    const idx = this.indexes.get(name);
    if (!idx) throw new Error(`no index "${name}" on ${this.kind.plural}`);
    const objs = idx.map.get(value);
    return objs ? [...objs.values()] : [];
  }

  private indexPut(now: AnyObject | undefined, prev: AnyObject | undefined): void {
    for (const { fn, map } of this.indexes.values()) {
      const was = prev && fn(prev);
      const is = now && fn(now);
      if (was !== undefined && was !== is) {
        const objs = map.get(was);
        objs?.delete(prev!.metadata.name);
        if (objs && objs.size === 0) map.delete(was);
      }
      if (is !== undefined) {
        let objs = map.get(is);
        if (!objs) map.set(is, (objs = new Map()));
        objs.set(now!.metadata.name, now!);
      }
    }
  }

  /** onDidChange registers an in-process listener (controllers' informers); returns an unsubscribe. */
  onDidChange(fn: (e: CacheEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  list(filter?: FieldFilter, labels?: Record<string, string>): AnyObject[] {
    return this.filter([...this.objects.values()], filter, labels).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  }

  /** filter applies field and label selectors to objects read elsewhere (a consistent store read). */
  filter(objects: AnyObject[], filter?: FieldFilter, labels?: Record<string, string>): AnyObject[] {
    return objects.filter(this.matcher(filter, labels));
  }

  /**
   * subscribe streams changes after `afterRevision` that match the filter. An
   * object that stops matching is delivered as DELETED (as Kubernetes does).
   */
  subscribe(
    afterRevision: number,
    filter: FieldFilter | undefined,
    labels: Record<string, string> | undefined,
    onEvents: Subscriber['onEvents'],
    onError: Subscriber['onError'],
  ): () => void {
    if (afterRevision < this.oldestRevision) throw new GoneError(afterRevision, this.oldestRevision);
    const first = Object.entries(filter ?? {})[0];
    const sub: Subscriber = { after: afterRevision, matches: this.matcher(filter, labels), onEvents, onError, ...(first ? { trigger: first } : {}) };
    const backlog = this.history.filter((e) => e.revision > afterRevision);
    const out = this.project(sub, backlog);
    if (out.length) onEvents(out, this._revision);
    this.addSub(sub);
    return () => this.removeSub(sub);
  }

  private matcher(filter?: FieldFilter, labels?: Record<string, string>): (o: AnyObject) => boolean {
    const f = Object.entries(filter ?? {});
    const l = Object.entries(labels ?? {});
    if (!f.length && !l.length) return () => true;
    for (const [field] of f) {
      if (!this.kind.fields[field]) throw new BatonError('BATON_ERR_BAD_REQUEST', `field selector "${field}" is not supported for ${this.kind.plural}; supported: ${Object.keys(this.kind.fields).join(', ')}`);
    }
    return (o) => f.every(([k, v]) => this.kind.fields[k]!(o) === v) && l.every(([k, v]) => o.metadata.labels?.[k] === v);
  }

  private project(sub: Subscriber, events: CacheEvent[]): CacheEvent[] {
    const out: CacheEvent[] = [];
    for (const e of events) {
      if (e.revision <= sub.after) continue;
      const now = e.type !== 'DELETED' && sub.matches(e.object);
      const before = e.prev ? sub.matches(e.prev) : false;
      if (now) out.push(before || e.type !== 'MODIFIED' ? e : { ...e, type: 'ADDED' });
      else if (before) out.push({ type: 'DELETED', object: e.type === 'DELETED' ? e.object : e.prev!, revision: e.revision });
    }
    return out;
  }

  private apply(batch: WatchBatch): void {
    const events: CacheEvent[] = [];
    for (const we of batch.events) {
      const name = we.kv.key.slice(storePrefix(this.kind.plural).length);
      const prev = this.objects.get(name);
      if (we.type === 'put') {
        const o = decodeWatched(we.kv);
        this.objects.set(name, o);
        this.indexPut(o, prev);
        events.push({ type: prev ? 'MODIFIED' : 'ADDED', object: o, prev, revision: we.kv.modRevision });
      } else if (prev) {
        this.objects.delete(name);
        this.indexPut(undefined, prev);
        events.push({ type: 'DELETED', object: { ...prev, metadata: { ...prev.metadata, resourceVersion: String(we.kv.modRevision) } }, prev, revision: we.kv.modRevision });
      }
    }
    if (events.length) {
      for (const e of events) this.history.push(e);
      // Trimmed in steps (at twice the window, back to the window): each event is copied O(1) times, not once per batch.
      if (this.history.length > 2 * this.windowSize) {
        const drop = this.history.length - this.windowSize;
        this.oldestRevision = this.history[drop - 1]!.revision;
        this.history = this.history.slice(drop);
      }
    }
    this.setRevision(batch.revision);
    for (const e of events) for (const l of this.listeners) l(e);
    // A progress notice (a bookmark) goes to everyone; events only to those they could concern.
    for (const sub of batch.progress ? this.subs : this.interested(events)) {
      const out = this.project(sub, events);
      if (out.length || batch.progress) {
        try {
          sub.onEvents(out, batch.revision);
        } catch (err) {
          this.removeSub(sub);
          sub.onError(err as Error);
        }
      }
    }
  }

  private setRevision(rev: number): void {
    if (rev < this._revision) return;
    this._revision = rev;
    if (this.revisionWaiters.length === 0) return;
    const due = this.revisionWaiters.filter((w) => w.rev <= rev);
    this.revisionWaiters = this.revisionWaiters.filter((w) => w.rev > rev);
    for (const w of due) w.resolve();
  }

  /**
   * caughtUp resolves once the cache reflects store revision `rev` (a
   * controller's own writes), or after `timeoutMs`: a controller that wrote
   * in steps reads its own writes before planning the next step.
   */
  caughtUp(rev: number, timeoutMs = 5000): Promise<void> {
    if (this._revision >= rev || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      // On timeout the waiter leaves the list too: a list that gave up must not linger until the revision comes.
      const done = () => {
        clearTimeout(t);
        this.revisionWaiters = this.revisionWaiters.filter((x) => x !== w);
        resolve();
      };
      const w = { rev, resolve: done };
      const t = setTimeout(done, timeoutMs);
      t.unref?.();
      this.revisionWaiters.push(w);
    });
  }

  /**
   * syncedTo tells whether the cache has seen every write up to store
   * revision `rev`, asking the store for a progress notification (the cache's
   * revision only moves with its own kind's changes) and waiting up to
   * `timeoutMs`. Kubernetes' consistent reads from cache work this way: a list
   * is answered from memory, yet never older than the store when it was asked.
   */
  async syncedTo(rev: number, timeoutMs: number): Promise<boolean> {
    if (this._revision >= rev) return true;
    this.watch?.requestProgress();
    await this.caughtUp(rev, timeoutMs);
    return this._revision >= rev;
  }

  private restart(err: Error): void {
    if (this.stopped) return;
    // Our own store watch broke: every subscriber must relist, and so do we.
    for (const s of this.subs) s.onError(err instanceof StoreCompactedError ? new GoneError(err.requested, err.compactRevision) : err);
    this.clearSubs();
    const before = new Map(this.objects);
    this.start()
      .then(() => {
        // Tell in-process listeners what changed while we were blind.
        for (const [name, o] of this.objects) {
          const p = before.get(name);
          if (!p || p.metadata.resourceVersion !== o.metadata.resourceVersion) for (const l of this.listeners) l({ type: p ? 'MODIFIED' : 'ADDED', object: o, prev: p, revision: this._revision });
        }
        for (const [name, p] of before) if (!this.objects.has(name)) for (const l of this.listeners) l({ type: 'DELETED', object: p, prev: p, revision: this._revision });
      })
      .catch(() => setTimeout(() => this.restart(err), 500).unref());
  }
}
