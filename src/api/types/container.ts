/**
 * What runs: a container's spec (ports, mounts, health checks, builds,
 * files), the resources it asks for, where it may be placed and how it
 * restarts.
 * Part of the API types: api/types.ts re-exports every part.
 */
import type { Resource } from './meta.js';
import type { Toleration } from './node.js';

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
