/**
 * Registry is the typed object layer over the Store: it turns API objects into
 * key-values and back, and owns the object-model rules:
 *
 * - `metadata.resourceVersion` is the key's modRevision (never stored in the
 *   value, so it cannot disagree with the store);
 * - a spec write carries a resourceVersion precondition and bumps
 *   `generation` only when the spec changed; it never touches status;
 * - a status write never touches spec or metadata. It is retried internally
 *   against the latest object, so a batched agent report cannot conflict with
 *   a concurrent spec write. Its own optional precondition is
 *   `metadata.statusVersion`, a counter bumped on each status write.
 */
import { randomUUID } from 'node:crypto';
import { BatonError } from '../base/errors.js';
import { stableStringify, withProps } from '../base/json.js';

export { stableStringify };
import { systemClock, type Clock } from '../base/clock.js';
import type { Compare, KeyValue, Op, Store } from '../store/store.js';
import { takeParsed } from '../store/store.js';
import { FENCED_TXN_OPS } from './election.js';
import { storeKey, storePrefix, type KindInfo } from '../api/kinds.js';
import { API_VERSION, type ObjectMeta } from '../api/types.js';

export interface AnyObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: any;
  status: any;
}

/** WriteChange is one object a write creates (no before), changes, or deletes (no after). */
export interface WriteChange {
  before?: AnyObject;
  after?: AnyObject;
}

/**
 * WriteGuard adds its own compares and puts to a write of its kind, in the
 * write's transaction, or throws to refuse it (a stack's quota: quotas.ts).
 * A compare of a guard that fails makes the write read again and retry.
 */
export type WriteGuard = (changes: readonly WriteChange[]) => Promise<{ compares: Compare[]; ops: Op[] }>;

export interface NewObject<S = unknown, St = unknown> {
  metadata: { name: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerRefs?: ObjectMeta['ownerRefs'] };
  spec: S;
  status: St;
}

export function decode<T = AnyObject>(kv: KeyValue): T {
  const obj = JSON.parse(kv.value) as AnyObject;
  obj.metadata.resourceVersion = String(kv.modRevision);
  return obj as T;
}

/** stored is obj as the store keeps it: without resourceVersion (the key's modRevision is the truth). */
function stored(obj: AnyObject): AnyObject {
  const { resourceVersion: _rv, ...meta } = obj.metadata;
  return { ...obj, metadata: meta as ObjectMeta };
}

/**
 * putOp is the put that stores obj, carrying its parsed form for this
 * process's watch caches (decodeWatched), so the one cache per kind does not
 * parse what was just serialized. The object is shared from then on: a
 * writer never changes an object, or any part of it, after writing it.
 */
function putOp(key: string, obj: AnyObject): Op {
  const parsed = stored(obj);
  if (FREEZE_WRITTEN) deepFreeze(parsed);
  return { type: 'put', key, value: JSON.stringify(parsed), parsed };
}

/**
 * decodeWatched is decode for a watch event: the writer's parsed object when
 * this process wrote it (a shallow copy with its resourceVersion), else the
 * parsed value.
 */
export function decodeWatched<T = AnyObject>(kv: KeyValue): T {
  const p = takeParsed(kv) as AnyObject | undefined;
  if (!p) return decode<T>(kv);
  return withProps(p, { metadata: withProps(p.metadata, { resourceVersion: String(kv.modRevision) }) }) as T;
}

/**
 * Under tests, written objects are frozen, deep: a writer (or a reader of a
 * watch cache) that changes one afterwards throws at that line instead of
 * silently changing what the caches hold.
 */
const FREEZE_WRITTEN = process.env.VITEST !== undefined || process.env.BATON_FREEZE_WRITTEN === '1';

function deepFreeze(o: unknown): void {
  if (o === null || typeof o !== 'object' || Object.isFrozen(o)) return;
  Object.freeze(o);
  for (const v of Object.values(o)) deepFreeze(v);
}

/** How often a guarded write is tried again when only what its guard read changed. */
const GUARD_ATTEMPTS = 10;

export class Registry {
  constructor(
    readonly store: Store,
    private readonly clock: Clock = systemClock,
  ) {}

  private readonly guards = new Map<string, WriteGuard>();

  /** guard sets the write guard of a kind: create, update and mutate add what it returns to their transaction. */
  guard(kind: KindInfo, fn: WriteGuard): void {
    this.guards.set(kind.plural, fn);
  }

  /** guardOps: what a kind's guard adds to a write of these changes (nothing when it has none); writers that build their own transactions (apply) call it. */
  async guardOps(kind: KindInfo, changes: readonly WriteChange[]): Promise<{ compares: Compare[]; ops: Op[] }> {
    const g = this.guards.get(kind.plural);
    return g ? g(changes) : { compares: [], ops: [] };
  }

  key(kind: KindInfo, name: string): string {
    return storeKey(kind.plural, name);
  }

  async get<T = AnyObject>(kind: KindInfo, name: string): Promise<T | undefined> {
    const kv = await this.store.get(this.key(kind, name));
    return kv ? decode<T>(kv) : undefined;
  }

  async mustGet<T = AnyObject>(kind: KindInfo, name: string): Promise<T> {
    const obj = await this.get<T>(kind, name);
    if (!obj) throw new BatonError('BATON_ERR_NOT_FOUND', `${kind.kind.toLowerCase()} "${name}" not found`);
    return obj;
  }

  async list<T = AnyObject>(kind: KindInfo, opts: { limit?: number; continue?: string; atRevision?: number } = {}) {
    const r = await this.store.range(storePrefix(kind.plural), opts);
    return { items: r.kvs.map((kv) => decode<T>(kv)), revision: r.revision, continue: r.continue };
  }

  /** build makes a stored object for a create: uid, generation 1, timestamps. */
  build(kind: KindInfo, o: NewObject): AnyObject {
    return {
      apiVersion: API_VERSION,
      kind: kind.kind,
      metadata: {
        name: o.metadata.name,
        uid: o.metadata.uid ?? randomUUID(),
        resourceVersion: '0',
        generation: 1,
        labels: o.metadata.labels ?? {},
        ...(o.metadata.annotations ? { annotations: o.metadata.annotations } : {}),
        ownerRefs: o.metadata.ownerRefs ?? [],
        creationTimestamp: new Date(this.clock.now()).toISOString(),
        statusVersion: '0',
      },
      spec: o.spec,
      status: o.status,
    };
  }

  /** createOp returns the compare and put that create obj only if its key is absent. */
  createOp(kind: KindInfo, obj: AnyObject): { compare: Compare; op: Op } {
    const key = this.key(kind, obj.metadata.name);
    return { compare: { key, target: 'create', op: '=', value: 0 }, op: putOp(key, obj) };
  }

  async create<T = AnyObject>(kind: KindInfo, o: NewObject): Promise<T> {
    const obj = this.build(kind, o);
    const { compare, op } = this.createOp(kind, obj);
    for (let attempt = 0; attempt < GUARD_ATTEMPTS; attempt++) {
      const g = await this.guardOps(kind, [{ after: obj }]);
      const r = await this.store.txn([compare, ...g.compares], [op, ...g.ops]);
      if (r.succeeded) {
        obj.metadata.resourceVersion = String(r.revision);
        return obj as T;
      }
      // The name is taken, or (only with a guard) what the guard read changed meanwhile: read again.
      if (g.compares.length === 0 || (await this.store.get(compare.key))) break;
    }
    throw new BatonError('BATON_ERR_ALREADY_EXISTS', `${kind.kind.toLowerCase()} "${obj.metadata.name}" already exists`);
  }

  /**
   * specUpdate computes the object a spec write produces from `current`: the
   * new spec and labels, the current status, generation bumped if the spec changed.
   */
  specUpdate(current: AnyObject, next: { spec: unknown; labels?: Record<string, string>; annotations?: Record<string, string> }): AnyObject {
    const changed = stableStringify(current.spec) !== stableStringify(next.spec);
    return {
      ...current,
      metadata: {
        ...current.metadata,
        labels: next.labels ?? current.metadata.labels,
        ...(next.annotations ? { annotations: next.annotations } : {}),
        generation: current.metadata.generation + (changed ? 1 : 0),
      },
      spec: next.spec,
    };
  }

  /** updateOp returns the compare and put for writing obj over the version `current` was read at. */
  updateOp(kind: KindInfo, current: AnyObject, obj: AnyObject): { compare: Compare; op: Op } {
    const key = this.key(kind, obj.metadata.name);
    return {
      compare: { key, target: 'mod', op: '=', value: Number(current.metadata.resourceVersion) },
      op: putOp(key, obj),
    };
  }

  /** update writes a new spec (and labels) with a resourceVersion precondition; status is kept. */
  async update<T = AnyObject>(kind: KindInfo, name: string, resourceVersion: string | undefined, next: { spec: unknown; labels?: Record<string, string> }): Promise<T> {
    const current = await this.mustGet(kind, name);
    if (resourceVersion !== undefined && resourceVersion !== current.metadata.resourceVersion) {
      throw conflict(kind, name, resourceVersion, current.metadata.resourceVersion);
    }
    const obj = this.specUpdate(current, next);
    const { compare, op } = this.updateOp(kind, current, obj);
    for (let attempt = 0; attempt < GUARD_ATTEMPTS; attempt++) {
      const g = await this.guardOps(kind, [{ before: current, after: obj }]);
      const r = await this.store.txn([compare, ...g.compares], [op, ...g.ops]);
      if (r.succeeded) {
        obj.metadata.resourceVersion = String(r.revision);
        return obj as T;
      }
      const now = await this.store.get(compare.key);
      if (g.compares.length === 0 || now?.modRevision !== compare.value) break;
    }
    throw conflict(kind, name, current.metadata.resourceVersion, '(newer)');
  }

  /** mutate re-reads, applies fn and writes with CAS, retrying on conflict: for server-side read-modify-write. */
  async mutate<T extends AnyObject = AnyObject>(kind: KindInfo, name: string, fn: (cur: T) => T | undefined, attempts = 10): Promise<T | undefined> {
    for (let i = 0; i < attempts; i++) {
      const current = await this.get<T>(kind, name);
      if (!current) return undefined;
      const next = fn(structuredClone(current));
      if (!next) return current;
      const { compare, op } = this.updateOp(kind, current, next);
      const g = await this.guardOps(kind, [{ before: current, after: next }]);
      const r = await this.store.txn([compare, ...g.compares], [op, ...g.ops]);
      if (r.succeeded) {
        next.metadata.resourceVersion = String(r.revision);
        return next;
      }
    }
    throw new BatonError('BATON_ERR_CONFLICT', `${kind.kind.toLowerCase()} "${name}" kept changing; gave up after ${attempts} attempts`);
  }

  /**
   * updateStatus writes statuses in as few txns as possible (≤128 ops each).
   * Each item may carry a uid (the object must still be that incarnation) and
   * a statusVersion precondition. Returns one result per item, in order.
   */
  async updateStatus(
    kind: KindInfo,
    items: { name: string; uid?: string; statusVersion?: string; status: unknown }[],
    /** Fields of the current status the writer does not own: kept when the new status leaves them out. */
    keep: readonly string[] = [],
    /** Where to read current objects on the first try (a watch cache); a stale read fails its CAS and the retry reads the store. */
    cached?: (name: string) => AnyObject | undefined,
  ): Promise<({ ok: true; object: AnyObject } | { ok: false; error: BatonError })[]> {
    const results: ({ ok: true; object: AnyObject } | { ok: false; error: BatonError })[] = new Array(items.length);
    let pending = items.map((item, index) => ({ item, index }));
    for (let attempt = 0; attempt < 10 && pending.length > 0; attempt++) {
      const retry: typeof pending = [];
      for (let i = 0; i < pending.length; i += FENCED_TXN_OPS) {
        const chunk = pending.slice(i, i + FENCED_TXN_OPS);
        const compares: Compare[] = [];
        const ops: Op[] = [];
        const written: { index: number; obj: AnyObject; entry: (typeof pending)[number] }[] = [];
        for (const entry of chunk) {
          const { item, index } = entry;
          let current = attempt === 0 ? cached?.(item.name) : undefined;
          // A cached copy may be behind: it never decides a refusal on its own.
          if (!current || (item.uid && item.uid !== current.metadata.uid) || (item.statusVersion !== undefined && item.statusVersion !== (current.metadata.statusVersion ?? '0'))) current = await this.get(kind, item.name);
          if (!current) {
            results[index] = { ok: false, error: new BatonError('BATON_ERR_NOT_FOUND', `${kind.kind.toLowerCase()} "${item.name}" not found`) };
            continue;
          }
          if (item.uid && item.uid !== current.metadata.uid) {
            results[index] = { ok: false, error: new BatonError('BATON_ERR_CONFLICT', `${kind.kind.toLowerCase()} "${item.name}" was replaced (uid ${current.metadata.uid}, not ${item.uid})`) };
            continue;
          }
          const sv = current.metadata.statusVersion ?? '0';
          if (item.statusVersion !== undefined && item.statusVersion !== sv) {
            results[index] = { ok: false, error: new BatonError('BATON_ERR_CONFLICT', `status of ${kind.kind.toLowerCase()} "${item.name}" is at version ${sv}, not ${item.statusVersion}`) };
            continue;
          }
          let status = item.status;
          if (keep.length && status && typeof status === 'object') {
            const cur = (current.status ?? {}) as Record<string, unknown>;
            const next = withProps(status as Record<string, unknown>, {}) as Record<string, unknown>;
            for (const k of keep) if (next[k] === undefined && cur[k] !== undefined) next[k] = cur[k];
            status = next;
          }
          const obj = withProps(current, { metadata: withProps(current.metadata, { statusVersion: String(Number(sv) + 1) }), status }) as AnyObject;
          const { compare, op } = this.updateOp(kind, current, obj);
          compares.push(compare);
          ops.push(op);
          written.push({ index, obj, entry });
        }
        if (ops.length === 0) continue;
        const r = await this.store.txn(compares, ops);
        if (r.succeeded) {
          for (const w of written) {
            w.obj.metadata.resourceVersion = String(r.revision);
            results[w.index] = { ok: true, object: w.obj };
          }
        } else {
          retry.push(...written.map((w) => w.entry));
        }
      }
      pending = retry;
    }
    for (const { item, index } of pending) {
      results[index] = { ok: false, error: new BatonError('BATON_ERR_CONFLICT', `${kind.kind.toLowerCase()} "${item.name}" kept changing`) };
    }
    return results;
  }

  deleteOp(kind: KindInfo, obj: AnyObject): { compare: Compare; op: Op } {
    const key = this.key(kind, obj.metadata.name);
    return { compare: { key, target: 'mod', op: '=', value: Number(obj.metadata.resourceVersion) }, op: { type: 'delete', key } };
  }

  async delete(kind: KindInfo, name: string, pre: { resourceVersion?: string; uid?: string } = {}): Promise<AnyObject> {
    const current = await this.mustGet(kind, name);
    if (pre.uid && pre.uid !== current.metadata.uid) throw new BatonError('BATON_ERR_CONFLICT', `${kind.kind.toLowerCase()} "${name}" has uid ${current.metadata.uid}, not ${pre.uid}`);
    if (pre.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion) {
      throw conflict(kind, name, pre.resourceVersion, current.metadata.resourceVersion);
    }
    const { compare, op } = this.deleteOp(kind, current);
    const r = await this.store.txn([compare], [op]);
    if (!r.succeeded) throw conflict(kind, name, current.metadata.resourceVersion, '(newer)');
    return current;
  }
}

function conflict(kind: KindInfo, name: string, had: string, now: string): BatonError {
  return new BatonError(
    'BATON_ERR_CONFLICT',
    `${kind.kind.toLowerCase()} "${name}" was modified (your resourceVersion ${had}, current ${now}); read it again and retry`,
  );
}
