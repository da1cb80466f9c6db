/**
 * Small helpers shared by the benches: the command line, running the docker
 * CLI, timing, medians and percentiles, a bounded worker pool, /proc sampling
 * of a process, starting a `baton` process and waiting until it says it is
 * up, a Baton cluster of a server and agents (BenchCluster), a throw-away
 * single-node Docker Swarm (throwAwaySwarm), cleanup on exit or Ctrl-C, and
 * the summary's first lines.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, release, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ApiClient } from '../src/api/client.js';
import { tlsTransport, withTransport } from '../src/api/tls.js';
import { tableName } from '../src/agent/nft.js';
import { netTableName } from '../src/agent/net/netTable.js';
import { deleteBridge, ifName } from '../src/agent/net/plumbing.js';
import { readCompose } from '../src/manifest/compose/index.js';

export const DOCKER = '/usr/bin/docker';

// ---------------------------------------------------------------- the command line

/**
 * benchArgs parses the command line (node:util parseArgs, no positionals):
 * `defaults` names each option with its default, a string for an option
 * with a value (--replicas 20), a boolean for a flag (--skip-swarm); -h and
 * --help print `usage` to stdout and exit 0. Returns the values.
 */
export function benchArgs<const O extends Record<string, string | boolean>>(usage: string, defaults: O): { [K in keyof O]: O[K] extends string ? string : boolean } {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const [name, v] of Object.entries(defaults)) options[name] = typeof v === 'string' ? { type: 'string', default: v } : { type: 'boolean', default: v };
  options.help = { type: 'boolean', short: 'h', default: false };
  const { values } = parseArgs({ options, allowPositionals: false });
  if (values.help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  return values as { [K in keyof O]: O[K] extends string ? string : boolean };
}

/** intFlag reads the value of --name as an integer >= min (and <= max when given), or throws saying what it expected. */
export function intFlag(name: string, v: string, min: number, max?: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || (max !== undefined && n > max)) throw new Error(`--${name} must be an integer ${max === undefined ? `>= ${min}` : `in [${min}, ${max}]`}, got "${v}"`);
  return n;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** exec runs a program without a shell (env: added to this process's environment) and never throws on a non-zero exit: the caller decides. */
export function exec(file: string, args: string[], o: { timeoutMs?: number; env?: Record<string, string>; cwd?: string } = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: o.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, cwd: o.cwd, env: o.env ? { ...process.env, ...o.env } : undefined }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code !== 0 && !stderr ? err.message : '') });
    });
  });
}

export function docker(args: string[], o: { timeoutMs?: number } = {}): Promise<ExecResult> {
  return exec(DOCKER, args, o);
}

/** dockerOk runs docker and throws with its stderr when it fails. */
export async function dockerOk(args: string[], o: { timeoutMs?: number } = {}): Promise<string> {
  const r = await docker(args, o);
  if (r.code !== 0) throw new Error(`docker ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** containerIds lists containers (running or not) carrying every label filter given. */
export async function containerIds(labels: string[], all = true): Promise<string[]> {
  const args = ['ps', '-q', '--no-trunc'];
  if (all) args.push('-a');
  for (const l of labels) args.push('--filter', `label=${l}`);
  const out = await dockerOk(args);
  return out.split('\n').map((s) => s.trim()).filter(Boolean);
}

/**
 * removeContainers force-removes containers in batches (the docker CLI removes
 * the ids of one call in parallel); returns how many it asked to remove.
 * oneByOne removes them one after another instead, for containers on a
 * user-defined network: dockerd 20.10.24 (Debian's) can deadlock its
 * libnetwork when endpoints with DNS records leave at the same time
 * (getSvcRecords against processEndpointDelete, moby/moby#42545, fixed in
 * later builds). Seen here with 50 at once, after which every network call
 * of the engine hung until it restarted; one at a time narrows the race to
 * the engine's own asynchronous clean-up, it does not close it.
 */
export async function removeContainers(ids: string[], o: { oneByOne?: boolean } = {}): Promise<number> {
  const batch = o.oneByOne ? 1 : 50;
  for (let i = 0; i < ids.length; i += batch) {
    const r = await docker(['rm', '-f', ...ids.slice(i, i + batch)], { timeoutMs: 300_000 });
    if (r.code !== 0 && !/No such container/i.test(r.stderr)) log(`warning: docker rm -f: ${r.stderr.trim()}`);
  }
  return ids.length;
}

/** removeByLabel force-removes every container carrying the label filters (oneByOne: see removeContainers). */
export async function removeByLabel(labels: string[], o: { oneByOne?: boolean } = {}): Promise<number> {
  return removeContainers(await containerIds(labels), o);
}

/**
 * BenchNetwork is a user-defined Docker bridge network a bench made
 * (benchNetwork); remove() takes it down (once; its containers must be gone).
 */
export interface BenchNetwork {
  name: string;
  subnet: string;
  remove(): Promise<void>;
}

/**
 * benchNetwork makes a user-defined bridge network (`docker network create
 * --driver bridge --internal`) with `label` and the first of `subnets` that
 * overlaps no network the engine has (a network an earlier run could not
 * remove holds its subnet: the engine can keep a stale endpoint count after a
 * failed start, and then refuses to remove the network until it restarts),
 * and registers its removal with onCleanup. The engine's embedded resolver
 * (127.0.0.11) answers container names on it.
 *
 * Internal or not, Docker 20.10 gives its containers a default route through
 * the bridge, and the engine here runs with --iptables=false, so it adds no
 * rule that keeps them in: the host (which forwards, for Baton's task
 * networks) would route their packets off the machine, unmasqueraded. So the
 * bench adds a guard of its own, an nftables table that drops whatever the
 * host would forward from the subnet to anywhere outside it, made before any
 * container exists and removed with the network. The bench's containers send
 * nothing anyway (they sleep, or ask 127.0.0.11 inside their namespace).
 */
export async function benchNetwork(name: string, subnets: readonly string[], label: string): Promise<BenchNetwork> {
  let removed = false;
  const guard = `baton_bench_${name.replace(/[^A-Za-z0-9_]/g, '_')}`.slice(0, 120);
  const remove = async () => {
    if (removed) return;
    removed = true;
    const r = await docker(['network', 'rm', name]);
    if (r.code !== 0 && !/not found/i.test(r.stderr)) log(`warning: docker network rm ${name}: ${oneLine(r.stderr)}`);
    await exec('/usr/sbin/nft', ['delete', 'table', 'ip', guard]).catch(() => undefined);
  };
  const undo = onCleanup(`docker network ${name}`, remove);
  const tried: string[] = [];
  for (const subnet of subnets) {
    const r = await docker(['network', 'create', '--driver', 'bridge', '--internal', '--subnet', subnet, '--label', label, name]);
    if (r.code === 0) {
      try {
        await guardSubnet(guard, subnet);
      } catch (e) {
        await remove();
        undo();
        throw e;
      }
      log(`made docker network ${name} (bridge, internal, ${subnet}; nothing from it is forwarded off it: nftables table ${guard})`);
      return {
        name,
        subnet,
        remove: async () => {
          await remove();
          undo();
        },
      };
    }
    tried.push(`${subnet}: ${oneLine(r.stderr || r.stdout)}`);
    if (!/overlap/i.test(r.stderr)) break;
  }
  undo();
  throw new Error(`docker network create --driver bridge --internal ${name}: ${tried.join('; ')}`);
}

/** guardSubnet loads table `table`: the host forwards nothing from `subnet` (one of benchSubnets') to an address outside it. */
async function guardSubnet(table: string, subnet: string): Promise<void> {
  if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}\.0\/24$/.test(subnet)) throw new Error(`not a bench subnet: ${subnet}`);
  const text = `table ip ${table} {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ip saddr ${subnet} ip daddr != ${subnet} drop\n  }\n}\n`;
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    const p = spawn('/usr/sbin/nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d) => (stderr += d));
    p.on('error', (e) => resolve({ code: -1, stderr: e.message }));
    p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
    p.stdin!.end(text);
  });
  if (r.code !== 0) throw new Error(`could not guard the bench network ${subnet} (nft: ${oneLine(r.stderr)}); not running containers on it`);
}

/** benchSubnets: /24s from a.b.c.0 on, n of them, for benchNetwork to choose from. */
export function benchSubnets(first: string, n: number): string[] {
  const [a, b, c] = first.split('.').map(Number) as [number, number, number];
  return Array.from({ length: n }, (_, i) => `${a}.${b}.${c + i}.0/24`).filter((_, i) => c + i <= 255);
}

/** removeNetworksByLabel removes every Docker network carrying the label filter (what a killed run left). */
export async function removeNetworksByLabel(label: string): Promise<void> {
  const ids = (await docker(['network', 'ls', '-q', '--filter', `label=${label}`])).stdout.split('\n').filter(Boolean);
  if (ids.length) await docker(['network', 'rm', ...ids]);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export const now = () => performance.now();

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** percentile by nearest rank: p95 of 20 samples is the 19th smallest, p99 of 500 the 495th (NaN for none). */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** secs formats milliseconds as seconds with 3 decimals ("n/a" for NaN). */
export function secs(ms: number): string {
  return Number.isFinite(ms) ? (ms / 1000).toFixed(3) : 'n/a';
}

export function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : 'n/a';
}

/** pool runs fn over items with at most `concurrency` in flight; rejects with the first error after all settle. */
export async function pool<T, R>(items: T[], concurrency: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let firstErr: unknown;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        firstErr ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  if (firstErr !== undefined) throw firstErr;
  return out;
}

/** waitFor polls check until it returns a value other than undefined, or throws after timeoutMs. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, o: { timeoutMs: number; everyMs: number }): Promise<T> {
  const deadline = Date.now() + o.timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${o.timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`);
    await sleep(o.everyMs);
  }
}

/** rssKiB reads VmRSS of a live process, undefined once it is gone. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** rssSplitKiB: a live process's resident memory of its own (RssAnon) and mapped from files (RssFile: the node binary and libraries, shared with every process that maps them). */
export function rssSplitKiB(pid: number): { anon: number; file: number } | undefined {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st)?.[1] ?? NaN);
    return { anon: kib('RssAnon'), file: kib('RssFile') };
  } catch {
    return undefined;
  }
}

/** cpuMs is user+system CPU time of a live process in milliseconds; with `tid`, of that one thread of it. */
export function cpuMs(pid: number, tid?: number): number | undefined {
  try {
    const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is state (field 3); utime is field 14, stime 15.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/** pidOfComm finds the first process whose comm equals name (read-only, for reporting). */
export function pidOfComm(name: string): number | undefined {
  let dirs: string[];
  try {
    dirs = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const d of dirs) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === name) return Number(d);
    } catch {
      /* gone */
    }
  }
  return undefined;
}

/** Sampler records peak RSS and CPU time of a process every intervalMs between start() and stop(). */
export class Sampler {
  private timer?: NodeJS.Timeout;
  peakKiB = 0;
  private cpu0 = 0;
  cpuUsedMs = NaN;
  constructor(
    private readonly pid: number,
    private readonly intervalMs = 200,
  ) {}
  start(): void {
    this.peakKiB = rssKiB(this.pid) ?? 0;
    this.cpu0 = cpuMs(this.pid) ?? NaN;
    this.timer = setInterval(() => {
      const r = rssKiB(this.pid);
      if (r !== undefined && r > this.peakKiB) this.peakKiB = r;
    }, this.intervalMs);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const r = rssKiB(this.pid);
    if (r !== undefined && r > this.peakKiB) this.peakKiB = r;
    const c = cpuMs(this.pid);
    this.cpuUsedMs = c !== undefined ? c - this.cpu0 : NaN;
  }
}

/** containerTimes reads Created and State.StartedAt of containers (epoch ms) for a phase breakdown. */
export async function containerTimes(ids: string[]): Promise<{ created: number; started: number }[]> {
  const out: { created: number; started: number }[] = [];
  for (let i = 0; i < ids.length; i += 100) {
    const r = await docker(['inspect', '--format', '{{.Created}} {{.State.StartedAt}}', ...ids.slice(i, i + 100)]);
    for (const line of r.stdout.split('\n')) {
      const [c, s] = line.trim().split(' ');
      if (!c || !s) continue;
      out.push({ created: Date.parse(c), started: Date.parse(s) });
    }
  }
  return out;
}

/** BATON_BIN is bin/baton.js of this checkout (the bench scripts run from dist/bench/). */
export const BATON_BIN = fileURLToPath(new URL('../../bin/baton.js', import.meta.url));

export interface BatonChild {
  child: ChildProcess;
  /** The first capture group of each `ready` pattern, in order. */
  matches: string[];
  stderrTail: () => string;
}

/**
 * LARGE_CLUSTER_ARGS are the server flags of a bench with thousands of
 * nodes: the default cluster CIDR (10.42.0.0/16, a /24 each) holds 256
 * nodes, and registration past that is refused. 10.42.0.0/15 in /28s holds
 * 8,192, staying next to the default rather than claiming all of 10/8
 * (simulated nodes plumb nothing, but a range is a claim on the network);
 * it covers the default service CIDR (10.43.0.0/16), so VIPs come from
 * 10.44.0.0/16 instead.
 */
export const LARGE_CLUSTER_ARGS = ['--cluster-cidr', '10.42.0.0/15', '--node-cidr-size', '28', '--service-cidr', '10.44.0.0/16'];

/**
 * spawnBaton runs `node [nodeArgs] bin/baton.js args` and waits (up to 60 s)
 * until its stdout has matched every `ready` pattern; it rejects with the
 * output when the process exits first. stderr is kept as a tail for errors.
 */
export async function spawnBaton(args: string[], o: { env: Record<string, string>; ready: RegExp[]; what: string; nodeArgs?: string[]; timeoutMs?: number; spawned?: (child: ChildProcess) => void }): Promise<BatonChild> {
  log(`starting ${o.what}: node ${[...(o.nodeArgs ?? []), BATON_BIN, ...args].join(' ')}`);
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), BATON_BIN, ...args], { cwd: fileURLToPath(new URL('../..', import.meta.url)), env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  // At once, before it is up: a bench interrupted meanwhile must still stop it.
  o.spawned?.(child);
  let tail = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => {
    tail = (tail + s).slice(-8000);
  });
  const matches = await new Promise<string[]>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGTERM'); // by its PID; it never came up
      reject(new Error(`${o.what} was not up within ${(o.timeoutMs ?? 60_000) / 1000} s; stdout:\n${out}\nstderr:\n${tail}`));
    }, o.timeoutMs ?? 60_000);
    const done = (f: () => void) => {
      clearTimeout(timer);
      f();
    };
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => {
      out += s;
      const ms = o.ready.map((r) => r.exec(out));
      if (ms.every(Boolean)) done(() => resolve(ms.map((m) => m![1]!)));
    });
    child.once('exit', (code, sig) => done(() => reject(new Error(`${o.what} exited (${code ?? sig}) before it was up; stdout:\n${out}\nstderr:\n${tail}`))));
    child.once('error', (e) => done(() => reject(e)));
  });
  child.stdout!.resume(); // keep draining
  return { child, matches, stderrTail: () => tail };
}

// ---------------------------------------------------------------- cleanup on exit / Ctrl-C

const cleanups: { name: string; fn: () => Promise<void> }[] = [];
let interrupted = false;

/** onCleanup registers something to undo at the end (or on Ctrl-C), newest first; the returned function unregisters it. */
export function onCleanup(name: string, fn: () => Promise<void>): () => void {
  const entry = { name, fn };
  cleanups.push(entry);
  return () => {
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

export async function runCleanups(): Promise<void> {
  while (cleanups.length) {
    const c = cleanups.pop()!;
    try {
      await c.fn();
    } catch (e) {
      log(`cleanup ${c.name} failed: ${(e as Error).message}`);
    }
  }
}

/**
 * cleanUpOnSignals makes SIGINT/SIGTERM run the cleanups, then remove every
 * container with `labels`, then exit 130. Leftovers go one by one: they may
 * sit on a user-defined network (see removeContainers).
 */
export function cleanUpOnSignals(labels: string[]): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupted) return;
      interrupted = true;
      log(`${sig}: cleaning up`);
      runCleanups()
        .then(() => removeByLabel(labels, { oneByOne: true }))
        .finally(() => process.exit(130));
    });
  }
}

export function wasInterrupted(): boolean {
  return interrupted;
}

export function checkInterrupted(): void {
  if (interrupted) throw new Error('interrupted');
}

/** BenchServer is a `baton server` a bench started, with an admin client over TLS to it. */
export interface BenchServer extends BatonChild {
  url: string;
  joinToken: string;
  clusterId: string;
  api: ApiClient;
  tls: ReturnType<typeof tlsTransport>;
}

/** startBenchServer starts `baton server` with its data under `dir` (BATON_HOME=dir) on a free port, with more flags `args` (address ranges), and makes an admin client. */
export async function startBenchServer(dir: string, args: readonly string[] = []): Promise<BenchServer> {
  const server = await spawnBaton(['server', '--data-dir', join(dir, 'server'), '--listen', '127.0.0.1:0', '--log-level', 'warn', ...args], {
    env: { BATON_HOME: dir },
    ready: [/baton server listening on (https:\/\/\S+)/, /join token: (BATON-\S+)/, /^cluster (\S+)$/m],
    what: 'baton server',
  });
  const [url, joinToken, clusterId] = server.matches as [string, string, string];
  const serverDir = join(dir, 'server', 'server');
  const tls = tlsTransport({ caPem: readFileSync(join(serverDir, 'ca.crt'), 'utf8') });
  const api = new ApiClient(withTransport({ server: url, token: readFileSync(join(serverDir, 'admin.token'), 'utf8').trim(), timeoutMs: 30_000 }, tls));
  log(`baton server is up at ${url} (pid ${server.child.pid}, cluster ${clusterId})`);
  return { ...server, url, joinToken, clusterId, api, tls };
}

/** oneLine squeezes a command's output into one line for a log message. */
export const oneLine = (s: string) => s.trim().replace(/\s+/g, ' ');

/** stopChild stops a process this bench started, by its PID: SIGTERM, then SIGKILL after graceMs. */
export async function stopChild(c: ChildProcess, what: string, graceMs = 10_000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return;
  log(`stopping ${what} (SIGTERM pid ${c.pid})`);
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const ok = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!ok) {
    log(`${what} pid ${c.pid} did not exit within ${graceMs / 1000} s; SIGKILL`);
    c.kill('SIGKILL');
    await Promise.race([exited, sleep(5_000)]);
  }
}

/** outputTail keeps the last 4,000 characters a child wrote to stdout and stderr, for error messages. */
export function outputTail(child: ChildProcess): () => string {
  let tail = '';
  const keep = (s: string) => (tail = (tail + s).slice(-4000));
  for (const st of [child.stdout, child.stderr]) {
    st?.setEncoding('utf8');
    st?.on('data', keep);
  }
  return () => tail;
}

/** BenchAgent is a `baton agent` process a bench started. */
export interface BenchAgent {
  name: string;
  address: string;
  child: ChildProcess;
  tail: () => string;
}

/**
 * CONFINED_AGENT_ARGS keep a bench's tasks on this machine: tasks run in
 * namespaces of their own by default, and an agent's defaults would give
 * them a masqueraded route off the machine (--egress nat) and forward names
 * outside the cluster to the node's resolvers. A bench's tasks talk only to
 * each other, the node and loopback clients.
 */
export const CONFINED_AGENT_ARGS = ['--egress', 'none', '--dns-upstream', 'none'];

/**
 * spawnBenchAgent starts `baton agent` joining `url`, with its data under
 * dir/<name> (BATON_HOME=dir), confined (CONFINED_AGENT_ARGS) unless a.args
 * says otherwise. For A/B runs of V8 settings, BENCH_AGENT_NODE_ARGS (node
 * flags, space-separated, before the script) and BENCH_AGENT_NODE_OPTIONS
 * (the agent's NODE_OPTIONS) apply to every agent a bench starts.
 */
export function spawnBenchAgent(a: { name: string; address: string; args?: string[] }, portRange: string, url: string, token: string, dir: string): BenchAgent {
  const nodeArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const nodeOptions = process.env.BENCH_AGENT_NODE_OPTIONS;
  const args = [BATON_BIN, 'agent', '--join', url, '--token', token, '--name', a.name, '--address', a.address, '--port-range', portRange, '--data-dir', join(dir, a.name), '--pull', 'never', '--log-level', 'warn', ...CONFINED_AGENT_ARGS, ...(a.args ?? [])];
  log(`starting baton agent ${a.name}: ${nodeOptions ? `NODE_OPTIONS=${nodeOptions} ` : ''}node ${[...nodeArgs, ...args].join(' ')}`);
  const env = { ...process.env, BATON_HOME: dir, ...(nodeOptions !== undefined ? { NODE_OPTIONS: nodeOptions } : {}) };
  const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: fileURLToPath(new URL('../..', import.meta.url)), env, stdio: ['ignore', 'pipe', 'pipe'] });
  return { name: a.name, address: a.address, child, tail: outputTail(child) };
}

/**
 * dropAgentTables deletes the nftables tables (the mesh's kernel path) of these
 * agents of a cluster: an agent removes its own when it stops, one killed
 * with SIGKILL leaves it behind. Missing tables are fine.
 */
export async function dropAgentTables(nodes: readonly string[], clusterId: string | undefined): Promise<void> {
  if (!clusterId) return;
  for (const n of nodes) {
    const t = tableName(n, clusterId);
    const r = await exec('/usr/sbin/nft', ['delete', 'table', 'ip', t]).catch(() => undefined);
    if (r?.code === 0) log(`agent ${n} left its nftables table ${t}; deleted it`);
  }
}

/**
 * removeNodeNetworks deletes the task networks (bridge and mapping tables) of
 * these nodes of a cluster: an agent leaves them up when it stops, so that
 * its tasks run on. Call it once the cluster's containers are gone; missing
 * ones are fine.
 */
export async function removeNodeNetworks(nodes: readonly string[], clusterId: string | undefined): Promise<void> {
  if (!clusterId) return;
  for (const n of nodes) {
    await deleteBridge(ifName('bt', `${clusterId}/${n}`));
    // The mapping table has an ip family half and, with isolation, a bridge family half.
    for (const family of ['ip', 'bridge']) await exec('/usr/sbin/nft', ['delete', 'table', family, netTableName(n, clusterId)]).catch(() => undefined);
  }
}

/**
 * stackServices reads a Compose text of the stack `stack` (relative paths
 * from dir) into the services an apply takes; it throws with the errors and
 * the text when the text is wrong.
 */
export function stackServices(text: string, stack: string, dir: string) {
  const r = readCompose(text, { fileName: join(dir, `${stack}.yaml`), baseDir: dir, env: {}, stack });
  if (r.errors.length) throw new Error(`compose for ${stack}: ${r.errors.map((e) => JSON.stringify(e)).join('; ')}\n${text}`);
  return r.services.map((s) => ({ name: s.name, spec: s.spec, labels: s.labels }));
}

/**
 * waitContainersGone waits (every 250 ms, up to timeoutMs, 60 s by default)
 * until no container carrying every label is left (runningOnly: none
 * running), e.g. while a system removes a service's containers itself; when
 * the time is up it logs a warning and force-removes them. Returns how long
 * it took in ms.
 */
export async function waitContainersGone(what: string, labels: string[], o: { timeoutMs?: number; runningOnly?: boolean } = {}): Promise<number> {
  const t0 = now();
  try {
    await waitFor(what, async () => ((await containerIds(labels, !o.runningOnly)).length === 0 ? true : undefined), { timeoutMs: o.timeoutMs ?? 60_000, everyMs: 250 });
  } catch (e) {
    log(`warning: ${(e as Error).message}; force-removing`);
    await removeByLabel(labels);
  }
  return now() - t0;
}

// ---------------------------------------------------------------- a Baton cluster on this machine

/** An agent a BenchCluster starts: its node name, its own 127.0.0.x address, its host port range and extra `baton agent` flags. */
export interface AgentSpec {
  name: string;
  address: string;
  portRange: string;
  args?: string[];
}

/**
 * BenchCluster is the Baton cluster a bench runs on this machine: one `baton
 * server` (startServer) and `baton agent` processes (startAgent), with all
 * their data under one temp dir (BATON_HOME). The constructor makes the dir
 * and registers the teardown with onCleanup, so Ctrl-C tears the cluster
 * down too; call stop(ok) in a finally. Only processes the cluster started
 * (and those given to track) are stopped, by their PIDs.
 */
export class BenchCluster {
  readonly dir: string;
  readonly agents: BenchAgent[] = [];
  server?: BenchServer;
  private readonly procs: { child: ChildProcess; what: string }[] = [];
  private readonly undo: () => void;
  private tearing?: Promise<void>;

  /** tmpPrefix names the temp dir (under the OS's); stopGraceMs is how long a process gets after SIGTERM before SIGKILL; serverArgs are more `baton server` flags (address ranges). */
  constructor(
    tmpPrefix: string,
    private readonly stopGraceMs = 15_000,
    private readonly serverArgs: readonly string[] = [],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), tmpPrefix));
    this.undo = onCleanup('baton cluster', () => this.teardown());
  }

  /** startServer starts `baton server` (startBenchServer) and makes an admin client to it. */
  async startServer(): Promise<BenchServer> {
    this.server = await startBenchServer(this.dir, this.serverArgs);
    this.track(this.server.child, 'baton server');
    return this.server;
  }

  /** startAgent starts a `baton agent` joining the server, with its data under dir/<name> (spawnBenchAgent). */
  startAgent(a: AgentSpec): BenchAgent {
    if (!this.server) throw new Error(`agent ${a.name}: start the server first`);
    const p = spawnBenchAgent(a, a.portRange, this.server.url, this.server.joinToken, this.dir);
    this.agents.push(p);
    this.track(p.child, `baton agent ${a.name}`);
    return p;
  }

  /** track adds another process of the bench (e.g. HAProxy) that the teardown stops with the cluster's, newest first. */
  track(child: ChildProcess, what: string): void {
    this.procs.push({ child, what });
  }

  /** agentsAlive throws, with the agent's output tail, once one of the agents has exited. */
  agentsAlive(): void {
    for (const a of this.agents) if (a.child.exitCode !== null || a.child.signalCode !== null) throw new Error(`agent ${a.name} exited (${a.child.exitCode ?? a.child.signalCode}): ${a.tail()}`);
  }

  /** waitReady waits (up to 60 s) until every agent's node is Ready (with agentPort: and reports its agent listener's port); it fails at once when an agent exits. */
  async waitReady(o: { agentPort?: boolean } = {}): Promise<void> {
    const api = this.server!.api;
    const names = this.agents.map((a) => a.name);
    await waitFor(
      names.length === 1 ? `node ${names[0]} Ready` : `${names.length} nodes Ready`,
      async () => {
        this.agentsAlive();
        const ready = (await api.nodes()).items.filter((n) => n.status.state === 'ready' && (!o.agentPort || n.status.agentPort)).map((n) => n.metadata.name);
        return names.every((n) => ready.includes(n)) ? true : undefined;
      },
      { timeoutMs: 60_000, everyMs: 200 },
    );
    log(`${this.agents.map((a) => `${a.name} (${a.address})`).join(', ')} ${names.length === 1 ? 'is' : 'are'} Ready`);
  }

  /** stop tears the cluster down; when the bench failed (ok false) other than by Ctrl-C it first logs the server's and agents' output tails. */
  async stop(ok: boolean): Promise<void> {
    if (!ok && !wasInterrupted()) {
      if (this.server) log(`baton server stderr tail:\n${this.server.stderrTail()}`);
      for (const a of this.agents) log(`baton agent ${a.name} output tail:\n${a.tail()}`);
    }
    await this.teardown();
    this.undo();
  }

  /**
   * teardown runs once, whether stop or Ctrl-C's cleanups ask first (or
   * both): it stops the processes newest first, closes the admin client,
   * deletes the nftables tables (the mesh's kernel path) of agents that could
   * not remove their own (killed with SIGKILL), removes the cluster's
   * containers (agents leave them running when they stop) and the temp dir.
   */
  private teardown(): Promise<void> {
    this.tearing ??= (async () => {
      for (const p of [...this.procs].reverse()) await stopChild(p.child, p.what, this.stopGraceMs).catch((e) => log(`stopping ${p.what}: ${(e as Error).message}`));
      await this.server?.tls.close().catch(() => undefined);
      const clusterId = this.server?.clusterId;
      await dropAgentTables(this.agents.map((a) => a.name), clusterId);
      if (clusterId) {
        const n = await removeByLabel([`baton.cluster=${clusterId}`]);
        if (n) log(`removed ${n} container(s) of baton cluster ${clusterId}`);
      }
      await removeNodeNetworks(this.agents.map((a) => a.name), clusterId);
      rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.tearing;
  }
}

// ---------------------------------------------------------------- a throw-away Docker Swarm

/** swarmState is the engine's Swarm.LocalNodeState: inactive, active, pending, error or locked. */
export async function swarmState(): Promise<string> {
  return (await dockerOk(['info', '--format', '{{.Swarm.LocalNodeState}}'])).trim();
}

/** OwnSwarm is a single-node swarm this bench created (initSwarm). */
export interface OwnSwarm {
  /** `docker swarm init failed: <why>` when it failed (then there is no swarm to use; leave() still undoes a half-made one). */
  error?: string;
  /** leave runs `docker swarm leave --force` (once) if the engine joined a swarm by this bench's init, and removes docker_gwbridge if the init made it. */
  leave(): Promise<void>;
}

/**
 * initSwarm makes the engine, which must be in no swarm (swarmState()
 * 'inactive'), a throw-away single-node swarm on loopback: `docker swarm
 * init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377`. Its leave
 * is registered with onCleanup before the init runs, so Ctrl-C leaves it
 * too. A failed init that left the engine half in a swarm is left as well:
 * this bench caused it. It never leaves a swarm it did not create.
 */
export async function initSwarm(): Promise<OwnSwarm> {
  let weInit = false;
  let gwBridgeExisted = true;
  const leaveIfOurs = async () => {
    if (!weInit) return;
    weInit = false;
    log('leaving the throw-away swarm (docker swarm leave --force)');
    const r = await docker(['swarm', 'leave', '--force'], { timeoutMs: 120_000 });
    if (r.code !== 0) log(`warning: docker swarm leave --force: ${oneLine(r.stderr)}`);
    if (!gwBridgeExisted && (await docker(['network', 'inspect', 'docker_gwbridge'])).code === 0) {
      const rm = await docker(['network', 'rm', 'docker_gwbridge']);
      if (rm.code !== 0) log(`warning: docker network rm docker_gwbridge: ${oneLine(rm.stderr)}`);
    }
  };
  const undo = onCleanup('swarm leave', leaveIfOurs);
  const leave = async () => {
    await leaveIfOurs();
    undo();
  };
  gwBridgeExisted = (await docker(['network', 'inspect', 'docker_gwbridge'])).code === 0;
  log('docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377');
  const init = await docker(['swarm', 'init', '--advertise-addr', '127.0.0.1', '--listen-addr', '127.0.0.1:2377'], { timeoutMs: 120_000 });
  // Even a failed init may leave the engine half in a swarm: we caused it, so we leave it.
  if ((await swarmState().catch(() => 'unknown')) !== 'inactive') weInit = true;
  if (init.code !== 0) {
    const error = `docker swarm init failed: ${oneLine(init.stderr) || oneLine(init.stdout)}`;
    log(`swarm: ${error}`);
    return { error, leave };
  }
  weInit = true;
  return { leave };
}

/** ThrowAwaySwarm is what throwAwaySwarm gives a bench. */
export interface ThrowAwaySwarm {
  /** Why there is no swarm to measure (the engine is already in one, in another state, or the init failed); unset when the bench has its own. */
  unavailable?: string;
  /** removeService removes one of the bench's services if it is there, waits (up to 60 s) for its containers to go and force-removes what is left. */
  removeService(name: string): Promise<void>;
  /** close removes the bench's services, then leaves the swarm if this bench created it. Call it in a finally; Ctrl-C does the same. */
  close(): Promise<void>;
}

/**
 * throwAwaySwarm gives a bench a single-node swarm of its own (initSwarm)
 * for its `services`, whose containers carry `label`. An engine already in
 * a swarm is never used nor left: `unavailable` then says so (by default
 * "skipped (engine already in a swarm)", else `alreadyInSwarm`), and close()
 * only removes services of the bench's names from it; `unavailable` also
 * says why for another swarm state or a failed init. Call it before the try
 * whose finally calls close(): it throws only when `docker info` fails, and
 * then has changed nothing. Ctrl-C removes the services, then leaves the
 * swarm.
 */
export async function throwAwaySwarm(o: { label: string; services: string[]; alreadyInSwarm?: string }): Promise<ThrowAwaySwarm> {
  const state = await swarmState();
  const removeService = async (svc: string) => {
    if ((await swarmState().catch(() => 'unknown')) !== 'active') return;
    const ls = await docker(['service', 'ls', '-q', '--filter', `name=${svc}`]);
    if (!ls.stdout.trim()) return;
    log(`docker service rm ${svc}`);
    const r = await docker(['service', 'rm', svc], { timeoutMs: 60_000 });
    if (r.code !== 0) log(`warning: docker service rm ${svc}: ${oneLine(r.stderr)}`);
    await waitContainersGone(`swarm containers of ${svc} gone`, [o.label, `com.docker.swarm.service.name=${svc}`]);
  };
  const removeServices = async () => {
    for (const svc of o.services) await removeService(svc);
  };
  let own: OwnSwarm | undefined;
  let unavailable: string | undefined;
  if (state === 'active') unavailable = o.alreadyInSwarm ?? 'skipped (engine already in a swarm)';
  else if (state !== 'inactive') unavailable = `skipped (engine swarm state is "${state}")`;
  else {
    own = await initSwarm();
    unavailable = own.error;
  }
  // Registered after initSwarm's leave, so Ctrl-C's cleanups (newest first) remove the services before leaving the swarm.
  const undo = onCleanup('swarm services', removeServices);
  return {
    unavailable,
    removeService,
    close: async () => {
      await removeServices();
      undo();
      await own?.leave();
    },
  };
}

// ---------------------------------------------------------------- start, summary and end of a bench

/** machineInfo is what the summary's `machine` line says: CPUs, dockerd's version, kernel and node. */
export async function machineInfo(): Promise<Record<string, string>> {
  const v = await docker(['version', '--format', '{{.Server.Version}}']);
  return { nproc: String(availableParallelism()), dockerd: v.code === 0 ? v.stdout.trim() : 'unknown', kernel: release(), node: process.version };
}

/** keyValues formats a record as `k=v k=v` (the machine line, counts per node). */
export const keyValues = (r: Record<string, string | number>) => Object.entries(r).map(([k, v]) => `${k}=${v}`).join(' ');

/** reportHeader is the summary's first lines: a blank one, `# bench:<name>  (<now>, bench id <id>[, took <s> s])` and `machine k=v ...`. */
export function reportHeader(name: string, benchId: string, machine: Record<string, string>, tookMs?: number): string[] {
  return ['', `# bench:${name}  (${new Date().toISOString()}, bench id ${benchId}${tookMs === undefined ? '' : `, took ${secs(tookMs)} s`})`, `machine ${keyValues(machine)}`];
}

/** requireImage throws unless the image is present locally: the benches never pull. */
export async function requireImage(image: string): Promise<void> {
  const img = await docker(['image', 'inspect', '--format', '{{.Id}}', image]);
  if (img.code !== 0) throw new Error(`image ${image} is not present locally (this bench never pulls): ${oneLine(img.stderr)}`);
}

/** ignoreBatonTimings drops BATON_TIMINGS from this process's environment, saying so: the Baton processes a bench starts then run with the default timings. */
export function ignoreBatonTimings(): void {
  if (process.env.BATON_TIMINGS === undefined) return;
  log(`ignoring BATON_TIMINGS=${process.env.BATON_TIMINGS}: this bench measures Baton's default timings`);
  delete process.env.BATON_TIMINGS;
}

/**
 * failure logs that `what` failed, with the stack, and returns why as one
 * line of at most maxLen characters, for the summary. After Ctrl-C it
 * rethrows e instead, so that the bench stops.
 */
export function failure(what: string, e: unknown, maxLen = 400): string {
  if (wasInterrupted()) throw e;
  log(`${what} failed: ${(e as Error).stack ?? e}`);
  return oneLine((e as Error).message).slice(0, maxLen);
}

/** cleanUpAll runs the cleanups still registered, then removes every container left with the labels (saying how many), one by one (see cleanUpOnSignals). */
export async function cleanUpAll(labels: string[]): Promise<void> {
  await runCleanups();
  const left = await removeByLabel(labels, { oneByOne: true }).catch(() => 0);
  if (left) log(`removed ${left} leftover container(s) labelled ${labels.join(', ')}`);
}

/**
 * runMain runs a bench's main and exits with the code it returns. When main
 * throws, it logs why, runs the cleanups, removes the containers with the
 * labels and exits 1; with signalExits, a throw after Ctrl-C is left to
 * cleanUpOnSignals' handler, which does the same and exits 130.
 */
export function runMain(main: () => Promise<number>, labels: string[], o: { signalExits?: boolean } = {}): void {
  main().then(
    (code) => process.exit(code),
    async (e) => {
      if (o.signalExits && wasInterrupted()) return;
      log(`bench failed: ${(e as Error).stack ?? e}`);
      await runCleanups();
      await removeByLabel(labels, { oneByOne: true }).catch(() => undefined);
      process.exit(1);
    },
  );
}
