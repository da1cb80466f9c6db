/**
 * SimDriver runs tasks without containers, for scale tests and demos: the
 * same Driver interface as Docker, so a simulated node is the real agent
 * (join, heartbeats, watch, status, restarts) with an engine that only keeps
 * books. A task "starts" after a configurable latency, and with a configurable
 * probability exits with code 1 soon after, which exercises the agent's
 * restart policy and backoff. One SimEngine can serve many nodes in one
 * process, as one dockerd serves several agents: containers carry their
 * node's labels and each agent sees only its own.
 */
import { randomUUID } from 'node:crypto';
import type { Driver, DriverEvent, EngineInfo, ExecResult, ExitResult, ListedTask, TaskConfig, TaskHandle, TaskInspect, TaskStats } from '../driver.js';
import { DriverError, volumeLabels } from '../driver.js';

export interface SimOptions {
  /** How long a start takes. */
  startLatencyMs?: number;
  /** Probability (0..1) that a started task exits with code 1 shortly after. */
  failureRate?: number;
  /** How long a failing task runs before it exits. */
  failAfterMs?: number;
  /** Capacity the engine reports. */
  cpus?: number;
  memoryBytes?: number;
  /** Images that do not exist (for rejected-task scenarios). */
  missingImages?: string[];
  random?: () => number;
}

interface SimContainer {
  handle: TaskHandle;
  labels: Record<string, string>;
  state: 'created' | 'running' | 'exited';
  exitCode?: number;
  startedAt?: string;
  finishedAt?: string;
  waiters: ((r: ExitResult) => void)[];
  timer?: NodeJS.Timeout;
}

interface Subscription {
  labels: Record<string, string>;
  onEvent: (e: DriverEvent) => void;
}

/** SimEngine is the shared book of simulated containers: the stand-in for one dockerd. */
export class SimEngine {
  readonly containers = new Map<string, SimContainer>();
  /** Named volumes, with the labels of the task that made each (one engine's volume names are unique, as Docker's are). */
  readonly volumes = new Map<string, Record<string, string>>();
  /**
   * Subscriptions filed under one `key=value` of their filter: one engine
   * serves thousands of simulated nodes, so an event is matched against the
   * subscriptions of the labels it carries, not against all of them.
   */
  private readonly subs = new Map<string, Set<Subscription>>();
  /** Container names per `key=value` label, for list(). */
  private readonly byLabel = new Map<string, Set<string>>();

  subscribe(s: Subscription): () => void {
    const k = filedUnder(s.labels);
    this.subKeys.add(k.slice(0, Math.max(0, k.indexOf('='))));
    let set = this.subs.get(k);
    if (!set) this.subs.set(k, (set = new Set()));
    set.add(s);
    return () => {
      set.delete(s);
      if (set.size === 0) this.subs.delete(k);
    };
  }

  /** Label keys subscriptions are filed under ('' for those without labels). */
  private readonly subKeys = new Set<string>(['']);
  /** Label keys byLabel indexes: those list() has selected by (the node's, in practice), not every label of every container. */
  private readonly indexedKeys = new Set<string>();

  emit(e: DriverEvent): void {
    const seen = new Set<Subscription>();
    for (const key of this.subKeys) {
      const v = key === '' ? undefined : e.labels[key];
      if (key !== '' && v === undefined) continue;
      for (const s of this.subs.get(key === '' ? '' : `${key}=${v}`) ?? []) {
        if (seen.has(s)) continue;
        seen.add(s);
        if (matches(e.labels, s.labels)) s.onEvent(e);
      }
    }
  }

  add(name: string, c: SimContainer): void {
    this.containers.set(name, c);
    for (const k of this.indexedKeys) this.indexPut(name, k, c.labels[k]);
  }

  private indexPut(name: string, k: string, v: string | undefined): void {
    if (v === undefined) return;
    const key = `${k}=${v}`;
    let set = this.byLabel.get(key);
    if (!set) this.byLabel.set(key, (set = new Set()));
    set.add(name);
  }

  remove(name: string): void {
    const c = this.containers.get(name);
    if (!c) return;
    this.containers.delete(name);
    for (const k of this.indexedKeys) {
      const v = c.labels[k];
      if (v === undefined) continue;
      const set = this.byLabel.get(`${k}=${v}`);
      set?.delete(name);
      if (set?.size === 0) this.byLabel.delete(`${k}=${v}`);
    }
  }

  /** select lists the containers whose labels include all of `labels`, from the index of its most specific (last) label. */
  select(labels: Record<string, string>): SimContainer[] {
    const entries = Object.entries(labels);
    if (entries.length === 0) return [...this.containers.values()];
    const [k, v] = entries.at(-1)!;
    if (!this.indexedKeys.has(k)) {
      this.indexedKeys.add(k);
      for (const [name, c] of this.containers) this.indexPut(name, k, c.labels[k]);
    }
    const out: SimContainer[] = [];
    for (const n of this.byLabel.get(`${k}=${v}`) ?? []) {
      const c = this.containers.get(n);
      if (c && matches(c.labels, labels)) out.push(c);
    }
    return out;
  }
}

/** filedUnder picks the label a subscription is filed under: its last, the most specific by convention (node after cluster). */
function filedUnder(labels: Record<string, string>): string {
  const e = Object.entries(labels).at(-1);
  return e ? `${e[0]}=${e[1]}` : '';
}

function matches(have: Record<string, string>, want: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(want)) if (have[k] !== v) return false;
  return true;
}

export class SimDriver implements Driver {
  readonly name = 'sim';
  /** Simulated tasks bind nothing. */
  readonly bindsHostPorts = false;
  private readonly o: Required<Omit<SimOptions, 'missingImages'>> & { missingImages: Set<string> };

  constructor(
    readonly engine: SimEngine = new SimEngine(),
    opts: SimOptions = {},
  ) {
    this.o = {
      startLatencyMs: opts.startLatencyMs ?? 0,
      failureRate: opts.failureRate ?? 0,
      failAfterMs: opts.failAfterMs ?? 500,
      cpus: opts.cpus ?? 2,
      memoryBytes: opts.memoryBytes ?? 4 * 1024 ** 3,
      missingImages: new Set(opts.missingImages ?? []),
      random: opts.random ?? Math.random,
    };
    if (!(this.o.failureRate >= 0 && this.o.failureRate <= 1)) throw new DriverError(`failure rate must be within 0..1, got ${opts.failureRate}`, 'invalid_config');
  }

  async ping(): Promise<EngineInfo> {
    return { ok: true, version: 'sim-1', cpus: this.o.cpus, memoryBytes: this.o.memoryBytes };
  }

  async start(config: TaskConfig): Promise<TaskHandle> {
    const name = `baton-${config.taskName}${config.container ? `_${config.container.name}` : ''}`;
    let c = this.engine.containers.get(name);
    if (c?.state === 'running') return c.handle;
    if (!c) {
      if (this.o.missingImages.has(config.spec.image)) throw new DriverError(`No such image: ${config.spec.image} (simulated)`, 'image_not_found');
      c = { handle: { driver: 'sim', version: 1, id: randomUUID().replace(/-/g, ''), name }, labels: { ...config.labels }, state: 'created', waiters: [] };
      this.engine.add(name, c);
    }
    // One engine stands in for many nodes' engines: a volume is one per name and owner (cluster and node labels).
    const owner = volumeLabels(config.labels);
    for (const m of config.spec.mounts) if (m.type === 'volume' && m.source) this.engine.volumes.set(`${JSON.stringify(owner)}\0${m.source}`, owner);
    if (this.o.startLatencyMs > 0) await new Promise((r) => setTimeout(r, this.o.startLatencyMs));
    if (!this.engine.containers.has(name)) throw new DriverError(`container ${name} was removed while starting`, 'conflict');
    c.state = 'running';
    c.exitCode = undefined;
    c.startedAt = new Date().toISOString();
    this.engine.emit({ type: 'start', handle: c.handle, labels: c.labels });
    if (config.container?.role === 'init') {
      // A simulated init container does its work at once.
      const target = c;
      setImmediate(() => this.exit(target, 0));
      return c.handle;
    }
    if (this.o.failureRate > 0 && this.o.random() < this.o.failureRate) {
      const target = c;
      target.timer = setTimeout(() => this.exit(target, 1), this.o.failAfterMs);
      target.timer.unref();
    }
    return c.handle;
  }

  private exit(c: SimContainer, code: number): void {
    if (c.state !== 'running') return;
    clearTimeout(c.timer);
    c.state = 'exited';
    c.exitCode = code;
    c.finishedAt = new Date().toISOString();
    for (const w of c.waiters.splice(0)) w({ exitCode: code, oomKilled: false });
    this.engine.emit({ type: 'die', handle: c.handle, labels: c.labels, exitCode: code });
  }

  async wait(handle: TaskHandle, signal?: AbortSignal): Promise<ExitResult> {
    const c = this.engine.containers.get(handle.name);
    if (!c || c.state !== 'running') return { exitCode: c?.exitCode ?? 0, oomKilled: false };
    return new Promise((resolve, reject) => {
      c.waiters.push(resolve);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }

  async stop(handle: TaskHandle): Promise<void> {
    const c = this.engine.containers.get(handle.name);
    if (c) this.exit(c, 0);
  }

  async destroy(handle: TaskHandle): Promise<void> {
    const c = this.engine.containers.get(handle.name);
    if (!c) return;
    this.exit(c, 137);
    this.engine.remove(handle.name);
    this.engine.emit({ type: 'destroy', handle: c.handle, labels: c.labels });
  }

  async inspect(handle: TaskHandle): Promise<TaskInspect> {
    const c = this.engine.containers.get(handle.name);
    if (!c) return { state: 'missing', labels: {} };
    return { state: c.state, exitCode: c.exitCode, startedAt: c.startedAt, finishedAt: c.finishedAt, labels: c.labels };
  }

  async stats(handle: TaskHandle): Promise<TaskStats> {
    const c = this.engine.containers.get(handle.name);
    // A simulated task uses nothing; its start time stands in for a CPU counter that never moves.
    return { cpuSeconds: 0, memoryBytes: c?.state === 'running' ? 4 * 1024 * 1024 : 0, memoryLimitBytes: 0, timeMs: Date.now(), source: 'sim' };
  }

  /** A simulated task passes every probe while it runs (it has no process to ask). */
  async probe(handle: TaskHandle): Promise<ExecResult> {
    const running = this.engine.containers.get(handle.name)?.state === 'running';
    return { exitCode: running ? 0 : 1, output: running ? '' : 'not running (simulated)' };
  }

  async exec(handle: TaskHandle): Promise<ExecResult> {
    return this.probe(handle);
  }

  async imageHealthcheck(): Promise<string[] | undefined> {
    return undefined;
  }

  async volumes(labels: Record<string, string>): Promise<string[]> {
    return [...this.engine.volumes].filter(([, l]) => matches(l, labels)).map(([key]) => key.slice(key.indexOf('\0') + 1)).sort();
  }

  async list(labels: Record<string, string>): Promise<ListedTask[]> {
    return this.engine.select(labels).map((c) => ({ handle: c.handle, labels: c.labels, state: c.state }));
  }

  events(labels: Record<string, string>, onEvent: (e: DriverEvent) => void, _onError?: (err: Error) => void, onOpen?: () => void): () => void {
    const stop = this.engine.subscribe({ labels, onEvent });
    onOpen?.();
    return stop;
  }

  async close(): Promise<void> {}
}
