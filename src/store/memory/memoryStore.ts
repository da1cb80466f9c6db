/**
 * The in-memory Store backend: for tests, `baton dev` style single runs and
 * as the reference the conformance suite holds the SQLite backend to.
 */
import { BaseStore, lowerBound, type KvBackend, type LeaseRecord, type StoreOptions } from '../common.js';
import type { KeyValue, WatchEvent } from '../store.js';

/** Version is one write of a key: its value, or a tombstone (kv undefined). */
interface Version {
  revision: number;
  kv?: KeyValue;
}

/** LogEntry is one txn's events, kept for watch replay until compacted. */
interface LogEntry {
  revision: number;
  events: readonly WatchEvent[];
}

/**
 * MemoryKv keeps, per key, its versions in revision order (for get and
 * ranges at a past revision) plus a sorted key index (for prefix scans), and
 * an append-only log of txns (for watch replay). Stored objects are frozen,
 * so callers share them safely.
 */
class MemoryKv implements KvBackend {
  private rev = 0;
  private compacted = 0;
  private readonly versions = new Map<string, Version[]>();
  /** Every key with at least one version kept, in code-point order. */
  private keys: string[] = [];
  private log: LogEntry[] = [];
  private readonly leases = new Map<number, LeaseRecord>();
  private readonly leaseKeys = new Map<number, Set<string>>();
  private nextLeaseId = 1;

  revision(): number {
    return this.rev;
  }

  compactRevision(): number {
    return this.compacted;
  }

  get(key: string): KeyValue | undefined {
    const vs = this.versions.get(key);
    return vs?.[vs.length - 1]!.kv;
  }

  range(prefix: string, start: string, rev: number, limit: number): KeyValue[] {
    const out: KeyValue[] = [];
    for (let i = lowerBound(this.keys, start); i < this.keys.length; i++) {
      const key = this.keys[i]!;
      if (!key.startsWith(prefix)) break;
      const kv = versionAt(this.versions.get(key)!, rev);
      if (!kv) continue;
      out.push(kv);
      if (limit && out.length >= limit) break;
    }
    return out;
  }

  history(prefix: string, afterRevision: number): WatchEvent[] {
    const out: WatchEvent[] = [];
    for (let i = this.logIndexAfter(afterRevision); i < this.log.length; i++) {
      for (const e of this.log[i]!.events) if (e.kv.key.startsWith(prefix)) out.push(e);
    }
    return out;
  }

  atomically<T>(fn: () => T): T {
    return fn();
  }

  snapshot<T>(fn: () => T): T {
    return fn();
  }

  write(revision: number, events: readonly WatchEvent[]): void {
    for (const e of events) {
      const key = e.kv.key;
      let vs = this.versions.get(key);
      if (!vs) {
        vs = [];
        this.versions.set(key, vs);
        this.keys.splice(lowerBound(this.keys, key), 0, key);
      }
      if (e.prevKv?.lease) this.leaseKeys.get(e.prevKv.lease)?.delete(key);
      if (e.type === 'put') {
        vs.push({ revision, kv: e.kv });
        if (e.kv.lease) this.leaseKeys.get(e.kv.lease)?.add(key);
      } else {
        vs.push({ revision });
      }
    }
    this.log.push({ revision, events });
    this.rev = revision;
  }

  compact(revision: number): void {
    const cut = this.logIndexAfter(revision);
    const touched = new Set<string>();
    for (let i = 0; i < cut; i++) for (const e of this.log[i]!.events) touched.add(e.kv.key);
    this.log = this.log.slice(cut);
    let emptied = false;
    for (const key of touched) {
      const vs = this.versions.get(key)!;
      // Keep the newest version at or below `revision` (unless it is a tombstone) and everything after.
      let keep = vs.findIndex((v) => v.revision > revision);
      if (keep === -1) keep = vs.length;
      if (keep > 0 && vs[keep - 1]!.kv) keep--;
      vs.splice(0, keep);
      if (vs.length === 0) {
        this.versions.delete(key);
        emptied = true;
      }
    }
    if (emptied) this.keys = this.keys.filter((k) => this.versions.has(k));
    this.compacted = revision;
  }

  keysWithLease(id: number): string[] {
    return [...(this.leaseKeys.get(id) ?? [])];
  }

  leaseCreate(ttlSeconds: number, expiresAt: number): number {
    const id = this.nextLeaseId++;
    this.leases.set(id, { id, ttlSeconds, expiresAt });
    this.leaseKeys.set(id, new Set());
    return id;
  }

  lease(id: number): LeaseRecord | undefined {
    const l = this.leases.get(id);
    return l && { ...l };
  }

  leaseSetExpiry(id: number, expiresAt: number): void {
    const l = this.leases.get(id);
    if (l) l.expiresAt = expiresAt;
  }

  leaseDelete(id: number): void {
    this.leases.delete(id);
    this.leaseKeys.delete(id);
  }

  expiredLeases(now: number): number[] {
    const out: number[] = [];
    for (const l of this.leases.values()) if (l.expiresAt <= now) out.push(l.id);
    return out;
  }

  close(): void {
    this.versions.clear();
    this.keys = [];
    this.log = [];
  }

  /** logIndexAfter is the index of the first log entry with revision > rev. */
  private logIndexAfter(rev: number): number {
    let lo = 0;
    let hi = this.log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.log[mid]!.revision <= rev) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** versionAt is the key's value as of rev (the newest version at or below it), undefined if absent then. */
function versionAt(vs: readonly Version[], rev: number): KeyValue | undefined {
  for (let i = vs.length - 1; i >= 0; i--) if (vs[i]!.revision <= rev) return vs[i]!.kv;
  return undefined;
}

/**
 * MemoryStore is the Store backend "memory": everything in process memory,
 * nothing persisted. It keeps the full contract (revisions, history for
 * watches and past-revision ranges, compaction, leases on the given clock),
 * so tests and single-process runs behave exactly as with SQLite.
 */
export class MemoryStore extends BaseStore {
  constructor(opts: StoreOptions = {}) {
    super('memory', new MemoryKv(), opts);
  }
}
