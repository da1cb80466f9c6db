/**
 * Volumes declared with the local driver's options, on the real dockerd:
 * `driver_opts: {type: none, o: bind, device: <path>}` binds that host path
 * into the task (what the task writes is on the host, and what the host
 * put there the task reads), and `{type: tmpfs, o: size=…,mode=…}` is a
 * tmpfs of that size and mode; neither leaves an engine volume behind. One
 * `baton server` and one agent (127.0.0.2) on the shared dockerd.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupDir, docker, eventually, tempDir, TEST_IMAGE } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';

describe('local volumes with driver_opts: a bind of a host path and a tmpfs', () => {
  const c = new TestCluster('baton-volumes-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 5000, bookmarkIntervalMs: 1000 }, 47000);
  let host = '';

  beforeAll(async () => {
    host = tempDir('baton-volumes-host-');
    await c.start(['n2']);
  }, 90_000);
  afterAll(async () => {
    await c.stop();
    if (host) cleanupDir(host);
  }, 60_000);

  it('binds the device of a type: none volume and mounts a type: tmpfs volume with its size and mode', async () => {
    const device = join(host, 'data');
    mkdirSync(device);
    writeFileSync(join(device, 'seed'), 'from the host\n');
    await c.apply('vol', `services:
  app:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "cat /data/seed > /data/copied && echo from the task > /data/written && exec sleep 600"]
    volumes: ["hostdata:/data", "scratch:/scratch"]
volumes:
  hostdata:
    driver: local
    driver_opts: {type: none, o: bind, device: ${device}}
  scratch:
    driver: local
    driver_opts: {type: tmpfs, device: tmpfs, o: "size=8m,mode=1770"}
`);
    const task = await eventually(async () => {
      const [t] = live(await c.tasksOf('vol_app'));
      expect(t).toBeDefined();
      return t!;
    }, 5 * 15_000);
    // The task read what the host put there, and the host sees what the task wrote: one directory.
    await eventually(async () => expect(existsSync(join(device, 'written'))).toBe(true), 5 * 5000);
    expect(readFileSync(join(device, 'written'), 'utf8')).toBe('from the task\n');
    expect(readFileSync(join(device, 'copied'), 'utf8')).toBe('from the host\n');
    // /scratch is a tmpfs of 8 MiB with mode 1770, in the task's container.
    const id = task.status.containerId!;
    const mount = (await docker(['exec', id, 'sh', '-c', 'grep " /scratch " /proc/mounts'])).trim();
    expect(mount).toMatch(/^tmpfs \/scratch tmpfs rw,/);
    expect(mount).toMatch(/size=8192k/);
    expect(mount).toMatch(/mode=1770/);
    expect((await docker(['exec', id, 'stat', '-c', '%a', '/scratch'])).trim()).toBe('1770');
    // The engine was asked for a bind and a tmpfs, and made no volume for either.
    const hostConfig = JSON.parse(await docker(['inspect', '--format', '{{json .HostConfig}}', id])) as { Mounts?: { Type: string; Source: string; Target: string }[]; Tmpfs?: Record<string, string> };
    expect(hostConfig.Mounts).toEqual([expect.objectContaining({ Type: 'bind', Source: device, Target: '/data' })]);
    expect(Object.keys(hostConfig.Tmpfs ?? {})).toEqual(['/scratch']);
    expect((await docker(['volume', 'ls', '-q', '--filter', 'name=vol_'])).trim()).toBe('');
    expect((await c.baton(['stack', 'rm', 'vol'])).code).toBe(0);
    await eventually(async () => expect(await c.running('vol_app')).toEqual([]), 5 * 10_000);
    // The host's files outlive the task.
    expect(readFileSync(join(device, 'seed'), 'utf8')).toBe('from the host\n');
  }, 180_000);
});
