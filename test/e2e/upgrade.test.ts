/**
 * A rolling upgrade of a running cluster, from the previous commit's build
 * (BATON_UPGRADE_FROM, default HEAD~1, built by the test in a git worktree of
 * its own) to this one: three servers on a 3-member etcd, two agents, the
 * shared dockerd.
 *
 * Servers first, one at a time, then one agent; the other agent stays on the
 * old build (Kubernetes' skew policy: an agent one minor behind keeps
 * working). Through it all: no task is restarted (every container keeps its
 * id and start time), the API answers, the stored schema ends at this
 * build's, and new tasks land on the old agent and the new one alike.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nodeKind } from '../../src/api/kinds.js';
import type { Node } from '../../src/api/types.js';
import { VERSION } from '../../src/base/version.js';
import { readSchema, SCHEMA_VERSION } from '../../src/server/schema.js';
import { EtcdStore } from '../../src/store/etcd/etcdStore.js';
import { EtcdCluster } from '../helpers/etcd.js';
import { live, TestCluster } from '../helpers/cluster.js';
import { BIN, cleanupDir, eventually, ROOT, stopProc, taskContainers, tempDir, TEST_IMAGE } from '../helpers/proc.js';

const run = promisify(execFile);
const NODES = ['n2', 'n3'] as const;

/** buildOld checks out `rev` in a worktree of its own and compiles it (the dashboard is not needed); returns its bin/baton.js. */
async function buildOld(dir: string, rev: string): Promise<{ bin: string; commit: string }> {
  const commit = (await run('git', ['-C', ROOT, 'rev-parse', '--verify', `${rev}^{commit}`]).catch((e: Error) => {
    throw new Error(`BATON_UPGRADE_FROM=${rev}: not a commit of this clone (${e.message.trim()}); a shallow clone has no previous commit`);
  })).stdout.trim();
  await run('git', ['-C', ROOT, 'worktree', 'add', '--detach', dir, commit]);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], { cwd: dir, maxBuffer: 16 << 20 });
  return { bin: join(dir, 'bin/baton.js'), commit };
}

describe('a rolling upgrade from the previous build', () => {
  const etcd = new EtcdCluster({ basePort: 31979, progressNotifyMs: 200 });
  let c: TestCluster;
  let store: EtcdStore;
  let work = '';
  let old = { bin: '', commit: '' };
  let oldVersion = '';

  const containers = () => taskContainers(c.clusterId);
  const versions = async () => Object.fromEntries((await c.api.list<Node>(nodeKind)).items.map((n) => [n.metadata.name, n.status.agentVersion]));

  beforeAll(async () => {
    work = tempDir('baton-upgrade-');
    old = await buildOld(join(work, 'old'), process.env.BATON_UPGRADE_FROM ?? 'HEAD~1');
    oldVersion = (await run(process.execPath, [old.bin, '--version'])).stdout.trim();
    console.log(`upgrading from ${old.commit.slice(0, 12)} (baton ${oldVersion}) to this build (baton ${VERSION})`);
    await etcd.start();
    store = await EtcdStore.open({ endpoints: etcd.endpoints });
    c = new TestCluster('baton-upgrade-', { heartbeatIntervalMs: 1000, nodeDownAfterMs: 10_000, bookmarkIntervalMs: 1000 }, 28000, { ha: { servers: 3, etcd: etcd.endpoints, leaderTtl: '1s', serverPort: 31750 } });
    c.bin = old.bin;
    await c.start(NODES);
  }, 180_000);

  afterAll(async () => {
    await c?.stop();
    await store?.close();
    await etcd.cleanup();
    if (existsSync(join(work, 'old'))) await run('git', ['-C', ROOT, 'worktree', 'remove', '--force', join(work, 'old')]).catch((e) => console.error(`worktree: ${e}`));
    if (work) cleanupDir(work);
  }, 60_000);

  it('upgrades the servers one at a time, then one agent, without restarting a task; the old agent keeps working', async () => {
    await c.apply('up', `services:
  app:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    deploy:
      replicas: 4
`);
    await eventually(async () => expect(live(await c.tasksOf('up_app')).filter((t) => t.status.state === 'running')).toHaveLength(4), 60_000);
    const before = await containers();
    expect(before.size).toBe(4);
    expect(await versions()).toEqual({ n2: oldVersion, n3: oldVersion });

    c.bin = BIN;
    for (let i = 0; i < 3; i++) {
      await stopProc(c.servers[i]!);
      await c.startServer(i);
      // The API answers through every step (a client knows every server), and the info is the new build's.
      expect((await c.serverApi(i).info()).version).toBe(VERSION);
      await eventually(async () => expect((await c.api.info()).leader).toBeDefined(), 30_000, 500);
    }
    // The leader (a new server now) brought the stored schema to this build's.
    await eventually(async () => expect((await readSchema(store)).version).toBe(SCHEMA_VERSION), 30_000, 500);

    // One agent upgraded; the other stays a version behind.
    await stopProc(c.agents.get('n3')!);
    c.startAgent('n3');
    await eventually(async () => expect(await versions()).toEqual({ n2: oldVersion, n3: VERSION }), 30_000, 500);
    for (const n of NODES) await eventually(async () => expect(await c.state(n)).toBe('ready'), 30_000, 500);

    // Nothing restarted: the same containers, started when they were.
    const after = await containers();
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [id, started] of before) expect(after.get(id), `container ${id} was restarted`).toBe(started);

    // The cluster works on both: new tasks land on the old agent and the new one.
    await eventually(async () => expect((await c.api.scale('up_app', 8)).spec.replicas).toBe(8), 30_000, 500);
    await eventually(async () => {
      const running = live(await c.tasksOf('up_app')).filter((t) => t.status.state === 'running');
      expect(running).toHaveLength(8);
      expect(running.filter((t) => t.spec.nodeName === 'n2')).toHaveLength(4);
      expect(running.filter((t) => t.spec.nodeName === 'n3')).toHaveLength(4);
    }, 60_000);
  }, 300_000);
});
