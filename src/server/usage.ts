/**
 * UsageStore holds what agents report with each heartbeat: every running
 * task's CPU and memory, and their meshes' connection counters. Like
 * heartbeats it lives in server memory, never in the store (it changes every
 * few seconds and is worthless after minutes). Each `bucketMs` it adds one
 * point per service (CPU, memory, tasks, requests per second) to a ring of
 * `points` (15 minutes by default) for the dashboard's charts; `baton top`
 * reads the latest reports.
 */
import type { Clock } from '../base/clock.js';
import type { ServiceStats, TaskUsage } from '../api/types.js';
import type { ServiceMetrics } from './autoscale.js';

export interface UsageReport {
  tasks: { task: string; service: string; cpu: number; memoryBytes: number; memoryLimitBytes?: number }[];
  /** Per service: connections this node's mesh has sent on since the agent started (a counter). */
  connections: Record<string, number>;
  /** Per service: connections open through this node's userspace proxy now. */
  active?: Record<string, number>;
}

type Point = ServiceStats['points'][number];

export class UsageStore {
  private readonly latest = new Map<string, { at: number; report: UsageReport }>();
  private readonly history = new Map<string, Point[]>();
  /** Each node's connection counters at the last tick, per service. */
  private readonly lastConnections = new Map<string, Map<string, number>>();
  private lastTick: number;

  constructor(
    private readonly clock: Clock,
    readonly bucketMs = 2000,
    private readonly points = Math.ceil(900_000 / bucketMs),
  ) {
    this.lastTick = clock.now();
  }

  record(node: string, report: UsageReport): void {
    this.latest.set(node, { at: this.clock.now(), report });
  }

  forget(node: string): void {
    this.latest.delete(node);
    this.lastConnections.delete(node);
  }

  /** Reports older than this are not counted: the node stopped reporting. */
  private staleMs(): number {
    return Math.max(3 * this.bucketMs, 30_000);
  }

  /** tasks: the latest usage of every task on a node that reported lately. */
  tasks(): TaskUsage[] {
    const out: TaskUsage[] = [];
    const fresh = this.clock.now() - this.staleMs();
    for (const [node, { at, report }] of this.latest) {
      if (at < fresh) continue;
      const time = new Date(at).toISOString();
      for (const t of report.tasks) out.push({ task: t.task, service: t.service, node, cpu: t.cpu, memoryBytes: t.memoryBytes, ...(t.memoryLimitBytes ? { memoryLimitBytes: t.memoryLimitBytes } : {}), time });
    }
    return out;
  }

  /** node: the summed usage of a node's tasks, if it reported lately. */
  node(name: string): { cpu: number; memoryBytes: number } | undefined {
    const l = this.latest.get(name);
    if (!l || l.at < this.clock.now() - this.staleMs()) return undefined;
    let cpu = 0;
    let memoryBytes = 0;
    for (const t of l.report.tasks) {
      cpu += t.cpu;
      memoryBytes += t.memoryBytes;
    }
    return { cpu, memoryBytes };
  }

  /** tick adds one point per service: called every bucketMs. */
  tick(): void {
    const now = this.clock.now();
    const dt = Math.max(0.001, (now - this.lastTick) / 1000);
    this.lastTick = now;
    const fresh = now - this.staleMs();
    const agg = new Map<string, { cpu: number; memoryBytes: number; tasks: number; requests: number }>();
    const of = (s: string) => {
      let a = agg.get(s);
      if (!a) agg.set(s, (a = { cpu: 0, memoryBytes: 0, tasks: 0, requests: 0 }));
      return a;
    };
    for (const [node, { at, report }] of this.latest) {
      if (at < fresh) continue;
      for (const t of report.tasks) {
        const a = of(t.service);
        a.cpu += t.cpu;
        a.memoryBytes += t.memoryBytes;
        a.tasks++;
      }
      // A node seen for the first time sets the baseline; a service new on a known node counts from zero.
      const known = this.lastConnections.has(node);
      let last = this.lastConnections.get(node);
      if (!last) this.lastConnections.set(node, (last = new Map()));
      for (const [svc, n] of Object.entries(report.connections)) {
        const prev = last.get(svc) ?? (known ? 0 : undefined);
        // A counter that went down means the agent restarted: it counted n since then.
        if (prev !== undefined) of(svc).requests += n >= prev ? n - prev : n;
        last.set(svc, n);
      }
    }
    const time = new Date(now).toISOString();
    for (const svc of new Set([...agg.keys(), ...this.history.keys()])) {
      const a = agg.get(svc);
      let h = this.history.get(svc);
      if (!h) this.history.set(svc, (h = []));
      h.push({ time, cpu: Math.round((a?.cpu ?? 0) * 1000) / 1000, memoryBytes: a?.memoryBytes ?? 0, tasks: a?.tasks ?? 0, requestsPerSecond: Math.round(((a?.requests ?? 0) / dt) * 100) / 100 });
      if (h.length > this.points) h.splice(0, h.length - this.points);
      // A service silent for a whole window leaves the history.
      if (!a && h.every((p) => p.tasks === 0 && p.requestsPerSecond === 0)) this.history.delete(svc);
    }
  }

  /** serviceNow: a service's latest usage across the nodes that reported lately (the autoscaler's input). */
  serviceNow(service: string): ServiceMetrics {
    const m: ServiceMetrics = { tasks: 0, cpuCores: 0, memoryBytes: 0, rps: this.history.get(service)?.at(-1)?.requestsPerSecond ?? 0, concurrency: 0 };
    const fresh = this.clock.now() - this.staleMs();
    for (const { at, report } of this.latest.values()) {
      if (at < fresh) continue;
      for (const t of report.tasks) {
        if (t.service !== service) continue;
        m.tasks++;
        m.cpuCores += t.cpu;
        m.memoryBytes += t.memoryBytes;
      }
      m.concurrency += report.active?.[service] ?? 0;
    }
    return m;
  }

  stats(service: string): ServiceStats {
    return { service, points: [...(this.history.get(service) ?? [])] };
  }
}
