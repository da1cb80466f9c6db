/**
 * Baton's API resource types. Runtime-neutral: imported by the server, the
 * agent, the CLI and (later) the dashboard. All durations are milliseconds and
 * all sizes are bytes, so nothing downstream re-parses "10s" or "512M".
 */

export const API_VERSION = 'baton/v1';

export interface OwnerRef {
  kind: string;
  name: string;
  uid: string;
}

export interface ObjectMeta {
  name: string;
  uid: string;
  /** The store modRevision of the object's last write, as a decimal string. */
  resourceVersion: string;
  /** Bumped by the server on every spec change (never on status writes). */
  generation: number;
  labels: Record<string, string>;
  annotations?: Record<string, string>;
  ownerRefs: OwnerRef[];
  /** ISO-8601. */
  creationTimestamp: string;
  /** The store revision at which status was last written ("0" before any). */
  statusVersion?: string;
}

export interface Resource<K extends string, S, St> {
  apiVersion: typeof API_VERSION;
  kind: K;
  metadata: ObjectMeta;
  spec: S;
  status: St;
}

// ---------------------------------------------------------------- containers

export interface PortSpec {
  /** Container port; with host networking the task must bind the host port it is given. */
  target: number;
  /** Port published on every node by the routing mesh (mode ingress), or on the task's node only (mode host). */
  published?: number;
  /** UDP needs the task's own network namespace (not network_mode: host): the mesh and the node's DNAT carry it there. */
  protocol: 'tcp' | 'udp';
  mode: 'ingress' | 'host';
  name?: string;
  /**
   * The address the port is published on (Compose's host_ip; see
   * api/hostIp.ts): a loopback address on every node, reachable only from
   * the node itself; another address only on the node whose address it is.
   * Absent: every node's address (Compose's 0.0.0.0 and ::).
   */
  hostIP?: string;
}

export interface MountSpec {
  /** task: a directory the task's containers share, empty when the task is made and removed with it (a Kubernetes emptyDir). */
  type: 'bind' | 'volume' | 'tmpfs' | 'task';
  /** Host path (bind), volume name (volume) or the task directory's name (task); absent for anonymous volumes and tmpfs. */
  source?: string;
  target: string;
  readOnly: boolean;
}

/**
 * HealthcheckSpec is one probe the agent runs itself (right after start, then
 * every interval): an HTTP GET (2xx/3xx passes), a TCP connect, or a command
 * run in the container. `port` is the container's port (its host port when
 * the agent allocated one).
 */
export interface HealthcheckSpec {
  /** Docker form: ["CMD", ...], ["CMD-SHELL", "..."] or ["NONE"]; [] keeps the image's HEALTHCHECK test. Ignored when http or tcp is set. */
  test: string[];
  /** x-baton: an HTTP probe, GET http://<task address>:<port><path>. */
  http?: { path: string; port: number };
  /** x-baton: a TCP probe, connect to <task address>:<port>. */
  tcp?: { port: number };
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
  startIntervalMs?: number;
}

export interface Ulimit {
  soft: number;
  hard: number;
}

export type PullPolicy = 'always' | 'missing' | 'never';

export interface ContainerSpec {
  image: string;
  /** Overrides the image's CMD; undefined keeps it. */
  command?: string[];
  /** Overrides the image's ENTRYPOINT; undefined keeps it. */
  entrypoint?: string[];
  env: Record<string, string>;
  /** Container labels (Compose `labels`). */
  labels: Record<string, string>;
  user?: string;
  workingDir?: string;
  readOnly: boolean;
  capAdd: string[];
  capDrop: string[];
  /** tmpfs mounts: "path" or "path:options". */
  tmpfs: string[];
  ulimits: Record<string, Ulimit>;
  sysctls: Record<string, string>;
  /** "host:ip" entries for /etc/hosts. */
  extraHosts: string[];
  hostname?: string;
  /** Run Docker's init as PID 1 so signals reach the process (default true). */
  init: boolean;
  stopSignal?: string;
  stopGracePeriodMs: number;
  /** Gates readiness and liveness (an unhealthy task is restarted by its policy), as in Swarm. */
  healthcheck?: HealthcheckSpec;
  /** x-baton.readiness: gates readiness only (alive but not yet ready to serve); failing never restarts the task. */
  readiness?: HealthcheckSpec;
  /**
   * Run before the stop signal when the agent stops the container (a
   * Kubernetes preStop hook): a command in the container, or a pause; both
   * count against stopGracePeriodMs, and the signal follows either way.
   */
  preStop?: { command?: string[]; sleepMs?: number };
  /** undefined: the agent's --pull default. */
  pullPolicy?: PullPolicy;
  mounts: MountSpec[];
  /** Secrets delivered as files (on a tmpfs, never in the environment); undefined: none. */
  secrets?: FileRefSpec[];
  /**
   * The secret holding the credentials the agent pulls `image` with
   * (`baton registry login` makes one per registry: api/registries.ts);
   * never a file in the container. undefined: pull without credentials.
   */
  pullSecret?: { source: string };
  /** Configs delivered as files at their targets; undefined: none. */
  configs?: FileRefSpec[];
  /** Compose `build:`: each node builds `image` from this context on its own engine before the first start (api/build.ts). */
  build?: BuildSpec;
  /**
   * bridge: a network namespace of the task's own, with its own address on
   * its node's task network (Compose's default); host: the node's network,
   * ports from the agent's --port-range; none: loopback only.
   */
  networkMode: NetworkMode;
}

export type NetworkMode = 'bridge' | 'host' | 'none';

/**
 * BuildSpec: how a node builds a service's image (Compose `build:`). The
 * context is a tar archive the servers keep, named by its digest; the image
 * is tagged `<stack>_<service>:<build hash>` (api/build.ts), so a node
 * builds each context once, and a changed context or argument is a new
 * image, which rolls the service.
 */
export interface BuildSpec {
  /** The context archive: "sha256:<hex>" of its bytes. */
  context: string;
  /** Its size in bytes (at most MAX_BUILD_CONTEXT_BYTES). */
  size: number;
  /** The Dockerfile's path inside the context. */
  dockerfile: string;
  /** Build arguments (ARG). */
  args: Record<string, string>;
  /** The stage to build (multi-stage Dockerfiles). */
  target?: string;
  /** Labels set on the image. */
  labels: Record<string, string>;
  /** The network of RUN steps; undefined: the engine's default network where it has one, else none (api/build.ts). */
  network?: 'default' | 'host' | 'none';
  /** Build without the engine's layer cache. */
  noCache?: boolean;
  /** Pull a newer base image even when one is present. */
  pull?: boolean;
  /** "host:ip" entries for /etc/hosts during RUN steps. */
  extraHosts?: string[];
}

/**
 * FileRefSpec: a secret or config a task gets as a read-only file, as
 * Swarm's service `secrets`/`configs`: which one, where, its owner and mode.
 */
export interface FileRefSpec {
  /** The secret's or config's name in the cluster. */
  source: string;
  /** Absolute path in the container (secrets: /run/secrets/<source> by default; configs: /<source>). */
  target: string;
  uid: number;
  gid: number;
  /** File mode, 0o444 by default. */
  mode: number;
  /**
   * The content hash the task was made for, filled in by the server: a new
   * content changes the spec, so the service rolls by its update_config.
   */
  hash?: string;
}

/** A secret or config as the API shows it: its content hash and size, never its content. */
export interface FileObjectSpec {
  /** sha256 of the content, hex. */
  hash: string;
  size: number;
}
export type Secret = Resource<'Secret', FileObjectSpec, Record<string, never>>;
export type Config = Resource<'Config', FileObjectSpec, Record<string, never>>;

/** defaultContainerSpec is a container spec with every default filled in (init on, 10 s grace, a network namespace of its own). */
export function defaultContainerSpec(image: string): ContainerSpec {
  return {
    image,
    env: {},
    labels: {},
    readOnly: false,
    capAdd: [],
    capDrop: [],
    tmpfs: [],
    ulimits: {},
    sysctls: {},
    extraHosts: [],
    init: true,
    stopGracePeriodMs: 10_000,
    mounts: [],
    networkMode: 'bridge',
  };
}

export interface ResourceAmounts {
  /** CPU cores, fractional. */
  cpus: number;
  memoryBytes: number;
}

/** SPREAD_PREFERENCE: the node attributes a spread preference may name (node.hostname groups nodes that share one, as several agents on one machine do). */
export const SPREAD_PREFERENCE = /^(node\.labels\.\S+|node\.id|node\.hostname|node\.name)$/;

/** wholeMillicores: a cpu amount Baton can hold exactly, in whole millicores (at most three decimals), as Kubernetes does. */
export function wholeMillicores(cpus: number): boolean {
  return Math.abs(cpus * 1000 - Math.round(cpus * 1000)) <= 1e-6;
}

export interface ResourceSpec {
  /** Used by placement against node capacity. */
  reservations: ResourceAmounts;
  /** Enforced by the engine; 0 means unlimited. */
  limits: ResourceAmounts & { pids?: number };
}

/** PlacementSpec says where a service's tasks may go and how they are spread. */
export interface PlacementSpec {
  /** Swarm-style constraints, all of which must hold: `node.labels.zone == a`, `node.hostname != x`. */
  constraints: string[];
  /**
   * Spread preferences, outermost first: tasks spread evenly over the values
   * of each (`node.labels.zone`; `node.id`, `node.hostname`, `node.name`:
   * one per node, round robin, as Swarm does; SPREAD_PREFERENCE).
   */
  preferences?: string[];
  /** At most this many live tasks of the service on one node. */
  maxReplicasPerNode?: number;
  /** spread (default): fewest tasks, least allocated; binpack: most allocated first. */
  strategy?: 'spread' | 'binpack';
  /** Taints this service's tasks tolerate (`x-baton.tolerations`). */
  tolerations?: Toleration[];
  /** Run on nodes that run these services' tasks (`x-baton.affinity`); required ones filter, preferred ones rank. */
  affinity?: ServiceAffinity[];
  /** Stay off nodes that run these services' tasks (`x-baton.anti_affinity`). */
  antiAffinity?: ServiceAffinity[];
  /** Higher goes first; a task that fits nowhere may preempt tasks of lower priority (`x-baton.priority`, default 0). */
  priority?: number;
}

export interface ServiceAffinity {
  /** Full service name (stack_service). */
  service: string;
  required: boolean;
}

/**
 * RestartPolicy: the agent restarts a task in place. The first restart after a
 * run is immediate; each further consecutive crash waits delayMs × factor^(n-2),
 * at most maxDelayMs (defaults 200 ms, ×2, 30 s). The count resets once the task
 * has been ready for the agent's backoff reset time (60 s).
 */
export interface RestartPolicy {
  condition: 'any' | 'on-failure' | 'none';
  /** The initial backoff (Compose `delay`, x-baton.restart.backoff.initial). */
  delayMs: number;
  /** The largest backoff (x-baton.restart.backoff.max). */
  maxDelayMs: number;
  /** How much each consecutive crash multiplies the backoff (x-baton.restart.backoff.factor); 2 when absent. */
  factor?: number;
  /** 0 = unlimited, counted within windowMs (or ever, when windowMs is 0); past it the task fails and is rescheduled on another node. */
  maxAttempts: number;
  windowMs: number;
}

/** restartDelay is how long the agent waits before restart number `crashes` (1-based) since the task last stayed up. */
export function restartDelay(p: RestartPolicy, crashes: number): number {
  if (crashes <= 1) return 0;
  const d = p.delayMs * Math.pow(p.factor ?? 2, crashes - 2);
  return Math.min(Math.max(p.maxDelayMs, p.delayMs), Number.isFinite(d) ? d : p.maxDelayMs);
}

// ---------------------------------------------------------------- services

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

// ---------------------------------------------------------------- tasks

export type TaskState =
  | 'pending'
  | 'assigned'
  | 'preparing'
  | 'starting'
  | 'running'
  | 'complete'
  | 'failed'
  | 'shutdown'
  | 'rejected'
  | 'orphaned';

export const TERMINAL_TASK_STATES: readonly TaskState[] = ['complete', 'failed', 'shutdown', 'rejected', 'orphaned'];

export function isTerminal(state: TaskState): boolean {
  return TERMINAL_TASK_STATES.includes(state);
}

export type DesiredState = 'running' | 'shutdown' | 'complete';

export interface TaskSpec {
  serviceName: string;
  serviceUid: string;
  slot: number;
  /** Hash of the parts of the service spec that shape a container; a change makes new tasks. */
  specHash: string;
  /** Set by placement; "" while pending. */
  nodeName: string;
  desiredState: DesiredState;
  container: ContainerSpec;
  ports: PortSpec[];
  expose: number[];
  resources: ResourceSpec;
  restartPolicy: RestartPolicy;
  placement: PlacementSpec;
  /** Nodes where earlier attempts of this slot failed past their restart policy: the scheduler ranks them last (Nomad's reschedule penalty). */
  avoidNodes?: string[];
  /** The service's containerName, sidecars and initContainers (a pod). */
  containerName?: string;
  sidecars?: PodContainer[];
  initContainers?: PodContainer[];
}

/** ContainerStatus is one container of a task that runs several (a pod), as its agent last saw it. */
export interface ContainerStatus {
  name: string;
  role: 'init' | 'main' | 'sidecar';
  /** waiting: not started yet (or between restarts); exited: an init container that completed, or one that stopped. */
  state: 'waiting' | 'running' | 'exited';
  exitCode?: number;
  restartCount: number;
  /** Its probes' verdict; undefined when it has none. */
  ready?: boolean;
  /** Why it waits or what it last did ("exited with code 1; restarting in 2s"). */
  message?: string;
}

export interface TaskPortBinding {
  target: number;
  hostPort: number;
  published?: number;
  /** Absent for TCP. */
  protocol?: 'udp';
}

/** SchedulingDecision is what the scheduler saw when it placed (or could not place) a task, after Nomad's AllocMetric. */
export interface SchedulingDecision {
  /** Nodes considered. */
  evaluated: number;
  /** How many nodes each reason ruled out. */
  filtered: Record<string, number>;
  /** Nodes that passed every filter. */
  feasible: number;
  /** The best feasible nodes, best first, with the keys that ranked them (at most 5). */
  ranked: { node: string; keys: Record<string, number> }[];
  /** Nodes ruled out per class of identical nodes ("zone=a,disk=ssd"), as Nomad's ClassFiltered; at most 10 classes. */
  classFiltered?: Record<string, number>;
}

export interface TaskStatus {
  state: TaskState;
  /** Short human message ("started", "restarting in 2s"). */
  message: string;
  /** Why the task failed or was rejected (engine's words). */
  error?: string;
  exitCode?: number;
  containerId?: string;
  /** Opaque, versioned driver handle (JSON) so a restarted agent re-attaches. */
  handle?: string;
  /** The node's address: each port's hostPort answers there. */
  hostIP?: string;
  /** The task's own address, in its node's task range, when it runs in a network namespace of its own (its container ports answer there). */
  taskIP?: string;
  ports: TaskPortBinding[];
  restartCount: number;
  /** Last health check outcome; undefined when the task has no health check (or none has finished yet). */
  healthy?: boolean;
  /** Last readiness probe outcome; undefined when the task has no readiness probe. */
  ready?: boolean;
  /** When the agent will restart the task again (a crash backoff is running). */
  nextRestartAt?: string;
  /** Since when the task has been ready without a break (a rollout's monitor counts from here). */
  readyAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** When the state last changed (ISO-8601). */
  timestamp: string;
  /** Each container of a task that runs several (sidecars, init containers). */
  containers?: ContainerStatus[];
  /** Why the task is pending, when placement could not place it. */
  pendingReason?: string;
  /** The scheduler's last decision for this task (`baton explain`). */
  scheduling?: SchedulingDecision & { at: string };
}

export type Task = Resource<'Task', TaskSpec, TaskStatus>;

/** hasProbe: a health check that runs (not `NONE`). */
export function hasProbe(h: HealthcheckSpec | undefined): h is HealthcheckSpec {
  return h !== undefined && !(h.test[0] === 'NONE' && !h.http && !h.tcp);
}

/** isTaskReady: running, its health check (if any) passed, and its readiness probe (if any) passed. Only ready tasks get traffic. */
export function isTaskReady(t: Task): boolean {
  const c = t.spec.container;
  // A sidecar's probes count too: its agent reports `ready` for the whole task.
  const sidecarProbes = t.spec.sidecars?.some((s) => hasProbe(s.container.healthcheck) || hasProbe(s.container.readiness)) ?? false;
  return (
    t.status.state === 'running' &&
    t.status.healthy !== false &&
    (!hasProbe(c.healthcheck) || t.status.healthy === true) &&
    ((!hasProbe(c.readiness) && !sidecarProbes) || t.status.ready === true)
  );
}

// ---------------------------------------------------------------- endpoints

/** LbSpec is a service's routing settings (x-baton.lb). */
export interface LbSpec {
  algorithm: 'round_robin' | 'least_conn';
  /** Send the client's address to the backend in a PROXY protocol header. */
  proxyProtocol: 'off' | 'v1' | 'v2';
  /** With no ready endpoint, hold a new connection this long waiting for one. */
  holdTimeoutMs: number;
}

export const DEFAULT_LB: LbSpec = { algorithm: 'round_robin', proxyProtocol: 'off', holdTimeoutMs: 30_000 };

/** EndpointAddress is one ready task: where its container ports answer. */
export interface EndpointAddress {
  task: string;
  node: string;
  address: string;
  /**
   * Container port → the port that answers it: a host port at `address`, or,
   * for a task with a `taskIP`, the container port itself (every target of
   * the service, dialled at taskIP:target).
   */
  ports: Record<string, number>;
  /** The task's own address, when it has a namespace of its own: where its container ports answer, for whoever can route to its node's task range. */
  taskIP?: string;
}

/**
 * EndpointsSpec is what every node needs about one service, written by the
 * server's endpoints controller (Kubernetes' Endpoints): for the routing
 * mesh, the ports to publish, the container ports reachable by name, the
 * service's VIP and the routing settings; for DNS and isolation, its
 * networks; and the ready tasks. Nodes watch these, never tasks or services.
 * A service has one when it has a port to route or its tasks run in
 * namespaces of their own (bridge), whose addresses DNS answers with.
 */
export interface EndpointsSpec {
  serviceName: string;
  stack: string;
  shortName: string;
  /**
   * The service's virtual IP, from the server's --service-cidr: unique in
   * the cluster and kept for the service's life (Swarm's VIP, Kubernetes'
   * ClusterIP); `<service>` resolves to it and the mesh balances it over
   * the endpoints. Absent when the range was full when the service needed
   * one (a Warning event says so): it is then reachable by `tasks.` names
   * only, until a VIP frees up.
   */
  vip?: string;
  /** The networks the service's tasks are on, with the aliases it answers to on each (serviceNetworks: its stack's default one when it names none). */
  networks: ServiceNetwork[];
  /** Ports the mesh publishes on every node's address (mode ingress), or where their hostIP says (api/hostIp.ts); protocol absent for TCP. */
  published: { published: number; target: number; protocol?: 'udp'; hostIP?: string }[];
  /** Container TCP ports the mesh serves on the service's VIP (ports and expose); empty for a bridge service without ports. */
  targets: number[];
  /** Container UDP ports the mesh serves on the service's VIP (its UDP ports); absent when none. */
  udpTargets?: number[];
  /** More VIP ports, each reaching one of the targets (ServiceSpec.vipPorts); absent when none. */
  vipPorts?: VipPort[];
  /** A StatefulSet's service: each ready task is also named after its ordinal (`<shortName>-<ordinal>.<service name>`). */
  stateful?: true;
  lb: LbSpec;
  /** Ready tasks, by task name. */
  endpoints: EndpointAddress[];
}

export type Endpoints = Resource<'Endpoints', EndpointsSpec, Record<string, never>>;

/**
 * EndpointsApplied answers `GET /endpoints/-/applied?revision=R`: whether
 * the routing mesh of every Ready node has applied Endpoints revision R
 * (`pending`: the nodes that had not when the answer was given).
 */
export interface EndpointsApplied {
  revision: string;
  applied: boolean;
  pending: string[];
}

// ---------------------------------------------------------------- nodes

export type NodeAvailability = 'active' | 'pause' | 'drain';
export type NodeState = 'unknown' | 'ready' | 'notready' | 'down';

export type TaintEffect = 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';

/** Taint keeps tasks off a node unless they tolerate it (Kubernetes' form: key=value:Effect). */
export interface Taint {
  key: string;
  value?: string;
  effect: TaintEffect;
}

/** Toleration lets a task onto a node with a matching taint; an empty effect matches every effect. */
export interface Toleration {
  key?: string;
  operator: 'Equal' | 'Exists';
  value?: string;
  effect?: TaintEffect;
}

export interface NodeSpec {
  availability: NodeAvailability;
  taints?: Taint[];
}

export interface NodeStatus {
  state: NodeState;
  message: string;
  address: string;
  hostname: string;
  capacity: ResourceAmounts;
  allocated: ResourceAmounts;
  taskCount: number;
  agentVersion: string;
  engineVersion: string;
  portRange: [number, number];
  /** The agent's HTTPS port on `address` (the server reads logs there); absent for simulated nodes. */
  agentPort?: number;
  /**
   * manager: the node runs a server (its agent runs in the server's own
   * process: `baton up`), which the server verified itself at registration
   * rather than taking the agent's word; absent: a worker. Swarm's
   * node.role.
   */
  role?: 'manager' | 'worker';
  /** The node's OS and CPU architecture, as Swarm's node.platform.os/arch (linux, x86_64). */
  platform?: { os: string; arch: string };
  /** Named volumes the node's engine holds for this cluster: a task mounting one goes back to this node. */
  volumes?: string[];
  /**
   * The IPv4 range (a.b.c.d/N) the node's tasks take their addresses from:
   * its share of the server's `--cluster-cidr`, given at its first
   * registration, unique in the cluster and kept for the node's life (a
   * later `--cluster-cidr` does not renumber it); freed by `node rm`.
   */
  taskRange?: string;
  /** ISO-8601 of the last heartbeat the server saw when it last wrote this status. */
  lastHeartbeat?: string;
  /** When state last changed. */
  timestamp: string;
}

export type Node = Resource<'Node', NodeSpec, NodeStatus>;

// ---------------------------------------------------------------- events

export interface EventSpec {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  involvedObject: { kind: string; name: string; uid?: string };
  source: string;
  node?: string;
  service?: string;
  time: string;
}

// ---------------------------------------------------------------- misc wire types

export interface ListMeta {
  resourceVersion: string;
  /** The store epoch the revision counts in; give it back when watching from that revision. */
  storeEpoch?: string;
  continue?: string;
}

export interface List<T> {
  items: T[];
  metadata: ListMeta;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WireWatchEvent<T> {
  type: WatchEventType;
  object: T;
}

export interface ApiErrorBody {
  error: {
    code: string;
    message: string;
    details?: { path: string; message: string; line?: number }[];
  };
}

export interface ClusterInfo {
  clusterId: string;
  version: string;
  apiVersion: string;
  storeBackend: string;
  /** Revisions count within an epoch; a copy of the state into another store starts a new one. */
  storeEpoch: string;
  revision: string;
  /** Servers sharing a store: which leads (its name and term), and whether the one that answered does. */
  leader?: { identity: string; term: number; since: string };
  leading?: boolean;
  /** Servers sharing a store: every live one, by name and URL. */
  servers?: { name: string; url: string }[];
  /** The token that asked: its role, its name (or `token <id>`), and a deployer's stacks. */
  caller?: { role: 'admin' | 'deployer' | 'viewer'; name: string; stacks?: string[] };
}

export interface ApplyServiceResult {
  name: string;
  action: 'create' | 'update' | 'unchanged' | 'delete';
  diff?: string[];
}

export interface ApplyRequest {
  stack: string;
  services: { name: string; spec: ServiceSpec; labels: Record<string, string> }[];
  prune: boolean;
  dryRun: boolean;
  /** Secrets and configs the file defines (content as base64): created or given their new content in the same txn. */
  secrets?: FileInput[];
  configs?: FileInput[];
}

/** FileInput: a secret's or config's content as a client sends it. */
export interface FileInput {
  name: string;
  /** base64 */
  data: string;
  labels?: Record<string, string>;
}

export interface ApplyResponse {
  stack: string;
  revision: string;
  results: ApplyServiceResult[];
  /** Secrets and configs the apply created or gave a new content (never their content). */
  files?: { kind: 'secret' | 'config'; name: string; action: 'create' | 'update' }[];
  warnings: string[];
  /** With dryRun: where each created or updated service's tasks would land if placed now (node → count), and why any would stay pending. */
  placement?: Record<string, { nodes: Record<string, number>; pending: Record<string, number> }>;
}

// ---------------------------------------------------------------- logs and usage

/**
 * One log line on the wire (`GET /services/<s>/logs`, `GET /tasks/<t>/logs`):
 * the body is text, one line per record, `<task>@<node> <time> <o|e> <text>`,
 * where time is RFC 3339 with nanoseconds (as Docker prints it) and o/e is
 * the stream (stdout/stderr). parseLogLine reads one.
 */
export interface LogLine {
  task: string;
  node: string;
  time: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface LogQuery {
  follow?: boolean;
  /** Last N lines of each task. */
  tail?: number;
  /** Only lines at or after this: a duration ago (10m, 1h30m) or an RFC 3339 time. */
  since?: string;
  /** Only lines whose text matches this regular expression (JavaScript syntax). */
  grep?: string;
  /** A task's: one of its containers (a pod's sidecar or init container). */
  container?: string;
  /** false: each node's lines as they come, grouped by task; by default every line in time order. */
  merge?: boolean;
}

export function parseLogLine(line: string): LogLine | undefined {
  const a = line.indexOf(' ');
  const b = a < 0 ? -1 : line.indexOf(' ', a + 1);
  const c = b < 0 ? -1 : line.indexOf(' ', b + 1);
  if (c < 0) return undefined;
  const who = line.slice(0, a);
  const at = who.lastIndexOf('@');
  return {
    task: at < 0 ? who : who.slice(0, at),
    node: at < 0 ? '' : who.slice(at + 1),
    time: line.slice(a + 1, b),
    stream: line.slice(b + 1, c) === 'e' ? 'stderr' : 'stdout',
    text: line.slice(c + 1),
  };
}

/** Resource use of one task, as its agent last sampled it from the container's cgroup. */
export interface TaskUsage {
  task: string;
  service: string;
  node: string;
  /** CPU in use, in cores (0.5 = half a core), averaged over the last sample interval. */
  cpu: number;
  memoryBytes: number;
  /** The container's memory limit, when it has one. */
  memoryLimitBytes?: number;
  /** When the agent sampled it (ISO-8601). */
  time: string;
}

/** `GET /api/v1/top`: the latest usage of every node and running task. */
export interface TopResponse {
  time: string;
  nodes: { name: string; state: NodeState; cpu: number; memoryBytes: number; capacity: ResourceAmounts; tasks: number }[];
  tasks: TaskUsage[];
}

/** `GET /api/v1/services/<name>/stats`: the service's recent history, one point per agent report interval, oldest first. */
export interface ServiceStats {
  service: string;
  points: { time: string; cpu: number; memoryBytes: number; tasks: number; requestsPerSecond: number }[];
}
