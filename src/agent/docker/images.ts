/**
 * Images on the Docker engine: creating a container under a task's pull
 * policy (pull first, pull when missing, or never), following a pull's
 * progress stream to its end (its errors arrive inside the stream as well as
 * by status), and reading an image's own health check. A pull has its own
 * bound (pullTimeoutMs), far longer than an ordinary request's.
 */
import type Docker from 'dockerode';
import { DriverError, type TaskConfig } from '../driver.js';
import { engineMessage, isConnectionError, lineSplitter, statusOf, type DockerEngine } from './engine.js';

/**
 * createWithPullPolicy creates the container from body and returns its id, pulling image as policy says:
 * a 409 (the name is taken) is passed on as it is, for the caller to settle.
 */
export async function createWithPullPolicy(
  engine: DockerEngine,
  body: Docker.ContainerCreateOptions,
  image: string,
  policy: TaskConfig['pullPolicy'],
  pullTimeoutMs: number,
): Promise<string> {
  const { docker } = engine;
  if (policy === 'always') await pull(engine, image, pullTimeoutMs);
  try {
    return (await engine.request('create', (abortSignal) => docker.createContainer({ ...body, abortSignal }))).id;
  } catch (err) {
    if (statusOf(err) !== 404) throw createError(engine, err);
    if (policy !== 'missing') throw new DriverError(engineMessage(err), 'image_not_found');
  }
  await pull(engine, image, pullTimeoutMs);
  try {
    return (await engine.request('create', (abortSignal) => docker.createContainer({ ...body, abortSignal }))).id;
  } catch (err) {
    if (statusOf(err) === 404) throw new DriverError(engineMessage(err), 'image_not_found');
    throw createError(engine, err);
  }
}

function createError(engine: DockerEngine, err: unknown): Error {
  if (statusOf(err) === 409) return err as Error; // handled by start()
  if (statusOf(err) === 400) return new DriverError(engineMessage(err), 'invalid_config');
  return engine.toDriverError(err);
}

/** pull follows the engine's progress stream to its end; errors arrive inside the stream as well as by status. */
async function pull(engine: DockerEngine, image: string, pullTimeoutMs: number): Promise<void> {
  const signal = AbortSignal.timeout(pullTimeoutMs);
  try {
    const stream = await engine.docker.pull(image, { abortSignal: signal });
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
    if (signal.aborted) throw new DriverError(`pulling ${image} timed out after ${pullTimeoutMs}ms`, 'image_not_found');
    if (isConnectionError(err)) throw engine.toDriverError(err);
    throw new DriverError(engineMessage(err), 'image_not_found');
  }
}

/** imageHealthcheck is the health check command an image declares (undefined when it declares none, or NONE, or the image is missing). */
export async function imageHealthcheck(engine: DockerEngine, image: string): Promise<string[] | undefined> {
  try {
    const img = engine.docker.getImage(image);
    const info = await engine.request('image inspect', (abortSignal) => img.inspect({ abortSignal } as object));
    const test = (info.Config as { Healthcheck?: { Test?: string[] } } | undefined)?.Healthcheck?.Test;
    return test && test.length && test[0] !== 'NONE' ? test : undefined;
  } catch (err) {
    if (statusOf(err) === 404) return undefined;
    throw engine.toDriverError(err);
  }
}
