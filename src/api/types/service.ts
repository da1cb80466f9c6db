/**
 * Services: their spec (update and rollback settings, pods, stateful slots,
 * networks, autoscaling, jobs), their status and their revisions.
 * Part of the API types: api/types.ts re-exports every part.
 */
import type { ContainerSpec, PlacementSpec, PortSpec, ResourceSpec, RestartPolicy } from './container.js';
import type { Resource } from './meta.js';

/** How a spec change rolls out (Compose `deploy.update_config` / `rollback_config`, Swarm's semantics). */
export interface UpdateConfig {
  /** Slots updated at once; 0 = all at once. */
  parallelism: number;
  /** Wait after a batch's new tasks are running (ready, where they have a health check) before the next batch starts. */
  delayMs: number;
  /** What a failed rollout does: stop starting new slots (pause), go on, or roll back to the previous revision. */
  failureAction: 'pause' | 'continue' | 'rollback';
  /**
   * Swarm's monitor: after each new task is ready, how long a failure of it
   * (it fails, restarts or turns unhealthy) counts toward maxFailureRatio.
   * Watched in the background: the next batch does not wait for it, the
   * rollout's completion does (after the last batch, as Swarm's does).
   */
  monitorMs: number;
  /**
   * Kubernetes' minReadySeconds (`x-baton.min_ready`): a new task counts as
   * available, and so lets its old task stop and the next batch start, only
   * once it stayed ready this long; default 0.
   */
  minReadyMs?: number;
  /** Failed tasks / updated slots tolerated before failureAction (0: the first failure). */
  maxFailureRatio: number;
  /** stop-first: the old task stops before its replacement starts; start-first: the replacement is ready first. */
  order: 'stop-first' | 'start-first';
  /** A rollout that moves no slot forward for this long is stalled (Kubernetes' progressDeadlineSeconds); undefined: never. */
  progressDeadlineMs?: number;
}

export const DEFAULT_UPDATE_CONFIG: UpdateConfig = { parallelism: 1, delayMs: 0, failureAction: 'pause', monitorMs: 5000, maxFailureRatio: 0, order: 'stop-first' };

/** A canary rollout: `count` tasks of the new spec start beside the old ones and wait for `baton service promote` (or autoPromoteMs of health). */
export interface CanarySpec {
  count: number;
  autoPromoteMs?: number;
}

export interface ServiceSpec {
  /** The stack (Compose project) this service came from; "" for none. */
  stack: string;
  /** The service's name inside its stack (Compose key). */
  shortName: string;
  /**
   * replicated: `replicas` tasks placed by the scheduler; global: one task on
   * every eligible node; replicated-job: tasks that run to completion
   * (`job.completions` in all, `job.parallelism` at once); global-job: one
   * task to completion on every eligible node.
   */
  mode: 'replicated' | 'global' | 'replicated-job' | 'global-job';
  replicas: number;
  container: ContainerSpec;
  ports: PortSpec[];
  /** Ports reachable by other tasks only (Compose `expose`). */
  expose: number[];
  /**
   * More ports of the service's VIP, each answered by a container port
   * (a Kubernetes Service's `port: 80, targetPort: 8080`); the VIP also
   * serves every container port of `ports` and `expose` as itself. TCP.
   */
  vipPorts?: VipPort[];
  /**
   * The networks its tasks join (Compose `networks:`), by full name
   * (`<stack>_<key>`, or an external network's own name), with the extra
   * names it answers to on each. Empty: its stack's default network
   * (networkOf). Tasks reach only the services of networks they share.
   */
  networks?: ServiceNetwork[];
  resources: ResourceSpec;
  restartPolicy: RestartPolicy;
  placement: PlacementSpec;
  /** Rollout of a spec change (default DEFAULT_UPDATE_CONFIG). */
  update?: UpdateConfig;
  /** Rollout of a rollback (default DEFAULT_UPDATE_CONFIG). */
  rollbackConfig?: UpdateConfig;
  canary?: CanarySpec;
  /** Changed by `baton service restart`: a new value rolls every task out again with the same spec (Swarm's ForceUpdate). */
  forceUpdate?: number;
  /** Replicas follow load between min and max; `replicas` is only the starting count. */
  autoscale?: AutoscaleSpec;
  /** A job's run: how many successful tasks complete it, how many run at once, how many failed tasks fail it. */
  job?: JobSpec;
  /** A cron job: the service is a template; each firing makes a run (a replicated-job service `<name>-<time>`). */
  schedule?: ScheduleSpec;
  /**
   * Compose's `depends_on`: when the service is first deployed, its tasks
   * wait to be placed until each dependency meets its condition. Once one
   * of its tasks has run, it is not held again (later restarts start at once).
   */
  dependsOn?: Dependency[];
  /**
   * A Kubernetes StatefulSet's identity for each slot: the task of slot N is
   * ordinal N−1, named `<shortName>-<ordinal>` (its hostname), with named
   * volumes of its own that its slot's tasks keep, on the node that has them.
   */
  stateful?: StatefulSpec;
  /**
   * How many of its tasks must stay ready while a node drain or a stop-first
   * update stops some (a Kubernetes PodDisruptionBudget): a drain past its
   * deadline stops a task before its replacement is ready, and a stop-first
   * update stops an old task before its new one runs, only while the budget
   * allows; else it waits for the replacement (the update starts the new task
   * first). A number, or a percentage of the replicas ("50%").
   */
  disruptionBudget?: DisruptionBudget;
  /** Revisions kept besides the current one (`baton service history`, rollbacks; Kubernetes' revisionHistoryLimit); default 9. */
  revisionHistoryLimit?: number;
  /** The main container's name inside its task (a Kubernetes container's name); default "main". */
  containerName?: string;
  /** More containers of each task, started with the main one (a pod's sidecars): see PodContainer. */
  sidecars?: PodContainer[];
  /** Containers run in order, each to completion, before the task's others start (a pod's init containers). */
  initContainers?: PodContainer[];
  /** Baton extension (Compose `x-baton`); later issues add keys. */
  x: Record<string, unknown>;
}

/**
 * PodContainer is one more container of a task, as in a Kubernetes pod or a
 * Nomad group: it shares the task's network namespace (its ports are the
 * task's, localhost reaches the others), its `task` mounts (emptyDir) and
 * its lifetime. A crash restarts that container alone, by the task's
 * restart policy; the task is ready when every container's probes pass.
 */
export interface PodContainer {
  /** Its name inside the task (a DNS label): `baton logs TASK -c NAME`. */
  name: string;
  container: ContainerSpec;
  /** Its own limits; the task's reservations (what the scheduler places) already count it. */
  resources: ResourceSpec;
}

/** DisruptionBudget: one of minAvailable or maxUnavailable, each a count or a percentage of the replicas ("25%"). */
export interface DisruptionBudget {
  minAvailable?: number | string;
  maxUnavailable?: number | string;
}

/**
 * disruptionsAllowed: how many of a service's ready tasks may stop before
 * their replacements are ready, with `expected` replicas of which `ready`
 * are ready now; percentages round up, as Kubernetes rounds them.
 */
export function disruptionsAllowed(b: DisruptionBudget, expected: number, ready: number): number {
  const count = (v: number | string) => (typeof v === 'number' ? v : Math.ceil((Number(v.slice(0, -1)) / 100) * expected));
  const healthy = b.minAvailable !== undefined ? count(b.minAvailable) : b.maxUnavailable !== undefined ? expected - count(b.maxUnavailable) : 0;
  return ready - healthy;
}

/** The main container's name when a service gives none. */
export const MAIN_CONTAINER = 'main';

/** podContainers: whether a task runs more than its one container. */
export function isPod(s: { sidecars?: PodContainer[]; initContainers?: PodContainer[] }): boolean {
  return (s.sidecars?.length ?? 0) > 0 || (s.initContainers?.length ?? 0) > 0;
}

/** podContainerNames: the names of a task's containers, main first. */
export function podContainerNames(s: { containerName?: string; sidecars?: PodContainer[]; initContainers?: PodContainer[] }): string[] {
  return [s.containerName ?? MAIN_CONTAINER, ...(s.sidecars ?? []).map((p) => p.name), ...(s.initContainers ?? []).map((p) => p.name)];
}

type PodSpecLike = { container: ContainerSpec; sidecars?: PodContainer[]; initContainers?: PodContainer[] };

/** podContainerSpecs: every container spec of a service's or task's tasks, main first, with its key path in the spec. */
export function podContainerSpecs(s: PodSpecLike): { path: string; container: ContainerSpec }[] {
  return [
    { path: 'container', container: s.container },
    ...(s.sidecars ?? []).map((p, i) => ({ path: `sidecars[${i}].container`, container: p.container })),
    ...(s.initContainers ?? []).map((p, i) => ({ path: `initContainers[${i}].container`, container: p.container })),
  ];
}

/** mapPodContainers rewrites every container spec of a service's or task's tasks (`path` as podContainerSpecs). */
export function mapPodContainers<S extends PodSpecLike>(s: S, fn: (c: ContainerSpec, path: string) => ContainerSpec): S {
  const pod = (list: PodContainer[] | undefined, key: string) => list?.map((p, i) => ({ ...p, container: fn(p.container, `${key}[${i}].container`) }));
  const sidecars = pod(s.sidecars, 'sidecars');
  const initContainers = pod(s.initContainers, 'initContainers');
  return { ...s, container: fn(s.container, 'container'), ...(sidecars ? { sidecars } : {}), ...(initContainers ? { initContainers } : {}) };
}

export interface StatefulSpec {
  /** OrderedReady: a slot's task is placed only once every lower slot's task is ready; false: all at once (Parallel). */
  ordered: boolean;
  /** Volumes per ordinal (volumeClaimTemplates): named `<stack>_<name>-<shortName>-<ordinal>`, mounted at target (in the named pod container; absent: the main one). */
  volumes: { name: string; target: string; readOnly: boolean; container?: string }[];
}

/** statefulOrdinal: the ordinal of a StatefulSet's slot (Kubernetes counts from 0, slots from 1). */
export function statefulOrdinal(slot: number): number {
  return slot - 1;
}

export interface Dependency {
  /** The dependency's service name (`<stack>_<key>`). */
  service: string;
  /** started: every wanted replica runs; healthy: every one is ready; completed: its job completed. */
  condition: 'service_started' | 'service_healthy' | 'service_completed_successfully';
  /** false: a dependency that is not deployed is not waited for. */
  required: boolean;
}

export interface VipPort {
  /** The port on the VIP. */
  port: number;
  /** The container port it reaches (one of the service's targets). */
  target: number;
}

export interface ServiceNetwork {
  name: string;
  aliases: string[];
}

/** defaultNetwork: the network a stack's services join when they name none (Compose's `<project>_default`). */
export function defaultNetwork(stack: string): string {
  return `${stack || 'baton'}_default`;
}

/** serviceNetworks: the networks a service's tasks are on, its stack's default one when it names none. */
export function serviceNetworks(spec: Pick<ServiceSpec, 'stack' | 'networks'>): ServiceNetwork[] {
  return spec.networks?.length ? spec.networks : [{ name: defaultNetwork(spec.stack), aliases: [] }];
}

/** `x-baton.autoscale`: Kubernetes HPA's semantics, built in. */
export interface AutoscaleSpec {
  min: number;
  max: number;
  /** Target CPU utilisation (0.6 = 60%) of the reservation, else the limit, else one core. */
  cpu?: number;
  /** Target memory utilisation of the reservation, else the limit. */
  memory?: number;
  /** Target requests (connections) per second per task, from the routing mesh. */
  rps?: number;
  /** Target open connections per task, from the routing mesh. */
  concurrency?: number;
  scaleUp: { stabilizationMs: number; step?: number };
  scaleDown: { stabilizationMs: number; step?: number };
}

/** `GET /api/v1/autoscale`: what the autoscaler sees and decided for one service. */
export interface AutoscaleView {
  service: string;
  min: number;
  max: number;
  replicas: number;
  /** What the metrics ask for now, before stabilization. */
  recommended: number;
  why: string[];
  metrics: { tasks: number; cpuCores: number; memoryBytes: number; rps: number; concurrency: number };
  targets: { cpu?: number; memory?: number; rps?: number; concurrency?: number };
  lastScaleTime?: string;
  /** The last start from zero: from the first waiting connection to a ready task. */
  lastColdStartMs?: number;
}

export interface JobSpec {
  completions: number;
  parallelism: number;
  /** Failed tasks tolerated before the job fails (Kubernetes' backoffLimit; default 6). */
  backoffLimit: number;
  /** A finished job (complete or failed) is removed this long after it finished (Kubernetes' ttlSecondsAfterFinished); undefined: kept. */
  ttlAfterFinishedMs?: number;
}

export interface ScheduleSpec {
  /** 5 fields (minute hour day month weekday) or 6 with seconds first. */
  cron: string;
  /** IANA time zone the schedule is read in (default UTC). */
  timeZone?: string;
  /** A firing while a run is still active: allow another, forbid (skip it), replace (stop the active run). */
  concurrency: 'allow' | 'forbid' | 'replace';
  successfulHistory: number;
  failedHistory: number;
}

export interface JobStatus {
  state: 'running' | 'complete' | 'failed';
  completions: number;
  succeeded: number;
  failed: number;
  active: number;
  startedAt?: string;
  completedAt?: string;
  message?: string;
}

export interface CronStatus {
  lastScheduleTime?: string;
  nextScheduleTime?: string;
  /** Runs (job services) still running. */
  active: string[];
}

export function isJob(spec: Pick<ServiceSpec, 'mode'>): boolean {
  return spec.mode === 'replicated-job' || spec.mode === 'global-job';
}

export function isGlobal(spec: Pick<ServiceSpec, 'mode'>): boolean {
  return spec.mode === 'global' || spec.mode === 'global-job';
}

/** Where a service's rollout stands (status.rollout), derived from its tasks at each reconcile. */
export interface RolloutStatus {
  /** The spec being rolled out (specHash) and its revision number. */
  hash: string;
  revision?: number;
  state: 'progressing' | 'paused' | 'awaiting-promotion' | 'completed' | 'rolling-back' | 'rolled-back';
  /** Slots whose task runs the new spec and stayed ready for `monitor`. */
  updated: number;
  total: number;
  /** Tasks of the new spec that failed within the rollout. */
  failed: number;
  message?: string;
  startedAt?: string;
  finishedAt?: string;
  /** When it last moved (it started, or a slot finished updating): with update.progressDeadlineMs, how long it has stood still. */
  progressAt?: string;
  /** It stood still past update.progressDeadlineMs (Kubernetes' ProgressDeadlineExceeded): it goes on, and `apply --wait` fails. */
  stalled?: boolean;
}

export interface ServiceStatus {
  observedGeneration: number;
  /** Tasks with desiredState running. */
  desired: number;
  /** Tasks ready (running and healthy). */
  ready: number;
  running: number;
  /** Human summary for the CLI, e.g. "updating 2/3". */
  message?: string;
  rollout?: RolloutStatus;
  job?: JobStatus;
  cron?: CronStatus;
}

export type Service = Resource<'Service', ServiceSpec, ServiceStatus>;

// ---------------------------------------------------------------- revisions

/** A service's spec as it was deployed once: `baton service history` lists them, `rollback` returns to one. */
export interface RevisionSpec {
  service: string;
  serviceUid: string;
  /** 1, 2, 3, … per service, in the order the specs were first deployed. */
  revision: number;
  /** The spec's specHash. */
  hash: string;
  spec: ServiceSpec;
  /** What made it: apply, restart, rollback to N, … */
  cause: string;
}

export type Revision = Resource<'Revision', RevisionSpec, Record<string, never>>;
