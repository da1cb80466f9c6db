/**
 * wrk for the load benches: one bounded run (-d) with what it cost around it
 * (CPU of the proxy, the agents, wrk, the backends and the machine; TCP
 * counters of the namespaces involved), and what the host's TCP state holds
 * of earlier runs (TIME_WAIT sockets, conntrack entries) so a bench can wait
 * for a clean start. wrk runs as a child of the bench and is stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpuMs, now, oneLine } from './lib.js';
import { busyPct, childrenCpuMs, containersCpuMs, machineTicks, sum } from './probes.js';

export interface Sample {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  /** connect, read, write, timeout (wrk's "Socket errors"). */
  sockErrors: [number, number, number, number];
  non2xx: number;
  /** CPU time of the proxy process during the run (NaN for direct). */
  proxyCpuMs: number;
  /** CPU time of the two mesh agents (node2's and node3's) together during the run. */
  agentCpuMs: number;
  /** CPU time of wrk (this process's reaped children). */
  wrkCpuMs: number;
  /** CPU time of the 3 backend containers (their cpuacct cgroups); NaN when unreadable. */
  backendsCpuMs: number;
  /** Share of all cores busy during the run, 0..100. */
  busyPct: number;
  /** TCP counters of the host during the run (netns-wide, /proc/net/netstat). */
  synRetrans: number;
  pawsTimewait: number;
  listenDrops: number;
  wallMs: number;
}

/** The wrk runs in flight (children of this bench). */
const running = new Set<ChildProcess>();
/** stopWrk stops them by their PIDs (each is bounded by -d anyway). */
export const stopWrk = async () => {
  for (const c of running) c.kill('SIGTERM');
};

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000;
}

export function parseWrk(out: string): Pick<Sample, 'rps' | 'p50Ms' | 'p99Ms' | 'requests' | 'sockErrors' | 'non2xx'> {
  const pct = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out);
  const reqs = /^\s*(\d+) requests in /m.exec(out);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    rps: rps ? Number(rps[1]) : NaN,
    p50Ms: pct('50'),
    p99Ms: pct('99'),
    requests: reqs ? Number(reqs[1]) : NaN,
    sockErrors: se ? [Number(se[1]), Number(se[2]), Number(se[3]), Number(se[4])] : [0, 0, 0, 0],
    non2xx: non2xx ? Number(non2xx[1]) : 0,
  };
}

/**
 * tcpExt sums TcpExt counters (SYN retransmits, SYNs PAWS-rejected by a
 * TIME_WAIT socket, listen drops) over network namespaces, each read from a
 * /proc/<pid>/net/netstat (the counters are per namespace: a client's SYN
 * retransmits count where it runs, a backend's PAWS rejects in its own).
 */
export function tcpExt(files: readonly string[]): { synRetrans: number; pawsTimewait: number; listenDrops: number } {
  const total = { synRetrans: 0, pawsTimewait: 0, listenDrops: 0 };
  for (const f of files) {
    try {
      const lines = readFileSync(f, 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
      const names = lines[0]!.split(/\s+/).slice(1);
      const vals = lines[1]!.split(/\s+/).slice(1).map(Number);
      const get = (k: string) => vals[names.indexOf(k)] ?? NaN;
      total.synRetrans += get('TCPSynRetrans');
      total.pawsTimewait += get('PAWSTimewait');
      total.listenDrops += get('ListenDrops');
    } catch {
      return { synRetrans: NaN, pawsTimewait: NaN, listenDrops: NaN };
    }
  }
  return total;
}

export interface Probes {
  proxyPid?: number;
  /** The mesh agents (node2's and node3's), for their CPU during every run. */
  agentPids: number[];
  backendIds: string[];
  /** The netstat files of the namespaces where clients and backends run (tcpExt). */
  netstat: string[];
}

export async function runWrk(wrkBin: string, args: string[], durationS: number, probes: Probes): Promise<Sample> {
  const cpu0 = probes.proxyPid !== undefined ? cpuMs(probes.proxyPid) : undefined;
  const agent0 = sum(probes.agentPids.map((p) => cpuMs(p) ?? NaN));
  const kids0 = childrenCpuMs();
  const be0 = containersCpuMs(probes.backendIds);
  const m0 = machineTicks();
  const tcp0 = tcpExt(probes.netstat);
  const t0 = now();
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(wrkBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => (stdout += s));
    child.stderr!.on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), (durationS + 30) * 1000);
    child.once('error', (e) => {
      clearTimeout(timer);
      running.delete(child);
      reject(e);
    });
    child.once('close', (c, sig) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code: c ?? (sig ? 128 : null), stdout, stderr });
    });
  });
  const wallMs = now() - t0;
  const m1 = machineTicks();
  const tcp1 = tcpExt(probes.netstat);
  const cpu1 = probes.proxyPid !== undefined ? cpuMs(probes.proxyPid) : undefined;
  const agent1 = sum(probes.agentPids.map((p) => cpuMs(p) ?? NaN));
  const kids1 = childrenCpuMs();
  const be1 = containersCpuMs(probes.backendIds);
  if (code !== 0) throw new Error(`wrk ${args.join(' ')} exited ${code}: ${oneLine(stderr || stdout)}`);
  const p = parseWrk(stdout);
  if (!Number.isFinite(p.rps) || !Number.isFinite(p.p99Ms)) throw new Error(`could not read wrk's output:\n${stdout}\n${stderr}`);
  return {
    ...p,
    proxyCpuMs: cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : NaN,
    agentCpuMs: agent1 - agent0,
    wrkCpuMs: kids1 - kids0,
    backendsCpuMs: be1 - be0,
    busyPct: busyPct(m0, m1),
    synRetrans: tcp1.synRetrans - tcp0.synRetrans,
    pawsTimewait: tcp1.pawsTimewait - tcp0.pawsTimewait,
    listenDrops: tcp1.listenDrops - tcp0.listenDrops,
    wallMs,
  };
}


/** conntrackTimeWaitS is how long conntrack keeps a closed TCP connection (nf_conntrack_tcp_timeout_time_wait, 120 s by default). */
export function conntrackTimeWaitS(): number {
  try {
    const n = Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait', 'utf8').trim());
    return Number.isFinite(n) && n > 0 ? n : 120;
  } catch {
    return 120;
  }
}

/**
 * conntrackCount counts the host's TCP conntrack entries (/proc/net/nf_conntrack)
 * with an end among `ends` ("address:port", in either direction of the entry);
 * NaN when unreadable.
 */
export function conntrackCount(ends: Set<string>): number {
  let text: string;
  try {
    text = readFileSync('/proc/net/nf_conntrack', 'utf8');
  } catch {
    return NaN;
  }
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.includes(' tcp ')) continue;
    // Two tuples: src= dst= sport= dport=, original then reply.
    const src = [...line.matchAll(/ src=(\S+)/g)].map((m) => m[1]);
    const dst = [...line.matchAll(/ dst=(\S+)/g)].map((m) => m[1]);
    const sport = [...line.matchAll(/ sport=(\d+)/g)].map((m) => m[1]);
    const dport = [...line.matchAll(/ dport=(\d+)/g)].map((m) => m[1]);
    if (src.some((a, i) => ends.has(`${a}:${sport[i]}`)) || dst.some((a, i) => ends.has(`${a}:${dport[i]}`))) n++;
  }
  return n;
}

/**
 * timeWaitCount counts TIME_WAIT sockets with a local or remote port among
 * `ports`, over the namespaces whose /proc/<pid>/net/tcp files are given
 * (a backend in a namespace of its own keeps its TIME_WAIT sockets there).
 */
export function timeWaitCount(files: readonly string[], ports: Set<number>): number {
  let n = 0;
  for (const f of files) {
    let lines: string[];
    try {
      lines = readFileSync(f, 'utf8').split('\n');
    } catch {
      continue; // a namespace that is gone holds nothing
    }
    for (let i = 1; i < lines.length; i++) {
      const c = lines[i]!.trim().split(/\s+/);
      if (c.length < 4 || c[3] !== '06') continue;
      const lp = parseInt(c[1]!.split(':')[1] ?? '', 16);
      const rp = parseInt(c[2]!.split(':')[1] ?? '', 16);
      if (ports.has(lp) || ports.has(rp)) n++;
    }
  }
  return n;
}
