/**
 * Tasks of several containers (a pod): what the API accepts of one, how its
 * spec reaches its tasks (the hash that rolls them, a StatefulSet's claims
 * per container), and the real agent running one on simulated nodes
 * through the real server (init containers first, sidecars beside, each
 * container in the task's status).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serviceSpecSchema } from '../src/api/schemas.js';
import { defaultContainerSpec, isTaskReady, type PodContainer, type Service, type ServiceSpec, type Task } from '../src/api/types.js';
import { newTaskSpec, specHash } from '../src/server/controllers/serviceReconciler.js';
import { BatonServer } from '../src/server/server.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { ApiClient } from '../src/api/client.js';
import { tlsTransport, withTransport } from '../src/api/tls.js';
import { Agent } from '../src/agent/agent.js';
import { SimDriver, SimEngine } from '../src/agent/sim/simDriver.js';
import { simAddress } from '../src/cli/sim.js';
import { isBatonError } from '../src/base/errors.js';
import { serviceSpec } from './fixtures.js';
import { eventually } from './helpers/proc.js';

const side = (name: string, over: Partial<PodContainer['container']> = {}): PodContainer => ({
  name,
  container: { ...defaultContainerSpec('demo/side:1'), ...over },
  resources: { reservations: { cpus: 0, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } },
});
const asService = (spec: ServiceSpec): Service => ({ apiVersion: 'baton/v1', kind: 'Service', metadata: { name: 'app_web', uid: 'u1', labels: {}, resourceVersion: '1', generation: 1, creationTimestamp: '2026-12-04T00:00:00Z' }, spec, status: { observedGeneration: 0, desired: 1, ready: 0, running: 0 } }) as unknown as Service;

describe('a pod in the API', () => {
  const problems = (s: ServiceSpec) => {
    const r = serviceSpecSchema.safeParse(s);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('accepts sidecars and init containers named apart, sharing the main container\'s network mode', () => {
    expect(problems(serviceSpec({ containerName: 'web', sidecars: [side('proxy')], initContainers: [side('migrate')] }))).toEqual([]);
    expect(problems(serviceSpec({ sidecars: [side('main')] }))).toEqual(['sidecars.0.name: another container of the task is named "main"']);
    expect(problems(serviceSpec({ sidecars: [side('a')], initContainers: [side('a')] }))).toEqual(['initContainers.0.name: another container of the task is named "a"']);
    expect(problems(serviceSpec({ sidecars: [side('Proxy_1')] }))).toEqual(['sidecars.0.name: must be a lowercase DNS label (a-z, 0-9 and -, at most 63)']);
    expect(problems(serviceSpec({ sidecars: [side('p', { networkMode: 'host' })] }))).toEqual(["sidecars.0.container.networkMode: must be the main container's (bridge): a task's containers share one network namespace"]);
    const none = serviceSpec({ sidecars: [side('p', { networkMode: 'none' })] });
    none.container.networkMode = 'none';
    expect(problems(none)).toEqual(["sidecars: a task's containers share its network namespace; networkMode none gives each container a loopback of its own"]);
    expect(problems(serviceSpec({ sidecars: Array.from({ length: 17 }, (_, i) => side(`s${i}`)) }))[0]).toMatch(/^sidecars: /);
  });

  it('takes a task directory by a DNS label only (it becomes a directory on the node)', () => {
    const mount = (source: string) => serviceSpec({ container: { ...serviceSpec().container, mounts: [{ type: 'task', source, target: '/data', readOnly: false }] } });
    expect(problems(mount('html'))).toEqual([]);
    expect(problems(mount('../../etc'))).toEqual(["container.mounts.0.source: a task directory's source must be a lowercase DNS label (an emptyDir's name)"]);
  });

  it('rolls a pod\'s tasks when a sidecar changes, and keeps the hash of a service of one container', () => {
    const one = serviceSpec();
    const pod = serviceSpec({ sidecars: [side('proxy')] });
    expect(specHash(asService(one))).toBe(specHash(asService({ ...one, sidecars: [], initContainers: [] })));
    expect(specHash(asService(pod))).not.toBe(specHash(asService(one)));
    expect(specHash(asService({ ...pod, sidecars: [side('proxy', { image: 'demo/side:2' })] }))).not.toBe(specHash(asService(pod)));
  });

  it('gives each ordinal of a StatefulSet its claims, in the container that mounts each', () => {
    const s = serviceSpec({ stack: 'db', shortName: 'pg', sidecars: [side('backup')], stateful: { ordered: true, volumes: [{ name: 'data', target: '/var/lib/pg', readOnly: false }, { name: 'dumps', target: '/dumps', readOnly: false, container: 'backup' }] } });
    const t = newTaskSpec(asService(s), 2, 'h');
    expect(t.container.mounts).toEqual([{ type: 'volume', source: 'db_data-pg-1', target: '/var/lib/pg', readOnly: false }]);
    expect(t.sidecars![0]!.container.mounts).toEqual([{ type: 'volume', source: 'db_dumps-pg-1', target: '/dumps', readOnly: false }]);
    expect(t.sidecars![0]!.container.hostname).toBe('pg-1');
  });

  it('counts a sidecar\'s probes in the task\'s readiness (its agent reports ready for the whole task)', () => {
    const probe = { test: ['CMD', 'true'], intervalMs: 1000, timeoutMs: 1000, retries: 1, startPeriodMs: 0 };
    const task = (ready: boolean | undefined) => ({ spec: { container: serviceSpec().container, sidecars: [side('p', { readiness: probe })] }, status: { state: 'running', ...(ready === undefined ? {} : { ready }) } }) as unknown as Task;
    expect(isTaskReady(task(undefined))).toBe(false);
    expect(isTaskReady(task(false))).toBe(false);
    expect(isTaskReady(task(true))).toBe(true);
  });
});

describe('a pod on simulated nodes', () => {
  let server: BatonServer;
  let api: ApiClient;
  let dir: string;
  const engine = new SimEngine();
  let agent: Agent;
  let tls: ReturnType<typeof tlsTransport>;
  const driver = new SimDriver(engine, { startLatencyMs: 5 });
  const startAgent = async () => {
    agent = new Agent({ server: server.url, joinToken: server.joinToken, name: 'p0', address: simAddress(0), dataDir: join(dir, 'p0'), driver, cpus: 4, memoryBytes: 8 * 1024 ** 3, portRange: [21000, 21099], mesh: false, listenPort: null, pull: 'never', logLevel: 'silent' });
    await agent.start();
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baton-pod-'));
    server = await BatonServer.start({ dataDir: join(dir, 'server'), listen: '127.0.0.1:0', store: new MemoryStore(), events: new MemoryEventStore(), logLevel: 'silent', timings: { heartbeatIntervalMs: 200 } });
    tls = tlsTransport({ caPem: server.caPem });
    api = new ApiClient(withTransport({ server: server.url, token: server.adminToken }, tls));
    await startAgent();
  });

  afterAll(async () => {
    await agent?.stop();
    await tls?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the init containers first, then the main container with its sidecars, reports each, and keeps their counts across an agent restart', async () => {
    const spec = serviceSpec({ stack: 'sim', shortName: 'pod', replicas: 1, containerName: 'app', sidecars: [side('proxy')], initContainers: [side('schema'), side('seed')] });
    await api.apply('sim', { services: [{ name: 'sim_pod', spec, labels: {} }], prune: false, dryRun: false });
    const t = await eventually(async () => {
      const [x] = (await api.tasks({ fieldSelector: { 'spec.serviceName': 'sim_pod' } })).items;
      expect(x?.status.state).toBe('running');
      expect(x?.status.containers?.find((c) => c.name === 'proxy')?.state).toBe('running');
      return x!;
    }, 20_000);
    expect(t.status.containers).toMatchObject([
      { name: 'schema', role: 'init', state: 'exited', exitCode: 0 },
      { name: 'seed', role: 'init', state: 'exited', exitCode: 0 },
      { name: 'app', role: 'main', state: 'running' },
      { name: 'proxy', role: 'sidecar', state: 'running', restartCount: 0 },
    ]);
    expect(t.status.readyAt).toBeDefined();
    const names = [...engine.containers.keys()].filter((n) => n.startsWith(`baton-${t.metadata.name}`)).sort();
    expect(names).toEqual([`baton-${t.metadata.name}`, `baton-${t.metadata.name}_proxy`, `baton-${t.metadata.name}_schema`, `baton-${t.metadata.name}_seed`]);
    // Init containers ran to completion before the main container started.
    const started = (n: string) => Date.parse(engine.containers.get(n)!.startedAt!);
    expect(started(`baton-${t.metadata.name}_seed`)).toBeGreaterThanOrEqual(started(`baton-${t.metadata.name}_schema`));
    expect(started(`baton-${t.metadata.name}`)).toBeGreaterThanOrEqual(started(`baton-${t.metadata.name}_seed`));

    // The main container and the sidecar each exit and are started again in place; an agent restart keeps both counts.
    const byName = (n: string) => engine.containers.get(n)!.handle;
    const current = async () => (await api.tasks({ fieldSelector: { 'spec.serviceName': 'sim_pod' } })).items[0]!;
    await driver.stop(byName(`baton-${t.metadata.name}`));
    await eventually(async () => expect((await current()).status).toMatchObject({ state: 'running', restartCount: 1 }), 20_000);
    await driver.stop(byName(`baton-${t.metadata.name}_proxy`));
    await eventually(async () => expect((await current()).status.containers?.find((c) => c.name === 'proxy')).toMatchObject({ state: 'running', restartCount: 1 }), 20_000);
    await agent.stop();
    await startAgent();
    // Once the new agent has judged the task, what it reports is in the store (the old report would pass at once otherwise).
    const produced = () => [...agent.taskStatuses()].find((x) => x.task === t.metadata.name)?.status;
    await eventually(async () => expect((agent as unknown as { state: { locals: Map<string, { status?: unknown }> } }).state.locals.get(t.metadata.name)?.status).toBeDefined(), 20_000);
    await agent.flush();
    expect(produced()?.restartCount).toBe(1);
    await eventually(async () => {
      const after = await current();
      expect(after.status.restartCount).toBe(1);
      expect(after.status.containers).toMatchObject([{ name: 'schema', state: 'exited', exitCode: 0 }, { name: 'seed', state: 'exited', exitCode: 0 }, { name: 'app', state: 'running', restartCount: 1 }, { name: 'proxy', state: 'running', restartCount: 1 }]);
    }, 20_000);

    // Removing the service removes every container of the task.
    await api.apply('sim', { services: [], prune: true, dryRun: false });
    await eventually(async () => expect([...engine.containers.keys()].filter((n) => n.startsWith(`baton-${t.metadata.name}`))).toEqual([]), 20_000);
  });

  it('refuses a pod spec with each problem at its path, and applies nothing', async () => {
    const bad = serviceSpec({ stack: 'sim', shortName: 'bad', sidecars: [side('main'), side('x', { networkMode: 'host' })] });
    const err = await api.apply('sim', { services: [{ name: 'sim_bad', spec: bad, labels: {} }], prune: false, dryRun: false }).catch((e: unknown) => e);
    expect(isBatonError(err) && err.code).toBe('BATON_ERR_VALIDATION');
    expect(isBatonError(err) && err.details?.map((d) => d.path)).toEqual(expect.arrayContaining([expect.stringMatching(/sidecars\[0\]\.name$/), expect.stringMatching(/sidecars\[1\]\.container\.networkMode$/)]));
    expect((await api.tasks({ fieldSelector: { 'spec.serviceName': 'sim_bad' } })).items).toEqual([]);
  });
});
