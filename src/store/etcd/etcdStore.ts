/**
 * The etcd Store backend: the Store contract on a real etcd cluster (v3 API
 * over gRPC, the `etcd3` client), for several Baton servers sharing one
 * state. It passes the same conformance suite as memory and SQLite.
 *
 * How the contract maps:
 * - Revisions are etcd's own: a txn's revision is its response header's,
 *   a key's createRevision/modRevision/version are etcd's, a lease expiry is
 *   one etcd revision. Nothing is stored but the values.
 * - Compare-and-swap is an etcd txn's compares (mod, create, version,
 *   value); ≤128 ops and the duplicate-key rule are checked before sending.
 * - Txns issued together commit in the order issued: each is sent when the
 *   one before it has answered. etcd orders only what it has received, and
 *   concurrent requests on one connection reach its raft log in any order.
 * - Ranges page with limit/continue at a fixed revision; a read at a past
 *   revision is served by the member without a quorum round trip
 *   (serializable), history being immutable, and asks the quorum only when
 *   that member has not reached it yet.
 * - Watches: see EtcdWatch (progress without RequestProgress, compaction).
 * - etcd has no call that says its compact revision; it is the lowest
 *   revision a read at which still succeeds, found by bisection above the
 *   highest one this store knows of (a read of one missing key per step).
 * - Leases: etcd's, with ids this store picks (below 2^48, so they fit a
 *   JavaScript number; etcd's own are 63-bit). A lease this store granted
 *   or kept alive is gone once its TTL has passed since that request was
 *   sent: etcd revokes only on its next sweep and would still attach keys to
 *   it meanwhile, so it is revoked first when a txn names it.
 * - Errors: etcd's "compacted" and "future revision" are StoreCompactedError
 *   and StoreFutureRevisionError; no quorum, no member, a deadline passed
 *   are StoreUnavailableError (see EtcdMembers).
 *
 * Every key lives under `prefix` (default "/baton/"), so several clusters
 * can share an etcd; `view(prefix)` is another Store on the same
 * connections (the event store keeps its keys beside the objects' that way).
 */
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { CompareResult, CompareTarget, type Etcd3, type ICompare, type IRangeRequest, type IRequestOp } from 'etcd3';
import { compareKeys, decodeContinue, encodeContinue, validateTxn } from '../common.js';
import {
  StoreClosedError,
  StoreCompactedError,
  StoreError,
  StoreFutureRevisionError,
  StoreLeaseNotFoundError,
  type Compare,
  type KeyValue,
  type Lease,
  type Op,
  type RangeOptions,
  type RangeResult,
  type Store,
  type TxnResult,
  type Watch,
  type WatchHandlers,
} from '../store.js';
import { EtcdWatch, type WatchHost } from './etcdWatch.js';
import { KeySpace } from './keySpace.js';
import { EtcdMembers, backendError, classify, type Call, type CallOptions, type EtcdConnectionOptions } from './members.js';

export interface EtcdStoreOptions extends EtcdConnectionOptions {
  /** Every key of this store lives under this etcd key prefix (default "/baton/"). */
  prefix?: string;
}

export const DEFAULT_ETCD_PREFIX = '/baton/';

const TARGETS: Record<Compare['target'], CompareTarget> = {
  mod: CompareTarget.Mod,
  create: CompareTarget.Create,
  version: CompareTarget.Version,
  value: CompareTarget.Value,
};
const RESULTS: Record<Compare['op'], CompareResult> = {
  '=': CompareResult.Equal,
  '!=': CompareResult.NotEqual,
  '<': CompareResult.Less,
  '>': CompareResult.Greater,
};

/** LEASE_ID_LIMIT: lease ids are picked below it, so that they and a KeyValue's lease stay exact as numbers. */
const LEASE_ID_LIMIT = 2 ** 48;

export class EtcdStore implements Store, WatchHost {
  readonly backend = 'etcd';
  readonly keys: KeySpace;
  private closed = false;
  /** The last write's settlement: each txn waits for the one issued before it. */
  private tail: Promise<unknown> = Promise.resolve();
  private readonly watches = new Set<EtcdWatch>();
  private readonly views = new Set<EtcdStore>();
  /** Leases this store granted or kept alive: when each is gone at the latest (performance.now() ms). */
  private readonly leaseDeadlines = new Map<number, number>();
  /** A revision the compact revision is known not to be below. */
  private knownCompact = 0;

  /** connect makes a store on the cluster (no call is made until the first use). */
  static connect(opts: EtcdStoreOptions): EtcdStore {
    return new EtcdStore(new EtcdMembers(opts), opts.prefix ?? DEFAULT_ETCD_PREFIX, undefined);
  }

  /** open connects and reads the current revision once, so that a cluster out of reach is said at start (StoreUnavailableError). */
  static async open(opts: EtcdStoreOptions): Promise<EtcdStore> {
    const store = EtcdStore.connect(opts);
    try {
      await store.currentRevision();
      return store;
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  private constructor(
    readonly members: EtcdMembers,
    prefix: string,
    private readonly owner: EtcdStore | undefined,
  ) {
    this.keys = new KeySpace(prefix);
  }

  /** view is a Store over the same connections with its keys under another prefix; closing this store closes it too. */
  view(prefix: string): EtcdStore {
    this.ensureOpen();
    const v = new EtcdStore(this.members, prefix, this);
    this.views.add(v);
    return v;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.ensureOpen();
    if (key === '') return undefined;
    const r = await this.read('get', (c, o) => c.kv.range({ key: this.keys.key(key) }, o));
    return r.kvs[0] && this.keys.kv(r.kvs[0]);
  }

  async range(prefix: string, opts: RangeOptions = {}): Promise<RangeResult> {
    this.ensureOpen();
    const at = opts.atRevision || 0; // 0 means current, as in etcd
    let from = opts.continue !== undefined ? decodeContinue(opts.continue) : prefix;
    if (compareKeys(from, prefix) < 0) from = prefix;
    const limit = opts.limit && opts.limit > 0 ? Math.floor(opts.limit) : 0;
    const req: IRangeRequest = { ...this.keys.range(prefix, from), limit, revision: at };
    let r;
    try {
      r = await this.read('range', (c, o) => c.kv.range({ ...req, serializable: at > 0 }, o));
    } catch (err) {
      // The member we asked has not applied `at` yet: the quorum says whether it is to come.
      if (at > 0 && classify(err) === 'future') r = await this.readAt(at, 'range', (c, o) => c.kv.range(req, o));
      else throw await this.revisionError(err, at, 'range');
    }
    const kvs = r.kvs.map((kv) => this.keys.kv(kv));
    const revision = at || Number(r.header.revision);
    if (r.more && kvs.length > 0) return { kvs, revision, continue: encodeContinue(kvs[kvs.length - 1]!.key + '\u0000') };
    return { kvs, revision };
  }

  txn(compares: Compare[], success: Op[], failure: Op[] = []): Promise<TxnResult> {
    try {
      this.ensureOpen();
      validateTxn(compares, success, failure);
    } catch (err) {
      return Promise.reject(err);
    }
    const run = this.tail.then(() => this.send(compares, success, failure));
    this.tail = run.catch(() => {});
    return run;
  }

  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Watch {
    this.ensureOpen();
    const w: EtcdWatch = new EtcdWatch(this, prefix, afterRevision, handlers, () => this.watches.delete(w));
    this.watches.add(w);
    return w;
  }

  async compact(revision: number): Promise<void> {
    this.ensureOpen();
    try {
      if (revision < 1) throw new Error('required revision has been compacted');
      await this.members.call('write', 'compact', (c, o) => c.kv.compact({ revision, physical: true }, o));
      this.knownCompact = Math.max(this.knownCompact, revision);
    } catch (err) {
      if (classify(err) === 'compacted') {
        // Compacting at the compact revision again is a no-op in the Store, an error in etcd.
        const compacted = await this.compactRevision();
        if (compacted <= revision) return;
        throw new StoreCompactedError(revision, compacted);
      }
      throw await this.revisionError(err, revision, 'compact');
    }
  }

  async currentRevision(): Promise<number> {
    this.ensureOpen();
    const r = await this.read('revision', (c, o) => c.kv.range({ key: this.probeKey(), count_only: true }, o));
    return Number(r.header.revision);
  }

  async compactRevision(): Promise<number> {
    this.ensureOpen();
    // The lowest readable revision, bisected above what is known: readable(x) holds exactly when x >= the compact revision.
    let lo = Math.max(1, this.knownCompact);
    if (await this.readable(lo)) return this.knownCompact;
    let hi = await this.currentRevision();
    while (lo + 1 < hi) {
      const mid = Math.floor((lo + hi) / 2);
      if (await this.readable(mid)) hi = mid;
      else lo = mid;
    }
    this.knownCompact = Math.max(this.knownCompact, hi);
    return hi;
  }

  /** compactedBelow (for watches): the compact revision if `rev` is below it. */
  async compactedBelow(rev: number): Promise<number | undefined> {
    return (await this.readable(rev)) ? undefined : this.compactRevision();
  }

  async leaseGrant(ttlSeconds: number): Promise<Lease> {
    this.ensureOpen();
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new StoreError(`lease TTL must be a positive whole number of seconds, not ${ttlSeconds}`, 'invalid_ttl');
    }
    for (let attempt = 0; ; attempt++) {
      const id = randomInt(1, LEASE_ID_LIMIT);
      const sent = performance.now();
      try {
        const r = await this.members.call('write', 'lease grant', (c, o) => c.leaseClient.leaseGrant({ ID: id, TTL: ttlSeconds }, o));
        // etcd raises a TTL below its minimum (1.5 election timeouts); the lease lives as long as it says.
        const granted = Number(r.TTL);
        this.leaseDeadlines.set(id, sent + granted * 1000);
        return { id, ttlSeconds: granted };
      } catch (err) {
        if (attempt < 3 && /lease already exists/.test(String(err))) continue;
        throw backendError(err, 'lease grant');
      }
    }
  }

  async leaseKeepAlive(id: number): Promise<void> {
    this.ensureOpen();
    if (await this.revokeIfPast(id)) throw new StoreLeaseNotFoundError(id);
    const sent = performance.now();
    let ttl: number;
    try {
      ttl = await this.members.call('read', 'lease keep-alive', (c, o) => keepAliveOnce(c, id, o));
    } catch (err) {
      throw backendError(err, 'lease keep-alive');
    }
    if (ttl <= 0) {
      this.leaseDeadlines.delete(id);
      throw new StoreLeaseNotFoundError(id);
    }
    this.leaseDeadlines.set(id, sent + ttl * 1000);
  }

  async leaseRevoke(id: number): Promise<void> {
    this.ensureOpen();
    this.leaseDeadlines.delete(id);
    try {
      await this.members.call('write', 'lease revoke', (c, o) => c.leaseClient.leaseRevoke({ ID: id }, o));
    } catch (err) {
      if (classify(err) === 'lease_not_found') throw new StoreLeaseNotFoundError(id);
      throw backendError(err, 'lease revoke');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail; // what was issued before close is answered
    for (const v of [...this.views]) await v.close();
    for (const w of [...this.watches]) w.end(new StoreClosedError());
    this.watches.clear();
    if (this.owner) this.owner.views.delete(this);
    else this.members.close();
  }

  private ensureOpen(): void {
    if (this.closed || this.members.isClosed) throw new StoreClosedError();
  }

  /** probeKey is a key no Store key maps to (the prefix itself), for reads that want only a revision. */
  private probeKey(): Buffer {
    return this.keys.prefix.length ? this.keys.prefix : Buffer.from([0]);
  }

  /** read is a read of `what`; what the Store has no name for is a StoreError 'backend' (classify() still reads etcd's words in it). */
  private async read<T>(what: string, fn: Call<T>): Promise<T> {
    try {
      return await this.members.call('read', what, fn);
    } catch (err) {
      throw backendError(err, what);
    }
  }

  /** readAt is a read at `at` asked of the quorum, with etcd's revision errors as the Store's. */
  private async readAt<T>(at: number, what: string, fn: Call<T>): Promise<T> {
    try {
      return await this.read(what, fn);
    } catch (err) {
      throw await this.revisionError(err, at, what);
    }
  }

  /** revisionError maps etcd's answer to a request at revision `rev` to the Store's error. */
  private async revisionError(err: unknown, rev: number, what: string): Promise<Error> {
    switch (classify(err)) {
      case 'compacted':
        return new StoreCompactedError(rev, await this.compactRevision());
      case 'future':
        return new StoreFutureRevisionError(rev, await this.currentRevision());
      default:
        return backendError(err, what);
    }
  }

  /** readable tells whether a read at `rev` (>= 1) succeeds: false when rev is below the compact revision. */
  private async readable(rev: number): Promise<boolean> {
    try {
      await this.read('revision check', (c, o) => c.kv.range({ key: this.probeKey(), revision: rev, count_only: true }, o));
      return true;
    } catch (err) {
      const f = classify(err);
      if (f === 'compacted') return false;
      if (f === 'future') return true;
      throw backendError(err, 'revision check');
    }
  }

  /** send runs one txn (its turn in the write order has come). */
  private async send(compares: Compare[], success: Op[], failure: Op[]): Promise<TxnResult> {
    const leases = [...new Set([...success, ...failure].flatMap((op) => (op.type === 'put' && op.lease ? [op.lease] : [])))];
    for (const id of leases) await this.revokeIfPast(id);
    try {
      const r = await this.members.call('write', 'txn', (c, o) =>
        c.kv.txn({ compare: compares.map((x) => this.compare(x)), success: success.map((x) => this.op(x)), failure: failure.map((x) => this.op(x)) }, o),
      );
      return { succeeded: r.succeeded, revision: Number(r.header.revision) };
    } catch (err) {
      if (classify(err) === 'lease_not_found') throw new StoreLeaseNotFoundError(await this.missingLease(leases));
      throw backendError(err, 'txn');
    }
  }

  private compare(c: Compare): ICompare {
    const base: ICompare = { key: this.keys.key(c.key), target: TARGETS[c.target], result: RESULTS[c.op] };
    switch (c.target) {
      case 'mod': return { ...base, mod_revision: Number(c.value) };
      case 'create': return { ...base, create_revision: Number(c.value) };
      case 'version': return { ...base, version: Number(c.value) };
      case 'value': return { ...base, value: Buffer.from(String(c.value), 'utf8') };
    }
  }

  private op(op: Op): IRequestOp {
    switch (op.type) {
      case 'put': return { request_put: { key: this.keys.key(op.key), value: Buffer.from(op.value, 'utf8'), lease: op.lease ?? 0 } };
      case 'delete': return { request_delete_range: { key: this.keys.key(op.key) } };
      case 'deletePrefix': return { request_delete_range: this.keys.range(op.prefix) };
    }
  }

  /** revokeIfPast revokes a lease of this store's whose TTL has run out (etcd has yet to notice); true when it did. */
  private async revokeIfPast(id: number): Promise<boolean> {
    const deadline = this.leaseDeadlines.get(id);
    if (deadline === undefined || performance.now() < deadline) return false;
    this.leaseDeadlines.delete(id);
    await this.leaseRevoke(id).catch((err) => {
      if (!(err instanceof StoreLeaseNotFoundError)) throw err;
    });
    return true;
  }

  /** missingLease finds which of a refused txn's leases etcd does not have. */
  private async missingLease(ids: number[]): Promise<number> {
    for (const id of ids) {
      const r = await this.read('lease lookup', (c, o) => c.leaseClient.leaseTimeToLive({ ID: id }, o)).catch(() => undefined);
      if (r && Number(r.TTL) < 0) return id;
    }
    return ids[0] ?? 0;
  }
}

/** keepAliveOnce renews a lease through a keep-alive stream of its own and returns the TTL etcd answered (-1: no such lease). */
function keepAliveOnce(c: Etcd3, id: number, o: CallOptions): Promise<number> {
  return c.leaseClient.leaseKeepAlive(o).then(
    (stream) =>
      new Promise<number>((resolve, reject) => {
        stream.on('data', (r) => {
          resolve(Number(r.TTL));
          stream.end();
        });
        stream.on('error', reject);
        stream.on('end', () => reject(new Error('keep-alive stream ended without an answer')));
        stream.write({ ID: id });
      }),
  );
}
