/**
 * Driver is how an agent runs tasks, after Nomad's task drivers: a small
 * required interface, opaque versioned handles, and nothing about Baton's
 * scheduling. Docker is the driver today; a simulated driver (for thousands of
 * nodes in one process) and an exec driver implement the same interface later.
 */
import type { Readable } from 'node:stream';
import type { BuildSpec, ContainerSpec, ResourceSpec } from '../api/types.js';
import type { RegistryCredential } from '../api/registries.js';

/** TaskConfig is everything a driver needs to start one task's container. */
export interface TaskConfig {
  /** Task object name; the container is named after it so a retried create conflicts instead of duplicating. */
  taskName: string;
  taskUid: string;
  serviceName: string;
  slot: number;
  spec: ContainerSpec;
  resources: ResourceSpec;
  /** Extra environment set by the agent (PORT, BATON_PORT_<n>, BATON_HOST_IP). */
  env: Record<string, string>;
  /** Labels the agent adds (cluster, node, task ids, port bindings). */
  labels: Record<string, string>;
  /** Effective pull policy after the agent's default is applied. */
  pullPolicy: 'always' | 'missing' | 'never';
  /** Reads the registry login the image is pulled with (the container's pullSecret), only when a pull happens; for the pull alone, never logged. */
  registryAuth?: () => Promise<RegistryCredential>;
  /** The sandbox whose network namespace the container joins (its task's), instead of spec.networkMode. */
  sandbox?: SandboxHandle;
  /**
   * One more container of the task (a pod's sidecar or init container),
   * named `<task container>_<name>`; absent for the task's main container.
   */
  container?: { name: string; role: 'init' | 'sidecar' };
}

/** SandboxHandle names a task's sandbox: what holds its network namespace while its containers come and go. */
export interface SandboxHandle {
  id: string;
  /** A process in the namespace (its PID 1 on this host): the way in for the agent's plumbing. */
  pid: number;
}

/**
 * SandboxDns is the naming a sandbox's containers share: the resolv.conf
 * (the node's resolver, the search list, options; none when servers is
 * empty) and the hostname (a container joining the sandbox's namespaces
 * takes the sandbox's).
 */
export interface SandboxDns {
  servers: string[];
  search: string[];
  options: string[];
  hostname?: string;
}

/** TaskHandle is opaque to everyone but the driver that made it; `version` lets a newer agent read an older handle. */
export interface TaskHandle {
  driver: string;
  version: number;
  id: string;
  name: string;
}

export type DriverTaskState = 'created' | 'running' | 'exited' | 'missing';

export interface TaskInspect {
  state: DriverTaskState;
  exitCode?: number;
  /** Engine's error text (e.g. exec format error). */
  error?: string;
  oomKilled?: boolean;
  startedAt?: string;
  finishedAt?: string;
  /** Labels found on the container (how the agent adopts it). */
  labels: Record<string, string>;
  /** Engine's restart count is not used: Baton restarts in place itself. */
  health?: 'starting' | 'healthy' | 'unhealthy';
}

export interface ExitResult {
  exitCode: number;
  oomKilled: boolean;
  error?: string;
}

/** TaskStats is a sample of a task's resource use; the caller turns two samples into a CPU rate. */
export interface TaskStats {
  /** CPU time used since the container started, in seconds (cumulative). */
  cpuSeconds: number;
  /** Memory in use, without page cache that can be dropped (as `docker stats`). */
  memoryBytes: number;
  /** The container's memory limit; 0 when it has none. */
  memoryLimitBytes: number;
  /** When it was read (ms since the epoch). */
  timeMs: number;
  /** Where it came from: the container's cgroup files, or the engine's stats API. */
  source: 'cgroup' | 'engine' | 'sim';
}

/** ListedTask is a container found on the engine that carries Baton's labels. */
export interface ListedTask {
  handle: TaskHandle;
  labels: Record<string, string>;
  state: DriverTaskState;
}

export type DriverEvent =
  | { type: 'start'; handle: TaskHandle; labels: Record<string, string> }
  | { type: 'die'; handle: TaskHandle; labels: Record<string, string>; exitCode: number; oomKilled?: boolean }
  | { type: 'health'; handle: TaskHandle; labels: Record<string, string>; status: 'healthy' | 'unhealthy' | 'starting' }
  | { type: 'destroy'; handle: TaskHandle; labels: Record<string, string> };

/** ExecResult is what a command run in a task's container (a health check) ended with. */
export interface ExecResult {
  /** -1 when it did not finish within its timeout. */
  exitCode: number;
  /** The start of its output (stdout and stderr), at most 4 KiB. */
  output: string;
}

/** ExecSession is a command a person runs in a task's container (`baton exec`), attached. */
export interface ExecSession {
  /** The command's output (its TTY's, with one); ends when it exits. */
  stdout: Readable;
  /** Its standard error, apart only without a TTY. */
  stderr?: Readable;
  /** write sends bytes to its standard input (when attached). */
  write(data: Buffer): void;
  /** endInput closes its standard input. */
  endInput(): void;
  /** resize sets its TTY's size. */
  resize(cols: number, rows: number): Promise<void>;
  /** wait resolves with its exit code once it ended (-1 when the engine could not say). */
  wait(): Promise<number>;
  /** close detaches (a TTY's command gets SIGHUP). */
  close(): void;
}

/** A probe as a driver that simulates its tasks answers it (the sim driver). */
export type SimulatedProbe = { kind: 'http' | 'tcp' | 'exec'; what: string };

export interface EngineInfo {
  ok: boolean;
  version: string;
  error?: string;
  cpus?: number;
  memoryBytes?: number;
}

export class DriverError extends Error {
  constructor(
    message: string,
    /** image_not_found | conflict | engine_unavailable | invalid_config | failed */
    readonly reason: string,
  ) {
    super(message);
    this.name = 'DriverError';
  }
}

/** volumeLabels picks the task labels a named volume carries: those that say which cluster and node made it, never the task's own. */
export function volumeLabels(labels: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) if (/(^|\.)(cluster|node)([._-]?[a-z]*)?$/i.test(k)) out[k] = v;
  return out;
}

/** ImageBuilder: a driver's images, for the services it builds (Compose `build:`). */
export interface ImageBuilder {
  /** has: whether the engine has the image. */
  has(image: string): Promise<boolean>;
  /**
   * build makes `image` from a context archive, calling onStep with each
   * step as it starts ("Step 2/5 : RUN ..."). A build that fails is a
   * DriverError saying why in the builder's words.
   */
  build(image: string, context: Readable, build: BuildSpec, onStep: (step: string) => void, signal: AbortSignal): Promise<void>;
}

export interface Driver {
  readonly name: string;
  /** The driver's images, when it builds them (Docker); the sim driver has none. */
  readonly images?: ImageBuilder;
  /** Whether tasks really bind their host ports (so the agent trial-binds before handing one out); default true. */
  readonly bindsHostPorts?: boolean;
  /** ping reports whether the engine answers, and its version. Never throws. */
  ping(): Promise<EngineInfo>;
  /**
   * start creates (if needed) and starts the task's container. Idempotent by
   * task name: when the container already exists it is started again in
   * place (that is how restarts keep one container and its logs).
   * Throws DriverError with reason image_not_found when the image is missing
   * and the pull policy forbids pulling.
   */
  start(config: TaskConfig): Promise<TaskHandle>;
  /** wait resolves when the task's container exits (immediately if it already has). */
  wait(handle: TaskHandle, signal?: AbortSignal): Promise<ExitResult>;
  /** stop sends the stop signal and kills after graceMs. Missing containers are not an error. */
  stop(handle: TaskHandle, graceMs: number, signal?: string): Promise<void>;
  /** destroy removes the container (forcefully). Missing containers are not an error. */
  destroy(handle: TaskHandle): Promise<void>;
  inspect(handle: TaskHandle): Promise<TaskInspect>;
  stats(handle: TaskHandle): Promise<TaskStats>;
  /**
   * followLogs copies the task's output after `after` (an RFC 3339 time with
   * nanoseconds; '' for all of it) until its container stops or the signal
   * aborts, calling onRecords with batches of whole records, each
   * `<time> <o|e> <text>\n` (time with 9 fraction digits), and the last
   * record's time. A driver whose tasks have no output leaves it out.
   */
  followLogs?(handle: TaskHandle, after: string, onRecords: (records: string, lastTime: string) => void, signal: AbortSignal): Promise<void>;
  /** exec runs a command in the task's container (an exec health check); a timeout returns exitCode -1. */
  exec(handle: TaskHandle, cmd: string[], timeoutMs: number): Promise<ExecResult>;
  /** attach runs a command in the task's container for a person, attached (`baton exec`); a driver without it cannot. */
  attach?(handle: TaskHandle, o: { cmd: string[]; tty: boolean; stdin: boolean }): Promise<ExecSession>;
  /** imageHealthcheck is the image's own HEALTHCHECK test (Docker form), for a healthcheck that keeps it; undefined when it has none. */
  imageHealthcheck(image: string): Promise<string[] | undefined>;
  /** probe, when a driver has it, answers every probe itself: its tasks do not really listen (the sim driver). */
  probe?(handle: TaskHandle, probe: SimulatedProbe): Promise<ExecResult>;
  /** list returns every container whose labels include all of `labels`. */
  list(labels: Record<string, string>): Promise<ListedTask[]>;
  /** volumes names the named volumes whose labels include all of `labels` (the scheduler sends their tasks back to this node). */
  volumes(labels: Record<string, string>): Promise<string[]>;
  /**
   * events follows the engine's event stream filtered by `labels`; onOpen is
   * called once the engine has accepted the stream, onError when the stream
   * breaks (the caller reconnects by calling again).
   * Returns a function that stops following.
   */
  events(labels: Record<string, string>, onEvent: (e: DriverEvent) => void, onError: (err: Error) => void, onOpen?: () => void): () => void;
  /**
   * interrupt cuts short every engine call in flight (each fails as
   * engine_unavailable): the agent found the engine gone, and an answer from
   * it may never come while a worker waits on it.
   */
  interrupt?(): void;
  /**
   * sandbox starts (or finds, or starts again) the sandbox of a task: a
   * network namespace of its own with loopback only, for the agent to plumb.
   * Drivers without namespaces (the simulated one) leave it out.
   */
  sandbox?(taskName: string, labels: Record<string, string>, dns?: SandboxDns): Promise<SandboxHandle>;
  /** removeSandbox removes a task's sandbox; nothing to do when it is gone. */
  removeSandbox?(taskName: string): Promise<void>;
  close(): Promise<void>;
}
