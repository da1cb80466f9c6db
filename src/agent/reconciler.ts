/**
 * TaskReconciler converges one task at a time to what the server wants,
 * level-triggered (any event about a task, or a resync, re-runs it):
 * create or adopt its container with host ports from this node's range,
 * restart it in place by its restart policy with a crash backoff, report
 * running and ready from its health checks, stop it gracefully (after its
 * endpoint is gone from the mesh) when told, and remove what nothing wants.
 */
import type { TaskFiles } from './files.js';
import type { ImageBuilds } from './builds.js';
import type { Logger } from 'pino';
import type { ContainerSpec, PodContainer, Task } from '../api/types.js';
import type { RegistryCredential } from '../api/registries.js';
import { hasProbe, isPod, isTerminal, restartDelay } from '../api/types.js';
import type { Clock } from '../base/clock.js';
import type { WorkQueue } from '../base/workqueue.js';
import { DriverError, type SandboxDns, type SandboxHandle, type TaskConfig, type TaskHandle, type TaskInspect } from './driver.js';
import type { AgentOptions } from './options.js';
import type { HealthMonitor, HealthVerdict } from './health.js';
import type { LogCollector } from './logs.js';
import type { Mesh } from './mesh.js';
import type { Deregistration } from './deregistration.js';
import type { PortAllocator } from './ports.js';
import { LABEL_CLUSTER, LABEL_CONTAINER, LABEL_NODE, LABEL_NODE_NAME, LABEL_PORTS, LABEL_SERVICE, LABEL_SLOT, LABEL_TASK, LABEL_TASK_UID, type AgentState, type TaskLocal } from './state.js';
import { PodContainers, type StartContainer } from './pod.js';
import { stopContainer } from './preStop.js';
import type { TaskDirs } from './taskDirs.js';
import type { StatusReporter } from './status.js';
import type { HostPortMapping, TaskNetworking } from './net/taskNetworking.js';

export type ReconcilerOptions = Pick<AgentOptions, 'address' | 'driver' | 'pull' | 'backoffResetMs' | 'deregisterMs'>;

export interface ReconcilerDeps {
  state: AgentState;
  status: StatusReporter;
  health: HealthMonitor;
  ports: PortAllocator;
  queue: WorkQueue;
  clock: Clock;
  log: Logger;
  mesh: () => Mesh | undefined;
  /** Holds a stopping task's stop signal until no node's mesh routes to it (when this node runs a mesh). */
  deregistration: () => Deregistration | undefined;
  collector: () => LogCollector | undefined;
  /** This node's task network (undefined before registration, on a simulated node, or when it could not be made: then why). */
  network: () => TaskNetworking | undefined;
  networkError: () => string | undefined;
  /** A task got or gave back its address here (the isolation rules follow). */
  networkChanged: () => void;
  /** Secrets and configs as files (undefined for simulated nodes). */
  files: () => TaskFiles | undefined;
  /** Images of services built from a context (undefined for simulated nodes). */
  builds: () => ImageBuilds | undefined;
  /** The directories a task's containers share (undefined for simulated nodes). */
  dirs: () => TaskDirs | undefined;
  /** The resolv.conf of a task of this stack on the task network (the node's resolver), when the node runs one. */
  dns: (stack: string) => SandboxDns | undefined;
}

export class TaskReconciler {
  /** A task's other containers (sidecars, init containers). */
  private readonly pod: PodContainers;

  constructor(
    private readonly opts: ReconcilerOptions,
    private readonly deps: ReconcilerDeps,
  ) {
    this.pod = new PodContainers({ driver: opts.driver, health: deps.health, queue: deps.queue, clock: deps.clock, log: deps.log, collector: deps.collector, backoffResetMs: opts.backoffResetMs ?? 60_000 });
  }

  async reconcile(name: string): Promise<void> {
    const task = this.deps.state.task(name);
    let local = this.deps.state.locals.get(name);
    const driver = this.opts.driver;

    if (!task) {
      // Deleted on the server (history trimmed or service removed). Only act after a sync.
      if (!this.deps.state.informer?.synced || !local) return;
      this.deps.health.unwatch(name);
      if (local.handle) {
        const insp = await driver.inspect(local.handle);
        if (insp.state === 'running') await driver.stop(local.handle, 10_000);
        // Its last lines reach the log store before the container goes.
        await this.deps.collector()?.drain(name);
        await driver.destroy(local.handle);
      }
      await this.pod.remove(name, local);
      await this.releaseNetwork(name, local);
      if (local.uid) await this.deps.files()?.release(local.uid).catch(() => {});
      if (local.uid) await this.deps.dirs()?.release(local.uid).catch(() => {});
      this.deps.ports.release((local.ports ?? []).map((p) => p.hostPort));
      this.deps.state.locals.delete(name);
      this.deps.deregistration()?.forget(name);
      return;
    }
    if (!local) {
      local = { crashes: 0, restarts: [], restartCount: task.status.restartCount ?? 0, uid: task.metadata.uid, ...(task.status.taskIP ? { taskIP: task.status.taskIP } : {}) };
      if (task.status.handle) {
        try {
          local.handle = JSON.parse(task.status.handle) as TaskHandle;
          local.ports = task.status.ports;
        } catch {
          /* unreadable handle: treat as absent */
        }
      }
      this.deps.state.locals.set(name, local);
    }
    // Adopted after an agent restart (adoption knew only its container): its restart count is the one it last reported,
    // and its address the one this node keeps for it.
    if (local.uid === undefined) local.restartCount = Math.max(local.restartCount, task.status.restartCount ?? 0);
    local.uid ??= task.metadata.uid;
    local.taskIP ??= this.deps.network()?.addressOf(name);
    if (!this.deps.state.engineOk) {
      throw new Error('container engine unreachable');
    }

    const insp = local.handle ? await driver.inspect(local.handle) : undefined;
    const exists = insp && insp.state !== 'missing';

    if (task.spec.desiredState !== 'running') {
      this.deps.health.unwatch(name);
      if (exists && insp!.state === 'running') {
        // Deregister before the stop signal: wait until no node's routing mesh sends it new connections, at most deregisterMs.
        const wait = this.holdStop(task, local);
        if (wait > 0) {
          this.deps.queue.addAfter(name, wait);
          return;
        }
        await stopContainer(driver, this.deps.clock, this.deps.log, local.handle!, task.spec.container, { task: name });
        this.deps.deregistration()?.forget(name);
        const after = await driver.inspect(local.handle!);
        await this.finish(name, local, task);
        this.deps.status.report(task, local, 'shutdown', 'stopped', { exitCode: after.exitCode, finishedAt: after.finishedAt });
      } else if (!isTerminal(task.status.state) || (local.status && !isTerminal(local.status.state))) {
        await this.finish(name, local, task);
        this.deps.status.report(task, local, 'shutdown', exists ? 'stopped' : 'never started', exists ? { exitCode: insp!.exitCode, finishedAt: insp!.finishedAt } : {});
      } else await this.finish(name, local, task);
      return;
    }

    // Copy the output of the container's current run (also of one that already exited) into this node's log store.
    if (exists) this.deps.collector()?.collect(name, task.spec.serviceName, local.handle!, `${local.handle!.id}@${insp!.startedAt ?? ''}`);

    // Desired running.
    if (exists && insp!.state === 'running') {
      await this.running(task, local, insp!);
      return;
    }
    // Done here (failed, complete, rejected): the server replaces it with a new task. Not started again even before the
    // server has the report: an event of its sandbox's container would otherwise start it again and again meanwhile.
    if (local.status && isTerminal(local.status.state)) return void (await this.finish(name, local, task));

    if (exists && insp!.state === 'exited') {
      const code = insp!.exitCode ?? -1;
      const policy = task.spec.restartPolicy;
      const why = local.unhealthy !== undefined ? `unhealthy (${local.unhealthy})` : `exited with code ${code}`;
      if (local.restartAt === undefined) {
        // A new exit: decide whether and when to restart.
        const now = this.deps.clock.now();
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
          await this.finish(name, local, task);
          this.deps.status.report(task, local, failed ? 'failed' : 'complete', why, { ...exit, ...(failed ? { error: insp!.error || `${why}${insp!.oomKilled ? ' (out of memory)' : ''}` } : {}) });
          return;
        }
        if (policy.maxAttempts > 0 && local.restarts.length >= policy.maxAttempts) {
          // Past its attempts on this node: the task fails and its service places a new one, elsewhere if it can.
          local.unhealthy = undefined;
          await this.finish(name, local, task);
          this.deps.status.report(task, local, 'failed', `restart limit reached (${policy.maxAttempts})`, { ...exit, error: `${why}; gave up after ${policy.maxAttempts} restarts on ${this.deps.state.name}` });
          return;
        }
        local.crashes++;
        const delay = restartDelay(policy, local.crashes);
        local.restartAt = now + delay;
        this.deps.status.report(
          task,
          local,
          'starting',
          delay > 0 ? `${why}; restarting in ${Math.round(delay / 100) / 10}s` : `${why}; restarting`,
          { ...exit, ...(delay > 0 ? { nextRestartAt: new Date(local.restartAt).toISOString() } : {}) },
        );
      }
      const wait = local.restartAt - this.deps.clock.now();
      if (wait > 0) {
        this.deps.queue.addAfter(name, wait);
        return;
      }
      local.restartAt = undefined;
      local.unhealthy = undefined;
      local.restarts.push(this.deps.clock.now());
      local.restartCount++;
    }

    // Create (first time) or start in place (restart).
    const targets = [...new Set([...task.spec.ports.map((p) => p.target), ...task.spec.expose])];
    const bridged = this.bridged(task);
    if (bridged === 'unavailable') {
      this.deps.status.report(task, local, 'rejected', 'could not start', { error: `this node has no task network for a task in its own network namespace (${this.deps.networkError() ?? 'not ready yet'})` });
      return;
    }
    // Host networking: a new container gets host ports for every target. In a namespace of its own, only `mode: host` published ports take one.
    // Ports recorded without all they need (an older status) are replaced.
    // UDP ports are not the allocator's (it trial-binds TCP): a bridged task's are mapped from its spec (nodeMappings).
    const needs = bridged ? task.spec.ports.filter((p) => p.mode === 'host' && p.published !== undefined && p.protocol !== 'udp').map((p) => p.target) : targets;
    if (!exists && (!local.ports || !needs.every((t) => local!.ports!.some((p) => p.target === t)) || (bridged && local.ports.length !== needs.length))) {
      if (local.ports) this.deps.ports.release(local.ports.map((p) => p.hostPort));
      // Host-mode published ports are bound as published, on this node only; every other target gets a port from the range.
      const fixed = new Map(task.spec.ports.filter((p) => p.mode === 'host' && p.published !== undefined && p.protocol !== 'udp').map((p) => [p.target, p.published!]));
      try {
        await this.deps.ports.claim([...fixed.values()]);
      } catch (e) {
        local.ports = [];
        this.deps.status.report(task, local, 'rejected', 'could not start', { error: (e as Error).message });
        return;
      }
      const host = await this.deps.ports.allocate(needs.filter((t) => !fixed.has(t)).length);
      let next = 0;
      local.ports = needs.map((target) => {
        const published = task.spec.ports.find((p) => p.target === target && p.protocol !== 'udp')?.published;
        return { target, hostPort: fixed.get(target) ?? host[next++]!, ...(published ? { published } : {}) };
      });
    }
    this.deps.status.report(task, local, exists ? 'starting' : 'preparing', exists ? 'restarting in place' : 'creating container');
    try {
      // A built image is made on this node first (builds.ts); its steps are the task's progress.
      await this.deps.builds()?.ensure(task, (m) => this.deps.status.report(task, local, 'preparing', m));
      const ctx = await this.attach(task, local, bridged);
      if (isPod(task.spec) && !exists) {
        // Its init containers run first, each to completion (pod.ts); their exits reconcile the task again.
        const init = await this.pod.runInit(task, local, this.podStarter(task, local, ctx));
        if (init.done === false) {
          if (!init.failed) return void this.deps.status.report(task, local, 'preparing', init.message);
          await this.finish(name, local, task);
          return void this.deps.status.report(task, local, 'failed', init.failed.why, { exitCode: init.failed.exitCode, finishedAt: init.failed.finishedAt, error: init.failed.why });
        }
      }
      local.handle = await driver.start({
        ...ctx.base,
        spec: await this.withFiles(task, ctx.extraHosts(task.spec.container)),
        resources: task.spec.resources,
        labels: { ...ctx.labels, [LABEL_PORTS]: JSON.stringify(local.ports ?? []) },
        // A built image was just made here (or found): there is nothing to pull it from.
        pullPolicy: task.spec.container.build ? 'never' : (task.spec.container.pullPolicy ?? this.opts.pull),
        ...this.registryAuth(task.spec.container),
      });
    } catch (e) {
      if (e instanceof DriverError && e.reason === 'engine_unavailable') throw e;
      const msg = (e as Error).message;
      this.deps.ports.release((local.ports ?? []).map((p) => p.hostPort));
      local.ports = [];
      await this.finish(name, local, task).catch(() => {});
      this.deps.status.report(task, local, 'rejected', 'could not start', { error: msg });
      return;
    }
    const after = await driver.inspect(local.handle);
    this.deps.collector()?.collect(name, task.spec.serviceName, local.handle, `${local.handle.id}@${after.startedAt ?? ''}`);
    local.startedAt = after.startedAt ? Date.parse(after.startedAt) : this.deps.clock.now();
    if (after.state === 'running') await this.running(task, local, after);
    else this.deps.queue.add(name); // it already exited: handle the exit
  }

  /**
   * attach readies what every container of the task starts with: its
   * labels and environment, and either its own namespace (its sandbox,
   * started again if the engine stopped it, and its address; its container
   * ports are its own) or, on the node's network, its host ports and the
   * service names of the mesh.
   */
  private async attach(task: Task, local: TaskLocal, bridged: TaskNetworking | undefined): Promise<StartContext> {
    const name = task.metadata.name;
    const targets = [...new Set([...task.spec.ports.map((p) => p.target), ...task.spec.expose])];
    const labels = {
      [LABEL_CLUSTER]: this.deps.state.clusterId,
      [LABEL_NODE]: this.deps.state.nodeUid,
      [LABEL_NODE_NAME]: this.deps.state.name,
      [LABEL_TASK]: task.metadata.name,
      [LABEL_TASK_UID]: task.metadata.uid,
      [LABEL_SERVICE]: task.spec.serviceName,
      [LABEL_SLOT]: String(task.spec.slot),
    };
    const env: Record<string, string> = { BATON_HOST_IP: this.opts.address, BATON_TASK: task.metadata.name, BATON_SERVICE: task.spec.serviceName, BATON_SLOT: String(task.spec.slot) };
    let sandbox: SandboxHandle | undefined;
    let hosts: string[] = [];
    if (bridged) {
      // The task's hostname is its sandbox's: its containers join the sandbox's namespaces and take it.
      const dns = this.deps.dns(task.metadata.labels['baton.stack'] ?? '');
      const hostname = task.spec.container.hostname;
      const net = await bridged.prepare(name, task.metadata.uid, labels, hostname ? { ...(dns ?? { servers: [], search: [], options: [] }), hostname } : dns);
      sandbox = net.sandbox;
      local.taskIP = net.taskIP;
      this.deps.networkChanged();
      await bridged.mapPorts(name, nodeMappings(task, local));
      env.BATON_HOST_IP = net.taskIP;
      for (const t of targets) env[`BATON_PORT_${t}`] = String(t);
      if (targets.length) env.PORT = String(targets[0]);
    } else {
      for (const p of local.ports ?? []) env[`BATON_PORT_${p.target}`] = String(p.hostPort);
      if (local.ports?.length) env.PORT = String(local.ports[0]!.hostPort);
      // Service names resolve to this node's VIPs, where the mesh listens (Swarm's service DNS, for unmodified images).
      const mesh = this.deps.mesh();
      if (mesh && task.spec.container.networkMode === 'host') hosts = await mesh.hostsWhenSynced(task.metadata.labels['baton.stack'] ?? '');
    }
    return {
      labels,
      base: { taskName: task.metadata.name, taskUid: task.metadata.uid, serviceName: task.spec.serviceName, slot: task.spec.slot, env, ...(sandbox ? { sandbox } : {}) },
      extraHosts: (c) => (hosts.length && c.networkMode === 'host' ? { ...c, extraHosts: [...c.extraHosts, ...hosts] } : c),
    };
  }

  /** registryAuth: how to read the registry login a container's image is pulled with, when it names one (its pullSecret); read only if the engine pulls. */
  private registryAuth(spec: ContainerSpec): { registryAuth?: () => Promise<RegistryCredential> } {
    const files = spec.pullSecret ? this.deps.files() : undefined;
    return files ? { registryAuth: () => files.registryAuth(spec) } : {};
  }

  /** withFiles: a container's secrets and configs written to the node's tmpfs (again at every start) and bind-mounted read-only, and its task directories. */
  private async withFiles(task: Task, spec: ContainerSpec, container?: string): Promise<ContainerSpec> {
    const files = await this.deps.files()?.prepare(task, spec, container);
    const mounts = [...spec.mounts, ...(files ?? [])];
    const dirs = this.deps.dirs();
    return { ...spec, mounts: dirs ? await dirs.resolve(task.metadata.uid, mounts) : mounts.filter((m) => m.type !== 'task') };
  }

  /** podStarter starts one of the task's other containers as its main one: same namespace, environment and labels (but no ports of its own). */
  private podStarter(task: Task, local: TaskLocal, known?: StartContext): StartContainer {
    let ctx = known;
    return async (pc: PodContainer, role) => {
      if (!ctx) {
        const bridged = this.bridged(task);
        if (bridged === 'unavailable') throw new Error(`this node has no task network (${this.deps.networkError() ?? 'not ready yet'})`);
        ctx = await this.attach(task, local, bridged);
      }
      return this.opts.driver.start({
        ...ctx.base,
        spec: await this.withFiles(task, ctx.extraHosts(pc.container), pc.name),
        resources: pc.resources,
        labels: { ...ctx.labels, [LABEL_CONTAINER]: pc.name },
        pullPolicy: pc.container.pullPolicy ?? this.opts.pull,
        ...this.registryAuth(pc.container),
        container: { name: pc.name, role },
      });
    };
  }

  /**
   * running reports a running container: its health and readiness verdicts,
   * and readyAt at once when it has no probe (one status write, not two),
   * or stops it when its health check fails.
   */
  private async running(task: Task, local: TaskLocal, insp: TaskInspect): Promise<void> {
    const name = task.metadata.name;
    const driver = this.opts.driver;
    // After an agent restart the node's mapping table starts empty: a running task's node ports are mapped again.
    const network = local.taskIP ? this.deps.network() : undefined;
    if (network) await network.mapPorts(name, nodeMappings(task, local));
    if (local.startedAt === undefined) local.startedAt = insp.startedAt ? Date.parse(insp.startedAt) : this.deps.clock.now();
    const c = task.spec.container;
    const live = hasProbe(c.healthcheck) ? c.healthcheck : undefined;
    const ready = hasProbe(c.readiness) ? c.readiness : undefined;
    let v: HealthVerdict = {};
    if (live || ready) {
      // A task in its own namespace is probed at its address, on its container ports.
      const probeAt = local.taskIP ? { address: local.taskIP, ports: [] } : { address: this.opts.address, ports: local.ports ?? [] };
      this.deps.health.watch(name, `${local.handle!.id}@${insp.startedAt ?? ''}`, { live, ready }, { handle: local.handle!, image: c.image, ...probeAt });
      v = this.deps.health.verdict(name);
    } else this.deps.health.unwatch(name);
    if (v.healthy === false) {
      // Unhealthy: stop it, and its restart policy takes over, as in Swarm.
      local.unhealthy = v.output ?? 'health check failed';
      this.deps.health.unwatch(name);
      this.deps.log.info({ task: name, why: local.unhealthy }, 'task failed its health check; stopping it');
      await stopContainer(driver, this.deps.clock, this.deps.log, local.handle!, c, { task: name });
      this.deps.queue.add(name);
      return;
    }
    const mainReady = (!live || v.healthy === true) && (!ready || v.ready === true);
    // Its sidecars run beside it (pod.ts); the task is ready when they are too.
    let sidecars: Awaited<ReturnType<PodContainers['superviseSidecars']>> | undefined;
    await this.pod.recall(task, local);
    if (task.spec.sidecars?.length) {
      this.pod.local(local).mainReady = live || ready ? mainReady : undefined;
      const probeAt = local.taskIP ? { address: local.taskIP, ports: [] } : { address: this.opts.address, ports: local.ports ?? [] };
      sidecars = await this.pod.superviseSidecars(task, local, this.podStarter(task, local), probeAt);
      if (sidecars.failed) {
        // A sidecar past its restart attempts fails the task, as the main container would: its service places a new one.
        await stopContainer(driver, this.deps.clock, this.deps.log, local.handle!, c, { task: name });
        await this.finish(name, local, task);
        this.deps.status.report(task, local, 'failed', sidecars.failed.why, { exitCode: sidecars.failed.exitCode, error: `${sidecars.failed.why} on ${this.deps.state.name}` });
        return;
      }
    }
    const isReady = mainReady && (sidecars?.ready ?? true);
    if (!isReady) local.readySince = undefined;
    else local.readySince ??= this.deps.clock.now();
    const waiting = (task.spec.sidecars ?? []).map((p) => ({ name: p.name, c: local.pod?.containers.get(p.name) })).find(({ c }) => !c || c.state !== 'running' || c.ready === false);
    const message = isReady
      ? 'started'
      : !mainReady && v.ready === false
        ? `not ready: ${v.output ?? 'readiness probe failing'}`
        : !mainReady
          ? `started; waiting for the ${live && v.healthy === undefined ? 'health check' : 'readiness probe'}`
          : `started; waiting for container ${waiting?.name ?? '?'}${waiting?.c?.message ? ` (${waiting.c.message})` : ''}`;
    // With sidecar probes, `ready` speaks for every container (isTaskReady reads it).
    const readyField = sidecars?.probes ? (v.ready ?? true) && sidecars.ready : v.ready;
    this.deps.status.report(task, local, 'running', message, {
      startedAt: insp.startedAt,
      ...(isReady ? { readyAt: new Date(local.readySince!).toISOString() } : {}),
      ...(v.healthy !== undefined ? { healthy: v.healthy } : {}),
      ...(readyField !== undefined ? { ready: readyField } : {}),
    });
  }

  /**
   * bridged: the task network a task's container joins through a namespace of
   * its own (network mode bridge), undefined for the node's network (host
   * mode, none, or a driver without sandboxes, whose tasks do not really
   * listen), 'unavailable' when it should have one and this node has none.
   */
  private bridged(task: Task): TaskNetworking | 'unavailable' | undefined {
    if (task.spec.container.networkMode !== 'bridge' || !this.opts.driver.sandbox) return undefined;
    return this.deps.network() ?? 'unavailable';
  }

  /** finish: the task's main container no longer runs for good (stopped, failed, complete): its other containers stop, and its namespace and address go. */
  private async finish(name: string, local: TaskLocal, task: Task): Promise<void> {
    await this.pod.stop(name, local, task);
    await this.releaseNetwork(name, local);
  }

  /** releaseNetwork gives back a task's namespace and address once its container no longer runs for good (stopped, failed, complete, gone). */
  private async releaseNetwork(name: string, local: TaskLocal): Promise<void> {
    const network = this.deps.network();
    if (!network || (!local.taskIP && !network.addressOf(name))) return;
    await network.release(name, local.uid);
    local.taskIP = undefined;
    this.deps.networkChanged();
  }

  /**
   * holdStop is how long a task told to stop should keep running so that no
   * node's mesh picks it for a new connection as it stops (deregistration.ts):
   * only a task with ports that was ready here ever had an endpoint.
   */
  private holdStop(task: Task, local: TaskLocal): number {
    const deregistration = this.deps.deregistration();
    if (!deregistration || (task.spec.ports.length === 0 && task.spec.expose.length === 0) || local.readySince === undefined) return 0;
    return deregistration.remainingMs(task.metadata.name, task.spec.serviceName);
  }
}

/** StartContext is what every container of a task starts with (attach). */
interface StartContext {
  labels: Record<string, string>;
  base: Pick<TaskConfig, 'taskName' | 'taskUid' | 'serviceName' | 'slot' | 'env' | 'sandbox'>;
  /** The mesh's service names, for a container on the node's network. */
  extraHosts: (c: ContainerSpec) => ContainerSpec;
}

/** nodeMappings are a bridged task's node ports: its TCP host ports (claimed from the allocator), and its `mode: host` UDP ports as published. */
function nodeMappings(task: Task, local: TaskLocal): HostPortMapping[] {
  const hostIP = (target: number, protocol: 'tcp' | 'udp') => {
    const ip = task.spec.ports.find((p) => p.mode === 'host' && p.target === target && p.protocol === protocol)?.hostIP;
    return ip === undefined ? {} : { hostIP: ip };
  };
  const tcp = (local.ports ?? []).map((p) => ({ hostPort: p.hostPort, target: p.target, protocol: 'tcp' as const, ...hostIP(p.target, 'tcp') }));
  const udp = task.spec.ports
    .filter((p) => p.mode === 'host' && p.published !== undefined && p.protocol === 'udp')
    .map((p) => ({ hostPort: p.published!, target: p.target, protocol: 'udp' as const, ...(p.hostIP === undefined ? {} : { hostIP: p.hostIP }) }));
  return [...tcp, ...udp];
}
