/**
 * Agent is the node agent: it registers its node, heartbeats, watches only
 * its own node's tasks, and converges containers to them through a Driver.
 *
 * - Recovery is local: a crashed task is restarted in place by its restart
 *   policy with a tunable exponential backoff, without asking the server.
 * - Status is reported in batches, and buffered while the server is away.
 * - After a restart the agent adopts its containers by label; it removes
 *   containers no task wants only after a successful sync with the server,
 *   and only those of this cluster and this node.
 * - It follows the engine's event stream instead of polling, with a slow
 *   resync as a safety net, and starts at most `startConcurrency` containers
 *   at a time.
 */
import { hostname as osHostname, cpus as osCpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { ApiClient, type NewEventBody } from '../api/client.js';
import { Informer } from '../api/informer.js';
import { nodeKind, taskKind } from '../api/kinds.js';
import type { Task, TaskPortBinding, TaskState, TaskStatus } from '../api/types.js';
import { hasProbe, isTerminal, restartDelay } from '../api/types.js';
import { backoffDelay } from '../base/backoff.js';
import { sleep, systemClock, type Clock } from '../base/clock.js';
import { BatonError } from '../base/errors.js';
import { lockDir } from '../base/lock.js';
import { VERSION } from '../base/version.js';
import { WorkQueue } from '../base/workqueue.js';
import { stableStringify } from '../base/json.js';
import { DriverError, type Driver, type TaskHandle, type TaskInspect } from './driver.js';
import { PortAllocator } from './ports.js';
import { HealthMonitor, type HealthVerdict } from './health.js';
import { defaultVipRange, Mesh } from './mesh.js';
import { Deregistration, MeshReporter } from './deregistration.js';
import { credentialState, joinCluster, localDialAddress, loadCredentials, renewCertificate, saveCredentials, type NodeCredentials } from './join.js';
import { tlsTransport, withTransport } from '../api/tls.js';
import { certInfo } from '../base/pki.js';
import { LogCollector, LogStore } from './logs.js';
import { AgentListener } from './listener.js';
import { agentMetrics } from './metrics.js';
import type { Registry } from 'prom-client';

/** isRevoked: the server refused this node's certificate as revoked (it says so in the error details). */
function isRevoked(e: unknown): boolean {
  const err = e as BatonError;
  return err?.code === 'BATON_ERR_UNAUTHORIZED' && !!err.details?.some((d) => d.path === 'certificate' && d.message === 'revoked');
}

function certNotAfter(pem: string): string {
  return certInfo(pem).notAfter.toISOString();
}

export interface AgentOptions {
  /** The server to join (https://HOST:PORT); optional once this node has joined (its data dir knows). */
  server?: string;
  /** The join token; needed only for the first join (or after the certificate expired). */
  joinToken?: string;
  name?: string;
  address: string;
  dataDir: string;
  driver: Driver;
  cpus?: number;
  memoryBytes?: number;
  labels?: Record<string, string>;
  portRange: [number, number];
  /** Loopback range for this node's service VIPs (default: from the address). */
  vipRange?: string;
  /** Run the routing mesh (default true; simulated nodes run none). */
  mesh?: boolean;
  /** Let the mesh route plain round-robin services in the kernel (nftables), when it can (default true). */
  meshKernel?: boolean;
  pull: 'never' | 'missing' | 'always';
  clock?: Clock;
  logger?: Logger;
  logLevel?: string;
  /** How often pending status changes are sent. */
  statusFlushMs?: number;
  startConcurrency?: number;
  /** Re-check every task this often even without events (safety net). */
  resyncIntervalMs?: number;
  /** A task that stayed ready at least this long resets its crash backoff (default 60 s). */
  backoffResetMs?: number;
  /** Health checks and readiness probes running at once on this node (default 16). */
  maxProbesInFlight?: number;
  /** A task with ports told to stop waits at most this long for every Ready node's routing mesh to stop routing to it (default 10 s). */
  deregisterMs?: number;
  /** Asked heartbeat interval; the server may stretch it when the cluster is large. */
  heartbeatMs?: number;
  /** How often the certificate's age is checked for renewal. */
  certCheckMs?: number;
  /** The agent's HTTPS port on its address (logs and metrics for the server; default 7950); null: no listener (simulated nodes). */
  listenPort?: number | null;
  /** Log retention on this node: total bytes (default 100 MiB) and age (default 24 h). */
  logMaxBytes?: number;
  logMaxAgeMs?: number;
  /** How often running tasks' CPU and memory are sampled (default 2 s). */
  statsIntervalMs?: number;
  /** Called when the cluster no longer accepts this node (revoked): the process should exit. */
  onFatal?: (err: Error) => void;
}

export const LABEL_CLUSTER = 'baton.cluster';
export const LABEL_NODE = 'baton.node';
export const LABEL_NODE_NAME = 'baton.node.name';
export const LABEL_TASK = 'baton.task';
export const LABEL_TASK_UID = 'baton.task.uid';
export const LABEL_SERVICE = 'baton.service';
export const LABEL_SLOT = 'baton.slot';
export const LABEL_PORTS = 'baton.ports';

interface Local {
  handle?: TaskHandle;
  ports?: TaskPortBinding[];
  /** Consecutive crashes since the last long-enough run. */
  crashes: number;
  /** Restart times within the policy window. */
  restarts: number[];
  restartCount: number;
  restartAt?: number;
  startedAt?: number;
  /** Since when the task has been ready (running, its probes passing). */
  readySince?: number;
  /** Set when the agent stopped the task for failing its health check: why, for the restart's message. */
  unhealthy?: string;
  /** The last status we produced (reported or buffered). */
  status?: TaskStatus;
}

/** A flush carries at most this many statuses and events (the server takes up to 1000 events a request). */
const MAX_STATUSES_PER_FLUSH = 500;
const MAX_EVENTS_PER_FLUSH = 1000;

/** Status fields an agent does not own or that change without news: never a reason to report. */
const NOT_REPORTED = new Set(['timestamp', 'scheduling', 'pendingReason']);

/** sameReport: status a says what b says (fields an agent reports; undefined counts as absent). Called for every task event, so no serialising. */
function sameReport(a: TaskStatus | undefined, b: TaskStatus): boolean {
  if (!a) return false;
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    if (NOT_REPORTED.has(k) || x[k] === undefined) continue;
    n++;
    const u = x[k];
    const v = y[k];
    if (u !== v && (typeof u !== 'object' || typeof v !== 'object' || u === null || v === null || stableStringify(u) !== stableStringify(v))) return false;
  }
  for (const k in y) if (!NOT_REPORTED.has(k) && y[k] !== undefined) n--;
  return n === 0;
}

export class Agent {
  client!: ApiClient;
  private creds!: NodeCredentials;
  private closeTransport?: () => Promise<void>;
  private fatal = false;
  readonly name: string;
  nodeUid = '';
  clusterId = '';
  private log: Logger;
  private clock: Clock;
  private informer?: Informer;
  private queue: WorkQueue;
  private locals = new Map<string, Local>();
  private pendingStatus = new Map<string, { name: string; uid: string; status: TaskStatus }>();
  private pendingEvents: NewEventBody[] = [];
  private ports: PortAllocator;
  private abort = new AbortController();
  private loops: Promise<void>[] = [];
  private stopEvents?: () => void;
  private releaseLock?: () => void;
  private engineOk = false;
  /** Named volumes on this node's engine for this cluster (undefined until first listed). */
  private volumes: string[] | undefined;
  private engineVersion = '';
  private engineError?: string;
  private heartbeatMs: number;
  private flushMs: number;
  private cleaned = false;
  private readonly health: HealthMonitor;
  /** The routing mesh: published ports on this node, service VIPs for names. */
  mesh?: Mesh;
  /** Holds a stopping task's stop signal until no node's mesh routes to it. */
  private deregistration?: Deregistration;
  /** Task output kept on this node, and its copier. */
  logs?: LogStore;
  private collector?: LogCollector;
  private listener?: AgentListener;
  metrics?: Registry;
  /** The latest usage sample of each running task (CPU as a rate over the last interval). */
  readonly usage = new Map<string, { service: string; cpu: number; cpuSeconds: number; memoryBytes: number; memoryLimitBytes: number; timeMs: number }>();

  constructor(private readonly opts: AgentOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? pino({ level: opts.logLevel ?? 'info', base: { component: 'agent' } }, pino.destination(2));
    this.name = opts.name ?? osHostname();
    this.heartbeatMs = opts.heartbeatMs ?? 2000;
    this.flushMs = opts.statusFlushMs ?? 200;
    this.ports = new PortAllocator(opts.portRange, opts.address, opts.driver.bindsHostPorts !== false);
    this.health = new HealthMonitor(opts.driver, this.clock, (task) => this.queue.add(task), opts.maxProbesInFlight ?? 16);
    this.queue = new WorkQueue((k) => this.reconcile(k), {
      name: 'agent-tasks',
      workers: opts.startConcurrency ?? 8,
      clock: this.clock,
      backoff: { initialMs: 250, maxMs: 10_000 },
      onError: (key, err) => this.log.warn({ task: key, err: String(err) }, 'task reconcile failed; will retry'),
    });
  }

  async start(): Promise<void> {
    mkdirSync(this.opts.dataDir, { recursive: true, mode: 0o700 });
    this.releaseLock = lockDir(this.opts.dataDir, `baton agent ${this.name}`);
    try {
      await this.ensureCredentials();
    } catch (e) {
      this.releaseLock();
      throw e;
    }
    await this.pingEngine();
    try {
      if (this.opts.listenPort !== null) {
        this.logs = new LogStore({ dir: join(this.opts.dataDir, 'logs'), maxBytes: this.opts.logMaxBytes, maxAgeMs: this.opts.logMaxAgeMs, now: () => this.clock.now() });
        this.collector = new LogCollector(this.logs, this.opts.driver, this.log);
        this.metrics = agentMetrics(this);
        this.listener = new AgentListener({ address: this.opts.address, port: this.opts.listenPort ?? 7950, node: this.name, tls: this.creds, logs: this.logs, metrics: this.metrics });
        await this.listener.start();
      }
      await this.adopt();
      await this.registerOrRejoin();
    } catch (e) {
      // Nothing may keep the process alive after a failed start: the caller reports the error and exits.
      await this.listener?.stop().catch(() => {});
      this.logs?.close();
      this.releaseLock();
      throw e;
    }
    this.startEvents();
    this.informer = new Informer(this.client, taskKind, {
      fieldSelector: { 'spec.nodeName': this.name },
      // The agent writes its tasks' status itself: only what the server changes (spec, generation) comes back.
      ignoreStatusUpdates: true,
      onSync: (objs) => {
        for (const name of objs.keys()) this.queue.add(name);
        for (const name of this.locals.keys()) this.queue.add(name);
        this.sweepOnce();
      },
      onEvent: (_type, t: Task) => this.queue.add(t.metadata.name),
      onError: (err) => this.log.debug({ err: err.message }, 'task watch interrupted; reconnecting'),
    });
    this.informer.start();
    if (this.opts.mesh !== false) {
      this.mesh = new Mesh(this.client, { node: this.name, cluster: this.clusterId, address: this.opts.address, vipRange: this.opts.vipRange ?? defaultVipRange(this.opts.address), dataDir: this.opts.dataDir, log: this.log, kernel: this.opts.meshKernel });
      const signal = this.abort.signal;
      new MeshReporter({ client: this.client, node: this.name, mesh: this.mesh, minIntervalMs: () => this.flushMs, signal, log: this.log });
      this.deregistration = new Deregistration({ client: this.client, mesh: this.mesh, clock: this.clock, timeoutMs: this.opts.deregisterMs ?? 10_000, wake: (t) => this.queue.add(t), signal, log: this.log });
      await this.mesh.start();
    }
    this.loops.push(this.heartbeatLoop(), this.engineLoop(), this.flushLoop(), this.resyncLoop(), this.renewLoop());
    if (this.listener) this.loops.push(this.statsLoop(), this.logRetentionLoop());
    this.log.info({ node: this.name, address: this.opts.address, server: this.creds.server }, 'agent started');
  }

  /** registerOrRejoin registers this node; when its certificate was revoked while it was away, it joins again if it has a token. */
  private async registerOrRejoin(): Promise<void> {
    try {
      await this.register();
    } catch (e) {
      if (!isRevoked(e)) throw e;
      // Removed from the cluster while away: join again if given a token, else say how.
      if (!this.opts.server || !this.opts.joinToken) {
        throw new BatonError('BATON_ERR_UNAUTHORIZED', `this node's certificate was revoked (baton node rm ${this.name}); to join again, start the agent with --join URL --token TOKEN`);
      }
      const creds = await joinCluster({ server: this.opts.server, token: this.opts.joinToken, name: this.name, address: this.opts.address });
      saveCredentials(this.opts.dataDir, creds);
      this.useCredentials(creds);
      this.log.info({ server: creds.server }, 'joined the cluster again after this node was removed');
      await this.register();
    }
  }

  /** stop leaves containers running, to be adopted by the next agent on this node. */
  async stop(): Promise<void> {
    await this.halt();
    await Promise.allSettled(this.loops);
    await this.flush().catch(() => {});
    void this.closeTransport?.().catch(() => {});
    this.releaseLock?.();
  }

  /** halt stops every loop, the engine event stream, the work queue and the task watch. */
  private async halt(): Promise<void> {
    this.abort.abort();
    this.stopEvents?.();
    this.health.close();
    this.queue.stop();
    await this.mesh?.stop();
    await this.informer?.stop();
    await this.collector?.close();
    await this.listener?.stop();
    this.logs?.close();
  }

  // ------------------------------------------------------------ credentials

  /** ensureCredentials loads this node's certificate, or joins with the token when there is none (or it expired). */
  private async ensureCredentials(): Promise<void> {
    const { opts } = this;
    let creds = loadCredentials(opts.dataDir);
    if (creds && creds.name !== this.name) {
      throw new BatonError('BATON_ERR_CONFLICT', `data directory ${opts.dataDir} holds node ${creds.name}'s identity, not ${this.name}'s; use --name ${creds.name} or another --data-dir`);
    }
    if (creds && opts.server && opts.server.replace(/\/+$/, '') !== creds.server) creds = { ...creds, server: opts.server.replace(/\/+$/, '') };
    const state = creds ? credentialState(creds, new Date(this.clock.now())) : undefined;
    if (!creds || state === 'expired') {
      if (!opts.server || !opts.joinToken) {
        throw new BatonError(
          'BATON_ERR_BAD_REQUEST',
          creds
            ? `this node's certificate has expired (the agent was away longer than its lifetime); join again: baton agent --join ${creds.server} --token TOKEN (get one with baton join-token worker)`
            : 'this node has not joined a cluster yet: pass --join https://SERVER:7400 --token TOKEN (get one with baton join-token worker)',
        );
      }
      creds = await joinCluster({ server: opts.server, token: opts.joinToken, name: this.name, address: opts.address });
      saveCredentials(opts.dataDir, creds);
      this.log.info({ server: creds.server, clusterId: creds.clusterId }, 'joined the cluster');
    }
    this.useCredentials(creds);
  }

  private useCredentials(creds: NodeCredentials): void {
    const t = tlsTransport({ caPem: creds.caPem, certPem: creds.certPem, keyPem: creds.keyPem, localAddress: localDialAddress(this.opts.address) });
    const old = this.closeTransport;
    this.creds = creds;
    this.clusterId = creds.clusterId;
    this.listener?.setCredentials(creds);
    if (this.client) this.client.setTransport(t);
    else this.client = new ApiClient(withTransport({ server: creds.server, timeoutMs: 10_000 }, t));
    this.closeTransport = t.close;
    // Requests in flight (a held watch) finish on the old connection; close() waits for them.
    void old?.().catch(() => {});
  }

  /** renewLoop renews the node certificate at two thirds of its life. */
  private async renewLoop(): Promise<void> {
    const every = this.opts.certCheckMs ?? 3_600_000;
    while (!this.abort.signal.aborted) {
      await sleep(every, this.abort.signal);
      if (this.abort.signal.aborted) return;
      if (credentialState(this.creds, new Date(this.clock.now())) !== 'renew') continue;
      try {
        const next = await renewCertificate(this.client, this.creds);
        saveCredentials(this.opts.dataDir, next);
        this.useCredentials(next);
        this.log.info({ notAfter: certNotAfter(next.certPem) }, 'renewed the node certificate');
      } catch (e) {
        this.onAuthError(e);
        this.log.warn({ err: String(e) }, 'certificate renewal failed; will retry');
      }
    }
  }

  /**
   * onAuthError handles the one refusal that will not fix itself: this node's
   * certificate was revoked (baton node rm). The server has already replaced
   * its tasks elsewhere, so the agent removes this cluster's containers here
   * (no duplicates keep serving) and stops.
   */
  private onAuthError(e: unknown): void {
    const err = e as BatonError;
    if (this.fatal || !isRevoked(err)) return;
    this.fatal = true;
    this.log.error({ err: err.message }, 'this node was removed from the cluster; removing its containers and stopping');
    void (async () => {
      await this.halt();
      if (this.engineOk && this.clusterId) {
        const found = await this.opts.driver.list(this.labelsFilter()).catch(() => []);
        for (const c of found) {
          await this.opts.driver.stop(c.handle, 10_000).catch(() => {});
          await this.opts.driver.destroy(c.handle).catch(() => {});
        }
      }
      this.opts.onFatal?.(new BatonError('BATON_ERR_UNAUTHORIZED', `node ${this.name} was removed from the cluster (${err.message})`));
    })();
  }

  // ------------------------------------------------------------ registration

  private nodeFile(): string {
    return join(this.opts.dataDir, 'node.json');
  }

  private async register(): Promise<void> {
    const info = await this.opts.driver.ping();
    let failures = 0;
    while (!this.abort.signal.aborted) {
      try {
        const res = await this.client.call<{ node: { metadata: { uid: string } }; clusterId: string; heartbeatIntervalMs: number; statusFlushMs?: number }>('POST', '/api/v1/nodes/register', {
          name: this.name,
          address: this.opts.address,
          hostname: osHostname(),
          agentVersion: VERSION,
          labels: this.opts.labels ?? {},
          capacity: { cpus: this.opts.cpus ?? info.cpus ?? osCpus().length, memoryBytes: this.opts.memoryBytes ?? info.memoryBytes ?? totalmem() },
          portRange: this.opts.portRange,
          heartbeatMs: this.opts.heartbeatMs,
          ...(this.listener ? { agentPort: this.listener.port } : {}),
          platform: { os: process.platform, arch: ({ x64: 'x86_64', arm64: 'aarch64', arm: 'armv7l', ia32: 'i386' } as Record<string, string>)[process.arch] ?? process.arch },
          engine: { ok: info.ok, version: info.version, error: info.error },
        });
        const known = existsSync(this.nodeFile()) ? JSON.parse(readFileSync(this.nodeFile(), 'utf8')) : undefined;
        if (known && known.clusterId && known.clusterId !== res.clusterId) {
          throw new BatonError('BATON_ERR_CONFLICT', `data directory ${this.opts.dataDir} belongs to cluster ${known.clusterId}, but the server is cluster ${res.clusterId}; use another --data-dir`);
        }
        this.nodeUid = res.node.metadata.uid;
        this.clusterId = res.clusterId;
        this.heartbeatMs = res.heartbeatIntervalMs;
        this.adviseFlush(res.statusFlushMs);
        writeFileSync(this.nodeFile(), JSON.stringify({ name: this.name, uid: this.nodeUid, clusterId: this.clusterId }) + '\n');
        return;
      } catch (e) {
        const err = e as BatonError;
        // A refusal (revoked, incompatible version, wrong cluster) will not fix itself.
        if (err.code && err.code !== 'BATON_ERR_UNAVAILABLE' && err.code !== 'BATON_ERR_INTERNAL') throw err;
        failures++;
        if (failures === 1 || failures % 10 === 0) this.log.warn({ err: err.message }, 'cannot register with the server yet; retrying');
        await sleep(backoffDelay({ initialMs: 200, maxMs: 5000 }, failures), this.abort.signal);
      }
    }
  }

  private async pingEngine(): Promise<void> {
    const info = await this.opts.driver.ping();
    const was = this.engineOk;
    this.engineOk = info.ok;
    this.engineVersion = info.version;
    this.engineError = info.error;
    // The node's named volumes, so the scheduler sends tasks back to the data they left.
    if (info.ok && this.clusterId) this.volumes = await this.opts.driver.volumes(this.labelsFilter()).catch(() => this.volumes);
    if (was !== info.ok) {
      this.log[info.ok ? 'info' : 'warn']({ engine: info.version, err: info.error }, info.ok ? 'container engine is reachable' : 'container engine is unreachable');
      if (info.ok && this.nodeUid) {
        // Back from an outage: events may have been missed.
        this.startEvents();
        for (const name of this.taskNames()) this.queue.add(name);
        this.sweepOnce();
      }
    }
  }

  /** engineLoop probes the engine on its own beat, so a slow or hung engine never delays a heartbeat. */
  private async engineLoop(): Promise<void> {
    while (!this.abort.signal.aborted) {
      await sleep(this.heartbeatMs, this.abort.signal);
      if (this.abort.signal.aborted) return;
      await this.pingEngine();
    }
  }

  /** heartbeatLoop reports liveness and the last known engine state; it never waits on the engine. */
  private async heartbeatLoop(): Promise<void> {
    while (!this.abort.signal.aborted) {
      await sleep(this.heartbeatMs, this.abort.signal);
      if (this.abort.signal.aborted) return;
      try {
        const r = await this.client.call<{ heartbeatIntervalMs?: number; statusFlushMs?: number }>('POST', `/api/v1/nodes/${encodeURIComponent(this.name)}/heartbeat`, {
          engine: { ok: this.engineOk, version: this.engineVersion, error: this.engineError },
          intervalMs: this.heartbeatMs,
          ...(this.volumes ? { volumes: this.volumes } : {}),
          ...(this.listener ? { usage: await this.usageReport() } : {}),
        });
        // The server stretches the interval as the cluster grows (a bounded beat rate).
        if (r.heartbeatIntervalMs && r.heartbeatIntervalMs > 0) this.heartbeatMs = Math.max(this.opts.heartbeatMs ?? 0, r.heartbeatIntervalMs);
        this.adviseFlush(r.statusFlushMs);
      } catch (e) {
        const err = e as BatonError;
        this.onAuthError(err);
        if (err.code === 'BATON_ERR_NOT_FOUND') {
          await this.register().catch((x) => {
            this.onAuthError(x);
            this.log.warn({ err: String(x) }, 're-register failed');
          });
        }
        else this.log.debug({ err: err.message }, 'heartbeat failed');
      }
    }
  }

  /** taskStatuses: every task this agent holds, with the status it last produced (for metrics). */
  *taskStatuses(): Iterable<{ task: string; service: string; status: TaskStatus | undefined }> {
    for (const [task, local] of this.locals) {
      const t = this.informer?.objects.get(task) as Task | undefined;
      yield { task, service: t?.spec.serviceName ?? '', status: local.status ?? t?.status };
    }
  }

  /** statsLoop samples every running task's CPU and memory (from its cgroup) each statsIntervalMs. */
  private async statsLoop(): Promise<void> {
    const every = this.opts.statsIntervalMs ?? 2000;
    while (!this.abort.signal.aborted) {
      await sleep(every, this.abort.signal);
      if (this.abort.signal.aborted || !this.engineOk) continue;
      const seen = new Set<string>();
      for (const [name, local] of this.locals) {
        if (!local.handle || local.status?.state !== 'running') continue;
        const task = this.informer?.objects.get(name) as Task | undefined;
        try {
          const s = await this.opts.driver.stats(local.handle);
          const prev = this.usage.get(name);
          const dt = prev ? (s.timeMs - prev.timeMs) / 1000 : 0;
          const cpu = prev && dt > 0 && s.cpuSeconds >= prev.cpuSeconds ? (s.cpuSeconds - prev.cpuSeconds) / dt : 0;
          this.usage.set(name, { service: task?.spec.serviceName ?? prev?.service ?? '', cpu, cpuSeconds: s.cpuSeconds, memoryBytes: s.memoryBytes, memoryLimitBytes: s.memoryLimitBytes, timeMs: s.timeMs });
          seen.add(name);
        } catch {
          /* stopped between the check and the read */
        }
      }
      for (const name of this.usage.keys()) if (!seen.has(name)) this.usage.delete(name);
    }
  }

  /** usageReport is what each heartbeat carries: the tasks' latest usage and the mesh's connection counts per service. */
  private async usageReport(): Promise<{ tasks: { task: string; service: string; cpu: number; memoryBytes: number; memoryLimitBytes: number }[]; connections: Record<string, number>; active: Record<string, number> }> {
    const tasks = [...this.usage].map(([task, u]) => ({ task, service: u.service, cpu: Math.round(u.cpu * 1000) / 1000, memoryBytes: u.memoryBytes, memoryLimitBytes: u.memoryLimitBytes }));
    const connections: Record<string, number> = {};
    const active: Record<string, number> = {};
    for (const [svc, c] of Object.entries((await this.mesh?.counters().catch(() => undefined)) ?? {})) {
      connections[svc] = c.total.connections;
      if (c.total.active) active[svc] = c.total.active;
    }
    return { tasks, connections, active };
  }

  /** logRetentionLoop applies the node's log retention (age and size) every minute; appends apply the size limit at once. */
  private async logRetentionLoop(): Promise<void> {
    while (!this.abort.signal.aborted) {
      this.logs?.prune();
      await sleep(60_000, this.abort.signal);
    }
  }

  private async resyncLoop(): Promise<void> {
    const every = this.opts.resyncIntervalMs ?? 30_000;
    while (!this.abort.signal.aborted) {
      await sleep(every, this.abort.signal);
      for (const name of this.taskNames()) this.queue.add(name);
    }
  }

  private taskNames(): Set<string> {
    return new Set([...(this.informer?.objects.keys() ?? []), ...this.locals.keys()]);
  }

  // ------------------------------------------------------------ engine events & adoption

  /**
   * labelsFilter scopes everything the agent touches on the engine to this
   * cluster and this node: another cluster's agent on the same host with the
   * same node name (a second `baton up`, a test cluster) never adopts, sweeps
   * or reacts to these containers, nor these agents to its.
   */
  private labelsFilter(): Record<string, string> {
    return { [LABEL_CLUSTER]: this.clusterId, [LABEL_NODE_NAME]: this.name };
  }

  private startEvents(): void {
    this.stopEvents?.();
    this.stopEvents = this.opts.driver.events(
      this.labelsFilter(),
      (e) => {
        const name = e.labels[LABEL_TASK];
        if (name) this.queue.add(name);
      },
      (err) => {
        if (this.abort.signal.aborted) return;
        this.log.debug({ err: err.message }, 'engine event stream broke; reconnecting');
        this.stopEvents = undefined;
        setTimeout(() => {
          if (!this.abort.signal.aborted && !this.stopEvents) {
            this.startEvents();
            for (const name of this.taskNames()) this.queue.add(name);
          }
        }, 1000).unref();
      },
    );
  }

  /** adopt finds this node's containers from a previous run and re-attaches to them. */
  private async adopt(): Promise<void> {
    if (!this.engineOk) return;
    const found = await this.opts.driver.list(this.labelsFilter());
    for (const c of found) {
      const name = c.labels[LABEL_TASK];
      if (!name) continue;
      const ports = parsePorts(c.labels[LABEL_PORTS]);
      this.ports.reserve(ports.map((p) => p.hostPort));
      this.locals.set(name, { handle: c.handle, ports, crashes: 0, restarts: [], restartCount: 0 });
    }
    if (found.length) this.log.info({ count: found.length }, 'adopted existing containers');
  }

  /** sweepOnce sweeps after the first sync; one that fails (engine gone mid-way) runs again when the engine is back. */
  private sweepOnce(): void {
    if (this.cleaned || !this.informer?.synced || !this.engineOk) return;
    this.cleaned = true;
    this.sweep().catch((err) => {
      this.cleaned = false;
      this.log.warn({ err: String(err) }, 'sweep of unwanted containers failed; will retry');
    });
  }

  /** sweep removes containers no task wants: only after a sync, only this cluster's and this node's. */
  private async sweep(): Promise<void> {
    if (!this.engineOk || !this.clusterId) return;
    const found = await this.opts.driver.list(this.labelsFilter());
    for (const c of found) {
      const name = c.labels[LABEL_TASK];
      if (name && this.informer?.objects.has(name)) continue;
      this.log.info({ container: c.handle.name }, 'removing a container no task wants');
      if (name) await this.collector?.drain(name);
      await this.opts.driver.destroy(c.handle).catch(() => {});
      this.ports.release(parsePorts(c.labels[LABEL_PORTS]).map((p) => p.hostPort));
      if (name) this.locals.delete(name);
    }
  }

  // ------------------------------------------------------------ status reporting

  private report(task: Task, local: Local, state: TaskState, message: string, extra: Partial<TaskStatus> = {}): void {
    const prev = local.status ?? task.status;
    const status: TaskStatus = {
      state,
      message,
      ports: local.ports ?? [],
      hostIP: this.opts.address,
      restartCount: local.restartCount,
      ...(local.handle ? { containerId: local.handle.id, handle: JSON.stringify(local.handle) } : {}),
      ...(prev.startedAt ? { startedAt: prev.startedAt } : {}),
      // The last exit code stays visible while a restarted task runs.
      ...(local.restartCount > 0 && prev.exitCode !== undefined ? { exitCode: prev.exitCode } : {}),
      // (The scheduler's decision belongs to the server, which keeps it: never echoed back.)
      ...extra,
      timestamp: prev.state === state ? prev.timestamp : new Date(this.clock.now()).toISOString(),
    };
    if (sameReport(local.status, status) || (sameReport(task.status, status) && !this.pendingStatus.has(task.metadata.name))) {
      local.status = status;
      return;
    }
    local.status = status;
    this.pendingStatus.set(task.metadata.name, { name: task.metadata.name, uid: task.metadata.uid, status });
    if (prev.state === state) return;
    const event = (type: 'Normal' | 'Warning', reason: string, text: string) =>
      this.pendingEvents.push({ type, reason, message: text, kind: 'Task', name: task.metadata.name, uid: task.metadata.uid, node: this.name, service: task.spec.serviceName, source: `agent/${this.name}` });
    const n = task.metadata.name;
    if (state === 'running') {
      if (local.restartCount > 0) event('Normal', 'TaskRestarted', `${n} restarted on ${this.name} (restart ${local.restartCount})`);
      else event('Normal', 'TaskStarted', `${n} started on ${this.name}`);
    } else if (state === 'rejected' || state === 'failed' || (state === 'starting' && extra.exitCode !== undefined)) {
      event('Warning', state === 'rejected' ? 'TaskRejected' : state === 'failed' ? 'TaskFailed' : 'TaskCrashed', `${n}: ${extra.error ?? message}`);
    }
  }

  /**
   * holdStop is how long a task told to stop should keep running so that no
   * node's mesh picks it for a new connection as it stops (deregistration.ts):
   * only a task with ports that was ready here ever had an endpoint.
   */
  private holdStop(task: Task, local: Local): number {
    if (!this.deregistration || (task.spec.ports.length === 0 && task.spec.expose.length === 0) || local.readySince === undefined) return 0;
    return this.deregistration.remainingMs(task.metadata.name, task.spec.serviceName);
  }

  /** adviseFlush takes the server's status flush interval (it grows with the cluster), never below our own setting. */
  private adviseFlush(ms: number | undefined): void {
    if (typeof ms === 'number' && ms > 0) this.flushMs = Math.max(this.opts.statusFlushMs ?? 200, ms);
  }

  private async flushLoop(): Promise<void> {
    while (!this.abort.signal.aborted) {
      await sleep(this.flushMs, this.abort.signal);
      await this.flush().catch((e) => this.log.debug({ err: String(e) }, 'status flush failed; will retry'));
    }
  }

  /**
   * flush sends buffered statuses and events in one request (one connection:
   * two requests back to back make undici open a second one, and a thousand
   * agents doing so at once is a storm of TLS handshakes); anything not
   * accepted stays buffered unless its task is gone.
   */
  async flush(): Promise<void> {
    if (this.pendingStatus.size === 0 && this.pendingEvents.length === 0) return;
    const events = this.pendingEvents.splice(0, MAX_EVENTS_PER_FLUSH);
    const items = [...this.pendingStatus.values()].slice(0, MAX_STATUSES_PER_FLUSH);
    let res: Awaited<ReturnType<ApiClient['updateStatus']>>;
    try {
      res = await this.client.updateStatus(taskKind, items, events);
    } catch (e) {
      // Kept for the next flush (the newest, if the server was away long enough for many to pile up).
      this.pendingEvents.unshift(...events.slice(-500));
      throw e;
    }
    res.items.forEach((r, i) => {
      const sent = items[i]!;
      // Drop it if accepted, or if the task is gone/replaced; keep it if a newer one was queued meanwhile.
      if (this.pendingStatus.get(sent.name) === sent) this.pendingStatus.delete(sent.name);
      if (!r.ok && r.error?.code !== 'BATON_ERR_NOT_FOUND' && r.error?.code !== 'BATON_ERR_CONFLICT') this.log.warn({ task: sent.name, err: r.error?.message }, 'status rejected');
    });
  }

  // ------------------------------------------------------------ the task reconciler

  private async reconcile(name: string): Promise<void> {
    const task = this.informer?.objects.get(name) as Task | undefined;
    let local = this.locals.get(name);
    const driver = this.opts.driver;

    if (!task) {
      // Deleted on the server (history trimmed or service removed). Only act after a sync.
      if (!this.informer?.synced || !local) return;
      this.health.unwatch(name);
      if (local.handle) {
        const insp = await driver.inspect(local.handle);
        if (insp.state === 'running') await driver.stop(local.handle, 10_000);
        // Its last lines reach the log store before the container goes.
        await this.collector?.drain(name);
        await driver.destroy(local.handle);
      }
      this.ports.release((local.ports ?? []).map((p) => p.hostPort));
      this.locals.delete(name);
      this.deregistration?.forget(name);
      return;
    }
    if (!local) {
      local = { crashes: 0, restarts: [], restartCount: task.status.restartCount ?? 0 };
      if (task.status.handle) {
        try {
          local.handle = JSON.parse(task.status.handle) as TaskHandle;
          local.ports = task.status.ports;
        } catch {
          /* unreadable handle: treat as absent */
        }
      }
      this.locals.set(name, local);
    }
    if (!this.engineOk) {
      throw new Error('container engine unreachable');
    }

    const insp = local.handle ? await driver.inspect(local.handle) : undefined;
    const exists = insp && insp.state !== 'missing';

    if (task.spec.desiredState !== 'running') {
      this.health.unwatch(name);
      if (exists && insp!.state === 'running') {
        // Deregister before the stop signal: wait until no node's routing mesh sends it new connections, at most deregisterMs.
        const wait = this.holdStop(task, local);
        if (wait > 0) {
          this.queue.addAfter(name, wait);
          return;
        }
        await driver.stop(local.handle!, task.spec.container.stopGracePeriodMs, task.spec.container.stopSignal);
        this.deregistration?.forget(name);
        const after = await driver.inspect(local.handle!);
        this.report(task, local, 'shutdown', 'stopped', { exitCode: after.exitCode, finishedAt: after.finishedAt });
      } else if (!isTerminal(task.status.state) || (local.status && !isTerminal(local.status.state))) {
        this.report(task, local, 'shutdown', exists ? 'stopped' : 'never started', exists ? { exitCode: insp!.exitCode, finishedAt: insp!.finishedAt } : {});
      }
      return;
    }

    // Copy the output of the container's current run (also of one that already exited) into this node's log store.
    if (exists) this.collector?.collect(name, task.spec.serviceName, local.handle!, `${local.handle!.id}@${insp!.startedAt ?? ''}`);

    // Desired running.
    if (exists && insp!.state === 'running') {
      await this.running(task, local, insp!);
      return;
    }
    if (isTerminal(task.status.state) && local.status && isTerminal(local.status.state)) return;

    if (exists && insp!.state === 'exited') {
      const code = insp!.exitCode ?? -1;
      const policy = task.spec.restartPolicy;
      const why = local.unhealthy !== undefined ? `unhealthy (${local.unhealthy})` : `exited with code ${code}`;
      if (local.restartAt === undefined) {
        // A new exit: decide whether and when to restart.
        const now = this.clock.now();
        const ended = insp!.finishedAt ? Date.parse(insp!.finishedAt) : now;
        if (local.readySince !== undefined && ended - local.readySince >= (this.opts.backoffResetMs ?? 60_000)) local.crashes = 0;
        local.readySince = undefined;
        local.startedAt = undefined;
        const failed = code !== 0 || local.unhealthy !== undefined;
        const wants = policy.condition === 'any' || (policy.condition === 'on-failure' && failed);
        local.restarts = local.restarts.filter((t) => !policy.windowMs || now - t < policy.windowMs);
        const exit = { exitCode: code, finishedAt: insp!.finishedAt };
        if (!wants) {
          local.unhealthy = undefined;
          this.report(task, local, failed ? 'failed' : 'complete', why, { ...exit, ...(failed ? { error: insp!.error || `${why}${insp!.oomKilled ? ' (out of memory)' : ''}` } : {}) });
          return;
        }
        if (policy.maxAttempts > 0 && local.restarts.length >= policy.maxAttempts) {
          // Past its attempts on this node: the task fails and its service places a new one, elsewhere if it can.
          local.unhealthy = undefined;
          this.report(task, local, 'failed', `restart limit reached (${policy.maxAttempts})`, { ...exit, error: `${why}; gave up after ${policy.maxAttempts} restarts on ${this.name}` });
          return;
        }
        local.crashes++;
        const delay = restartDelay(policy, local.crashes);
        local.restartAt = now + delay;
        this.report(
          task,
          local,
          'starting',
          delay > 0 ? `${why}; restarting in ${Math.round(delay / 100) / 10}s` : `${why}; restarting`,
          { ...exit, ...(delay > 0 ? { nextRestartAt: new Date(local.restartAt).toISOString() } : {}) },
        );
      }
      const wait = local.restartAt - this.clock.now();
      if (wait > 0) {
        this.queue.addAfter(name, wait);
        return;
      }
      local.restartAt = undefined;
      local.unhealthy = undefined;
      local.restarts.push(this.clock.now());
      local.restartCount++;
    }

    // Create (first time) or start in place (restart).
    const targets = [...task.spec.ports.map((p) => p.target), ...task.spec.expose.filter((e) => !task.spec.ports.some((p) => p.target === e))];
    // A new container gets host ports for every target; ports recorded without all targets (an older status) are replaced.
    if (!exists && (!local.ports || !targets.every((t) => local!.ports!.some((p) => p.target === t)))) {
      if (local.ports) this.ports.release(local.ports.map((p) => p.hostPort));
      // Host-mode published ports are bound as published, on this node only; every other target gets a port from the range.
      const fixed = new Map(task.spec.ports.filter((p) => p.mode === 'host' && p.published !== undefined).map((p) => [p.target, p.published!]));
      try {
        await this.ports.claim([...fixed.values()]);
      } catch (e) {
        local.ports = [];
        this.report(task, local, 'rejected', 'could not start', { error: (e as Error).message });
        return;
      }
      const host = await this.ports.allocate(targets.filter((t) => !fixed.has(t)).length);
      let next = 0;
      local.ports = targets.map((target) => {
        const published = task.spec.ports.find((p) => p.target === target)?.published;
        return { target, hostPort: fixed.get(target) ?? host[next++]!, ...(published ? { published } : {}) };
      });
    }
    this.report(task, local, exists ? 'starting' : 'preparing', exists ? 'restarting in place' : 'creating container');
    const env: Record<string, string> = { BATON_HOST_IP: this.opts.address, BATON_TASK: task.metadata.name, BATON_SERVICE: task.spec.serviceName, BATON_SLOT: String(task.spec.slot) };
    for (const p of local.ports ?? []) env[`BATON_PORT_${p.target}`] = String(p.hostPort);
    if (local.ports?.length) env.PORT = String(local.ports[0]!.hostPort);
    try {
      local.handle = await driver.start({
        taskName: task.metadata.name,
        taskUid: task.metadata.uid,
        serviceName: task.spec.serviceName,
        slot: task.spec.slot,
        // Service names resolve to this node's VIPs, where the mesh listens (Swarm's service DNS, for unmodified images).
        spec: this.mesh ? { ...task.spec.container, extraHosts: [...task.spec.container.extraHosts, ...(await this.mesh.hostsWhenSynced(task.metadata.labels['baton.stack'] ?? ''))] } : task.spec.container,
        resources: task.spec.resources,
        env,
        labels: {
          [LABEL_CLUSTER]: this.clusterId,
          [LABEL_NODE]: this.nodeUid,
          [LABEL_NODE_NAME]: this.name,
          [LABEL_TASK]: task.metadata.name,
          [LABEL_TASK_UID]: task.metadata.uid,
          [LABEL_SERVICE]: task.spec.serviceName,
          [LABEL_SLOT]: String(task.spec.slot),
          [LABEL_PORTS]: JSON.stringify(local.ports ?? []),
        },
        pullPolicy: task.spec.container.pullPolicy ?? this.opts.pull,
      });
    } catch (e) {
      if (e instanceof DriverError && e.reason === 'engine_unavailable') throw e;
      const msg = (e as Error).message;
      this.ports.release((local.ports ?? []).map((p) => p.hostPort));
      local.ports = [];
      this.report(task, local, 'rejected', 'could not start', { error: msg });
      return;
    }
    const after = await driver.inspect(local.handle);
    this.collector?.collect(name, task.spec.serviceName, local.handle, `${local.handle.id}@${after.startedAt ?? ''}`);
    local.startedAt = after.startedAt ? Date.parse(after.startedAt) : this.clock.now();
    if (after.state === 'running') await this.running(task, local, after);
    else this.queue.add(name); // it already exited: handle the exit
  }

  /**
   * running reports a running container: its health and readiness verdicts,
   * and readyAt at once when it has no probe (one status write, not two),
   * or stops it when its health check fails.
   */
  private async running(task: Task, local: Local, insp: TaskInspect): Promise<void> {
    const name = task.metadata.name;
    const driver = this.opts.driver;
    if (local.startedAt === undefined) local.startedAt = insp.startedAt ? Date.parse(insp.startedAt) : this.clock.now();
    const c = task.spec.container;
    const live = hasProbe(c.healthcheck) ? c.healthcheck : undefined;
    const ready = hasProbe(c.readiness) ? c.readiness : undefined;
    let v: HealthVerdict = {};
    if (live || ready) {
      this.health.watch(name, `${local.handle!.id}@${insp.startedAt ?? ''}`, { live, ready }, { handle: local.handle!, image: c.image, address: this.opts.address, ports: local.ports ?? [] });
      v = this.health.verdict(name);
    } else this.health.unwatch(name);
    if (v.healthy === false) {
      // Unhealthy: stop it, and its restart policy takes over, as in Swarm.
      local.unhealthy = v.output ?? 'health check failed';
      this.health.unwatch(name);
      this.log.info({ task: name, why: local.unhealthy }, 'task failed its health check; stopping it');
      await driver.stop(local.handle!, c.stopGracePeriodMs, c.stopSignal);
      this.queue.add(name);
      return;
    }
    const isReady = (!live || v.healthy === true) && (!ready || v.ready === true);
    if (!isReady) local.readySince = undefined;
    else local.readySince ??= this.clock.now();
    const message = isReady
      ? 'started'
      : v.ready === false
        ? `not ready: ${v.output ?? 'readiness probe failing'}`
        : `started; waiting for the ${live && v.healthy === undefined ? 'health check' : 'readiness probe'}`;
    this.report(task, local, 'running', message, {
      startedAt: insp.startedAt,
      ...(isReady ? { readyAt: new Date(local.readySince!).toISOString() } : {}),
      ...(v.healthy !== undefined ? { healthy: v.healthy } : {}),
      ...(v.ready !== undefined ? { ready: v.ready } : {}),
    });
  }
}

function parsePorts(s: string | undefined): TaskPortBinding[] {
  if (!s) return [];
  try {
    const v = JSON.parse(s);
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

export { nodeKind };
