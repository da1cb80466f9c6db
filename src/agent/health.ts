/**
 * HealthMonitor runs a node's health checks and readiness probes itself, as
 * the kubelet runs probes, instead of waiting on the engine's runner (which
 * first probes only after a whole interval). Each probe runs right after its
 * task starts, then every interval (start_interval during start_period); a
 * failure during start_period counts only once the probe has passed. After
 * `retries` failures in a row it is failing; one pass makes it passing.
 *
 * - An HTTP probe GETs http://<node address>:<host port><path> (2xx and 3xx
 *   pass), a TCP probe connects, an exec probe runs in the container.
 * - At most `maxInFlight` probes run at once on the node, so a thousand
 *   tasks probing every second cannot swamp the engine.
 * - The monitor only observes: `onChange` tells the agent when a verdict
 *   changed, and the agent decides (report, restart).
 */
import { connect } from 'node:net';
import { request } from 'undici';
import type { Clock } from '../base/clock.js';
import type { HealthcheckSpec, TaskPortBinding } from '../api/types.js';
import type { Driver, ExecResult, TaskHandle } from './driver.js';

export interface ProbeTarget {
  handle: TaskHandle;
  image: string;
  /** The node's address: tasks run with host networking. */
  address: string;
  ports: readonly TaskPortBinding[];
}

/** Verdicts for one task: undefined until the probe has decided. */
export interface HealthVerdict {
  healthy?: boolean;
  ready?: boolean;
  /** The last failing probe's output, for the task's message. */
  output?: string;
}

interface ProbeState {
  spec: HealthcheckSpec;
  startedAt: number;
  passed: boolean;
  streak: number;
  verdict?: boolean;
  output?: string;
  cancel?: () => void;
}

interface Watched {
  key: string;
  target: ProbeTarget;
  live?: ProbeState;
  ready?: ProbeState;
  stopped: boolean;
}

/** OUTPUT_CHARS bounds the probe output kept for a message. */
const OUTPUT_CHARS = 200;

export class HealthMonitor {
  private readonly tasks = new Map<string, Watched>();
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly driver: Driver,
    private readonly clock: Clock,
    private readonly onChange: (task: string) => void,
    private readonly maxInFlight = 16,
  ) {}

  /**
   * watch starts probing a task's container, keyed by what identifies this
   * run of it (container id and start time): the same key again is a no-op,
   * a new key (the container restarted) starts over.
   */
  watch(task: string, key: string, probes: { live?: HealthcheckSpec; ready?: HealthcheckSpec }, target: ProbeTarget): void {
    const had = this.tasks.get(task);
    if (had?.key === key) return;
    if (had) this.stop(had);
    const now = this.clock.now();
    const w: Watched = { key, target, stopped: false };
    if (probes.live) w.live = { spec: probes.live, startedAt: now, passed: false, streak: 0 };
    if (probes.ready) w.ready = { spec: probes.ready, startedAt: now, passed: false, streak: 0 };
    this.tasks.set(task, w);
    for (const p of [w.live, w.ready]) if (p) void this.run(task, w, p);
  }

  unwatch(task: string): void {
    const w = this.tasks.get(task);
    if (!w) return;
    this.stop(w);
    this.tasks.delete(task);
  }

  verdict(task: string): HealthVerdict {
    const w = this.tasks.get(task);
    if (!w) return {};
    const failing = [w.live, w.ready].find((p) => p?.verdict === false);
    return {
      ...(w.live?.verdict !== undefined ? { healthy: w.live.verdict } : {}),
      ...(w.ready?.verdict !== undefined ? { ready: w.ready.verdict } : {}),
      ...(failing?.output ? { output: failing.output } : {}),
    };
  }

  close(): void {
    for (const w of this.tasks.values()) this.stop(w);
    this.tasks.clear();
  }

  private stop(w: Watched): void {
    w.stopped = true;
    w.live?.cancel?.();
    w.ready?.cancel?.();
  }

  private async run(task: string, w: Watched, p: ProbeState): Promise<void> {
    if (w.stopped) return;
    await this.slot();
    let r: ExecResult;
    try {
      r = w.stopped ? { exitCode: 0, output: '' } : await probeOnce(this.driver, p.spec, w.target);
    } catch (e) {
      r = { exitCode: -1, output: (e as Error).message };
    } finally {
      this.release();
    }
    if (w.stopped) return;
    const before = p.verdict;
    if (r.exitCode === 0) {
      p.passed = true;
      p.streak = 0;
      p.verdict = true;
      p.output = undefined;
    } else if (p.passed || this.clock.now() - p.startedAt >= p.spec.startPeriodMs) {
      // Failures during the start period do not count until the probe has passed once (Docker's rule).
      p.streak++;
      p.output = r.output.trim().slice(0, OUTPUT_CHARS) || `exit code ${r.exitCode}`;
      if (p.streak >= Math.max(1, p.spec.retries)) p.verdict = false;
    }
    if (p.verdict !== before) this.onChange(task);
    const starting = !p.passed && this.clock.now() - p.startedAt < p.spec.startPeriodMs && p.spec.startIntervalMs;
    const every = Math.max(1, starting ? p.spec.startIntervalMs! : p.spec.intervalMs || 30_000);
    p.cancel = this.clock.setTimeout(() => void this.run(task, w, p), every);
  }

  private async slot(): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.inFlight--;
  }
}

/** probeOnce runs one probe; any failure to run it counts as a failed probe. */
export async function probeOnce(driver: Driver, spec: HealthcheckSpec, t: ProbeTarget): Promise<ExecResult> {
  const timeoutMs = spec.timeoutMs > 0 ? spec.timeoutMs : 30_000;
  const hostPort = (port: number) => t.ports.find((p) => p.target === port)?.hostPort ?? port;
  if (spec.http) {
    const url = `http://${t.address}:${hostPort(spec.http.port)}${spec.http.path}`;
    if (driver.probe) return driver.probe(t.handle, { kind: 'http', what: url });
    return httpProbe(url, timeoutMs);
  }
  if (spec.tcp) {
    const port = hostPort(spec.tcp.port);
    if (driver.probe) return driver.probe(t.handle, { kind: 'tcp', what: `${t.address}:${port}` });
    return tcpProbe(t.address, port, timeoutMs);
  }
  let test = spec.test;
  if (test.length === 0) test = (await driver.imageHealthcheck(t.image)) ?? [];
  const cmd = test[0] === 'CMD' ? test.slice(1) : test[0] === 'CMD-SHELL' ? ['/bin/sh', '-c', test.slice(1).join(' ')] : undefined;
  if (!cmd || cmd.length === 0) return { exitCode: 0, output: '' };
  if (driver.probe) return driver.probe(t.handle, { kind: 'exec', what: cmd.join(' ') });
  return driver.exec(t.handle, cmd, timeoutMs);
}

async function httpProbe(url: string, timeoutMs: number): Promise<ExecResult> {
  try {
    const res = await request(url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs), headers: { 'user-agent': 'baton-probe' } });
    const body = (await res.body.text()).slice(0, OUTPUT_CHARS);
    const ok = res.statusCode >= 200 && res.statusCode < 400;
    return { exitCode: ok ? 0 : 1, output: ok ? '' : `GET ${url}: HTTP ${res.statusCode}${body ? ` ${body}` : ''}` };
  } catch (e) {
    const err = e as Error & { code?: string };
    return { exitCode: 1, output: `GET ${url}: ${err.name === 'TimeoutError' || err.code === 'UND_ERR_HEADERS_TIMEOUT' ? `no answer within ${timeoutMs} ms` : (err.code ?? err.message)}` };
  }
}

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (r: ExecResult) => {
      sock.destroy();
      resolve(r);
    };
    sock.setTimeout(timeoutMs, () => done({ exitCode: 1, output: `connect ${host}:${port}: no answer within ${timeoutMs} ms` }));
    sock.once('connect', () => done({ exitCode: 0, output: '' }));
    sock.once('error', (e: Error & { code?: string }) => done({ exitCode: 1, output: `connect ${host}:${port}: ${e.code ?? e.message}` }));
  });
}
