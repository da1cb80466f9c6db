/**
 * PodContainers drives the containers of a task beyond its main one, for the
 * TaskReconciler and level-triggered like it (every event of any of the
 * task's containers, and every resync, reconciles the task):
 *
 * - init containers run in order, each to completion, before the main
 *   container and the sidecars are made; one that fails is started again
 *   in place after the restart policy's backoff, or fails the task when the
 *   policy restarts nothing (or its attempts are spent), as the kubelet does;
 * - sidecars start with the main container and run beside it; one that
 *   exits is started again in place by the task's restart policy, with a
 *   crash backoff of its own, and a failing health check stops it the same
 *   way; their probes count towards the task's readiness;
 * - when the task ends (stopped, failed, complete) they are stopped, and
 *   removed (their last lines copied) when the task is.
 *
 * Each container's output is kept under `<task>~<container>` in the node's
 * log store, and its probes run under the same key.
 */
import type { Logger } from 'pino';
import { hasProbe, MAIN_CONTAINER, restartDelay, type ContainerStatus, type PodContainer, type Task, type TaskState, type TaskStatus } from '../api/types.js';
import type { Clock } from '../base/clock.js';
import type { WorkQueue } from '../base/workqueue.js';
import { DriverError, type Driver, type TaskHandle, type TaskInspect } from './driver.js';
import type { HealthMonitor, ProbeTarget } from './health.js';
import type { LogCollector } from './logs.js';
import { stopContainer } from './preStop.js';
import type { TaskLocal } from './state.js';

/** ContainerLocal is what the agent knows of one pod container. */
export interface ContainerLocal {
  handle?: TaskHandle;
  state: ContainerStatus['state'];
  exitCode?: number;
  crashes: number;
  /** Restart times within the policy window. */
  restarts: number[];
  restartCount: number;
  restartAt?: number;
  readySince?: number;
  /** Its probes' last verdict (undefined: it has none). */
  ready?: boolean;
  /** Set when it was stopped for failing its health check: why. */
  unhealthy?: string;
  message?: string;
}

export interface PodLocal {
  containers: Map<string, ContainerLocal>;
  /** Every init container has completed: the task's other containers were made after them. */
  initDone: boolean;
  /** The main container's own readiness, for its line in the status. */
  mainReady?: boolean;
  /** What an agent restart forgot was read back (recall). */
  recalled?: boolean;
}

/** podKey names a pod container's logs and probes: `<task>~<container>` (a task name never holds "~"). */
export function podKey(task: string, container: string): string {
  return `${task}~${container}`;
}

/** taskOfKey is the task a log or probe key belongs to. */
export function taskOfKey(key: string): string {
  const i = key.indexOf('~');
  return i < 0 ? key : key.slice(0, i);
}

/** StartContainer makes one pod container (or starts it again in place), as the reconciler makes the main one. */
export type StartContainer = (pc: PodContainer, role: 'init' | 'sidecar') => Promise<TaskHandle>;

/** Why the task fails because of one of its pod containers. */
export interface PodFailure {
  why: string;
  exitCode: number;
  finishedAt?: string;
}

export interface PodDeps {
  driver: Driver;
  health: HealthMonitor;
  queue: WorkQueue;
  clock: Clock;
  log: Logger;
  collector: () => LogCollector | undefined;
  /** A crash this long after a container became ready starts its backoff afresh. */
  backoffResetMs: number;
}

export class PodContainers {
  constructor(private readonly deps: PodDeps) {}

  /** local: the task's pod state, made on first use; a task whose main container exists has had its init containers run. */
  local(local: TaskLocal): PodLocal {
    local.pod ??= { containers: new Map(), initDone: local.handle !== undefined, recalled: true };
    return local.pod;
  }

  /**
   * runInit runs the task's init containers in order, one step per call:
   * `done` once every one has completed; otherwise what it waits for, or
   * why the task fails.
   */
  async runInit(task: Task, local: TaskLocal, start: StartContainer): Promise<{ done: true } | { done: false; message: string; failed?: PodFailure }> {
    const pod = this.local(local);
    const inits = task.spec.initContainers ?? [];
    if (pod.initDone) return { done: true };
    for (const [i, pc] of inits.entries()) {
      const c = this.container(pod, pc.name);
      const step = `init container ${pc.name} (${i + 1}/${inits.length})`;
      if (c.state === 'exited' && c.exitCode === 0 && c.restartAt === undefined) continue;
      const insp = c.handle ? await this.deps.driver.inspect(c.handle) : undefined;
      if (insp && insp.state !== 'missing') this.collect(task, pc.name, c, insp);
      if (insp?.state === 'running') {
        c.state = 'running';
        return { done: false, message: `running ${step}` };
      }
      if (insp?.state === 'exited') {
        const code = insp.exitCode ?? -1;
        if (code === 0 && c.restartAt === undefined) {
          Object.assign(c, { state: 'exited', exitCode: 0, message: 'completed' });
          continue;
        }
        if (c.restartAt === undefined) {
          const policy = task.spec.restartPolicy;
          const now = this.deps.clock.now();
          c.restarts = c.restarts.filter((t) => !policy.windowMs || now - t < policy.windowMs);
          Object.assign(c, { state: 'exited', exitCode: code });
          const why = `${step} exited with code ${code}${insp.oomKilled ? ' (out of memory)' : ''}`;
          if (policy.condition === 'none') return { done: false, message: why, failed: { why, exitCode: code, finishedAt: insp.finishedAt } };
          if (policy.maxAttempts > 0 && c.restarts.length >= policy.maxAttempts) {
            const gave = `${why}; gave up after ${policy.maxAttempts} restarts`;
            return { done: false, message: gave, failed: { why: gave, exitCode: code, finishedAt: insp.finishedAt } };
          }
          c.crashes++;
          const delay = restartDelay(policy, c.crashes);
          c.restartAt = now + delay;
          c.message = delay > 0 ? `${why}; restarting in ${Math.round(delay / 100) / 10}s` : `${why}; restarting`;
        }
        const wait = c.restartAt - this.deps.clock.now();
        if (wait > 0) {
          this.deps.queue.addAfter(task.metadata.name, wait);
          return { done: false, message: c.message ?? step };
        }
        c.restartAt = undefined;
        c.restarts.push(this.deps.clock.now());
        c.restartCount++;
      }
      // Never made, gone, or due to run again: it runs now, and its exit (an engine event) reconciles the task again.
      c.handle = await start(pc, 'init');
      Object.assign(c, { state: 'running', message: undefined });
      const after = await this.deps.driver.inspect(c.handle);
      this.collect(task, pc.name, c, after);
      if (after.state === 'exited') this.deps.queue.add(task.metadata.name);
      return { done: false, message: `running ${step}` };
    }
    pod.initDone = true;
    return { done: true };
  }

  /**
   * recall completes what an agent restart left of a task's pod state (the
   * adopted handles only): how its init containers ended, and each
   * container's restart count as the task's status last had it.
   */
  async recall(task: Task, local: TaskLocal): Promise<void> {
    const pod = local.pod;
    if (!pod || pod.recalled) return;
    pod.recalled = true;
    for (const [name, c] of pod.containers) {
      const was = task.status.containers?.find((x) => x.name === name);
      if (was && c.restartCount === 0) c.restartCount = was.restartCount;
      if (!c.handle || c.state !== 'waiting' || !task.spec.initContainers?.some((p) => p.name === name)) continue;
      const insp = await this.deps.driver.inspect(c.handle);
      if (insp.state === 'exited') Object.assign(c, { state: 'exited', exitCode: insp.exitCode, ...(insp.exitCode === 0 ? { message: 'completed' } : {}) });
    }
  }

  /**
   * superviseSidecars keeps the task's sidecars running beside its running
   * main container: `ready` is whether every one of them is (running, its
   * probes passing), `probes` whether any has a probe, `failed` why the task
   * fails (a sidecar past its restart attempts).
   */
  async superviseSidecars(task: Task, local: TaskLocal, start: StartContainer, probeAt: Omit<ProbeTarget, 'handle' | 'image'>): Promise<{ ready: boolean; probes: boolean; failed?: PodFailure }> {
    const pod = this.local(local);
    const { driver, health, clock, queue } = this.deps;
    const name = task.metadata.name;
    let ready = true;
    let probes = false;
    for (const pc of task.spec.sidecars ?? []) {
      const c = this.container(pod, pc.name);
      const key = podKey(name, pc.name);
      const live = hasProbe(pc.container.healthcheck) ? pc.container.healthcheck : undefined;
      const readiness = hasProbe(pc.container.readiness) ? pc.container.readiness : undefined;
      if (live || readiness) probes = true;
      const insp = c.handle ? await driver.inspect(c.handle) : undefined;
      if (insp && insp.state !== 'missing') this.collect(task, pc.name, c, insp);
      if (insp?.state === 'running') {
        c.state = 'running';
        if (!live && !readiness) {
          health.unwatch(key);
          c.ready = undefined;
          c.readySince ??= clock.now();
          c.message = undefined;
          continue;
        }
        health.watch(key, `${c.handle!.id}@${insp.startedAt ?? ''}`, { live, ready: readiness }, { ...probeAt, handle: c.handle!, image: pc.container.image });
        const v = health.verdict(key);
        if (v.healthy === false) {
          // Unhealthy: stopped, and the restart policy takes over, as for the main container.
          c.unhealthy = v.output ?? 'health check failed';
          health.unwatch(key);
          this.deps.log.info({ task: name, container: pc.name, why: c.unhealthy }, 'a sidecar failed its health check; stopping it');
          await stopContainer(driver, clock, this.deps.log, c.handle!, pc.container, { task: name, container: pc.name });
          queue.add(name);
          ready = false;
          continue;
        }
        const ok = (!live || v.healthy === true) && (!readiness || v.ready === true);
        c.ready = ok;
        if (ok) {
          c.readySince ??= clock.now();
          c.message = undefined;
        } else {
          c.readySince = undefined;
          ready = false;
          c.message = v.ready === false ? `not ready: ${v.output ?? 'readiness probe failing'}` : `waiting for its ${live && v.healthy === undefined ? 'health check' : 'readiness probe'}`;
        }
        continue;
      }
      health.unwatch(key);
      if (insp?.state === 'exited') {
        const policy = task.spec.restartPolicy;
        if (c.restartAt === undefined) {
          const now = clock.now();
          const code = insp.exitCode ?? -1;
          const ended = insp.finishedAt ? Date.parse(insp.finishedAt) : now;
          if (c.readySince !== undefined && ended - c.readySince >= this.deps.backoffResetMs) c.crashes = 0;
          c.readySince = undefined;
          const failed = code !== 0 || c.unhealthy !== undefined;
          const why = c.unhealthy !== undefined ? `unhealthy (${c.unhealthy})` : `exited with code ${code}${insp.oomKilled ? ' (out of memory)' : ''}`;
          c.unhealthy = undefined;
          Object.assign(c, { state: 'exited', exitCode: code, ready: undefined });
          c.restarts = c.restarts.filter((t) => !policy.windowMs || now - t < policy.windowMs);
          if (!(policy.condition === 'any' || (policy.condition === 'on-failure' && failed))) {
            // Done, and its policy runs it no more (a job's sidecar that finished its work).
            c.message = why;
            if (failed) ready = false;
            continue;
          }
          if (policy.maxAttempts > 0 && c.restarts.length >= policy.maxAttempts) {
            const gave = `sidecar ${pc.name} ${why}; gave up after ${policy.maxAttempts} restarts`;
            c.message = gave;
            return { ready: false, probes, failed: { why: gave, exitCode: code, finishedAt: insp.finishedAt } };
          }
          c.crashes++;
          const delay = restartDelay(policy, c.crashes);
          c.restartAt = now + delay;
          c.message = delay > 0 ? `${why}; restarting in ${Math.round(delay / 100) / 10}s` : `${why}; restarting`;
        }
        ready = false;
        const wait = c.restartAt - clock.now();
        if (wait > 0) {
          queue.addAfter(name, wait);
          continue;
        }
        c.restartAt = undefined;
        c.restarts.push(clock.now());
        c.restartCount++;
      }
      // Never made, gone, or due to restart.
      ready = false;
      try {
        c.handle = await start(pc, 'sidecar');
        Object.assign(c, { state: 'running', message: undefined });
        const after = await driver.inspect(c.handle);
        this.collect(task, pc.name, c, after);
        // Its probes (and an exit at once) are looked at in the next pass.
        queue.add(name);
      } catch (e) {
        if (e instanceof DriverError && e.reason === 'engine_unavailable') throw e;
        Object.assign(c, { state: 'waiting', message: `could not start: ${(e as Error).message}` });
        const policy = task.spec.restartPolicy;
        c.crashes++;
        queue.addAfter(name, Math.max(1000, restartDelay(policy, c.crashes)));
      }
    }
    return { ready, probes };
  }

  /** stop stops every pod container that runs (the task ended, or stops): each with its own grace period when the task is known. */
  async stop(name: string, local: TaskLocal, task?: Task): Promise<void> {
    if (!local.pod) return;
    const specs = new Map([...(task?.spec.initContainers ?? []), ...(task?.spec.sidecars ?? [])].map((p) => [p.name, p.container]));
    await Promise.all(
      [...local.pod.containers].map(async ([cname, c]) => {
        this.deps.health.unwatch(podKey(name, cname));
        c.restartAt = undefined;
        if (!c.handle) return;
        const insp = await this.deps.driver.inspect(c.handle);
        if (insp.state !== 'running') return;
        const spec = specs.get(cname);
        await stopContainer(this.deps.driver, this.deps.clock, this.deps.log, c.handle, spec ?? { stopGracePeriodMs: 10_000 }, { task: name, container: cname });
        const after = await this.deps.driver.inspect(c.handle);
        Object.assign(c, { state: 'exited', exitCode: after.exitCode, message: 'stopped', ready: undefined });
      }),
    );
  }

  /** remove stops and removes every pod container, their last lines copied first. */
  async remove(name: string, local: TaskLocal): Promise<void> {
    if (!local.pod) return;
    await this.stop(name, local);
    for (const [cname, c] of local.pod.containers) {
      await this.deps.collector()?.drain(podKey(name, cname));
      if (c.handle) await this.deps.driver.destroy(c.handle);
    }
    local.pod = undefined;
  }

  private container(pod: PodLocal, name: string): ContainerLocal {
    let c = pod.containers.get(name);
    if (!c) pod.containers.set(name, (c = fresh()));
    return c;
  }

  private collect(task: Task, container: string, c: ContainerLocal, insp: TaskInspect): void {
    this.deps.collector()?.collect(podKey(task.metadata.name, container), task.spec.serviceName, c.handle!, `${c.handle!.id}@${insp.startedAt ?? ''}`);
  }
}

function fresh(): ContainerLocal {
  return { state: 'waiting', crashes: 0, restarts: [], restartCount: 0 };
}

/**
 * podStatuses is the `containers` of a pod task's status: its init
 * containers, its main container (from the task's own state), its sidecars.
 */
export function podStatuses(task: Task, local: TaskLocal, state: TaskState, extra: Partial<TaskStatus>): ContainerStatus[] {
  const pod = local.pod;
  const line = (name: string, role: ContainerStatus['role']): ContainerStatus => {
    const c = pod?.containers.get(name);
    if (!c) return { name, role, state: 'waiting', restartCount: 0 };
    return {
      name,
      role,
      state: c.state,
      restartCount: c.restartCount,
      ...(c.exitCode !== undefined && c.state === 'exited' ? { exitCode: c.exitCode } : {}),
      ...(c.ready !== undefined ? { ready: c.ready } : {}),
      ...(c.message ? { message: c.message } : {}),
    };
  };
  const mainState: ContainerStatus['state'] = state === 'running' ? 'running' : ['complete', 'failed', 'shutdown'].includes(state) && local.handle ? 'exited' : 'waiting';
  const main: ContainerStatus = {
    name: task.spec.containerName ?? MAIN_CONTAINER,
    role: 'main',
    state: mainState,
    restartCount: local.restartCount,
    ...(mainState === 'exited' && extra.exitCode !== undefined ? { exitCode: extra.exitCode } : {}),
    ...(mainState === 'running' && pod?.mainReady !== undefined ? { ready: pod.mainReady } : {}),
  };
  return [...(task.spec.initContainers ?? []).map((p) => line(p.name, 'init')), main, ...(task.spec.sidecars ?? []).map((p) => line(p.name, 'sidecar'))];
}
