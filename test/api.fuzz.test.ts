/**
 * API fuzzing: every declared route (ROUTES) called with arbitrary params,
 * query strings, bodies (JSON values, raw text, wrong content types, large
 * ones) and callers (the admin token, a node certificate, a wrong token,
 * nobody), over the real HTTPS server on the memory store. The answer is
 * always a catalogue error or a success, never a 500, and the server keeps
 * serving. The figures (cases run, answers by class, 500s seen) are printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';
import type { Transport } from '../src/api/tls.js';
import { readFileSync } from 'node:fs';
import { ROUTES, routesTable } from '../src/server/routes/route.js';
import { joinCluster } from '../src/agent/join.js';

/** Cases per route (each route's own property run); the seed is printed on a failure to replay it. */
const RUNS = Number(process.env.BATON_FUZZ_RUNS ?? 100);
/** A streaming answer (a watch, a log follow) is read this long, then left. */
const READ_MS = 1500;

// The server starts as the file is collected: its routes fill ROUTES, which the cases below are made from. Its
// per-address rate limit is lifted (server.limits.test.ts tests it), so every request reaches the routes' checks.
const s: MemoryServer = await memoryServer('baton-fuzz-', { heartbeatIntervalMs: 1000, rateLimitBurst: 1e9, rateLimitPerSecond: 1e9 });

describe('the API under fuzzed requests', () => {
  let admin: Transport;
  let node: Transport;
  const answers = new Map<string, number>();
  let cases = 0;
  let fives = 0;

  beforeAll(async () => {
    admin = s.transport();
    await s.node('w1', '127.0.0.1');
    const c = await joinCluster({ server: s.server.url, token: s.server.joinToken, name: 'w2', address: '127.0.0.1' });
    node = s.transport({ certPem: c.certPem, keyPem: c.keyPem });
  }, 60_000);

  afterAll(async () => {
    console.log(`API fuzz: ${cases} requests over ${ROUTES.length} routes, ${fives} answered 5xx; answers by status: ${[...answers].sort().map(([k, n]) => `${k}×${n}`).join(', ')}`);
    await s.stop();
  });

  /** A path segment: names that exist, names that cannot, traversal, long and odd text. */
  const segment = fc.oneof(
    fc.constantFrom('w1', 'app_web', '-', '..', '%2e%2e', 'a'.repeat(300), 'b'.repeat(600), 'sha256:' + '0'.repeat(64), '%00', '%F0%9F%92%A5', 'x.y.z'),
    fc.string({ minLength: 1, maxLength: 40 }).map(encodeURIComponent),
  );
  /** A query value: numbers out of range, flags, times, regular expressions, long text. */
  const value = fc.oneof(fc.constantFrom('true', 'false', '-1', '0', '1e309', '99999999999999999999', 'abc', '', '10m', '2026-12-04T00:00:00Z', '(', '.*', 'all'), fc.string({ maxLength: 60 }));
  const key = fc.oneof(fc.constantFrom('limit', 'continue', 'watch', 'resourceVersion', 'labelSelector', 'fieldSelector', 'tail', 'since', 'grep', 'follow', 'container', 'revision', 'timeoutMs', 'afterId', 'service', 'node', 'type', 'dryRun', 'prune'), fc.string({ minLength: 1, maxLength: 12 }));
  const query = fc.dictionary(key, value, { maxKeys: 4 });
  /** A body: any JSON value, objects shaped like ours with wrong leaves, raw text, or none. */
  const body = fc.oneof(
    fc.constant(undefined),
    fc.jsonValue({ maxDepth: 4 }).map((v) => ({ type: 'application/json', text: JSON.stringify(v) })),
    fc.record({ name: fc.jsonValue({ maxDepth: 1 }), spec: fc.jsonValue({ maxDepth: 3 }), items: fc.jsonValue({ maxDepth: 3 }), status: fc.jsonValue({ maxDepth: 2 }), services: fc.jsonValue({ maxDepth: 3 }) }, { requiredKeys: [] }).map((v) => ({ type: 'application/json', text: JSON.stringify(v) })),
    fc.string({ maxLength: 200 }).map((t) => ({ type: 'application/json', text: t })),
    fc.string({ maxLength: 200 }).map((t) => ({ type: 'text/plain', text: t })),
    fc.constant({ type: 'application/json', text: `{"a":${'['.repeat(3000)}${']'.repeat(3000)}}` }),
    fc.constant({ type: 'application/octet-stream', text: 'x'.repeat(70_000) }),
  );
  const caller = fc.constantFrom('admin', 'node', 'bad-token', 'nobody');

  for (const route of ROUTES) {
    it(`${route.method} ${route.url}: never a 5xx`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(segment, { minLength: 2, maxLength: 2 }), query, body, caller, async ([p1, p2], q, b, who) => {
          let n = 0;
          const path = route.url.replace(/:[a-z]+/g, () => (n++ === 0 ? p1! : p2!));
          const qs = new URLSearchParams(q).toString();
          const t = who === 'node' ? node : admin;
          const headers: Record<string, string> = {};
          if (who === 'admin') headers.authorization = `Bearer ${s.server.adminToken}`;
          if (who === 'bad-token') headers.authorization = 'Bearer baton_0000000000000000.not-a-secret';
          if (b) headers['content-type'] = b.type;
          const abort = new AbortController();
          const timer = setTimeout(() => abort.abort(), READ_MS);
          try {
            const res = await t.fetch(`${s.server.url}${path}${qs ? `?${qs}` : ''}`, { method: route.method, headers, ...(b && route.method !== 'GET' ? { body: b.text } : {}), signal: abort.signal, ...t.init } as RequestInit);
            cases++;
            answers.set(String(res.status), (answers.get(String(res.status)) ?? 0) + 1);
            if (res.status >= 500) fives++;
            let text = '';
            try {
              text = await res.text();
            } catch {
              /* a stream, left open until READ_MS: its status is what counts */
            }
            expect(res.status, `${route.method} ${path}?${qs} → ${res.status} ${text.slice(0, 200)}`).toBeLessThan(500);
            if (res.status >= 400 && text) expect(JSON.parse(text).error.code, `${route.method} ${path}`).toMatch(/^BATON_ERR_/);
          } finally {
            clearTimeout(timer);
          }
        }),
        { numRuns: RUNS },
      );
    }, 120_000);
  }

  it('answers each caller by the access table: strangers 401, a node on a route not its own 403, the admin on its routes past the authorizer', async () => {
    const ask = async (route: (typeof ROUTES)[number], who: 'admin' | 'node' | 'nobody' | 'bad-token') => {
      const t = who === 'node' ? node : admin;
      const headers: Record<string, string> = who === 'admin' ? { authorization: `Bearer ${s.server.adminToken}` } : who === 'bad-token' ? { authorization: 'Bearer baton_0000000000000000.not-a-secret' } : {};
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), READ_MS);
      try {
        const res = await t.fetch(`${s.server.url}${route.url.replace(/:[a-z]+/g, 'no-such-object')}`, { method: route.method, headers, signal: abort.signal, ...t.init } as RequestInit);
        await res.text().catch(() => '');
        return res.status;
      } finally {
        clearTimeout(timer);
      }
    };
    for (const r of ROUTES) {
      if (r.access === 'open') continue;
      const where = `${r.method} ${r.url}`;
      expect(await ask(r, 'nobody'), where).toBe(401);
      expect(await ask(r, 'bad-token'), where).toBe(401);
      if (!r.access.includes('agent')) expect(await ask(r, 'node'), where).toBe(403);
      const a = await ask(r, 'admin');
      if (r.access.includes('admin')) expect([401, 403], where).not.toContain(a);
      else expect(a, where).toBe(403);
    }
  });

  it('is the table docs/architecture.md gives', () => {
    const doc = readFileSync(new URL('../docs/architecture.md', import.meta.url), 'utf8');
    const m = /<!-- routes:begin -->\n([\s\S]*?)\n<!-- routes:end -->/.exec(doc);
    expect(m?.[1], 'docs/architecture.md between the routes markers (regenerate it from routesTable())').toBe(routesTable());
  });

  it('keeps serving after all of it', async () => {
    const res = await admin.fetch(`${s.server.url}/healthz`, { ...admin.init } as RequestInit);
    expect(res.status).toBe(200);
    expect(fives).toBe(0);
    expect(cases).toBeGreaterThanOrEqual(ROUTES.length * RUNS * 0.9);
  });
});
