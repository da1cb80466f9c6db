/**
 * The Docker task driver: runs each task as one Docker container named after
 * the task, so the engine itself makes starts idempotent (a retried create
 * conflicts instead of duplicating) and restarts happen in place (same
 * container, logs kept). Baton restarts tasks itself, so the engine's restart
 * policy is always "no".
 */
import { createHash } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import Docker from 'dockerode';
import { existsSync, mkdirSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { cgroupPathsOf, readCgroup, type CgroupPaths } from './cgroup.js';
import { nanoTime } from '../logs.js';
import { Writable } from 'node:stream';
import type { ContainerSpec, ResourceSpec } from '../../api/types.js';
import {
  DriverError,
  volumeLabels,
  type Driver,
  type DriverEvent,
  type DriverTaskState,
  type EngineInfo,
  type ExecResult,
  type ExitResult,
  type ListedTask,
  type SandboxHandle,
  type TaskConfig,
  type TaskHandle,
  type TaskInspect,
  type TaskStats,
} from '../driver.js';
import { ensurePauseImage, ensureSandbox, removeSandbox } from './sandbox.js';
import { PAUSE_LABEL } from '../net/pauseImage.js';

/** DOCKER_DRIVER_NAME is the `driver` field of every handle this driver makes, so a handle from another driver is refused. */
export const DOCKER_DRIVER_NAME = 'docker';
/** DOCKER_HANDLE_VERSION is the `version` of handles this driver writes; a newer agent reads older ones by it. */
export const DOCKER_HANDLE_VERSION = 1;

const DEFAULT_SOCKET = '/var/run/docker.sock';
const DEFAULT_PULL_TIMEOUT_MS = 5 * 60_000;
/**
 * How long the engine may take to answer one call that is not a stream (inspect, create, start, remove…):
 * kubelet's --runtime-request-timeout is 2 minutes too. A call to an engine that died or hangs must fail,
 * or the worker waiting on it holds its task for good.
 */
const DEFAULT_REQUEST_TIMEOUT_MS = 2 * 60_000;
const PING_TIMEOUT_MS = 10_000;
/** After SIGKILL a container is gone within milliseconds; this only bounds a wedged engine. */
const KILL_WAIT_MS = 30_000;
const NS_PER_MS = 1_000_000;
/** How much of an exec health check's output is kept (Docker keeps 4 KiB too). */
const EXEC_OUTPUT_BYTES = 4096;
/** How long a start that lost a create race waits for the winner's container to become visible. */
const CONFLICT_SETTLE_MS = 10_000;
/** Event attributes that are not container labels (Docker mixes both into Actor.Attributes). */
const NON_LABEL_ATTRIBUTES = new Set(['name', 'image', 'exitCode', 'signal', 'execDuration']);
const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EPIPE', 'ENOTSOCK']);

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
 * containerName turns a task name into a valid Docker container name
 * (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`), because the container is found again by
 * this name. Valid names are kept as they are; a name that had to change gets
 * a short hash of the original so two different task names never collide.
 */
export function containerName(taskName: string): string {
  if (/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(taskName)) return taskName;
  let n = taskName.replace(/[^a-zA-Z0-9_.-]+/g, '-').replace(/^[^a-zA-Z0-9]+/, '');
  if (n === '') n = 'task';
  const hash = createHash('sha256').update(taskName).digest('hex').slice(0, 8);
  return `${n}-${hash}`;
}

/**
 * DockerDriver implements Driver on a Docker Engine through its Unix socket
 * (dockerode), because Docker is what every node is expected to have. It
 * uses host or no networking only; ports are the agent's business.
 */
export class DockerDriver implements Driver {
  readonly name = DOCKER_DRIVER_NAME;
  private readonly docker: Docker;
  private readonly socketPath: string;
  private readonly pullTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  /** Aborted by interrupt(): every call in flight until then. */
  private epoch = new AbortController();
  private readonly subscriptions = new Set<() => void>();
  /** Cgroup directories of running containers, by id (found once per run from the container's pid). */
  private readonly cgroups = new Map<string, CgroupPaths>();
  /** The pause image, once ensured on this engine (sandboxes). */
  private pauseImage?: Promise<void>;

  constructor(opts: DockerDriverOptions = {}) {
    this.socketPath = opts.socketPath ?? DEFAULT_SOCKET;
    this.pullTimeoutMs = opts.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.docker = new Docker({ socketPath: this.socketPath });
  }

  async ping(): Promise<EngineInfo> {
    const signal = AbortSignal.timeout(PING_TIMEOUT_MS);
    try {
      // The typings omit the options argument that carries the abort signal.
      const d = this.docker as unknown as {
        version(o: object): Promise<{ Version: string }>;
        info(o: object): Promise<{ NCPU?: number; MemTotal?: number }>;
      };
      const [version, info] = await Promise.all([d.version({ abortSignal: signal }), d.info({ abortSignal: signal })]);
      return { ok: true, version: version.Version, cpus: info.NCPU, memoryBytes: info.MemTotal };
    } catch (err) {
      const e = signal.aborted ? new Error(`docker engine did not answer within ${PING_TIMEOUT_MS}ms`) : this.toDriverError(err);
      return { ok: false, version: '', error: e.message };
    }
  }

  async start(config: TaskConfig): Promise<TaskHandle> {
    const name = containerName(config.taskName);
    const existing = await this.inspectByName(name);
    if (existing) {
      try {
        return await this.ensureRunning(existing);
      } catch (err) {
        if (!neverRan(existing) || (err instanceof DriverError && err.reason === 'engine_unavailable')) throw err;
        // Created but never run, and now it cannot start: its create or start died with the engine (a
        // dockerd killed mid-start leaves its containerd task behind, and the next start says "already
        // exists"). It holds nothing yet (no run, no output): a new container replaces it.
        await this.destroy(handleOf(existing.Id, name));
      }
    }

    const body = this.createBody(name, config);
    await this.ensureVolumes(config);
    ensureBindSources(config);
    let id: string;
    try {
      id = await this.createWithPullPolicy(body, config.spec.image, config.pullPolicy);
    } catch (err) {
      if (statusOf(err) !== 409) throw err instanceof DriverError ? err : this.toDriverError(err);
      // Created concurrently, or by an earlier attempt that crashed before
      // recording it. The engine reserves the name before the container can
      // be inspected, so the winner may need a moment to appear.
      const deadline = Date.now() + CONFLICT_SETTLE_MS;
      for (let delay = 10; ; delay = Math.min(delay * 2, 250)) {
        const raced = await this.inspectByName(name);
        if (raced) return this.ensureRunning(raced);
        if (Date.now() >= deadline) throw this.toDriverError(err);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    await this.startContainer(id);
    return handleOf(id, name);
  }

  async wait(handle: TaskHandle, signal?: AbortSignal): Promise<ExitResult> {
    signal?.throwIfAborted();
    const c = this.container(handle);
    let res: { StatusCode: number; Error?: { Message?: string } | null };
    try {
      res = await c.wait({ condition: 'not-running', ...(signal ? { abortSignal: signal } : {}) });
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (statusOf(err) === 404) return { exitCode: -1, oomKilled: false, error: engineMessage(err) };
      throw this.toDriverError(err);
    }
    const waitError = res.Error?.Message || undefined;
    try {
      const info = await this.request('inspect', (abortSignal) => c.inspect({ abortSignal }));
      const st = info.State;
      return {
        exitCode: typeof st.ExitCode === 'number' ? st.ExitCode : res.StatusCode,
        oomKilled: st.OOMKilled === true,
        ...(st.Error || waitError ? { error: st.Error || waitError } : {}),
      };
    } catch (err) {
      if (statusOf(err) !== 404) throw this.toDriverError(err);
      return { exitCode: res.StatusCode, oomKilled: false, ...(waitError ? { error: waitError } : {}) };
    }
  }

  async stop(handle: TaskHandle, graceMs: number, signal?: string): Promise<void> {
    const c = this.container(handle);
    const t = Math.max(0, Math.ceil(graceMs / 1000));
    try {
      if (signal !== undefined) {
        const info = await this.request('inspect', (abortSignal) => c.inspect({ abortSignal }));
        if (!info.State.Running) return;
        const own = normalizeSignal((info.Config as { StopSignal?: string }).StopSignal || 'SIGTERM');
        if (normalizeSignal(signal) !== own) {
          await this.killThenWait(c, signal, graceMs);
          return;
        }
      }
      await this.request('stop', (abortSignal) => c.stop({ t, abortSignal }), t * 1000);
    } catch (err) {
      const status = statusOf(err);
      // 304: already stopped; 404: gone; 409: not running (kill raced an exit).
      if (status === 304 || status === 404 || status === 409) return;
      throw this.toDriverError(err);
    }
  }

  async destroy(handle: TaskHandle): Promise<void> {
    try {
      const c = this.container(handle);
      await this.request('remove', (abortSignal) => c.remove({ force: true, v: true, abortSignal }));
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return;
      if (status === 409 && /already in progress/i.test(engineMessage(err))) return;
      throw this.toDriverError(err);
    }
  }

  async inspect(handle: TaskHandle): Promise<TaskInspect> {
    let info: Docker.ContainerInspectInfo;
    try {
      const c = this.container(handle);
      info = await this.request('inspect', (abortSignal) => c.inspect({ abortSignal }));
    } catch (err) {
      if (statusOf(err) === 404) return { state: 'missing', labels: {} };
      throw this.toDriverError(err);
    }
    return inspectOf(info);
  }

  async exec(handle: TaskHandle, cmd: string[], timeoutMs: number): Promise<ExecResult> {
    const c = this.container(handle);
    let ex: Docker.Exec;
    try {
      ex = await this.request('exec', (abortSignal) => c.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, abortSignal } as Docker.ExecCreateOptions));
    } catch (err) {
      throw this.toDriverError(err);
    }
    const stream = await this.request('exec start', (abortSignal) => ex.start({ hijack: true, stdin: false, abortSignal } as Docker.ExecStartOptions));
    const chunks: Buffer[] = [];
    let size = 0;
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        if (size < EXEC_OUTPUT_BYTES) chunks.push(chunk.subarray(0, EXEC_OUTPUT_BYTES - size));
        size += chunk.length;
        done();
      },
    });
    this.docker.modem.demuxStream(stream, sink, sink);
    const finished = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const end = () => {
        clearTimeout(timer);
        resolve(true);
      };
      stream.once('end', end);
      stream.once('close', end);
      stream.once('error', end);
    });
    const output = Buffer.concat(chunks).toString('utf8');
    if (!finished) {
      stream.destroy();
      return { exitCode: -1, output: `timed out after ${timeoutMs} ms${output ? `: ${output}` : ''}` };
    }
    const info = await this.request('exec inspect', (abortSignal) => ex.inspect({ abortSignal })).catch(() => undefined);
    return { exitCode: typeof info?.ExitCode === 'number' ? info.ExitCode : -1, output };
  }

  async imageHealthcheck(image: string): Promise<string[] | undefined> {
    try {
      const img = this.docker.getImage(image);
      const info = await this.request('image inspect', (abortSignal) => img.inspect({ abortSignal } as object));
      const test = (info.Config as { Healthcheck?: { Test?: string[] } } | undefined)?.Healthcheck?.Test;
      return test && test.length && test[0] !== 'NONE' ? test : undefined;
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.toDriverError(err);
    }
  }

  async stats(handle: TaskHandle): Promise<TaskStats> {
    // The cgroup files first (a few reads); the engine's stats API (a second or two, it waits for two readings) when they cannot be read.
    const c = this.cgroups.get(handle.id);
    if (c) {
      try {
        return { ...readCgroup(c), timeMs: Date.now(), source: 'cgroup' };
      } catch {
        this.cgroups.delete(handle.id);
      }
    }
    let info: Docker.ContainerInspectInfo | undefined;
    try {
      const ctr = this.container(handle);
      info = await this.request('inspect', (abortSignal) => ctr.inspect({ abortSignal }));
    } catch (err) {
      throw this.toDriverError(err);
    }
    const pid = info.State?.Running ? info.State.Pid : 0;
    const paths = pid > 0 ? cgroupPathsOf(pid) : undefined;
    if (paths) {
      try {
        const u = readCgroup(paths);
        this.cgroups.set(handle.id, paths);
        if (this.cgroups.size > 10_000) this.cgroups.clear();
        return { ...u, timeMs: Date.now(), source: 'cgroup' };
      } catch {
        /* fall back to the engine */
      }
    }
    let s: Docker.ContainerStats;
    try {
      const ctr = this.container(handle);
      // (The typings omit the abort signal.)
      s = await this.request('stats', (abortSignal) => ctr.stats({ stream: false, abortSignal } as { stream: false }));
    } catch (err) {
      throw this.toDriverError(err);
    }
    return statsOf(s);
  }

  async followLogs(handle: TaskHandle, after: string, onRecords: (records: string, lastTime: string) => void, signal: AbortSignal): Promise<void> {
    const c = this.container(handle);
    let tty = false;
    try {
      tty = Boolean((await this.request('inspect', (abortSignal) => c.inspect({ abortSignal }))).Config?.Tty);
    } catch (err) {
      if (statusOf(err) === 404) return;
      throw this.toDriverError(err);
    }
    const opts: Record<string, unknown> = { follow: true, stdout: true, stderr: true, timestamps: true, abortSignal: signal };
    if (after) opts.since = unixSince(after);
    let stream: NodeJS.ReadableStream;
    try {
      if (signal.aborted) return;
      stream = (await c.logs(opts as unknown as Docker.ContainerLogsOptions & { follow: true })) as NodeJS.ReadableStream;
    } catch (err) {
      if (signal.aborted || statusOf(err) === 404) return;
      throw this.toDriverError(err);
    }
    // Aborted while the stream was being opened: its abort listener below would never fire.
    if (signal.aborted) {
      (stream as unknown as { destroy?: () => void }).destroy?.();
      return;
    }
    const demux = new LogDemuxer(tty, after, onRecords);
    await new Promise<void>((resolve, reject) => {
      const finish = () => {
        demux.end();
        resolve();
      };
      stream.on('data', (b: Buffer) => demux.push(b));
      stream.on('end', finish);
      stream.on('close', finish);
      stream.on('error', (e: Error) => (signal.aborted ? finish() : reject(e)));
      signal.addEventListener('abort', () => {
        (stream as unknown as { destroy?: () => void }).destroy?.();
        finish();
      }, { once: true });
    });
  }

  async list(labels: Record<string, string>): Promise<ListedTask[]> {
    const label = labelFilters(labels);
    let items: Docker.ContainerInfo[];
    try {
      items = await this.request('list', (abortSignal) => this.docker.listContainers({ all: true, ...(label.length ? { filters: { label } } : {}), abortSignal }));
    } catch (err) {
      throw this.toDriverError(err);
    }
    // Sandboxes (pause containers) carry their task's labels but are not its container: found by name when needed.
    return items.filter((c) => !c.Labels?.[PAUSE_LABEL]).map((c) => ({
      handle: handleOf(c.Id, (c.Names[0] ?? '').replace(/^\//, '')),
      labels: c.Labels ?? {},
      state: stateOf(c.State),
    }));
  }

  events(labels: Record<string, string>, onEvent: (e: DriverEvent) => void, onError: (err: Error) => void, onOpen?: () => void): () => void {
    const ac = new AbortController();
    let stopped = false;
    let failed = false;
    let stream: NodeJS.ReadableStream | undefined;
    const fail = (err: Error) => {
      if (stopped || failed) return;
      failed = true;
      this.subscriptions.delete(stop);
      onError(err);
    };
    const stop = () => {
      if (stopped) return;
      stopped = true;
      this.subscriptions.delete(stop);
      ac.abort();
      (stream as unknown as { destroy?: () => void } | undefined)?.destroy?.();
    };
    this.subscriptions.add(stop);

    const label = labelFilters(labels);
    // `since` = now: events between this call and the stream's connection are
    // replayed by the engine instead of lost.
    const now = Date.now();
    const since = `${Math.floor(now / 1000)}.${String(now % 1000).padStart(3, '0')}`;
    const opts = {
      since,
      filters: { type: ['container'], event: ['start', 'die', 'destroy', 'health_status'], ...(label.length ? { label } : {}) },
      abortSignal: ac.signal,
    };
    this.docker.getEvents(opts as unknown as Docker.GetEventsOptions).then(
      (s) => {
        stream = s;
        if (stopped) {
          (s as unknown as { destroy?: () => void }).destroy?.();
          return;
        }
        onOpen?.();
        const split = lineSplitter((line) => {
          let msg: DockerEventMessage;
          try {
            msg = JSON.parse(line) as DockerEventMessage;
          } catch {
            return; // A torn or foreign line must not end the subscription.
          }
          const ev = eventOf(msg);
          if (ev && !stopped) onEvent(ev);
        });
        s.on('data', (chunk: Buffer | string) => {
          if (!stopped) split(chunk);
        });
        s.on('error', (err: Error) => fail(this.toDriverError(err)));
        s.on('end', () => fail(new DriverError('docker event stream ended', 'engine_unavailable')));
        s.on('close', () => fail(new DriverError('docker event stream closed', 'engine_unavailable')));
      },
      (err: unknown) => fail(this.toDriverError(err)),
    );
    return stop;
  }

  interrupt(): void {
    const e = this.epoch;
    this.epoch = new AbortController();
    e.abort();
  }

  async close(): Promise<void> {
    for (const stop of [...this.subscriptions]) stop();
  }

  // ------------------------------------------------------------ internals

  private container(handle: TaskHandle): Docker.Container {
    if (handle.driver !== DOCKER_DRIVER_NAME) {
      throw new DriverError(`handle belongs to driver "${handle.driver}", not "${DOCKER_DRIVER_NAME}"`, 'invalid_config');
    }
    if (handle.version > DOCKER_HANDLE_VERSION) {
      throw new DriverError(`docker handle version ${handle.version} is newer than this agent understands (${DOCKER_HANDLE_VERSION})`, 'invalid_config');
    }
    return this.docker.getContainer(handle.id || handle.name);
  }

  /**
   * request runs one engine call that is not a stream within requestTimeoutMs
   * (plus extraMs), cut short by interrupt(); a call cut short fails as
   * engine_unavailable, any other failure is the engine's own error. The
   * call is told to abort too, but the caller never waits past the deadline
   * even if it does not.
   */
  private async request<T>(what: string, call: (signal: AbortSignal) => Promise<T>, extraMs = 0): Promise<T> {
    const ms = this.requestTimeoutMs + extraMs;
    const interrupted = this.epoch.signal;
    const signal = AbortSignal.any([interrupted, AbortSignal.timeout(ms)]);
    let onAbort = () => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([call(signal), aborted]);
    } catch (err) {
      if (!signal.aborted) throw err;
      throw new DriverError(
        interrupted.aborted ? `docker ${what} at ${this.socketPath} cut short: the engine went away` : `docker engine at ${this.socketPath} did not answer ${what} within ${ms} ms`,
        'engine_unavailable',
      );
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async inspectByName(name: string): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      const c = this.docker.getContainer(name);
      return await this.request('inspect', (abortSignal) => c.inspect({ abortSignal }));
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.toDriverError(err);
    }
  }

  /** ensureRunning starts an existing container again in place (same id, logs kept) unless it already runs. */
  private async ensureRunning(info: Docker.ContainerInspectInfo): Promise<TaskHandle> {
    const handle = handleOf(info.Id, info.Name.replace(/^\//, ''));
    const st = info.State;
    if (st.Paused) {
      try {
        const c = this.docker.getContainer(info.Id);
        await this.request('unpause', (abortSignal) => c.unpause({ abortSignal }));
      } catch (err) {
        if (statusOf(err) !== 409) throw this.toDriverError(err);
      }
      return handle;
    }
    if (st.Running || st.Restarting) return handle;
    await this.startContainer(info.Id);
    return handle;
  }

  private async startContainer(id: string): Promise<void> {
    try {
      const c = this.docker.getContainer(id);
      await this.request('start', (abortSignal) => c.start({ abortSignal }));
    } catch (err) {
      if (statusOf(err) === 304) return; // already started (a concurrent start won)
      throw this.toDriverError(err);
    }
  }

  private async createWithPullPolicy(body: Docker.ContainerCreateOptions, image: string, policy: TaskConfig['pullPolicy']): Promise<string> {
    if (policy === 'always') await this.pull(image);
    try {
      return (await this.request('create', (abortSignal) => this.docker.createContainer({ ...body, abortSignal }))).id;
    } catch (err) {
      if (statusOf(err) !== 404) throw this.createError(err);
      if (policy !== 'missing') throw new DriverError(engineMessage(err), 'image_not_found');
    }
    await this.pull(image);
    try {
      return (await this.request('create', (abortSignal) => this.docker.createContainer({ ...body, abortSignal }))).id;
    } catch (err) {
      if (statusOf(err) === 404) throw new DriverError(engineMessage(err), 'image_not_found');
      throw this.createError(err);
    }
  }

  private createError(err: unknown): Error {
    if (statusOf(err) === 409) return err as Error; // handled by start()
    if (statusOf(err) === 400) return new DriverError(engineMessage(err), 'invalid_config');
    return this.toDriverError(err);
  }

  /** pull follows the engine's progress stream to its end; errors arrive inside the stream as well as by status. */
  private async pull(image: string): Promise<void> {
    const signal = AbortSignal.timeout(this.pullTimeoutMs);
    try {
      const stream = await this.docker.pull(image, { abortSignal: signal });
      await new Promise<void>((resolve, reject) => {
        let streamError: string | undefined;
        const split = lineSplitter((line) => {
          try {
            const m = JSON.parse(line) as { error?: string; errorDetail?: { message?: string } };
            if (m.error || m.errorDetail?.message) streamError ??= m.errorDetail?.message || m.error;
          } catch {
            /* progress lines only */
          }
        });
        let done = false;
        const finish = (err?: Error) => {
          if (done) return;
          done = true;
          split.flush();
          if (err) reject(err);
          else if (streamError) reject(new DriverError(streamError, 'image_not_found'));
          else resolve();
        };
        stream.on('data', (chunk: Buffer | string) => split(chunk));
        stream.on('error', (err: Error) => finish(err));
        stream.on('end', () => finish());
        stream.on('close', () => finish());
      });
    } catch (err) {
      if (err instanceof DriverError) throw err;
      if (signal.aborted) throw new DriverError(`pulling ${image} timed out after ${this.pullTimeoutMs}ms`, 'image_not_found');
      if (isConnectionError(err)) throw this.toDriverError(err);
      throw new DriverError(engineMessage(err), 'image_not_found');
    }
  }

  async volumes(labels: Record<string, string>): Promise<string[]> {
    try {
      const filters = JSON.stringify({ label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) });
      const r = await this.request('volume list', (abortSignal) => this.docker.listVolumes({ filters, abortSignal }));
      return (r.Volumes ?? []).map((v) => v.Name).sort();
    } catch (err) {
      throw this.toDriverError(err);
    }
  }

  /** ensureVolumes creates named volumes before the container, so they carry the cluster/node labels (Docker would create them bare). */
  private async ensureVolumes(config: TaskConfig): Promise<void> {
    const labels = volumeLabels(config.labels);
    for (const m of config.spec.mounts) {
      if (m.type !== 'volume' || !m.source) continue;
      try {
        const v = this.docker.getVolume(m.source);
        await this.request('volume inspect', (abortSignal) => v.inspect({ abortSignal }));
        continue;
      } catch (err) {
        if (statusOf(err) !== 404) throw this.toDriverError(err);
      }
      try {
        await this.request('volume create', (abortSignal) => this.docker.createVolume({ Name: m.source!, Labels: labels, abortSignal }));
      } catch (err) {
        throw statusOf(err) === 400 ? new DriverError(engineMessage(err), 'invalid_config') : this.toDriverError(err);
      }
    }
  }

  async sandbox(taskName: string, labels: Record<string, string>): Promise<SandboxHandle> {
    try {
      // Built (or found) once per driver: every task start would otherwise ask the engine again.
      this.pauseImage ??= ensurePauseImage(this.docker).catch((e) => {
        this.pauseImage = undefined;
        throw e;
      });
      await this.pauseImage;
      return await ensureSandbox(this.docker, containerName(taskName), labels);
    } catch (err) {
      // An engine that lost the image (a new data root) gets it again on the next try.
      this.pauseImage = undefined;
      throw this.toDriverError(err);
    }
  }

  async removeSandbox(taskName: string): Promise<void> {
    try {
      await removeSandbox(this.docker, containerName(taskName));
    } catch (err) {
      throw this.toDriverError(err);
    }
  }

  private createBody(name: string, config: TaskConfig): Docker.ContainerCreateOptions {
    return createBody(name, config.spec, config.resources, config.env, config.labels, config.sandbox?.id);
  }

  private async killThenWait(c: Docker.Container, signal: string, graceMs: number): Promise<void> {
    await this.request('kill', (abortSignal) => c.kill({ signal, abortSignal }));
    if (await waitNotRunning(c, graceMs)) return;
    try {
      await this.request('kill', (abortSignal) => c.kill({ signal: 'SIGKILL', abortSignal }));
    } catch (err) {
      const status = statusOf(err);
      if (status !== 404 && status !== 409) throw err;
      return;
    }
    await waitNotRunning(c, KILL_WAIT_MS);
  }

  private toDriverError(err: unknown): DriverError {
    if (err instanceof DriverError) return err;
    if (isConnectionError(err)) {
      const msg = err instanceof Error ? err.message : String(err);
      return new DriverError(`docker engine unavailable at ${this.socketPath}: ${msg}`, 'engine_unavailable');
    }
    if (statusOf(err) === 409) return new DriverError(engineMessage(err), 'conflict');
    return new DriverError(engineMessage(err), 'failed');
  }
}

// ---------------------------------------------------------------- pure helpers

/** createBody builds the engine's container-create request for one task; exported so the mapping can be checked without an engine. */
export function createBody(
  name: string,
  spec: ContainerSpec,
  resources: ResourceSpec,
  env: Record<string, string>,
  labels: Record<string, string>,
  /** A sandbox container whose network namespace this container joins. */
  sandbox?: string,
): Docker.ContainerCreateOptions {
  const mergedEnv = { ...spec.env, ...env };
  const hostConfig: Docker.HostConfig & Record<string, unknown> = {
    NetworkMode: sandbox ? `container:${sandbox}` : spec.networkMode,
    Init: spec.init,
    ReadonlyRootfs: spec.readOnly,
    RestartPolicy: { Name: 'no' },
    // The engine's files only buffer output until the agent has copied it into its log store; large, because the engine's
    // follower drops lines when a writer outruns it past a rotation (the agent drops the replays it sends).
    LogConfig: { Type: 'json-file', Config: { 'max-size': '64m', 'max-file': '3' } },
  };
  if (spec.capAdd.length) hostConfig.CapAdd = spec.capAdd;
  if (spec.capDrop.length) hostConfig.CapDrop = spec.capDrop;
  if (spec.tmpfs.length) {
    const tmpfs: Record<string, string> = {};
    for (const entry of spec.tmpfs) {
      const i = entry.indexOf(':');
      if (i < 0) tmpfs[entry] = '';
      else tmpfs[entry.slice(0, i)] = entry.slice(i + 1);
    }
    hostConfig.Tmpfs = tmpfs;
  }
  const ulimits = Object.entries(spec.ulimits).map(([Name, u]) => ({ Name, Soft: u.soft, Hard: u.hard }));
  if (ulimits.length) hostConfig.Ulimits = ulimits;
  if (Object.keys(spec.sysctls).length) hostConfig.Sysctls = { ...spec.sysctls };
  // A container joining a sandbox shares its hosts file and name: the engine refuses either set here.
  if (spec.extraHosts.length && !sandbox) hostConfig.ExtraHosts = [...spec.extraHosts];
  if (spec.mounts.length) {
    hostConfig.Mounts = spec.mounts.map((m) => {
      const mount: Record<string, unknown> = { Type: m.type, Target: m.target, ReadOnly: m.readOnly };
      if (m.type !== 'tmpfs' && m.source) mount.Source = m.source;
      return mount as unknown as Docker.MountSettings;
    });
  }
  if (resources.limits.memoryBytes > 0) hostConfig.Memory = resources.limits.memoryBytes;
  if (resources.limits.cpus > 0) hostConfig.NanoCpus = Math.round(resources.limits.cpus * 1e9);
  if (resources.limits.pids && resources.limits.pids > 0) hostConfig.PidsLimit = resources.limits.pids;

  const body: Docker.ContainerCreateOptions & Record<string, unknown> = {
    name,
    Image: spec.image,
    Env: Object.entries(mergedEnv).map(([k, v]) => `${k}=${v}`),
    Labels: { ...spec.labels, ...labels },
    StopTimeout: Math.max(0, Math.ceil(spec.stopGracePeriodMs / 1000)),
    HostConfig: hostConfig,
  };
  if (spec.command !== undefined) body.Cmd = spec.command;
  if (spec.entrypoint !== undefined) body.Entrypoint = spec.entrypoint;
  if (spec.user) body.User = spec.user;
  if (spec.workingDir) body.WorkingDir = spec.workingDir;
  // Docker rejects a hostname together with host networking (the host's is used).
  if (spec.hostname && spec.networkMode !== 'host' && !sandbox) body.Hostname = spec.hostname;
  if (spec.stopSignal) body.StopSignal = spec.stopSignal;
  // The agent runs health checks itself (at once after start, not after a whole interval as the engine does): the engine's own runner would run each twice.
  if (spec.healthcheck || spec.readiness) body.Healthcheck = { Test: ['NONE'] };
  return body;
}

function handleOf(id: string, name: string): TaskHandle {
  return { driver: DOCKER_DRIVER_NAME, version: DOCKER_HANDLE_VERSION, id, name };
}

function labelFilters(labels: Record<string, string>): string[] {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`);
}

/** stateOf maps Docker's container status words onto the driver's four states. */
function stateOf(status: string | undefined): DriverTaskState {
  switch (status) {
    case 'created':
      return 'created';
    case 'running':
    case 'paused':
    case 'restarting':
      return 'running';
    case 'exited':
    case 'dead':
    case 'removing':
      return 'exited';
    default:
      return 'exited';
  }
}

const ZERO_TIME = '0001-01-01T00:00:00Z';

/** neverRan: the container was created and has never been started (nothing ran in it, it wrote nothing). */
function neverRan(info: Docker.ContainerInspectInfo): boolean {
  return info.State.Status === 'created' && (!info.State.StartedAt || info.State.StartedAt === ZERO_TIME);
}

function inspectOf(info: Docker.ContainerInspectInfo): TaskInspect {
  const st = info.State;
  const state = stateOf(st.Status);
  const out: TaskInspect = { state, labels: info.Config?.Labels ?? {} };
  if (state === 'exited') out.exitCode = st.ExitCode;
  if (st.Error) out.error = st.Error;
  if (st.OOMKilled) out.oomKilled = true;
  if (st.StartedAt && st.StartedAt !== ZERO_TIME) out.startedAt = st.StartedAt;
  if (st.FinishedAt && st.FinishedAt !== ZERO_TIME && state === 'exited') out.finishedAt = st.FinishedAt;
  const health = st.Health?.Status;
  if (health === 'starting' || health === 'healthy' || health === 'unhealthy') out.health = health;
  return out;
}

function statsOf(s: Docker.ContainerStats): TaskStats {
  const cpu = s.cpu_stats;
  const mem = s.memory_stats ?? ({} as Docker.MemoryStats);
  const detail = (mem.stats ?? {}) as unknown as Record<string, number | undefined>;
  // As `docker stats`: page cache that can be dropped is not counted (cgroup v1: total_inactive_file, v2: inactive_file).
  const inactive = detail.total_inactive_file ?? detail.inactive_file ?? 0;
  const usage = mem.usage ?? 0;
  return {
    cpuSeconds: (cpu?.cpu_usage?.total_usage ?? 0) / 1e9,
    memoryBytes: inactive < usage ? usage - inactive : usage,
    memoryLimitBytes: mem.limit ?? 0,
    timeMs: s.read && !s.read.startsWith('0001-') ? Date.parse(s.read) : Date.now(),
    source: 'engine',
  };
}

/** unixSince turns an RFC 3339 time with nanoseconds into the engine's `since` form (seconds.nanoseconds). */
function unixSince(t: string): string {
  const m = /^(.{19})(?:\.(\d{1,9}))?Z$/.exec(t);
  if (!m) return String(Math.floor(Date.parse(t) / 1000));
  return `${Math.floor(Date.parse(m[1] + 'Z') / 1000)}.${(m[2] ?? '').padEnd(9, '0')}`;
}

/**
 * LogDemuxer turns the engine's log stream (8-byte frame headers per
 * message unless the container has a TTY; `timestamps=true` puts the time
 * first) into records `<time> <o|e> <text>\n`, leaving out any at or before
 * `after` (a resumed stream starts at the last time it had).
 */
class LogDemuxer {
  private pending: Buffer | undefined;
  private ttyCarry = '';
  /**
   * The last record passed on, per stream: the engine's json-file follower
   * replays lines after a rotation, so within a stream time never goes
   * back. (Across streams it may: each pipe is timestamped as it is read.)
   */
  private readonly last: Record<string, { time: string; text: string }>;
  private maxTime: string;

  constructor(
    private readonly tty: boolean,
    after: string,
    private readonly onRecords: (records: string, lastTime: string) => void,
  ) {
    this.last = { o: { time: after, text: '' }, e: { time: after, text: '' } };
    this.maxTime = after;
  }

  push(chunk: Buffer): void {
    let out = '';
    const add = (payload: string, stream: string) => {
      const sp = payload.indexOf(' ');
      if (sp < 0) return;
      let time = payload.slice(0, sp);
      if (time.length !== 30) time = nanoTime(time);
      const text = payload.slice(sp + 1);
      // Older than what this stream had: a replay. The same time: a replay only if it is the same line.
      const last = this.last[stream]!;
      if (time < last.time || (time === last.time && (last.text === '' || text === last.text))) return;
      out += `${time} ${stream} ${text}`;
      if (!text.endsWith('\n')) out += '\n';
      last.time = time;
      last.text = text;
      if (time > this.maxTime) this.maxTime = time;
    };
    if (this.tty) {
      const text = this.ttyCarry + chunk.toString('utf8');
      const end = text.lastIndexOf('\n');
      this.ttyCarry = text.slice(end + 1);
      for (const line of text.slice(0, end + 1).split('\n')) if (line) add(line.replace(/\r$/, '') + '\n', 'o');
    } else {
      let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
      let i = 0;
      while (buf.length - i >= 8) {
        const len = buf.readUInt32BE(i + 4);
        if (buf.length - i - 8 < len) break;
        add(buf.toString('utf8', i + 8, i + 8 + len), buf[i] === 2 ? 'e' : 'o');
        i += 8 + len;
      }
      this.pending = i < buf.length ? buf.subarray(i) : undefined;
    }
    if (out) this.onRecords(out, this.maxTime);
  }

  end(): void {
    if (this.tty && this.ttyCarry) {
      const line = this.ttyCarry;
      this.ttyCarry = '';
      this.push(Buffer.from(line + '\n'));
    }
  }
}

interface DockerEventMessage {
  Type?: string;
  Action?: string;
  status?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

/** eventOf maps one engine event onto a DriverEvent; events the driver does not report give undefined. */
function eventOf(msg: DockerEventMessage): DriverEvent | undefined {
  if (msg.Type !== undefined && msg.Type !== 'container') return undefined;
  const action = msg.Action ?? msg.status ?? '';
  const attrs = msg.Actor?.Attributes ?? {};
  const id = msg.Actor?.ID ?? msg.id ?? '';
  if (!id) return undefined;
  const handle = handleOf(id, attrs.name ?? '');
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (!NON_LABEL_ATTRIBUTES.has(k)) labels[k] = v;
  if (action === 'start') return { type: 'start', handle, labels };
  if (action === 'destroy') return { type: 'destroy', handle, labels };
  if (action === 'die') {
    const code = Number.parseInt(attrs.exitCode ?? '', 10);
    const ev: DriverEvent = { type: 'die', handle, labels, exitCode: Number.isNaN(code) ? -1 : code };
    if (attrs.oomKilled === 'true') ev.oomKilled = true;
    return ev;
  }
  if (action.startsWith('health_status')) {
    const status = action.slice(action.indexOf(':') + 1).trim();
    if (status === 'healthy' || status === 'unhealthy' || status === 'starting') return { type: 'health', handle, labels, status };
  }
  return undefined;
}

/** lineSplitter feeds complete lines of a newline-delimited stream to onLine; chunks may split lines and UTF-8 characters. */
function lineSplitter(onLine: (line: string) => void): ((chunk: Buffer | string) => void) & { flush(): void } {
  const decoder = new StringDecoder('utf8');
  let buf = '';
  const emit = (line: string) => {
    const l = line.trim();
    if (l) onLine(l);
  };
  const push = (chunk: Buffer | string) => {
    buf += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      emit(line);
    }
  };
  return Object.assign(push, {
    flush() {
      buf += decoder.end();
      const rest = buf;
      buf = '';
      emit(rest);
    },
  });
}

function normalizeSignal(sig: string): string {
  const s = sig.trim().toUpperCase();
  const byNumber: Record<string, string> = { '1': 'HUP', '2': 'INT', '3': 'QUIT', '9': 'KILL', '10': 'USR1', '12': 'USR2', '15': 'TERM' };
  if (byNumber[s]) return byNumber[s];
  return s.startsWith('SIG') ? s.slice(3) : s;
}

/** waitNotRunning resolves true once the container stops (or is gone), false when timeoutMs passes first. */
async function waitNotRunning(c: Docker.Container, timeoutMs: number): Promise<boolean> {
  const signal = AbortSignal.timeout(Math.max(1, timeoutMs));
  try {
    await c.wait({ condition: 'not-running', abortSignal: signal });
    return true;
  } catch (err) {
    if (signal.aborted) return false;
    if (statusOf(err) === 404) return true;
    throw err;
  }
}

function statusOf(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = e?.code ?? e?.cause?.code;
  return typeof code === 'string' && CONNECTION_ERROR_CODES.has(code) && statusOf(err) === undefined;
}

/** engineMessage extracts the engine's own words ("No such image: foo:latest") from a dockerode error, without its HTTP prefix. */
function engineMessage(err: unknown): string {
  const e = err as { json?: unknown; message?: unknown } | null;
  const fromJson = (v: unknown): string | undefined => {
    if (v && typeof v === 'object' && !Buffer.isBuffer(v)) {
      const m = (v as { message?: unknown }).message;
      return typeof m === 'string' && m.trim() ? m.trim() : undefined;
    }
    const text = Buffer.isBuffer(v) ? v.toString('utf8') : typeof v === 'string' ? v : undefined;
    if (!text?.trim()) return undefined;
    try {
      return fromJson(JSON.parse(text)) ?? text.trim();
    } catch {
      return text.trim();
    }
  };
  const j = fromJson(e?.json);
  if (j) return j;
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return msg.replace(/^\(HTTP code \d+\)[^-]*- /, '').trim() || msg;
}

/**
 * ensureBindSources creates a missing bind-mount source directory, as Compose
 * does (`create_host_path` defaults to true); the engine's Mounts API would
 * refuse the container instead. The agent runs on the engine's host.
 */
function ensureBindSources(config: TaskConfig): void {
  for (const m of config.spec.mounts) {
    if (m.type === 'bind' && m.source && isAbsolute(m.source) && !existsSync(m.source)) mkdirSync(m.source, { recursive: true });
  }
}
