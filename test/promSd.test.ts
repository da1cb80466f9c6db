/**
 * Prometheus HTTP service discovery over the real API on the memory store:
 * each node's agent, and each running task of a service that says where it
 * serves metrics (x-baton.metrics, or prometheus.io/* labels), at the
 * task's own address or its node's, with its stack, service, task, slot
 * and node as labels; nothing for a task that does not run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskKind } from '../src/api/kinds.js';
import type { Node, Task } from '../src/api/types.js';
import type { TargetGroup } from '../src/server/promSd.js';
import { VERSION } from '../src/base/version.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';
import { serviceSpec } from './fixtures.js';
import { eventually } from './helpers/proc.js';

describe('Prometheus service discovery', () => {
  let s: MemoryServer;
  beforeAll(async () => {
    s = await memoryServer('baton-promsd-', {});
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('lists every agent and every running task that serves metrics, with where to scrape and what it is', async () => {
    const n1 = await s.node('n1', '127.0.0.2');
    // Registered again with its listener's port, as an agent does.
    await n1.call('POST', '/api/v1/nodes/register', { name: 'n1', address: '127.0.0.2', hostname: 'n1', agentVersion: VERSION, agentPort: 7950, capacity: { cpus: 2, memoryBytes: 2 ** 30 }, portRange: [1, 2], engine: { ok: true, version: 'test' } });
    const c = serviceSpec().container;
    await s.api.apply('mon', {
      services: [
        { name: 'mon_app', spec: serviceSpec({ stack: 'mon', shortName: 'app', replicas: 1, x: { metrics: { port: 9100, path: '/stats' } } }), labels: {} },
        { name: 'mon_exp', spec: serviceSpec({ stack: 'mon', shortName: 'exp', replicas: 1, container: { ...c, networkMode: 'host', labels: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9200' } } }), labels: {} },
        { name: 'mon_quiet', spec: serviceSpec({ stack: 'mon', shortName: 'quiet', replicas: 1 }), labels: {} },
        // A malformed x-baton.metrics (a client may send anything in x) is left out, not a 500.
        { name: 'mon_odd', spec: serviceSpec({ stack: 'mon', shortName: 'odd', replicas: 1, x: { metrics: { port: 'nine' } } }), labels: {} },
      ],
      prune: false,
      dryRun: false,
    });
    const tasks = await eventually(async () => {
      const ts = (await s.api.tasks({})).items.filter((t: Task) => t.spec.nodeName === 'n1');
      expect(ts).toHaveLength(4);
      return ts as Task[];
    }, 10_000);
    const node = (await s.api.nodes()).items.find((n: Node) => n.metadata.name === 'n1')!;
    const taskIP = node.status.taskRange!.replace(/\.0\/\d+$/, '.7');
    const sd = async () => s.api.call<TargetGroup[]>('GET', '/api/v1/sd/prometheus');
    // Nothing runs yet: only the agent.
    expect(await sd()).toEqual([{ targets: ['127.0.0.2:7950'], labels: { __scheme__: 'https', __metrics_path__: '/metrics', baton_role: 'agent', baton_node: 'n1' } }]);
    const report = (t: Task, extra: Record<string, unknown>) => ({ name: t.metadata.name, uid: t.metadata.uid, status: { state: 'running', message: 'started', ports: [], restartCount: 0, hostIP: '127.0.0.2', timestamp: new Date().toISOString(), ...extra } });
    const app = tasks.find((t) => t.spec.serviceName === 'mon_app')!;
    const exp = tasks.find((t) => t.spec.serviceName === 'mon_exp')!;
    const rest = tasks.filter((t) => t !== app && t !== exp);
    const r = await n1.updateStatus(taskKind, [report(app, { taskIP }), report(exp, {}), ...rest.map((t) => report(t, { taskIP: node.status.taskRange!.replace(/\.0\/\d+$/, `.${10 + rest.indexOf(t)}`) }))]);
    expect(r.items.every((x) => x.ok)).toBe(true);
    await eventually(async () => {
      const groups = await sd();
      expect(groups.slice(1)).toEqual([
        { targets: [`${taskIP}:9100`], labels: { __scheme__: 'http', __metrics_path__: '/stats', baton_role: 'task', baton_stack: 'mon', baton_service: 'mon_app', baton_task: app.metadata.name, baton_slot: '1', baton_node: 'n1' } },
        { targets: ['127.0.0.2:9200'], labels: { __scheme__: 'http', __metrics_path__: '/metrics', baton_role: 'task', baton_stack: 'mon', baton_service: 'mon_exp', baton_task: exp.metadata.name, baton_slot: '1', baton_node: 'n1' } },
      ]);
    }, 5000);
  });
});
