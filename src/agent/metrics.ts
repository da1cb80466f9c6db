/**
 * The agent's Prometheus metrics (GET /metrics on its listener): every
 * running task's CPU and memory as last sampled from its cgroup, its
 * restarts and state, the routing mesh's counters per service and endpoint,
 * and the node's log store. Values are read when scraped (collect), so
 * nothing is kept twice.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { processMetrics } from '../base/processMetrics.js';
import type { TaskStatus } from '../api/types.js';
import type { RouteCounters } from './mesh.js';

/** What the metrics read from the agent. */
export interface AgentMetricsSource {
  readonly name: string;
  readonly usage: ReadonlyMap<string, { service: string; cpuSeconds: number; memoryBytes: number; memoryLimitBytes: number }>;
  taskStatuses(): Iterable<{ task: string; service: string; status: TaskStatus | undefined }>;
  readonly mesh?: { counters(): Promise<Record<string, { total: RouteCounters; endpoints: Record<string, RouteCounters> }>> };
  readonly logs?: { totalBytes(): number };
}

const MESH: [keyof RouteCounters, string, string][] = [
  ['connections', 'baton_mesh_connections_total', 'Connections the routing mesh sent to an endpoint (kernel and userspace paths).'],
  ['bytesIn', 'baton_mesh_received_bytes_total', 'Bytes from clients through the userspace proxy.'],
  ['bytesOut', 'baton_mesh_sent_bytes_total', 'Bytes to clients through the userspace proxy.'],
  ['errors', 'baton_mesh_connect_errors_total', 'Connects to an endpoint that failed.'],
  ['retries', 'baton_mesh_retries_total', 'Connections retried on another endpoint.'],
  ['held', 'baton_mesh_held_total', 'Connections that waited for an endpoint.'],
  ['dropped', 'baton_mesh_dropped_total', 'Connections dropped: no endpoint within hold_timeout, or the retry failed too.'],
];

/**
 * How often the agent samples its event-loop delay: every 100 ms instead of
 * prom-client's 10 ms, which alone kept an idle agent at half a percent of
 * a core (base/processMetrics.ts). Any stall of 100 ms or more is still seen.
 */
export const AGENT_EVENT_LOOP_PRECISION_MS = 100;

export function agentMetrics(a: AgentMetricsSource): Registry {
  const reg = new Registry();
  reg.setDefaultLabels({ node: a.name });
  processMetrics(reg, 'baton_agent_', AGENT_EVENT_LOOP_PRECISION_MS);

  new Counter({
    name: 'baton_task_cpu_seconds_total',
    help: 'CPU time used by the task since its container started, from its cgroup.',
    labelNames: ['task', 'service'],
    registers: [reg],
    collect() {
      this.reset();
      for (const [task, u] of a.usage) this.inc({ task, service: u.service }, u.cpuSeconds);
    },
  });
  new Gauge({
    name: 'baton_task_memory_bytes',
    help: 'Memory in use by the task, without page cache that can be dropped (as docker stats).',
    labelNames: ['task', 'service'],
    registers: [reg],
    collect() {
      this.reset();
      for (const [task, u] of a.usage) this.set({ task, service: u.service }, u.memoryBytes);
    },
  });
  new Gauge({
    name: 'baton_task_memory_limit_bytes',
    help: "The task's memory limit (tasks without one are left out).",
    labelNames: ['task', 'service'],
    registers: [reg],
    collect() {
      this.reset();
      for (const [task, u] of a.usage) if (u.memoryLimitBytes > 0) this.set({ task, service: u.service }, u.memoryLimitBytes);
    },
  });
  new Counter({
    name: 'baton_task_restarts_total',
    help: 'Restarts of the task in place on this node.',
    labelNames: ['task', 'service'],
    registers: [reg],
    collect() {
      this.reset();
      for (const t of a.taskStatuses()) if (t.status?.restartCount) this.inc({ task: t.task, service: t.service }, t.status.restartCount);
    },
  });
  new Gauge({
    name: 'baton_agent_tasks',
    help: "Tasks on this node by the state the agent last reported.",
    labelNames: ['state'],
    registers: [reg],
    collect() {
      this.reset();
      const n = new Map<string, number>();
      for (const t of a.taskStatuses()) if (t.status) n.set(t.status.state, (n.get(t.status.state) ?? 0) + 1);
      for (const [state, v] of n) this.set({ state }, v);
    },
  });
  new Gauge({
    name: 'baton_logs_stored_bytes',
    help: 'Bytes of task output kept on this node (retention: age and size).',
    registers: [reg],
    collect() {
      this.set(a.logs?.totalBytes() ?? 0);
    },
  });

  // The mesh's counters: one read per scrape feeds every series.
  type MeshCounters = Record<string, { total: RouteCounters; endpoints: Record<string, RouteCounters> }>;
  let snapshot: Promise<MeshCounters> | undefined;
  const meshCounters = (): Promise<MeshCounters> => (snapshot ??= (a.mesh?.counters() ?? Promise.resolve({} as MeshCounters)).finally(() => setImmediate(() => (snapshot = undefined))));
  for (const [field, name, help] of MESH) {
    new Counter({
      name,
      help,
      labelNames: ['service', 'endpoint'],
      registers: [reg],
      async collect() {
        this.reset();
        for (const [service, c] of Object.entries(await meshCounters())) for (const [endpoint, e] of Object.entries(c.endpoints)) if (e[field]) this.inc({ service, endpoint }, e[field]);
      },
    });
  }
  new Gauge({
    name: 'baton_mesh_active_connections',
    help: 'Open connections through the userspace proxy.',
    labelNames: ['service'],
    registers: [reg],
    async collect() {
      this.reset();
      for (const [service, c] of Object.entries(await meshCounters())) this.set({ service }, c.total.active);
    },
  });
  new Counter({
    name: 'baton_mesh_connect_seconds_total',
    help: 'Time spent connecting to endpoints (divide by connections for the mean).',
    labelNames: ['service'],
    registers: [reg],
    async collect() {
      this.reset();
      for (const [service, c] of Object.entries(await meshCounters())) if (c.total.connectMsSum) this.inc({ service }, c.total.connectMsSum / 1000);
    },
  });
  return reg;
}
