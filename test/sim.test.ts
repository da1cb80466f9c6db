/**
 * Simulated nodes: the real agent with the sim driver, against a real server
 * over mutual TLS. Tasks run without containers; a failure rate exercises the
 * agent's restart policy. `baton sim` hosts many such nodes in one process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatonServer } from '../src/server/server.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { ApiClient } from '../src/api/client.js';
import type { Task } from '../src/api/types.js';
import { tlsTransport, withTransport, type Transport } from '../src/api/tls.js';
import { Agent } from '../src/agent/agent.js';
import { SimDriver, SimEngine } from '../src/agent/sim/simDriver.js';
import { simAddress } from '../src/cli/sim.js';
import { serviceSpec } from './fixtures.js';
import { eventually, startProc, stopProc, waitOutput } from './helpers/proc.js';

describe('simulated nodes', () => {
  let server: BatonServer;
  let api: ApiClient;
  let tls: Transport;
  let dir: string;
  const engine = new SimEngine();
  const agents: Agent[] = [];

  const addNode = async (name: string, i: number, zone: string, failureRate = 0) => {
    const a = new Agent({
      server: server.url,
      joinToken: server.joinToken,
      name,
      address: simAddress(i),
      dataDir: join(dir, name),
      driver: new SimDriver(engine, { startLatencyMs: 20, failureRate, failAfterMs: 100 }),
      cpus: 4,
      memoryBytes: 8 * 1024 ** 3,
      labels: { zone },
      portRange: [20000, 20999],
      mesh: false,
        listenPort: null,
      pull: 'never',
      logLevel: 'silent',
    });
    await a.start();
    agents.push(a);
  };
  const tasksOf = async (svc: string) => (await api.tasks({ fieldSelector: { 'spec.serviceName': svc } })).items.filter((t: Task) => t.spec.desiredState === 'running');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baton-sim-'));
    server = await BatonServer.start({ dataDir: join(dir, 'server'), listen: '127.0.0.1:0', store: new MemoryStore(), events: new MemoryEventStore(), logLevel: 'silent', timings: { heartbeatIntervalMs: 200 } });
    tls = tlsTransport({ caPem: server.caPem });
    api = new ApiClient(withTransport({ server: server.url, token: server.adminToken }, tls));
    await Promise.all([addNode('s0', 0, 'a'), addNode('s1', 1, 'a'), addNode('s2', 2, 'b')]);
  });

  afterAll(async () => {
    for (const a of agents) await a.stop();
    await tls.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives each node its own loopback address, never .0, .1 or .255', () => {
    expect([0, 1, 249, 250, 62_499, 62_500].map(simAddress)).toEqual(['127.1.0.2', '127.1.0.3', '127.1.0.251', '127.1.1.2', '127.1.249.251', '127.2.0.2']);
  });

  it('runs a spread service and a global service on simulated nodes, through the real scheduler and agents', async () => {
    const spec = serviceSpec({ stack: 'sim', shortName: 'web', replicas: 12, container: { ...serviceSpec().container, image: 'demo/web:1' }, placement: { constraints: [], preferences: ['node.labels.zone'] } });
    const global = serviceSpec({ stack: 'sim', shortName: 'agent', mode: 'global', replicas: 0, container: { ...serviceSpec().container, image: 'demo/agent:1' } });
    await api.apply('sim', { services: [{ name: 'sim_web', spec, labels: {} }, { name: 'sim_agent', spec: global, labels: {} }], prune: false, dryRun: false });
    const web = await eventually(async () => {
      const ts = await tasksOf('sim_web');
      expect(ts.filter((t) => t.status.state === 'running')).toHaveLength(12);
      return ts;
    }, 20_000);
    // Six per zone: zone b has one node, zone a two.
    expect(web.filter((t) => t.spec.nodeName === 's2')).toHaveLength(6);
    await eventually(async () => expect((await tasksOf('sim_agent')).filter((t) => t.status.state === 'running').map((t) => t.spec.nodeName).sort()).toEqual(['s0', 's1', 's2']), 20_000);
    expect([...engine.containers.values()].filter((c) => c.state === 'running')).toHaveLength(15);
  });

  it('restarts tasks that crash on a flaky node, by their policy', async () => {
    await addNode('flaky', 3, 'c', 1);
    const spec = serviceSpec({ stack: 'sim', shortName: 'crashy', replicas: 2, container: { ...serviceSpec().container, image: 'demo/crashy:1' }, placement: { constraints: ['node.name == flaky'] }, restartPolicy: { condition: 'any', delayMs: 50, maxDelayMs: 200, maxAttempts: 0, windowMs: 0 } });
    await api.apply('sim', { services: [{ name: 'sim_crashy', spec, labels: {} }], prune: false, dryRun: false });
    await eventually(async () => {
      const ts = await tasksOf('sim_crashy');
      expect(ts).toHaveLength(2);
      for (const t of ts) expect(t.status.restartCount).toBeGreaterThanOrEqual(2);
    }, 20_000);
  });

  it('preempts lower-priority tasks for a higher-priority service; the victims go back to pending', async () => {
    const cpu1 = { reservations: { cpus: 1, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } };
    const img = (i: string) => ({ ...serviceSpec().container, image: i });
    const filler = serviceSpec({ stack: 'sim', shortName: 'filler', replicas: 12, resources: cpu1, container: img('demo/filler:1'), placement: { constraints: ['node.labels.zone != c'] } });
    await api.apply('sim', { services: [{ name: 'sim_filler', spec: filler, labels: {} }], prune: false, dryRun: false });
    await eventually(async () => expect((await tasksOf('sim_filler')).filter((t) => t.status.state === 'running')).toHaveLength(12), 20_000);
    const urgent = serviceSpec({ stack: 'sim', shortName: 'urgent', replicas: 2, resources: cpu1, container: img('demo/urgent:1'), placement: { constraints: ['node.labels.zone != c'], priority: 10 } });
    await api.apply('sim', { services: [{ name: 'sim_urgent', spec: urgent, labels: {} }], prune: false, dryRun: false });
    await eventually(async () => {
      expect((await tasksOf('sim_urgent')).filter((t) => t.status.state === 'running')).toHaveLength(2);
      const f = await tasksOf('sim_filler');
      expect(f.filter((t) => t.status.state === 'running')).toHaveLength(10);
      const waiting = f.filter((t) => t.status.state === 'pending');
      expect(waiting).toHaveLength(2);
      for (const t of waiting) expect(t.status.pendingReason).toMatch(/insufficient cpu/);
    }, 20_000);
    const ev = (await api.events({ limit: 500 })).items.filter((e) => e.reason === 'Preempted');
    expect(ev).toHaveLength(2);
    expect(ev[0]!.message).toMatch(/sim_filler\..* \(priority 0\) preempted on s\d for sim_urgent\..* \(priority 10\)/);
  });

  it('sends a task back to the node holding its named volume, and never puts two tasks publishing one host-mode port on a node', async () => {
    const zoneA = { constraints: ['node.labels.zone == a'] };
    const db = serviceSpec({ stack: 'sim', shortName: 'db', replicas: 1, container: { ...serviceSpec().container, image: 'demo/db:1', mounts: [{ type: 'volume', source: 'sim_dbdata', target: '/data', readOnly: false }] }, placement: zoneA });
    await api.apply('sim', { services: [{ name: 'sim_db', spec: db, labels: {} }], prune: false, dryRun: false });
    const first = await eventually(async () => {
      const [t] = (await tasksOf('sim_db')).filter((x) => x.status.state === 'running');
      expect(t).toBeDefined();
      return t!;
    }, 20_000);
    const home = first.spec.nodeName;
    // The node's agent reports the volume it made.
    await eventually(async () => expect((await api.nodes()).items.find((n) => n.metadata.name === home)!.status.volumes).toContain('sim_dbdata'), 20_000);
    await api.scale('sim_db', 0);
    await eventually(async () => expect(await tasksOf('sim_db')).toHaveLength(0), 20_000);
    await api.scale('sim_db', 1);
    const again = await eventually(async () => {
      const [t] = (await tasksOf('sim_db')).filter((x) => x.status.state === 'running');
      expect(t).toBeDefined();
      return t!;
    }, 20_000);
    expect(again.metadata.name).not.toBe(first.metadata.name);
    expect(again.spec.nodeName).toBe(home);
    expect(again.status.scheduling!.filtered[`volume is on another node (sim_dbdata is on ${home})`]).toBe(1);

    const edge = serviceSpec({ stack: 'sim', shortName: 'edge', replicas: 3, container: { ...serviceSpec().container, image: 'demo/edge:1' }, ports: [{ target: 80, published: 8081, protocol: 'tcp', mode: 'host' }], placement: zoneA });
    await api.apply('sim', { services: [{ name: 'sim_edge', spec: edge, labels: {} }], prune: false, dryRun: false });
    await eventually(async () => {
      const ts = await tasksOf('sim_edge');
      const running = ts.filter((t) => t.status.state === 'running');
      expect(running.map((t) => t.spec.nodeName).sort()).toEqual(['s0', 's1']);
      for (const t of running) expect(t.status.ports).toEqual([{ target: 80, hostPort: 8081, published: 8081 }]);
      const waiting = ts.filter((t) => t.status.state === 'pending');
      expect(waiting).toHaveLength(1);
      expect(waiting[0]!.status.pendingReason).toMatch(/2 host port in use \(8081\)/);
    }, 20_000);
  });

  it('baton sim hosts many real agents in one process', async () => {
    const p = startProc(['sim', '--join', server.url, '--token', server.joinToken, '--nodes', '8', '--name-prefix', 'p-', '--data-dir', join(dir, 'proc'), '--label', 'zone=z'], { BATON_HOME: dir });
    try {
      await waitOutput(p, /sim: 8\/8 simulated nodes up/, 30_000);
      await eventually(async () => {
        const ns = (await api.nodes()).items.filter((n) => n.metadata.name.startsWith('p-'));
        expect(ns).toHaveLength(8);
        expect(ns.every((n) => n.status.state === 'ready' && n.metadata.labels.zone === 'z')).toBe(true);
      }, 20_000);
    } finally {
      await stopProc(p);
    }
    expect(p.child.exitCode === 0 || p.child.signalCode === 'SIGTERM').toBe(true);
  });
});
