/**
 * TaskFiles delivers secrets and configs to a task's container as files, as
 * Swarm does: the agent asks the server for each content (given only while
 * one of this node's tasks uses it), writes it with the declared owner and
 * mode under a directory on a tmpfs (RAM: never on disk in clear), and the
 * container gets each file as a read-only bind mount at its target. Nothing
 * goes into the environment, the container's config or the logs.
 *
 * The directory is `<runDir>/<node>/files/<task uid>/<kind>-<index>`: names
 * the agent makes, never one received (a task uid is checked to be a UUID).
 * `runDir` (/run/baton) must be on a tmpfs; if it is not, the agent mounts
 * one there. Files are written again before every start of a container (an
 * agent restart, a reboot), and removed with the task.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, readFile, rm, readdir, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import type { Logger } from 'pino';
import type { ApiClient } from '../api/client.js';
import type { ContainerSpec, FileRefSpec, MountSpec, Task } from '../api/types.js';
import { BatonError } from '../base/errors.js';
import { dockerConfigCredential, registryCredentialSchema, registryOf, type RegistryCredential } from '../api/registries.js';

const run = promisify(execFile);
/** Where agents keep what must stay in RAM (a tmpfs on most systems). */
export const DEFAULT_RUN_DIR = '/run/baton';
/** statfs(2)'s f_type of a tmpfs. */
const TMPFS_MAGIC = 0x01021994;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** The server's answer: the content and its hash, checked before use. */
const answerSchema = z.object({ data: z.string().max(1_000_000).regex(/^[A-Za-z0-9+/]*={0,2}$/), hash: z.string().regex(/^[0-9a-f]{64}$/) });

export class TaskFiles {
  private ready?: Promise<void>;

  constructor(
    private readonly root: string,
    private readonly node: string,
    private readonly client: () => ApiClient,
    private readonly log: Logger,
  ) {}

  /** needed: whether a task has files to deliver. */
  static needed(spec: ContainerSpec): boolean {
    return !!(spec.secrets?.length || spec.configs?.length);
  }

  /**
   * prepare writes the files of one of the task's containers (its main one
   * unless `container` names another) and returns the bind mounts that put
   * them at their targets.
   */
  async prepare(task: Task, spec: ContainerSpec = task.spec.container, container?: string): Promise<MountSpec[]> {
    if (!TaskFiles.needed(spec)) return [];
    await (this.ready ??= this.ensureTmpfs().catch((e) => {
      this.ready = undefined;
      throw e;
    }));
    const dir = this.taskDir(task.metadata.uid);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const mounts: MountSpec[] = [];
    for (const kind of ['secret', 'config'] as const) {
      const refs: FileRefSpec[] = (kind === 'secret' ? spec.secrets : spec.configs) ?? [];
      for (const [i, ref] of refs.entries()) {
        // A container name is a DNS label (schemas.ts): no path separator.
        const file = join(dir, `${container ? `${container}.` : ''}${kind}-${i}`);
        await this.write(kind, ref, file);
        mounts.push({ type: 'bind', source: file, target: ref.target, readOnly: true });
      }
    }
    return mounts;
  }

  /** release removes a task's files (its container is gone). */
  async release(taskUid: string): Promise<void> {
    if (!UUID.test(taskUid)) return;
    await rm(this.taskDir(taskUid), { recursive: true, force: true });
  }

  /** sweep removes the files of tasks this node no longer has. */
  async sweep(keep: Set<string>): Promise<void> {
    const dirs = await readdir(this.root).catch(() => [] as string[]);
    for (const d of dirs) if (UUID.test(d) && !keep.has(d)) await rm(join(this.root, d), { recursive: true, force: true });
  }

  private taskDir(uid: string): string {
    if (!UUID.test(uid)) throw new BatonError('BATON_ERR_BAD_REQUEST', `task uid ${JSON.stringify(uid.slice(0, 64))} is not a UUID`);
    return join(this.root, uid);
  }

  /**
   * registryAuth reads the registry login a container's image is pulled
   * with (its pullSecret), for the pull alone: never written anywhere.
   */
  async registryAuth(spec: ContainerSpec): Promise<RegistryCredential> {
    const name = spec.pullSecret?.source;
    if (!name) throw new BatonError('BATON_ERR_BAD_REQUEST', `${spec.image} names no pull secret`);
    const res = answerSchema.safeParse(await this.client().call('GET', `/api/v1/nodes/${encodeURIComponent(this.node)}/secrets/${encodeURIComponent(name)}`));
    if (!res.success) throw new BatonError('BATON_ERR_INTERNAL', `the server's answer for secret "${name}" is malformed`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(res.data.data, 'base64').toString('utf8'));
    } catch {
      parsed = undefined;
    }
    const cred = registryCredentialSchema.safeParse(parsed);
    if (cred.success) return cred.data;
    // A Kubernetes kubernetes.io/dockerconfigjson Secret (imagePullSecrets): the entry of the image's registry.
    const fromDockerConfig = dockerConfigCredential(parsed, registryOf(spec.image));
    if (fromDockerConfig) return fromDockerConfig;
    throw new BatonError('BATON_ERR_BAD_REQUEST', `secret "${name}" (the pull secret of ${spec.image}) holds no login for registry ${registryOf(spec.image)}: make one with baton registry login`);
  }

  /** write fetches one content and writes it as `file`, unless the file holds it already. */
  private async write(kind: 'secret' | 'config', ref: FileRefSpec, file: string): Promise<void> {
    const res = answerSchema.safeParse(await this.client().call('GET', `/api/v1/nodes/${encodeURIComponent(this.node)}/${kind}s/${encodeURIComponent(ref.source)}`));
    if (!res.success) throw new BatonError('BATON_ERR_INTERNAL', `the server's answer for ${kind} "${ref.source}" is malformed`);
    const data = Buffer.from(res.data.data, 'base64');
    const have = await readFile(file).catch(() => undefined);
    if (!have || !have.equals(data)) {
      // Written owner-only first, then given its owner and mode: never readable by others in between.
      await writeFile(file, data, { mode: 0o600 });
    }
    await chown(file, ref.uid, ref.gid);
    await chmod(file, ref.mode);
    if (ref.hash && ref.hash !== res.data.hash) this.log.info({ kind, name: ref.source }, 'the content changed since the task was made; its service rolls to the new one');
  }

  /** ensureTmpfs makes the root directory, on a tmpfs (mounting one when its file system is not). */
  private async ensureTmpfs(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    // Only root (the agent, the engine) walks it; a container sees its files through their bind mounts.
    await chmod(this.root, 0o700);
    const fs = await statfs(this.root);
    if (Number(fs.type) === TMPFS_MAGIC) return;
    await run('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=64m', 'baton-files', this.root]);
    this.log.info({ dir: this.root }, 'mounted a tmpfs for secrets and configs');
  }
}
