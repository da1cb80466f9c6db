/**
 * JoinNonces holds the one-time challenges of joins in progress, in memory.
 * Anyone may ask for one, so the pool is capped twice: in all, and per
 * source address (an address holding its share must use or outlive one
 * before it gets another, so one client cannot take every slot). A nonce
 * lives `ttlMs`; as every nonce lives as long, the pool (a Map, in order of
 * issue) expires from its front. An expired nonce is remembered for one
 * more `ttlMs` (as many at most as the pool holds), so a join that comes
 * too late hears "expired" rather than "never issued".
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../base/clock.js';
import { BatonError } from '../base/errors.js';

export interface NonceLimits {
  ttlMs: number;
  /** Unused nonces held at most in all. */
  max: number;
  /** Unused nonces one address (its addressKey) may hold at most. */
  perAddress: number;
}

interface Issued {
  expiresAt: number;
  address: string;
}

export class JoinNonces {
  private readonly nonces = new Map<string, Issued>();
  private readonly perAddress = new Map<string, number>();
  /** Expired nonce → when it expired, in that order. */
  private readonly lapsed = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    private readonly l: NonceLimits,
  ) {}

  /** issue hands `address` a new nonce, or throws BATON_ERR_RATE_LIMITED saying which cap was hit and when to retry. */
  issue(address: string): { nonce: string; expiresAt: string } {
    const { l } = this;
    const now = this.clock.now();
    this.expire(now);
    const retry = (oldest: number) => Math.max(1000, oldest - now);
    if ((this.perAddress.get(address) ?? 0) >= l.perAddress) {
      let oldest = Infinity;
      for (const v of this.nonces.values()) if (v.address === address) oldest = Math.min(oldest, v.expiresAt);
      const ms = retry(oldest);
      throw new BatonError(
        'BATON_ERR_RATE_LIMITED',
        `${address} holds ${l.perAddress} unused join nonces, the most one address may (maxJoinNoncesPerAddress); finish a join in progress, or retry in ${Math.ceil(ms / 1000)} s when the oldest expires`,
        [],
        ms,
      );
    }
    if (this.nonces.size >= l.max) {
      const ms = retry(this.nonces.values().next().value!.expiresAt);
      throw new BatonError('BATON_ERR_RATE_LIMITED', `the server holds ${l.max} unused join nonces, its limit (maxJoinNonces): too many joins in progress; retry in ${Math.ceil(ms / 1000)} s`, [], ms);
    }
    const nonce = randomBytes(24).toString('base64url');
    this.nonces.set(nonce, { expiresAt: now + l.ttlMs, address });
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    return { nonce, expiresAt: new Date(now + l.ttlMs).toISOString() };
  }

  /** take consumes a nonce: each is accepted once, and only before it expires. */
  take(nonce: string): 'ok' | 'unknown' | 'expired' {
    const v = this.nonces.get(nonce);
    if (!v) return this.lapsed.delete(nonce) ? 'expired' : 'unknown';
    this.drop(nonce, v);
    return v.expiresAt > this.clock.now() ? 'ok' : 'expired';
  }

  /** expire moves the nonces that expired by `now` aside, and forgets those expired a ttl ago. */
  expire(now = this.clock.now()): void {
    for (const [n, v] of this.nonces) {
      if (v.expiresAt > now) break;
      this.drop(n, v);
      this.lapsed.set(n, v.expiresAt);
    }
    for (const [n, at] of this.lapsed) {
      if (at + this.l.ttlMs > now && this.lapsed.size <= this.l.max) break;
      this.lapsed.delete(n);
    }
  }

  /** Nonces held, addresses holding any, and expired nonces remembered, for tests. */
  get size(): { nonces: number; addresses: number; lapsed: number } {
    return { nonces: this.nonces.size, addresses: this.perAddress.size, lapsed: this.lapsed.size };
  }

  private drop(nonce: string, v: Issued): void {
    this.nonces.delete(nonce);
    const left = (this.perAddress.get(v.address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(v.address, left);
    else this.perAddress.delete(v.address);
  }
}
