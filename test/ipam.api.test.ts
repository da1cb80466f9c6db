/**
 * Task address ranges over real TLS, nodes joining for real (token, CSR,
 * node certificate) and registering with their certificates: each node gets
 * the lowest free range of the cluster CIDR and keeps it when it registers
 * again; `node rm` frees it; a full cluster CIDR refuses the next node and
 * says why; registrations fired at once, at one server or at two servers on
 * one store, never share a range; and on SQLite, a server restarted with
 * another --cluster-cidr leaves nodes' ranges where they were.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { BatonServer } from '../src/server/server.js';
import type { Store } from '../src/store/store.js';
import { ApiClient } from '../src/api/client.js';
import { nodeKind } from '../src/api/kinds.js';
import type { Node } from '../src/api/types.js';
import { tlsTransport, withTransport } from '../src/api/tls.js';
import { joinCluster } from '../src/agent/join.js';
import { parseCidr } from '../src/base/cidr.js';
import { rangeKey, taskNetwork, TASK_RANGE_PREFIX } from '../src/server/ipam.js';
import { parseRanges } from '../src/agent/session.js';
import { keysUnder, serverKit } from './helpers/serverKit.js';
import { registration } from './fixtures.js';

const { tmp, start, memory, admin, track } = serverKit('baton-ipam-');

interface Registered {
  taskRange: string;
  clusterCidr: string;
  serviceCidr: string;
  node: Node;
}

/** A node that joined with the token: it registers with its own certificate, as an agent does. */
interface Member {
  name: string;
  register(server?: BatonServer): Promise<Registered>;
}

async function joinNode(server: BatonServer, name: string): Promise<Member> {
  const c = await joinCluster({ server: server.url, token: server.joinToken, name, address: '127.0.0.1' });
  const t = track(tlsTransport(c));
  return {
    name,
    register: (at = server) =>
      new ApiClient(withTransport({ server: at.url, timeoutMs: 10_000 }, t)).call<Registered>('POST', '/api/v1/nodes/register', registration(name)),
  };
}

/** held lists the store's range keys as range → node. */
const held = (store: Store) => keysUnder(store, TASK_RANGE_PREFIX);

const keyOf = (range: string) => rangeKey(parseCidr(range)).slice(TASK_RANGE_PREFIX.length);
const rangeColumn = (n: Node) => nodeKind.columns.find((c) => c.header === 'TASK RANGE')!.get(n);

describe('task ranges on one server (memory store)', () => {
  let server: BatonServer;
  let api: ApiClient;

  beforeAll(async () => {
    server = await start({ dataDir: tmp(), ...memory() });
    api = admin(server);
  });
  afterAll(() => server.stop());

  it('gives two nodes different ranges, the lowest free, and the same one again when a node registers again', async () => {
    const [a1, a2] = [await joinNode(server, 'a1'), await joinNode(server, 'a2')];
    const r1 = await a1.register();
    const r2 = await a2.register();
    expect(r1.taskRange).toBe('10.42.0.0/24');
    expect(r2.taskRange).toBe('10.42.1.0/24');
    expect(r1.node.status.taskRange).toBe('10.42.0.0/24');
    // The cluster's ranges come with the node's own, and the agent reads them as ranges.
    expect(r1).toMatchObject({ clusterCidr: '10.42.0.0/16', serviceCidr: '10.43.0.0/16' });
    expect(parseRanges(r1)).toEqual({ taskRange: parseCidr('10.42.0.0/24'), clusterCidr: parseCidr('10.42.0.0/16'), serviceCidr: parseCidr('10.43.0.0/16') });
    expect(() => parseRanges({ ...r1, serviceCidr: '10.43.0.1/16' })).toThrow(/^the server's registration answer has no usable serviceCidr: 10\.43\.0\.1\/16 has host bits set/);
    expect(() => parseRanges({ ...r1, clusterCidr: undefined as never })).toThrow(/no usable clusterCidr: it is missing/);
    // An agent restart registers again: it keeps its range.
    expect((await a1.register()).taskRange).toBe('10.42.0.0/24');
    expect((await a2.register()).taskRange).toBe('10.42.1.0/24');
    const node = await api.get<Node>(nodeKind, 'a1');
    expect(node.status.taskRange).toBe('10.42.0.0/24');
    expect(rangeColumn(node)).toBe('10.42.0.0/24');
    expect(await held(server.store)).toEqual({ '10.42.0.0-24': 'a1', '10.42.1.0-24': 'a2' });
    const ev = (await api.events({ limit: 1000 })).items.find((e) => e.reason === 'NodeRegistered' && e.name === 'a2');
    expect(ev?.message).toMatch(/tasks in 10\.42\.1\.0\/24/);
  });

  it('frees a removed node\'s range, and the next node takes the lowest free one', async () => {
    await api.call('DELETE', '/api/v1/nodes/a1?force=true');
    expect(await held(server.store)).toEqual({ '10.42.1.0-24': 'a2' });
    const a3 = await joinNode(server, 'a3');
    expect((await a3.register()).taskRange).toBe('10.42.0.0/24');
    expect(await held(server.store)).toEqual({ '10.42.0.0-24': 'a3', '10.42.1.0-24': 'a2' });
  });

  it('never gives one range twice to registrations fired at once, and gives the lowest free ones', async () => {
    const members = await Promise.all(Array.from({ length: 12 }, (_, i) => joinNode(server, `p${i}`)));
    const got = await Promise.all(members.map((m) => m.register()));
    const ranges = got.map((g) => g.taskRange);
    expect(new Set(ranges).size).toBe(12);
    expect([...ranges].sort()).toEqual(Array.from({ length: 12 }, (_, i) => `10.42.${i + 2}.0/24`).sort());
    const keys = await held(server.store);
    expect(Object.keys(keys)).toHaveLength(14);
    for (const [i, m] of members.entries()) expect(keys[keyOf(ranges[i]!)]).toBe(m.name);
    // Registering them all again, at once, changes nothing.
    expect((await Promise.all(members.map((m) => m.register()))).map((g) => g.taskRange)).toEqual(ranges);
    expect(await held(server.store)).toEqual(keys);
  });
});

describe('task ranges on two servers sharing one store (memory store)', () => {
  it('never gives one range twice when both servers register nodes at once', async () => {
    const shared = memory();
    const s1 = await start({ dataDir: tmp(), ...shared });
    const s2 = await start({ dataDir: tmp(), ...shared });
    try {
      // Each server has its own CA here: nodes joined at each register there, all at once.
      const m1 = await Promise.all(Array.from({ length: 8 }, (_, i) => joinNode(s1, `s1n${i}`)));
      const m2 = await Promise.all(Array.from({ length: 8 }, (_, i) => joinNode(s2, `s2n${i}`)));
      const got = await Promise.all([...m1, ...m2].map((m) => m.register()));
      const ranges = got.map((g) => g.taskRange);
      expect(new Set(ranges).size).toBe(16);
      for (const r of ranges) expect(r).toMatch(/^10\.42\.\d+\.0\/24$/);
      const keys = await held(shared.store!);
      expect(Object.keys(keys)).toHaveLength(16);
      for (const [i, m] of [...m1, ...m2].entries()) expect(keys[keyOf(ranges[i]!)]).toBe(m.name);
    } finally {
      await s1.stop();
      await s2.stop();
    }
  });
});

describe('a full cluster CIDR (memory store)', () => {
  it('refuses the node after the last range with a clear message, and takes it once a range is freed', async () => {
    const server = await start({ dataDir: tmp(), ...memory(), clusterCidr: '10.99.0.0/23', nodeCidrSize: 24 });
    const api = admin(server);
    try {
      const [c1, c2, c3] = [await joinNode(server, 'c1'), await joinNode(server, 'c2'), await joinNode(server, 'c3')];
      expect((await c1.register()).taskRange).toBe('10.99.0.0/24');
      expect((await c2.register()).taskRange).toBe('10.99.1.0/24');
      const message =
        'no task range left for node c3: the cluster CIDR 10.99.0.0/23 holds 2 ranges of /24 and nodes hold all of them; remove a node (baton node rm), or restart the server with a larger --cluster-cidr or a longer --node-cidr-size';
      await expect(c3.register()).rejects.toMatchObject({ status: 409, code: 'BATON_ERR_CONFLICT', message });
      expect((await api.nodes()).items.map((n) => n.metadata.name).sort()).toEqual(['c1', 'c2']);
      const ev = (await api.events({ limit: 1000 })).items.filter((e) => e.reason === 'TaskRangesExhausted');
      expect(ev.map((e) => [e.type, e.name, e.message])).toEqual([['Warning', 'c3', message]]);
      await api.call('DELETE', '/api/v1/nodes/c1?force=true');
      expect((await c3.register()).taskRange).toBe('10.99.0.0/24');
      expect(await held(server.store)).toEqual({ '10.99.0.0-24': 'c3', '10.99.1.0-24': 'c2' });
    } finally {
      await server.stop();
    }
  });
});

describe('the server\'s flags', () => {
  it('refuses a bad --cluster-cidr or --node-cidr-size at start, saying what is wrong', async () => {
    const refused = (clusterCidr: string, nodeCidrSize = 24) => start({ dataDir: tmp(), ...memory(), clusterCidr, nodeCidrSize });
    await expect(refused('fd00::/48')).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', message: '--cluster-cidr: fd00::/48 is an IPv6 range; only IPv4 ranges are supported for now' });
    await expect(refused('10.42.0.0')).rejects.toMatchObject({ message: '--cluster-cidr: 10.42.0.0 is not an IPv4 range a.b.c.d/N (N from 0 to 32)' });
    await expect(refused('10.42.1.0/16')).rejects.toMatchObject({ message: '--cluster-cidr 10.42.1.0/16 has host bits set; its network is 10.42.0.0/16' });
    await expect(refused('127.64.0.0/16')).rejects.toMatchObject({ message: '--cluster-cidr 127.64.0.0/16 overlaps loopback (127.0.0.0/8); use a private range such as 10.42.0.0/16' });
    await expect(refused('10.42.0.0/16', 16)).rejects.toMatchObject({ message: "--node-cidr-size 16: each node's range must be a prefix length longer than the cluster CIDR's /16 and at most 28 (17 to 28)" });
    await expect(refused('10.42.0.0/16', 29)).rejects.toMatchObject({ message: expect.stringMatching(/^--node-cidr-size 29: .*at most 28 \(17 to 28\)$/) });
    await expect(refused('10.42.0.0/28', 28)).rejects.toMatchObject({ message: expect.stringMatching(/none fits: the cluster CIDR must be \/27 or shorter/) });
    expect(taskNetwork()).toEqual({ cluster: parseCidr('10.42.0.0/16'), nodePrefix: 24, service: parseCidr('10.43.0.0/16') });
  });

  it('checks --service-cidr as --cluster-cidr, and refuses one that overlaps it, naming both flags', async () => {
    const refused = (serviceCidr: string, clusterCidr = '10.42.0.0/16') => start({ dataDir: tmp(), ...memory(), clusterCidr, serviceCidr });
    await expect(refused('10.43.0.0')).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', message: '--service-cidr: 10.43.0.0 is not an IPv4 range a.b.c.d/N (N from 0 to 32)' });
    await expect(refused('fd00::/64')).rejects.toMatchObject({ message: '--service-cidr: fd00::/64 is an IPv6 range; only IPv4 ranges are supported for now' });
    await expect(refused('10.43.0.1/16')).rejects.toMatchObject({ message: '--service-cidr 10.43.0.1/16 has host bits set; its network is 10.43.0.0/16' });
    await expect(refused('169.254.0.0/24')).rejects.toMatchObject({ message: '--service-cidr 169.254.0.0/24 overlaps link-local (169.254.0.0/16); use a private range such as 10.43.0.0/16' });
    await expect(refused('10.43.0.0/31')).rejects.toMatchObject({ message: '--service-cidr 10.43.0.0/31 holds no service address once its network and broadcast addresses are left out: it must be /30 or shorter' });
    const overlap = "a service VIP could then be a task's address; give the two flags ranges apart, such as 10.43.0.0/16 and 10.42.0.0/16";
    await expect(refused('10.42.128.0/17')).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', message: `--service-cidr 10.42.128.0/17 overlaps --cluster-cidr 10.42.0.0/16: ${overlap}` });
    await expect(refused('10.0.0.0/8')).rejects.toMatchObject({ message: `--service-cidr 10.0.0.0/8 overlaps --cluster-cidr 10.42.0.0/16: ${overlap}` });
    // Either flag may be the one that moved.
    await expect(refused('10.43.0.0/16', '10.43.16.0/20')).rejects.toMatchObject({ message: `--service-cidr 10.43.0.0/16 overlaps --cluster-cidr 10.43.16.0/20: ${overlap}` });
    const ok = await start({ dataDir: tmp(), ...memory(), clusterCidr: '10.43.0.0/16', serviceCidr: '10.96.0.0/12' });
    expect(ok.network.service).toEqual(parseCidr('10.96.0.0/12'));
    await ok.stop();
  });
});

describe('task ranges on SQLite, across server restarts', () => {
  it('keeps every range; with another --cluster-cidr, nodes outside it keep theirs (with a warning) and new nodes avoid them', async () => {
    const dataDir = tmp();
    const lines: string[] = [];
    const logger = pino(
      { level: 'warn' },
      new Writable({
        write(chunk, _enc, cb) {
          lines.push(String(chunk));
          cb();
        },
      }),
    );
    // No injected store: the server opens its own SQLite database in the data directory.
    let server = await start({ dataDir });
    expect(server.store.backend).toBe('sqlite');
    const [q1, q2] = [await joinNode(server, 'q1'), await joinNode(server, 'q2')];
    expect((await q1.register()).taskRange).toBe('10.42.0.0/24');
    expect((await q2.register()).taskRange).toBe('10.42.1.0/24');
    await server.stop();

    server = await start({ dataDir, clusterCidr: '10.77.0.0/16', logger });
    try {
      expect((await q1.register(server)).taskRange).toBe('10.42.0.0/24');
      expect(lines.join('')).toContain('node q1 keeps its task range 10.42.0.0/24, outside the cluster CIDR 10.77.0.0/16: its tasks keep their addresses');
      const q3 = await joinNode(server, 'q3');
      expect((await q3.register()).taskRange).toBe('10.77.0.0/24');
      expect(await held(server.store)).toEqual({ '10.42.0.0-24': 'q1', '10.42.1.0-24': 'q2', '10.77.0.0-24': 'q3' });
    } finally {
      await server.stop();
    }

    // A larger node size: the new node's range overlaps none held at the old size.
    server = await start({ dataDir, clusterCidr: '10.77.0.0/16', nodeCidrSize: 23 });
    try {
      expect((await q2.register(server)).taskRange).toBe('10.42.1.0/24');
      const q4 = await joinNode(server, 'q4');
      expect((await q4.register()).taskRange).toBe('10.77.2.0/23');
      await admin(server).call('DELETE', '/api/v1/nodes/q3?force=true');
      expect(await held(server.store)).toEqual({ '10.42.0.0-24': 'q1', '10.42.1.0-24': 'q2', '10.77.2.0-23': 'q4' });
    } finally {
      await server.stop();
    }
  });
});
