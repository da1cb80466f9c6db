/**
 * Sandboxes on Docker: a task's network namespace is held by a pause
 * container (started with `--network none`, so the engine gives it a
 * namespace with loopback only and nothing else), and the task's containers
 * join it (`container:<pause>`). The agent plumbs the namespace itself
 * (net/plumbing.ts): the engine never chooses a task's address.
 *
 * The pause container is named after the task (`<task>.pause`) and labelled
 * like the task's containers, so a restarted agent finds it, and a sweep
 * that removes a task's containers removes it too.
 */
import Docker from 'dockerode';
import type { SandboxDns } from '../driver.js';
import { isStaleTask, statusOf } from './engine.js';
import { PAUSE_IMAGE, PAUSE_IMAGE_CHANGES, PAUSE_LABEL, pauseExecutable, pauseRootfs } from '../net/pauseImage.js';

export interface Sandbox {
  /** The pause container's id. */
  id: string;
  /** Its PID 1 on this host: the way into its network namespace (changes when the engine restarts it). */
  pid: number;
}


/** ensurePauseImage builds the pause image on this engine when it is missing (an import of a few hundred bytes). */
export async function ensurePauseImage(docker: Docker, image = PAUSE_IMAGE): Promise<void> {
  try {
    await docker.getImage(image).inspect();
    return;
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
  if (image !== PAUSE_IMAGE) throw new Error(`the pause image ${image} is not on this engine; load it (docker load) or leave --pause-image unset`);
  const exe = pauseExecutable();
  if (!exe) throw new Error(`no built-in pause executable for ${process.arch}; give the agent --pause-image with an image whose command blocks for ever`);
  const [repo, tag] = image.split(':');
  const stream = await docker.importImage(pauseRootfs(exe) as unknown as string, { repo, tag, changes: PAUSE_IMAGE_CHANGES } as object);
  await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())));
  await docker.getImage(image).inspect();
}

export function sandboxName(containerName: string): string {
  return `${containerName}.pause`;
}

/**
 * ensureSandbox starts (or finds, or restarts) the pause container of a
 * task and returns its PID. Its restart policy is none: after an engine
 * restart the agent starts it again and plumbs the same address into it.
 */
export async function ensureSandbox(docker: Docker, containerName: string, labels: Record<string, string>, image = PAUSE_IMAGE, dns?: SandboxDns, replaced = false): Promise<Sandbox> {
  const name = sandboxName(containerName);
  let id: string;
  try {
    id = (await docker.getContainer(name).inspect()).Id;
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
    try {
      id = (
        await docker.createContainer({
          name,
          Image: image,
          Labels: { ...labels, [PAUSE_LABEL]: '1' },
          ...(dns?.hostname ? { Hostname: dns.hostname } : {}),
          StopSignal: 'SIGKILL',
          HostConfig: {
            NetworkMode: 'none',
            ReadonlyRootfs: true,
            CapDrop: ['ALL'],
            Memory: 8 * 1024 * 1024,
            PidsLimit: 4,
            RestartPolicy: { Name: 'no' },
            // The resolv.conf every container of the task shares (they join this namespace, and its files).
            ...(dns?.servers.length ? { Dns: dns.servers, DnsSearch: dns.search, DnsOptions: dns.options } : {}),
          },
        })
      ).id;
    } catch (e) {
      if (statusOf(e) !== 409) throw e;
      id = (await docker.getContainer(name).inspect()).Id;
    }
  }
  const c = docker.getContainer(id);
  let info = await c.inspect();
  if (!info.State.Running) {
    try {
      await c.start();
    } catch (e) {
      // A start that died with the engine left containerd's task behind: this pause container can never start again.
      // It holds nothing but the namespace (the agent plumbs the task's address into the new one), so a new one replaces it.
      if (isStaleTask(e) && !replaced) {
        await c.remove({ force: true });
        return ensureSandbox(docker, containerName, labels, image, dns, true);
      }
      if (statusOf(e) !== 304) {
        // A pause container that cannot start is of no use to anyone: removed here, or it would outlive the task it was
        // made for (the task holds no address yet, so releasing its network would not look for it).
        await c.remove({ force: true }).catch(() => undefined);
        throw e;
      }
    }
    info = await c.inspect();
  }
  if (!info.State.Running || !info.State.Pid) throw new Error(`the pause container ${name} did not start: ${info.State.Error || `status ${info.State.Status}`}`);
  return { id, pid: info.State.Pid };
}

/** removeSandbox removes a task's pause container (its namespace goes with it); nothing to do when it is gone. */
export async function removeSandbox(docker: Docker, containerName: string): Promise<void> {
  try {
    await docker.getContainer(sandboxName(containerName)).remove({ force: true });
  } catch (err) {
    if (statusOf(err) !== 404 && statusOf(err) !== 409) throw err;
  }
}
