/**
 * Images on the Docker engine: creating a container under a task's pull
 * policy (pull first, pull when missing, or never), following a pull's
 * progress stream to its end (its errors arrive inside the stream as well as
 * by status), and reading an image's own health check. A pull has its own
 * bound (pullTimeoutMs), far longer than an ordinary request's.
 */
import type Docker from 'dockerode';
import { DriverError, type TaskConfig } from '../driver.js';
import { DOCKER_HUB, registryOf, type RegistryCredential } from '../../api/registries.js';
import { probeRegistry } from '../../api/registryProbe.js';
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
  auth?: () => Promise<RegistryCredential>,
): Promise<string> {
  const { docker } = engine;
  if (policy === 'always') await pull(engine, image, pullTimeoutMs, auth);
  try {
    return (await engine.request('create', (abortSignal) => docker.createContainer({ ...body, abortSignal }))).id;
  } catch (err) {
    if (statusOf(err) !== 404) throw createError(engine, err);
    if (policy !== 'missing') throw new DriverError(engineMessage(err), 'image_not_found');
  }
  await pull(engine, image, pullTimeoutMs, auth);
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

/**
 * pullFailure says why a pull failed in words a person can act on, from the
 * engine's message: the registry refused the credentials (or wanted some),
 * it has no such image, or it could not be reached; anything else as the
 * engine said it.
 */
export function pullFailure(image: string, message: string, withAuth: boolean): string {
  const registry = registryOf(image);
  if (/unauthorized|authentication required|no basic auth credentials|denied|incorrect username or password|\b401\b/i.test(message)) {
    return `pulling ${image}: registry ${registry} refused ${withAuth ? 'the credentials of its pull secret' : 'an anonymous pull'} (authentication): ${withAuth ? 'baton registry login again' : 'log in (baton registry login) and set x-baton.pull_secret, or apply --with-registry-auth'}; the engine said: ${message}`;
  }
  if (/manifest unknown|not found|does not exist|no such image|\b404\b/i.test(message)) return `pulling ${image}: registry ${registry} has no such image (not found); the engine said: ${message}`;
  if (/connection refused|no such host|i\/o timeout|dial tcp|network is unreachable|tls: |x509: |timed out|context deadline exceeded|server gave HTTP response to HTTPS client/i.test(message)) {
    return `pulling ${image}: registry ${registry} could not be reached (unreachable); the engine said: ${message}`;
  }
  return `pulling ${image}: ${message}`;
}

/** PullError: a pull's failure as the engine's stream said it, before it is explained. */
class PullError extends Error {}

/**
 * explainPull words a failed pull (pullFailure); when the engine's words do
 * not say which of the three it was, the registry is asked itself.
 */
async function explainPull(image: string, message: string, auth?: RegistryCredential): Promise<string> {
  const said = pullFailure(image, message, !!auth);
  if (said !== `pulling ${image}: ${message}`) return said;
  const registry = registryOf(image);
  if (registry === DOCKER_HUB) return said;
  const v = await probeRegistry(registry, auth).catch(() => undefined);
  if (!v || v.ok) return said;
  return pullFailure(image, v.why === 'refused' ? `unauthorized (${v.message}); the engine said: ${message}` : `connection refused (${v.message}); the engine said: ${message}`, !!auth);
}

/** pull follows the engine's progress stream to its end; errors arrive inside the stream as well as by status. */
async function pull(engine: DockerEngine, image: string, pullTimeoutMs: number, login?: () => Promise<RegistryCredential>): Promise<void> {
  // The login is read only now that a pull happens: an image already on the node needs none.
  const auth = login ? await login() : undefined;
  const signal = AbortSignal.timeout(pullTimeoutMs);
  try {
    const stream = await engine.docker.pull(image, { abortSignal: signal, ...(auth ? { authconfig: { username: auth.username, password: auth.password, serveraddress: auth.serveraddress } } : {}) });
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
        else if (streamError) reject(new PullError(streamError));
        else resolve();
      };
      stream.on('data', (chunk: Buffer | string) => split(chunk));
      stream.on('error', (err: Error) => finish(err));
      stream.on('end', () => finish());
      stream.on('close', () => finish());
    });
  } catch (err) {
    if (err instanceof PullError) throw new DriverError(await explainPull(image, err.message, auth), 'image_not_found');
    if (err instanceof DriverError) throw err;
    if (signal.aborted) throw new DriverError(`pulling ${image} timed out after ${pullTimeoutMs}ms`, 'image_not_found');
    if (isConnectionError(err)) throw engine.toDriverError(err);
    throw new DriverError(await explainPull(image, engineMessage(err), auth), 'image_not_found');
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
