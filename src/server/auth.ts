/**
 * Tokens authenticates API callers. Tokens are stored hashed (SHA-256) with a
 * role, so RBAC later only adds rules; a leaked store never leaks a token.
 * Format: `baton.<id>.<secret>`; the id finds the record, the hash checks it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { systemClock, type Clock } from '../base/clock.js';
import { BatonError } from '../base/errors.js';
import type { Op, Store } from '../store/store.js';

/**
 * admin does everything; deployer applies, scales, rolls out and reads logs
 * in its stacks, and reads the rest; viewer reads. Tokens carry these
 * three. agent is a node (its certificate); server is another server of
 * the cluster, by its client certificate (CN baton-server), which no token
 * and no node has.
 */
export type Role = 'admin' | 'deployer' | 'viewer' | 'agent' | 'server';

/** The roles a token may carry (baton token create --role). */
export const TOKEN_ROLES = ['admin', 'deployer', 'viewer'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

export interface TokenRecord {
  id: string;
  hash: string;
  role: Role;
  description: string;
  createdAt: string;
  /** Its name (baton token create NAME); the first admin tokens have none. */
  name?: string;
  /** The stacks a deployer acts in. */
  stacks?: string[];
  /** After this it is refused (--ttl). */
  expiresAt?: string;
}

/** Who a token is, once checked: its role, and the stacks a deployer acts in. */
export interface Caller {
  role: Role;
  /** The token's id (the part of it that is not secret). */
  id: string;
  name?: string;
  stacks?: string[];
}

const PREFIX = '/baton/tokens/';
/** A token's name → its id: names are unique (created only while absent). */
const NAMES = '/baton/tokennames/';

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export interface TokensOptions {
  clock?: Clock;
  /** How long an id the store does not know is remembered as unknown (default 10 s). */
  missTtlMs?: number;
  /** How many unknown ids are remembered at most (default 1024); the least recently seen go first. */
  maxMisses?: number;
  /** How long a token found is trusted before it is read again (a revocation on another server reaches this one within it; default 5 s). */
  recheckMs?: number;
}

/**
 * Tokens keeps every token record it has found (tokens are made only by
 * admins, so these are few) and, apart, the ids it looked up and did not
 * find: a bounded set with a short life, so a caller sending made-up ids
 * cannot grow memory, and one bad id costs one store read per `missTtlMs`.
 */
export class Tokens {
  /** Records found, with when they were read (trusted for recheckMs). */
  private readonly known = new Map<string, { rec: TokenRecord; at: number }>();
  /** Unknown id → when it stops being trusted as unknown; in order of last use (a Map keeps insertion order). */
  private readonly misses = new Map<string, number>();
  /** Store reads in flight, so concurrent requests with one id share one read. */
  private readonly reading = new Map<string, Promise<TokenRecord | undefined>>();
  private readonly clock: Clock;
  private readonly missTtlMs: number;
  private readonly maxMisses: number;
  private readonly recheckMs: number;

  constructor(
    private readonly store: Store,
    o: TokensOptions = {},
  ) {
    this.clock = o.clock ?? systemClock;
    this.missTtlMs = o.missTtlMs ?? 10_000;
    this.maxMisses = o.maxMisses ?? 1024;
    this.recheckMs = o.recheckMs ?? 5000;
  }

  /**
   * create makes a new token and returns it in clear text: the only time it
   * exists unhashed. A named one is refused (conflict) when the name is taken.
   */
  async create(role: Role, description: string, o: { name?: string; stacks?: string[]; expiresAt?: string } = {}): Promise<string> {
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const token = `baton.${id}.${secret}`;
    const rec: TokenRecord = { id, hash: sha256(token), role, description, createdAt: new Date(this.clock.now()).toISOString(), ...(o.name ? { name: o.name } : {}), ...(o.stacks ? { stacks: o.stacks } : {}), ...(o.expiresAt ? { expiresAt: o.expiresAt } : {}) };
    const puts: Op[] = [{ type: 'put', key: PREFIX + id, value: JSON.stringify(rec) }];
    if (o.name) puts.push({ type: 'put', key: NAMES + o.name, value: id });
    const r = await this.store.txn(o.name ? [{ key: NAMES + o.name, target: 'version', op: '=', value: 0 }] : [], puts);
    if (!r.succeeded) throw new BatonError('BATON_ERR_CONFLICT', `a token named "${o.name}" exists already (baton token revoke ${o.name} first)`);
    this.misses.delete(id);
    this.known.set(id, { rec, at: this.clock.now() });
    return token;
  }

  /** list returns every token's record, without its hash. */
  async list(): Promise<Omit<TokenRecord, 'hash'>[]> {
    const r = await this.store.range(PREFIX);
    return r.kvs.map((kv) => {
      const { hash: _h, ...rest } = JSON.parse(kv.value) as TokenRecord;
      return rest;
    });
  }

  /** revoke deletes a named token: refused at once here, and on every other server within recheckMs. */
  async revoke(name: string): Promise<void> {
    const kv = await this.store.get(NAMES + name);
    if (!kv) throw new BatonError('BATON_ERR_NOT_FOUND', `no token is named "${name}" (baton token ls)`);
    await this.store.txn([], [{ type: 'delete', key: NAMES + name }, { type: 'delete', key: PREFIX + kv.value }]);
    this.known.delete(kv.value);
  }

  /** cached is the caller when the token's record is in memory, fresh, and matches; no store read. */
  cached(token: string): Caller | undefined {
    const id = tokenId(token);
    const k = id === undefined ? undefined : this.known.get(id);
    if (!k || this.clock.now() - k.at >= this.recheckMs) return undefined;
    return this.check(k.rec, token);
  }

  /** verify returns the caller a token is, or undefined for an unknown, expired or malformed token. */
  async verify(token: string): Promise<Caller | undefined> {
    const id = tokenId(token);
    if (id === undefined) return undefined;
    const k = this.known.get(id);
    const rec = k && this.clock.now() - k.at < this.recheckMs ? k.rec : await this.lookup(id);
    return rec ? this.check(rec, token) : undefined;
  }

  private check(rec: TokenRecord, token: string): Caller | undefined {
    if (rec.expiresAt && Date.parse(rec.expiresAt) <= this.clock.now()) return undefined;
    const a = Buffer.from(rec.hash, 'hex');
    const b = Buffer.from(sha256(token), 'hex');
    if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined;
    return { role: rec.role, id: rec.id, ...(rec.name ? { name: rec.name } : {}), ...(rec.stacks ? { stacks: rec.stacks } : {}) };
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
          this.known.set(id, { rec, at: this.clock.now() });
          return rec;
        }
        // Gone (revoked): forgotten here too.
        this.known.delete(id);
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

