/**
 * ImageBuilds: a node builds the image of a service with `build:` before
 * the first start of a task that needs it (api/build.ts has the rules).
 *
 * - The image's tag is its build's hash, so an image already on the engine
 *   is the one wanted: nothing is fetched or built again.
 * - Tasks of one service on one node share one build: the second waits for
 *   the first, and hears its progress.
 * - The context comes from the servers (only for a node with a task built
 *   from it), into a file of the agent's data directory while its sha256 is
 *   checked, and goes to the engine from there; the file is removed after.
 * - A failed build fails the task's start with the builder's words (the
 *   scheduler's backoff tries again, as for any start that fails); the
 *   engine's layer cache makes a retry cheap.
 */
import { randomBytes } from 'node:crypto';
import { digestStream } from '../base/digest.js';
import { createReadStream, createWriteStream, mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ApiClient } from '../api/client.js';
import type { Task } from '../api/types.js';
import { bytes } from '../api/kinds.js';
import { DriverError, type ImageBuilder } from './driver.js';

/** Default bound on fetching a context and building from it. */
export const DEFAULT_BUILD_TIMEOUT_MS = 30 * 60_000;

interface InFlight {
  done: Promise<void>;
  listeners: Set<(message: string) => void>;
}

export class ImageBuilds {
  private readonly inFlight = new Map<string, InFlight>();

  constructor(
    private readonly dir: string,
    private readonly client: () => ApiClient,
    private readonly images: ImageBuilder,
    private readonly log: Logger,
    /** Labels every image built here gets besides its own (the cluster's): what `docker image ls --filter` finds them by. */
    private readonly imageLabels: () => Record<string, string>,
    private readonly timeoutMs = DEFAULT_BUILD_TIMEOUT_MS,
  ) {}

  /**
   * ensure returns once the engine has the task's image, building it when
   * the task's service is built and the image is not there yet; progress
   * goes to onProgress ("building image web:1a2b3c: Step 2/4 : RUN ...").
   */
  async ensure(task: Task, onProgress: (message: string) => void): Promise<void> {
    const b = task.spec.container.build;
    if (!b) return;
    const image = task.spec.container.image;
    let f = this.inFlight.get(image);
    if (!f) {
      if (await this.images.has(image)) return;
      f = this.inFlight.get(image); // another task may have started it while we asked
    }
    if (!f) {
      const listeners = new Set<(message: string) => void>();
      const tell = (m: string) => listeners.forEach((fn) => fn(m));
      const started = Date.now();
      const done = this.fetchAndBuild(task, tell)
        .then(() => this.log.info({ image, ms: Date.now() - started }, 'built image'))
        .finally(() => this.inFlight.delete(image));
      f = { done, listeners };
      this.inFlight.set(image, f);
    }
    f.listeners.add(onProgress);
    try {
      await f.done;
    } finally {
      f.listeners.delete(onProgress);
    }
  }

  private async fetchAndBuild(task: Task, tell: (m: string) => void): Promise<void> {
    const b = task.spec.container.build!;
    const image = task.spec.container.image;
    const signal = AbortSignal.timeout(this.timeoutMs);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = join(this.dir, `context-${randomBytes(6).toString('hex')}.tar`);
    try {
      tell(`fetching the build context of ${image} (${bytes(b.size)})`);
      const check = digestStream();
      try {
        await pipeline(Readable.from(await this.client().blob(b.context, signal)), check.stream, createWriteStream(file, { mode: 0o600 }));
      } catch (err) {
        throw new DriverError(`fetching the build context ${b.context}: ${(err as Error).message}`, 'failed');
      }
      const got = check.digest();
      if (got !== b.context) throw new DriverError(`the build context fetched is ${got}, not ${b.context}`, 'failed');
      tell(`building image ${image}`);
      // The cluster's label does not enter the build's hash (the same build in every cluster is the same image name).
      // One label only: the classic builder commits a layer for each.
      const labelled = { ...b, labels: { ...b.labels, ...this.imageLabels() } };
      await this.images.build(image, createReadStream(file), labelled, (step) => tell(`building image ${image}: ${step}`), signal);
    } finally {
      try {
        unlinkSync(file);
      } catch {
        /* not written */
      }
    }
  }
}
