/**
 * A task container's life on the Docker engine: start (idempotent by the
 * container's name: a retried or racing create conflicts and finds the
 * winner, and an existing container is started again in place, same id and
 * logs kept), wait for its exit, stop with its own signal or another one,
 * and removal. Baton restarts tasks itself, so the engine's restart policy is
 * always "no" (containerBody.ts).
 */
import type Docker from 'dockerode';
import { DriverError, type ExitResult, type TaskConfig, type TaskHandle } from '../driver.js';
import { ensureBindSources, taskBody } from './containerBody.js';
import { engineMessage, statusOf, type DockerEngine } from './engine.js';
import { containerName, containerOf, handleOf, neverRan } from './handles.js';
import { createWithPullPolicy } from './images.js';
import { ensureVolumes } from './volumes.js';

/** After SIGKILL a container is gone within milliseconds; this only bounds a wedged engine. */
const KILL_WAIT_MS = 30_000;
/** How long a start that lost a create race waits for the winner's container to become visible. */
const CONFLICT_SETTLE_MS = 10_000;

/** startTask is Driver.start: the task's container, created (pulling its image as config says) unless it exists, and running. */
export async function startTask(engine: DockerEngine, config: TaskConfig, pullTimeoutMs: number): Promise<TaskHandle> {
  // `_`: a task's name ends in `.<id>`, its sandbox's in `.pause`; a pod container's never looks like either.
  const name = config.container ? `${containerName(config.taskName)}_${config.container.name}` : containerName(config.taskName);
  const existing = await inspectByName(engine, name);
  if (existing) {
    try {
      return await ensureRunning(engine, existing);
    } catch (err) {
      if (!neverRan(existing) || (err instanceof DriverError && err.reason === 'engine_unavailable')) throw err;
      // Created but never run, and now it cannot start: its create or start died with the engine (a
      // dockerd killed mid-start leaves its containerd task behind, and the next start says "already
      // exists"). It holds nothing yet (no run, no output): a new container replaces it.
      await destroyTask(engine, handleOf(existing.Id, name));
    }
  }

  const body = taskBody(name, config);
  await ensureVolumes(engine, config);
  ensureBindSources(config);
  let id: string;
  try {
    id = await createWithPullPolicy(engine, body, config.spec.image, config.pullPolicy, pullTimeoutMs, config.registryAuth);
  } catch (err) {
    if (statusOf(err) !== 409) throw err instanceof DriverError ? err : engine.toDriverError(err);
    // Created concurrently, or by an earlier attempt that crashed before
    // recording it. The engine reserves the name before the container can
    // be inspected, so the winner may need a moment to appear.
    const deadline = Date.now() + CONFLICT_SETTLE_MS;
    for (let delay = 10; ; delay = Math.min(delay * 2, 250)) {
      const raced = await inspectByName(engine, name);
      if (raced) return ensureRunning(engine, raced);
      if (Date.now() >= deadline) throw engine.toDriverError(err);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  await startContainer(engine, id);
  return handleOf(id, name);
}

/** waitTask is Driver.wait: the container's exit, read back from the engine (its OOM kill and error too) once it is not running. */
export async function waitTask(engine: DockerEngine, handle: TaskHandle, signal?: AbortSignal): Promise<ExitResult> {
  signal?.throwIfAborted();
  const c = containerOf(engine.docker, handle);
  let res: { StatusCode: number; Error?: { Message?: string } | null };
  try {
    res = await c.wait({ condition: 'not-running', ...(signal ? { abortSignal: signal } : {}) });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (statusOf(err) === 404) return { exitCode: -1, oomKilled: false, error: engineMessage(err) };
    throw engine.toDriverError(err);
  }
  const waitError = res.Error?.Message || undefined;
  try {
    const info = await engine.request('inspect', (abortSignal) => c.inspect({ abortSignal }));
    const st = info.State;
    return {
      exitCode: typeof st.ExitCode === 'number' ? st.ExitCode : res.StatusCode,
      oomKilled: st.OOMKilled === true,
      ...(st.Error || waitError ? { error: st.Error || waitError } : {}),
    };
  } catch (err) {
    if (statusOf(err) !== 404) throw engine.toDriverError(err);
    return { exitCode: res.StatusCode, oomKilled: false, ...(waitError ? { error: waitError } : {}) };
  }
}

/**
 * stopTask is Driver.stop: the engine's stop (the container's own stop signal, then SIGKILL after graceMs),
 * or, for a signal other than the container's own, that signal then SIGKILL after graceMs.
 */
export async function stopTask(engine: DockerEngine, handle: TaskHandle, graceMs: number, signal?: string): Promise<void> {
  const c = containerOf(engine.docker, handle);
  const t = Math.max(0, Math.ceil(graceMs / 1000));
  try {
    if (signal !== undefined) {
      const info = await engine.request('inspect', (abortSignal) => c.inspect({ abortSignal }));
      if (!info.State.Running) return;
      const own = normalizeSignal((info.Config as { StopSignal?: string }).StopSignal || 'SIGTERM');
      if (normalizeSignal(signal) !== own) {
        await killThenWait(engine, c, signal, graceMs);
        return;
      }
    }
    await engine.request('stop', (abortSignal) => c.stop({ t, abortSignal }), t * 1000);
  } catch (err) {
    const status = statusOf(err);
    // 304: already stopped; 404: gone; 409: not running (kill raced an exit).
    if (status === 304 || status === 404 || status === 409) return;
    throw engine.toDriverError(err);
  }
}

/** destroyTask is Driver.destroy: the container removed with its anonymous volumes; one already gone, or going, is no error. */
export async function destroyTask(engine: DockerEngine, handle: TaskHandle): Promise<void> {
  try {
    const c = containerOf(engine.docker, handle);
    await engine.request('remove', (abortSignal) => c.remove({ force: true, v: true, abortSignal }));
  } catch (err) {
    const status = statusOf(err);
    if (status === 404) return;
    if (status === 409 && /already in progress/i.test(engineMessage(err))) return;
    throw engine.toDriverError(err);
  }
}

async function inspectByName(engine: DockerEngine, name: string): Promise<Docker.ContainerInspectInfo | undefined> {
  try {
    const c = engine.docker.getContainer(name);
    return await engine.request('inspect', (abortSignal) => c.inspect({ abortSignal }));
  } catch (err) {
    if (statusOf(err) === 404) return undefined;
    throw engine.toDriverError(err);
  }
}

/** ensureRunning starts an existing container again in place (same id, logs kept) unless it already runs. */
async function ensureRunning(engine: DockerEngine, info: Docker.ContainerInspectInfo): Promise<TaskHandle> {
  const handle = handleOf(info.Id, info.Name.replace(/^\//, ''));
  const st = info.State;
  if (st.Paused) {
    try {
      const c = engine.docker.getContainer(info.Id);
      await engine.request('unpause', (abortSignal) => c.unpause({ abortSignal }));
    } catch (err) {
      if (statusOf(err) !== 409) throw engine.toDriverError(err);
    }
    return handle;
  }
  if (st.Running || st.Restarting) return handle;
  await startContainer(engine, info.Id);
  return handle;
}

async function startContainer(engine: DockerEngine, id: string): Promise<void> {
  try {
    const c = engine.docker.getContainer(id);
    await engine.request('start', (abortSignal) => c.start({ abortSignal }));
  } catch (err) {
    if (statusOf(err) === 304) return; // already started (a concurrent start won)
    throw engine.toDriverError(err);
  }
}

async function killThenWait(engine: DockerEngine, c: Docker.Container, signal: string, graceMs: number): Promise<void> {
  await engine.request('kill', (abortSignal) => c.kill({ signal, abortSignal }));
  if (await waitNotRunning(c, graceMs)) return;
  try {
    await engine.request('kill', (abortSignal) => c.kill({ signal: 'SIGKILL', abortSignal }));
  } catch (err) {
    const status = statusOf(err);
    if (status !== 404 && status !== 409) throw err;
    return;
  }
  await waitNotRunning(c, KILL_WAIT_MS);
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
