/**
 * Helpers for end-to-end tests: real `baton` processes, real dockerd.
 * Every process is started here and stopped by PID; every container the
 * cluster makes carries its cluster id label and is removed in cleanup.
 */
import { get as httpGet } from 'node:http';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin/baton.js');
export const TEST_IMAGE = 'baton-test/busybox:latest';
const pexec = promisify(execFile);

export interface Proc {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * startProc runs `baton <args>`; `wrap` turns its argument vector into
 * another that runs it (inside a network namespace, say), which must exec
 * it rather than fork, so that the PID stopProc signals is baton's own.
 */
export function startProc(args: string[], env: Record<string, string>, wrap?: (argv: string[]) => string[]): Proc {
  const [cmd, ...argv] = (wrap ?? ((a) => a))([process.execPath, BIN, ...args]);
  const child = spawn(cmd!, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  child.stdout!.on('data', (d) => (buf += d));
  child.stderr!.on('data', (d) => (buf += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, output: () => buf, exited };
}

export async function waitOutput(p: Proc, re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const m = re.exec(p.output());
    if (m) return m;
    if (p.child.exitCode !== null) throw new Error(`process exited (${p.child.exitCode}) before printing ${re}:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${re}:\n${p.output()}`);
}

export async function stopProc(p: Proc, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  await p.exited;
}

export async function baton(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await pexec(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 256 * 1024 * 1024 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** docker runs the docker CLI against the shared engine, or the engine at `host` (unix://…). */
export async function docker(args: string[], host?: string): Promise<string> {
  const r = await pexec('docker', [...(host ? ['-H', host] : []), ...args], { timeout: 60_000 });
  return r.stdout.trim();
}

import { removeClusterNetworks } from './net.js';

export async function removeClusterContainers(clusterId: string, host?: string): Promise<void> {
  if (!clusterId) return;
  // An agent (or the engine) may be removing some of them at the same moment ("no such container", "removal already
  // in progress"): list again until none is left, a few times.
  for (let attempt = 0; ; attempt++) {
    const ids = (await docker(['ps', '-aq', '--filter', `label=baton.cluster=${clusterId}`], host)).split('\n').filter(Boolean);
    if (ids.length === 0) break;
    const err = await docker(['rm', '-f', '-v', ...ids], host).then(() => undefined, (e: Error) => e);
    if (!err) break;
    if (attempt >= 5) throw err;
    await new Promise((r) => setTimeout(r, 500));
  }
  // Its agents left their task networks up for their tasks: they go with them.
  await removeClusterNetworks(clusterId);
  // Named volumes its nodes made carry its label too (a StatefulSet's per ordinal, say).
  const volumes = (await docker(['volume', 'ls', '-q', '--filter', `label=baton.cluster=${clusterId}`], host)).split('\n').filter(Boolean);
  if (volumes.length) await docker(['volume', 'rm', '-f', ...volumes], host).catch(() => {});
  // Images its nodes built (Compose build:) carry its label.
  const images = (await docker(['images', '-q', '--filter', `label=baton.cluster=${clusterId}`], host)).split('\n').filter(Boolean);
  if (images.length) await docker(['rmi', '-f', ...new Set(images)], host).catch(() => {});
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function cleanupDir(d: string): void {
  rmSync(d, { recursive: true, force: true });
}

export function writeFile(dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** eventually retries fn until it returns without throwing, or the deadline passes. */
export async function eventually<T>(fn: () => Promise<T>, timeoutMs: number, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      return await fn();
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw last;
}

/** taskContainers: a cluster's running task containers (pause containers left out), id → start time; a restart changes the time. */
export async function taskContainers(clusterId: string, host?: string): Promise<Map<string, string>> {
  const ids = (await docker(['ps', '-q', '--no-trunc', '--filter', `label=baton.cluster=${clusterId}`, '--filter', 'label=baton.task'], host)).split('\n').filter(Boolean);
  const out = new Map<string, string>();
  for (const id of ids) {
    const [started, pause] = (await docker(['inspect', '-f', '{{.State.StartedAt}} {{index .Config.Labels "baton.pause"}}', id], host)).trim().split(' ');
    if (!pause) out.set(id, started!);
  }
  return out;
}

/** A port range no other test file (or a Quick-start cluster on 20000-20999) uses. */
export function portRange(base: number): string {
  return `${base}-${base + 199}`;
}

/** freePort finds a TCP port free on 127.0.0.1 now (for a server that must come back on the same port). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

/** getOnce makes one HTTP GET on a connection of its own (no keep-alive); non-200 answers and timeouts reject. */
export function getOnce(url: string, timeoutMs = 5000, o: { lenient?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    // lenient: accept a bare LF after headers (busybox httpd passes CGI output through as written).
    const req = httpGet(url, { agent: false, timeout: timeoutMs, ...(o.lenient ? { insecureHTTPParser: true } : {}) }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}
