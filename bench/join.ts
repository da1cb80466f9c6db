/**
 * bench:join — what N joined nodes cost one Baton server: how long N nodes
 * take to join and turn Ready, and the server's idle CPU and RSS while they
 * heartbeat and hold their task watches.
 *
 *   npm run bench:join -- --agents 50 [--idle 60] [--peer-window 30] [--concurrency 10] [--timeout-s 120]
 *
 * How: it starts one real `baton server` process, then simulates the N
 * agents inside this process (N full agents would each need their own
 * dockerd). Each simulated agent does what a real one does over the wire:
 * the real join handshake (joinCluster: CA fetch pinned by the token,
 * nonce, CSR with HMAC proof, node certificate), then registration over
 * mutual TLS, heartbeats at the interval the server asks for, and an open
 * watch of its own tasks (list, then watch from the list's revision). Every
 * simulated agent has its own TLS connection pool (one undici Agent, asked
 * to dial from the agent's own loopback address 127.0.x.y), so the server
 * sees N distinct mutual-TLS clients; the report counts the server's TCP
 * connections and client addresses to show it. It creates no containers.
 * Only 127.0.0.0/8 is contacted.
 *
 * Then, as the peer measured in the same run, the same agents beat a bare
 * node:https server (a separate node process with Baton's serving
 * certificate) for min(--idle, --peer-window) seconds, and its CPU is the
 * floor Baton's idle CPU is compared with.
 *
 * Everything is torn down at the end, also on failure or Ctrl-C: watches
 * aborted, transports closed, the server and the bare-https peer stopped by
 * their PIDs (SIGTERM), the temp dir removed. Progress goes to stderr,
 * results to stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinCluster } from '../src/agent/join.js';
import { ApiClient } from '../src/api/client.js';
import { taskKind } from '../src/api/kinds.js';
import { tlsTransport, withTransport, type Transport } from '../src/api/tls.js';
import type { Task } from '../src/api/types.js';
import { VERSION } from '../src/base/version.js';
import { sleep } from '../src/base/clock.js';
import { benchArgs, docker, LARGE_CLUSTER_ARGS, intFlag, log, median, now, onCleanup, percentile, pidOfComm, pool, ratio, reportHeader, rssKiB, runCleanups, Sampler, secs, spawnBaton, stopChild } from './lib.js';

// ---------------------------------------------------------------- options

const CPU_GOAL_PCT = 2;
const RSS_GOAL_BYTES = 150 * 1000 * 1000; // 150 MB (decimal), i.e. 143.1 MiB
const ENGINE = { ok: true, version: 'bench' };

interface Opts {
  agents: number;
  idleS: number;
  /** Seconds the same agents beat a bare node:https server, whose CPU is the floor to compare with; capped at idleS (0 skips it). */
  peerWindowS: number;
  concurrency: number;
  timeoutMs: number;
}

const USAGE = 'usage: npm run bench:join -- --agents N [--idle 60] [--peer-window 30] [--concurrency 10] [--timeout-s 120]\n';

function parseOpts(): Opts {
  const values = benchArgs(USAGE, { agents: '50', idle: '60', 'peer-window': '30', concurrency: '10', 'timeout-s': '120' });
  return {
    // 250 addresses per 127.0.x.0/24 and x stays below 255.
    agents: intFlag('agents', values.agents, 1, 250 * 250),
    idleS: intFlag('idle', values.idle, 1),
    peerWindowS: intFlag('peer-window', values['peer-window'], 0),
    concurrency: intFlag('concurrency', values.concurrency, 1),
    timeoutMs: intFlag('timeout-s', values['timeout-s'], 1) * 1000,
  };
}

const benchId = `join-${Date.now().toString(36)}-${process.pid}`;

/** agentAddress is agent i's own loopback address: 127.0.x.y with x >= 1 and 2 <= y <= 251 (never 127.0.0.1, .0 or .255). */
function agentAddress(i: number): string {
  return `127.0.${1 + Math.floor((i + 2) / 250)}.${((i + 2) % 250) + 2}`;
}

const mib = (kib: number | undefined) => (kib !== undefined && Number.isFinite(kib) ? (kib / 1024).toFixed(1) : 'n/a');
const pct = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');

// ---------------------------------------------------------------- cleanup on exit / Ctrl-C

/** Aborted on SIGINT/SIGTERM, so waits in main end at once. */
const stopAll = new AbortController();
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    stopAll.abort();
    log(`${sig}: cleaning up`);
    runCleanups().finally(() => process.exit(130));
  });
}
function checkInterrupted(): void {
  if (interrupted) throw new Error('interrupted');
}

/** withTimeout waits for p at most ms; false when it did not settle in time. */
async function withTimeout(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.then(() => true, () => true), new Promise<boolean>((res) => (t = setTimeout(() => res(false), ms)))]);
  clearTimeout(t);
  return r;
}

// ---------------------------------------------------------------- the server

interface ServerProc {
  child: ChildProcess;
  url: string;
  joinToken: string;
  adminToken: string;
  caPem: string;
  stderrTail: () => string;
}

async function startServer(dir: string): Promise<ServerProc> {
  // BENCH_SERVER_NODE_ARGS passes flags to the server's node (e.g. --cpu-prof to see where its time goes).
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const pending = spawnBaton(['server', '--data-dir', dir, '--listen', '127.0.0.1:0', '--log-level', 'warn', ...LARGE_CLUSTER_ARGS], {
    env: { BATON_HOME: dir },
    ready: [/baton server listening on (https:\/\/\S+)/, /join token: (BATON-\S+)/],
    what: 'baton server',
    nodeArgs,
  });
  const { child, matches, stderrTail } = await pending;
  const [url, joinToken] = matches as [string, string];
  const tail = stderrTail;
  serverTail = tail;
  onCleanup('baton server', () => stopServer(child));
  child.once('exit', (code, sig) => {
    if (!stopping) log(`baton server (pid ${child.pid}) exited unexpectedly (${code ?? sig}); stderr tail:\n${tail()}`);
  });
  const adminToken = readFileSync(join(dir, 'server', 'admin.token'), 'utf8').trim();
  const caPem = readFileSync(join(dir, 'server', 'ca.crt'), 'utf8');
  log(`baton server is up at ${url} (pid ${child.pid})`);
  return { child, url, joinToken, adminToken, caPem, stderrTail };
}

let stopping = false;
/** serverTail is the server's recent stderr, printed when the bench fails. */
let serverTail: (() => string) | undefined;
async function stopServer(child: ChildProcess): Promise<void> {
  stopping = true;
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  log(`stopping baton server (SIGTERM pid ${child.pid})`);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  process.kill(child.pid, 'SIGTERM');
  if (!(await withTimeout(exited, 30_000))) {
    log(`baton server pid ${child.pid} did not exit within 30 s; SIGKILL`);
    process.kill(child.pid, 'SIGKILL');
    await withTimeout(exited, 5_000);
  }
}

// ---------------------------------------------------------------- simulated agents

/** Counters over all simulated agents; the idle figures are deltas of these. */
const stats = {
  beatsSent: 0,
  beatsOk: 0,
  beatsFailed: 0,
  watchOpens: 0,
  watchEvents: 0,
  bookmarks: 0,
  watchErrors: 0,
  relists: 0,
};
/** Counters of the agents' beats to the bare-https peer. */
const peerStats = { sent: 0, ok: 0, failed: 0 };
let lastLoggedError = 0;
function logError(what: string, e: unknown): void {
  // At most one line a second, so a dying server does not flood stderr.
  if (Date.now() - lastLoggedError < 1000) return;
  lastLoggedError = Date.now();
  log(`warning: ${what}: ${(e as Error).message}`);
}

class SimAgent {
  readonly abort = new AbortController();
  intervalMs = 0;
  /** BOOKMARKs this agent's watch delivered: proof that the stream is open. */
  bookmarks = 0;
  tasks = 0;
  private loops: Promise<void>[] = [];

  constructor(
    readonly name: string,
    readonly address: string,
    readonly client: ApiClient,
    private readonly transport: Transport,
  ) {}

  start(intervalMs: number): void {
    this.intervalMs = intervalMs;
    this.loops.push(this.heartbeatLoop(), this.watchLoop());
  }

  /** Like the real agent: sleep the interval, beat, adopt the interval the server answers. */
  private async heartbeatLoop(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      await sleep(this.intervalMs, signal);
      if (signal.aborted) return;
      stats.beatsSent++;
      try {
        const r = await this.client.call<{ heartbeatIntervalMs?: number }>('POST', `/api/v1/nodes/${encodeURIComponent(this.name)}/heartbeat`, {
          engine: ENGINE,
          intervalMs: this.intervalMs,
        });
        stats.beatsOk++;
        if (r.heartbeatIntervalMs && r.heartbeatIntervalMs > 0) this.intervalMs = r.heartbeatIntervalMs;
      } catch (e) {
        if (signal.aborted) return;
        stats.beatsFailed++;
        logError(`heartbeat of ${this.name}`, e);
      }
    }
  }

  /** Like the real agent's informer: list its own tasks, watch from that revision, re-watch on a closed stream, re-list on 410. */
  private async watchLoop(): Promise<void> {
    const signal = this.abort.signal;
    const fieldSelector = { 'spec.nodeName': this.name };
    let rv: string | undefined;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (rv === undefined) {
          const list = await this.client.list<Task>(taskKind, { fieldSelector });
          rv = list.metadata.resourceVersion;
          this.tasks = list.items.length;
          stats.relists++;
        }
        stats.watchOpens++;
        for await (const ev of this.client.watch<Task>(taskKind, { fieldSelector, resourceVersion: rv, signal })) {
          failures = 0;
          if (ev.type === 'ERROR') {
            if ((ev.object as unknown as { code?: number }).code === 410) rv = undefined;
            break;
          }
          rv = ev.object.metadata.resourceVersion;
          if (ev.type === 'BOOKMARK') {
            this.bookmarks++;
            stats.bookmarks++;
          } else stats.watchEvents++;
        }
      } catch (e) {
        if (signal.aborted) return;
        stats.watchErrors++;
        failures++;
        logError(`task watch of ${this.name}`, e);
        await sleep(Math.min(250 * 2 ** failures, 5000), signal);
      }
    }
  }

  /**
   * beatPeer sends the same heartbeat (same path, same body) to the bare-https
   * peer over this agent's own mutual-TLS pool (so from its own address), at
   * its own interval, until `until` or the agent stops. Its Baton heartbeats
   * and watch go on meanwhile.
   */
  async beatPeer(url: string, until: number): Promise<void> {
    const peer = new ApiClient(withTransport({ server: url, timeoutMs: 10_000 }, this.transport));
    const signal = this.abort.signal;
    // Start at a random phase, as the agents' own beats are spread.
    await sleep(Math.random() * this.intervalMs, signal);
    while (!signal.aborted && Date.now() < until) {
      peerStats.sent++;
      try {
        await peer.call('POST', `/api/v1/nodes/${encodeURIComponent(this.name)}/heartbeat`, { engine: ENGINE, intervalMs: this.intervalMs });
        peerStats.ok++;
      } catch (e) {
        if (signal.aborted) return;
        peerStats.failed++;
        logError(`peer heartbeat of ${this.name}`, e);
      }
      await sleep(this.intervalMs, signal);
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await withTimeout(Promise.allSettled(this.loops), 10_000);
    // close() waits for requests in flight; the watch was aborted above, a heartbeat ends within its timeout.
    if (!(await withTimeout(this.transport.close(), 5_000))) log(`warning: transport of ${this.name} did not close within 5 s`);
  }
}

interface JoinTiming {
  totalMs: number;
  joinMs: number;
  registerMs: number;
}

/** joinOne runs the real join handshake and registration of simulated node i over mutual TLS from its own address. */
async function joinOne(server: ServerProc, i: number): Promise<{ agent: SimAgent; timing: JoinTiming }> {
  const name = `bench-${i}`;
  const address = agentAddress(i);
  const t0 = now();
  const creds = await joinCluster({ server: server.url, token: server.joinToken, name, address });
  const t1 = now();
  const transport = tlsTransport({ caPem: creds.caPem, certPem: creds.certPem, keyPem: creds.keyPem, localAddress: address });
  const client = new ApiClient(withTransport({ server: server.url, timeoutMs: 30_000 }, transport));
  const agent = new SimAgent(name, address, client, transport);
  try {
    const res = await client.call<{ heartbeatIntervalMs: number }>('POST', '/api/v1/nodes/register', {
      name,
      address,
      hostname: name,
      agentVersion: VERSION,
      labels: {},
      capacity: { cpus: 2, memoryBytes: 4294967296 },
      portRange: [20000, 20999],
      engine: ENGINE,
    });
    const t2 = now();
    agent.start(res.heartbeatIntervalMs);
    return { agent, timing: { totalMs: t2 - t0, joinMs: t1 - t0, registerMs: t2 - t1 } };
  } catch (e) {
    await transport.close().catch(() => undefined);
    throw e;
  }
}

/**
 * serverConnections counts established TCP connections whose local end is the
 * server's port (from /proc/net/tcp) and the distinct client addresses: with
 * connections reused, it stays at about two per agent (heartbeats, watch).
 */
function serverConnections(port: number): { conns: number; peers: number } {
  let text: string;
  try {
    text = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return { conns: NaN, peers: NaN };
  }
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let conns = 0;
  const peers = new Set<string>();
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== '01') continue; // 01 = ESTABLISHED
    if (f[1]!.split(':')[1] !== hexPort) continue;
    conns++;
    peers.add(f[2]!.split(':')[0]!);
  }
  return { conns, peers: peers.size };
}

// ---------------------------------------------------------------- the peer (context only)

interface Peer {
  pid: number;
  version: string;
  sampler: Sampler;
  rssStartKiB?: number;
  rssEndKiB?: number;
}

async function dockerdPeer(): Promise<Peer | string> {
  const r = await docker(['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 15_000 });
  if (r.code !== 0) return `docker info failed: ${(r.stderr.trim() || r.stdout.trim()).split('\n')[0]}`;
  const pid = pidOfComm('dockerd');
  if (pid === undefined) return 'docker info works but no dockerd process is visible here';
  return { pid, version: r.stdout.trim(), sampler: new Sampler(pid, 1000) };
}

// ---------------------------------------------------------------- the bare-https peer

/**
 * PEER_SCRIPT is the floor any HTTPS heartbeat endpoint in Node pays on this
 * machine: node:https with Baton's own serving certificate, asking for client
 * certificates as Baton does, parsing each JSON body and answering as Baton
 * does, and nothing else (no routing, auth, store or controllers).
 */
const PEER_SCRIPT = `
const https = require('node:https');
const fs = require('node:fs');
const d = process.argv[1];
const s = https.createServer({ key: fs.readFileSync(d + '/server.key'), cert: fs.readFileSync(d + '/server.crt'), ca: fs.readFileSync(d + '/ca.crt'), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, (req, res) => {
  let b = '';
  req.setEncoding('utf8');
  req.on('data', (c) => (b += c));
  req.on('end', () => { JSON.parse(b || '{}'); res.setHeader('content-type', 'application/json'); res.end('{"heartbeatIntervalMs":2000}'); });
});
s.listen(0, '127.0.0.1', () => console.log('listening ' + s.address().port));
process.on('SIGTERM', () => process.exit(0));
// Exit with the bench: its stdin is a pipe from the bench, closed when the bench dies.
process.stdin.on('end', () => process.exit(0)).resume();
`;

interface PeerProc {
  child: ChildProcess;
  pid: number;
  url: string;
}


/** startPeer spawns the bare node:https server with the serving certificate and key in serverDir (<data dir>/server). */
async function startPeer(serverDir: string): Promise<PeerProc> {
  const child = spawn(process.execPath, ['-e', PEER_SCRIPT, serverDir], { cwd: serverDir, stdio: ['pipe', 'pipe', 'inherit'] });
  // Registered at once, so a failure while starting still stops it.
  onCleanup('bare-https peer', () => stopChild(child, 'bare-https peer', 5_000));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`the bare-https peer did not print its port within 30 s; stdout: ${buf}`)), 30_000);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (c: string) => {
      buf += c;
      const m = /listening (\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`the bare-https peer exited (${code ?? sig}) before listening`));
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  child.stdout!.resume(); // keep draining; it prints nothing more
  return { child, pid: child.pid!, url: `https://127.0.0.1:${port}` };
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOpts();
  const machine = { nproc: String(availableParallelism()), kernel: release(), node: process.version };
  log(`bench id ${benchId}; agents=${o.agents} idle=${o.idleS}s concurrency=${o.concurrency}; ${Object.entries(machine).map(([k, v]) => `${k}=${v}`).join(' ')}`);

  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-join-'));
  onCleanup('temp dir', async () => rmSync(dir, { recursive: true, force: true }));
  const server = await startServer(dir);
  const serverPid = server.child.pid!;
  checkInterrupted();

  const adminTransport = tlsTransport({ caPem: server.caPem });
  onCleanup('admin transport', () => adminTransport.close());
  const admin = new ApiClient(withTransport({ server: server.url, token: server.adminToken, timeoutMs: 30_000 }, adminTransport));
  await admin.info(); // warm: the first request of a fresh server is not the join's cost

  const agents: SimAgent[] = [];
  onCleanup('simulated agents', async () => {
    log(`stopping ${agents.length} simulated agent(s)`);
    await Promise.all(agents.map((a) => a.stop()));
  });

  // ------------------------------------------------ join + register
  const rssBeforeJoinKiB = rssKiB(serverPid);
  const joinSampler = new Sampler(serverPid, 200);
  joinSampler.start();
  log(`joining ${o.agents} simulated agents at concurrency ${o.concurrency}`);
  const timings: JoinTiming[] = [];
  let lastRegisteredAt = 0;
  const t0 = now();
  await pool(
    Array.from({ length: o.agents }, (_, i) => i),
    o.concurrency,
    async (i) => {
      checkInterrupted();
      const { agent, timing } = await joinOne(server, i);
      agents.push(agent);
      timings.push(timing);
      lastRegisteredAt = now();
      if (agents.length % 10 === 0 || agents.length === o.agents) log(`joined and registered ${agents.length}/${o.agents}`);
    },
  );
  const joinTotalMs = now() - t0;
  log(`all ${o.agents} joined and registered in ${secs(joinTotalMs)} s`);

  // ------------------------------------------------ all Ready
  let readyAfterMs = NaN;
  let lastStates = '';
  for (let lastLog = 0; ; ) {
    checkInterrupted();
    const nodes = (await admin.nodes()).items.filter((n) => n.metadata.name.startsWith('bench-'));
    const ready = nodes.filter((n) => n.status.state === 'ready').length;
    const t = now() - t0;
    if (ready === o.agents) {
      readyAfterMs = t;
      break;
    }
    const byState: Record<string, number> = {};
    for (const n of nodes) byState[n.status.state] = (byState[n.status.state] ?? 0) + 1;
    lastStates = Object.entries(byState).map(([k, v]) => `${k}=${v}`).join(' ') || 'no nodes';
    if (t - lastLog > 2000) {
      lastLog = t;
      log(`${secs(t)} s: ${ready}/${o.agents} Ready (${lastStates})`);
    }
    if (t > o.timeoutMs) throw new Error(`only ${ready}/${o.agents} nodes Ready after ${secs(t)} s (${lastStates})`);
    await sleep(100, stopAll.signal);
  }
  joinSampler.stop();
  log(`all ${o.agents} Ready ${secs(readyAfterMs)} s after the first join (${secs(now() - lastRegisteredAt)} s after the last registration)`);

  // ------------------------------------------------ every watch open
  // A quiet filtered watch sends a BOOKMARK every few seconds: one from each agent shows its stream is held open.
  let watchesLiveMs = NaN;
  for (;;) {
    checkInterrupted();
    const live = agents.filter((a) => a.bookmarks > 0).length;
    if (live === agents.length) {
      watchesLiveMs = now() - t0;
      break;
    }
    if (now() - t0 > o.timeoutMs) throw new Error(`only ${live}/${agents.length} task watches delivered a BOOKMARK after ${secs(now() - t0)} s`);
    await sleep(100, stopAll.signal);
  }
  log(`all ${agents.length} task watches open (a BOOKMARK from each) ${secs(watchesLiveMs)} s after the first join`);

  // ------------------------------------------------ idle
  const peer = await dockerdPeer();
  checkInterrupted();
  log(`idle for ${o.idleS} s, sampling server pid ${serverPid}${typeof peer === 'string' ? '' : ` and dockerd pid ${peer.pid}`}`);
  const idle = new Sampler(serverPid, 200);
  const self = new Sampler(process.pid, 1000);
  const s0 = { ...stats };
  const selfCpu0 = process.cpuUsage();
  const rssStartKiB = rssKiB(serverPid);
  const port = Number(new URL(server.url).port);
  const conn0 = serverConnections(port);
  if (typeof peer !== 'string') {
    peer.rssStartKiB = rssKiB(peer.pid);
    peer.sampler.start();
  }
  idle.start();
  self.start();
  const i0 = now();
  await sleep(o.idleS * 1000, stopAll.signal);
  checkInterrupted();
  idle.stop();
  self.stop();
  const idleMs = now() - i0;
  const rssEndKiB = rssKiB(serverPid);
  const conn1 = serverConnections(port);
  const selfCpu = process.cpuUsage(selfCpu0);
  const selfRssKiB = rssKiB(process.pid);
  if (typeof peer !== 'string') {
    peer.sampler.stop();
    peer.rssEndKiB = rssKiB(peer.pid);
  }
  const d = Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, v - s0[k as keyof typeof stats]])) as typeof stats;
  const serverCpuPct = (idle.cpuUsedMs / idleMs) * 100;
  const beatsPerS = d.beatsSent / (idleMs / 1000);
  const endNodes = (await admin.nodes()).items.filter((n) => n.metadata.name.startsWith('bench-'));
  const readyAtEnd = endNodes.filter((n) => n.status.state === 'ready').length;
  const intervals = [...new Set(agents.map((a) => a.intervalMs))].sort((a, b) => a - b);
  log(`idle done: server CPU ${pct(serverCpuPct)} %, RSS ${mib(rssEndKiB)} MiB, ${d.beatsSent} beats sent`);

  // ------------------------------------------------ the bare-https peer, same agents, same beats
  // After Baton's figures are taken. The agents' Baton heartbeats and watches
  // go on (pausing them would turn the nodes NotReady and wake the server's
  // controllers); the peer's own CPU is what is measured, so the Baton traffic
  // only keeps the machine as busy as it was in the idle window.
  const peerWindowS = Math.min(o.idleS, o.peerWindowS);
  const pw = { cpuPct: NaN, ms: NaN, cpuMs: NaN, rssEndKiB: undefined as number | undefined, rssPeakKiB: NaN, perS: NaN, ok: 0, failed: 0, pid: 0 };
  if (peerWindowS > 0) {
    const p = await startPeer(join(dir, 'server'));
    pw.pid = p.pid;
    checkInterrupted();
    const warmMs = 3_000 + intervals[intervals.length - 1]!;
    log(
      `bare-https peer (pid ${p.pid}) at ${p.url}: the same ${agents.length} agents beat it at their interval; ` +
        `sampling it for ${peerWindowS} s after ${secs(warmMs)} s warm-up (their Baton beats and watches go on)`,
    );
    const ps = new Sampler(p.pid, 200);
    const until = Date.now() + warmMs + peerWindowS * 1000;
    const beating = Promise.all(agents.map((a) => a.beatPeer(p.url, until)));
    // Every agent's first beat (and TLS handshake) lands in the warm-up, so the window is steady state.
    await sleep(warmMs, stopAll.signal);
    checkInterrupted();
    const pOk0 = peerStats.ok;
    const pFail0 = peerStats.failed;
    ps.start();
    const p0 = now();
    await sleep(peerWindowS * 1000, stopAll.signal);
    checkInterrupted();
    ps.stop();
    pw.ms = now() - p0;
    pw.rssEndKiB = rssKiB(p.pid);
    pw.ok = peerStats.ok - pOk0;
    pw.failed = peerStats.failed - pFail0;
    pw.cpuMs = ps.cpuUsedMs;
    pw.cpuPct = (ps.cpuUsedMs / pw.ms) * 100;
    pw.rssPeakKiB = ps.peakKiB;
    pw.perS = pw.ok / (pw.ms / 1000);
    await withTimeout(beating, 15_000); // the loops end at `until`, within one interval
    await stopChild(p.child, 'bare-https peer', 5_000);
    log(`peer done: bare node:https CPU ${pct(pw.cpuPct)} %, ${pw.perS.toFixed(1)} requests/s`);
  }
  const cpuRatio = ratio(serverCpuPct, pw.cpuPct);

  // ------------------------------------------------ report
  const total = timings.map((t) => t.totalMs);
  const warnings: string[] = [];
  if (d.beatsFailed) warnings.push(`${d.beatsFailed} heartbeat(s) failed during the idle window`);
  if (d.watchErrors) warnings.push(`${d.watchErrors} task watch error(s) during the idle window`);
  if (readyAtEnd !== o.agents) warnings.push(`only ${readyAtEnd}/${o.agents} nodes Ready at the end of the idle window`);
  if (o.agents > 1 && conn1.peers < o.agents) warnings.push(`the server saw connections from ${conn1.peers} client address(es), not one per agent: tlsTransport's localAddress did not take effect`);
  if (pw.failed) warnings.push(`${pw.failed} heartbeat(s) to the bare-https peer failed during its window`);
  if (d.watchOpens) warnings.push(`${d.watchOpens} task watch(es) were re-opened during the idle window (the server closed streams)`);

  const out: string[] = [];
  out.push(...reportHeader('join', benchId, machine));
  out.push(`workload agents=${o.agents} idle_s=${o.idleS} join_concurrency=${o.concurrency} server=${server.url} server_pid=${serverPid} heartbeat_interval_ms=${intervals.join(',')} (server-assigned)`);
  out.push(
    `note: the ${o.agents} agents are SIMULATED inside this bench process, not ${o.agents} agent processes: each did the real join handshake ` +
      `(CA pinned by the token, nonce, CSR + HMAC proof, node certificate) and then talks to the real server over real mutual TLS, ` +
      `one connection pool per agent dialing from its own 127.0.x.y, heartbeating and holding a filtered watch of its own tasks. ` +
      `They run no containers and probe no engine, so this measures the server's cost of ${o.agents} nodes, not an agent's cost.`,
  );
  out.push('');
  out.push(
    `join   agents=${o.agents} total_s=${secs(joinTotalMs)} per_agent_ms median=${ms(median(total))} p95=${ms(percentile(total, 95))} max=${ms(Math.max(...total))} ` +
      `(handshake median=${ms(median(timings.map((t) => t.joinMs)))} register median=${ms(median(timings.map((t) => t.registerMs)))})`,
  );
  out.push(
    `join   server cpu_s=${secs(joinSampler.cpuUsedMs)} rss_mib before=${mib(rssBeforeJoinKiB)} peak=${mib(joinSampler.peakKiB)} (join through all Ready)`,
  );
  out.push(`ready  all_ready_after_s=${secs(readyAfterMs)} (from the first join; ${secs(readyAfterMs - (lastRegisteredAt - t0))} s after the last registration)`);
  out.push(`watch  all_watches_open_after_s=${secs(watchesLiveMs)} (a BOOKMARK received on each of ${agents.length} filtered task watches)`);
  out.push(
    `idle   window_s=${secs(idleMs)} server_rss_mib start=${mib(rssStartKiB)} end=${mib(rssEndKiB)} peak=${mib(idle.peakKiB)} ` +
      `server_cpu_pct=${pct(serverCpuPct)} (of one core; ${secs(idle.cpuUsedMs)} s CPU)`,
  );
  out.push(
    `idle   beats_sent=${d.beatsSent} beats_ok=${d.beatsOk} beats_failed=${d.beatsFailed} beats_per_s=${beatsPerS.toFixed(1)} ` +
      `watch_bookmarks=${d.bookmarks} watch_events=${d.watchEvents} watch_reopens=${d.watchOpens} watch_errors=${d.watchErrors} nodes_ready_at_end=${readyAtEnd}/${o.agents}`,
  );
  out.push(
    `idle   server_tcp_connections start=${conn0.conns} end=${conn1.conns} client_addresses start=${conn0.peers} end=${conn1.peers} ` +
      `(expected about ${2 * o.agents + 1} from ${o.agents + 1} addresses: per agent one for heartbeats and one held by its watch, plus the admin client)`,
  );
  out.push(
    `bench  process rss_mib=${mib(selfRssKiB)} peak=${mib(self.peakKiB)} cpu_pct=${pct(((selfCpu.user + selfCpu.system) / 1000 / idleMs) * 100)} ` +
      `(this process hosts the ${o.agents} simulated agents; context only)`,
  );
  if (typeof peer === 'string') out.push(`peer   dockerd: not measured (${peer})`);
  else
    out.push(
      `peer   dockerd ${peer.version} pid=${peer.pid} rss_mib start=${mib(peer.rssStartKiB)} end=${mib(peer.rssEndKiB)} peak=${mib(peer.sampler.peakKiB)} ` +
        `cpu_pct=${pct((peer.sampler.cpuUsedMs / idleMs) * 100)} over the same window (context only: this dockerd serves no Baton node and runs no swarm; ` +
        `Swarm has no equivalent of ${o.agents} nodes joined on one machine)`,
    );
  if (peerWindowS > 0)
    out.push(
      `peer   bare_node_https pid=${pw.pid} window_s=${secs(pw.ms)} cpu_pct=${pct(pw.cpuPct)} (of one core; ${secs(pw.cpuMs)} s CPU) ` +
        `rss_mib=${mib(pw.rssEndKiB)} peak=${mib(pw.rssPeakKiB)} requests_per_s=${pw.perS.toFixed(1)} requests_ok=${pw.ok} failed=${pw.failed} ` +
        `(a separate node process: node:https with Baton's serving certificate, asking for client certificates as Baton does, parsing each JSON body ` +
        `and answering {"heartbeatIntervalMs":2000}; beaten by the same ${agents.length} agents over their own mutual-TLS pools at the same interval, ` +
        `while their Baton beats and watches went on: the floor for an HTTPS heartbeat endpoint in Node on this machine)`,
    );
  else out.push(`peer   bare_node_https: not measured (--peer-window 0)`);
  for (const w of warnings) out.push(`warning ${w}`);
  out.push('');
  const rssPeakBytes = idle.peakKiB * 1024;
  const rows: [string, string, string, string][] = [
    ['metric', 'value', 'goal', 'result'],
    ['server idle CPU (one core)', `${pct(serverCpuPct)} %`, `< ${CPU_GOAL_PCT} %`, Number.isFinite(serverCpuPct) ? (serverCpuPct < CPU_GOAL_PCT ? 'PASS' : 'FAIL') : 'n/a'],
    [
      'server RSS (idle peak)',
      `${mib(idle.peakKiB)} MiB`,
      `< 150 MB (${(RSS_GOAL_BYTES / 1048576).toFixed(1)} MiB)`,
      idle.peakKiB > 0 ? (rssPeakBytes < RSS_GOAL_BYTES ? 'PASS' : 'FAIL') : 'n/a',
    ],
    ['all nodes Ready after join', `${secs(readyAfterMs)} s`, '-', '-'],
    ['heartbeats received', `${beatsPerS.toFixed(1)} /s`, '-', '-'],
    ...(peerWindowS > 0
      ? ([
          ['bare Node https, same beats (peer)', `${pct(pw.cpuPct)} %`, '-', '-'],
          ['baton/bare-https CPU ratio', cpuRatio === 'n/a' ? 'n/a' : `${cpuRatio}x`, '-', "context: Baton's window also serves the watches' BOOKMARKs"],
        ] as [string, string, string, string][])
      : []),
  ];
  const w = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) out.push(r.map((cell, c) => cell.padEnd(w[c]!)).join('  ').trimEnd());
  out.push('');
  out.push(
    `join_bench agents=${o.agents} join_total_s=${secs(joinTotalMs)} join_median_ms=${ms(median(total))} join_p95_ms=${ms(percentile(total, 95))} join_max_ms=${ms(Math.max(...total))} ` +
      `all_ready_s=${secs(readyAfterMs)} idle_rss_mib_start=${mib(rssStartKiB)} idle_rss_mib_end=${mib(rssEndKiB)} idle_rss_mib_peak=${mib(idle.peakKiB)} ` +
      `idle_cpu_pct=${pct(serverCpuPct)} beats_per_s=${beatsPerS.toFixed(1)} peer_https_cpu_pct=${pct(pw.cpuPct)} cpu_ratio_vs_bare_https=${cpuRatio}`,
  );
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}

main().then(
  async (code) => {
    await runCleanups();
    process.exit(code);
  },
  async (e) => {
    if (interrupted) return; // the signal handler cleans up and exits
    log(`bench failed: ${(e as Error).stack ?? e}`);
    if (serverTail) log(`baton server stderr tail:\n${serverTail() || '(empty)'}`);
    await runCleanups();
    process.exit(1);
  },
);
