/**
 * bench:mesh — L4 load balancing on loopback (issue "Load balancing"): the
 * same three backends reached four ways, in one run:
 *
 *   direct     wrk → one backend (its node address and host port from the
 *              service's Endpoints object), no balancer;
 *   haproxy    wrk → HAProxy (`mode tcp`, `balance roundrobin` over the 3
 *              backends of the Endpoints object) on 127.0.0.1, a foreground
 *              child process of this bench (`haproxy -f cfg -db`), stopped
 *              by its PID;
 *   mesh       wrk → Baton's routing mesh as an agent runs it by default:
 *              the service's published port on 127.0.0.2 (node2). With
 *              nftables at hand the agent routes a plain round-robin service
 *              in the kernel (nftables DNAT in its own table, `--mesh-kernel
 *              on`, the default); the bench says which path it found;
 *   mesh-user  wrk → the published port on 127.0.0.3 (node3), whose agent
 *              runs with `--mesh-kernel off`: every connection through the
 *              agent's userspace proxy (what services with least_conn or the
 *              PROXY protocol get on every node, and every service on a node
 *              without nftables).
 *
 * Two loads per path, each bounded in time, as the median of --runs runs
 * (each path gets a --warmup-s run first, not counted; within a run the path
 * order rotates so no path always goes first):
 *
 *   keep-alive       wrk -t1 -c50 -d10s --latency URL
 *   new connections  wrk -t1 -c20 -d10s --latency -H 'Connection: close' URL
 *
 * Printed per path and load: requests/s, p50 and p99 latency (wrk's "Latency
 * Distribution"; it times request to response, not the TCP connect), wrk's
 * socket errors, SYN retransmits on the host during the run, and CPU: the
 * proxy process's (HAProxy, or the mesh agent), wrk's, the backends' and the
 * whole machine's. Then mesh/HAProxy ratios with PASS/FAIL against the goals:
 * keep-alive mesh >= 1.0× HAProxy req/s with p99 <= HAProxy's; new
 * connections mesh >= 0.7× HAProxy req/s (for `mesh`, and for information for
 * `mesh-user`).
 *
 *   npm run bench:mesh -- [--duration-s 10] [--runs 3] [--warmup-s 2]
 *                         [--paths direct,haproxy,mesh,mesh-user]
 *                         [--ka-conns 50] [--nc-conns 20]
 *                         [--backend haproxy|node] [--haproxy-nbthread 0]
 *                         [--interleave]
 *
 * Connection churn and the kernel path. Under `Connection: close` load the
 * backends (which close first) hold tens of thousands of TIME_WAIT sockets
 * (60 s), and conntrack keeps an entry per connection in its TIME_WAIT state
 * (nf_conntrack_tcp_timeout_time_wait, 120 s). Every path here dials from
 * 127.0.0.1 to the same three backends, and a DNATed connection carries the
 * TCP timestamp offset of the address the client dialled (Linux derives it
 * per source/destination pair), not the backend's. Seen on this machine:
 * within two minutes of non-DNAT connection churn to the same backends
 * (direct, HAProxy, the userspace mesh), new connections through the DNAT get
 * many SYNs rejected by PAWS at the backends' TIME_WAIT sockets, wait for SYN
 * retransmits, and req/s falls to a fraction with the cores idle; the other
 * way round, after DNAT churn the other paths see the same (p99 ~1 s); on
 * fresh backend ports, or two minutes later, all runs are clean. So when
 * `mesh` runs in the kernel the order is: its new-connection runs first
 * (fresh backends), then every path's keep-alive runs (few connections),
 * then the other paths' new-connection runs, once conntrack's TIME_WAIT
 * timeout has passed since the kernel path's last run (the keep-alive runs
 * fill most of that time). --interleave runs all paths' new-connection runs
 * together instead, to see the interference. SYN retransmits and PAWS
 * rejects are printed per path, so what remains is visible.
 *
 * The backends. The issue asked for busybox httpd serving a small file; the
 * test image's busybox httpd (BusyBox 1.35, Debian's static build) answers
 * every request with `Connection: close` and forks a process per connection:
 * about 1.5k req/s on this kind of machine, so a keep-alive load would
 * measure busybox's fork rate on every path, not the balancer. The image has
 * nothing else that speaks HTTP, no registry is reachable (never docker
 * pull), and the backends must be Baton tasks for the mesh to have
 * endpoints. So each backend is still a task of `baton-test/busybox:latest`
 * (3 replicas, `max_replicas_per_node: 1`, placed by Baton, one per agent,
 * host network, listening on $BATON_HOST_IP:$PORT), but runs a host binary
 * bind-mounted read-only into the container together with the directories of
 * the shared libraries `ldd` lists for it:
 *
 *   --backend haproxy (default)  the host's /usr/sbin/haproxy in `mode http`
 *       with `http-request return` of a fixed 128-byte body: a small C
 *       HTTP/1.1 keep-alive server, one thread per backend (the baselines
 *       used nginx). Little CPU per request, which leaves the two cores to
 *       the balancers under test.
 *   --backend node  a tiny HTTP/1.1 keep-alive server on node:net (the host's
 *       node binary), same response; more CPU per request than the C server
 *       (1.2× with keep-alive, 2× per new connection in one comparison here),
 *       so it takes more of the CPU the balancers share.
 *
 * Every response carries `X-Task: <task name>`; before the load, 6 requests
 * through HAProxy and through each mesh path must reach all 3 tasks.
 *
 * The Baton cluster, as bench:recovery runs it: one `baton server` and three
 * `baton agent` processes on 127.0.0.2-4 with their own --data-dir and
 * --port-range (host ports without an earlier run's TIME_WAIT or conntrack
 * leftovers, so runs can follow each other), node names of their own
 * (meshbench-node2..4: an agent's nftables table is named after its node),
 * BATON_HOME in a temp dir, log level warn. Every container
 * carries `baton.bench=mesh` and `baton.cluster=<id>` and is removed at the
 * end, also on failure or Ctrl-C; the temp dir is removed; only processes
 * this bench started are stopped, by PID; an agent's nftables table is
 * removed by the agent at exit (by the bench if the agent had to be killed).
 * Only 127.0.0.0/8 is contacted. The bench installs nothing: without `wrk` or
 * `haproxy` it says which Debian package to install and exits 1. Progress
 * goes to stderr, results to stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { availableParallelism, release } from 'node:os';
import { dirname, join } from 'node:path';
import { endpointsKind } from '../src/api/kinds.js';
import type { EndpointAddress, Endpoints } from '../src/api/types.js';
import { tableName } from '../src/agent/nft.js';
import { benchArgs, BenchCluster, checkInterrupted, cleanUpAll, cleanUpOnSignals, cpuMs, docker, exec, failure, intFlag, log, median, now, onCleanup, oneLine, outputTail, ratio, reportHeader, requireImage, runMain, secs, sleep, stackServices, waitFor, wasInterrupted } from './lib.js';

// ---------------------------------------------------------------- options

const IMAGE = 'baton-test/busybox:latest';
const LABEL = 'baton.bench';
const LABEL_VALUE = 'mesh';
const BENCH_LABEL = `${LABEL}=${LABEL_VALUE}`;
const STACK = 'benchmesh';
const SVC = `${STACK}_web`;
const TARGET = 80;
const PUBLISHED = 27580;
const HAPROXY_ADDR = '127.0.0.1';
const HAPROXY_PORT = 27581;
/** Node names are the bench's own: an agent's nftables table is named after its node (baton_<name>). */
const AGENTS = [
  { name: 'meshbench-node2', address: '127.0.0.2', args: [] as string[] },
  { name: 'meshbench-node3', address: '127.0.0.3', args: ['--mesh-kernel', 'off'] },
  { name: 'meshbench-node4', address: '127.0.0.4', args: [] as string[] },
];
/**
 * Agent i gets host ports base + 100·i .. +99. The bench takes the first base whose ports have no TIME_WAIT
 * sockets or conntrack entries left from an earlier run's churn (see the header), so runs can follow each other.
 */
/** Fewer TIME_WAIT sockets or conntrack entries than this (this bench's own probes, keep-alive runs) do not disturb a run. */
const FEW = 1000;
const PORT_BASES = [27700, 28000, 28300, 28600, 28900, 29200];
const portRange = (base: number, i: number) => `${base + 100 * i}-${base + 100 * i + 99}`;
/** `mesh`: node2's agent with its defaults. */
const MESH_NODE = AGENTS[0]!;
/** `mesh-user`: node3's agent, userspace proxy only. */
const USER_NODE = AGENTS[1]!;
const BODY = 'x'.repeat(128);
const GOAL_KA_RPS = 1.0;
const GOAL_NC_RPS = 0.7;
const NFT = '/usr/sbin/nft';

type Backend = 'haproxy' | 'node';
type PathName = 'direct' | 'haproxy' | 'mesh' | 'mesh-user';
type LoadName = 'keep-alive' | 'new-conn';
const ALL_PATHS: PathName[] = ['direct', 'haproxy', 'mesh', 'mesh-user'];
const LOADS: LoadName[] = ['keep-alive', 'new-conn'];

interface Opts {
  durationS: number;
  runs: number;
  warmupS: number;
  paths: PathName[];
  kaConns: number;
  ncConns: number;
  backend: Backend;
  /** 0: HAProxy's default (one thread per available CPU). */
  haproxyThreads: number;
  /** Interleave the kernel path's new-connection runs with the others' (no separation, see the header). */
  interleave: boolean;
}

const USAGE = 'usage: npm run bench:mesh -- [--duration-s 10] [--runs 3] [--warmup-s 2] [--paths direct,haproxy,mesh,mesh-user] [--ka-conns 50] [--nc-conns 20] [--backend haproxy|node] [--haproxy-nbthread 0 (HAProxy\'s default)] [--interleave]\n';

function parseOpts(): Opts {
  const values = benchArgs(USAGE, { 'duration-s': '10', runs: '3', 'warmup-s': '2', paths: ALL_PATHS.join(','), 'ka-conns': '50', 'nc-conns': '20', backend: 'haproxy', 'haproxy-nbthread': '0', interleave: false });
  if (values.backend !== 'haproxy' && values.backend !== 'node') throw new Error(`--backend must be haproxy or node, got "${values.backend}"`);
  const paths = values.paths.split(',').map((p) => p.trim()).filter(Boolean);
  for (const p of paths) if (!ALL_PATHS.includes(p as PathName)) throw new Error(`--paths: unknown path "${p}" (known: ${ALL_PATHS.join(', ')})`);
  if (paths.length === 0) throw new Error('--paths is empty');
  return {
    durationS: intFlag('duration-s', values['duration-s'], 1, 120),
    runs: intFlag('runs', values.runs, 1, 20),
    warmupS: intFlag('warmup-s', values['warmup-s'], 0, 60),
    paths: ALL_PATHS.filter((p) => paths.includes(p)),
    kaConns: intFlag('ka-conns', values['ka-conns'], 1, 1000),
    ncConns: intFlag('nc-conns', values['nc-conns'], 1, 1000),
    backend: values.backend,
    haproxyThreads: intFlag('haproxy-nbthread', values['haproxy-nbthread'], 0, 64),
    interleave: values.interleave,
  };
}

const benchId = `mesh-${Date.now().toString(36)}-${process.pid}`;

// ---------------------------------------------------------------- small helpers


/** findTool looks a program up on PATH and in the sbin directories (haproxy lives in /usr/sbin). */
function findTool(name: string): string | undefined {
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


/** portFree tells whether host:port can be listened on right now. */
function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** get makes one HTTP/1.1 request on a new connection: status, X-Task, body. */
function get(host: string, port: number, timeoutMs = 5000): Promise<{ status: number; task: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port, path: '/', agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, task: String(res.headers['x-task'] ?? ''), body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

const sum = (xs: number[]) => (xs.length && xs.every(Number.isFinite) ? xs.reduce((a, b) => a + b, 0) : NaN);

/** CPU jiffies of the whole machine (busy, total) from /proc/stat. */
function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is already in user)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

// ---------------------------------------------------------------- backends in the test image

interface Mount {
  source: string;
  target: string;
}

/** libMounts: the directories of the shared libraries (and the loader) `ldd` lists for a host binary, to mount at the same paths. */
async function libMounts(bin: string): Promise<Mount[]> {
  const r = await exec('ldd', [bin]);
  if (r.code !== 0) throw new Error(`ldd ${bin}: ${oneLine(r.stderr || r.stdout)}`);
  const dirs = new Set<string>();
  for (const line of r.stdout.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) dirs.add(dirname(m[1]!));
  }
  if (dirs.size === 0) throw new Error(`ldd ${bin} listed no library paths:\n${r.stdout}`);
  return [...dirs].sort().map((d) => ({ source: realpathSync(d), target: d }));
}

/** The backend's HAProxy config (mode http): a fixed response, keep-alive, one thread; env vars are expanded by HAProxy in the container. */
function backendHaproxyCfg(): string {
  return [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-keep-alive 60s',
    'frontend web',
    '  bind "${BATON_HOST_IP}:${PORT}"',
    `  http-request return status 200 content-type text/plain string "${BODY}" hdr X-Task "\${BATON_TASK}"`,
    '',
  ].join('\n');
}

/** The --backend node server: HTTP/1.1 on node:net, keep-alive unless the request says Connection: close. */
function backendNodeJs(): string {
  return `'use strict';
const net = require('net');
const host = process.env.BATON_HOST_IP, port = Number(process.env.PORT), task = process.env.BATON_TASK || '';
const body = ${JSON.stringify(BODY)};
const head = (close) => 'HTTP/1.1 200 OK\\r\\ncontent-type: text/plain\\r\\ncontent-length: ' + Buffer.byteLength(body) + '\\r\\nx-task: ' + task + '\\r\\n' + (close ? 'connection: close\\r\\n' : '') + '\\r\\n';
const KEEP = Buffer.from(head(false) + body, 'latin1'), CLOSE = Buffer.from(head(true) + body, 'latin1');
net.createServer({ noDelay: true }, (s) => {
  let buf = '';
  s.setEncoding('latin1');
  s.on('error', () => s.destroy());
  s.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\\r\\n\\r\\n')) >= 0) {
      const req = buf.slice(0, i);
      buf = buf.slice(i + 4);
      if (/\\r\\nconnection:[ \\t]*close/i.test(req)) { buf = ''; s.end(CLOSE); return; }
      s.write(KEEP);
    }
    if (buf.length > 65536) s.destroy();
  });
}).listen({ host, port, backlog: 1024 }, () => console.log('listening on ' + host + ':' + port));
process.on('SIGTERM', () => process.exit(0));
`;
}

interface BackendSetup {
  command: string[];
  mounts: Mount[];
  describe: string;
}

async function backendSetup(o: Opts, dir: string, haproxyBin: string): Promise<BackendSetup> {
  if (o.backend === 'haproxy') {
    const cfg = join(dir, 'backend.cfg');
    writeFileSync(cfg, backendHaproxyCfg());
    const bin = realpathSync(haproxyBin);
    return {
      command: ['/opt/bench/haproxy', '-f', '/etc/bench/backend.cfg', '-db'],
      mounts: [{ source: bin, target: '/opt/bench/haproxy' }, { source: cfg, target: '/etc/bench/backend.cfg' }, ...(await libMounts(bin))],
      describe: `the host's ${bin} (mode http, http-request return of a ${BODY.length}-byte body, nbthread 1, keep-alive), bind-mounted into ${IMAGE}`,
    };
  }
  const js = join(dir, 'backend.cjs');
  writeFileSync(js, backendNodeJs());
  const bin = realpathSync(process.execPath);
  return {
    command: ['/opt/bench/node', '/etc/bench/backend.cjs'],
    mounts: [{ source: bin, target: '/opt/bench/node' }, { source: js, target: '/etc/bench/backend.cjs' }, ...(await libMounts(bin))],
    describe: `a tiny HTTP/1.1 keep-alive server on node:net (the host's node ${process.version}, ${BODY.length}-byte body), bind-mounted into ${IMAGE}`,
  };
}

function composeText(b: BackendSetup): string {
  return [
    `name: ${STACK}`,
    'services:',
    '  web:',
    `    image: ${IMAGE}`,
    `    command: ${JSON.stringify(b.command)}`,
    `    ports: ["${PUBLISHED}:${TARGET}"]`,
    '    volumes:',
    ...b.mounts.map((m) => `      - ${JSON.stringify(`${m.source}:${m.target}:ro`)}`),
    '    labels:',
    `      ${LABEL}: "${LABEL_VALUE}"`,
    '    deploy:',
    '      replicas: 3',
    '      placement: {max_replicas_per_node: 1}',
    '',
  ].join('\n');
}

// ---------------------------------------------------------------- HAProxy as the balancer

function lbHaproxyCfg(o: Opts, eps: EndpointAddress[]): string {
  return [
    'global',
    '  maxconn 4096',
    ...(o.haproxyThreads > 0 ? [`  nbthread ${o.haproxyThreads}`] : []),
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    'frontend lb',
    `  bind ${HAPROXY_ADDR}:${HAPROXY_PORT}`,
    '  default_backend web',
    'backend web',
    '  balance roundrobin',
    ...eps.map((e, i) => `  server s${i + 1} ${e.address}:${e.ports[String(TARGET)]}`),
    '',
  ].join('\n');
}

async function startHaproxyLb(bin: string, cfgFile: string): Promise<{ child: ChildProcess; tail: () => string }> {
  log(`starting HAProxy: ${bin} -f ${cfgFile} -db`);
  const child = spawn(bin, ['-f', cfgFile, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail = outputTail(child);
  await waitFor(
    `HAProxy listening on ${HAPROXY_ADDR}:${HAPROXY_PORT}`,
    async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`HAProxy exited (${child.exitCode ?? child.signalCode}): ${oneLine(tail())}`);
      return (await get(HAPROXY_ADDR, HAPROXY_PORT, 2000)).status === 200 ? true : undefined;
    },
    { timeoutMs: 15_000, everyMs: 100 },
  );
  return { child, tail };
}

// ---------------------------------------------------------------- wrk

interface Sample {
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
const stopWrk = async () => {
  for (const c of running) c.kill('SIGTERM');
};

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us' ? n / 1000 : unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000;
}

function parseWrk(out: string): Pick<Sample, 'rps' | 'p50Ms' | 'p99Ms' | 'requests' | 'sockErrors' | 'non2xx'> {
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

/** tcpExt reads the TcpExt counters of /proc/net/netstat (SYN retransmits, SYNs PAWS-rejected by a TIME_WAIT socket, listen drops). */
function tcpExt(): { synRetrans: number; pawsTimewait: number; listenDrops: number } {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
    const names = lines[0]!.split(/\s+/).slice(1);
    const vals = lines[1]!.split(/\s+/).slice(1).map(Number);
    const get = (k: string) => vals[names.indexOf(k)] ?? NaN;
    return { synRetrans: get('TCPSynRetrans'), pawsTimewait: get('PAWSTimewait'), listenDrops: get('ListenDrops') };
  } catch {
    return { synRetrans: NaN, pawsTimewait: NaN, listenDrops: NaN };
  }
}

/** childrenCpuMs is the user+system CPU time of this process's reaped children (cutime + cstime). */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) * 10; // USER_HZ 100
}

/** containerCpuMs reads a container's CPU time from its cgroup (v1 cpuacct or v2 cpu.stat), undefined when not found. */
function containerCpuMs(id: string): number | undefined {
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

function containersCpuMs(ids: string[]): number {
  let sum = 0;
  for (const id of ids) {
    const v = containerCpuMs(id);
    if (v === undefined) return NaN;
    sum += v;
  }
  return ids.length ? sum : NaN;
}

interface Probes {
  proxyPid?: number;
  /** The mesh agents (node2's and node3's), for their CPU during every run. */
  agentPids: number[];
  backendIds: string[];
}

async function runWrk(wrkBin: string, args: string[], durationS: number, probes: Probes): Promise<Sample> {
  const cpu0 = probes.proxyPid !== undefined ? cpuMs(probes.proxyPid) : undefined;
  const agent0 = sum(probes.agentPids.map((p) => cpuMs(p) ?? NaN));
  const kids0 = childrenCpuMs();
  const be0 = containersCpuMs(probes.backendIds);
  const m0 = machineTicks();
  const tcp0 = tcpExt();
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
  const tcp1 = tcpExt();
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
    busyPct: m1.total > m0.total ? (100 * (m1.busy - m0.busy)) / (m1.total - m0.total) : NaN,
    synRetrans: tcp1.synRetrans - tcp0.synRetrans,
    pawsTimewait: tcp1.pawsTimewait - tcp0.pawsTimewait,
    listenDrops: tcp1.listenDrops - tcp0.listenDrops,
    wallMs,
  };
}

// ---------------------------------------------------------------- the Baton cluster


const haveNft = () => {
  try {
    accessSync(NFT, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** nftTable is an agent's nftables table as `nft list table` prints it, undefined when there is none. */
async function nftTable(node: string, clusterId: string | undefined): Promise<string | undefined> {
  if (!haveNft() || !clusterId) return undefined;
  const r = await exec(NFT, ['list', 'table', 'ip', tableName(node, clusterId)], { timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout : undefined;
}

/** conntrackTimeWaitS is how long conntrack keeps a closed TCP connection (nf_conntrack_tcp_timeout_time_wait, 120 s by default). */
function conntrackTimeWaitS(): number {
  try {
    const n = Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait', 'utf8').trim());
    return Number.isFinite(n) && n > 0 ? n : 120;
  } catch {
    return 120;
  }
}

/** conntrackCount counts conntrack entries (/proc/net/nf_conntrack) with a port among `ports`; NaN when unreadable. */
function conntrackCount(ports: Set<number>): number {
  let text: string;
  try {
    text = readFileSync('/proc/net/nf_conntrack', 'utf8');
  } catch {
    return NaN;
  }
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line.includes(' tcp ')) continue;
    for (const m of line.matchAll(/port=(\d+)/g))
      if (ports.has(Number(m[1]))) {
        n++;
        break;
      }
  }
  return n;
}

/** timeWaitCount counts TIME_WAIT sockets (/proc/net/tcp) with a local or remote port among `ports`. */
function timeWaitCount(ports: Set<number>): number {
  let n = 0;
  const lines = readFileSync('/proc/net/tcp', 'utf8').split('\n');
  for (let i = 1; i < lines.length; i++) {
    const c = lines[i]!.trim().split(/\s+/);
    if (c.length < 4 || c[3] !== '06') continue;
    const lp = parseInt(c[1]!.split(':')[1] ?? '', 16);
    const rp = parseInt(c[2]!.split(':')[1] ?? '', 16);
    if (ports.has(lp) || ports.has(rp)) n++;
  }
  return n;
}

// ---------------------------------------------------------------- the bench

interface Results {
  machine: Record<string, string>;
  paths: PathName[];
  backend: string;
  endpoints: EndpointAddress[];
  direct?: EndpointAddress;
  spread: Partial<Record<PathName, string[]>>;
  haproxyThreads: string;
  /** How node2's mesh routes the published port: kernel or userspace, and why. */
  meshMode: string;
  meshKernel: boolean;
  userMode: string;
  agentPid: { mesh: number; user: number };
  backendsCpuKnown: boolean;
  /** What the schedule waited for, and how long. */
  waits: string[];
  /** The agents' host ports start here. */
  portBase: number;
  samples: Record<LoadName, Record<PathName, Sample[]>>;
  /** Any warm-up or run that failed: "load/path: message". */
  failures: string[];
}

function wrkArgs(o: Opts, load: LoadName, url: string, durationS: number): string[] {
  return load === 'keep-alive'
    ? ['-t1', `-c${o.kaConns}`, `-d${durationS}s`, '--latency', url]
    : ['-t1', `-c${o.ncConns}`, `-d${durationS}s`, '--latency', '-H', 'Connection: close', url];
}

async function bench(o: Opts, tools: { wrk: string; haproxy: string }, res: Results): Promise<void> {
  const cluster = new BenchCluster('baton-bench-mesh-', 10_000);
  const dir = cluster.dir;
  // Registered after the cluster's teardown: Ctrl-C stops wrk before the processes it loads.
  const undoWrk = onCleanup('wrk', stopWrk);
  let ok = false;
  try {
    for (const [host, port] of [[MESH_NODE.address, PUBLISHED], [USER_NODE.address, PUBLISHED], [HAPROXY_ADDR, HAPROXY_PORT]] as const)
      if (!(await portFree(host, port))) throw new Error(`${host}:${port} is in use; this bench needs it free`);

    const backend = await backendSetup(o, dir, tools.haproxy);
    res.backend = backend.describe;

    const { api, clusterId } = await cluster.startServer();

    // Host ports without an earlier run's leftovers (see PORT_BASES).
    const leftovers = (base: number) => {
      const ports = new Set(Array.from({ length: 100 * AGENTS.length }, (_, k) => base + k));
      const ct = conntrackCount(ports);
      return timeWaitCount(ports) + (Number.isFinite(ct) ? ct : 0);
    };
    const scored = PORT_BASES.map((base) => ({ base, left: leftovers(base) }));
    const pick = scored.find((x) => x.left < FEW) ?? scored.reduce((a, b) => (b.left < a.left ? b : a));
    res.portBase = pick.base;
    log(`agents' host ports from ${pick.base} (${pick.left} TIME_WAIT sockets and conntrack entries there${scored[0]!.base !== pick.base ? `; ${scored.filter((x) => x.base < pick.base).map((x) => `${x.base}: ${x.left}`).join(', ')}` : ''})`);
    for (const [i, a] of AGENTS.entries()) cluster.startAgent({ ...a, portRange: portRange(pick.base, i) });
    const agentsAlive = () => cluster.agentsAlive();
    await cluster.waitReady();
    const agents = cluster.agents;
    const meshAgent = agents.find((a) => a.name === MESH_NODE.name)!;
    const userAgent = agents.find((a) => a.name === USER_NODE.name)!;
    res.agentPid = { mesh: meshAgent.child.pid!, user: userAgent.child.pid! };

    // ------------------------------------------------ the backends
    const services = stackServices(composeText(backend), STACK, dir);
    log(`apply ${SVC}: 3 replicas, one per node, published ${PUBLISHED}:${TARGET}; backend ${backend.describe}`);
    await api.apply(STACK, { services, prune: false, dryRun: false });
    const eps = await waitFor(
      `3 endpoints of ${SVC} on 3 nodes`,
      async () => {
        agentsAlive();
        const e = (await api.get<Endpoints>(endpointsKind, SVC)).spec.endpoints;
        return e.length === 3 && new Set(e.map((x) => x.node)).size === 3 && e.every((x) => x.ports[String(TARGET)]) ? e : undefined;
      },
      { timeoutMs: 90_000, everyMs: 250 },
    ).catch(async (e) => {
      const ts = (await api.tasks({ fieldSelector: { 'spec.serviceName': SVC } }).catch(() => ({ items: [] }))).items;
      throw new Error(`${(e as Error).message}; tasks: ${ts.map((t) => `${t.metadata.name}@${t.spec.nodeName || '-'} ${t.spec.desiredState}/${t.status.state} ${oneLine(t.status.error ?? t.status.message ?? '')}`).join('; ')}`);
    });
    res.endpoints = [...eps].sort((a, b) => a.address.localeCompare(b.address));
    log(`endpoints: ${res.endpoints.map((e) => `${e.task}@${e.node} ${e.address}:${e.ports[String(TARGET)]}`).join(', ')}`);
    // Each backend answers directly (a task may be ready a moment before its server listens).
    for (const e of res.endpoints)
      await waitFor(
        `backend ${e.task} answering on ${e.address}:${e.ports[String(TARGET)]}`,
        async () => {
          const r = await get(e.address, e.ports[String(TARGET)]!, 2000);
          if (r.status !== 200 || r.body !== BODY || r.task !== e.task) throw new Error(`unexpected answer: ${r.status} X-Task=${r.task} body ${r.body.length} bytes`);
          return true;
        },
        { timeoutMs: 30_000, everyMs: 200 },
      );
    const ps = await docker(['ps', '-q', '--no-trunc', '--filter', `label=${BENCH_LABEL}`, '--filter', `label=baton.cluster=${clusterId}`]);
    const backendIds = ps.stdout.trim().split('\n').filter(Boolean);
    if (backendIds.length !== 3) log(`warning: ${backendIds.length} running containers carry ${BENCH_LABEL} and baton.cluster=${clusterId} (expected 3)`);
    res.backendsCpuKnown = Number.isFinite(containersCpuMs(backendIds));
    if (!res.backendsCpuKnown) log("note: cannot read the backend containers' CPU time from their cgroups; that column stays n/a");
    const direct = res.endpoints.find((e) => e.address === MESH_NODE.address) ?? res.endpoints[0]!;
    res.direct = direct;
    const backendPorts = new Set(res.endpoints.map((e) => e.ports[String(TARGET)]!));

    // ------------------------------------------------ how each mesh node routes the published port
    const rule = `dport ${PUBLISHED}`;
    const kernelRule = async (node: string) => (await nftTable(node, clusterId))?.includes(rule) ?? false;
    if (!haveNft()) {
      res.meshMode = `userspace proxy (no ${NFT}: the agent has no kernel fast path)`;
    } else {
      res.meshKernel = await waitFor(`${MESH_NODE.name}'s nftables rule for ${MESH_NODE.address}:${PUBLISHED}`, async () => ((await kernelRule(MESH_NODE.name)) ? true : undefined), { timeoutMs: 10_000, everyMs: 200 }).catch(() => false);
      const table = await nftTable(MESH_NODE.name, clusterId);
      res.meshMode = res.meshKernel
        ? `kernel fast path: nftables DNAT (numgen inc mod ${res.endpoints.length}) in table ${tableName(MESH_NODE.name, clusterId!)}, the agent's default`
        : `userspace proxy (${table === undefined ? `the agent made no nftables table ${tableName(MESH_NODE.name, clusterId!)}` : `no rule for ${rule} in table ${tableName(MESH_NODE.name, clusterId!)}`})`;
    }
    res.userMode = 'userspace proxy (agent run with --mesh-kernel off)';
    if (await kernelRule(USER_NODE.name)) {
      res.userMode = 'KERNEL (its table has a DNAT rule although the agent runs with --mesh-kernel off)';
      log(`warning: ${USER_NODE.name} runs with --mesh-kernel off but has an nftables rule for ${rule}`);
    }
    log(`mesh on ${MESH_NODE.name}: ${res.meshMode}; mesh-user on ${USER_NODE.name}: ${res.userMode}`);

    // ------------------------------------------------ HAProxy
    const cfgFile = join(dir, 'lb.cfg');
    writeFileSync(cfgFile, lbHaproxyCfg(o, res.endpoints));
    const lb = await startHaproxyLb(tools.haproxy, cfgFile);
    cluster.track(lb.child, 'HAProxy');
    let threads: string | undefined;
    try {
      threads = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${lb.child.pid}/status`, 'utf8'))?.[1];
    } catch {
      /* gone */
    }
    res.haproxyThreads = o.haproxyThreads ? `nbthread ${o.haproxyThreads}` : `HAProxy's default nbthread: ${threads ?? '?'} threads`;

    // ------------------------------------------------ round robin, seen from the client
    const target: Record<PathName, { host: string; port: number }> = {
      direct: { host: direct.address, port: direct.ports[String(TARGET)]! },
      haproxy: { host: HAPROXY_ADDR, port: HAPROXY_PORT },
      mesh: { host: MESH_NODE.address, port: PUBLISHED },
      'mesh-user': { host: USER_NODE.address, port: PUBLISHED },
    };
    const all = new Set(res.endpoints.map((e) => e.task));
    for (const p of ['haproxy', 'mesh', 'mesh-user'] as const) {
      const t = target[p];
      await waitFor(`${p} answering on ${t.host}:${t.port}`, async () => ((await get(t.host, t.port, 2000)).status === 200 ? true : undefined), { timeoutMs: 30_000, everyMs: 200 });
      const seen: string[] = [];
      for (let i = 0; i < 6; i++) seen.push((await get(t.host, t.port)).task);
      res.spread[p] = seen;
      log(`${p}: 6 requests went to ${seen.join(', ')}`);
      if (new Set(seen).size !== all.size || !seen.every((x) => all.has(x))) throw new Error(`${p} did not reach all 3 backends with 6 requests: ${seen.join(', ')}`);
    }

    // ------------------------------------------------ load
    const urls = Object.fromEntries(ALL_PATHS.map((p) => [p, `http://${target[p].host}:${target[p].port}/`])) as Record<PathName, string>;
    const probes = (p: PathName): Probes => ({
      proxyPid: p === 'haproxy' ? lb.child.pid : p === 'mesh' ? meshAgent.child.pid : p === 'mesh-user' ? userAgent.child.pid : undefined,
      agentPids: [meshAgent.child.pid!, userAgent.child.pid!],
      backendIds,
    });
    const alive = () => {
      agentsAlive();
      if (lb.child.exitCode !== null || lb.child.signalCode !== null) throw new Error(`HAProxy exited (${lb.child.exitCode ?? lb.child.signalCode}): ${oneLine(lb.tail())}`);
    };
    // The schedule (see the header): with the kernel path, its new-connection runs come first on fresh backends, then every
    // path's keep-alive runs, then the other paths' new-connection runs once conntrack has forgotten the kernel path's connections.
    const others = o.paths.filter((p) => p !== 'mesh');
    const separate = res.meshKernel && !o.interleave && o.paths.includes('mesh') && others.length > 0;
    const phases: { load: LoadName; group: PathName[]; wait?: 'fresh' | 'after-kernel' }[] = separate
      ? [
          { load: 'new-conn', group: ['mesh'], wait: 'fresh' },
          { load: 'keep-alive', group: o.paths },
          { load: 'new-conn', group: others, wait: 'after-kernel' },
        ]
      : LOADS.map((load) => ({ load, group: o.paths }));
    const ctTimeoutS = conntrackTimeWaitS();
    let kernelEnd = 0;
    for (const { load, group, wait } of phases) {
      if (wait) {
        const t0 = now();
        // A few hundred connections (this bench's probes, keep-alive runs) do not matter; an earlier run's churn (tens of thousands) does.
        const what =
          wait === 'fresh'
            ? `fewer than ${FEW} TIME_WAIT sockets and conntrack entries on the backends' ports (an earlier run's)`
            : `${ctTimeoutS} s (conntrack's TIME_WAIT timeout) since the kernel path's last new-connection run`;
        log(`${load} ${group.join(',')}: waiting for ${what}`);
        let lastLog = 0;
        await waitFor(
          what,
          async () => {
            checkInterrupted();
            const tw = wait === 'fresh' ? timeWaitCount(backendPorts) : 0;
            const ct = wait === 'fresh' ? conntrackCount(backendPorts) : 0;
            const left = wait === 'after-kernel' ? ctTimeoutS * 1000 + 1000 - (now() - kernelEnd) : 0;
            if (now() - lastLog > 15_000) {
              lastLog = now();
              log(wait === 'fresh' ? `  ${tw} TIME_WAIT sockets, ${Number.isFinite(ct) ? ct : 'n/a'} conntrack entries` : `  ${Math.max(0, left / 1000).toFixed(0)} s to go`);
            }
            return tw < FEW && !(ct >= FEW) && left <= 0 ? true : undefined;
          },
          { timeoutMs: (ctTimeoutS + 15) * 1000, everyMs: 1000 },
        ).catch((e) => log(`warning: ${(e as Error).message}; going on`));
        res.waits.push(`before the ${group.join(', ')} new-connection runs: waited ${secs(now() - t0)} s for ${what}`);
        log(`waited ${secs(now() - t0)} s`);
      }
      if (o.warmupS > 0)
        for (const p of group) {
          checkInterrupted();
          alive();
          log(`${load} ${p}: warm-up ${o.warmupS} s`);
          await runWrk(tools.wrk, wrkArgs(o, load, urls[p], o.warmupS), o.warmupS, probes(p)).catch((e) => {
            if (wasInterrupted()) throw e;
            res.failures.push(`${load}/${p} warm-up: ${oneLine((e as Error).message).slice(0, 300)}`);
          });
        }
      for (let run = 0; run < o.runs; run++) {
        // Rotate the order, so no path always runs first (or right after another).
        const order = group.map((_, i) => group[(i + run) % group.length]!);
        for (const p of order) {
          checkInterrupted();
          alive();
          await sleep(500);
          try {
            const s = await runWrk(tools.wrk, wrkArgs(o, load, urls[p], o.durationS), o.durationS, probes(p));
            res.samples[load][p].push(s);
            const errs = s.sockErrors.reduce((a, b) => a + b, 0) + s.non2xx;
            log(
              `${load} ${p} run ${run + 1}/${o.runs}: ${s.rps.toFixed(0)} req/s, p50 ${s.p50Ms.toFixed(2)} ms, p99 ${s.p99Ms.toFixed(2)} ms` +
                `${errs ? `, errors ${s.sockErrors.join('/')} non-2xx ${s.non2xx}` : ''}${Number.isFinite(s.proxyCpuMs) ? `, proxy CPU ${secs(s.proxyCpuMs)} s` : ''}` +
                `, machine ${s.busyPct.toFixed(0)}% busy, SYN retransmits ${s.synRetrans} (PAWS-rejected at TIME_WAIT ${s.pawsTimewait})`,
            );
          } catch (e) {
            if (wasInterrupted()) throw e;
            log(`${load} ${p} run ${run + 1} failed: ${(e as Error).message}`);
            res.failures.push(`${load}/${p} run ${run + 1}: ${oneLine((e as Error).message).slice(0, 300)}`);
          }
        }
      }
      if (load === 'new-conn' && group.includes('mesh')) kernelEnd = now();
    }
    alive();
    ok = true;
  } finally {
    await stopWrk();
    undoWrk();
    await cluster.stop(ok);
  }
}

// ---------------------------------------------------------------- report

interface Agg {
  n: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  synRetrans: number;
  pawsTimewait: number;
  wallMs: number;
  requests: number;
  /** CPU of each part summed over the runs (NaN when not measured). */
  cpuMs: { proxy: number; agents: number; wrk: number; backends: number };
  /** Machine busy over the runs, in % of one core (100 × nproc = every core busy). */
  machineCorePct: number;
}

function agg(xs: Sample[], nproc: number): Agg {
  const wallMs = xs.reduce((a, s) => a + s.wallMs, 0);
  return {
    n: xs.length,
    rps: median(xs.map((s) => s.rps)),
    p50: median(xs.map((s) => s.p50Ms)),
    p99: median(xs.map((s) => s.p99Ms)),
    errors: xs.reduce((a, s) => a + s.sockErrors.reduce((b, c) => b + c, 0) + s.non2xx, 0),
    synRetrans: sum(xs.map((s) => s.synRetrans)),
    pawsTimewait: sum(xs.map((s) => s.pawsTimewait)),
    wallMs,
    requests: xs.reduce((a, s) => a + s.requests, 0),
    cpuMs: { proxy: sum(xs.map((s) => s.proxyCpuMs)), agents: sum(xs.map((s) => s.agentCpuMs)), wrk: sum(xs.map((s) => s.wrkCpuMs)), backends: sum(xs.map((s) => s.backendsCpuMs)) },
    machineCorePct: wallMs > 0 ? xs.reduce((a, s) => a + s.busyPct * nproc * s.wallMs, 0) / wallMs : NaN,
  };
}

/** corePct: CPU time as % of one core over the runs' wall time. */
const corePct = (cpu: number, a: Agg) => (a.wallMs > 0 ? (100 * cpu) / a.wallMs : NaN);

function report(o: Opts, res: Results): void {
  const out: string[] = [];
  const n = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const nproc = Number(res.machine.nproc) || 1;
  const paths = res.paths;
  out.push(...reportHeader('mesh', benchId, res.machine));
  out.push(`backends: 3 tasks of ${SVC} (one per node, placed by Baton): ${res.backend || 'n/a'}`);
  if (res.endpoints.length) out.push(`  ${res.endpoints.map((e) => `${e.task} on ${e.node} at ${e.address}:${e.ports[String(TARGET)]}`).join('; ')}`);
  if (res.portBase) out.push(`  (agents' --port-range ${AGENTS.map((_, i) => portRange(res.portBase, i)).join(', ')}: the first of ${PORT_BASES.join(', ')} without an earlier run's TIME_WAIT/conntrack leftovers)`);
  out.push('  (not busybox httpd: the test image\'s httpd answers every request with "Connection: close" and forks per connection, ~1.5k req/s here;');
  out.push('   it would measure busybox\'s fork rate on every path, and keep-alive would not be keep-alive)');
  out.push(`paths: direct    = ${res.direct ? `http://${res.direct.address}:${res.direct.ports[String(TARGET)]}/ (${res.direct.task}, no balancer)` : 'n/a'}`);
  out.push(`       haproxy   = http://${HAPROXY_ADDR}:${HAPROXY_PORT}/ (mode tcp, balance roundrobin, ${res.haproxyThreads || 'n/a'})`);
  out.push(`       mesh      = http://${MESH_NODE.address}:${PUBLISHED}/ (the published port on ${MESH_NODE.name}, agent pid ${res.agentPid.mesh || 'n/a'}): ${res.meshMode || 'n/a'}`);
  out.push(`       mesh-user = http://${USER_NODE.address}:${PUBLISHED}/ (the published port on ${USER_NODE.name}, agent pid ${res.agentPid.user || 'n/a'}): ${res.userMode || 'n/a'}`);
  const short = (t: string) => t.replace(`${SVC}.`, '');
  out.push(`round robin check (6 requests each): ${(['haproxy', 'mesh', 'mesh-user'] as const).map((p) => `${p} → ${(res.spread[p] ?? []).map(short).join(' ') || 'n/a'}`).join('; ')}`);
  for (const w of res.waits) out.push(w);
  const titles: Record<LoadName, string> = {
    'keep-alive': `keep-alive: wrk -t1 -c${o.kaConns} -d${o.durationS}s --latency`,
    'new-conn': `new connection per request: wrk -t1 -c${o.ncConns} -d${o.durationS}s --latency -H 'Connection: close'`,
  };
  const aggs = {} as Record<LoadName, Record<PathName, Agg>>;
  for (const load of LOADS) {
    const a = (aggs[load] = Object.fromEntries(ALL_PATHS.map((p) => [p, agg(res.samples[load][p], nproc)])) as Record<PathName, Agg>);
    out.push('');
    out.push(`## ${titles[load]}  (median of ${o.runs} run${o.runs > 1 ? 's' : ''})`);
    out.push(`${''.padEnd(9)} ${''.padStart(4)} ${''.padStart(8)} ${''.padStart(7)} ${''.padStart(7)} ${''.padStart(6)} ${''.padStart(7)}  CPU, % of one core (${nproc} cores = ${nproc * 100}%)`);
    out.push(`${'path'.padEnd(9)} ${'runs'.padStart(4)} ${'req/s'.padStart(8)} ${'p50_ms'.padStart(7)} ${'p99_ms'.padStart(7)} ${'errors'.padStart(6)} ${'syn_rtx'.padStart(7)}  ${'proxy'.padStart(6)} ${'wrk'.padStart(6)} ${'backends'.padStart(8)} ${'machine'.padStart(7)}  ${'proxy_us/req'.padStart(12)}`);
    for (const p of paths) {
      const x = a[p];
      const proxyPct = p === 'direct' ? '-' : n(corePct(x.cpuMs.proxy, x));
      const perReq = p === 'direct' || !(x.requests > 0) ? '-' : n((1000 * x.cpuMs.proxy) / x.requests, 1);
      out.push(
        `${p.padEnd(9)} ${String(x.n).padStart(4)} ${n(x.rps).padStart(8)} ${n(x.p50, 2).padStart(7)} ${n(x.p99, 2).padStart(7)} ${String(x.errors).padStart(6)} ${n(x.synRetrans).padStart(7)}  ` +
          `${proxyPct.padStart(6)} ${n(corePct(x.cpuMs.wrk, x)).padStart(6)} ${n(corePct(x.cpuMs.backends, x)).padStart(8)} ${n(x.machineCorePct).padStart(7)}  ${perReq.padStart(12)}`,
      );
    }
    const perReq = (x: Agg) => (x.requests > 0 ? x.cpuMs.proxy / x.requests : NaN);
    for (const m of ['mesh', 'mesh-user'] as const)
      if (paths.includes(m) && paths.includes('haproxy'))
        out.push(`ratio ${m}/haproxy: req/s ${ratio(a[m].rps, a.haproxy.rps)}  p50 ${ratio(a[m].p50, a.haproxy.p50)}  p99 ${ratio(a[m].p99, a.haproxy.p99)}  proxy CPU per request ${ratio(perReq(a[m]), perReq(a.haproxy))}`);
    if (paths.includes('direct')) out.push(`ratio to direct (req/s): ${paths.filter((p) => p !== 'direct').map((p) => `${p} ${ratio(a[p].rps, a.direct.rps)}`).join('  ')}`);
    out.push(`samples req/s: ${paths.map((p) => `${p} ${res.samples[load][p].map((s) => s.rps.toFixed(0)).join(',') || '-'}`).join('; ')}`);
    out.push(`samples p99 ms: ${paths.map((p) => `${p} ${res.samples[load][p].map((s) => s.p99Ms.toFixed(2)).join(',') || '-'}`).join('; ')}`);
    out.push(`samples SYN retransmits (PAWS-rejected at TIME_WAIT): ${paths.map((p) => `${p} ${res.samples[load][p].map((s) => `${s.synRetrans}(${s.pawsTimewait})`).join(',') || '-'}`).join('; ')}`);
  }
  out.push('');
  out.push('## Goals (issue "Load balancing")');
  const ka = aggs['keep-alive'];
  const nc = aggs['new-conn'];
  for (const m of ['mesh', 'mesh-user'] as const) {
    if (!paths.includes(m)) continue;
    const tag = m === 'mesh' ? `mesh (${res.meshKernel ? 'kernel' : 'userspace'}, the default)` : 'mesh-user (userspace proxy; for information)';
    if (ka[m].n > 0 && ka.haproxy.n > 0) {
      const pass = ka[m].rps >= GOAL_KA_RPS * ka.haproxy.rps && ka[m].p99 <= ka.haproxy.p99;
      out.push(`${tag} keep-alive: req/s >= ${GOAL_KA_RPS.toFixed(1)}× HAProxy's and p99 <= HAProxy's: ${pass ? 'PASS' : 'FAIL'} (${ratio(ka[m].rps, ka.haproxy.rps)}×: ${n(ka[m].rps)} vs ${n(ka.haproxy.rps)} req/s; p99 ${n(ka[m].p99, 2)} vs ${n(ka.haproxy.p99, 2)} ms)`);
    } else out.push(`${tag} keep-alive: FAIL (not measured)`);
    if (nc[m].n > 0 && nc.haproxy.n > 0) {
      const pass = nc[m].rps >= GOAL_NC_RPS * nc.haproxy.rps;
      out.push(`${tag} new connections: req/s >= ${GOAL_NC_RPS.toFixed(1)}× HAProxy's: ${pass ? 'PASS' : 'FAIL'} (${ratio(nc[m].rps, nc.haproxy.rps)}×: ${n(nc[m].rps)} vs ${n(nc.haproxy.rps)} req/s)`);
    } else out.push(`${tag} new connections: FAIL (not measured)`);
  }
  for (const [m, node, pid] of [['mesh', MESH_NODE, res.agentPid.mesh], ['mesh-user', USER_NODE, res.agentPid.user]] as const) {
    if (!paths.includes(m)) continue;
    const xs = [ka[m], nc[m]].filter((x) => x.n > 0);
    const cpu = sum(xs.map((x) => x.cpuMs.proxy));
    const wall = xs.reduce((s, x) => s + x.wallMs, 0);
    if (Number.isFinite(cpu) && wall > 0)
      out.push(`baton agent ${node.name} (pid ${pid}) CPU during the ${m} runs: ${secs(cpu)} s over ${secs(wall)} s of load = ${n((100 * cpu) / wall)}% of one core (keep-alive ${n(corePct(ka[m].cpuMs.proxy, ka[m]))}%, new connections ${n(corePct(nc[m].cpuMs.proxy, nc[m]))}%)`);
  }
  const idle = LOADS.flatMap((l) => (['direct', 'haproxy'] as const).map((p) => aggs[l][p])).filter((x) => x.n > 0);
  const idleCpu = sum(idle.map((x) => x.cpuMs.agents));
  const idleWall = idle.reduce((s, x) => s + x.wallMs, 0);
  if (Number.isFinite(idleCpu) && idleWall > 0) out.push(`the two mesh agents together during the direct and haproxy runs (their background): ${n((100 * idleCpu) / idleWall, 1)}% of one core`);
  if (res.failures.length) {
    out.push('');
    out.push('## Failed runs');
    for (const f of res.failures) out.push(`- ${f}`);
  }
  out.push('');
  out.push('## For orientation: ../shared/BASELINES.md (another run, nginx backends, wrk -t1; keep-alive 50 conns / new connection 20 conns):');
  out.push('   direct 87k / 27k req/s; HAProxy 2.6 mode tcp 49–59k / 14.3k; naive Node proxy (net + pipe) 37–45k / 4.9k; nftables DNAT 90k / 6.4k.');
  out.push('');
  out.push('## How this was measured');
  out.push(`- One \`baton server\` and ${AGENTS.length} agents (${AGENTS.map((a) => a.address).join(', ')}), BATON_HOME in a temp dir; a service of 3 replicas with`);
  out.push(`  \`ports: ["${PUBLISHED}:${TARGET}"]\` and \`max_replicas_per_node: 1\`; the backends' addresses and host ports come from GET /api/v1/endpoints/${SVC}.`);
  out.push('- HAProxy: `haproxy -f lb.cfg -db`, a child process of the bench (global maxconn 4096, timeouts 5s/60s/60s, no health checks, like the mesh).');
  out.push(`- wrk on loopback from 127.0.0.1, one thread, default 2 s timeout; each path gets a ${o.warmupS} s warm-up per load, then ${o.runs} run(s) of ${o.durationS} s, the path`);
  out.push('  order rotating per run. p50/p99 from wrk --latency (request to response; a slow TCP connect is not in them, it shows as fewer req/s),');
  out.push('  the median over the runs of each; errors: wrk\'s socket errors plus non-2xx answers.');
  if (res.meshKernel && !o.interleave)
    out.push('- Order: the kernel path\'s new-connection runs first (fresh backends), then every path\'s keep-alive runs, then the other paths\' new-connection runs once conntrack forgot the kernel path\'s connections (see the header).');
  if (res.meshKernel && o.interleave) out.push('- --interleave: the kernel path\'s new-connection runs were interleaved with the other paths\' (they meet each other\'s conntrack entries and TIME_WAIT sockets).');
  out.push('- syn_rtx: TcpExt TCPSynRetrans of the host over the runs (every SYN retransmit costs a connection about 1 s); PAWSTimewait in the samples line.');
  out.push('- CPU, summed over the runs and divided by their wall time: proxy = utime+stime of the HAProxy process or the mesh node\'s agent (/proc/<pid>/stat;');
  out.push('  the kernel path\'s DNAT and conntrack work is not in it: it runs in softirq, in whatever process sends); wrk = this process\'s reaped children');
  out.push('  (cutime+cstime); backends = the 3 containers\' cpuacct cgroups; machine = all cores not idle (/proc/stat).');
  out.push(`  Everything (wrk, the proxy, the backends, dockerd, the Baton processes, loopback softirqs) shares the machine's ${nproc} cores.`);
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOpts();
  const wrk = findTool('wrk');
  const haproxy = findTool('haproxy');
  if (!wrk || !haproxy) {
    const pkgs = [...(wrk ? [] : ['wrk']), ...(haproxy ? [] : ['haproxy'])];
    process.stdout.write(`bench:mesh needs ${pkgs.join(' and ')}, which ${pkgs.length > 1 ? 'are' : 'is'} not installed. Install the Debian package${pkgs.length > 1 ? 's' : ''}: apt-get install -y ${pkgs.join(' ')}\n`);
    return 1;
  }
  cleanUpOnSignals([BENCH_LABEL]);
  const hv = await exec(haproxy, ['-v']);
  const wv = await exec(wrk, ['--version']);
  const dv = await docker(['version', '--format', '{{.Server.Version}}']);
  const machine: Record<string, string> = {
    nproc: String(availableParallelism()),
    kernel: release(),
    node: process.version,
    dockerd: dv.code === 0 ? dv.stdout.trim() : 'unknown',
    haproxy: /version (\S+)/.exec(hv.stdout)?.[1] ?? 'unknown',
    wrk: /^wrk (\S+)/.exec(wv.stdout + wv.stderr)?.[1] ?? 'unknown',
    nft: haveNft() ? 'yes' : 'no',
  };
  log(`bench id ${benchId}; paths=${o.paths.join(',')} duration=${o.durationS}s runs=${o.runs} warmup=${o.warmupS}s backend=${o.backend}; ${Object.entries(machine).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (!machine.haproxy.startsWith('2.6')) log(`note: the issue names HAProxy 2.6; this is ${machine.haproxy}`);
  await requireImage(IMAGE);

  const empty = () => Object.fromEntries(ALL_PATHS.map((p) => [p, [] as Sample[]])) as Record<PathName, Sample[]>;
  const res: Results = {
    machine,
    paths: o.paths,
    backend: '',
    endpoints: [],
    spread: {},
    haproxyThreads: '',
    meshMode: '',
    meshKernel: false,
    userMode: '',
    agentPid: { mesh: 0, user: 0 },
    backendsCpuKnown: false,
    waits: [],
    portBase: 0,
    samples: { 'keep-alive': empty(), 'new-conn': empty() },
    failures: [],
  };
  let failed: string | undefined;
  const t0 = now();
  try {
    await bench(o, { wrk, haproxy }, res);
  } catch (e) {
    failed = failure('bench', e, 600);
  } finally {
    await cleanUpAll([BENCH_LABEL]);
  }
  log(`bench took ${secs(now() - t0)} s`);
  report(o, res);
  if (failed) process.stdout.write(`\nFAILED: ${failed}\n`);
  return failed || res.failures.length ? 1 : 0;
}

runMain(main, [BENCH_LABEL], { signalExits: true });
