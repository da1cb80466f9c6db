/**
 * AuditLog records every mutating API request a person or a program made
 * with a token (admin, deployer, viewer) or without credentials (a join):
 * who (the token's name, else its id), its role, the route, the object
 * (the path's names), the result (status and error code), the source
 * address and the time. Nodes' and servers' own traffic (status reports,
 * heartbeats, blob copies) is not audited: it is the cluster talking to
 * itself, thousands of times a minute.
 *
 * Entries live in the store (so every server of a cluster on etcd writes
 * and reads one log), a key each, `/baton/audit/<ms since the epoch, 13
 * digits>-<random>`, so they sort by time; the leader's housekeeping
 * deletes those older than the retention (auditRetentionMs, default 7
 * days). A write that fails is logged and never fails the request.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Store } from '../store/store.js';

export const AUDIT_PREFIX = '/baton/audit/';

export interface AuditEntry {
  /** Its key's tail (time and random), unique: a follower skips what it has seen. */
  id?: string;
  time: string;
  /** The token's name (`baton token create NAME`), else `token <id>`; `anonymous` without credentials. */
  user: string;
  role: string;
  method: string;
  /** The route as declared (`/api/v1/services/:name/scale`). */
  route: string;
  /** The path's names (`name=shop_web`), empty when it has none. */
  object: string;
  status: number;
  /** The catalogue code of a refusal. */
  error?: string;
  address: string;
}

export interface AuditQuery {
  user?: string;
  /** RFC 3339: only entries at or after it. */
  since?: string;
  /** The newest this many (default 1000). */
  limit?: number;
}

function keyOf(ms: number): string {
  return `${AUDIT_PREFIX}${String(ms).padStart(13, '0')}-${randomBytes(4).toString('hex')}`;
}

export class AuditLog {
  constructor(
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  /** record writes one entry; never throws (a store that refuses is logged). */
  record(e: AuditEntry): void {
    this.store.txn([], [{ type: 'put', key: keyOf(Date.parse(e.time)), value: JSON.stringify(e) }]).catch((err) => this.log.warn({ err: String(err), route: e.route }, 'could not write an audit entry'));
  }

  /** list returns the newest entries that match, oldest first. */
  async list(q: AuditQuery = {}): Promise<AuditEntry[]> {
    const since = q.since ? Date.parse(q.since) : 0;
    const out: AuditEntry[] = [];
    let cont: string | undefined;
    do {
      const r = await this.store.range(AUDIT_PREFIX, { limit: 1000, ...(cont ? { continue: cont } : {}) });
      for (const kv of r.kvs) {
        if (Number(kv.key.slice(AUDIT_PREFIX.length, AUDIT_PREFIX.length + 13)) < since) continue;
        const e = { id: kv.key.slice(AUDIT_PREFIX.length), ...(JSON.parse(kv.value) as AuditEntry) };
        if (q.user === undefined || e.user === q.user) out.push(e);
      }
      cont = r.continue;
    } while (cont);
    return out.slice(-(q.limit ?? 1000));
  }

  /** prune deletes the entries older than `before` (ms); returns how many. */
  async prune(before: number): Promise<number> {
    let n = 0;
    for (;;) {
      const r = await this.store.range(AUDIT_PREFIX, { limit: 128 });
      const old = r.kvs.filter((kv) => Number(kv.key.slice(AUDIT_PREFIX.length, AUDIT_PREFIX.length + 13)) < before);
      if (!old.length) return n;
      await this.store.txn([], old.map((kv) => ({ type: 'delete' as const, key: kv.key })));
      n += old.length;
      if (old.length < r.kvs.length) return n;
    }
  }
}
