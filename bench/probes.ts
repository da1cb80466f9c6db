/**
 * What a load bench reads about the machine while it runs, without changing
 * anything: where a tool is installed, CPU time of the whole machine, of this
 * process's reaped children (the load generators it ran) and of containers
 * (their cgroups), and the engine's own process.
 */
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** findTool looks a program up on PATH and in the sbin directories (haproxy lives in /usr/sbin). */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin', '/bin'];
  for (const d of dirs) {
    try {
      accessSync(join(d, name), fsConstants.X_OK);
      return join(d, name);
    } catch {
      /* next */
    }
  }
  return undefined;
}

/**
 * findTools looks up each program (findTool), given with the Debian package
 * that installs it. Benches install nothing: when one is missing, `missing`
 * is the line to print, naming the packages to install.
 */
export function findTools<N extends string>(bench: string, tools: Record<N, string>): { found: Record<N, string>; missing?: undefined } | { found?: undefined; missing: string } {
  const found = {} as Record<N, string>;
  const pkgs: string[] = [];
  for (const [name, pkg] of Object.entries(tools) as [N, string][]) {
    const at = findTool(name);
    if (at) found[name] = at;
    else if (!pkgs.includes(pkg)) pkgs.push(pkg);
  }
  if (!pkgs.length) return { found };
  const many = pkgs.length > 1;
  return { missing: `bench:${bench} needs ${pkgs.join(' and ')}, which ${many ? 'are' : 'is'} not installed. Install the Debian package${many ? 's' : ''}: apt-get install -y ${pkgs.join(' ')}\n` };
}

/** sum adds numbers; NaN when there are none or one is not finite (a figure that was not measured). */
export const sum = (xs: number[]) => (xs.length && xs.every(Number.isFinite) ? xs.reduce((a, b) => a + b, 0) : NaN);

/** CPU jiffies of the whole machine (busy, total) from /proc/stat. */
export function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is already in user)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** busyPct: the share of all cores busy between two machineTicks readings, 0..100 (NaN for no time). */
export function busyPct(m0: { busy: number; total: number }, m1: { busy: number; total: number }): number {
  return m1.total > m0.total ? (100 * (m1.busy - m0.busy)) / (m1.total - m0.total) : NaN;
}

/** childrenCpuMs is the user+system CPU time of this process's reaped children (cutime + cstime). */
export function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * 10; // USER_HZ 100
}

/** containerCpuMs reads a container's CPU time from its cgroup (v1 cpuacct or v2 cpu.stat), undefined when not found. */
export function containerCpuMs(id: string): number | undefined {
  for (const p of [`/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`, `/sys/fs/cgroup/cpu,cpuacct/docker/${id}/cpuacct.usage`]) {
    try {
      return Number(readFileSync(p, 'utf8').trim()) / 1e6;
    } catch {
      /* next */
    }
  }
  for (const p of [`/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`, `/sys/fs/cgroup/docker/${id}/cpu.stat`]) {
    try {
      const m = /^usage_usec (\d+)/m.exec(readFileSync(p, 'utf8'));
      if (m) return Number(m[1]) / 1000;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** containersCpuMs sums containerCpuMs over containers; NaN when one cannot be read. */
export function containersCpuMs(ids: string[]): number {
  let total = 0;
  for (const id of ids) {
    const v = containerCpuMs(id);
    if (v === undefined) return NaN;
    total += v;
  }
  return ids.length ? total : NaN;
}

/**
 * dockerdPid is the PID of the engine on the default socket, from its PID
 * file, when that process is a dockerd (other engines on this machine, e.g. a
 * test's own, are not it); undefined otherwise.
 */
export function dockerdPid(pidFile = '/var/run/docker.pid'): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'dockerd' ? pid : undefined;
  } catch {
    return undefined;
  }
}
