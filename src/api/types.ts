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
  protocol: 'tcp';
  mode: 'ingress' | 'host';
  name?: string;
}

export interface MountSpec {
  type: 'bind' | 'volume' | 'tmpfs';
  /** Host path (bind) or volume name (volume); absent for anonymous volumes and tmpfs. */
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
  /** undefined: the agent's --pull default. */
  pullPolicy?: PullPolicy;
  mounts: MountSpec[];
  networkMode: 'host' | 'none';
}

/** defaultContainerSpec is a container spec with every default filled in (init on, 10 s grace, host networking). */
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
    networkMode: 'host',
  };
}

export interface ResourceAmounts {
  /** CPU cores, fractional. */
  cpus: number;
  memoryBytes: number;
}

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
  /** Spread preferences, outermost first: tasks spread evenly over the values of each (`node.labels.zone`). */
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

export interface ServiceSpec {
  /** The stack (Compose project) this service came from; "" for none. */
  stack: string;
  /** The service's name inside its stack (Compose key). */
  shortName: string;
  /** replicated: `replicas` tasks placed by the scheduler; global: one task on every eligible node. */
  mode: 'replicated' | 'global';
  replicas: number;
  container: ContainerSpec;
  ports: PortSpec[];
  /** Ports reachable by other tasks only (Compose `expose`). */
  expose: number[];
  resources: ResourceSpec;
  restartPolicy: RestartPolicy;
  placement: PlacementSpec;
  /** Baton extension (Compose `x-baton`); later issues add keys. */
  x: Record<string, unknown>;
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
}

export type Service = Resource<'Service', ServiceSpec, ServiceStatus>;

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
}

export interface TaskPortBinding {
  target: number;
  hostPort: number;
  published?: number;
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
  hostIP?: string;
  ports: TaskPortBinding[];
  restartCount: number;
  /** Last health check outcome; undefined when the task has no health check (or none has finished yet). */
  healthy?: boolean;
  /** Last readiness probe outcome; undefined when the task has no readiness probe. */
  ready?: boolean;
  /** When the agent will restart the task again (a crash backoff is running). */
  nextRestartAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** When the state last changed (ISO-8601). */
  timestamp: string;
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
  return (
    t.status.state === 'running' &&
    t.status.healthy !== false &&
    (!hasProbe(c.healthcheck) || t.status.healthy === true) &&
    (!hasProbe(c.readiness) || t.status.ready === true)
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
  /** Container port → host port. */
  ports: Record<string, number>;
}

/**
 * EndpointsSpec is what every node's routing mesh needs about one service,
 * written by the server's endpoints controller (Kubernetes' Endpoints): the
 * ports to publish, the container ports reachable by name, the routing
 * settings, and the ready tasks. Meshes watch these, never tasks.
 */
export interface EndpointsSpec {
  serviceName: string;
  stack: string;
  shortName: string;
  /** Ports the mesh publishes on every node's address (mode ingress). */
  published: { published: number; target: number }[];
  /** Container ports the mesh serves on the service's VIP (ports and expose). */
  targets: number[];
  lb: LbSpec;
  /** Ready tasks, by task name. */
  endpoints: EndpointAddress[];
}

export type Endpoints = Resource<'Endpoints', EndpointsSpec, Record<string, never>>;

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
  /** The node's OS and CPU architecture, as Swarm's node.platform.os/arch (linux, x86_64). */
  platform?: { os: string; arch: string };
  /** Named volumes the node's engine holds for this cluster: a task mounting one goes back to this node. */
  volumes?: string[];
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
  revision: string;
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
}

export interface ApplyResponse {
  stack: string;
  revision: string;
  results: ApplyServiceResult[];
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
