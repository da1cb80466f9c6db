/**
 * A task's CPU and memory usage on the Docker engine: read from the
 * container's cgroup files when they can be (a few reads; the directory is
 * found once per run from the container's pid), else from the engine's
 * stats API (a second or two: it waits for two readings).
 */
import type Docker from 'dockerode';
import type { TaskHandle, TaskStats } from '../driver.js';
import { cgroupPathsOf, readCgroup, type CgroupPaths } from './cgroup.js';
import type { DockerEngine } from './engine.js';
import { containerOf } from './handles.js';

/** How many containers' cgroup directories are remembered before the map starts over (a removed container's are never dropped otherwise). */
const MAX_CGROUPS = 10_000;

/** StatsReader reads tasks' usage, remembering each running container's cgroup directories. */
export class StatsReader {
  /** Cgroup directories of running containers, by id (found once per run from the container's pid). */
  private readonly cgroups = new Map<string, CgroupPaths>();

  constructor(private readonly engine: DockerEngine) {}

  /** stats reads one task's usage now. */
  async stats(handle: TaskHandle): Promise<TaskStats> {
    // The cgroup files first (a few reads); the engine's stats API (a second or two, it waits for two readings) when they cannot be read.
    const c = this.cgroups.get(handle.id);
    if (c) {
      try {
        return { ...readCgroup(c), timeMs: Date.now(), source: 'cgroup' };
      } catch {
        this.cgroups.delete(handle.id);
      }
    }
    const { engine } = this;
    let info: Docker.ContainerInspectInfo | undefined;
    try {
      const ctr = containerOf(engine.docker, handle);
      info = await engine.request('inspect', (abortSignal) => ctr.inspect({ abortSignal }));
    } catch (err) {
      throw engine.toDriverError(err);
    }
    const pid = info.State?.Running ? info.State.Pid : 0;
    const paths = pid > 0 ? cgroupPathsOf(pid) : undefined;
    if (paths) {
      try {
        const u = readCgroup(paths);
        this.cgroups.set(handle.id, paths);
        if (this.cgroups.size > MAX_CGROUPS) this.cgroups.clear();
        return { ...u, timeMs: Date.now(), source: 'cgroup' };
      } catch {
        /* fall back to the engine */
      }
    }
    let s: Docker.ContainerStats;
    try {
      const ctr = containerOf(engine.docker, handle);
      // (The typings omit the abort signal.)
      s = await engine.request('stats', (abortSignal) => ctr.stats({ stream: false, abortSignal } as { stream: false }));
    } catch (err) {
      throw engine.toDriverError(err);
    }
    return statsOf(s);
  }
}

function statsOf(s: Docker.ContainerStats): TaskStats {
  const cpu = s.cpu_stats;
  const mem = s.memory_stats ?? ({} as Docker.MemoryStats);
  const detail = (mem.stats ?? {}) as unknown as Record<string, number | undefined>;
  // As `docker stats`: page cache that can be dropped is not counted (cgroup v1: total_inactive_file, v2: inactive_file).
  const inactive = detail.total_inactive_file ?? detail.inactive_file ?? 0;
  const usage = mem.usage ?? 0;
  return {
    cpuSeconds: (cpu?.cpu_usage?.total_usage ?? 0) / 1e9,
    memoryBytes: inactive < usage ? usage - inactive : usage,
    memoryLimitBytes: mem.limit ?? 0,
    timeMs: s.read && !s.read.startsWith('0001-') ? Date.parse(s.read) : Date.now(),
    source: 'engine',
  };
}
