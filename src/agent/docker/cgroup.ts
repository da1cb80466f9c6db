/**
 * Reading a container's resource use from its cgroup files, as cAdvisor and
 * the kubelet do: a few small reads per sample instead of a call to the
 * engine's stats API (which takes a second or two per container, since it
 * waits for two readings). Both cgroup v2 (unified) and v1 layouts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CgroupPaths {
  /** cgroup v2: the container's directory. */
  unified?: string;
  /** cgroup v1: the cpuacct and memory controllers' directories. */
  cpuacct?: string;
  memory?: string;
}

export interface CgroupUsage {
  cpuSeconds: number;
  memoryBytes: number;
  memoryLimitBytes: number;
}

/** cgroupPathsOf finds a process's cgroup directories; undefined when they cannot be read (no /proc, another namespace). */
export function cgroupPathsOf(pid: number, root = '/sys/fs/cgroup', proc = '/proc'): CgroupPaths | undefined {
  let text: string;
  try {
    text = readFileSync(join(proc, String(pid), 'cgroup'), 'utf8');
  } catch {
    return undefined;
  }
  const out: CgroupPaths = {};
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, id, controllers, path] = m;
    if (id === '0' && controllers === '') {
      // Pure v2 mounts the unified tree at the root; hybrid hosts at unified/ (where it has no controllers, and v1 answers).
      const dir = [join(root, path!), join(root, 'unified', path!)].find((d) => existsSync(join(d, 'cpu.stat')) && existsSync(join(d, 'memory.current')));
      if (dir) out.unified = dir;
      continue;
    }
    const list = controllers!.split(',');
    const pick = (ctl: string) => [join(root, controllers!, path!), join(root, ctl, path!)].find((d) => existsSync(d));
    if (list.includes('cpuacct')) out.cpuacct = pick('cpuacct');
    if (list.includes('memory')) out.memory = pick('memory');
  }
  return out.unified || (out.cpuacct && out.memory) ? out : undefined;
}

function statValue(text: string, key: string): number | undefined {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/** readCgroup reads cumulative CPU time, memory in use (less inactive page cache, as `docker stats`) and the memory limit. Throws when the files are gone (the container stopped). */
export function readCgroup(p: CgroupPaths): CgroupUsage {
  if (p.unified) {
    const cpu = statValue(readFileSync(join(p.unified, 'cpu.stat'), 'utf8'), 'usage_usec') ?? 0;
    const current = Number(readFileSync(join(p.unified, 'memory.current'), 'utf8').trim());
    const inactive = statValue(readFileSync(join(p.unified, 'memory.stat'), 'utf8'), 'inactive_file') ?? 0;
    const max = readFileSync(join(p.unified, 'memory.max'), 'utf8').trim();
    return { cpuSeconds: cpu / 1e6, memoryBytes: inactive < current ? current - inactive : current, memoryLimitBytes: max === 'max' ? 0 : Number(max) };
  }
  const cpu = Number(readFileSync(join(p.cpuacct!, 'cpuacct.usage'), 'utf8').trim());
  const usage = Number(readFileSync(join(p.memory!, 'memory.usage_in_bytes'), 'utf8').trim());
  const inactive = statValue(readFileSync(join(p.memory!, 'memory.stat'), 'utf8'), 'total_inactive_file') ?? 0;
  const limit = Number(readFileSync(join(p.memory!, 'memory.limit_in_bytes'), 'utf8').trim());
  // v1 says "no limit" with a huge number (page-aligned LONG_MAX).
  return { cpuSeconds: cpu / 1e9, memoryBytes: inactive < usage ? usage - inactive : usage, memoryLimitBytes: limit >= 2 ** 60 ? 0 : limit };
}
