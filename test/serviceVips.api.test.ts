/**
 * Service VIPs over a real server (real TLS, the endpoints controller
 * running): every service that needs Endpoints (ports, or bridge
 * networking) gets a VIP of the service CIDR, unique and held by a store key
 * naming the service; an update of the Endpoints keeps it, and so does a
 * server restart on the same SQLite file; deleting the service frees it;
 * two servers on one store, and two allocators writing other services at
 * the same moment, never give one VIP twice; a full range writes the
 * Endpoints without a VIP, says so in a Warning event, and gives one once an
 * address is freed. Endpoints carry the service's networks, and a bridge
 * service without ports has Endpoints with no targets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatonServer } from '../src/server/server.js';
import pino from 'pino';
import type { Store } from '../src/store/store.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { Registry } from '../src/server/registry.js';
import { WatchCache } from '../src/server/watchCache.js';
import { taskNetwork } from '../src/server/ipam.js';
import { endpointsSpec } from '../src/server/controllers/endpointsController.js';
import type { ApiClient } from '../src/api/client.js';
import { endpointsKind, serviceColumnsWithVip, serviceKind } from '../src/api/kinds.js';
import type { Endpoints, Service, ServiceSpec } from '../src/api/types.js';
import { contains, parseCidr } from '../src/base/cidr.js';
import { ServiceVips, VIP_PREFIX } from '../src/server/serviceVips.js';
import { service, serviceSpec } from './fixtures.js';
import { keysUnder, serverKit } from './helpers/serverKit.js';

const { tmp, start, memory, admin } = serverKit('baton-vips-', { timings: { endpointsBatchMs: 20 } });

/** The endpoints controller writes within endpointsBatchMs of a change (20 ms here); a second is 50× that, 10 s more than 5× a second. */
const DEADLINE_MS = 10_000;

async function until<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + DEADLINE_MS;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ported = (over: Partial<ServiceSpec> = {}) => ({ ports: [{ target: 80, protocol: 'tcp' as const, mode: 'ingress' as const }], ...over });
const bridge = (over: Partial<ServiceSpec> = {}) => ({ container: { ...serviceSpec().container, networkMode: 'bridge' as const }, ...over });
const hostNet = (over: Partial<ServiceSpec> = {}) => ({ container: { ...serviceSpec().container, networkMode: 'host' as const }, ...over });

/** apply creates or updates services of one stack (replicas 0: no tasks needed). */
function apply(api: ApiClient, stack: string, services: Record<string, Partial<ServiceSpec>>, prune = false) {
  return api.apply(stack, { services: Object.entries(services).map(([short, over]) => ({ name: `${stack}_${short}`, spec: serviceSpec({ stack, shortName: short, replicas: 0, ...over }), labels: {} })), prune, dryRun: false });
}

/** endpointsOf waits for service `name`'s Endpoints to satisfy `ok`. */
function endpointsOf(api: ApiClient, name: string, ok: (e: Endpoints) => boolean = () => true): Promise<Endpoints> {
  return until(`the Endpoints of ${name}`, async () => {
    const e = await api.get<Endpoints>(endpointsKind, name);
    return ok(e) ? e : undefined;
  });
}

/** held lists the store's VIP keys as VIP → holder. */
const held = (store: Store) => keysUnder(store, VIP_PREFIX);

/** holders is what the keys should say for these Endpoints: VIP → `<service>/<uid>`. */
async function holders(api: ApiClient, eps: Endpoints[]): Promise<Record<string, string>> {
  const uids = new Map((await api.services()).items.map((s) => [s.metadata.name, s.metadata.uid]));
  return Object.fromEntries(eps.map((e) => [e.spec.vip!, `${e.metadata.name}/${uids.get(e.metadata.name)}`]));
}

/** removeStack removes a stack and waits until its VIPs are freed, so the next test starts from an empty range. */
async function removeStack(api: ApiClient, server: BatonServer, stack: string): Promise<void> {
  await api.removeStack(stack);
  await until(`${stack}'s VIPs freed`, async () => (Object.values(await held(server.store)).some((h) => h.startsWith(`${stack}_`)) ? undefined : true));
}

const ipOrder = (a: string, b: string) => a.split('.').map(Number).reduce((d, x, i) => d || x - Number(b.split('.')[i]), 0);
const vipRange = (from: number, count: number) => Array.from({ length: count }, (_, i) => `10.43.0.${from + i}`);

describe('service VIPs on one server (memory store)', () => {
  let server: BatonServer;
  let api: ApiClient;

  beforeAll(async () => {
    server = await start({ dataDir: tmp(), ...memory() });
    api = admin(server);
  });
  afterAll(() => server.stop());

  it('gives every service with ports or bridge networking a VIP of its own, the lowest free, held by a key naming the service; none to a host service without ports', async () => {
    const services: Record<string, Partial<ServiceSpec>> = {};
    for (let i = 0; i < 20; i++) services[`p${i}`] = ported();
    for (let i = 0; i < 15; i++) services[`b${i}`] = bridge();
    for (let i = 0; i < 5; i++) services[`h${i}`] = hostNet();
    await apply(api, 'u', services);
    const eps = await until('35 Endpoints with VIPs', async () => {
      const items = (await api.list<Endpoints>(endpointsKind)).items.filter((e) => e.spec.stack === 'u');
      return items.length === 35 && items.every((e) => e.spec.vip) ? items : undefined;
    });
    const vips = eps.map((e) => e.spec.vip!).sort(ipOrder);
    expect(new Set(vips).size).toBe(35);
    // The network address 10.43.0.0 is never given: the lowest free ones are .1 to .35.
    expect(vips).toEqual(vipRange(1, 35));
    for (const v of vips) expect(contains(parseCidr('10.43.0.0/16'), v)).toBe(true);
    expect(await held(server.store)).toEqual(await holders(api, eps));
    // Host networking without ports: nothing routes or resolves to it, no Endpoints.
    expect(eps.some((e) => e.spec.shortName.startsWith('h'))).toBe(false);
    await expect(api.get(endpointsKind, 'u_h0')).rejects.toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });

    // `baton service ls` and `baton endpoints ls` show it.
    const svc = await api.get<Service>(serviceKind, 'u_p3');
    const vip = eps.find((e) => e.metadata.name === 'u_p3')!.spec.vip;
    const byName = new Map(eps.map((e) => [e.metadata.name, e.spec.vip]));
    const col = serviceColumnsWithVip((n) => byName.get(n));
    expect(col.map((c) => c.header)).toEqual(['ID', 'NAME', 'MODE', 'REPLICAS', 'IMAGE', 'VIP', 'PORTS']);
    expect(col.find((c) => c.header === 'VIP')!.get(svc)).toBe(vip);
    expect(col.find((c) => c.header === 'VIP')!.get(await api.get<Service>(serviceKind, 'u_h0'))).toBe('-');
    expect(endpointsKind.columns.find((c) => c.header === 'VIP')!.get(eps.find((e) => e.metadata.name === 'u_p3')!)).toBe(vip);
    await removeStack(api, server, 'u');
  });

  it("carries the service's networks with their aliases, or its stack's default network; a bridge service without ports has Endpoints with no targets", async () => {
    await apply(api, 'n', {
      api: bridge({ networks: [{ name: 'n_front', aliases: ['www', 'api.internal'] }, { name: 'shared', aliases: [] }] }),
      db: bridge(),
      web: ported({ expose: [9000] }),
    });
    const apiEp = await endpointsOf(api, 'n_api', (e) => !!e.spec.vip);
    expect(apiEp.spec).toMatchObject({ serviceName: 'n_api', stack: 'n', shortName: 'api', networks: [{ name: 'n_front', aliases: ['www', 'api.internal'] }, { name: 'shared', aliases: [] }], published: [], targets: [], endpoints: [] });
    expect((await endpointsOf(api, 'n_db')).spec).toMatchObject({ networks: [{ name: 'n_default', aliases: [] }], targets: [] });
    expect((await endpointsOf(api, 'n_web')).spec).toMatchObject({ networks: [{ name: 'n_default', aliases: [] }], targets: [80, 9000] });
    // A change of networks reaches the Endpoints, with the VIP kept.
    await apply(api, 'n', { api: bridge({ networks: [{ name: 'n_back', aliases: [] }] }) });
    const after = await endpointsOf(api, 'n_api', (e) => e.spec.networks[0]!.name === 'n_back');
    expect(after.spec.networks).toEqual([{ name: 'n_back', aliases: [] }]);
    expect(after.spec.vip).toBe(apiEp.spec.vip);
    await removeStack(api, server, 'n');
  });

  it('keeps the VIP when the Endpoints is updated, frees it when the service is deleted, and the next service takes it', async () => {
    await apply(api, 'k', { a: ported(), b: ported(), c: bridge() });
    const [a, b, c] = await Promise.all(['k_a', 'k_b', 'k_c'].map((n) => endpointsOf(api, n, (e) => !!e.spec.vip)));
    await apply(api, 'k', { a: ported({ ports: [{ target: 80, published: 18600, protocol: 'tcp', mode: 'ingress' }] }) });
    const a2 = await endpointsOf(api, 'k_a', (e) => e.spec.published.length === 1);
    expect(a2.metadata.resourceVersion).not.toBe(a!.metadata.resourceVersion);
    expect(a2.spec.vip).toBe(a!.spec.vip);

    await api.delete(serviceKind, 'k_b');
    await until('k_b\'s Endpoints gone', async () => ((await api.list<Endpoints>(endpointsKind)).items.some((e) => e.metadata.name === 'k_b') ? undefined : true));
    expect(Object.keys(await held(server.store))).not.toContain(b!.spec.vip);
    await apply(api, 'k', { d: ported() });
    expect((await endpointsOf(api, 'k_d', (e) => !!e.spec.vip)).spec.vip).toBe(b!.spec.vip);

    // A service that no longer needs Endpoints (bridge → host, no ports) gives its VIP back too.
    await apply(api, 'k', { c: hostNet() });
    await until('k_c\'s Endpoints gone', async () => ((await api.list<Endpoints>(endpointsKind)).items.some((e) => e.metadata.name === 'k_c') ? undefined : true));
    expect(Object.keys(await held(server.store))).not.toContain(c!.spec.vip);
    // Made again under its name (a new uid), a service gets a VIP of its own again; the key names the new one.
    await api.delete(serviceKind, 'k_a');
    await apply(api, 'k', { a: ported() });
    const uid = (await api.get<Service>(serviceKind, 'k_a')).metadata.uid;
    const again = await endpointsOf(api, 'k_a', (e) => e.metadata.ownerRefs[0]?.uid === uid && !!e.spec.vip);
    expect((await held(server.store))[again.spec.vip!]).toBe(`k_a/${uid}`);
    await removeStack(api, server, 'k');
  });
});

describe('service VIPs on two servers sharing one store (memory store)', () => {
  it('never gives one VIP twice when both servers\' controllers write Endpoints at once', async () => {
    const shared = memory();
    const s1 = await start({ dataDir: tmp(), ...shared });
    const s2 = await start({ dataDir: tmp(), ...shared });
    try {
      const [api1, api2] = [admin(s1), admin(s2)];
      const services: Record<string, Partial<ServiceSpec>> = {};
      for (let i = 0; i < 30; i++) services[`s${i}`] = i % 2 ? ported() : bridge();
      await apply(api1, 'two', services);
      const eps = await until('30 Endpoints with VIPs', async () => {
        const items = (await api2.list<Endpoints>(endpointsKind)).items;
        return items.length === 30 && items.every((e) => e.spec.vip) ? items : undefined;
      });
      expect(new Set(eps.map((e) => e.spec.vip)).size).toBe(30);
      // Every key names the service whose Endpoints has that VIP, and no race left a key behind.
      expect(await held(shared.store!)).toEqual(await holders(api1, eps));
    } finally {
      await s1.stop();
      await s2.stop();
    }
  });
});

describe('two allocators on one store (memory store)', () => {
  it('never give one VIP twice when each writes Endpoints for other services at the same moment: the store decides', async () => {
    const store = new MemoryStore();
    const writer = async () => {
      const endpoints = new WatchCache(store, endpointsKind);
      await endpoints.start();
      const ctx = { registry: new Registry(store), endpoints, network: taskNetwork(), events: new MemoryEventStore(), log: pino({ level: 'silent' }) };
      return { vips: new ServiceVips(ctx), endpoints };
    };
    const [w1, w2] = [await writer(), await writer()];
    try {
      // Both see the same free range and start from its lowest address; only one of each pair of txns can commit.
      const services = (prefix: string) => Array.from({ length: 12 }, (_, i) => ({ ...service({}, `${prefix}${i}`), metadata: { ...service().metadata, name: `${prefix}${i}`, uid: `${prefix}-uid-${i}` } }));
      const spec = (svc: Service) => endpointsSpec({ ...svc, spec: { ...svc.spec, ...ported() } }, [])!;
      await Promise.all([
        ...services('x_a').map((svc) => w1.vips.write(svc, undefined, spec(svc))),
        ...services('x_b').map((svc) => w2.vips.write(svc, undefined, spec(svc))),
      ]);
      const written = (await store.range('/baton/endpoints/')).kvs.map((kv) => JSON.parse(kv.value) as Endpoints);
      expect(written).toHaveLength(24);
      const vips = written.map((e) => e.spec.vip!).sort(ipOrder);
      expect(vips).toEqual(vipRange(1, 24));
      expect(await held(store)).toEqual(Object.fromEntries(written.map((e) => [e.spec.vip, `${e.metadata.name}/${e.metadata.ownerRefs[0]!.uid}`])));
    } finally {
      w1.endpoints.stop();
      w2.endpoints.stop();
      await store.close();
    }
  });
});

describe('a full service CIDR (memory store)', () => {
  it('writes the Endpoints without a VIP and says so in a Warning event; gives it one once a VIP is freed', async () => {
    // A /30: 10.99.0.0 is the network, 10.99.0.3 the broadcast, two VIPs.
    const server = await start({ dataDir: tmp(), ...memory(), serviceCidr: '10.99.0.0/30' });
    const api = admin(server);
    try {
      await apply(api, 'f', { a: ported() });
      expect((await endpointsOf(api, 'f_a', (e) => !!e.spec.vip)).spec.vip).toBe('10.99.0.1');
      await apply(api, 'f', { b: bridge() });
      expect((await endpointsOf(api, 'f_b', (e) => !!e.spec.vip)).spec.vip).toBe('10.99.0.2');
      await apply(api, 'f', { c: ported({ expose: [9000] }) });
      // Written all the same: the mesh still publishes and serves it by its tasks' addresses.
      const c = await endpointsOf(api, 'f_c');
      expect(c.spec.vip).toBeUndefined();
      expect(c.spec.targets).toEqual([80, 9000]);
      const message = 'no service VIP left for f_c: the service CIDR 10.99.0.0/30 holds 2 and services hold all of them; it is reachable by tasks.c names only until one is freed (remove a service, or restart the server with a larger --service-cidr)';
      const warned = await until('the Warning event', async () => {
        const ev = (await api.events({ limit: 1000 })).items.filter((e) => e.reason === 'ServiceVipsExhausted');
        return ev.length ? ev : undefined;
      });
      expect(warned.map((e) => [e.type, e.kind, e.name, e.message])).toEqual([['Warning', 'Service', 'f_c', message]]);
      expect(await held(server.store)).toEqual(await holders(api, [await endpointsOf(api, 'f_a'), await endpointsOf(api, 'f_b')]));

      await api.delete(serviceKind, 'f_a');
      expect((await endpointsOf(api, 'f_c', (e) => !!e.spec.vip)).spec.vip).toBe('10.99.0.1');
      expect(Object.keys(await held(server.store)).sort()).toEqual(['10.99.0.1', '10.99.0.2']);
    } finally {
      await server.stop();
    }
  });
});

describe('service VIPs on SQLite, across server restarts', () => {
  it('keeps every VIP, gives a new service the next free one, and with another --service-cidr leaves VIPs outside it where they are', async () => {
    const dataDir = tmp();
    let server = await start({ dataDir });
    expect(server.store.backend).toBe('sqlite');
    let api = admin(server);
    await apply(api, 'r', { a: ported(), b: bridge(), c: ported() });
    const before = await Promise.all(['r_a', 'r_b', 'r_c'].map((n) => endpointsOf(api, n, (e) => !!e.spec.vip)));
    const vips = Object.fromEntries(before.map((e) => [e.metadata.name, e.spec.vip!]));
    expect(Object.values(vips).sort(ipOrder)).toEqual(vipRange(1, 3));
    const keys = await held(server.store);
    await server.stop();

    server = await start({ dataDir });
    try {
      api = admin(server);
      // An update after the restart (the controller reconciled every service at start) keeps the VIP.
      await apply(api, 'r', { a: ported({ expose: [9000] }) });
      expect((await endpointsOf(api, 'r_a', (e) => e.spec.targets.includes(9000))).spec.vip).toBe(vips.r_a);
      await apply(api, 'r', { d: bridge() });
      expect((await endpointsOf(api, 'r_d', (e) => !!e.spec.vip)).spec.vip).toBe('10.43.0.4');
      for (const n of ['r_b', 'r_c']) expect((await endpointsOf(api, n)).spec.vip).toBe(vips[n]);
      expect(await held(server.store)).toEqual({ ...keys, '10.43.0.4': expect.stringMatching(/^r_d\//) });
    } finally {
      await server.stop();
    }

    server = await start({ dataDir, serviceCidr: '10.96.0.0/24' });
    try {
      api = admin(server);
      await apply(api, 'r', { e: ported() });
      expect((await endpointsOf(api, 'r_e', (e) => !!e.spec.vip)).spec.vip).toBe('10.96.0.1');
      await apply(api, 'r', { b: bridge({ networks: [{ name: 'r_x', aliases: [] }] }) });
      expect((await endpointsOf(api, 'r_b', (e) => e.spec.networks[0]!.name === 'r_x')).spec.vip).toBe(vips.r_b);
    } finally {
      await server.stop();
    }
  });
});
