/**
 * Tokens authenticates API callers. Tokens are stored hashed (SHA-256) with a
 * role, so RBAC later only adds rules; a leaked store never leaks a token.
 * Format: `baton.<id>.<secret>`; the id finds the record, the hash checks it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { systemClock, type Clock } from '../base/clock.js';
import type { Store } from '../store/store.js';

/** admin and agent come with tokens (and agents with node certificates); server is another server of the cluster, by its client certificate (CN baton-server), which no token and no node has. */
export type Role = 'admin' | 'agent' | 'server';

export interface TokenRecord {
  id: string;
  hash: string;
  role: Role;
  description: string;
  createdAt: string;
}

const PREFIX = '/baton/tokens/';

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export interface TokensOptions {
  clock?: Clock;
  /** How long an id the store does not know is remembered as unknown (default 10 s). */
  missTtlMs?: number;
  /** How many unknown ids are remembered at most (default 1024); the least recently seen go first. */
  maxMisses?: number;
}

/**
 * Tokens keeps every token record it has found (tokens are made only by
 * admins, so these are few) and, apart, the ids it looked up and did not
 * find: a bounded set with a short life, so a caller sending made-up ids
 * cannot grow memory, and one bad id costs one store read per `missTtlMs`.
 */
export class Tokens {
  private readonly known = new Map<string, TokenRecord>();
  /** Unknown id → when it stops being trusted as unknown; in order of last use (a Map keeps insertion order). */
  private readonly misses = new Map<string, number>();
  /** Store reads in flight, so concurrent requests with one id share one read. */
  private readonly reading = new Map<string, Promise<TokenRecord | undefined>>();
  private readonly clock: Clock;
  private readonly missTtlMs: number;
  private readonly maxMisses: number;

  constructor(
    private readonly store: Store,
    o: TokensOptions = {},
  ) {
    this.clock = o.clock ?? systemClock;
    this.missTtlMs = o.missTtlMs ?? 10_000;
    this.maxMisses = o.maxMisses ?? 1024;
  }

  /** create makes a new token and returns it in clear text: the only time it exists unhashed. */
  async create(role: Role, description: string): Promise<string> {
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const token = `baton.${id}.${secret}`;
    const rec: TokenRecord = { id, hash: sha256(token), role, description, createdAt: new Date().toISOString() };
    await this.store.txn([], [{ type: 'put', key: PREFIX + id, value: JSON.stringify(rec) }]);
    this.misses.delete(id);
    this.known.set(id, rec);
    return token;
  }

  /** cached is the token's role when its record is already in memory and it matches; no store read. */
  cached(token: string): Role | undefined {
    const id = tokenId(token);
    const rec = id === undefined ? undefined : this.known.get(id);
    return rec ? check(rec, token) : undefined;
  }

  /** verify returns the token's role, or undefined for an unknown or malformed token. */
  async verify(token: string): Promise<Role | undefined> {
    const id = tokenId(token);
    if (id === undefined) return undefined;
    const rec = this.known.get(id) ?? (await this.lookup(id));
    return rec ? check(rec, token) : undefined;
  }

  /** lookup reads an id not in memory: once per id at a time, and not again while it is remembered as unknown. */
  private lookup(id: string): Promise<TokenRecord | undefined> | undefined {
    const now = this.clock.now();
    const until = this.misses.get(id);
    if (until !== undefined) {
      this.misses.delete(id);
      if (until > now) {
        this.misses.set(id, until);
        return undefined;
      }
    }
    let read = this.reading.get(id);
    if (!read) {
      read = this.store.get(PREFIX + id).then((kv) => {
        if (kv) {
          const rec = JSON.parse(kv.value) as TokenRecord;
          this.known.set(id, rec);
          return rec;
        }
        this.misses.set(id, this.clock.now() + this.missTtlMs);
        for (const old of this.misses.keys()) {
          if (this.misses.size <= this.maxMisses) break;
          this.misses.delete(old);
        }
        return undefined;
      });
      this.reading.set(id, read);
      void read.finally(() => this.reading.delete(id)).catch(() => {});
    }
    return read;
  }

  /** Sizes of the caches, for tests and metrics. */
  get cacheSize(): { known: number; misses: number; reading: number } {
    return { known: this.known.size, misses: this.misses.size, reading: this.reading.size };
  }
}

function tokenId(token: string): string | undefined {
  return /^baton\.([0-9a-f]{12})\.[A-Za-z0-9_-]+$/.exec(token)?.[1];
}

function check(rec: TokenRecord, token: string): Role | undefined {
  const a = Buffer.from(rec.hash, 'hex');
  const b = Buffer.from(sha256(token), 'hex');
  return a.length === b.length && timingSafeEqual(a, b) ? rec.role : undefined;
}
