/**
 * Tasks on two nodes whose traffic crosses real interfaces (issue 18's
 * multi-host harness): `baton server` in the root namespace on the
 * harness's bridge (100.127.0.1), each `baton agent` in a network namespace
 * of its own (n2 at 100.127.0.2, n3 at 100.127.0.3; NetnsHarness), on the
 * shared dockerd. Each node's task bridge, nftables tables and routes live
 * in its own namespace, so a connection that n2 sends to a task on n3 is
 * routed over the link to n3 (peer routes) and its reply comes back through
 * n2 (the masquerade for remote endpoints); nothing works because the nodes
 * share a kernel namespace.
 *
 * The client dials n2's address from the root namespace. A table of the
 * test's own in n3's namespace counts the new connections that n3 forwards
 * from its link, coming from n2's address, into each of its tasks: the
 * answers from n3's tasks went through n3.
 */
import { execFileSync } from 'node:child_process';
import { readlinkSync, realpathSync, statSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBody } from '../helpers/http.js';
import { endpointsKind, nodeKind } from '../../src/api/kinds.js';
import type { Endpoints, Node, Task } from '../../src/api/types.js';
import { tableName } from '../../src/agent/nft.js';
import { docker, eventually, stopProc, TEST_IMAGE } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';

const NODES = ['n2', 'n3'] as const;

/** An unmodified web server: busybox httpd on the fixed port 80, answering /id with its task name. */
const HTTPD80 = `["sh", "-c", "mkdir -p /www && echo $$BATON_TASK > /www/id && exec httpd -f -p 80 -h /www"]`;

/** The test's own counting table in n3's namespace (not `baton_…`: no agent's sweep judges it). */
const COUNTS = 'harness_counts';

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('tasks on two nodes in network namespaces of their own, joined by a real link', () => {
  const c = new TestCluster('baton-mh-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 5000, bookmarkIntervalMs: 1000 }, 45000, { netns: true });
  const h = () => c.netns!;
  const num = (n: string) => Number(n.slice(1));
  const endpoints = async (svc: string) => (await c.api.get<Endpoints>(endpointsKind, svc)).spec.endpoints;
  const nodeOf = (n: string) => c.api.get<Node>(nodeKind, n);
  /** meshTable: node n's routing mesh table, as nft prints it in n's namespace. */
  const meshTable = (n: string) => h().exec(num(n), ['/usr/sbin/nft', 'list', 'table', 'ip', tableName(n, c.clusterId)]);
  /** byNode: a service's running tasks, by node. */
  const byNode = async (svc: string) => new Map(live(await c.tasksOf(svc)).map((t) => [t.spec.nodeName!, t] as const));

  /** countInto loads n3's counting table: per task, new connections forwarded from n2's address on n3's link to its port 80. */
  const countInto = async (tasks: Task[]) => {
    const rules = tasks.map((t) => {
      if (!isIPv4(t.status.taskIP ?? '') || !/^[\w.-]+$/.test(t.metadata.name)) throw new Error(`task ${t.metadata.name} has no usable address`);
      return `    iifname "eth0" ip saddr ${c.address('n2')} ip daddr ${t.status.taskIP} tcp dport 80 ct state new counter comment "${t.metadata.name}"`;
    });
    await h().exec(3, ['/usr/sbin/nft', '-f', '-'], `table ip ${COUNTS}\ndelete table ip ${COUNTS}\ntable ip ${COUNTS} {\n  chain forward {\n    type filter hook forward priority -10; policy accept;\n${rules.join('\n')}\n  }\n}\n`);
  };
  /** counted: the packets each task's rule in n3's counting table has seen. */
  const counted = async (task: string): Promise<number> => {
    const doc = JSON.parse(await h().exec(3, ['/usr/sbin/nft', '-j', 'list', 'table', 'ip', COUNTS])) as { nftables: { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[] };
    const rule = doc.nftables.find((x) => x.rule?.comment === task)?.rule;
    if (!rule) throw new Error(`no counting rule for ${task}`);
    return rule.expr.find((e) => e.counter)?.counter?.packets ?? 0;
  };
  /** ask makes `times` requests to address:port and counts the answers per task name. */
  const ask = async (address: string, port: number, times: number, pauseMs = 0) => {
    const seen = new Map<string, number>();
    for (let i = 0; i < times; i++) {
      const r = await getBody(address, port);
      expect(r.ok, `request ${i} to ${address}:${port}: ${r.body}`).toBe(true);
      seen.set(r.body, (seen.get(r.body) ?? 0) + 1);
      if (pauseMs) await new Promise((res) => setTimeout(res, pauseMs));
    }
    return seen;
  };

  beforeAll(() => c.start(NODES), 90_000);
  afterAll(() => c.stop(), 60_000);

  it('runs each agent in its node\'s namespace, and routes every other node\'s task range via that node\'s address', async () => {
    const range = new Map<string, string>();
    for (const n of NODES) {
      const pid = c.agents.get(n)!.child.pid!;
      // `ip netns exec` exec'd node, so the PID the cluster stops is the agent's own, and it lives in its node's namespace.
      expect(realpathSync(`/proc/${pid}/exe`)).toBe(realpathSync(process.execPath));
      expect(readlinkSync(`/proc/${pid}/ns/net`)).toBe(`net:[${statSync(`/run/netns/${h().ns(num(n))}`).ino}]`);
      const node = await nodeOf(n);
      expect(node.status.address).toBe(c.address(n));
      range.set(n, node.status.taskRange!);
    }
    const [r2, r3] = [range.get('n2')!, range.get('n3')!];
    await eventually(async () => {
      expect(await h().exec(2, ['ip', '-4', 'route', 'show', r3])).toMatch(new RegExp(`^${esc(r3)} via ${esc(c.address('n3'))} dev eth0 proto 157`));
      expect(await h().exec(3, ['ip', '-4', 'route', 'show', r2])).toMatch(new RegExp(`^${esc(r2)} via ${esc(c.address('n2'))} dev eth0 proto 157`));
    }, 5 * 3000);
    // A node's own range is its bridge's; the root namespace (the server's, the client's) routes no task range at all.
    expect(await h().exec(2, ['ip', '-4', 'route', 'show', r2])).not.toMatch(/ via /);
    expect(await h().exec(2, ['ip', '-4', 'route', 'show', 'proto', '157'])).toBe(`${r3} via ${c.address('n3')} dev eth0 \n`);
    const rootRoutes = execFileSync('/usr/sbin/ip', ['-4', 'route', 'show'], { encoding: 'utf8' });
    for (const r of [r2, r3]) expect(rootRoutes).not.toContain(r);
  });

  it('serves a published port from a task on each node over the kernel path, a connection to n3\'s task going through n3', async () => {
    await c.apply('mh', `services:
  rr:
    image: ${TEST_IMAGE}
    command: ${HTTPD80}
    network_mode: bridge
    ports: ["18280:80"]
    deploy:
      replicas: 2
      placement: {max_replicas_per_node: 1}
  lc:
    image: ${TEST_IMAGE}
    command: ${HTTPD80}
    network_mode: bridge
    ports: ["18281:80"]
    deploy:
      replicas: 2
      placement: {max_replicas_per_node: 1}
    x-baton:
      lb: {algorithm: least_conn}
`);
    await eventually(async () => {
      expect(await endpoints('mh_rr')).toHaveLength(2);
      expect(await endpoints('mh_lc')).toHaveLength(2);
    }, 5 * 15_000);
    const rr = await byNode('mh_rr');
    const lc = await byNode('mh_lc');
    expect([...rr.keys()].sort()).toEqual([...NODES]);
    expect([...lc.keys()].sort()).toEqual([...NODES]);
    await countInto([rr.get('n3')!, lc.get('n3')!]);
    // n2's kernel rules spread 18280 over both tasks before the requests start (a load racing them would send some through userspace).
    await eventually(async () => {
      const table = await meshTable('n2');
      const route = new RegExp(`ip daddr ${esc(c.address('n2'))} tcp dport 18280 goto (route_\\d+_\\d+)`).exec(table)?.[1];
      expect(route).toBeDefined();
      expect(table).toMatch(new RegExp(`chain ${route} \\{\\s+numgen inc mod 2 `));
    }, 5 * 5000);
    const n3task = rr.get('n3')!;
    const before = await counted(n3task.metadata.name);
    const seen = await ask(c.address('n2'), 18280, 20);
    expect([...seen.keys()].sort()).toEqual([...rr.values()].map((t) => t.metadata.name).sort());
    const fromN3 = seen.get(n3task.metadata.name)!;
    // Each answer from n3's task came through n3: forwarded there from its link, from n2's address (n2 masqueraded it).
    expect((await counted(n3task.metadata.name)) - before).toBeGreaterThanOrEqual(fromN3);
    // And n2's kernel DNATed them (an endpoint's counter counts connections; the table was not reloaded since the endpoints settled).
    const dnat = [...(await meshTable('n2')).matchAll(new RegExp(`counter packets (\\d+) bytes \\d+ dnat to ${esc(n3task.status.taskIP!)}:80`, 'g'))].reduce((a, m) => a + Number(m[1]), 0);
    expect(dnat).toBeGreaterThanOrEqual(fromN3);
    // The other way too: n3 publishes the port and reaches n2's task.
    expect([...(await ask(c.address('n3'), 18280, 10)).keys()].sort()).toEqual([...rr.values()].map((t) => t.metadata.name).sort());
  }, 120_000);

  it('serves a published port from a task on each node over the userspace path (least_conn), a connection to n3\'s task going through n3', async () => {
    const lc = await byNode('mh_lc');
    // least_conn takes no rule to the tasks: n2's table sends the port to n2's HAProxy (n2's address, another port), which dials
    // each task's own address.
    await eventually(async () => {
      const table = await meshTable('n2');
      const route = new RegExp(`ip daddr ${esc(c.address('n2'))} tcp dport 18281 goto (route_\\d+_\\d+)`).exec(table)?.[1];
      expect(route).toBeDefined();
      const ep = new RegExp(`chain ${route} \\{\\s+numgen inc mod 1 vmap \\{ 0 : goto (ep_\\d+_\\d+_0) \\}`).exec(table)?.[1];
      expect(ep).toBeDefined();
      const to = new RegExp(`chain ${ep} \\{\\s+meta l4proto tcp counter packets \\d+ bytes \\d+ dnat to (\\S+)`).exec(table)?.[1];
      expect(to).toMatch(new RegExp(`^${esc(c.address('n2'))}:\\d+$`));
      expect(to).not.toBe(`${c.address('n2')}:18281`);
    }, 5 * 5000);
    const n3task = lc.get('n3')!;
    const before = await counted(n3task.metadata.name);
    // Ties go round the ring, so short requests one after another alternate.
    const seen = await ask(c.address('n2'), 18281, 20, 50);
    expect([...seen.keys()].sort()).toEqual([...lc.values()].map((t) => t.metadata.name).sort());
    const fromN3 = seen.get(n3task.metadata.name)!;
    expect((await counted(n3task.metadata.name)) - before).toBeGreaterThanOrEqual(fromN3);
    expect([...(await ask(c.address('n3'), 18281, 10, 50)).keys()].sort()).toEqual([...lc.values()].map((t) => t.metadata.name).sort());
  }, 120_000);

  it('publishes a port bound to a node\'s address on that node only, and one bound to 127.0.0.1 on every node for itself alone (a mode: host one where its task runs)', async () => {
    await c.apply('hip', `services:
  web:
    image: ${TEST_IMAGE}
    command: ${HTTPD80}
    ports: ["${c.address('n3')}:18282:80", "127.0.0.1:18283:80"]
    deploy:
      replicas: 2
      placement: {max_replicas_per_node: 1}
  local:
    image: ${TEST_IMAGE}
    command: ${HTTPD80}
    ports: [{target: 80, published: 18284, mode: host, host_ip: 127.0.0.1}]
    deploy:
      placement: {constraints: ["node.name == n3"]}
`);
    await eventually(async () => expect(await endpoints('hip_web')).toHaveLength(2), 5 * 15_000);
    const names = [...(await byNode('hip_web')).values()].map((t) => t.metadata.name).sort();
    // n3 owns the address: its kernel path takes the port there, and every answer comes (from both nodes' tasks).
    // ... with both endpoints in its route (the second task's may reach n3's table a moment after the first).
    await eventually(async () => {
      const table = await meshTable('n3');
      const route = new RegExp(`ip daddr ${esc(c.address('n3'))} tcp dport 18282 goto (route_\\d+_\\d+)`).exec(table)?.[1];
      expect(route).toBeDefined();
      expect(table).toMatch(new RegExp(`chain ${route} \\{\\s+numgen inc mod 2 `));
    }, 5 * 5000);
    expect([...(await ask(c.address('n3'), 18282, 10)).keys()].sort()).toEqual(names);
    // n2 does not publish it, on its own address or anywhere else.
    expect(await getBody(c.address('n2'), 18282)).toEqual({ ok: false, body: 'ECONNREFUSED' });
    expect(await meshTable('n2')).not.toMatch(/dport 18282/);
    // 127.0.0.1:18283 answers on each node, from inside its namespace, through the userspace proxy (no kernel rule on loopback);
    // from outside, no node's address has it.
    const fromInside = (n: string, port = 18283) =>
      h().exec(num(n), [process.execPath, '-e', `require('http').get({host: '127.0.0.1', port: ${port}, path: '/id', agent: false}, (r) => { let b = ''; r.on('data', (d) => (b += d)); r.on('end', () => console.log(b.trim())); }).on('error', (e) => { console.log(e.code); })`]);
    for (const n of NODES) {
      const seen = new Set<string>();
      for (let i = 0; i < 10; i++) seen.add((await fromInside(n)).trim());
      expect([...seen].sort(), `from inside ${n}`).toEqual(names);
      expect(await getBody(c.address(n), 18283)).toEqual({ ok: false, body: 'ECONNREFUSED' });
      expect(await meshTable(n)).not.toMatch(/dport 18283/);
    }
    // A mode: host port on 127.0.0.1: mapped into the task on its node's loopback only (n3's task network table), nowhere else.
    const local = await eventually(async () => {
      const [t] = live(await c.tasksOf('hip_local'));
      expect(t?.spec.nodeName).toBe('n3');
      return t!;
    }, 5 * 15_000);
    await eventually(async () => expect((await fromInside('n3', 18284)).trim()).toBe(local.metadata.name), 5 * 5000);
    expect((await fromInside('n2', 18284)).trim()).toBe('ECONNREFUSED');
    expect(await getBody(c.address('n3'), 18284)).toEqual({ ok: false, body: 'ECONNREFUSED' });
    expect((await c.baton(['stack', 'rm', 'hip'])).code).toBe(0);
  }, 120_000);

  it('gives the tasks on both nodes no default route: only their own range, through their bridge', async () => {
    for (const t of live(await c.tasksOf('mh_rr'))) {
      // /proc/net/route: Iface Destination Gateway Flags … Mask, hex; a default route has destination and mask 00000000.
      const routes = (await docker(['exec', t.status.containerId!, 'cat', '/proc/net/route'])).trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
      expect(routes.length).toBeGreaterThan(0);
      for (const r of routes) expect(r[0]).toBe('eth0');
      expect(routes.some((r) => r[1] === '00000000' && r[7] === '00000000'), `${t.metadata.name} on ${t.spec.nodeName}`).toBe(false);
    }
  });

  it('takes the route to a node\'s tasks away when the node is removed', async () => {
    const r3 = (await nodeOf('n3')).status.taskRange!;
    expect(await h().exec(2, ['ip', '-4', 'route', 'show', r3])).toMatch(/ via /);
    await stopProc(c.agents.get('n3')!);
    const rm = await c.baton(['node', 'rm', '--force', 'n3']);
    expect(rm.code, rm.stderr).toBe(0);
    await eventually(async () => expect(await h().exec(2, ['ip', '-4', 'route', 'show', 'proto', '157'])).toBe(''), 5 * 3000);
  }, 60_000);
});
