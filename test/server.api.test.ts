/**
 * The API over a real TLS socket, on the in-memory store: auth, validation
 * that lists every problem, atomic apply, spec/status separation, filtered
 * watches. Nodes join for real (token, CSR, mutual TLS).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatonServer } from '../src/server/server.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { ApiClient } from '../src/api/client.js';
import { nodeKind, serviceKind, taskKind } from '../src/api/kinds.js';
import type { Service, Task } from '../src/api/types.js';
import { serviceSpec } from './fixtures.js';
import { tlsTransport, withTransport, type Transport } from '../src/api/tls.js';
import { joinCluster } from '../src/agent/join.js';

async function until<T>(fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('API server (memory store, real HTTP)', () => {
  let server: BatonServer;
  let api: ApiClient;
  let w1: ApiClient;
  let w2: ApiClient;
  let tls: Transport;
  let dir: string;
  const transports: Transport[] = [];
  const get = (path: string, headers: Record<string, string> = {}) => tls.fetch(`${server.url}${path}`, { headers, ...tls.init } as RequestInit);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baton-api-'));
    server = await BatonServer.start({ dataDir: dir, listen: '127.0.0.1:0', store: new MemoryStore(), events: new MemoryEventStore(), logLevel: 'silent', timings: { heartbeatIntervalMs: 200, bookmarkIntervalMs: 200 } });
    tls = tlsTransport({ caPem: server.caPem });
    api = new ApiClient(withTransport({ server: server.url, token: server.adminToken }, tls));
    const node = async (name: string) => {
      const c = await joinCluster({ server: server.url, token: server.joinToken, name, address: '127.0.0.1' });
      const t = tlsTransport({ caPem: c.caPem, certPem: c.certPem, keyPem: c.keyPem });
      transports.push(t);
      return new ApiClient(withTransport({ server: server.url }, t));
    };
    [w1, w2] = [await node('w1'), await node('w2')];
  });

  afterAll(async () => {
    await Promise.all([tls, ...transports].map((t) => t.close()));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const svc = (name: string, over = {}) => ({ name: `t_${name}`, spec: serviceSpec({ stack: 't', shortName: name, replicas: 1, ...over }), labels: {} });

  it('answers 401 without a token, with a clear message', async () => {
    const res = await get('/api/v1/services');
    expect(res.status).toBe(401);
    expect((await res.json()).error).toMatchObject({ code: 'BATON_ERR_UNAUTHORIZED', message: expect.stringMatching(/missing bearer token/) });
  });

  it('forbids a node certificate from applying stacks', async () => {
    await expect(w1.apply('t', { services: [svc('a')], prune: false, dryRun: false })).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
  });

  it('lists every validation problem with its path, and applies nothing', async () => {
    const bad = svc('b');
    (bad.spec as any).replicas = -1;
    (bad.spec.container as any).image = '';
    const err = await api.apply('t', { services: [svc('ok'), bad], prune: false, dryRun: false }).catch((e) => e);
    expect(err.code).toBe('BATON_ERR_VALIDATION');
    const paths = err.details.map((d: { path: string }) => d.path);
    expect(paths).toContain('services.t_b.spec.replicas');
    expect(paths).toContain('services.t_b.spec.container.image');
    expect((await api.services()).items).toHaveLength(0);
  });

  it('applies atomically, re-applies as a no-op, dry-runs a diff and prunes', async () => {
    const r1 = await api.apply('t', { services: [svc('a'), svc('b')], prune: false, dryRun: false });
    expect(r1.results.map((r) => r.action)).toEqual(['create', 'create']);
    const rev = (await api.info()).revision;
    const r2 = await api.apply('t', { services: [svc('a'), svc('b')], prune: false, dryRun: false });
    expect(r2.results.map((r) => r.action)).toEqual(['unchanged', 'unchanged']);
    const dry = await api.apply('t', { services: [svc('a', { replicas: 2 })], prune: true, dryRun: true });
    expect(dry.results).toEqual([
      { name: 't_a', action: 'update', diff: ['spec.replicas: 1 → 2'] },
      { name: 't_b', action: 'delete' },
    ]);
    expect((await api.services()).items).toHaveLength(2);
    const pruned = await api.apply('t', { services: [svc('a', { replicas: 2 })], prune: true, dryRun: false });
    expect(pruned.results.map((r) => r.action)).toEqual(['update', 'delete']);
    expect(Number(pruned.revision)).toBeGreaterThan(Number(rev));
    const names = (await api.services()).items.map((s) => s.metadata.name);
    expect(names).toEqual(['t_a']);
  });

  it('refuses to publish one mesh port from two services, naming the port and its owner, and writes nothing', async () => {
    const web = (name: string, stack: string, port: number, protocol: 'tcp' | 'udp' = 'tcp') => ({ name: `${stack}_${name}`, spec: serviceSpec({ stack, shortName: name, replicas: 0, ports: [{ target: 80, published: port, protocol, mode: 'ingress' }] }), labels: {} });
    await api.apply('p1', { services: [web('web', 'p1', 18500)], prune: false, dryRun: false });
    await expect(api.apply('p2', { services: [web('web', 'p2', 18500), web('api', 'p2', 18501), web('admin', 'p2', 18501)], prune: false, dryRun: false })).rejects.toMatchObject({
      code: 'BATON_ERR_CONFLICT',
      details: [
        { path: 'services.web.ports[0]', message: 'port 18500/tcp is already published by service p1_web' },
        { path: 'services.admin.ports[0]', message: 'port 18501/tcp is already published by service p2_api' },
      ],
    });
    expect((await api.services()).items.filter((x) => x.spec.stack === 'p2')).toEqual([]);
    // UDP 18500 is another port than TCP 18500.
    expect((await api.apply('p3', { services: [web('dns', 'p3', 18500, 'udp')], prune: false, dryRun: false })).results[0]!.action).toBe('create');
    // A UDP port needs the task's own namespace: refused for a host-networked service, at its key.
    const host = web('hdns', 'p3', 18600, 'udp');
    host.spec.container.networkMode = 'host';
    await expect(api.apply('p3', { services: [host], prune: false, dryRun: false })).rejects.toMatchObject({ code: 'BATON_ERR_VALIDATION' });
    await api.removeStack('p3');
    // The owner may keep it, move it, or give it up.
    expect((await api.apply('p1', { services: [web('web', 'p1', 18502)], prune: false, dryRun: false })).results[0]!.action).toBe('update');
    expect((await api.apply('p2', { services: [web('web', 'p2', 18500)], prune: false, dryRun: false })).results[0]!.action).toBe('create');
    await api.removeStack('p1');
    await api.removeStack('p2');
  });

  it('refuses a stale resourceVersion with a conflict; a service\'s status is the server\'s own', async () => {
    const s = await api.get<Service>(serviceKind, 't_a');
    const gen = s.metadata.generation;
    // Only tasks have a status route (agents report there); every other kind's status is written by the controllers.
    const st = await api.updateStatus(serviceKind, [{ name: 't_a', status: { ...s.status, message: 'from status' } }]).catch((e) => e);
    expect(st.code).toBe('BATON_ERR_NOT_FOUND');
    // A spec write in between makes the read stale.
    await api.call('PUT', '/api/v1/services/t_a', { metadata: { resourceVersion: s.metadata.resourceVersion }, spec: { ...s.spec, replicas: 5 } });
    const err = await api.call('PUT', '/api/v1/services/t_a', { metadata: { resourceVersion: s.metadata.resourceVersion }, spec: { ...s.spec, replicas: 3 } }).catch((e) => e);
    expect(err.code).toBe('BATON_ERR_CONFLICT');
    const fresh = await api.get<Service>(serviceKind, 't_a');
    const updated = await api.call<Service>('PUT', '/api/v1/services/t_a', { metadata: { resourceVersion: fresh.metadata.resourceVersion }, spec: { ...s.spec, replicas: 3 }, status: { bogus: true } });
    expect(updated.metadata.generation).toBe(gen + 2);
    expect((updated.status as any).bogus).toBeUndefined();
  });

  it('serves a filtered watch: an agent sees only its own node\'s tasks', async () => {
    for (const n of ['w1', 'w2']) {
      await (n === 'w1' ? w1 : w2).call('POST', '/api/v1/nodes/register', { name: n, address: '127.0.0.1', hostname: n, agentVersion: '0.1.0', capacity: { cpus: 4, memoryBytes: 2 ** 32 }, portRange: [1, 2], engine: { ok: true, version: 'test' } });
    }
    const hb = setInterval(() => {
      for (const [n, c] of [['w1', w1], ['w2', w2]] as const) void c.call('POST', `/api/v1/nodes/${n}/heartbeat`, { engine: { ok: true, version: 'test' } }).catch(() => {});
    }, 100);
    try {
      await until(async () => ((await api.nodes()).items.every((n) => n.status.state === 'ready') ? true : undefined));
      const ac = new AbortController();
      const seen: Task[] = [];
      const list = await w1.tasks({ fieldSelector: { 'spec.nodeName': 'w1' } });
      seen.push(...list.items);
      const watching = (async () => {
        for await (const ev of w1.watch<Task>(taskKind, { resourceVersion: list.metadata.resourceVersion, fieldSelector: { 'spec.nodeName': 'w1' }, signal: ac.signal })) {
          if (ev.type !== 'BOOKMARK') seen.push(ev.object);
        }
      })().catch(() => {});
      await api.scale('t_a', 6);
      const all = await until(async () => {
        const ts = (await api.tasks()).items.filter((t) => t.spec.serviceName === 't_a' && t.spec.nodeName);
        return ts.length === 6 ? ts : undefined;
      });
      const onW1 = all.filter((t) => t.spec.nodeName === 'w1').map((t) => t.metadata.name);
      expect(onW1.length).toBe(3); // spread evenly
      await until(async () => (new Set(seen.map((t) => t.metadata.name)).size >= onW1.length ? true : undefined));
      ac.abort();
      await watching;
      expect(seen.every((t) => t.spec.nodeName === 'w1')).toBe(true);
      expect([...new Set(seen.map((t) => t.metadata.name))].sort()).toEqual(onW1.sort());
    } finally {
      clearInterval(hb);
    }
  });

  it('explains where a task was placed and why, and re-runs the filters for every node on demand', async () => {
    // One placed after both nodes had registered (the first was placed while only w1 existed).
    const t = (await api.tasks({ fieldSelector: { 'spec.serviceName': 't_a' } })).items.find((x) => x.spec.nodeName && x.status.scheduling?.evaluated === 2)!;
    const x = await api.call<{ decision: { evaluated: number; feasible: number; ranked: { node: string; keys: Record<string, number> }[] }; nodes: { node: string; fits: boolean; reason?: string }[] }>('GET', `/api/v1/tasks/${t.metadata.name}/explain?allNodes=true`);
    expect(x.decision).toMatchObject({ evaluated: 2, feasible: 2 });
    expect(x.decision.ranked[0]!.node).toBe(t.spec.nodeName);
    expect(Object.keys(x.decision.ranked[0]!.keys)).toEqual(['sameService', 'used', 'tasks']);
    expect(x.nodes.map((n) => n.node)).toEqual(['w1', 'w2']);
    for (const n of x.nodes) expect(n.fits || /node not ready/.test(n.reason!)).toBe(true);
  });

  it('leaves status-only changes out of a watch that asks (?ignoreStatusUpdates=true), never a spec change', async () => {
    const mine = (await w1.tasks({ fieldSelector: { 'spec.nodeName': 'w1' } })).items.filter((t) => t.spec.serviceName === 't_a' && t.spec.desiredState === 'running');
    const rv = (await w1.tasks({ fieldSelector: { 'spec.nodeName': 'w1' } })).metadata.resourceVersion;
    const collect = (ignoreStatusUpdates: boolean, out: Task[], ac: AbortController) =>
      (async () => {
        for await (const ev of w1.watch<Task>(taskKind, { resourceVersion: rv, fieldSelector: { 'spec.nodeName': 'w1' }, ignoreStatusUpdates, signal: ac.signal })) if (ev.type === 'MODIFIED') out.push(ev.object);
      })().catch(() => {});
    const ac = new AbortController();
    const all: Task[] = [];
    const quiet: Task[] = [];
    const watching = [collect(false, all, ac), collect(true, quiet, ac)];
    const t = mine[0]!;
    // An agent's task events ride with its status batch: one request per flush.
    const started = { type: 'Normal' as const, reason: 'TaskStarted', message: `${t.metadata.name} started on w1`, kind: 'Task', name: t.metadata.name, uid: t.metadata.uid, node: 'w1', service: 't_a', source: 'agent/w1' };
    // What an agent reports: never the scheduler's decision (the server keeps it).
    const { scheduling: _decision, pendingReason: _why, ...reported } = t.status;
    await w1.updateStatus(taskKind, [{ name: t.metadata.name, uid: t.metadata.uid, status: { ...reported, state: 'running', message: 'started' } }], [started]);
    expect((await api.get<Task>(taskKind, t.metadata.name)).status.scheduling).toEqual(t.status.scheduling);
    expect((await api.events({ name: t.metadata.name, type: 'TaskStarted' })).items.map((e) => [e.message, e.node, e.source])).toEqual([[started.message, 'w1', 'agent/w1']]);
    const bad = await w1.call('POST', '/api/v1/tasks/-/status', { items: [], events: 'no' }).catch((e) => e);
    expect([bad.code, bad.message, bad.details]).toEqual(['BATON_ERR_BAD_REQUEST', 'invalid request body', [{ path: 'body.events', message: expect.stringMatching(/expected array/) }]]);
    await until(async () => (all.some((x) => x.metadata.name === t.metadata.name) ? true : undefined));
    await api.scale('t_a', 0);
    await until(async () => (quiet.length >= mine.length ? true : undefined));
    ac.abort();
    await Promise.all(watching);
    // The quiet watch heard only the spec changes (told to stop), each with the status as written.
    expect(quiet.every((x) => x.spec.desiredState === 'shutdown')).toBe(true);
    expect(quiet.find((x) => x.metadata.name === t.metadata.name)!.status.message).toBe('started');
  });

  it('refuses a hostile status report from a node certificate with a 400 naming each field, and stores nothing', async () => {
    const t = (await w1.tasks({ fieldSelector: { 'spec.nodeName': 'w1' } })).items[0]!;
    const before = await api.get<Task>(taskKind, t.metadata.name);
    const { scheduling: _decision, pendingReason: _why, ...reported } = before.status;
    const good = { name: t.metadata.name, uid: t.metadata.uid, status: { ...reported, message: 'fine' } };
    // Text meant for `nft -f`, a port that is not one, a state that does not exist, and a field the server owns.
    const hostile = { ...good, status: { ...reported, state: 'running; flush ruleset', hostIP: '127.0.0.1 tcp dport 22 accept', ports: [{ target: '80 }', hostPort: 70000 }], scheduling: { evaluated: 0 }, message: 'x'.repeat(100_000) } };
    const res = await w1.call('POST', '/api/v1/tasks/-/status', { items: [good, hostile] }).catch((e) => e);
    expect(res).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', message: 'invalid request body' });
    const paths = res.details.map((d: { path: string }) => d.path);
    for (const p of ['body.items[1].status.state', 'body.items[1].status.hostIP', 'body.items[1].status.ports[0].target', 'body.items[1].status.ports[0].hostPort', 'body.items[1].status.message', 'body.items[1].status']) expect(paths).toContain(p);
    expect(JSON.stringify(res.details)).not.toMatch(/\n\s+at /);
    // Nothing of the batch was stored, not even its well-formed item.
    expect((await api.get<Task>(taskKind, t.metadata.name)).metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    // A well-formed address that is not the node's own is refused too (Endpoints, and every node's mesh, are built from it).
    const elsewhere = await w1.call('PUT', `/api/v1/tasks/${t.metadata.name}/status`, { status: { ...reported, hostIP: '127.0.0.9' } }).catch((e) => e);
    expect(elsewhere).toMatchObject({ code: 'BATON_ERR_FORBIDDEN', details: [{ path: 'body.status.hostIP', message: expect.stringMatching(/127\.0\.0\.9 is not an address of node w1/) }] });
    expect((await api.get<Task>(taskKind, t.metadata.name)).metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    // A task address outside the node's task range is refused the same way.
    const outside = await w1.call('POST', '/api/v1/tasks/-/status', { items: [{ ...good, status: { ...good.status, taskIP: '10.99.0.5' } }] }).catch((e) => e);
    expect(outside).toMatchObject({ code: 'BATON_ERR_FORBIDDEN', details: [{ path: 'body.items[0].status.taskIP', message: expect.stringMatching(/^10\.99\.0\.5 is not in the task range of node w1 \(10\.42\.\d+\.0\/24\)$/) }] });
    // Its own address is accepted.
    const ok = await w1.updateStatus(taskKind, [{ ...good, status: { ...good.status, hostIP: '127.0.0.1' } }]);
    expect(ok.items[0]!.ok).toBe(true);
  });

  it('validates every route\'s params, query and body: a malformed request is a 400 that says where, never a 500 or a list', async () => {
    const h = { authorization: `Bearer ${server.adminToken}` };
    const limit = await get('/api/v1/tasks?limit=abc', h);
    expect(limit.status).toBe(400);
    expect((await limit.json()).error).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [{ path: 'query.limit', message: 'must be a whole number' }] });
    // Registration without capacity or engine says which fields are missing.
    const reg = await w1.call('POST', '/api/v1/nodes/register', { name: 'w1', address: '127.0.0.1' }).catch((e) => e);
    expect(reg.code).toBe('BATON_ERR_BAD_REQUEST');
    expect(reg.details.map((d: { path: string }) => d.path)).toEqual(expect.arrayContaining(['body.capacity', 'body.engine', 'body.portRange', 'body.hostname', 'body.agentVersion']));
    // Every declared route, with a malformed body and query: never a 500.
    const { ROUTES } = await import('../src/server/routes/route.js');
    expect(ROUTES.length).toBeGreaterThan(30);
    for (const r of ROUTES) {
      const url = r.url.replace(/:[a-z]+/g, 'no-such-object') + '?limit=-1&resourceVersion=x&tail=many&afterId=z&since=99999999999999999999d';
      const body = r.method === 'GET' || r.method === 'DELETE' ? undefined : '{"unexpected": [1, {"deep": null}]}';
      const res = await tls.fetch(`${server.url}${url}`, { method: r.method, headers: { ...h, ...(body ? { 'content-type': 'application/json' } : {}) }, body, ...tls.init } as RequestInit);
      expect(res.status, `${r.method} ${r.url}`).toBeLessThan(500);
      const text = await res.text();
      if (res.status >= 400) expect(JSON.parse(text).error.code, `${r.method} ${r.url}`).toMatch(/^BATON_ERR_/);
    }
  });

  it('answers an unexpected failure with 500 "internal error", never its message', async () => {
    const registry = (server as unknown as { ctx: { registry: { mustGet: unknown } } }).ctx.registry;
    const real = registry.mustGet;
    registry.mustGet = async () => {
      throw new Error('secret detail of the store at /var/lib/baton');
    };
    try {
      const res = await get('/api/v1/services/t_a', { authorization: `Bearer ${server.adminToken}` });
      expect(res.status).toBe(500);
      const text = await res.text();
      expect(JSON.parse(text).error).toEqual({ code: 'BATON_ERR_INTERNAL', message: 'internal error; the server logged it' });
      expect(text).not.toMatch(/secret|\/var\/lib/);
    } finally {
      registry.mustGet = real;
    }
  });

  it('answers 410 Gone for a watch older than the cache window, 400 for an unknown selector, 404 for unknown objects', async () => {
    const err = await api.get(nodeKind, 'nope').catch((e) => e);
    expect(err.code).toBe('BATON_ERR_NOT_FOUND');
    const h = { authorization: `Bearer ${server.adminToken}` };
    const gone = await get('/api/v1/tasks?watch=true&resourceVersion=1', h);
    expect(gone.status).toBe(410);
    expect((await gone.json()).error.code).toBe('BATON_ERR_GONE');
    const bad = await get('/api/v1/tasks?fieldSelector=spec.bogus=1', h);
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.message).toMatch(/field selector "spec.bogus" is not supported for tasks; supported: .*spec.nodeName/);
  });
});
