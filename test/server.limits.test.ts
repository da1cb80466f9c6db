/**
 * What a caller without credentials can make the server hold, and how often:
 * unknown token ids (a bounded, short-lived set: one store read per id per
 * window), rate-limit buckets, join nonces (capped per address and in all,
 * 429 with Retry-After), and refused joins (one Event with a count, not a
 * row each). Real TLS sockets from distinct loopback addresses where the
 * source address matters; fastify's inject for the ten thousand requests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatonServer } from '../src/server/server.js';
import { Tokens } from '../src/server/auth.js';
import { addressKey } from '../src/server/rateLimit.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { FakeClock } from '../src/base/clock.js';
import type { ApiClient } from '../src/api/client.js';
import { eventKind } from '../src/api/kinds.js';
import { generateKeyAndCsr } from '../src/base/pki.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';

/** A MemoryStore that counts its reads. */
class CountingStore extends MemoryStore {
  reads = 0;
  override async get(key: string) {
    this.reads++;
    return super.get(key);
  }
}

const unknownToken = (i: number) => `baton.${i.toString(16).padStart(12, '0')}.secret`;

describe('Tokens: unknown ids', () => {
  it('remembers at most maxMisses of them, each for missTtlMs, with one store read per id per window', async () => {
    const clock = new FakeClock();
    const store = new CountingStore();
    const tokens = new Tokens(store, { clock, missTtlMs: 5000, maxMisses: 64, recheckMs: 60_000 });
    const admin = await tokens.create('admin', 'test');
    for (let i = 0; i < 10_000; i++) expect(await tokens.verify(unknownToken(i))).toBeUndefined();
    expect(tokens.cacheSize).toEqual({ known: 1, misses: 64, reading: 0 });
    expect(store.reads).toBe(10_000);

    // The same bad id again, within the window: no read; many at once: one read between them.
    store.reads = 0;
    await tokens.verify(unknownToken(9_999));
    await Promise.all(Array.from({ length: 20 }, () => tokens.verify(unknownToken(20_000))));
    expect(store.reads).toBe(1);
    clock.advance(5000);
    await tokens.verify(unknownToken(9_999));
    expect(store.reads).toBe(2);

    // A known token is verified from memory, never counted among the misses.
    expect(tokens.cached(admin)).toMatchObject({ role: 'admin' });
    expect(await tokens.verify(admin)).toMatchObject({ role: 'admin' });
    expect(tokens.cached(admin.slice(0, -1) + (admin.endsWith('A') ? 'B' : 'A'))).toBeUndefined();
    expect(store.reads).toBe(2);
  });
});

describe('addressKey', () => {
  it('counts an IPv4 address as itself (also IPv4-mapped) and an IPv6 address by its /64', () => {
    expect(addressKey('127.0.0.9')).toBe('127.0.0.9');
    expect(addressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('2001:db8:0:1:aaaa::1')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:db8:0:1:bbbb:cccc:dddd:eeee')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:db8::5')).toBe('2001:db8:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
  });
});

describe('limits for callers without credentials (real TLS, memory store)', () => {
  let m: MemoryServer;
  let server: BatonServer;
  let api: ApiClient;
  const BURST = 120;
  const from = (localAddress: string) => {
    const t = m.transport({ localAddress });
    return (method: string, path: string, body?: unknown) =>
      t.fetch(`${server.url}${path}`, { method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body), ...t.init } as RequestInit);
  };

  beforeAll(async () => {
    m = await memoryServer('baton-limits-', { rateLimitBurst: BURST, rateLimitPerSecond: 1, rateLimitAddresses: 256, authMissCacheSize: 64, authMissTtlMs: 60_000, maxJoinNonces: 10, maxJoinNoncesPerAddress: 4, joinNonceTtlMs: 30_000 });
    ({ server, api } = m);
  });

  afterAll(() => m.stop());

  it('answers 10,000 unknown tokens from 10,000 addresses with 401, holding at most the configured misses and addresses', async () => {
    for (let i = 0; i < 10_000; i++) {
      const res = await server.inject({ method: 'GET', url: '/api/v1/services', headers: { authorization: `Bearer ${unknownToken(i)}` }, remoteAddress: `127.10.${i >> 8}.${i & 255}` });
      if (res.statusCode !== 401) throw new Error(`request ${i}: ${res.statusCode} ${res.body}`);
    }
    expect(server.anonymousState).toMatchObject({ authMisses: 64, rateLimitAddresses: 256 });
    expect((await api.services()).items).toEqual([]);
  });

  it('answers failed authentications from one address beyond the burst with 429 and Retry-After; a valid token and other addresses still pass', async () => {
    const bad = (remoteAddress: string) => server.inject({ method: 'GET', url: '/api/v1/nodes', headers: { authorization: `Bearer ${unknownToken(1)}` }, remoteAddress });
    for (let i = 0; i < BURST; i++) expect((await bad('127.0.1.1')).statusCode).toBe(401);
    const limited = await bad('127.0.1.1');
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    expect(limited.json().error).toEqual({ code: 'BATON_ERR_RATE_LIMITED', message: `too many failed authentications from 127.0.1.1: at most ${BURST} at once and 1 a second per address (rateLimitBurst, rateLimitPerSecond); retry in 1 s` });
    // No token at all counts the same.
    expect((await server.inject({ method: 'GET', url: '/api/v1/nodes', remoteAddress: '127.0.1.1' })).statusCode).toBe(429);
    expect((await server.inject({ method: 'GET', url: '/api/v1/nodes', headers: { authorization: `Bearer ${server.adminToken}` }, remoteAddress: '127.0.1.1' })).statusCode).toBe(200);
    expect((await bad('127.0.1.2')).statusCode).toBe(401);
  });

  it('gives an address at most maxJoinNoncesPerAddress unused nonces, and the server at most maxJoinNonces, each refusal a 429 saying which', async () => {
    const a = from('127.0.2.1');
    const nonces: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await a('POST', '/api/v1/join/nonce', {});
      expect(res.status).toBe(200);
      nonces.push(((await res.json()) as { nonce: string }).nonce);
    }
    const over = await a('POST', '/api/v1/join/nonce', {});
    expect(over.status).toBe(429);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThanOrEqual(29);
    expect(((await over.json()) as any).error).toEqual({
      code: 'BATON_ERR_RATE_LIMITED',
      message: expect.stringMatching(/^127\.0\.2\.1 holds 4 unused join nonces, the most one address may \(maxJoinNoncesPerAddress\); finish a join in progress, or retry in (29|30) s when the oldest expires$/),
    });
    // Another address still gets one.
    const b = await from('127.0.2.2')('POST', '/api/v1/join/nonce', {});
    expect(b.status).toBe(200);
    nonces.push(((await b.json()) as { nonce: string }).nonce);
    // A join spends its nonce, right or wrong, and frees the slot.
    const { csrPem } = await generateKeyAndCsr('n1');
    const spend = (nonce: string) => server.inject({ method: 'POST', url: '/api/v1/join', payload: { name: 'n1', address: '127.0.2.1', csr: csrPem, nonce, proof: '0'.repeat(64) }, remoteAddress: '127.0.2.9' });
    expect((await spend(nonces.shift()!)).statusCode).toBe(403);
    const again = await a('POST', '/api/v1/join/nonce', {});
    expect(again.status).toBe(200);
    nonces.push(((await again.json()) as { nonce: string }).nonce);
    expect(server.anonymousState).toMatchObject({ joinNonces: 5, nonceAddresses: 2 });

    // The pool in all: 5 held, 5 more fit.
    for (const addr of ['127.0.2.3', '127.0.2.3', '127.0.2.3', '127.0.2.3', '127.0.2.4']) {
      const res = await server.inject({ method: 'POST', url: '/api/v1/join/nonce', payload: {}, remoteAddress: addr });
      expect(res.statusCode).toBe(200);
      nonces.push(res.json().nonce);
    }
    const full = await server.inject({ method: 'POST', url: '/api/v1/join/nonce', payload: {}, remoteAddress: '127.0.2.5' });
    expect(full.statusCode).toBe(429);
    expect(full.json().error.message).toMatch(/^the server holds 10 unused join nonces, its limit \(maxJoinNonces\): too many joins in progress; retry in \d+ s$/);
    expect(Number(full.headers['retry-after'])).toBeGreaterThan(0);
    // Spent, they leave nothing behind.
    for (const n of nonces) expect((await spend(n)).statusCode).toBe(403);
    expect(server.anonymousState).toMatchObject({ joinNonces: 0, nonceAddresses: 0 });
  });

  it('records 50 refused joins from one address as one JoinRefused event with a count of 50, sent again to watchers as MODIFIED', async () => {
    const ac = new AbortController();
    const seen: { type: string; count: number }[] = [];
    let listening = false;
    const watching = (async () => {
      for await (const ev of api.watchEvents({ type: 'JoinRefused', afterId: 1e9 }, ac.signal)) {
        if (ev.object.name === 'intruder') seen.push({ type: ev.type, count: ev.object.count });
        if (ev.object.name === 'probe') listening = true;
      }
    })().catch(() => {});
    // The watch is open once it hears an event posted after it was asked for.
    const until = async (ok: () => boolean, ms = 5000) => {
      const deadline = Date.now() + ms;
      while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    };
    for (let i = 0; !listening && i < 100; i++) {
      await api.postEvents([{ type: 'Warning', reason: 'JoinRefused', kind: 'Node', name: 'probe', message: `probe ${i}`, source: 'test' }]);
      await until(() => listening, 500);
    }
    const x = from('127.0.3.1');
    const { csrPem } = await generateKeyAndCsr('intruder');
    const joinsFrom = Date.now();
    try {
      for (let i = 0; i < 50; i++) {
        const { nonce } = (await (await x('POST', '/api/v1/join/nonce', {})).json()) as { nonce: string };
        const res = await x('POST', '/api/v1/join', { name: 'intruder', address: '127.0.3.1', csr: csrPem, nonce, proof: 'a'.repeat(64) });
        expect(res.status).toBe(403);
      }
    } finally {
      setTimeout(() => ac.abort(), 5000).unref();
    }
    const refused = (await api.events({ type: 'JoinRefused' })).items.filter((e) => e.name === 'intruder');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ count: 50, message: 'join of intruder from 127.0.3.1 refused: wrong join token' });
    expect(Date.parse(refused[0].lastTime)).toBeGreaterThan(Date.parse(refused[0].time));
    // The CLI's table shows the count.
    expect(eventKind.columns.find((c) => c.header === 'MESSAGE')!.get(refused[0])).toBe('join of intruder from 127.0.3.1 refused: wrong join token (x50)');
    await until(() => seen.length >= 50);
    ac.abort();
    await watching;
    expect(seen[0]).toEqual({ type: 'ADDED', count: 1 });
    expect(seen.at(-1)).toEqual({ type: 'MODIFIED', count: 50 });

    // That was 100 of the address's 120; the rest of its burst (and what refilled meanwhile, 1 a second), then 429 naming the limit.
    let allowed = 0;
    let limited = await x('POST', '/api/v1/join', {});
    while (limited.status !== 429) {
      expect(limited.status).toBe(400);
      allowed++;
      expect(allowed).toBeLessThanOrEqual(BURST - 100 + Math.ceil((Date.now() - joinsFrom) / 1000) + 1);
      limited = await x('POST', '/api/v1/join', {});
    }
    expect(allowed).toBeGreaterThanOrEqual(BURST - 100);
    expect(((await limited.json()) as any).error.message).toMatch(/^too many join requests from 127\.0\.3\.1: at most 120 at once and 1 a second per address/);
    expect(limited.headers.get('retry-after')).toBe('1');
  });

  it('validates a join body with its schema, every problem at once, and refuses a large one', async () => {
    const j = from('127.0.4.1');
    const res = await j('POST', '/api/v1/join', { name: 'not a name', address: 'a b', csr: 5, proof: 'xyz' });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as any;
    expect(error.code).toBe('BATON_ERR_BAD_REQUEST');
    expect(error.message).toBe('invalid request body');
    expect(error.details.map((d: { path: string }) => d.path)).toEqual(['body.name', 'body.address', 'body.csr', 'body.nonce', 'body.proof']);
    expect(error.details[1].message).toBe('must be the IP address this node is reached at');
    const own = await j('POST', '/api/v1/join', { name: 'baton-server', address: '127.0.4.1', csr: 'x', nonce: 'x', proof: 'a'.repeat(64) });
    expect(((await own.json()) as any).error.details).toEqual([{ path: 'body.name', message: `"baton-server" is the server's own identity; pick another --name` }]);
    const big = await j('POST', '/api/v1/join', { name: 'n', address: '127.0.4.1', csr: 'x'.repeat(100_000), nonce: 'x', proof: 'a'.repeat(64) });
    expect(big.status).toBe(413);
    expect(((await big.json()) as any).error.code).toBe('BATON_ERR_TOO_LARGE');
  });
});
