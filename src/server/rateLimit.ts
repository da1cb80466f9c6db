/**
 * AddressRateLimiter is a token bucket per source address, for the callers
 * the server cannot yet tell apart by credentials: the join routes and
 * failed authentications. Each address may spend `burst` at once, refilled
 * at `perSecond`; the buckets live in one Map in order of last use, at most
 * `maxAddresses` of them (the least recently seen is forgotten, which only
 * gives it a full bucket again), so many addresses cannot grow memory.
 *
 * Written here rather than taken from @fastify/rate-limit: that plugin counts
 * every request to a route, while a failed authentication is known only
 * after the credential check, and a valid credential must never be charged.
 */
import { isIPv4 } from 'node:net';
import type { Clock } from '../base/clock.js';
import { BatonError } from '../base/errors.js';

export interface RateLimitOptions {
  clock: Clock;
  burst: number;
  perSecond: number;
  maxAddresses: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class AddressRateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly o: RateLimitOptions) {}

  /**
   * spend takes one request from the bucket of `ip` (its addressKey), or
   * throws BATON_ERR_RATE_LIMITED naming the limit and when to retry.
   */
  spend(ip: string, what: string): void {
    const { clock, burst, perSecond } = this.o;
    const key = addressKey(ip);
    const now = clock.now();
    const b = this.buckets.get(key) ?? { tokens: burst, at: now };
    this.buckets.delete(key);
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
    b.at = now;
    this.buckets.set(key, b);
    for (const old of this.buckets.keys()) {
      if (this.buckets.size <= this.o.maxAddresses) break;
      this.buckets.delete(old);
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return;
    }
    const waitMs = perSecond > 0 ? Math.ceil(((1 - b.tokens) / perSecond) * 1000) : 60_000;
    throw new BatonError(
      'BATON_ERR_RATE_LIMITED',
      `too many ${what} from ${key}: at most ${burst} at once and ${perSecond} a second per address (rateLimitBurst, rateLimitPerSecond); retry in ${Math.ceil(waitMs / 1000)} s`,
      [],
      waitMs,
    );
  }

  /** Addresses tracked now, for tests. */
  get size(): number {
    return this.buckets.size;
  }
}

/**
 * addressKey is what a per-address limit counts: an IPv4 address (also when
 * written IPv4-mapped, ::ffff:a.b.c.d), or an IPv6 address's /64, since one
 * host is commonly given a whole /64 and could otherwise pick a fresh
 * address per request.
 */
export function addressKey(ip: string): string {
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  if (isIPv4(v4)) return v4;
  const bare = ip.split('%')[0]!.toLowerCase();
  if (!bare.includes(':')) return bare;
  const [head = '', tail = ''] = bare.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = bare.includes('::') ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
