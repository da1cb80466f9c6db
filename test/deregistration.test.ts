/**
 * Deregistration of a stopping task: the server's record of the Endpoints
 * revision each node's routing mesh has applied (MeshRevisions, first on a
 * fake clock, then over real HTTP with node certificates), and an agent's
 * hold on a stopping task with a real mesh (its nftables rules checked),
 * released when every Ready node has applied the task's removal, or at its
 * deadline.
 */
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { FakeClock, systemClock } from '../src/base/clock.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { Registry } from '../src/server/registry.js';
import { WatchCache } from '../src/server/watchCache.js';
import { MeshRevisions } from '../src/server/meshRevisions.js';
import { ApiClient } from '../src/api/client.js';
import { endpointsKind, nodeKind, taskKind } from '../src/api/kinds.js';
import type { EndpointsApplied, Node, Task } from '../src/api/types.js';
import { withTransport } from '../src/api/tls.js';
import { joinCluster } from '../src/agent/join.js';
import { Mesh } from '../src/agent/mesh.js';
import { tableName } from '../src/agent/nft.js';
import { Deregistration, MeshReporter } from '../src/agent/deregistration.js';
import { node as nodeFixture, serviceSpec } from './fixtures.js';
import { eventually } from './helpers/proc.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';

const settle = () => new Promise((r) => setTimeout(r, 20));
const execFileP = promisify(execFile);
const silent = pino({ level: 'silent' });

/** allReady waits until both nodes of the API server are Ready. */
const allReady = (api: ApiClient) => eventually(async () => expect((await api.nodes()).items.map((n) => n.status.state)).toEqual(['ready', 'ready']), 10_000, 20);


/** What an agent reports of a task: never the scheduler's decision or a pending reason (the server keeps those). */
function reported(t: Task): Omit<Task['status'], 'scheduling' | 'pendingReason'> {
  const { scheduling: _decision, pendingReason: _why, ...rest } = t.status;
  return rest;
}

describe('MeshRevisions (fake clock, real node cache)', () => {
  let clock: FakeClock;
  let store: MemoryStore;
  let nodes: WatchCache;
  let registry: Registry;
  let meshes: MeshRevisions;
  const GRACE = 1000;

  beforeEach(async () => {
    clock = new FakeClock();
    store = new MemoryStore({ clock });
    nodes = new WatchCache(store, nodeKind);
    await nodes.start();
    registry = new Registry(store, clock);
    for (const n of ['a', 'b', 'c']) {
      const f = nodeFixture(n);
      await registry.create(nodeKind, { metadata: { name: n }, spec: f.spec, status: f.status });
    }
    await registry.create(nodeKind, { metadata: { name: 'd' }, spec: { availability: 'active' }, status: nodeFixture('d', { state: 'down' }).status });
    await eventually(async () => expect(nodes.objects.size).toBe(4), 5000, 10);
    meshes = new MeshRevisions(clock, nodes, GRACE);
  });

  afterEach(async () => {
    meshes.close();
    nodes.stop();
    await store.close();
  });

  const setState = async (name: string, state: Node['status']['state']) => {
    await registry.mutate<Node & { status: Node['status'] }>(nodeKind, name, (cur) => ({ ...cur, status: { ...cur.status, state } }) as never);
    await eventually(async () => expect((nodes.objects.get(name) as unknown as Node).status.state).toBe(state), 5000, 10);
  };

  it('counts every Ready node until the grace after its start ends, then only those that run a mesh', () => {
    expect(meshes.pending(5)).toEqual(['a', 'b', 'c']);
    meshes.report('a', 7);
    expect(meshes.pending(5)).toEqual(['b', 'c']);
    clock.advance(GRACE);
    // b and c never reported nor watched Endpoints (simulated nodes run no mesh): they hold nothing up.
    expect(meshes.pending(5)).toEqual([]);
    expect(meshes.pending(8)).toEqual(['a']);
    meshes.watching('b');
    expect(meshes.pending(8)).toEqual(['a', 'b']);
    // Reports only grow.
    meshes.report('a', 3);
    expect(meshes.appliedBy('a')).toBe(7);
  });

  it('answers a wait when the last node applies the revision, drops nodes that leave Ready, and gives up at the timeout', async () => {
    clock.advance(GRACE);
    for (const n of ['a', 'b', 'c']) meshes.report(n, 10);
    let answer: EndpointsApplied | undefined;
    void meshes.waitApplied(12, 5000).then((a) => (answer = a));
    meshes.report('a', 12);
    meshes.report('b', 11);
    await settle();
    expect(answer).toBeUndefined();
    meshes.report('b', 13);
    await settle();
    expect(answer).toBeUndefined();
    // c goes NotReady: it no longer holds the wait up.
    await setState('c', 'not-ready');
    await eventually(async () => expect(answer).toEqual({ revision: '12', applied: true, pending: [] }), 5000, 10);

    let late: EndpointsApplied | undefined;
    void meshes.waitApplied(20, 5000).then((a) => (late = a));
    clock.advance(4999);
    await settle();
    expect(late).toBeUndefined();
    clock.advance(1);
    await settle();
    expect(late).toEqual({ revision: '20', applied: false, pending: ['a', 'b'] });
  });

  it('ends a wait whose caller is gone, and answers every wait when closed', async () => {
    clock.advance(GRACE);
    meshes.report('a', 1);
    const gone = new AbortController();
    const w1 = meshes.waitApplied(5, 60_000, gone.signal);
    const w2 = meshes.waitApplied(5, 60_000);
    gone.abort();
    expect(await w1).toEqual({ revision: '5', applied: false, pending: ['a'] });
    meshes.close();
    expect(await w2).toEqual({ revision: '5', applied: false, pending: ['a'] });
  });
});

describe('deregistration over the API (memory store, real HTTP, node certificates)', () => {
  let ms: MemoryServer;
  let api: ApiClient;
  let w1: ApiClient;
  let w2: ApiClient;
  const beating = new Set(['w1', 'w2']);
  let hb: NodeJS.Timeout;
  const HEARTBEAT_MS = 100;
  // The server's NotReady window after a start: before it ends, every Ready node counts.
  const GRACE = HEARTBEAT_MS * 3;

  beforeAll(async () => {
    ms = await memoryServer('baton-dereg-', { heartbeatIntervalMs: HEARTBEAT_MS, bookmarkIntervalMs: 200, endpointsBatchMs: 20, statusBatchMs: 50 });
    const { server } = ms;
    api = ms.api;
    const join1 = async (name: string) => {
      const c = await joinCluster({ server: server.url, token: server.joinToken, name, address: '127.0.0.1' });
      const client = new ApiClient(withTransport({ server: server.url }, ms.transport({ caPem: c.caPem, certPem: c.certPem, keyPem: c.keyPem })));
      await client.call('POST', '/api/v1/nodes/register', { name, address: '127.0.0.1', hostname: name, agentVersion: '0.1.0', capacity: { cpus: 4, memoryBytes: 2 ** 32 }, portRange: [1, 2], engine: { ok: true, version: 'test' } });
      return client;
    };
    [w1, w2] = [await join1('w1'), await join1('w2')];
    hb = setInterval(() => {
      for (const [n, c] of [['w1', w1], ['w2', w2]] as const) if (beating.has(n)) void c.call('POST', `/api/v1/nodes/${n}/heartbeat`, { engine: { ok: true, version: 'test' } }).catch(() => {});
    }, HEARTBEAT_MS / 2);
    await allReady(api);
  });

  afterAll(async () => {
    clearInterval(hb);
    // The clients go first (a wait they still hold would hold the server's close), then the server.
    await ms.stop();
  });

  const applied = (c: ApiClient, query: string) => c.call<EndpointsApplied>('GET', `/api/v1/endpoints/-/applied?${query}`);
  const report = (c: ApiClient, node: string, revision: number) => c.call('POST', `/api/v1/nodes/${node}/mesh`, { endpointsRevision: String(revision) });

  it('answers which Ready nodes with a mesh have not applied a revision, and waits for them', async () => {
    // Neither node has reported or watched Endpoints: once the grace after the server's start is over, nothing to wait for.
    await eventually(async () => expect(await applied(api, 'revision=5')).toEqual({ revision: '5', applied: true, pending: [] }), GRACE * 5, 20);
    await report(w2, 'w2', 5);
    expect(await applied(api, 'revision=6')).toEqual({ revision: '6', applied: false, pending: ['w2'] });
    expect(await applied(w1, 'revision=5')).toMatchObject({ applied: true });
    // A node watching Endpoints runs a mesh: it counts before its first report.
    const ac = new AbortController();
    const watch = (async () => {
      for await (const _ of w1.watch(endpointsKind, { signal: ac.signal }));
    })().catch(() => {});
    await eventually(async () => expect((await applied(api, 'revision=5')).pending).toContain('w1'), 10_000, 20);
    ac.abort();
    await watch;

    // A wait answers as soon as the last node reports, well before its timeout.
    const t0 = Date.now();
    const waiting = applied(w1, 'revision=7&timeoutMs=5000');
    await new Promise((r) => setTimeout(r, 100));
    await report(w1, 'w1', 7);
    await report(w2, 'w2', 8);
    expect(await waiting).toEqual({ revision: '7', applied: true, pending: [] });
    expect(Date.now() - t0).toBeLessThan(2500);

    // Bounded: nobody reports 9, and the wait ends at its timeout with the nodes it waited for.
    const t1 = Date.now();
    expect(await applied(api, 'revision=9&timeoutMs=300')).toEqual({ revision: '9', applied: false, pending: ['w1', 'w2'] });
    expect(Date.now() - t1).toBeGreaterThanOrEqual(290);
    expect(Date.now() - t1).toBeLessThan(2500);
  });

  it('drops a node that stops being Ready from a wait', async () => {
    const waiting = applied(api, 'revision=10&timeoutMs=20000');
    await report(w1, 'w1', 10);
    const t0 = Date.now();
    beating.delete('w2');
    try {
      expect(await waiting).toEqual({ revision: '10', applied: true, pending: [] });
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      beating.add('w2');
      await allReady(api);
    }
  });

  it('refuses a report for another node, from an admin, or badly formed, and a bad query, saying where', async () => {
    await expect(report(w1, 'w2', 11)).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN', message: expect.stringMatching(/node w1 may not act for node w2/) });
    await expect(report(api, 'w1', 11)).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    await expect(w1.call('POST', '/api/v1/nodes/w1/mesh', { endpointsRevision: 11 })).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [{ path: 'body.endpointsRevision', message: expect.any(String) }] });
    await expect(w1.call('POST', '/api/v1/nodes/w1/mesh', { endpointsRevision: '1; drop' })).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [{ path: 'body.endpointsRevision', message: expect.stringMatching(/store revision/) }] });
    await expect(applied(api, 'revision=abc')).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [{ path: 'query.revision', message: expect.any(String) }] });
    await expect(applied(api, 'revision=1&timeoutMs=61000')).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [{ path: 'query.timeoutMs', message: expect.stringMatching(/at most 60000/) }] });
    await expect(applied(api, '')).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [{ path: 'query.revision' }] });
    // Nothing was recorded from the refused reports.
    expect((await applied(api, 'revision=11')).pending).toEqual(['w1', 'w2']);
  });

  it("holds a stopping task until every Ready node's mesh applied its removal, at most its deadline", async () => {
    const meshDir = mkdtempSync(join(tmpdir(), 'baton-dereg-mesh-'));
    const stop = new AbortController();
    // The kernel path on: a revision counts as applied only once its DNAT rules are loaded.
    const cluster = `dereg${process.pid}`;
    const mesh = new Mesh(w1, { node: 'w1', cluster, address: '127.0.0.1', vipRange: '127.99.41.0/24', dataDir: meshDir, log: silent });
    const kernelRules = async () => (await execFileP('/usr/sbin/nft', ['list', 'table', 'ip', tableName('w1', cluster)])).stdout;
    const woken: string[] = [];
    new MeshReporter({ client: w1, node: 'w1', mesh, minIntervalMs: () => 0, signal: stop.signal, log: silent });
    // A long deadline where the hold must end by confirmation, a short one where it must end by the deadline.
    const LONG = 20_000;
    const SHORT = 1000;
    const deregistration = (timeoutMs: number) => new Deregistration({ client: w1, mesh, clock: systemClock, timeoutMs, wake: (t) => woken.push(t), signal: stop.signal, log: silent });
    await mesh.start();
    try {
      await api.apply('d', { services: [{ name: 'd_web', spec: serviceSpec({ stack: 'd', shortName: 'web', replicas: 1, expose: [80], placement: { constraints: ['node.name == w1'] } }), labels: {} }], prune: false, dryRun: false });
      /** up: the service's running task, reported ready by w1 and routed by w1's mesh. */
      const up = async (): Promise<Task> => {
        const t = await eventually(async () => {
          const found = (await api.tasks({ fieldSelector: { 'spec.serviceName': 'd_web' } })).items.find((x) => x.spec.desiredState === 'running' && x.spec.nodeName === 'w1');
          expect(found).toBeDefined();
          return found!;
        }, 10_000, 20);
        const now = new Date().toISOString();
        await w1.updateStatus(taskKind, [{ name: t.metadata.name, uid: t.metadata.uid, status: { ...reported(t), state: 'running', message: 'started', hostIP: '127.0.0.1', ports: [{ target: 80, hostPort: 41080 }], restartCount: 0, startedAt: now, readyAt: now, timestamp: now } }], []);
        await eventually(async () => expect(mesh.routesTo('d_web', t.metadata.name) && mesh.appliedRevision >= mesh.changeRevision).toBe(true), 10_000, 20);
        expect(await kernelRules()).toMatch(/dnat to 127\.0\.0\.1:41080/);
        return t;
      };
      /** release: scale to zero and call remainingMs on every wake until it says stop; when it did, and how often it held. */
      const release = async (dereg: Deregistration, deadline: number, t: Task, meanwhile?: () => Promise<void>): Promise<{ ms: number; held: number }> => {
        const t0 = Date.now();
        woken.length = 0;
        await api.scale('d_web', 0);
        let held = 0;
        const other = meanwhile?.();
        for (;;) {
          const ms = dereg.remainingMs(t.metadata.name, 'd_web');
          if (ms === 0) break;
          held++;
          expect(ms).toBeLessThanOrEqual(deadline);
          // The agent requeues at `ms` at the latest; a wake comes sooner when the answer may change.
          await eventually(async () => expect(woken).toContain(t.metadata.name), ms + 1000, 10).catch(() => {});
          woken.length = 0;
        }
        await other;
        dereg.forget(t.metadata.name);
        // Stopped, as its agent would report it, so its slot can start again.
        const now = new Date().toISOString();
        await w1.updateStatus(taskKind, [{ name: t.metadata.name, uid: t.metadata.uid, status: { state: 'shutdown', message: 'stopped', hostIP: '127.0.0.1', ports: [], restartCount: 0, exitCode: 0, finishedAt: now, timestamp: now } }], []);
        return { ms: Date.now() - t0, held };
      };

      // w2 counts (it reported before) and lags: the task is held until it applies the removal too.
      const first = await up();
      const confirming = deregistration(LONG);
      const r1 = await release(confirming, LONG, first, async () => {
        await eventually(async () => expect(!mesh.routesTo('d_web', first.metadata.name) && mesh.appliedRevision >= mesh.changeRevision).toBe(true), 10_000, 20);
        const removedAt = mesh.changeRevision;
        expect(await kernelRules()).not.toMatch(/dnat to 127\.0\.0\.1:41080/);
        // w1's own mesh applied the removal (and reported it), yet the task is still held for w2.
        await eventually(async () => expect((await applied(api, `revision=${removedAt}`)).pending).toEqual(['w2']), 10_000, 20);
        await new Promise((r) => setTimeout(r, 200));
        expect(confirming.remainingMs(first.metadata.name, 'd_web')).toBeGreaterThan(0);
        await report(w2, 'w2', removedAt);
      });
      expect(r1.held).toBeGreaterThan(0);
      expect(r1.ms).toBeLessThan(LONG / 2);

      // w2 never applies the next removal: the task stops at its deadline, not before, not much after.
      await api.scale('d_web', 1);
      const second = await up();
      const r2 = await release(deregistration(SHORT), SHORT, second);
      expect(r2.ms).toBeGreaterThanOrEqual(SHORT);
      expect(r2.ms).toBeLessThan(SHORT * 5);
    } finally {
      stop.abort();
      await mesh.stop();
      rmSync(meshDir, { recursive: true, force: true });
    }
  });
});
