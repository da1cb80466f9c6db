/**
 * bench:mesh — L4 load balancing (issue "Load balancing", issue 18's
 * backends in namespaces of their own, and issue 23's userspace path): two
 * sets of three backends, each reached five ways in one run:
 *
 *   direct     wrk → one backend (where its Endpoints entry says it answers:
 *              the task's own address and port 80 for a task in a namespace,
 *              its node address and host port for one on the host network),
 *              no balancer;
 *   haproxy    wrk → HAProxy (`mode tcp`, `balance roundrobin` over the 3
 *              backends of the Endpoints object, dialled where `direct`
 *              dials) on 127.0.6.1, a foreground child process of this bench
 *              (`haproxy -f cfg -db`, one frontend per set), stopped by PID;
 *   mesh       wrk → Baton's routing mesh as an agent runs it by default:
 *              the service's published port on 127.0.6.2 (node2). With
 *              nftables at hand the agent routes a plain round-robin service
 *              in the kernel (nftables DNAT in its own table, `--mesh-kernel
 *              on`, the default); the bench says which path it found;
 *   mesh-user  wrk → the published port on 127.0.6.3 (node3), whose agent
 *              runs with `--mesh-kernel off`: every connection through the
 *              userspace path that services with least_conn or the PROXY
 *              protocol get on every node: the agent's nftables table DNATs
 *              the port to a frontend of the HAProxy the agent runs and
 *              drives (`--mesh-userspace haproxy`, the default), on the same
 *              address;
 *   mesh-node  wrk → the published port on 127.0.6.4 (node4), whose agent
 *              runs with `--mesh-kernel off --mesh-userspace node`: every
 *              connection through Baton's own Node proxy (what a node
 *              without HAProxy or nftables uses; for information).
 *
 * Same cores: the peer HAProxy and the agent's HAProxy both run with
 * HAProxy's default threads (one per core: 2 here), on the same machine as
 * wrk and the backends; neither is pinned.
 *
 * The sets (bench/meshBackends.ts; --sets):
 *
 *   web    a small C HTTP/1.1 keep-alive server (--backend haproxy: the
 *          host's HAProxy in `mode http` with `http-request return`, one
 *          thread; or --backend node) bind-mounted read-only into the test
 *          image, in a namespace of its own (the default network mode;
 *          --web-network host puts it on the host's network, as before tasks
 *          had namespaces). The test image's busybox httpd cannot serve a
 *          keep-alive load (below), so this set is what keep-alive measures.
 *   httpd  the test image's busybox httpd, unmodified, on the fixed port 80 of
 *          each task's namespace (`network_mode: bridge`), as issue 18 asks.
 *          BusyBox 1.35's httpd answers every request with `Connection:
 *          close` and forks a process per connection (about 1.5k req/s on
 *          this kind of machine): under the keep-alive load wrk reconnects
 *          after every answer, so both loads are connection churn, bounded
 *          by the backends' forks on every path.
 *
 * Two loads per set and path, each bounded in time, as the median of --runs
 * runs (each path gets a --warmup-s run first, not counted; within a run the
 * path order rotates so no path always goes first):
 *
 *   keep-alive       wrk -t1 -c50 -d10s --latency URL
 *   new connections  wrk -t1 -c20 -d10s --latency -H 'Connection: close' URL
 *
 * Printed per set, load and path: requests/s, p50 and p99 latency (wrk's
 * "Latency Distribution"; it times request to response, not the TCP
 * connect), wrk's socket errors, SYN retransmits during the run (the host's
 * and the backends' namespaces), and CPU: the proxy process's (HAProxy, or
 * the mesh agent), wrk's, the backends' and the whole machine's. Then
 * mesh/HAProxy ratios with PASS/FAIL against the goals, on `mesh` (the
 * default path), and for information on `mesh-user`:
 *   - issue 18 (backends in namespaces): keep-alive and new connections
 *     >= 1.0× HAProxy's req/s, p99 <= HAProxy's;
 *   - issue "Load balancing" (web): keep-alive >= 1.0× with p99 <= HAProxy's,
 *     new connections >= 0.7×.
 *
 *   npm run bench:mesh -- [--duration-s 10] [--runs 3] [--warmup-s 2]
 *                         [--sets web,httpd] [--paths direct,haproxy,mesh,mesh-user]
 *                         [--ka-conns 50] [--nc-conns 20]
 *                         [--backend haproxy|node] [--web-network bridge|host]
 *                         [--haproxy-nbthread 0] [--interleave]
 *
 * Connection churn and the kernel path. Under `Connection: close` load the
 * backends (which close first) hold tens of thousands of TIME_WAIT sockets
 * (60 s; in their own namespaces for tasks in namespaces), and conntrack
 * keeps an entry per connection in its TIME_WAIT state
 * (nf_conntrack_tcp_timeout_time_wait, 120 s). A DNATed connection carries
 * the TCP timestamp offset of the address the client dialled (Linux derives
 * it per source/destination pair), not the backend's, while the other paths
 * dial the backends themselves; and what the backends see is one source
 * address for every path (127.0.0.1 on the host network; the node bridge's
 * address for tasks in namespaces, where the kernel path masquerades its
 * loopback clients). Seen on this machine: within two minutes of non-DNAT
 * connection churn to the same backends (direct, HAProxy, the userspace
 * mesh), new connections through the DNAT get many SYNs rejected by PAWS at
 * the backends' TIME_WAIT sockets, wait for SYN retransmits, and req/s falls
 * to a fraction with the cores idle; the other way round, after DNAT churn
 * the other paths see the same (p99 ~1 s); on fresh backends, or two minutes
 * later, all runs are clean. So when `mesh` runs in the kernel the order is:
 * its churning runs first, on fresh backends (web's new-connection runs;
 * both of httpd's loads), then web's keep-alive runs on every path (few
 * connections), then the other paths' churning runs of each set once
 * conntrack's TIME_WAIT timeout has passed since that set's kernel runs
 * (the runs between fill most of that time). --interleave runs all paths
 * together instead, to see the interference. SYN retransmits and PAWS
 * rejects are printed per path, so what remains is visible.
 *
 * Before the load, 6 requests through HAProxy and through each mesh path
 * must reach all 3 tasks of a set (web answers `X-Task: <task name>`, httpd
 * a page holding it).
 *
 * The Baton cluster: one `baton server` (tasks from 10.146.0.0/17, VIPs from
 * 10.146.240.0/20) and three `baton agent` processes on 127.0.6.2-4 with
 * their own --data-dir and --port-range (host ports, used by --web-network
 * host only, without an earlier run's TIME_WAIT or conntrack leftovers),
 * without egress, node names of their own (meshbench-node2..4: an agent's
 * nftables tables and bridge are named after its node), BATON_HOME in a temp
 * dir, log level warn. Every container carries `baton.bench=mesh` and
 * `baton.cluster=<id>` and is removed at the end, also on failure or Ctrl-C,
 * with the nodes' bridges and tables; the temp dir is removed; only processes
 * this bench started are stopped, by PID. Only 127.0.0.0/8 and the tasks'
 * addresses on this machine are contacted. The bench installs nothing:
 * without `wrk` or `haproxy` it says which Debian package to install and
 * exits 1. Progress goes to stderr, results to stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { availableParallelism, release } from 'node:os';
import { join } from 'node:path';
import { endpointsKind } from '../src/api/kinds.js';
import type { EndpointAddress, Endpoints } from '../src/api/types.js';
import { tableName } from '../src/agent/nft.js';
import { PAUSE_LABEL } from '../src/agent/net/pauseImage.js';
import { benchArgs, BenchCluster, checkInterrupted, cleanUpAll, cleanUpOnSignals, docker, dockerOk, exec, failure, intFlag, log, median, now, onCleanup, oneLine, outputTail, ratio, reportHeader, requireImage, runMain, secs, sleep, stackServices, waitFor, wasInterrupted } from './lib.js';
import { BODY, HTTPD_DESCRIBE, IMAGE, stackText, webBackend, type Backend } from './meshBackends.js';
import { findTools, sum } from './probes.js';
import { conntrackCount, conntrackTimeWaitS, runWrk, stopWrk, timeWaitCount, type Probes, type Sample } from './wrk.js';

// ---------------------------------------------------------------- options

const LABEL = 'baton.bench';
const LABEL_VALUE = 'mesh';
const BENCH_LABEL = `${LABEL}=${LABEL_VALUE}`;
const STACK = 'benchmesh';
const TARGET = 80;
const SERVER_ARGS = ['--cluster-cidr', '10.146.0.0/17', '--service-cidr', '10.146.240.0/20'];
const LB_ADDR = '127.0.6.1';
/** Node names are the bench's own: an agent's nftables tables and bridge are named after its node. */
const AGENTS = [
  { name: 'meshbench-node2', address: '127.0.6.2', args: [] as string[] },
  { name: 'meshbench-node3', address: '127.0.6.3', args: ['--mesh-kernel', 'off'] },
  { name: 'meshbench-node4', address: '127.0.6.4', args: ['--mesh-kernel', 'off', '--mesh-userspace', 'node'] },
];
/**
 * Agent i gets host ports base + 100·i .. +99. The bench takes the first base whose ports have no TIME_WAIT
 * sockets or conntrack entries left from an earlier run's churn (see the header), so runs can follow each other.
 */
const PORT_BASES = [46100, 46400, 46700];
const portRange = (base: number, i: number) => `${base + 100 * i}-${base + 100 * i + 99}`;
/** Fewer TIME_WAIT sockets or conntrack entries than this (this bench's own probes, keep-alive runs) do not disturb a run. */
const FEW = 1000;
/** `mesh`: node2's agent with its defaults. */
const MESH_NODE = AGENTS[0]!;
/** `mesh-user`: node3's agent, no DNAT to endpoints: its HAProxy carries every port. */
const USER_NODE = AGENTS[1]!;
/** `mesh-node`: node4's agent, the Node proxy only. */
const NODE_NODE = AGENTS[2]!;
const NFT = '/usr/sbin/nft';

type SetName = 'web' | 'httpd';
type PathName = 'direct' | 'haproxy' | 'mesh' | 'mesh-user' | 'mesh-node';
type LoadName = 'keep-alive' | 'new-conn';
const ALL_SETS: SetName[] = ['web', 'httpd'];
const ALL_PATHS: PathName[] = ['direct', 'haproxy', 'mesh', 'mesh-user', 'mesh-node'];
const LOADS: LoadName[] = ['keep-alive', 'new-conn'];
/** Each set's service, its published port (every node) and HAProxy's frontend port. */
const SETS: Record<SetName, { svc: string; published: number; haproxyPort: number }> = {
  web: { svc: `${STACK}_web`, published: 46080, haproxyPort: 46081 },
  httpd: { svc: `${STACK}_httpd`, published: 46082, haproxyPort: 46083 },
};

interface Opts {
  durationS: number;
  runs: number;
  warmupS: number;
  sets: SetName[];
  paths: PathName[];
  kaConns: number;
  ncConns: number;
  backend: Backend;
  webNetwork: 'bridge' | 'host';
  /** 0: HAProxy's default (one thread per available CPU). */
  haproxyThreads: number;
  /** Interleave the kernel path's churning runs with the others' (no separation, see the header). */
  interleave: boolean;
}

const USAGE =
  "usage: npm run bench:mesh -- [--duration-s 10] [--runs 3] [--warmup-s 2] [--sets web,httpd] [--paths direct,haproxy,mesh,mesh-user] [--ka-conns 50] [--nc-conns 20] [--backend haproxy|node] [--web-network bridge|host] [--haproxy-nbthread 0 (HAProxy's default)] [--interleave]\n";

/** listFlag reads a comma-separated --name among `known`, in known's order. */
function listFlag<T extends string>(name: string, v: string, known: readonly T[]): T[] {
  const xs = v.split(',').map((p) => p.trim()).filter(Boolean);
  for (const p of xs) if (!known.includes(p as T)) throw new Error(`--${name}: unknown "${p}" (known: ${known.join(', ')})`);
  if (xs.length === 0) throw new Error(`--${name} is empty`);
  return known.filter((p) => xs.includes(p));
}

function parseOpts(): Opts {
  const values = benchArgs(USAGE, { 'duration-s': '10', runs: '3', 'warmup-s': '2', sets: ALL_SETS.join(','), paths: ALL_PATHS.join(','), 'ka-conns': '50', 'nc-conns': '20', backend: 'haproxy', 'web-network': 'bridge', 'haproxy-nbthread': '0', interleave: false });
  if (values.backend !== 'haproxy' && values.backend !== 'node') throw new Error(`--backend must be haproxy or node, got "${values.backend}"`);
  if (values['web-network'] !== 'bridge' && values['web-network'] !== 'host') throw new Error(`--web-network must be bridge or host, got "${values['web-network']}"`);
  return {
    durationS: intFlag('duration-s', values['duration-s'], 1, 120),
    runs: intFlag('runs', values.runs, 1, 20),
    warmupS: intFlag('warmup-s', values['warmup-s'], 0, 60),
    sets: listFlag('sets', values.sets, ALL_SETS),
    paths: listFlag('paths', values.paths, ALL_PATHS),
    kaConns: intFlag('ka-conns', values['ka-conns'], 1, 1000),
    ncConns: intFlag('nc-conns', values['nc-conns'], 1, 1000),
    backend: values.backend,
    webNetwork: values['web-network'],
    haproxyThreads: intFlag('haproxy-nbthread', values['haproxy-nbthread'], 0, 64),
    interleave: values.interleave,
  };
}

const benchId = `mesh-${Date.now().toString(36)}-${process.pid}`;

// ---------------------------------------------------------------- small helpers

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

/** taskOf: which task answered — web says so in X-Task, httpd's page holds its name. */
const taskOf = (set: SetName, r: { task: string; body: string }) => (set === 'web' ? r.task : r.body.trim());

/** dial: where a backend answers its container port, as HAProxy and `direct` reach it: its own address for a task in a namespace, else its node's address and host port. */
function dial(e: EndpointAddress): { host: string; port: number } {
  return { host: e.taskIP ?? e.address, port: e.ports[String(TARGET)]! };
}

// ---------------------------------------------------------------- HAProxy as the balancer

function lbHaproxyCfg(o: Opts, sets: { set: SetName; eps: EndpointAddress[] }[]): string {
  return [
    'global',
    '  maxconn 4096',
    ...(o.haproxyThreads > 0 ? [`  nbthread ${o.haproxyThreads}`] : []),
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    ...sets.flatMap(({ set, eps }) => [
      `frontend lb_${set}`,
      `  bind ${LB_ADDR}:${SETS[set].haproxyPort}`,
      `  default_backend ${set}`,
      `backend ${set}`,
      '  balance roundrobin',
      ...eps.map((e, i) => `  server s${i + 1} ${dial(e).host}:${dial(e).port}`),
    ]),
    '',
  ].join('\n');
}

async function startHaproxyLb(bin: string, cfgFile: string, ports: number[]): Promise<{ child: ChildProcess; tail: () => string }> {
  log(`starting HAProxy: ${bin} -f ${cfgFile} -db`);
  const child = spawn(bin, ['-f', cfgFile, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail = outputTail(child);
  for (const port of ports)
    await waitFor(
      `HAProxy listening on ${LB_ADDR}:${port}`,
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`HAProxy exited (${child.exitCode ?? child.signalCode}): ${oneLine(tail())}`);
        return (await get(LB_ADDR, port, 2000)).status === 200 ? true : undefined;
      },
      { timeoutMs: 15_000, everyMs: 100 },
    );
  return { child, tail };
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

/** nftTable is an agent's nftables table (the mesh's) as `nft list table` prints it, undefined when there is none. */
async function nftTable(node: string, clusterId: string | undefined): Promise<string | undefined> {
  if (!haveNft() || !clusterId) return undefined;
  const r = await exec(NFT, ['list', 'table', 'ip', tableName(node, clusterId)], { timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout : undefined;
}

// ---------------------------------------------------------------- the bench

/** What one set of backends is and what was measured on it. */
interface SetResult {
  describe: string;
  network: 'bridge' | 'host';
  endpoints: EndpointAddress[];
  direct?: EndpointAddress;
  spread: Partial<Record<PathName, string[]>>;
  /** How node2's mesh routes the set's published port: kernel or userspace, and why. */
  meshMode: string;
  meshKernel: boolean;
  userMode: string;
  nodeMode: string;
  /** The backends' containers (not their pause containers) and, in namespaces, their PIDs (the way to their TCP state). */
  backendIds: string[];
  backendPids: number[];
  /** What the schedule waited for, and how long. */
  waits: string[];
  samples: Record<LoadName, Record<PathName, Sample[]>>;
}

interface Results {
  machine: Record<string, string>;
  paths: PathName[];
  sets: Partial<Record<SetName, SetResult>>;
  haproxyThreads: string;
  agentPid: { mesh: number; user: number; node: number };
  /** The agents' host ports start here. */
  portBase: number;
  /** Any warm-up or run that failed: "set/load/path: message". */
  failures: string[];
}

function wrkArgs(o: Opts, load: LoadName, url: string, durationS: number): string[] {
  return load === 'keep-alive'
    ? ['-t1', `-c${o.kaConns}`, `-d${durationS}s`, '--latency', url]
    : ['-t1', `-c${o.ncConns}`, `-d${durationS}s`, '--latency', '-H', 'Connection: close', url];
}

/** churns: whether a load opens a connection per request on this set (httpd closes every connection, whatever wrk asks). */
const churns = (set: SetName, load: LoadName) => load === 'new-conn' || set === 'httpd';

/** tcpFiles: /proc files of the namespaces a set's TCP state lives in: the host's, and each backend's own when in a namespace. */
function tcpFiles(r: SetResult, file: 'tcp' | 'netstat'): string[] {
  return [`/proc/self/net/${file}`, ...(r.network === 'bridge' ? r.backendPids.map((p) => `/proc/${p}/net/${file}`) : [])];
}

/** setUp waits for a set's three backends, checks each answers where its Endpoints entry says, and finds how each mesh node routes its port. */
async function setUp(cluster: BenchCluster, set: SetName, r: SetResult): Promise<void> {
  const { api, clusterId } = cluster.server!;
  const { svc, published } = SETS[set];
  const eps = await waitFor(
    `3 endpoints of ${svc} on 3 nodes`,
    async () => {
      cluster.agentsAlive();
      const e = (await api.get<Endpoints>(endpointsKind, svc)).spec.endpoints;
      return e.length === 3 && new Set(e.map((x) => x.node)).size === 3 && e.every((x) => x.ports[String(TARGET)]) ? e : undefined;
    },
    { timeoutMs: 90_000, everyMs: 250 },
  ).catch(async (e) => {
    const ts = (await api.tasks({ fieldSelector: { 'spec.serviceName': svc } }).catch(() => ({ items: [] }))).items;
    throw new Error(`${(e as Error).message}; tasks: ${ts.map((t) => `${t.metadata.name}@${t.spec.nodeName || '-'} ${t.spec.desiredState}/${t.status.state} ${oneLine(t.status.error ?? t.status.message ?? '')}`).join('; ')}`);
  });
  r.endpoints = [...eps].sort((a, b) => a.node.localeCompare(b.node));
  log(`${set} endpoints: ${r.endpoints.map((e) => `${e.task}@${e.node} ${dial(e).host}:${dial(e).port}`).join(', ')}`);
  // Each backend answers directly (a task may be ready a moment before its server listens).
  for (const e of r.endpoints) {
    const d = dial(e);
    await waitFor(
      `backend ${e.task} answering on ${d.host}:${d.port}`,
      async () => {
        const a = await get(d.host, d.port, 2000);
        if (a.status !== 200 || taskOf(set, a) !== e.task || (set === 'web' && a.body !== BODY)) throw new Error(`unexpected answer: ${a.status} task ${taskOf(set, a)} body ${a.body.length} bytes`);
        return true;
      },
      { timeoutMs: 30_000, everyMs: 200 },
    );
  }
  const labels = ['--filter', `label=${BENCH_LABEL}`, '--filter', `label=baton.cluster=${clusterId}`, '--filter', `label=baton.service=${svc}`];
  const ids = (await dockerOk(['ps', '-q', '--no-trunc', ...labels])).split('\n').filter(Boolean);
  const pause = new Set((await dockerOk(['ps', '-q', '--no-trunc', ...labels, '--filter', `label=${PAUSE_LABEL}`])).split('\n').filter(Boolean));
  r.backendIds = ids.filter((id) => !pause.has(id));
  if (r.backendIds.length !== 3) log(`warning: ${r.backendIds.length} running containers of ${svc} besides pause containers (expected 3)`);
  if (r.network === 'bridge' && r.backendIds.length) r.backendPids = (await dockerOk(['inspect', '--format', '{{.State.Pid}}', ...r.backendIds])).split('\n').filter(Boolean).map(Number);
  r.direct = r.endpoints.find((e) => e.node === MESH_NODE.name) ?? r.endpoints[0]!;

  const rule = `dport ${published}`;
  const kernelRule = async (node: string) => (await nftTable(node, clusterId))?.includes(rule) ?? false;
  const table = (node: string) => tableName(node, clusterId);
  if (!haveNft()) r.meshMode = `userspace proxy (no ${NFT}: the agent has no kernel fast path)`;
  else {
    r.meshKernel = await waitFor(`${MESH_NODE.name}'s nftables rule for ${MESH_NODE.address}:${published}`, async () => ((await kernelRule(MESH_NODE.name)) ? true : undefined), { timeoutMs: 10_000, everyMs: 200 }).catch(() => false);
    const t = await nftTable(MESH_NODE.name, clusterId);
    r.meshMode = r.meshKernel
      ? `kernel fast path: nftables DNAT (numgen inc mod ${r.endpoints.length}) in table ${table(MESH_NODE.name)}, the agent's default`
      : `userspace proxy (${t === undefined ? `the agent made no nftables table ${table(MESH_NODE.name)}` : `no rule for ${rule} in table ${table(MESH_NODE.name)}`})`;
  }
  // node3's rule DNATs to its HAProxy (one endpoint: the node's own address, another port), never to the tasks.
  const toProxy = await waitFor(`${USER_NODE.name}'s nftables rule to its HAProxy for ${USER_NODE.address}:${published}`, async () => {
    const t = await nftTable(USER_NODE.name, clusterId);
    return t?.includes(rule) && new RegExp(`dnat to ${USER_NODE.address.replace(/\./g, '\\.')}:\\d+`).test(t) ? true : undefined;
  }, { timeoutMs: 15_000, everyMs: 200 }).catch(() => false);
  r.userMode = toProxy ? `HAProxy driven by the agent (--mesh-kernel off; nftables DNAT to its frontend on ${USER_NODE.address})` : 'Node proxy (NO DNAT to HAProxy: is haproxy installed?)';
  if (!toProxy) log(`warning: ${USER_NODE.name} has no nftables rule sending ${rule} to its HAProxy`);
  r.nodeMode = 'Node proxy (agent run with --mesh-kernel off --mesh-userspace node)';
  if (await kernelRule(NODE_NODE.name)) {
    r.nodeMode = 'KERNEL (its table has a DNAT rule although the agent runs with --mesh-kernel off --mesh-userspace node)';
    log(`warning: ${NODE_NODE.name} runs with --mesh-kernel off --mesh-userspace node but has an nftables rule for ${rule}`);
  }
  log(`${set}: mesh on ${MESH_NODE.name}: ${r.meshMode}; mesh-user on ${USER_NODE.name}: ${r.userMode}; mesh-node on ${NODE_NODE.name}: ${r.nodeMode}`);
}

/** A step of the schedule: one set's load on some paths, maybe after a wait (see the header). */
interface Phase {
  set: SetName;
  load: LoadName;
  group: PathName[];
  wait?: 'fresh' | 'after-kernel';
}

/**
 * schedule orders the runs. With the kernel path in play (and no
 * --interleave), its churning runs go first on fresh backends, the other
 * paths' churning runs of a set only once conntrack forgot that set's kernel
 * runs, and web's keep-alive runs in between.
 */
function schedule(o: Opts, res: Results): Phase[] {
  const others = o.paths.filter((p) => p !== 'mesh');
  const separate = (set: SetName) => res.sets[set]!.meshKernel && !o.interleave && o.paths.includes('mesh') && others.length > 0;
  const sets = o.sets;
  const plain = (set: SetName): Phase[] => LOADS.map((load) => ({ set, load, group: o.paths }));
  const first: Phase[] = [];
  const middle: Phase[] = [];
  const last: Phase[] = [];
  for (const set of sets) {
    if (!separate(set)) {
      middle.push(...plain(set));
      continue;
    }
    const churning = LOADS.filter((l) => churns(set, l));
    churning.forEach((load, i) => first.push({ set, load, group: ['mesh'], ...(i === 0 ? { wait: 'fresh' as const } : {}) }));
    for (const load of LOADS.filter((l) => !churns(set, l))) middle.push({ set, load, group: o.paths });
    churning.forEach((load, i) => last.push({ set, load, group: others, ...(i === 0 ? { wait: 'after-kernel' as const } : {}) }));
  }
  return [...first, ...middle, ...last];
}

async function bench(o: Opts, tools: { wrk: string; haproxy: string }, res: Results): Promise<void> {
  const cluster = new BenchCluster('baton-bench-mesh-', 10_000, SERVER_ARGS);
  const dir = cluster.dir;
  // Registered after the cluster's teardown: Ctrl-C stops wrk before the processes it loads.
  const undoWrk = onCleanup('wrk', stopWrk);
  let ok = false;
  try {
    for (const set of o.sets)
      for (const [host, port] of [[MESH_NODE.address, SETS[set].published], [USER_NODE.address, SETS[set].published], [NODE_NODE.address, SETS[set].published], [LB_ADDR, SETS[set].haproxyPort]] as const)
        if (!(await portFree(host, port))) throw new Error(`${host}:${port} is in use; this bench needs it free`);

    const web = o.sets.includes('web') ? await webBackend(o.backend, dir, tools.haproxy) : undefined;
    const emptySamples = () => Object.fromEntries(LOADS.map((l) => [l, Object.fromEntries(ALL_PATHS.map((p) => [p, [] as Sample[]]))])) as Record<LoadName, Record<PathName, Sample[]>>;
    for (const set of o.sets)
      res.sets[set] = {
        describe: set === 'web' ? `${web!.describe}; network_mode ${o.webNetwork}${o.webNetwork === 'bridge' ? ' (the default)' : ''}` : HTTPD_DESCRIBE,
        network: set === 'web' ? o.webNetwork : 'bridge',
        endpoints: [],
        spread: {},
        meshMode: '',
        meshKernel: false,
        userMode: '',
        nodeMode: '',
        backendIds: [],
        backendPids: [],
        waits: [],
        samples: emptySamples(),
      };

    const { api } = await cluster.startServer();
    // Host ports without an earlier run's leftovers (see PORT_BASES); they matter to --web-network host only.
    const leftovers = (base: number) => {
      const ports = Array.from({ length: 100 * AGENTS.length }, (_, k) => base + k);
      const ct = conntrackCount(new Set(AGENTS.flatMap((a) => ports.map((p) => `${a.address}:${p}`))));
      return timeWaitCount(['/proc/self/net/tcp'], new Set(ports)) + (Number.isFinite(ct) ? ct : 0);
    };
    const scored = PORT_BASES.map((base) => ({ base, left: leftovers(base) }));
    const pick = scored.find((x) => x.left < FEW) ?? scored.reduce((a, b) => (b.left < a.left ? b : a));
    res.portBase = pick.base;
    log(`agents' host ports from ${pick.base} (${pick.left} TIME_WAIT sockets and conntrack entries there)`);
    for (const [i, a] of AGENTS.entries()) cluster.startAgent({ ...a, portRange: portRange(pick.base, i) });
    await cluster.waitReady();
    const meshAgent = cluster.agents.find((a) => a.name === MESH_NODE.name)!;
    const userAgent = cluster.agents.find((a) => a.name === USER_NODE.name)!;
    const nodeAgent = cluster.agents.find((a) => a.name === NODE_NODE.name)!;
    res.agentPid = { mesh: meshAgent.child.pid!, user: userAgent.child.pid!, node: nodeAgent.child.pid! };
    /** The worker of the HAProxy node3's agent runs (its master's pid file, then the master's child): mesh-user's proxy process. */
    const userProxyPid = (): number | undefined => {
      try {
        const master = Number(readFileSync(join(dir, USER_NODE.name, 'haproxy', 'haproxy.pid'), 'utf8').trim());
        const kids = readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
        return kids.at(-1);
      } catch {
        return undefined;
      }
    };

    // ------------------------------------------------ the backends
    const text = stackText({
      stack: STACK,
      label: [LABEL, LABEL_VALUE],
      target: TARGET,
      ...(web ? { web: { backend: web, published: SETS.web.published, network: o.webNetwork } } : {}),
      ...(o.sets.includes('httpd') ? { httpd: { published: SETS.httpd.published } } : {}),
    });
    log(`apply ${o.sets.map((s) => SETS[s].svc).join(' and ')}: 3 replicas each, one per node`);
    await api.apply(STACK, { services: stackServices(text, STACK, dir), prune: false, dryRun: false });
    for (const set of o.sets) await setUp(cluster, set, res.sets[set]!);

    // ------------------------------------------------ HAProxy
    const cfgFile = join(dir, 'lb.cfg');
    writeFileSync(cfgFile, lbHaproxyCfg(o, o.sets.map((set) => ({ set, eps: res.sets[set]!.endpoints }))));
    const lb = await startHaproxyLb(tools.haproxy, cfgFile, o.sets.map((s) => SETS[s].haproxyPort));
    cluster.track(lb.child, 'HAProxy');
    let threads: string | undefined;
    try {
      threads = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${lb.child.pid}/status`, 'utf8'))?.[1];
    } catch {
      /* gone */
    }
    res.haproxyThreads = o.haproxyThreads ? `nbthread ${o.haproxyThreads}` : `HAProxy's default nbthread: ${threads ?? '?'} threads`;

    // ------------------------------------------------ round robin, seen from the client
    const target = (set: SetName, p: PathName): { host: string; port: number } => {
      const s = SETS[set];
      return p === 'direct' ? dial(res.sets[set]!.direct!) : p === 'haproxy' ? { host: LB_ADDR, port: s.haproxyPort } : { host: p === 'mesh' ? MESH_NODE.address : p === 'mesh-user' ? USER_NODE.address : NODE_NODE.address, port: s.published };
    };
    for (const set of o.sets) {
      const r = res.sets[set]!;
      const all = new Set(r.endpoints.map((e) => e.task));
      for (const p of ['haproxy', 'mesh', 'mesh-user', 'mesh-node'] as const) {
        const t = target(set, p);
        await waitFor(`${set} ${p} answering on ${t.host}:${t.port}`, async () => ((await get(t.host, t.port, 2000)).status === 200 ? true : undefined), { timeoutMs: 30_000, everyMs: 200 });
        const seen: string[] = [];
        for (let i = 0; i < 6; i++) seen.push(taskOf(set, await get(t.host, t.port)));
        r.spread[p] = seen;
        log(`${set} ${p}: 6 requests went to ${seen.join(', ')}`);
        if (new Set(seen).size !== all.size || !seen.every((x) => all.has(x))) throw new Error(`${set} ${p} did not reach all 3 backends with 6 requests: ${seen.join(', ')}`);
      }
    }

    // ------------------------------------------------ load
    const url = (set: SetName, p: PathName) => `http://${target(set, p).host}:${target(set, p).port}/`;
    const probes = (set: SetName, p: PathName): Probes => ({
      proxyPid: p === 'haproxy' ? lb.child.pid : p === 'mesh' ? meshAgent.child.pid : p === 'mesh-user' ? userProxyPid() : p === 'mesh-node' ? nodeAgent.child.pid : undefined,
      agentPids: [meshAgent.child.pid!, userAgent.child.pid!, nodeAgent.child.pid!],
      backendIds: res.sets[set]!.backendIds,
      netstat: tcpFiles(res.sets[set]!, 'netstat'),
    });
    const alive = () => {
      cluster.agentsAlive();
      if (lb.child.exitCode !== null || lb.child.signalCode !== null) throw new Error(`HAProxy exited (${lb.child.exitCode ?? lb.child.signalCode}): ${oneLine(lb.tail())}`);
    };
    const ctTimeoutS = conntrackTimeWaitS();
    const kernelEnd: Partial<Record<SetName, number>> = {};
    for (const { set, load, group, wait } of schedule(o, res)) {
      const r = res.sets[set]!;
      if (wait) await waitClean(r, set, load, group, wait, ctTimeoutS, kernelEnd[set] ?? 0);
      if (o.warmupS > 0)
        for (const p of group) {
          checkInterrupted();
          alive();
          log(`${set} ${load} ${p}: warm-up ${o.warmupS} s`);
          await runWrk(tools.wrk, wrkArgs(o, load, url(set, p), o.warmupS), o.warmupS, probes(set, p)).catch((e) => {
            if (wasInterrupted()) throw e;
            res.failures.push(`${set}/${load}/${p} warm-up: ${oneLine((e as Error).message).slice(0, 300)}`);
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
            const s = await runWrk(tools.wrk, wrkArgs(o, load, url(set, p), o.durationS), o.durationS, probes(set, p));
            r.samples[load][p].push(s);
            const errs = s.sockErrors.reduce((a, b) => a + b, 0) + s.non2xx;
            log(
              `${set} ${load} ${p} run ${run + 1}/${o.runs}: ${s.rps.toFixed(0)} req/s, p50 ${s.p50Ms.toFixed(2)} ms, p99 ${s.p99Ms.toFixed(2)} ms` +
                `${errs ? `, errors ${s.sockErrors.join('/')} non-2xx ${s.non2xx}` : ''}${Number.isFinite(s.proxyCpuMs) ? `, proxy CPU ${secs(s.proxyCpuMs)} s` : ''}` +
                `, machine ${s.busyPct.toFixed(0)}% busy, SYN retransmits ${s.synRetrans} (PAWS-rejected at TIME_WAIT ${s.pawsTimewait})`,
            );
          } catch (e) {
            if (wasInterrupted()) throw e;
            log(`${set} ${load} ${p} run ${run + 1} failed: ${(e as Error).message}`);
            res.failures.push(`${set}/${load}/${p} run ${run + 1}: ${oneLine((e as Error).message).slice(0, 300)}`);
          }
        }
      }
      if (churns(set, load) && group.includes('mesh')) kernelEnd[set] = now();
    }
    alive();
    ok = true;
  } finally {
    await stopWrk();
    undoWrk();
    await cluster.stop(ok);
  }
}

/**
 * waitClean waits before a set's churning runs: 'fresh' until its backends
 * hold few TIME_WAIT sockets and conntrack entries (an earlier run's), or
 * 'after-kernel' until conntrack's TIME_WAIT timeout has passed since the
 * set's kernel-path runs ended at kernelEnd.
 */
async function waitClean(r: SetResult, set: SetName, load: LoadName, group: PathName[], wait: 'fresh' | 'after-kernel', ctTimeoutS: number, kernelEnd: number): Promise<void> {
  const t0 = now();
  const ends = new Set(r.endpoints.map((e) => `${dial(e).host}:${dial(e).port}`));
  const ports = new Set(r.endpoints.map((e) => dial(e).port));
  // A few hundred connections (this bench's probes, keep-alive runs) do not matter; an earlier run's churn (tens of thousands) does.
  const what =
    wait === 'fresh'
      ? `fewer than ${FEW} TIME_WAIT sockets and conntrack entries on ${set}'s backends (an earlier run's)`
      : `${ctTimeoutS} s (conntrack's TIME_WAIT timeout) since the kernel path's last churning run on ${set}`;
  log(`${set} ${load} ${group.join(',')}: waiting for ${what}`);
  let lastLog = 0;
  await waitFor(
    what,
    async () => {
      checkInterrupted();
      const tw = wait === 'fresh' ? timeWaitCount(tcpFiles(r, 'tcp'), ports) : 0;
      const ct = wait === 'fresh' ? conntrackCount(ends) : 0;
      const left = wait === 'after-kernel' ? ctTimeoutS * 1000 + 1000 - (now() - kernelEnd) : 0;
      if (now() - lastLog > 15_000) {
        lastLog = now();
        log(wait === 'fresh' ? `  ${tw} TIME_WAIT sockets, ${Number.isFinite(ct) ? ct : 'n/a'} conntrack entries` : `  ${Math.max(0, left / 1000).toFixed(0)} s to go`);
      }
      return tw < FEW && !(ct >= FEW) && left <= 0 ? true : undefined;
    },
    { timeoutMs: (ctTimeoutS + 15) * 1000, everyMs: 1000 },
  ).catch((e) => log(`warning: ${(e as Error).message}; going on`));
  r.waits.push(`before the ${group.join(', ')} ${load} runs: waited ${secs(now() - t0)} s for ${what}`);
  log(`waited ${secs(now() - t0)} s`);
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
const fmt = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

/** goalLine: PASS when m's req/s >= minRatio × HAProxy's (and, with p99, its p99 <= HAProxy's). */
function goalLine(what: string, m: Agg, h: Agg, minRatio: number, p99: boolean): string {
  if (!m.n || !h.n) return `${what}: FAIL (not measured)`;
  const pass = m.rps >= minRatio * h.rps && (!p99 || m.p99 <= h.p99);
  return `${what}: req/s >= ${minRatio.toFixed(1)}x HAProxy's${p99 ? " and p99 <= HAProxy's" : ''}: ${pass ? 'PASS' : 'FAIL'} (${ratio(m.rps, h.rps)}x: ${fmt(m.rps)} vs ${fmt(h.rps)} req/s${p99 ? `; p99 ${fmt(m.p99, 2)} vs ${fmt(h.p99, 2)} ms` : ''})`;
}

function reportSet(o: Opts, res: Results, set: SetName, out: string[]): void {
  const r = res.sets[set]!;
  const nproc = Number(res.machine.nproc) || 1;
  const paths = res.paths;
  const { svc, published, haproxyPort } = SETS[set];
  out.push('');
  out.push(`# set ${set}: 3 tasks of ${svc} (one per node, placed by Baton): ${r.describe}`);
  if (r.endpoints.length) out.push(`  ${r.endpoints.map((e) => `${e.task} on ${e.node} at ${dial(e).host}:${dial(e).port}`).join('; ')}`);
  out.push(`paths: direct    = ${r.direct ? `http://${dial(r.direct).host}:${dial(r.direct).port}/ (${r.direct.task}, no balancer)` : 'n/a'}`);
  out.push(`       haproxy   = http://${LB_ADDR}:${haproxyPort}/ (mode tcp, balance roundrobin, ${res.haproxyThreads || 'n/a'})`);
  out.push(`       mesh      = http://${MESH_NODE.address}:${published}/ (the published port on ${MESH_NODE.name}, agent pid ${res.agentPid.mesh || 'n/a'}): ${r.meshMode || 'n/a'}`);
  out.push(`       mesh-user = http://${USER_NODE.address}:${published}/ (the published port on ${USER_NODE.name}, agent pid ${res.agentPid.user || 'n/a'}): ${r.userMode || 'n/a'}`);
  out.push(`       mesh-node = http://${NODE_NODE.address}:${published}/ (the published port on ${NODE_NODE.name}, agent pid ${res.agentPid.node || 'n/a'}): ${r.nodeMode || 'n/a'}`);
  const short = (t: string) => t.replace(`${svc}.`, '');
  out.push(`round robin check (6 requests each): ${(['haproxy', 'mesh', 'mesh-user', 'mesh-node'] as const).map((p) => `${p} → ${(r.spread[p] ?? []).map(short).join(' ') || 'n/a'}`).join('; ')}`);
  for (const w of r.waits) out.push(w);
  const titles: Record<LoadName, string> = {
    'keep-alive': `keep-alive: wrk -t1 -c${o.kaConns} -d${o.durationS}s --latency${set === 'httpd' ? ' (httpd closes every connection: wrk reconnects)' : ''}`,
    'new-conn': `new connection per request: wrk -t1 -c${o.ncConns} -d${o.durationS}s --latency -H 'Connection: close'`,
  };
  const aggs = {} as Record<LoadName, Record<PathName, Agg>>;
  for (const load of LOADS) {
    const a = (aggs[load] = Object.fromEntries(ALL_PATHS.map((p) => [p, agg(r.samples[load][p], nproc)])) as Record<PathName, Agg>);
    out.push('');
    out.push(`## ${set}, ${titles[load]}  (median of ${o.runs} run${o.runs > 1 ? 's' : ''})`);
    out.push(`${''.padEnd(9)} ${''.padStart(4)} ${''.padStart(8)} ${''.padStart(7)} ${''.padStart(7)} ${''.padStart(6)} ${''.padStart(7)}  CPU, % of one core (${nproc} cores = ${nproc * 100}%)`);
    out.push(`${'path'.padEnd(9)} ${'runs'.padStart(4)} ${'req/s'.padStart(8)} ${'p50_ms'.padStart(7)} ${'p99_ms'.padStart(7)} ${'errors'.padStart(6)} ${'syn_rtx'.padStart(7)}  ${'proxy'.padStart(6)} ${'wrk'.padStart(6)} ${'backends'.padStart(8)} ${'machine'.padStart(7)}  ${'proxy_us/req'.padStart(12)}`);
    for (const p of paths) {
      const x = a[p];
      const proxyPct = p === 'direct' ? '-' : fmt(corePct(x.cpuMs.proxy, x));
      const perReq = p === 'direct' || !(x.requests > 0) ? '-' : fmt((1000 * x.cpuMs.proxy) / x.requests, 1);
      out.push(
        `${p.padEnd(9)} ${String(x.n).padStart(4)} ${fmt(x.rps).padStart(8)} ${fmt(x.p50, 2).padStart(7)} ${fmt(x.p99, 2).padStart(7)} ${String(x.errors).padStart(6)} ${fmt(x.synRetrans).padStart(7)}  ` +
          `${proxyPct.padStart(6)} ${fmt(corePct(x.cpuMs.wrk, x)).padStart(6)} ${fmt(corePct(x.cpuMs.backends, x)).padStart(8)} ${fmt(x.machineCorePct).padStart(7)}  ${perReq.padStart(12)}`,
      );
    }
    const perReq = (x: Agg) => (x.requests > 0 ? x.cpuMs.proxy / x.requests : NaN);
    for (const m of ['mesh', 'mesh-user', 'mesh-node'] as const)
      if (paths.includes(m) && paths.includes('haproxy'))
        out.push(`ratio ${m}/haproxy: req/s ${ratio(a[m].rps, a.haproxy.rps)}  p50 ${ratio(a[m].p50, a.haproxy.p50)}  p99 ${ratio(a[m].p99, a.haproxy.p99)}  proxy CPU per request ${ratio(perReq(a[m]), perReq(a.haproxy))}`);
    if (paths.includes('direct')) out.push(`ratio to direct (req/s): ${paths.filter((p) => p !== 'direct').map((p) => `${p} ${ratio(a[p].rps, a.direct.rps)}`).join('  ')}`);
    out.push(`samples req/s: ${paths.map((p) => `${p} ${r.samples[load][p].map((s) => s.rps.toFixed(0)).join(',') || '-'}`).join('; ')}`);
    out.push(`samples p99 ms: ${paths.map((p) => `${p} ${r.samples[load][p].map((s) => s.p99Ms.toFixed(2)).join(',') || '-'}`).join('; ')}`);
    out.push(`samples SYN retransmits (PAWS-rejected at TIME_WAIT, listen drops): ${paths.map((p) => `${p} ${r.samples[load][p].map((s) => `${s.synRetrans}(${s.pawsTimewait},${s.listenDrops})`).join(',') || '-'}`).join('; ')}`);
  }
  const dropped = LOADS.some((l) => paths.some((p) => r.samples[l][p].some((s) => s.synRetrans > 0)));
  if (dropped)
    out.push(
      '',
      'note: p99 here is request to response, without the TCP connect, on every path. A SYN the backend drops (a full accept queue: listen drops)',
      "      is retransmitted after ~1 s: through HAProxy and the userspace mesh that is the proxy's connect to the backend, after wrk sent its",
      "      request (in p99); through the kernel path and direct it is wrk's own connect (not in p99, only in fewer req/s).",
    );
  out.push('');
  out.push(`## Goals, set ${set}`);
  const ka = aggs['keep-alive'];
  const nc = aggs['new-conn'];
  for (const m of ['mesh', 'mesh-user', 'mesh-node'] as const) {
    if (!paths.includes(m)) continue;
    const tag = m === 'mesh' ? `mesh (${r.meshKernel ? 'kernel' : 'userspace'}, the default)` : m === 'mesh-user' ? 'mesh-user (the userspace path: HAProxy driven by the agent)' : 'mesh-node (the Node proxy; for information)';
    if (m === 'mesh-user') {
      out.push(`issue 23 (userspace path), ${tag} ${goalLine('keep-alive', ka[m], ka.haproxy, 1.0, true)}`);
      out.push(`issue 23 (userspace path), ${tag} ${goalLine('new connections', nc[m], nc.haproxy, 1.0, true)}`);
    }
    if (r.network === 'bridge') {
      out.push(`issue 18 (backends in namespaces), ${tag} ${goalLine('keep-alive', ka[m], ka.haproxy, 1.0, true)}`);
      out.push(`issue 18 (backends in namespaces), ${tag} ${goalLine('new connections', nc[m], nc.haproxy, 1.0, true)}`);
    }
    if (set === 'web') {
      out.push(`issue "Load balancing", ${tag} ${goalLine('keep-alive', ka[m], ka.haproxy, 1.0, true)}`);
      out.push(`issue "Load balancing", ${tag} ${goalLine('new connections', nc[m], nc.haproxy, 0.7, false)}`);
    }
  }
  for (const [m, node, pid] of [['mesh', MESH_NODE, res.agentPid.mesh], ['mesh-node', NODE_NODE, res.agentPid.node]] as const) {
    if (!paths.includes(m)) continue;
    const xs = [ka[m], nc[m]].filter((x) => x.n > 0);
    const cpu = sum(xs.map((x) => x.cpuMs.proxy));
    const wall = xs.reduce((s, x) => s + x.wallMs, 0);
    if (Number.isFinite(cpu) && wall > 0)
      out.push(`baton agent ${node.name} (pid ${pid}) CPU during the ${set} ${m} runs: ${secs(cpu)} s over ${secs(wall)} s of load = ${fmt((100 * cpu) / wall)}% of one core (keep-alive ${fmt(corePct(ka[m].cpuMs.proxy, ka[m]))}%, new connections ${fmt(corePct(nc[m].cpuMs.proxy, nc[m]))}%)`);
  }
  const idle = LOADS.flatMap((l) => (['direct', 'haproxy'] as const).map((p) => aggs[l][p])).filter((x) => x.n > 0);
  const idleCpu = sum(idle.map((x) => x.cpuMs.agents));
  const idleWall = idle.reduce((s, x) => s + x.wallMs, 0);
  if (Number.isFinite(idleCpu) && idleWall > 0) out.push(`the three mesh agents together during the ${set} direct and haproxy runs (their background): ${fmt((100 * idleCpu) / idleWall, 1)}% of one core`);
}

function report(o: Opts, res: Results): void {
  const out: string[] = [];
  const nproc = Number(res.machine.nproc) || 1;
  out.push(...reportHeader('mesh', benchId, res.machine));
  if (res.portBase) out.push(`agents' --port-range ${AGENTS.map((_, i) => portRange(res.portBase, i)).join(', ')} (host ports; the first of ${PORT_BASES.join(', ')} without an earlier run's TIME_WAIT/conntrack leftovers)`);
  for (const set of o.sets) if (res.sets[set]) reportSet(o, res, set, out);
  if (res.failures.length) {
    out.push('');
    out.push('## Failed runs');
    for (const f of res.failures) out.push(`- ${f}`);
  }
  out.push('');
  out.push('## For orientation: ../shared/BASELINES.md (another run, nginx backends on the host network, wrk -t1; keep-alive 50 conns / new connection 20 conns):');
  out.push('   direct 87k / 27k req/s; HAProxy 2.6 mode tcp 49–59k / 14.3k; naive Node proxy (net + pipe) 37–45k / 4.9k; nftables DNAT 90k / 6.4k.');
  out.push('');
  out.push('## How this was measured');
  out.push(`- One \`baton server\` and ${AGENTS.length} agents (${AGENTS.map((a) => a.address).join(', ')}), BATON_HOME in a temp dir; per set a service of 3 replicas with`);
  out.push(`  \`ports: ["<published>:${TARGET}"]\` and \`max_replicas_per_node: 1\`; where each backend answers comes from its Endpoints object (taskIP:${TARGET} for a task in a namespace).`);
  out.push('- HAProxy: `haproxy -f lb.cfg -db`, a child process of the bench, one frontend per set (global maxconn 4096, timeouts 5s/60s/60s, no health checks, like the mesh).');
  out.push(`- wrk from 127.0.0.1, one thread, default 2 s timeout; each path gets a ${o.warmupS} s warm-up per load, then ${o.runs} run(s) of ${o.durationS} s, the path`);
  out.push('  order rotating per run. p50/p99 from wrk --latency (request to response; a slow TCP connect is not in them, it shows as fewer req/s),');
  out.push("  the median over the runs of each; errors: wrk's socket errors plus non-2xx answers.");
  if (!o.interleave && o.sets.some((s) => res.sets[s]?.meshKernel))
    out.push("- Order: the kernel path's churning runs first (fresh backends), then web's keep-alive runs, then the other paths' churning runs of each set once conntrack forgot that set's kernel runs (see the header).");
  if (o.interleave) out.push("- --interleave: the kernel path's churning runs were interleaved with the other paths' (they meet each other's conntrack entries and TIME_WAIT sockets).");
  out.push("- syn_rtx: TcpExt TCPSynRetrans over the runs, in the host's and the backends' namespaces (every SYN retransmit costs a connection about 1 s); PAWSTimewait in the samples line.");
  out.push("- CPU, summed over the runs and divided by their wall time: proxy = utime+stime of the HAProxy process or the mesh node's agent (/proc/<pid>/stat;");
  out.push("  the kernel path's DNAT and conntrack work is not in it: it runs in softirq, in whatever process sends); wrk = this process's reaped children");
  out.push("  (cutime+cstime); backends = the 3 containers' cpuacct cgroups; machine = all cores not idle (/proc/stat).");
  out.push(`  Everything (wrk, the proxy, the backends, dockerd, the Baton processes, loopback and bridge softirqs) shares the machine's ${nproc} cores.`);
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOpts();
  const tools = findTools('mesh', { wrk: 'wrk', haproxy: 'haproxy' });
  if (tools.missing !== undefined) {
    process.stdout.write(tools.missing);
    return 1;
  }
  const { wrk, haproxy } = tools.found;
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
  log(`bench id ${benchId}; sets=${o.sets.join(',')} paths=${o.paths.join(',')} duration=${o.durationS}s runs=${o.runs} warmup=${o.warmupS}s backend=${o.backend} web-network=${o.webNetwork}; ${Object.entries(machine).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (!machine.haproxy.startsWith('2.6')) log(`note: the issue names HAProxy 2.6; this is ${machine.haproxy}`);
  await requireImage(IMAGE);

  const res: Results = { machine, paths: o.paths, sets: {}, haproxyThreads: '', agentPid: { mesh: 0, user: 0, node: 0 }, portBase: 0, failures: [] };
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
