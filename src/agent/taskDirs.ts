/**
 * TaskDirs keeps the directories a task's containers share (`task` mounts,
 * a Kubernetes emptyDir): `<data-dir>/taskdirs/<task uid>/<name>`, made
 * empty when the task first starts here, kept across its containers'
 * restarts, and removed with the task. The uid must be a UUID and the name
 * a DNS label (the server's schema says so; checked again here, since they
 * become a path).
 */
import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { MountSpec } from '../api/types.js';
import { BatonError } from '../base/errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export class TaskDirs {
  constructor(private readonly root: string) {}

  /** resolve turns a container's `task` mounts into bind mounts of the task's directories, making them. */
  async resolve(taskUid: string, mounts: MountSpec[]): Promise<MountSpec[]> {
    if (!mounts.some((m) => m.type === 'task')) return mounts;
    if (!UUID.test(taskUid)) throw new BatonError('BATON_ERR_BAD_REQUEST', `task uid ${JSON.stringify(taskUid.slice(0, 64))} is not a UUID`);
    const out: MountSpec[] = [];
    for (const m of mounts) {
      if (m.type !== 'task') {
        out.push(m);
        continue;
      }
      if (!m.source || !LABEL.test(m.source)) throw new BatonError('BATON_ERR_BAD_REQUEST', `a task directory's name must be a DNS label, not ${JSON.stringify((m.source ?? '').slice(0, 64))}`);
      const dir = join(this.root, taskUid, m.source);
      // As a Kubernetes emptyDir: writable by whatever user the containers run as.
      // Made once (a container may change its mode afterwards).
      if ((await mkdir(dir, { recursive: true })) !== undefined) await chmod(dir, 0o777);
      out.push({ type: 'bind', source: dir, target: m.target, readOnly: m.readOnly });
    }
    return out;
  }

  /** release removes a task's directories (its containers are gone). */
  async release(taskUid: string): Promise<void> {
    if (UUID.test(taskUid)) await rm(join(this.root, taskUid), { recursive: true, force: true });
  }

  /** sweep removes the directories of tasks this node no longer has. */
  async sweep(keep: Set<string>): Promise<void> {
    const dirs = await readdir(this.root).catch(() => [] as string[]);
    for (const d of dirs) if (UUID.test(d) && !keep.has(d)) await rm(join(this.root, d), { recursive: true, force: true });
  }
}
