/**
 * Agent is the node agent: it registers its node, heartbeats, watches only
 * its own node's tasks, and converges containers to them through a Driver.
 * This module composes its parts, each a module of its own:
 *
 * - NodeIdentity (identity.ts): credentials, joining, renewal;
 * - NodeSession (session.ts): registration and heartbeats;
 * - EngineWatch (engineWatch.ts): the engine's health and event stream;
 *   every task reconciled again after an outage;
 * - Adoption (adoption.ts): a previous run's containers, and the sweep of
 *   unwanted ones;
 * - StatusReporter (status.ts): status and task events, batched;
 * - TaskReconciler (reconciler.ts): one task at a time to its desired state;
 * - UsageSampler (usage.ts), HealthMonitor, Mesh, LogStore, AgentListener.
 *
 * Recovery is local: a crashed task is restarted in place by its restart
 * policy without asking the server; status is buffered while the server is
 * away; after a restart the agent adopts its containers by label and removes
 * containers no task wants only after a successful sync with the server.
 */
import { DEFAULT_RUN_DIR, TaskFiles } from './files.js';
import { taskOfKey } from './pod.js';
import { TaskDirs } from './taskDirs.js';
import { ImageBuilds } from './builds.js';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ApiClient } from '../api/client.js';
import { Informer } from '../api/informer.js';
import { nodeKind, taskKind } from '../api/kinds.js';
import { MAIN_CONTAINER, type Task, type TaskStatus } from '../api/types.js';
import { sleep, systemClock, type Clock } from '../base/clock.js';
import { BatonError } from '../base/errors.js';
import { lockDir } from '../base/lock.js';
import { WorkQueue } from '../base/workqueue.js';
import { PortAllocator } from './ports.js';
import { HealthMonitor } from './health.js';
import { defaultVipRange, Mesh } from './mesh.js';
import { LogCollector, LogStore } from './logs.js';
import { AgentListener, type ListenerOptions } from './listener.js';
import { agentMetrics } from './metrics.js';
import { AgentState } from './state.js';
import { isRevoked, NodeIdentity } from './identity.js';
import { StatusReporter } from './status.js';
import { EngineWatch } from './engineWatch.js';
import { Adoption } from './adoption.js';
import { LABEL_CLUSTER, LABEL_TASK } from './state.js';
import { NodeSession } from './session.js';
import { UsageSampler } from './usage.js';
import { TaskReconciler } from './reconciler.js';
import { Deregistration, MeshReporter } from './deregistration.js';
import type { AgentOptions } from './options.js';
import { TaskNetworking } from './net/taskNetworking.js';
import { DEFAULT_CLUSTER_DOMAIN, ServiceDiscovery } from './net/discovery.js';
import { upstreamsFromResolvConf } from './net/dns.js';
import { TaskNetworkView } from './net/taskView.js';
import { formatCidr } from '../base/cidr.js';
import { readFileSync } from 'node:fs';
import { PeerRoutes } from './net/peerRoutes.js';

export type { AgentOptions } from './options.js';

export { LABEL_CLUSTER, LABEL_NODE, LABEL_NODE_NAME, LABEL_PORTS, LABEL_SERVICE, LABEL_SLOT, LABEL_TASK, LABEL_TASK_UID } from './state.js';

export class Agent {
  readonly name: string;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly abort = new AbortController();
  private readonly state: AgentState;
  private readonly identity: NodeIdentity;
  private readonly session: NodeSession;
  private readonly engine: EngineWatch;
  private readonly adoption: Adoption;
  private readonly status: StatusReporter;
  private readonly reconciler: TaskReconciler;
  private readonly sampler: UsageSampler;
  private readonly queue: WorkQueue;
  private readonly ports: PortAllocator;
  private readonly health: HealthMonitor;
  private loops: Promise<void>[] = [];
  private releaseLock?: () => void;
  private fatal = false;
  /** The routing mesh: published ports on this node, service VIPs for names. */
  mesh?: Mesh;
  /** Holds a stopping task's stop signal until no node's mesh routes to it. */
  private deregistration?: Deregistration;
  /** Task output kept on this node, and its copier. */
  logs?: LogStore;
  private collector?: LogCollector;
  /** Secrets and configs as files (containers only: simulated tasks have no file system). */
  private files?: TaskFiles;
  /** The directories a task's containers share (containers only). */
  private dirs?: TaskDirs;
  /** Images built for services with `build:` (drivers that build images). */
  private builds?: ImageBuilds;
  private listener?: AgentListener;
  metrics?: Registry;
  /** This node's task network (tasks in namespaces of their own), once registered; or why there is none. */
  network?: TaskNetworking;
  private networkError?: string;
  /** The node's DNS for its tasks, on the task network's gateway. */
  private discovery?: ServiceDiscovery;
  /** Which networks this node's tasks are on: for its resolver's answers and its isolation rules alike. */
  private readonly view: TaskNetworkView;
  private isolationTimer?: NodeJS.Timeout;
  /** Routes to other nodes' task ranges over the links to them, while this node has a task network. */
  private peers?: PeerRoutes;

  constructor(private readonly opts: AgentOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? pino({ level: opts.logLevel ?? 'info', base: { component: 'agent' } }, pino.destination(2));
    this.name = opts.name ?? osHostname();
    this.state = new AgentState(this.name);
    this.view = new TaskNetworkView(this.state, () => this.mesh);
    const signal = this.abort.signal;
    this.ports = new PortAllocator(opts.portRange, opts.address, opts.driver.bindsHostPorts !== false);
    this.queue = new WorkQueue((k) => this.reconciler.reconcile(k), {
      name: 'agent-tasks',
      workers: opts.startConcurrency ?? 8,
      clock: this.clock,
      backoff: { initialMs: 250, maxMs: 10_000 },
      onError: (key, err) => this.log.warn({ task: key, err: String(err) }, 'task reconcile failed; will retry'),
    });
    // A sidecar's probes go by `<task>~<container>` (pod.ts): its task is reconciled.
    this.health = new HealthMonitor(opts.driver, this.clock, (key) => this.queue.add(taskOfKey(key)), opts.maxProbesInFlight ?? 16);
    this.identity = new NodeIdentity({ server: opts.server, joinToken: opts.joinToken, name: this.name, address: opts.address, dataDir: opts.dataDir }, this.clock, this.log, signal, (creds) => {
      this.state.clusterId = creds.clusterId;
      this.listener?.setCredentials(creds);
    });
    const client = () => this.identity.client;
    this.status = new StatusReporter({ node: this.name, address: opts.address, client, clock: this.clock, log: this.log, statusFlushMs: opts.statusFlushMs });
    this.adoption = new Adoption({ driver: opts.driver, state: this.state, ports: this.ports, log: this.log, collector: () => this.collector });
    this.engine = new EngineWatch({
      driver: opts.driver,
      log: this.log,
      labels: () => this.state.labelsFilter(),
      intervalMs: () => this.session.heartbeatMs,
      onEvent: (e) => {
        const name = e.labels[LABEL_TASK];
        if (name) this.queue.add(name);
      },
      onResync: () => {
        for (const name of this.state.taskNames()) this.queue.add(name);
        this.adoption.sweepOnce();
      },
      // The node's named volumes, so the scheduler sends tasks back to the data they left.
      onAnswer: async () => {
        if (this.state.clusterId) this.state.volumes = await opts.driver.volumes(this.state.labelsFilter()).catch(() => this.state.volumes);
      },
    });
    this.state.engine = this.engine;
    this.sampler = new UsageSampler(opts.driver, this.state, () => this.mesh);
    this.session = new NodeSession(opts, {
      state: this.state,
      client,
      engine: this.engine,
      status: this.status,
      log: this.log,
      signal,
      agentPort: () => this.listener?.port,
      // Simulated nodes (no listener) sample nothing and report no usage, as before the split.
      usage: () => (this.listener ? this.sampler.report() : Promise.resolve(undefined)),
      onAuthError: (e) => this.onAuthError(e),
      onServers: (urls) => this.identity.updateServers(urls),
    });
    this.reconciler = new TaskReconciler(opts, {
      state: this.state,
      status: this.status,
      health: this.health,
      ports: this.ports,
      queue: this.queue,
      clock: this.clock,
      log: this.log,
      mesh: () => this.mesh,
      deregistration: () => this.deregistration,
      collector: () => this.collector,
      network: () => this.network,
      networkChanged: () => this.syncIsolation(),
      networkError: () => this.networkError,
      files: () => this.files,
      builds: () => this.builds,
      dirs: () => this.dirs,
      dns: (stack) => {
        if (!this.discovery || !this.network) return undefined;
        const domain = this.opts.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN;
        return { servers: [this.network.gateway], search: [...(stack ? [`${stack}.svc.${domain}`] : []), `svc.${domain}`, domain], options: ['ndots:1'] };
      },
    });
  }

  /** The API client, with this node's credentials. */
  get client(): ApiClient {
    return this.identity.client;
  }

  get clusterId(): string {
    return this.state.clusterId;
  }

  get nodeUid(): string {
    return this.state.nodeUid;
  }

  /** The latest usage sample of each running task (CPU as a rate over the last interval). */
  get usage(): UsageSampler['usage'] {
    return this.sampler.usage;
  }

  async start(): Promise<void> {
    mkdirSync(this.opts.dataDir, { recursive: true, mode: 0o700 });
    this.releaseLock = lockDir(this.opts.dataDir, `baton agent ${this.name}`);
    try {
      await this.identity.ensure();
    } catch (e) {
      this.releaseLock();
      throw e;
    }
    await this.engine.probe();
    try {
      if (this.opts.listenPort !== null) {
        this.logs = new LogStore({ dir: join(this.opts.dataDir, 'logs'), maxBytes: this.opts.logMaxBytes, maxAgeMs: this.opts.logMaxAgeMs, now: () => this.clock.now() });
        this.collector = new LogCollector(this.logs, this.opts.driver, this.log);
        this.metrics = agentMetrics(this);
        this.listener = new AgentListener({ address: this.opts.address, port: this.opts.listenPort ?? 7950, node: this.name, tls: this.identity.creds, logs: this.logs, metrics: this.metrics, ...(this.opts.metricsToken ? { metricsToken: this.opts.metricsToken } : {}), ...(this.execOptions() ? { exec: this.execOptions() } : {}) });
        await this.listener.start();
      }
      if (this.opts.driver.images) this.builds = new ImageBuilds(join(this.opts.dataDir, 'builds'), () => this.client, this.opts.driver.images, this.log, () => ({ [LABEL_CLUSTER]: this.state.clusterId }), this.opts.buildTimeoutMs);
      if (this.opts.driver.name !== 'sim') this.dirs = new TaskDirs(join(this.opts.dataDir, 'taskdirs'));
      if (this.opts.driver.name !== 'sim') this.files = new TaskFiles(join(this.opts.runDir ?? DEFAULT_RUN_DIR, this.name, 'files'), this.name, () => this.client, this.log);
      await this.adoption.adopt();
      await this.registerOrRejoin();
      await this.openNetwork();
    } catch (e) {
      // Nothing may keep the process alive after a failed start: the caller reports the error and exits.
      await this.listener?.stop().catch(() => {});
      this.logs?.close();
      this.releaseLock();
      throw e;
    }
    this.engine.start();
    this.peers?.start();
    this.state.informer = new Informer(this.client, taskKind, {
      fieldSelector: { 'spec.nodeName': this.name },
      // The agent writes its tasks' status itself: only what the server changes (spec, generation) comes back.
      ignoreStatusUpdates: true,
      onSync: (objs) => {
        for (const name of objs.keys()) this.queue.add(name);
        for (const name of this.state.locals.keys()) this.queue.add(name);
        this.adoption.sweepOnce();
        // Files of tasks this node no longer has (removed while the agent was away) go.
        const uids = new Set([...objs.values()].map((t: Task) => t.metadata.uid));
        void this.files?.sweep(uids).catch(() => {});
        void this.dirs?.sweep(uids).catch(() => {});
      },
      onEvent: (_type, t: Task) => this.queue.add(t.metadata.name),
      onError: (err) => this.log.debug({ err: err.message }, 'task watch interrupted; reconnecting'),
    });
    this.state.informer.start();
    if (this.opts.mesh !== false) {
      this.mesh = new Mesh(this.client, { node: this.name, cluster: this.state.clusterId, address: this.opts.address, taskRange: this.state.taskRange, vipRange: this.opts.vipRange ?? defaultVipRange(this.opts.address), dataDir: this.opts.dataDir, log: this.log, kernel: this.opts.meshKernel, userspace: this.opts.meshUserspace, proxyDrainMs: this.opts.meshProxyDrainMs, tableSweepMs: this.opts.tableSweepMs, ...(this.network ? { taskNetwork: { bridge: this.network.bridge, gateway: this.network.gateway }, admit: (client, spec) => this.view.mayReach(client, spec) } : {}) });
      const signal = this.abort.signal;
      new MeshReporter({ client: this.client, node: this.name, mesh: this.mesh, minIntervalMs: () => this.status.flushInterval, signal, log: this.log });
      this.deregistration = new Deregistration({ client: this.client, mesh: this.mesh, clock: this.clock, timeoutMs: this.opts.deregisterMs ?? 10_000, wake: (t) => this.queue.add(t), signal, log: this.log });
      if (this.discovery) {
        const discovery = this.discovery;
        const mesh = this.mesh;
        this.mesh.onDidChange(() => discovery.update(mesh.specs()));
      }
      this.mesh.onDidChange(() => this.syncIsolation());
      await this.mesh.start();
    }
    const signal = this.abort.signal;
    this.loops.push(
      this.session.heartbeatLoop(),
      this.status.loop(signal),
      this.resyncLoop(),
      this.identity.renewLoop(this.opts.certCheckMs ?? 3_600_000, (e) => this.onAuthError(e)),
    );
    if (this.listener) this.loops.push(this.sampler.loop(this.opts.statsIntervalMs ?? 2000, signal), this.logRetentionLoop());
    this.log.info({ node: this.name, address: this.opts.address, server: this.identity.creds.server }, 'agent started');
  }

  /** execOptions: how the listener's /exec finds a task's running container here (`baton exec`); undefined when the driver cannot attach. */
  private execOptions(): ListenerOptions['exec'] {
    const driver = this.opts.driver;
    if (!driver.attach) return undefined;
    return {
      find: (name, container) => {
        const local = this.state.locals.get(name);
        const task = this.state.task(name);
        const state = local?.status?.state;
        if (!local?.handle || state !== 'running') throw new BatonError('BATON_ERR_CONFLICT', `task ${name} is not running on node ${this.name}${state ? ` (it is ${state})` : ''}`);
        const main = task?.spec.containerName ?? MAIN_CONTAINER;
        if (container === undefined || container === main) return local.handle;
        const other = local.pod?.containers.get(container);
        if (!other) throw new BatonError('BATON_ERR_NOT_FOUND', `task ${name} has no container ${container}`);
        if (!other.handle || other.state !== 'running') throw new BatonError('BATON_ERR_CONFLICT', `container ${container} of task ${name} is not running (it is ${other.state})`);
        return other.handle;
      },
      attach: (handle, o) => driver.attach!(handle, o),
      onSession: (task, cmd, exitCode) => this.log.info({ task, command: cmd[0], exitCode }, 'exec ended'),
    };
  }

  /**
   * openNetwork makes this node's task network from the range the server
   * gave it. A node that cannot make one (its range clashes with a network
   * this machine has, no iproute2) still runs: tasks that need their own
   * namespace are rejected with the reason, the others run as before.
   */
  private async openNetwork(): Promise<void> {
    if (this.opts.taskNetwork === false || !this.opts.driver.sandbox) return;
    const ranges = this.session.ranges;
    if (!ranges) {
      this.networkError = 'the server gave this node no task range';
      return;
    }
    try {
      this.network = await TaskNetworking.open(this.opts.driver, {
        node: this.name,
        cluster: this.state.clusterId,
        range: this.state.taskRange,
        address: this.opts.address,
        dataDir: this.opts.dataDir,
        // Tasks reach every node's tasks and every service VIP through their gateway; nothing else without egress.
        routes: [formatCidr(ranges.clusterCidr), formatCidr(ranges.serviceCidr)],
        egress: this.opts.egress !== false,
        log: this.log,
      });
      await this.openDiscovery(this.network);
      if (this.network) this.peers = new PeerRoutes(this.client, { node: this.name, range: this.state.taskRange, dataDir: this.opts.dataDir, checkMs: this.opts.resyncIntervalMs ?? 30_000, log: this.log });
    } catch (e) {
      this.networkError = (e as Error).message;
      this.log.error({ err: this.networkError, range: this.state.taskRange }, 'could not make this node\'s task network; tasks that need a namespace of their own are rejected here');
    }
  }

  /** openDiscovery starts the node's resolver on its task network's gateway; a node without one still runs its tasks (names do not resolve in them). */
  private async openDiscovery(network: TaskNetworking | undefined): Promise<void> {
    if (!network) return;
    const discovery = new ServiceDiscovery({
      domain: this.opts.clusterDomain,
      upstream: this.opts.dnsUpstream ?? nodeResolvers(),
      clientOf: (address) => this.view.clientAt(address),
      log: this.log,
    });
    try {
      await discovery.listen(network.gateway);
      this.discovery = discovery;
    } catch (e) {
      await discovery.close();
      this.log.error({ err: (e as Error).message }, 'could not start this node\'s DNS resolver; service names do not resolve in its tasks');
    }
  }

  /**
   * syncIsolation brings the node's isolation rules in line with who is on
   * which network (tasks started or gone here, Endpoints changed anywhere),
   * once per burst of changes.
   */
  private syncIsolation(): void {
    const network = this.network;
    const scope = this.session.ranges;
    if (!network || !scope || this.isolationTimer) return;
    this.isolationTimer = setTimeout(() => {
      this.isolationTimer = undefined;
      network.node.setIsolation([formatCidr(scope.clusterCidr)], this.view.members()).catch((e) => this.log.warn({ err: String(e) }, 'could not update the task network\'s isolation rules; will retry with the next change'));
    }, 20);
  }

  /** registerOrRejoin registers this node; when its certificate was revoked while it was away, it joins again if it has a token. */
  private async registerOrRejoin(): Promise<void> {
    try {
      await this.session.register();
    } catch (e) {
      if (!isRevoked(e)) throw e;
      await this.identity.rejoin();
      await this.session.register();
    }
  }

  /** stop leaves containers running, to be adopted by the next agent on this node. */
  async stop(): Promise<void> {
    await this.halt();
    await Promise.allSettled(this.loops);
    await this.flush().catch(() => {});
    this.identity.close();
    this.releaseLock?.();
  }

  /** flush sends the statuses and events not sent yet. */
  flush(): Promise<void> {
    return this.status.flush();
  }

  /** halt stops every loop, the engine event stream, the work queue and the task watch. */
  private async halt(): Promise<void> {
    this.abort.abort();
    clearTimeout(this.isolationTimer);
    this.loops.push(this.engine.stop());
    this.health.close();
    this.queue.stop();
    await this.mesh?.stop();
    await this.discovery?.close();
    await this.peers?.stop();
    await this.state.informer?.stop();
    await this.collector?.close();
    await this.listener?.stop();
    this.logs?.close();
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
      if (this.state.engineOk && this.state.clusterId) {
        const found = await this.opts.driver.list(this.state.labelsFilter()).catch(() => []);
        for (const c of found) {
          await this.opts.driver.stop(c.handle, 10_000).catch(() => {});
          await this.opts.driver.destroy(c.handle).catch(() => {});
          const task = c.labels[LABEL_TASK];
          if (task) await this.opts.driver.removeSandbox?.(task).catch(() => {});
        }
      }
      // The node is no longer the cluster's: its task network goes too.
      await this.network?.node.destroy().catch((e) => this.log.warn({ err: String(e) }, 'could not take this node\'s task network down'));
      this.opts.onFatal?.(new BatonError('BATON_ERR_UNAUTHORIZED', `node ${this.name} was removed from the cluster (${err.message})`));
    })();
  }

  /** taskStatuses: every task this agent holds, with the status it last produced (for metrics). */
  *taskStatuses(): Iterable<{ task: string; service: string; status: TaskStatus | undefined }> {
    for (const [task, local] of this.state.locals) {
      const t = this.state.task(task);
      yield { task, service: t?.spec.serviceName ?? '', status: local.status ?? t?.status };
    }
  }

  /** logRetentionLoop applies the node's log retention (age and size) every minute; appends apply the size limit at once. */
  private async logRetentionLoop(): Promise<void> {
    while (!this.abort.signal.aborted) {
      this.logs?.prune();
      await sleep(60_000, this.abort.signal);
    }
  }

  /** resyncLoop re-checks every task now and then even without events (a safety net). */
  private async resyncLoop(): Promise<void> {
    const every = this.opts.resyncIntervalMs ?? 30_000;
    while (!this.abort.signal.aborted) {
      await sleep(every, this.abort.signal);
      for (const name of this.state.taskNames()) this.queue.add(name);
    }
  }
}

export { nodeKind };

/** nodeResolvers: the node's own nameservers, those a task can reach (not loopback ones, such as systemd-resolved's stub). */
function nodeResolvers(): string[] {
  try {
    return upstreamsFromResolvConf(readFileSync('/etc/resolv.conf', 'utf8'));
  } catch {
    return [];
  }
}
