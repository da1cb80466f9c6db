/**
 * Small helpers shared by the benches: running the docker CLI, timing,
 * medians, a bounded worker pool, /proc sampling of a process, and starting
 * a `baton` process and waiting until it says it is up.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { ApiClient } from '../src/api/client.js';
import { tlsTransport, withTransport } from '../src/api/tls.js';
import { tableName } from '../src/agent/nft.js';

export const DOCKER = '/usr/bin/docker';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** exec runs a program without a shell and never throws on a non-zero exit: the caller decides. */
export function exec(file: string, args: string[], o: { timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: o.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
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

/** removeContainers force-removes containers in batches; returns how many it asked to remove. */
export async function removeContainers(ids: string[]): Promise<number> {
  for (let i = 0; i < ids.length; i += 50) {
    const r = await docker(['rm', '-f', ...ids.slice(i, i + 50)], { timeoutMs: 300_000 });
    if (r.code !== 0 && !/No such container/i.test(r.stderr)) log(`warning: docker rm -f: ${r.stderr.trim()}`);
  }
  return ids.length;
}

/** removeByLabel force-removes every container carrying the label filters. */
export async function removeByLabel(labels: string[]): Promise<number> {
  return removeContainers(await containerIds(labels));
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

/** cpuMs is user+system CPU time of a live process in milliseconds. */
export function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
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
 * spawnBaton runs `node [nodeArgs] bin/baton.js args` and waits (up to 60 s)
 * until its stdout has matched every `ready` pattern; it rejects with the
 * output when the process exits first. stderr is kept as a tail for errors.
 */
export async function spawnBaton(args: string[], o: { env: Record<string, string>; ready: RegExp[]; what: string; nodeArgs?: string[]; timeoutMs?: number }): Promise<BatonChild> {
  log(`starting ${o.what}: node ${[...(o.nodeArgs ?? []), BATON_BIN, ...args].join(' ')}`);
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), BATON_BIN, ...args], { cwd: fileURLToPath(new URL('../..', import.meta.url)), env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
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

/** cleanUpOnSignals makes SIGINT/SIGTERM run the cleanups, then remove every container with `labels`, then exit 130. */
export function cleanUpOnSignals(labels: string[]): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupted) return;
      interrupted = true;
      log(`${sig}: cleaning up`);
      runCleanups()
        .then(() => removeByLabel(labels))
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

/** startBenchServer starts `baton server` with its data under `dir` (BATON_HOME=dir) on a free port, and makes an admin client. */
export async function startBenchServer(dir: string): Promise<BenchServer> {
  const server = await spawnBaton(['server', '--data-dir', join(dir, 'server'), '--listen', '127.0.0.1:0', '--log-level', 'warn'], {
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
  child: ChildProcess;
  tail: () => string;
}

/** spawnBenchAgent starts `baton agent` joining `url`, with its data under dir/<name> (BATON_HOME=dir). */
export function spawnBenchAgent(a: { name: string; address: string; args?: string[] }, portRange: string, url: string, token: string, dir: string): BenchAgent {
  const args = [BATON_BIN, 'agent', '--join', url, '--token', token, '--name', a.name, '--address', a.address, '--port-range', portRange, '--data-dir', join(dir, a.name), '--pull', 'never', '--log-level', 'warn', ...(a.args ?? [])];
  log(`starting baton agent ${a.name}: node ${args.join(' ')}`);
  const child = spawn(process.execPath, args, { cwd: fileURLToPath(new URL('../..', import.meta.url)), env: { ...process.env, BATON_HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  return { name: a.name, child, tail: outputTail(child) };
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
