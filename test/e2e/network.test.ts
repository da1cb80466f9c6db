/**
 * Task networking on a real cluster (`network_mode: bridge`): every task in
 * a network namespace of its own, with its own address on its node's task
 * network, so unmodified images that all listen on one fixed port run side
 * by side on one node. One `baton server` and two agents (127.0.0.2–3) on
 * the shared dockerd; clients on loopback reach tasks through the mesh.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { getBody } from '../helpers/http.js';
import { endpointsKind, nodeKind } from '../../src/api/kinds.js';
import type { Endpoints, Node, Task } from '../../src/api/types.js';
import { contains, parseCidr } from '../../src/base/cidr.js';
import { docker, eventually, stopProc, TEST_IMAGE } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';
import Docker from 'dockerode';
import { createSocket, type Socket } from 'node:dgram';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ensureUdpEchoImage, UDP_ECHO_IMAGE } from '../helpers/udpEcho.js';

const NODES = ['n2', 'n3'] as const;

/** An unmodified web server: busybox httpd on the fixed port 80 of every address, answering /id with its task name. */
const HTTPD80 = `["sh", "-c", "mkdir -p /www && echo $$BATON_TASK > /www/id && exec httpd -f -p 80 -h /www"]`;

/** Stack `same`: three replicas of it and a second service, all on port 80 of n2, each published. */
const SAME = `services:
  web:
    image: ${TEST_IMAGE}
    command: ${HTTPD80}
    network_mode: bridge
    ports: ["18180:80"]
    deploy:
      replicas: 3
      placement: {constraints: ["node.name == n2"]}
  api:
    image: ${TEST_IMAGE}
    command: ${HTTPD80}
    network_mode: bridge
    ports: ["18181:80"]
    deploy:
      placement: {constraints: ["node.name == n2"]}
`;

const get = getBody;

/** A UDP client on loopback: ask sends one datagram and waits for one answer (undefined after ms). */
async function udpClient(): Promise<{ ask(host: string, port: number, text: string, ms?: number): Promise<string | undefined>; close(): void }> {
  const s: Socket = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return {
    ask: (host, port, text, ms = 1000) =>
      new Promise((resolve) => {
        const on = (m: Buffer) => {
          clearTimeout(t);
          s.off('message', on);
          resolve(m.toString());
        };
        const t = setTimeout(() => {
          s.off('message', on);
          resolve(undefined);
        }, ms);
        s.on('message', on);
        s.send(text, port, host);
      }),
    close: () => s.close(),
  };
}

/** UDP_ASK: a UDP client for inside a task's namespace (run by this Node through nsenter): one datagram per new socket, the answers on stdout. */
const UDP_ASK = `const d = require('node:dgram'); const [host, port, n] = process.argv.slice(1);
(async () => { for (let i = 0; i < Number(n); i++) { const s = d.createSocket('udp4');
  const a = await new Promise((r) => { const t = setTimeout(() => r('timeout'), 1000); s.on('message', (m) => { clearTimeout(t); r(m.toString()); }); s.send('|' + i, Number(port), host); });
  console.log(a); s.close(); } })();`;

describe('tasks in network namespaces of their own', () => {
  const c = new TestCluster('baton-net-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 30_000, bookmarkIntervalMs: 1000 }, 43000);
  const endpoints = async (svc: string) => (await c.api.get<Endpoints>(endpointsKind, svc)).spec.endpoints;
  /** exec runs a command in a task's container and returns its output. */
  const exec = async (t: Task, cmd: string[]) => docker(['exec', t.status.containerId!, ...cmd]);

  beforeAll(() => c.start(NODES), 90_000);
  afterAll(() => c.stop());

  it('runs three replicas and a second service that all listen on port 80 on one node, each reachable by its published port', async () => {
    await c.apply('same', SAME);
    await eventually(async () => {
      expect(await endpoints('same_web')).toHaveLength(3);
      expect(await endpoints('same_api')).toHaveLength(1);
    }, 5 * 10_000);
    const web = live(await c.tasksOf('same_web'));
    const api = live(await c.tasksOf('same_api'));
    const range = parseCidr((await c.api.get<Node>(nodeKind, 'n2')).status.taskRange!);
    const addresses = [...web, ...api].map((t) => t.status.taskIP!);
    // Each task has its own address, in its node's range; none restarted (no port clash).
    expect(new Set(addresses).size).toBe(4);
    for (const a of addresses) expect(contains(range, a)).toBe(true);
    for (const t of [...web, ...api]) expect(t.status.restartCount ?? 0).toBe(0);
    // Published on every node (n3 runs none of them), balanced over the three web tasks.
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) {
      const r = await get('127.0.0.3', 18180);
      expect(r.ok, r.body).toBe(true);
      seen.add(r.body);
    }
    expect([...seen].sort()).toEqual(web.map((t) => t.metadata.name).sort());
    const r = await get('127.0.0.2', 18181);
    expect(r).toEqual({ ok: true, body: api[0]!.metadata.name });
    // The task sees its own address and its container port: today's stacks that bind $BATON_HOST_IP:$PORT keep working.
    const env = await exec(web[0]!, ['env']);
    expect(env).toContain(`BATON_HOST_IP=${web[0]!.status.taskIP}`);
    expect(env).toContain('PORT=80');
  }, 120_000);

  it('resolves service names from inside a task, live: a service added after the task started resolves at once', async () => {
    const [w] = live(await c.tasksOf('same_web'));
    const [a] = live(await c.tasksOf('same_api'));
    // Unmodified command lines: by short name, by full name, and every ready task by tasks.<name>.
    expect((await exec(w!, ['wget', '-q', '-O', '-', 'http://api/id'])).trim()).toBe(a!.metadata.name);
    expect((await exec(w!, ['wget', '-q', '-O', '-', 'http://same_api/id'])).trim()).toBe(a!.metadata.name);
    // Straight to the task's own address (tasks.<name>): on one bridge, through the node, which checks the networks they share.
    expect((await exec(w!, ['wget', '-q', '-O', '-', 'http://tasks.api/id'])).trim()).toBe(a!.metadata.name);
    const all = await exec(w!, ['nslookup', 'tasks.web']);
    for (const t of live(await c.tasksOf('same_web'))) expect(all).toContain(t.status.taskIP!);
    await c.apply('same', `${SAME}  late:
    image: ${TEST_IMAGE}
    command: ${HTTPD80}
    network_mode: bridge
    expose: ["80"]
`);
    await eventually(async () => expect(await endpoints('same_late')).toHaveLength(1), 5 * 10_000);
    const [l] = live(await c.tasksOf('same_late'));
    await eventually(async () => expect((await exec(w!, ['wget', '-q', '-O', '-', 'http://late/id'])).trim()).toBe(l!.metadata.name), 5 * 2000);
    // Hairpin: a task reaching its own service's VIP, which may pick the task itself, is answered every time.
    for (let i = 0; i < 6; i++) expect((await exec(w!, ['wget', '-q', '-O', '-', 'http://web/id'])).trim()).toMatch(/^same_web\./);
    // Names outside the cluster are not forwarded in tests (--dns-upstream none): NXDOMAIN, at once.
    expect(await exec(w!, ['sh', '-c', 'nslookup example.com 2>&1; echo "exit $?"'])).toMatch(/NXDOMAIN[\s\S]*exit 1/);
  }, 90_000);

  it('isolates stacks: a task of another stack neither resolves nor reaches them, by name, VIP or address', async () => {
    await c.apply('iso', `services:
  probe:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    deploy:
      placement: {constraints: ["node.name == n2"]}
`);
    const p = await eventually(async () => {
      const [x] = live(await c.tasksOf('iso_probe'));
      expect(x?.status.taskIP).toBeDefined();
      return x!;
    }, 5 * 5000);
    const [a] = live(await c.tasksOf('same_api'));
    const vip = (await c.api.get<Endpoints>(endpointsKind, 'same_api')).spec.vip!;
    // (busybox's own wget -T crashes in this image: the timeout applet bounds it instead.)
    const attempt = (url: string) => exec(p, ['sh', '-c', `timeout 3 wget -q -O - ${url} 2>&1; echo "exit $?"`]);
    expect(await exec(p, ['sh', '-c', 'nslookup same_api 2>&1; echo "exit $?"'])).toMatch(/NXDOMAIN[\s\S]*exit 1/);
    for (const url of [`http://${a!.status.taskIP}/id`, `http://${vip}/id`]) {
      const out = await attempt(url);
      expect(out).not.toContain(a!.metadata.name);
      expect(out).not.toMatch(/exit 0$/m);
    }
  }, 60_000);

  it('gives a task no route off the machine when egress is off: only its own range, through its bridge', async () => {
    const [t] = live(await c.tasksOf('same_web'));
    // /proc/net/route: Iface Destination Gateway Flags … Mask, hex; a default route has destination and mask 00000000.
    const routes = (await exec(t!, ['cat', '/proc/net/route'])).trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
    expect(routes.length).toBeGreaterThan(0);
    for (const r of routes) expect(r[0]).toBe('eth0');
    expect(routes.some((r) => r[1] === '00000000' && r[7] === '00000000')).toBe(false);
  });

  it('keeps a task\'s address across an agent restart', async () => {
    const before = live(await c.tasksOf('same_api'))[0]!;
    await stopProc(c.agents.get('n2')!);
    c.startAgent('n2');
    await eventually(async () => expect(await c.state('n2')).toBe('ready'), 30_000);
    // The same container runs on at the same address, and the mesh still reaches it.
    await eventually(async () => {
      const after = live(await c.tasksOf('same_api'))[0]!;
      expect(after.metadata.name).toBe(before.metadata.name);
      expect(after.status.containerId).toBe(before.status.containerId);
      expect(after.status.taskIP).toBe(before.status.taskIP);
      expect(await get('127.0.0.2', 18181)).toEqual({ ok: true, body: before.metadata.name });
    }, 5 * 5000);
  }, 60_000);

  it('runs examples/stack.yaml unchanged (written for host networking: it binds $BATON_HOST_IP:$PORT)', async () => {
    const r = await c.baton(['apply', '-f', join(process.cwd(), 'examples/stack.yaml'), '--stack', 'demo']);
    expect(r.code, r.stderr).toBe(0);
    await eventually(async () => expect(await endpoints('demo_web')).toHaveLength(3), 5 * 10_000);
    // Each replica says where it runs: its own address, on the container port; every one answers through the mesh.
    const web = live(await c.tasksOf('demo_web'));
    const want = web.map((t) => `hello from ${t.metadata.name} on ${t.status.taskIP}:80`).sort();
    const seen = new Set<string>();
    await eventually(async () => {
      const g = await get('127.0.0.2', 8080, '/');
      expect(g.ok, g.body).toBe(true);
      seen.add(g.body);
      expect([...seen].sort()).toEqual(want);
    }, 5 * 5000, 50);
    expect((await c.baton(['stack', 'rm', 'demo'])).code).toBe(0);
  }, 90_000);

  it('keeps network_mode host as it was: the node\'s network, a port from the agent\'s range', async () => {
    await c.apply('hostnet', `services:
  old:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "echo $$BATON_TASK > /tmp/id; exec httpd -f -p $$BATON_HOST_IP:$$PORT -h /tmp"]
    network_mode: host
    expose: ["8080"]
    deploy:
      placement: {constraints: ["node.name == n3"]}
`);
    const t = await eventually(async () => {
      const [x] = live(await c.tasksOf('hostnet_old'));
      expect(x?.status.ports).toHaveLength(1);
      return x!;
    }, 5 * 5000);
    expect(t.status.taskIP).toBeUndefined();
    const port = t.status.ports[0]!.hostPort;
    expect(port).toBeGreaterThanOrEqual(43000 + 3 * 200);
    expect(await get('127.0.0.3', port)).toEqual({ ok: true, body: t.metadata.name });
    expect((await c.baton(['stack', 'rm', 'hostnet'])).code).toBe(0);
  }, 60_000);

  it('publishes UDP through the kernel path and the userspace relay, serves it on the VIP to tasks (hairpin too), and moves a client off a task that left', async () => {
    await ensureUdpEchoImage(new Docker(), TEST_IMAGE, { 'baton.test': 'network' });
    const echo = (published: number, extra: string) => `    image: ${UDP_ECHO_IMAGE}
    command: ["sh", "-c", "exec /udpecho $$BATON_TASK"]
    ports: ["${published}:7/udp"]
${extra}`;
    await c.apply('udp', `services:
  kern:
${echo(18253, '    deploy:\n      replicas: 2\n      placement: {constraints: ["node.name == n2"]}')}
  relay:
${echo(18254, '    deploy:\n      replicas: 2\n    x-baton:\n      lb: {algorithm: least_conn}')}
`);
    await eventually(async () => {
      expect(await endpoints('udp_kern')).toHaveLength(2);
      expect(await endpoints('udp_relay')).toHaveLength(2);
    }, 5 * 10_000);
    const names = async (svc: string) => live(await c.tasksOf(svc)).map((t) => t.metadata.name).sort();
    let clients: Awaited<ReturnType<typeof udpClient>>[] = [];
    try {
      // Kernel path (round robin, in nftables), through n3, which runs neither task: each client is a flow that keeps its task.
      // Fresh clients on each try: a flow that began while n3's mesh knew one task only stays on it (conntrack), as it should.
      const first = await eventually(async () => {
        for (const u of clients) u.close();
        clients = await Promise.all([0, 1, 2, 3].map(() => udpClient()));
        const got = await Promise.all(clients.map((u, i) => u.ask('127.0.0.3', 18253, `|k${i}`)));
        for (const [i, g] of got.entries()) expect(g).toMatch(new RegExp(`^udp_kern\\.\\d+\\.\\w+\\|k${i}$`));
        expect(new Set(got.map((g) => g!.split('|')[0])).size).toBe(2);
        return got.map((g) => g!.split('|')[0]!);
      }, 5 * 5000);
      expect([...new Set(first)].sort()).toEqual(await names('udp_kern'));
      for (const [i, u] of clients.entries()) expect(await u.ask('127.0.0.3', 18253, '|again')).toBe(`${first[i]}|again`);
      // Userspace relay (least_conn is not the kernel's): sessions spread over both tasks, on both nodes.
      const relayed = await eventually(async () => {
        const got = await Promise.all(clients.map((u, i) => u.ask('127.0.0.2', 18254, `|r${i}`)));
        for (const [i, g] of got.entries()) expect(g).toMatch(new RegExp(`^udp_relay\\.\\d+\\.\\w+\\|r${i}$`));
        return got.map((g) => g!.split('|')[0]!);
      }, 5 * 5000);
      expect([...new Set(relayed)].sort()).toEqual(await names('udp_relay'));
      // From inside a task of the stack: both VIPs (the kernel's, and the relay on the gateway); the kern task asking its own service may reach itself.
      const [k0] = live(await c.tasksOf('udp_kern'));
      const pid = await docker(['inspect', '-f', '{{.State.Pid}}', k0!.status.containerId!]);
      for (const svc of ['udp_kern', 'udp_relay']) {
        const vip = (await c.api.get<Endpoints>(endpointsKind, svc)).spec.vip!;
        const out = await eventually(async () => {
          const r = await promisify(execFile)('nsenter', ['-t', pid, '-n', process.execPath, '-e', UDP_ASK, vip, '7', '6'], { timeout: 30_000 });
          const lines = r.stdout.trim().split('\n');
          expect(lines).toHaveLength(6);
          for (const [i, l] of lines.entries()) expect(l).toMatch(new RegExp(`^${svc}\\.\\d+\\.\\w+\\|${i}$`));
          return lines;
        }, 5 * 5000);
        expect(new Set(out.map((l) => l.split('|')[0])).size, out.join(' ')).toBe(2);
      }
      // One kern task leaves: the clients it answered keep their sockets (their flows) and are answered by the other (the mesh deletes the flows).
      expect((await c.baton(['service', 'scale', 'udp_kern=1'])).code).toBe(0);
      await eventually(async () => expect(await endpoints('udp_kern')).toHaveLength(1), 5 * 10_000);
      const [left] = await names('udp_kern');
      await eventually(async () => {
        for (const u of clients) expect(await u.ask('127.0.0.3', 18253, '|after')).toBe(`${left}|after`);
      }, 5 * 5000);
    } finally {
      for (const u of clients) u.close();
    }
    expect((await c.baton(['stack', 'rm', 'udp'])).code).toBe(0);
  }, 150_000);

  it('gives network_mode none a namespace with loopback only', async () => {
    await c.apply('lo', `services:
  box:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    network_mode: none
`);
    const t = await eventually(async () => {
      const [x] = live(await c.tasksOf('lo_box'));
      expect(x).toBeDefined();
      return x!;
    }, 5 * 5000);
    const links = (await exec(t, ['cat', '/proc/net/dev'])).split('\n').slice(2).map((l) => l.trim().split(':')[0]).filter(Boolean);
    expect(links).toEqual(['lo']);
    expect(t.status.taskIP).toBeUndefined();
  });
});
