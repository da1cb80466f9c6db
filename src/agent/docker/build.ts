/**
 * Building a service's image on the node's engine (Compose `build:`), from
 * a context archive the agent fetched (agent/builds.ts). The engine's
 * /build endpoint with its classic builder, whose progress stream carries
 * "Step 2/5 : RUN ..." lines and, at its end, an error or success.
 *
 * RUN steps' network: the build's own when it names one, else the engine's
 * default network when the engine has a bridge, else none (api/build.ts).
 */
import type { Readable } from 'node:stream';
import type { BuildSpec } from '../../api/types.js';
import { DriverError, type ImageBuilder } from '../driver.js';
import { engineMessage, isConnectionError, lineSplitter, statusOf, type DockerEngine } from './engine.js';

/** The longest progress line passed on. */
const MAX_STEP = 200;

export class DockerImages implements ImageBuilder {
  /** Whether the engine has a bridge network; read once. */
  private bridge: Promise<boolean> | undefined;

  constructor(private readonly engine: DockerEngine) {}

  async has(image: string): Promise<boolean> {
    try {
      await this.engine.request('image inspect', (abortSignal) => this.engine.docker.getImage(image).inspect({ abortSignal } as object));
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw this.engine.toDriverError(err);
    }
  }

  /** network is what RUN steps get when the build names none. */
  private async defaultNetwork(): Promise<'default' | 'none'> {
    this.bridge ??= this.engine
      .request('network inspect', (abortSignal) => (this.engine.docker.getNetwork('bridge') as unknown as { inspect(o: object): Promise<unknown> }).inspect({ abortSignal }))
      .then(() => true)
      .catch((err) => {
        this.bridge = undefined; // an engine that did not answer is asked again next time
        if (statusOf(err) === 404) return false;
        throw err;
      });
    return (await this.bridge) ? 'default' : 'none';
  }

  async build(image: string, context: Readable, b: BuildSpec, onStep: (step: string) => void, signal: AbortSignal): Promise<void> {
    const networkmode = b.network ?? (await this.defaultNetwork());
    let stream: NodeJS.ReadableStream;
    try {
      stream = await this.engine.docker.buildImage(context, {
        t: image,
        dockerfile: b.dockerfile,
        buildargs: b.args,
        labels: b.labels,
        networkmode,
        rm: true,
        forcerm: true,
        ...(b.target ? { target: b.target } : {}),
        ...(b.noCache ? { nocache: true } : {}),
        ...(b.pull ? { pull: 'true' } : {}),
        ...(b.extraHosts?.length ? { extrahosts: b.extraHosts } : {}),
        abortSignal: signal,
      } as object);
    } catch (err) {
      if (signal.aborted) throw new DriverError(`building ${image} was cut short`, 'failed');
      if (isConnectionError(err)) throw this.engine.toDriverError(err);
      throw new DriverError(`building ${image}: ${engineMessage(err)}`, 'invalid_config');
    }
    await new Promise<void>((resolve, reject) => {
      let failure: string | undefined;
      const split = lineSplitter((line) => {
        let m: { stream?: string; error?: string; errorDetail?: { message?: string } };
        try {
          m = JSON.parse(line);
        } catch {
          return;
        }
        if (m.error || m.errorDetail?.message) failure ??= m.errorDetail?.message || m.error;
        const text = m.stream?.trim();
        if (text && /^Step \d+\/\d+ :/.test(text)) onStep(text.length > MAX_STEP ? `${text.slice(0, MAX_STEP - 1)}…` : text);
      });
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        split.flush();
        if (signal.aborted) reject(new DriverError(`building ${image} was cut short`, 'failed'));
        else if (err) reject(isConnectionError(err) ? this.engine.toDriverError(err) : new DriverError(`building ${image}: ${engineMessage(err)}`, 'failed'));
        else if (failure) reject(new DriverError(`building ${image}: ${failure.trim()}`, 'invalid_config'));
        else resolve();
      };
      stream.on('data', (chunk: Buffer | string) => split(chunk));
      stream.on('error', (err: Error) => finish(err));
      stream.on('end', () => finish());
      stream.on('close', () => finish());
    });
  }
}
