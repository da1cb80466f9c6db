/**
 * From one `baton up` on SQLite to three servers on etcd, without
 * redeploying: real `baton up`, `baton migrate`, three `baton server`
 * processes on a 3-member etcd of the test's own, the up's agent started
 * again as `baton agent`, the shared dockerd.
 *
 * - every container keeps its id and is not restarted; the service scales
 *   on the new servers (the agent listed again: the store epoch changed,
 *   and a watch from the old epoch is told 410);
 * - the old directory cannot start again as a SQLite server;
 * - a snapshot of the etcd-backed cluster restores into etcd (refused while
 *   a server leads, or without --replace), and the cluster carries on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../../src/api/client.js';
import { serviceKind, taskKind } from '../../src/api/kinds.js';
import type { ClusterInfo, Task } from '../../src/api/types.js';
import { tlsTransport, withTransport } from '../../src/api/tls.js';
import { EtcdCluster } from '../helpers/etcd.js';
import { baton, cleanupDir, eventually, portRange, removeClusterContainers, startProc, stopProc, tempDir, waitOutput, writeFile, taskContainers, TEST_IMAGE, type Proc } from '../helpers/proc.js';

const SERVER_PORT = 31940;
const AGENT_FLAGS = ['--port-range', portRange(25000), '--listen-port', '0', '--pull', 'never', '--egress', 'none', '--dns-upstream', 'none'];

describe('baton up on SQLite, moved to three servers on etcd', () => {
  const etcd = new EtcdCluster({ basePort: 31879, progressNotifyMs: 200 });
  let home = '';
  let env: Record<string, string> = {};
  let clusterId = '';
  const servers: Proc[] = [];
  let agent: Proc | undefined;
  let dataDir = '';

  const etcdFlags = () => ['--store', 'etcd', '--etcd-endpoints', etcd.endpoints.join(','), '--cluster-key', join(home, 'cluster.key')];
  const startServer = async (i: number) => {
    const dir = i === 0 ? dataDir : join(home, `s${i}`);
    const p = startProc(['server', '--data-dir', dir, '--listen', `127.0.0.1:${SERVER_PORT + i}`, '--name', `s${i}`, '--leader-ttl', '1s', '--log-level', 'warn', '--cluster-cidr', '10.203.0.0/16', ...etcdFlags()], env);
    servers[i] = p;
    await waitOutput(p, /baton server listening/, 30_000);
  };
  const api = (i = 0) => {
    const t = tlsTransport({ caPem: readFileSync(join(dataDir, 'server/ca.crt'), 'utf8') });
    return new ApiClient(withTransport({ server: `https://127.0.0.1:${SERVER_PORT + i}`, token: readFileSync(join(dataDir, 'server/admin.token'), 'utf8').trim(), timeoutMs: 5000 }, t));
  };
  /** containers: the cluster's task containers, id → start time. */
  const containers = () => taskContainers(clusterId);
  const running = async (i = 0) => (await api(i).list<Task>(taskKind)).items.filter((t) => t.status.state === 'running' && t.spec.desiredState === 'running');

  beforeAll(async () => {
    home = tempDir('baton-migrate-');
    dataDir = join(home, 'd');
    env = { BATON_HOME: home, BATON_TIMINGS: JSON.stringify({ heartbeatIntervalMs: 500, nodeDownAfterMs: 10_000 }) };
    const up = await baton(['up', '-d', '--data-dir', dataDir, '--listen', `127.0.0.1:${SERVER_PORT}`, '--cluster-cidr', '10.203.0.0/16', ...AGENT_FLAGS], env);
    expect(up.code, up.stderr).toBe(0);
    clusterId = JSON.parse(readFileSync(join(dataDir, 'server/cluster.json'), 'utf8')).clusterId;
    await etcd.start();
  }, 120_000);

  afterAll(async () => {
    await baton(['down', '--data-dir', dataDir], env).catch(() => undefined);
    if (agent) await stopProc(agent);
    for (const p of servers) if (p) await stopProc(p);
    if (clusterId) await removeClusterContainers(clusterId).catch((e) => console.error(`could not remove cluster containers: ${e}`));
    await etcd.cleanup();
    cleanupDir(home);
  }, 60_000);

  it('moves the state into etcd: containers keep their ids, the agent reconnects and lists again, and the service scales', async () => {
    const f = writeFile(home, 'stack.yaml', `services:\n  web:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "3600"]\n    deploy:\n      replicas: 3\n`);
    const applied = await baton(['apply', '-f', f, '--stack', 'shop'], env);
    expect(applied.code, applied.stderr).toBe(0);
    await eventually(async () => expect((await running()).length).toBe(3), 60_000);
    const before = await containers();
    expect(before.size).toBe(3);
    const oldInfo = await api().info();
    const list = await api().list<Task>(taskKind);
    expect(list.metadata.storeEpoch).toBe(oldInfo.storeEpoch);

    // A running server holds its directory: migrate says so and changes nothing.
    const busy = await baton(['migrate', '--data-dir', dataDir, ...etcdFlags().slice(2), '--init-cluster-key'], env);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/in use|locked|held/i);

    const down = await baton(['down', '--data-dir', dataDir], env);
    expect(down.code, down.stderr).toBe(0);
    const moved = await baton(['migrate', '--data-dir', dataDir, ...etcdFlags().slice(2), '--init-cluster-key'], env);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toMatch(/moved \d+ keys and \d+ events/);
    // Twice is refused, and the directory no longer starts as a SQLite server.
    expect((await baton(['migrate', '--data-dir', dataDir, ...etcdFlags().slice(2)], env)).stderr).toMatch(/was moved to etcd/);
    const sqlite = startProc(['server', '--data-dir', dataDir, '--listen', `127.0.0.1:${SERVER_PORT}`], env);
    await new Promise((r) => sqlite.child.once('exit', r));
    expect(sqlite.child.exitCode).toBe(1);
    expect(sqlite.output()).toMatch(/was moved to etcd/);

    for (let i = 0; i < 3; i++) await startServer(i);
    agent = startProc(['agent', '--data-dir', join(dataDir, 'agent'), '--address', '127.0.0.1', ...AGENT_FLAGS, '--log-level', 'warn'], env);

    const info: ClusterInfo = await api().info();
    expect(info.storeBackend).toBe('etcd');
    expect(info.storeEpoch).not.toBe(oldInfo.storeEpoch);
    expect(info.clusterId).toBe(clusterId);
    // A watch from the old epoch's revision is told to list again.
    const gone = await (async () => {
      for await (const _ of api().watch(taskKind, { resourceVersion: list.metadata.resourceVersion, storeEpoch: oldInfo.storeEpoch })) return 'event';
      return 'ended';
    })().catch((e: { code?: string }) => e.code);
    expect(gone).toBe('BATON_ERR_GONE');

    // The node comes back Ready, its tasks running in the containers they had.
    await eventually(async () => expect((await running()).length).toBe(3), 60_000);
    const after = await containers();
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [id, started] of before) expect(after.get(id), `container ${id} was restarted`).toBe(started);

    // The new servers run the cluster: a scale lands on the agent, which listed again in the new epoch.
    await eventually(async () => expect((await api(1).scale('shop_web', 5)).spec.replicas).toBe(5), 30_000, 500);
    await eventually(async () => expect((await running(2)).length).toBe(5), 60_000);
    expect((await containers()).size).toBe(5);

    // The agent knew one server; heartbeat replies told it of all three, and it saved them for its next start.
    const urls = [0, 1, 2].map((i) => `https://127.0.0.1:${SERVER_PORT + i}`);
    await eventually(async () => expect(JSON.parse(readFileSync(join(dataDir, 'agent/pki/cluster.json'), 'utf8')).server.split(',').sort()).toEqual(urls), 30_000);
    expect((await api().info()).servers?.map((x) => x.url).sort()).toEqual(urls);
    // And the client's context takes them too.
    const listed = await baton(['servers', '--update-context'], env);
    expect(listed.code, listed.stderr).toBe(0);
    for (const u of urls) expect(listed.stdout).toContain(u);
    expect((await baton(['context', 'ls'], env)).stdout).toContain(urls.join(','));
  }, 240_000);

  it('saves a snapshot of the etcd-backed cluster and restores it into etcd once every server is stopped', async () => {
    const snap = join(home, 'snap.db');
    const saved = await baton(['snapshot', 'save', snap], env);
    expect(saved.code, saved.stderr).toBe(0);
    const restore = (...extra: string[]) => baton(['snapshot', 'restore', snap, ...etcdFlags(), ...extra], env);
    expect((await restore()).stderr).toMatch(/already holds a Baton cluster's state.*--replace/);
    expect((await restore('--replace')).stderr).toMatch(/still leads/);

    // A change after the snapshot, which the restore takes back.
    expect((await baton(['apply', '-f', writeFile(home, 'later.yaml', `services:\n  later:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "3600"]\n`), '--stack', 'later'], env)).code).toBe(0);
    const before = await containers();
    for (const p of servers) await stopProc(p);
    await eventually(async () => expect((await restore('--replace')).stdout).toMatch(/restored .* into etcd: \d+ keys/), 30_000, 1000);
    for (let i = 0; i < 3; i++) await startServer(i);

    const names = (await api().list<any>(serviceKind)).items.map((s) => s.metadata.name).sort();
    expect(names).toEqual(['shop_web']);
    await eventually(async () => expect((await running()).length).toBe(5), 60_000);
    // The restore took the later service back; the five others kept their containers.
    await eventually(async () => {
      const now = await containers();
      expect(now.size).toBe(5);
      for (const id of now.keys()) expect(before.has(id)).toBe(true);
    }, 60_000);
  }, 240_000);
});
