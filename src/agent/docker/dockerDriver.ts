/**
 * The Docker task driver: runs each task as one Docker container named after
 * the task, so the engine itself makes starts idempotent (a retried create
 * conflicts instead of duplicating) and restarts happen in place (same
 * container, logs kept). Baton restarts tasks itself, so the engine's restart
 * policy is always "no".
 *
 * This class only composes the driver's parts, one module each: the
 * engine connection with its bounded calls and error mapping (engine.ts),
 * names and handles (handles.ts), the create request (containerBody.ts), a
 * container's start/wait/stop/removal (lifecycle.ts), images and pulls
 * (images.ts), builds (build.ts), volumes (volumes.ts), exec (exec.ts), usage (stats.ts), the
 * log stream (logStream.ts), the event stream (events.ts) and sandboxes
 * (sandbox.ts).
 */
import { DockerImages } from './build.js';
import type Docker from 'dockerode';
import { PAUSE_LABEL } from '../net/pauseImage.js';
import type {
  SandboxDns,
  Driver,
  DriverEvent,
  EngineInfo,
  ExecResult,
  ExecSession,
  ExitResult,
  ListedTask,
  SandboxHandle,
  TaskConfig,
  TaskHandle,
  TaskInspect,
  TaskStats,
} from '../driver.js';
import { DockerEngine, statusOf } from './engine.js';
import { EngineEvents } from './events.js';
import { execAttach, execIn } from './exec.js';
import { DOCKER_DRIVER_NAME, containerName, containerOf, handleOf, inspectOf, labelFilters, stateOf } from './handles.js';
import { imageHealthcheck } from './images.js';
import { destroyTask, startTask, stopTask, waitTask } from './lifecycle.js';
import { followLogs } from './logStream.js';
import { ensurePauseImage, ensureSandbox, removeSandbox } from './sandbox.js';
import { StatsReader } from './stats.js';
import { listVolumes } from './volumes.js';

export { DOCKER_DRIVER_NAME, DOCKER_HANDLE_VERSION, containerName } from './handles.js';
export { createBody } from './containerBody.js';

const DEFAULT_SOCKET = '/var/run/docker.sock';
const DEFAULT_PULL_TIMEOUT_MS = 5 * 60_000;
/**
 * How long the engine may take to answer one call that is not a stream (inspect, create, start, remove…):
 * kubelet's --runtime-request-timeout is 2 minutes too. A call to an engine that died or hangs must fail,
 * or the worker waiting on it holds its task for good.
 */
const DEFAULT_REQUEST_TIMEOUT_MS = 2 * 60_000;

/** DockerDriverOptions configures a DockerDriver; every field has a default that suits a local engine. */
export interface DockerDriverOptions {
  /** The engine's Unix socket (default /var/run/docker.sock). */
  socketPath?: string;
  /** How long one image pull may take before it fails as image_not_found (default 5 minutes). */
  pullTimeoutMs?: number;
  /** How long one call that is not a stream may take before it fails as engine_unavailable (default 2 minutes; a stop adds its grace period). */
  requestTimeoutMs?: number;
}

/**
 * DockerDriver implements Driver on a Docker Engine through its Unix socket
 * (dockerode), because Docker is what every node is expected to have. It
 * uses host or no networking only; ports are the agent's business.
 */
export class DockerDriver implements Driver {
  readonly name = DOCKER_DRIVER_NAME;
  private readonly engine: DockerEngine;
  private readonly pullTimeoutMs: number;
  private readonly eventStreams: EngineEvents;
  private readonly usage: StatsReader;
  /** The pause image, once ensured on this engine (sandboxes). */
  private pauseImage?: Promise<void>;
  /** Built images (build.ts). */
  readonly images: DockerImages;

  constructor(opts: DockerDriverOptions = {}) {
    this.pullTimeoutMs = opts.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
    this.engine = new DockerEngine(opts.socketPath ?? DEFAULT_SOCKET, opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    this.eventStreams = new EngineEvents(this.engine);
    this.usage = new StatsReader(this.engine);
    this.images = new DockerImages(this.engine);
  }

  ping(): Promise<EngineInfo> {
    return this.engine.ping();
  }

  start(config: TaskConfig): Promise<TaskHandle> {
    return startTask(this.engine, config, this.pullTimeoutMs);
  }

  wait(handle: TaskHandle, signal?: AbortSignal): Promise<ExitResult> {
    return waitTask(this.engine, handle, signal);
  }

  stop(handle: TaskHandle, graceMs: number, signal?: string): Promise<void> {
    return stopTask(this.engine, handle, graceMs, signal);
  }

  destroy(handle: TaskHandle): Promise<void> {
    return destroyTask(this.engine, handle);
  }

  async inspect(handle: TaskHandle): Promise<TaskInspect> {
    const { engine } = this;
    let info: Docker.ContainerInspectInfo;
    try {
      const c = containerOf(engine.docker, handle);
      info = await engine.request('inspect', (abortSignal) => c.inspect({ abortSignal }));
    } catch (err) {
      if (statusOf(err) === 404) return { state: 'missing', labels: {} };
      throw engine.toDriverError(err);
    }
    return inspectOf(info);
  }

  async exec(handle: TaskHandle, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    return execIn(this.engine, containerOf(this.engine.docker, handle), cmd, timeoutMs);
  }

  attach(handle: TaskHandle, o: { cmd: string[]; tty: boolean; stdin: boolean }): Promise<ExecSession> {
    return execAttach(this.engine, containerOf(this.engine.docker, handle), o);
  }

  imageHealthcheck(image: string): Promise<string[] | undefined> {
    return imageHealthcheck(this.engine, image);
  }

  stats(handle: TaskHandle): Promise<TaskStats> {
    return this.usage.stats(handle);
  }

  async followLogs(handle: TaskHandle, after: string, onRecords: (records: string, lastTime: string) => void, signal: AbortSignal): Promise<void> {
    return followLogs(this.engine, containerOf(this.engine.docker, handle), after, onRecords, signal);
  }

  async list(labels: Record<string, string>): Promise<ListedTask[]> {
    const { engine } = this;
    const label = labelFilters(labels);
    let items: Docker.ContainerInfo[];
    try {
      items = await engine.request('list', (abortSignal) => engine.docker.listContainers({ all: true, ...(label.length ? { filters: { label } } : {}), abortSignal }));
    } catch (err) {
      throw engine.toDriverError(err);
    }
    // Sandboxes (pause containers) carry their task's labels but are not its container: found by name when needed.
    return items.filter((c) => !c.Labels?.[PAUSE_LABEL]).map((c) => ({
      handle: handleOf(c.Id, (c.Names[0] ?? '').replace(/^\//, '')),
      labels: c.Labels ?? {},
      state: stateOf(c.State),
    }));
  }

  volumes(labels: Record<string, string>): Promise<string[]> {
    return listVolumes(this.engine, labels);
  }

  events(labels: Record<string, string>, onEvent: (e: DriverEvent) => void, onError: (err: Error) => void, onOpen?: () => void): () => void {
    return this.eventStreams.subscribe(labels, onEvent, onError, onOpen);
  }

  interrupt(): void {
    this.engine.interrupt();
  }

  async close(): Promise<void> {
    this.eventStreams.close();
  }

  async sandbox(taskName: string, labels: Record<string, string>, dns?: SandboxDns): Promise<SandboxHandle> {
    const { docker } = this.engine;
    try {
      // Built (or found) once per driver: every task start would otherwise ask the engine again.
      this.pauseImage ??= ensurePauseImage(docker).catch((e) => {
        this.pauseImage = undefined;
        throw e;
      });
      await this.pauseImage;
      return await ensureSandbox(docker, containerName(taskName), labels, undefined, dns);
    } catch (err) {
      // An engine that lost the image (a new data root) gets it again on the next try.
      this.pauseImage = undefined;
      throw this.engine.toDriverError(err);
    }
  }

  async removeSandbox(taskName: string): Promise<void> {
    try {
      await removeSandbox(this.engine.docker, containerName(taskName));
    } catch (err) {
      throw this.engine.toDriverError(err);
    }
  }
}
