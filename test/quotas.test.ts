/**
 * Stacks' quotas over the real HTTPS API on the memory store: an admin sets
 * them, every role reads them; apply, scale, a service's create and update
 * and the autoscaler stay within them; a refusal names the quota and what
 * is left, and writes nothing; concurrent writes cannot share one headroom
 * (the quota is charged in the write's transaction).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../src/api/client.js';
import { withTransport } from '../src/api/tls.js';
import { isBatonError } from '../src/base/errors.js';
import type { QuotaView } from '../src/api/quotas.js';
import type { Service, ServiceSpec } from '../src/api/types.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';
import { serviceSpec } from './fixtures.js';
import { eventually } from './helpers/proc.js';
import { EtcdCluster } from './helpers/etcd.js';
import { EtcdStore } from '../src/store/etcd/etcdStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { BatonServer } from '../src/server/server.js';
import { ClusterKey } from '../src/server/clusterKey.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const GiB = 2 ** 30;
const reserved = (cpus: number, memoryBytes: number): ServiceSpec['resources'] => ({ reservations: { cpus, memoryBytes }, limits: { cpus: 0, memoryBytes: 0 } });

describe('quotas per stack', () => {
  let s: MemoryServer;
  const tokens: Record<string, string> = {};
  const as = (name: string) => new ApiClient(withTransport({ server: s.server.url, token: tokens[name]! }, s.transport()));
  const fail = (p: Promise<unknown>) =>
    p.then(
      () => undefined,
      (e: unknown) => (isBatonError(e) ? { code: e.code, message: e.message, details: e.details } : { code: 'other', message: String(e), details: [] }),
    );
  const svc = (stack: string, shortName: string, over: Partial<ServiceSpec> = {}) => ({ name: `${stack}_${shortName}`, spec: serviceSpec({ stack, shortName, replicas: 1, resources: reserved(0.5, 256 * 2 ** 20), ...over }), labels: {} });
  const replicas = async (name: string) => (await s.api.call<Service>('GET', `/api/v1/services/${name}`)).spec.replicas;

  beforeAll(async () => {
    s = await memoryServer('baton-quotas-', { rateLimitBurst: 1e9, rateLimitPerSecond: 1e9, autoscaleSyncMs: 100, usageBucketMs: 200 });
    for (const [name, body] of [['ci', { role: 'deployer', stacks: ['shop'] }], ['grafana', { role: 'viewer' }]] as const) {
      tokens[name] = (await s.api.call<{ token: string }>('POST', '/api/v1/tokens', { name, ...body })).token;
    }
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('is set by an admin only, read by every role, and refuses bad limits with where', async () => {
    const q = await s.api.call<QuotaView>('PUT', '/api/v1/quotas/shop', { tasks: 4, cpus: 2, memoryBytes: GiB });
    expect(q).toMatchObject({ stack: 'shop', hard: { tasks: 4, cpus: 2, memoryBytes: GiB }, used: { tasks: 0, cpus: 0, memoryBytes: 0 } });
    await s.api.call('PUT', '/api/v1/quotas/other', { tasks: 1 });
    expect(await fail(as('ci').call('PUT', '/api/v1/quotas/shop', { tasks: 100 }))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    expect(await fail(as('grafana').call('DELETE', '/api/v1/quotas/shop'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    expect((await as('grafana').call<{ items: QuotaView[] }>('GET', '/api/v1/quotas')).items.map((x) => x.stack)).toEqual(['other', 'shop']);
    expect((await as('ci').call<{ items: QuotaView[] }>('GET', '/api/v1/quotas')).items.map((x) => x.stack)).toEqual(['other', 'shop']);
    for (const [body, path] of [[{}, 'body'], [{ cpus: 0.0001 }, 'body.cpus'], [{ tasks: -1 }, 'body.tasks'], [{ tasks: 1, pods: 3 }, 'body']] as const) {
      const e = await fail(s.api.call('PUT', '/api/v1/quotas/shop', body));
      expect(e, JSON.stringify(body)).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST' });
      expect(e!.details.map((d) => d.path), JSON.stringify(body)).toContain(path);
    }
    expect(await fail(s.api.call('PUT', '/api/v1/quotas/Not_A_Stack', { tasks: 1 }))).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST' });
    await s.api.call('DELETE', '/api/v1/quotas/other');
    expect(await fail(s.api.call('GET', '/api/v1/quotas/other'))).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
  });

  it('refuses an apply that would pass a limit, naming the quota and what is left, and writes nothing', async () => {
    const ci = as('ci');
    await ci.apply('shop', { services: [svc('shop', 'web', { replicas: 2 }), svc('shop', 'worker')], prune: false, dryRun: false });
    expect((await s.api.call<QuotaView>('GET', '/api/v1/quotas/shop')).used).toEqual({ tasks: 3, cpus: 1.5, memoryBytes: 768 * 2 ** 20 });
    // Two more replicas: 5 tasks (limit 4) and 2.5 CPUs (limit 2). A dry run is refused the same way.
    for (const dryRun of [true, false]) {
      const e = await fail(ci.apply('shop', { services: [svc('shop', 'web', { replicas: 4 }), svc('shop', 'worker')], prune: false, dryRun }));
      expect(e).toMatchObject({ code: 'BATON_ERR_QUOTA_EXCEEDED', message: expect.stringContaining('the quota of stack "shop" does not allow this') });
      expect(e!.message).toContain('left: 1 of 4 tasks, 0.5 of 2 CPUs, 256MiB of 1GiB memory');
      expect(e!.details).toEqual([
        { path: 'quota.shop.tasks', message: 'asks for 5 tasks in all; the quota is 4 tasks, 3 tasks in use, 1 task left' },
        { path: 'quota.shop.cpus', message: 'asks for 2.5 CPUs in all; the quota is 2 CPUs, 1.5 CPUs in use, 0.5 CPUs left' },
        { path: 'quota.shop.memory', message: 'asks for 1280MiB in all; the quota is 1GiB, 768MiB in use, 256MiB left' },
      ]);
    }
    expect(await replicas('shop_web')).toBe(2);
    // Within it, and lowering what another service asks for in the same apply: one transaction, judged as a whole.
    await ci.apply('shop', { services: [svc('shop', 'web', { replicas: 3 }), svc('shop', 'worker', { replicas: 0 })], prune: false, dryRun: false });
    expect(await replicas('shop_web')).toBe(3);
  });

  it('refuses a scale, a create and an update past it; lowering always passes, also over a quota set below what is used', async () => {
    const ci = as('ci');
    expect(await fail(ci.scale('shop_web', 5))).toMatchObject({ code: 'BATON_ERR_QUOTA_EXCEEDED', message: expect.stringContaining('tasks asks for 5 tasks in all; the quota is 4 tasks, 3 tasks in use, 1 task left') });
    expect(await replicas('shop_web')).toBe(3);
    // A new service that reserves no CPUs in a stack whose quota limits them cannot be counted: refused, saying how to fix it.
    const e = await fail(ci.call('POST', '/api/v1/services', { metadata: { name: 'shop_cache' }, spec: serviceSpec({ stack: 'shop', shortName: 'cache', replicas: 1 }) }));
    expect(e).toMatchObject({ code: 'BATON_ERR_QUOTA_EXCEEDED' });
    expect(e!.details.map((d) => d.message).join('\n')).toContain('reserves no CPUs, and the quota of stack "shop" limits CPUs');
    expect(await fail(s.api.call('GET', '/api/v1/services/shop_cache'))).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    // An update that makes each task reserve more.
    const cur = await s.api.call<Service>('GET', '/api/v1/services/shop_web');
    const bigger = { metadata: { name: 'shop_web', resourceVersion: cur.metadata.resourceVersion }, spec: { ...cur.spec, resources: reserved(1, 256 * 2 ** 20) } };
    expect(await fail(ci.call('PUT', '/api/v1/services/shop_web', bigger))).toMatchObject({ code: 'BATON_ERR_QUOTA_EXCEEDED', message: expect.stringContaining('cpus asks for 3 CPUs in all; the quota is 2 CPUs') });
    // The admin lowers the quota below what is used: growth is refused, shrinking is not.
    await s.api.call('PUT', '/api/v1/quotas/shop', { tasks: 2 });
    expect(await fail(ci.scale('shop_worker', 1))).toMatchObject({ code: 'BATON_ERR_QUOTA_EXCEEDED' });
    expect((await ci.scale('shop_web', 2)).spec.replicas).toBe(2);
    // Stacks without a quota are not limited; removing one lifts it.
    await s.api.call('DELETE', '/api/v1/quotas/shop');
    expect((await ci.scale('shop_web', 6)).spec.replicas).toBe(6);
  });

  it('charges concurrent writes in their transactions: 12 scales at once cannot share one headroom', async () => {
    const names = Array.from({ length: 12 }, (_, i) => `c${i}`);
    await s.api.apply('burst', { services: names.map((n) => svc('burst', n, { replicas: 0 })), prune: false, dryRun: false });
    await s.api.call('PUT', '/api/v1/quotas/burst', { tasks: 10 });
    // Each asks for one task more than a fair share, alone each fits: together at most 10 tasks may be granted.
    // One client (and connection) each, so the server handles them at once.
    const clients = names.map(() => new ApiClient(withTransport({ server: s.server.url, token: s.server.adminToken }, s.transport())));
    await Promise.all(clients.map((c) => c.call('GET', '/api/v1/quotas/burst')));
    const results = await Promise.all(names.map((n, i) => fail(clients[i]!.scale(`burst_${n}`, 2))));
    const granted = results.filter((r) => r === undefined).length;
    expect(granted).toBe(5);
    expect(results.filter((r) => r?.code === 'BATON_ERR_QUOTA_EXCEEDED')).toHaveLength(7);
    let total = 0;
    for (const n of names) total += await replicas(`burst_${n}`);
    expect(total).toBe(10);
    expect((await s.api.call<QuotaView>('GET', '/api/v1/quotas/burst')).used.tasks).toBe(10);
  });

  it('stops the autoscaler at the quota, and says so', async () => {
    const api = svc('auto', 'api', { replicas: 1, autoscale: { min: 1, max: 8, concurrency: 10, scaleUp: { stabilizationMs: 0 }, scaleDown: { stabilizationMs: 600_000 } } });
    await s.api.apply('auto', { services: [api, svc('auto', 'db')], prune: false, dryRun: false });
    await s.api.call('PUT', '/api/v1/quotas/auto', { tasks: 4 });
    const node = await s.node('n1', '127.0.0.2');
    // 60 open connections at a target of 10 per task ask for 6 tasks; the quota leaves room for 3 (db holds 1 of 4).
    const beat = () => node.call('POST', '/api/v1/nodes/n1/heartbeat', { usage: { tasks: [], connections: {}, active: { auto_api: 60 } } });
    await eventually(async () => {
      await beat();
      expect(await replicas('auto_api')).toBe(3);
      const view = (await s.api.call<{ items: { service: string; replicas: number; why: string[] }[] }>('GET', '/api/v1/autoscale')).items.find((v) => v.service === 'auto_api');
      expect(view?.why.join('; ')).toContain('held at 3 by the quota of stack auto (tasks)');
    }, 10_000);
    // It stays there while the load holds.
    for (let i = 0; i < 5; i++) {
      await beat();
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(await replicas('auto_api')).toBe(3);
  });
});

/**
 * The same charge across two servers on one etcd (the HA set-up): scales
 * sent at once through both cannot share the headroom either.
 */
describe('quotas on etcd, two servers', () => {
  const etcd = new EtcdCluster({ basePort: 32079, members: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'baton-quotas-etcd-'));
  const servers: BatonServer[] = [];
  const stores: EtcdStore[] = [];
  afterAll(async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    for (const st of stores) await st.close().catch(() => undefined);
    await etcd.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('charges scales sent through both servers at once: no more than the quota is granted', async () => {
    await etcd.start();
    const key = join(dir, 'cluster.key');
    ClusterKey.create(key);
    const events = new MemoryEventStore();
    for (const name of ['a', 'b']) {
      const store = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: '/quotas/' });
      stores.push(store);
      servers.push(await BatonServer.start({ dataDir: join(dir, name), listen: '127.0.0.1:0', store, events, logLevel: 'silent', clusterKeyFile: key, election: { identity: name, ttlSeconds: 1 }, timings: { heartbeatIntervalMs: 200 } }));
    }
    const call = (i: number, method: 'GET' | 'POST' | 'PUT', url: string, payload?: object) => servers[i % 2]!.inject({ method, url, headers: { authorization: `Bearer ${servers[i % 2]!.adminToken}` }, ...(payload ? { payload } : {}) });
    const names = Array.from({ length: 12 }, (_, i) => `c${i}`);
    const applied = await call(0, 'POST', '/api/v1/stacks/burst/apply', { services: names.map((n) => ({ name: `burst_${n}`, spec: serviceSpec({ stack: 'burst', shortName: n, replicas: 0, resources: reserved(0.1, 0) }), labels: {} })), prune: false, dryRun: false });
    expect(applied.statusCode, applied.body).toBe(200);
    expect((await call(1, 'PUT', '/api/v1/quotas/burst', { tasks: 10 })).statusCode).toBe(200);
    const results = await Promise.all(names.map((n, i) => call(i, 'POST', `/api/v1/services/burst_${n}/scale`, { replicas: 2 })));
    const codes = results.map((r) => (r.statusCode === 200 ? 'ok' : (r.json() as { error: { code: string } }).error.code));
    expect(codes.filter((c) => c === 'ok')).toHaveLength(5);
    expect(codes.filter((c) => c === 'BATON_ERR_QUOTA_EXCEEDED')).toHaveLength(7);
    const used = (await call(1, 'GET', '/api/v1/quotas/burst')).json() as QuotaView;
    expect(used.used.tasks).toBe(10);
  }, 60_000);
});
