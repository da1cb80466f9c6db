/**
 * UsageSampler samples every running task's CPU and memory (from its
 * cgroup, through the driver) and makes what each heartbeat carries: the
 * tasks' latest usage and the mesh's connection counts per service, which
 * `baton top`, the dashboard and the autoscaler read.
 */
import { sleep } from '../base/clock.js';
import type { Driver } from './driver.js';
import type { Mesh } from './mesh.js';
import type { AgentState } from './state.js';

export interface TaskUsage {
  service: string;
  /** CPU as a rate (cores) over the last interval. */
  cpu: number;
  cpuSeconds: number;
  memoryBytes: number;
  memoryLimitBytes: number;
  timeMs: number;
}

export interface UsageReport {
  tasks: { task: string; service: string; cpu: number; memoryBytes: number; memoryLimitBytes: number }[];
  connections: Record<string, number>;
  active: Record<string, number>;
}

export class UsageSampler {
  /** The latest sample of each running task. */
  readonly usage = new Map<string, TaskUsage>();

  constructor(
    private readonly driver: Driver,
    private readonly state: AgentState,
    private readonly mesh: () => Mesh | undefined,
  ) {}

  /** loop samples every intervalMs. */
  async loop(intervalMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(intervalMs, signal);
      if (signal.aborted || !this.state.engineOk) continue;
      await this.sample();
    }
  }

  private async sample(): Promise<void> {
    const seen = new Set<string>();
    for (const [name, local] of this.state.locals) {
      if (!local.handle || local.status?.state !== 'running') continue;
      const task = this.state.task(name);
      try {
        // A pod's usage is its containers' together (what its requests, and so its autoscaling, count).
        const sidecars = [...(local.pod?.containers.values() ?? [])].filter((c) => c.handle && c.state === 'running').map((c) => c.handle!);
        const parts = [await this.driver.stats(local.handle), ...(await Promise.all(sidecars.map((h) => this.driver.stats(h).catch(() => undefined)))).filter((x) => x !== undefined)];
        const s = parts.length === 1 ? parts[0]! : { cpuSeconds: parts.reduce((n, x) => n + x.cpuSeconds, 0), memoryBytes: parts.reduce((n, x) => n + x.memoryBytes, 0), memoryLimitBytes: parts.some((x) => x.memoryLimitBytes === 0) ? 0 : parts.reduce((n, x) => n + x.memoryLimitBytes, 0), timeMs: Math.max(...parts.map((x) => x.timeMs)) };
        const prev = this.usage.get(name);
        const dt = prev ? (s.timeMs - prev.timeMs) / 1000 : 0;
        const cpu = prev && dt > 0 && s.cpuSeconds >= prev.cpuSeconds ? (s.cpuSeconds - prev.cpuSeconds) / dt : 0;
        this.usage.set(name, { service: task?.spec.serviceName ?? prev?.service ?? '', cpu, cpuSeconds: s.cpuSeconds, memoryBytes: s.memoryBytes, memoryLimitBytes: s.memoryLimitBytes, timeMs: s.timeMs });
        seen.add(name);
      } catch {
        /* stopped between the check and the read */
      }
    }
    for (const name of this.usage.keys()) if (!seen.has(name)) this.usage.delete(name);
  }

  /** report is what each heartbeat carries. */
  async report(): Promise<UsageReport> {
    const tasks = [...this.usage].map(([task, u]) => ({ task, service: u.service, cpu: Math.round(u.cpu * 1000) / 1000, memoryBytes: u.memoryBytes, memoryLimitBytes: u.memoryLimitBytes }));
    const connections: Record<string, number> = {};
    const active: Record<string, number> = {};
    for (const [svc, c] of Object.entries((await this.mesh()?.counters().catch(() => undefined)) ?? {})) {
      connections[svc] = c.total.connections;
      if (c.total.active) active[svc] = c.total.active;
    }
    return { tasks, connections, active };
  }
}
