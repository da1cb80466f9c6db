/**
 * Tokens with roles over the real HTTPS API on the memory store: an admin
 * makes, lists and revokes them; every route answers each role by the
 * access table (a viewer reads, a deployer reads and deploys, only in its
 * stacks); a revoked or expired token is refused; the audit log records
 * who asked to change what, and what came of it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../src/api/client.js';
import { withTransport, type Transport } from '../src/api/tls.js';
import { ROUTES } from '../src/server/routes/route.js';
import { isBatonError } from '../src/base/errors.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';
import { serviceSpec } from './fixtures.js';
import { eventually } from './helpers/proc.js';
import { AuditLog, AUDIT_PREFIX, type AuditEntry } from '../src/server/audit.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import pino from 'pino';

describe('tokens with roles', () => {
  let s: MemoryServer;
  let t: Transport;
  const tokens: Record<string, string> = {};
  const as = (token: string) => new ApiClient(withTransport({ server: s.server.url, token }, t));
  const fail = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => (isBatonError(e) ? { code: e.code, message: e.message } : { code: 'other', message: String(e) }));

  beforeAll(async () => {
    s = await memoryServer('baton-roles-', { rateLimitBurst: 1e9, rateLimitPerSecond: 1e9 });
    t = s.transport();
    for (const [name, body] of [['ci', { role: 'deployer', stacks: ['app'] }], ['grafana', { role: 'viewer' }], ['ops', { role: 'admin' }]] as const) {
      const r = await s.api.call<{ token: string; name: string; role: string }>('POST', '/api/v1/tokens', { name, ...body });
      expect(r).toMatchObject({ name, role: body.role });
      tokens[name] = r.token;
    }
    for (const stack of ['app', 'other']) await s.api.apply(stack, { services: [{ name: `${stack}_web`, spec: serviceSpec({ stack, shortName: 'web', replicas: 1 }), labels: {} }], prune: false, dryRun: false });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('lists the tokens without their secrets, and refuses a taken name, a deployer without stacks, a viewer with some', async () => {
    const list = await s.api.call<{ items: Record<string, unknown>[] }>('GET', '/api/v1/tokens');
    expect(list.items.filter((x) => x.name).map((x) => [x.name, x.role, x.stacks])).toEqual([['ci', 'deployer', ['app']], ['grafana', 'viewer', undefined], ['ops', 'admin', undefined]]);
    expect(JSON.stringify(list)).not.toMatch(/hash|baton\.[0-9a-f]{12}\./);
    expect(await fail(s.api.call('POST', '/api/v1/tokens', { name: 'ci', role: 'viewer' }))).toMatchObject({ code: 'BATON_ERR_CONFLICT', message: expect.stringContaining('a token named "ci" exists already') });
    expect(await fail(s.api.call('POST', '/api/v1/tokens', { name: 'd2', role: 'deployer' }))).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST' });
    expect(await fail(s.api.call('POST', '/api/v1/tokens', { name: 'v2', role: 'viewer', stacks: ['app'] }))).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST' });
    // Only an admin makes tokens.
    expect(await fail(as(tokens.ci!).call('POST', '/api/v1/tokens', { name: 'mine', role: 'admin' }))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
  });

  it('answers every route for each role by the access table', async () => {
    const status = async (route: (typeof ROUTES)[number], token: string) => {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 1500);
      try {
        const res = await t.fetch(`${s.server.url}${route.url.replace(/:[a-z]+/g, 'no-such-object')}`, { method: route.method, headers: { authorization: `Bearer ${token}` }, signal: abort.signal, ...t.init } as RequestInit);
        await res.text().catch(() => '');
        return res.status;
      } finally {
        clearTimeout(timer);
      }
    };
    for (const r of ROUTES) {
      if (r.access === 'open' || r.url === '/api/v1/tokens/:name') continue;
      const where = `${r.method} ${r.url}`;
      for (const [role, token] of [['viewer', tokens.grafana!], ['deployer', tokens.ci!]] as const) {
        const got = await status(r, token);
        if (!r.access.includes(role)) expect(got, `${role}: ${where}`).toBe(403);
        // A deployer's scoped call on an object of no stack it holds is judged by its stacks (stacks/no-such-object: 403), else the route answers.
        else if (!(role === 'deployer' && r.scoped)) expect([401, 403], `${role}: ${where} → ${got}`).not.toContain(got);
      }
    }
  });

  it('lets a deployer deploy in its stacks only, and read everywhere', async () => {
    const ci = as(tokens.ci!);
    expect((await ci.scale('app_web', 2)).spec.replicas).toBe(2);
    expect(await fail(ci.scale('other_web', 2))).toEqual({ code: 'BATON_ERR_FORBIDDEN', message: 'this token may act only in the stacks app, not in other' });
    expect(await fail(ci.apply('other', { services: [], prune: true, dryRun: false }))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    const applied = await ci.apply('app', { services: [{ name: 'app_api', spec: serviceSpec({ stack: 'app', shortName: 'api', replicas: 1 }), labels: {} }], prune: false, dryRun: false });
    expect(applied.results.map((x) => x.name)).toContain('app_api');
    // A service of another stack, by the generic route: refused by the stack it names.
    expect(await fail(ci.call('POST', '/api/v1/services', { metadata: { name: 'other_x' }, spec: serviceSpec({ stack: 'other', shortName: 'x' }) }))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN', message: expect.stringContaining('not in other') });
    expect(await fail(ci.call('DELETE', '/api/v1/services/other_web'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    expect(await fail(ci.call('GET', '/api/v1/services/other_web/logs'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    expect((await ci.services()).items.map((x) => x.metadata.name).sort()).toEqual(['app_api', 'app_web', 'other_web']);
    // A viewer reads, and changes nothing.
    const grafana = as(tokens.grafana!);
    expect((await grafana.services()).items).toHaveLength(3);
    expect(await fail(grafana.scale('app_web', 3))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN', message: expect.stringContaining('the token grafana is a viewer') });
    expect(await fail(grafana.call('GET', '/api/v1/join/token'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    expect(await fail(grafana.call('GET', '/api/v1/snapshot'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
  });

  it('refuses a revoked token, and an expired one', async () => {
    const r = await s.api.call<{ token: string }>('POST', '/api/v1/tokens', { name: 'short', role: 'viewer', ttlMs: 1000 });
    const short = as(r.token);
    expect((await short.services()).items.length).toBeGreaterThan(0);
    await new Promise((res) => setTimeout(res, 1100));
    expect(await fail(short.services())).toMatchObject({ code: 'BATON_ERR_UNAUTHORIZED' });
    const ops = as(tokens.ops!);
    expect((await ops.services()).items.length).toBeGreaterThan(0);
    await s.api.call('DELETE', '/api/v1/tokens/ops');
    expect(await fail(ops.services())).toMatchObject({ code: 'BATON_ERR_UNAUTHORIZED', message: expect.stringContaining('revoked') });
    expect(await fail(s.api.call('DELETE', '/api/v1/tokens/ops'))).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
  });

  it('keeps an audit log of the requests that asked to change something: who, role, route, object, result, address', async () => {
    const entries = async (q = '') => (await s.api.call<{ items: AuditEntry[] }>('GET', `/api/v1/audit${q}`)).items;
    await eventually(async () => {
      const all = await entries();
      // The deployer's scale in its stack, and its refusal in another, each with its result.
      expect(all).toEqual(expect.arrayContaining([
        expect.objectContaining({ user: 'ci', role: 'deployer', method: 'POST', route: '/api/v1/services/:name/scale', object: 'name=app_web', status: 200, address: '127.0.0.1' }),
        expect.objectContaining({ user: 'ci', role: 'deployer', route: '/api/v1/services/:name/scale', object: 'name=other_web', status: 403, error: 'BATON_ERR_FORBIDDEN' }),
        expect.objectContaining({ user: 'grafana', role: 'viewer', route: '/api/v1/services/:name/scale', status: 403 }),
        expect.objectContaining({ user: expect.stringMatching(/^token [0-9a-f]{12}$/), role: 'admin', method: 'DELETE', route: '/api/v1/tokens/:name', object: 'name=ops', status: 200 }),
      ]));
      // Reads are not audited; nodes' and servers' own traffic neither.
      expect(all.some((e) => e.method === 'GET' || e.role === 'agent')).toBe(false);
    }, 5 * 2000);
    expect((await entries('?user=grafana')).every((e) => e.user === 'grafana')).toBe(true);
    expect(await entries(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).toEqual([]);
    expect(await fail(as(tokens.grafana!).call('GET', '/api/v1/audit'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
  });
});

describe('the audit log in the store', () => {
  it('lists the newest entries oldest first, and prunes those past the retention', async () => {
    const store = new MemoryStore();
    const audit = new AuditLog(store, pino({ level: 'silent' }));
    const at = (ms: number) => ({ time: new Date(ms).toISOString(), user: `u${ms}`, role: 'admin', method: 'POST', route: '/api/v1/x', object: '', status: 200, address: '127.0.0.1' });
    for (const ms of [3000, 1000, 2000, 300_000]) audit.record(at(ms));
    await eventually(async () => expect((await store.range(AUDIT_PREFIX)).kvs).toHaveLength(4), 5000);
    expect((await audit.list()).map((e) => e.user)).toEqual(['u1000', 'u2000', 'u3000', 'u300000']);
    expect((await audit.list({ limit: 2 })).map((e) => e.user)).toEqual(['u3000', 'u300000']);
    expect((await audit.list({ since: new Date(2500).toISOString() })).map((e) => e.user)).toEqual(['u3000', 'u300000']);
    expect(await audit.prune(100_000)).toBe(3);
    expect((await audit.list()).map((e) => e.user)).toEqual(['u300000']);
    await store.close();
  });
});
