/**
 * Store is Baton's storage contract: the subset of etcd's key-value API that
 * both the embedded SQLite backend and a real etcd cluster can honour exactly.
 *
 * Why this shape: every controller, the watch cache and the API server are
 * written against revisions, compare-and-swap and ordered watches. Keeping the
 * contract to what etcd offers means the HA backend (etcd) is a new row in the
 * conformance suite, not a redesign.
 *
 * Rules every backend must keep (checked by `conformance.ts`):
 * - Every write (put or delete, including a lease expiry) gets a global,
 *   strictly increasing revision. All ops in one txn share one revision.
 * - `KeyValue.modRevision` is the revision of the key's last write; the API
 *   layer exposes it as `metadata.resourceVersion`.
 * - A watch delivers each change after `afterRevision` exactly once, in
 *   revision order, and periodically a progress notification carrying the
 *   current revision so a quiet, filtered watcher stays above the compaction
 *   point.
 * - A watch or range at a compacted revision fails with `StoreCompactedError`.
 * - Lease keep-alives never write a revision.
 */

export interface KeyValue {
  key: string;
  value: string;
  /** Revision at which the key was created (since its last deletion). */
  createRevision: number;
  /** Revision of the key's last modification. */
  modRevision: number;
  /** Number of writes since creation (1 after create). */
  version: number;
  /** Lease id the key is attached to, 0 when none. */
  lease: number;
}

export type CompareTarget = 'mod' | 'create' | 'version' | 'value';
export type CompareOp = '=' | '!=' | '<' | '>';

/**
 * Compare is one precondition of a txn. For a missing key, mod/create/version
 * are 0 and value is undefined, as in etcd (so `create = 0` means "absent"),
 * and every value compare on it fails, `!=` included, as etcd does.
 */
export interface Compare {
  key: string;
  target: CompareTarget;
  op: CompareOp;
  value: number | string;
}

export type Op =
  | {
      type: 'put';
      key: string;
      value: string;
      lease?: number;
      /**
       * The value already parsed (JSON), when the writer has it. A store in
       * this process hands it to the first watcher that asks (takeParsed), so
       * a watch cache need not parse what was just serialized; never stored,
       * and never to be mutated once written.
       */
      parsed?: unknown;
    }
  | { type: 'delete'; key: string }
  | { type: 'deletePrefix'; prefix: string };

/** PARSED carries a put's parsed value from its txn to the watch events of the same process. */
const PARSED = new WeakMap<KeyValue, unknown>();

/** attachParsed records kv's parsed value (a store's commit path). */
export function attachParsed(kv: KeyValue, parsed: unknown): void {
  PARSED.set(kv, parsed);
}

/** takeParsed returns kv's parsed value once (the first watcher to ask), or undefined: then parse kv.value. */
export function takeParsed(kv: KeyValue): unknown {
  const p = PARSED.get(kv);
  if (p !== undefined) PARSED.delete(kv);
  return p;
}

export interface TxnResult {
  succeeded: boolean;
  /** Store revision after the txn (unchanged when nothing was written). */
  revision: number;
}

export interface RangeOptions {
  /** Maximum number of keys to return; 0 or undefined for all. */
  limit?: number;
  /** Opaque token from a previous page: the next key to start from. */
  continue?: string;
  /** Read as of this revision; defaults to the current one. */
  atRevision?: number;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** The revision this range was read at. Pass it as `atRevision` for the next page. */
  revision: number;
  /** Present when more keys remain. */
  continue?: string;
}

export type WatchEvent =
  | { type: 'put'; kv: KeyValue; prevKv?: KeyValue }
  | { type: 'delete'; kv: KeyValue; prevKv?: KeyValue };

export interface WatchBatch {
  /** Changes in revision order; empty for a progress notification. */
  events: WatchEvent[];
  /** All changes up to and including this revision have been delivered. */
  revision: number;
  progress?: boolean;
}

export interface WatchHandlers {
  onBatch(batch: WatchBatch): void;
  /** The watch ended abnormally (compaction, slow consumer, store closed). */
  onError(err: Error): void;
}

export interface Watch {
  close(): void;
  /**
   * Asks for a progress notification (etcd's RequestProgress): once every
   * change before it has been delivered, the watch gets a batch with no
   * events at the store's current revision. A cache uses it to learn that it
   * has seen every write up to a revision, without waiting for the periodic
   * notification.
   */
  requestProgress(): void;
}

export interface Lease {
  id: number;
  ttlSeconds: number;
}

export interface Store {
  readonly backend: string;
  get(key: string): Promise<KeyValue | undefined>;
  range(prefix: string, opts?: RangeOptions): Promise<RangeResult>;
  /**
   * Applies `success` ops atomically if every compare holds, else `failure`. At most 128 ops
   * (success + failure) and 128 compares. As in etcd, a txn may not put one key twice or put
   * a key it also deletes (StoreError code 'duplicate_key').
   */
  txn(compares: Compare[], success: Op[], failure?: Op[]): Promise<TxnResult>;
  /** Streams changes under `prefix` with revision > afterRevision. */
  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Watch;
  /** Drops history at and below `revision` (superseded versions and tombstones). */
  compact(revision: number): Promise<void>;
  currentRevision(): Promise<number>;
  compactRevision(): Promise<number>;
  leaseGrant(ttlSeconds: number): Promise<Lease>;
  /** Extends a lease's life; writes no revision. Throws StoreLeaseNotFoundError when gone. */
  leaseKeepAlive(id: number): Promise<void>;
  /** Ends a lease and deletes its keys (one revision). */
  leaseRevoke(id: number): Promise<void>;
  close(): Promise<void>;
}

/** MAX_TXN_OPS matches etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;

export class StoreError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = 'StoreError';
  }
}

/** StoreCompactedError: the requested revision is gone; list again and re-watch. */
export class StoreCompactedError extends StoreError {
  constructor(readonly requested: number, readonly compactRevision: number) {
    super(`revision ${requested} has been compacted (compact revision ${compactRevision})`, 'compacted');
  }
}

export class StoreFutureRevisionError extends StoreError {
  constructor(readonly requested: number, readonly current: number) {
    super(`revision ${requested} is in the future (current revision ${current})`, 'future_revision');
  }
}

export class StoreLeaseNotFoundError extends StoreError {
  constructor(readonly leaseId: number) {
    super(`lease ${leaseId} not found`, 'lease_not_found');
  }
}

export class StoreTooManyOpsError extends StoreError {
  constructor(readonly count: number) {
    super(`txn has ${count} ops; the limit is ${MAX_TXN_OPS}`, 'too_many_ops');
  }
}

/**
 * StoreUnavailableError: the store could not answer in time (no quorum, no
 * member reachable, the request's deadline passed). For a write the outcome
 * is unknown: it may have been applied. Read again before deciding.
 */
export class StoreUnavailableError extends StoreError {
  constructor(message: string) {
    super(message, 'unavailable');
  }
}

export class StoreClosedError extends StoreError {
  constructor() {
    super('store is closed', 'closed');
  }
}

/**
 * prefixEnd returns the smallest key greater than every key starting with prefix (etcd's range_end).
 * Keys order by code point (UTF-8 byte order, as in etcd and SQLite), so the last code point is
 * incremented, not the last UTF-16 unit (which would wrap at U+FFFF or split a surrogate pair).
 * '' (and a prefix of only U+10FFFF) has no finite end: U+10FFFF is returned; treat '' as "all keys".
 */
export function prefixEnd(prefix: string): string {
  const cps = Array.from(prefix);
  while (cps.length > 0) {
    const last = cps.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) return cps.join('') + String.fromCodePoint(last === 0xd7ff ? 0xe000 : last + 1);
  }
  return '\u{10FFFF}';
}

/**
 * compareKeys orders keys (and values) by code point (UTF-8 byte order, as etcd and SQLite
 * do) rather than by UTF-16 unit as JS `<` does; the two differ only when
 * astral characters meet U+E000–U+FFFF, but both backends must agree.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        // Surrogates (D800–DFFF) encode code points above every unit in E000–FFFF.
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/** compareHolds evaluates one Compare against the key's current state (undefined when absent). */
export function compareHolds(c: Compare, kv: KeyValue | undefined): boolean {
  let actual: number | string | undefined;
  switch (c.target) {
    case 'mod': actual = kv?.modRevision ?? 0; break;
    case 'create': actual = kv?.createRevision ?? 0; break;
    case 'version': actual = kv?.version ?? 0; break;
    case 'value': actual = kv?.value; break;
  }
  // etcd fails every value compare on a missing key (even '!='): there is no value to compare.
  if (actual === undefined) return false;
  // Values order by their UTF-8 bytes, as etcd compares them, not by UTF-16 unit as JS `<` does.
  const order = typeof actual === 'string' && typeof c.value === 'string' ? compareKeys(actual, c.value) : Number(actual) - Number(c.value);
  switch (c.op) {
    case '=': return actual === c.value;
    case '!=': return actual !== c.value;
    case '<': return order < 0;
    case '>': return order > 0;
  }
}

/**
 * getOrCreate returns `key`'s value, or makes one (`make` runs only when the
 * key is absent) and writes it unless another writer did meanwhile: the
 * first write wins, and every caller returns the winner's value.
 */
export async function getOrCreate(store: Store, key: string, make: () => Promise<string>): Promise<string> {
  const have = await store.get(key);
  if (have) return have.value;
  const value = await make();
  const r = await store.txn([{ key, target: 'create', op: '=', value: 0 }], [{ type: 'put', key, value }]);
  if (r.succeeded) return value;
  const won = await store.get(key);
  if (!won) throw new StoreError(`${key} was written by another writer and deleted again`, 'conflict');
  return won.value;
}
