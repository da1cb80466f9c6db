/**
 * The routing mesh on a real cluster: one `baton server` and three `baton
 * agent` processes (127.0.0.2–4), busybox backends on the shared dockerd,
 * clients on loopback.
 *
 * - a published port answers on every node and balances round-robin over the
 *   service's ready tasks on all nodes (each backend says which task it is);
 * - a task killed under load costs no request once its endpoint is gone;
 * - a task that is not ready yet gets no traffic;
 * - `web` reaches `api:8080` by name with an unmodified command line;
 * - the PROXY protocol header (v1 and v2) carries the client's address;
 * - least_conn, through the node's HAProxy (nftables sends the port there),
 *   and through the Node proxy while HAProxy, killed, is started again;
 * - with no endpoint a connection is held and goes through once one appears.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBody } from '../helpers/http.js';
import { connect } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { endpointsKind } from '../../src/api/kinds.js';
import type { Endpoints } from '../../src/api/types.js';
import { docker, eventually, TEST_IMAGE } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';
import { tableName } from '../../src/agent/nft.js';

const NODES = ['n2', 'n3', 'n4'] as const;
const execFileP = promisify(execFile);
/** A busybox httpd that answers /id with its task name. */
const HTTPD = `["sh", "-c", "mkdir -p /www && echo $$BATON_TASK > /www/id && exec httpd -f -p $$BATON_HOST_IP:$$PORT -h /www"]`;

/** get makes one HTTP request on a new connection and returns the body (or the error's code). */
const get = getBody;

describe('the routing mesh on a 3-node cluster', () => {
  const c = new TestCluster('baton-mesh-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 5000, bookmarkIntervalMs: 1000 }, 27000);
  const endpoints = async (svc: string) => (await c.api.get<Endpoints>(endpointsKind, svc)).spec.endpoints;
  /** meshApplied waits until every node's mesh has applied the service's Endpoints as they are now. */
  const meshApplied = async (svc: string) => {
    const rv = (await c.api.get<Endpoints>(endpointsKind, svc)).metadata.resourceVersion;
    const r = await c.api.call<{ applied: boolean; pending: string[] }>('GET', `/api/v1/endpoints/-/applied?revision=${rv}&timeoutMs=25000`, undefined, { timeoutMs: 30_000 });
    expect(r.pending).toEqual([]);
  };
  /** The HAProxy master an agent runs (its pid file), and the addresses of the frontends its current configuration binds. */
  const haproxyPid = (n: string) => Number(readFileSync(join(c.dir, n, 'haproxy', 'haproxy.pid'), 'utf8').trim());
  const haproxyFrontends = async (n: string) => (existsSync(join(c.dir, n, 'haproxy', 'haproxy.cfg')) ? readFileSync(join(c.dir, n, 'haproxy', 'haproxy.cfg'), 'utf8').match(/^ {2}bind \S+$/gm)?.join(' ') ?? '' : '');

  beforeAll(() => c.start(NODES), 90_000);
  afterAll(() => c.stop());

  it('publishes a port on every node and balances round-robin over the ready tasks on all nodes', async () => {
    await c.apply('lb', `services:
  web:
    image: ${TEST_IMAGE}
    command: ${HTTPD}
    ports: ["18080:80"]
    deploy:
      replicas: 3
      placement: {max_replicas_per_node: 1}
`);
    await eventually(async () => expect(await endpoints('lb_web')).toHaveLength(3), 5 * 5000);
    const tasks = live(await c.tasksOf('lb_web'));
    expect(new Set(tasks.map((t) => t.spec.nodeName))).toEqual(new Set(NODES));
    // n2's kernel rules route to all three before the requests start (a load racing them would send some through userspace).
    await eventually(async () => {
      const text = (await execFileP('/usr/sbin/nft', ['list', 'table', 'ip', tableName('n2', c.clusterId)])).stdout;
      for (const t of tasks) expect(text).toContain(`dnat to ${t.status.taskIP}:80`);
    }, 5 * 5000);
    const counts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const r = await get('127.0.0.2', 18080);
      expect(r.ok, r.body).toBe(true);
      counts.set(r.body, (counts.get(r.body) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(tasks.map((t) => t.metadata.name).sort());
    for (const n of counts.values()) expect(Math.abs(n - 100)).toBeLessThanOrEqual(10);
    // They took the kernel fast path: n2's own nftables table DNATed them (an endpoint's counter counts connections);
    // the first few may have raced the table's load after the endpoints appeared and gone through userspace.
    const table = JSON.parse((await execFileP('/usr/sbin/nft', ['-j', 'list', 'table', 'ip', tableName('n2', c.clusterId)])).stdout).nftables as { rule?: { expr: { counter?: { packets: number } }[] } }[];
    const packets = table.flatMap((x) => x.rule?.expr ?? []).reduce((n, e) => n + (e.counter?.packets ?? 0), 0);
    // (A SYN that conntrack sees as a new connection again, e.g. after a PAWS reject on a reused port, counts twice.)
    expect(packets).toBeGreaterThanOrEqual(290);
    // Every node publishes it.
    for (const n of NODES) expect((await get(TestCluster.addr(n), 18080)).ok).toBe(true);
    const ls = await c.baton(['endpoints', 'ls']);
    expect(ls.stdout).toMatch(/lb_web\s+10\.43\.\d+\.\d+\s+\*:18080->80\s+round_robin\s+(\d+\.\d+\.\d+\.\d+:80,?){3}/);
  });

  it('loses no request to a task killed under load once its endpoint is gone', async () => {
    const victim = live(await c.tasksOf('lb_web'))[0]!;
    const results: { at: number; ok: boolean; body: string }[] = [];
    let stop = false;
    const load = (async () => {
      while (!stop) {
        const r = await get('127.0.0.3', 18080);
        results.push({ at: Date.now(), ...r });
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    const killedAt = Date.now();
    await docker(['kill', victim.status.containerId!]);
    // The agent restarts it in place; the endpoint leaves while it is down, or stays if the restart beat the status report.
    // Either way, once the API shows the task running again the mesh has what it needs (1 s goal; 5× allowed).
    await eventually(async () => {
      const t = (await c.tasksOf('lb_web')).find((x) => x.metadata.name === victim.metadata.name)!;
      expect(t.status.restartCount).toBe(victim.status.restartCount + 1);
      expect(t.status.state).toBe('running');
      expect((await endpoints('lb_web')).map((e) => e.task)).toContain(victim.metadata.name);
    }, 5 * 1000, 50);
    const updated = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    stop = true;
    await load;
    const after = results.filter((r) => r.at > updated + 500);
    expect(after.length).toBeGreaterThan(10);
    expect(after.filter((r) => !r.ok)).toEqual([]);
    // Requests kept flowing throughout (the other two endpoints, and a refused connect retried in userspace).
    expect(results.filter((r) => r.at > killedAt && r.at <= updated + 500).some((r) => r.ok)).toBe(true);
    expect(after.some((r) => r.body === victim.metadata.name)).toBe(true);
  });

  it('fails no request while a service scales down under load: a stopping task leaves the mesh before its stop signal', async () => {
    const results: { ok: boolean; body: string }[] = [];
    let stop = false;
    const load = (async () => {
      while (!stop) results.push(await get('127.0.0.4', 18080));
    })();
    await new Promise((r) => setTimeout(r, 300));
    expect((await c.baton(['service', 'scale', 'lb_web=2'])).code).toBe(0);
    await eventually(async () => expect(await c.running('lb_web')).toHaveLength(2), 5 * 3000);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await load;
    expect(results.length).toBeGreaterThan(20);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect((await c.baton(['service', 'scale', 'lb_web=3'])).code).toBe(0);
  });

  it('sends no traffic to a task that is not ready yet', async () => {
    await c.apply('gate', `services:
  web:
    image: ${TEST_IMAGE}
    command: ${HTTPD}
    ports: ["18081:80"]
    deploy:
      replicas: 2
    x-baton:
      readiness: {test: "test -f /www/ready", interval: 200ms, retries: 1}
`);
    await eventually(async () => expect(live(await c.tasksOf('gate_web'))).toHaveLength(2), 5 * 5000);
    expect(await endpoints('gate_web')).toEqual([]);
    const [one, other] = live(await c.tasksOf('gate_web'));
    await docker(['exec', one!.status.containerId!, 'touch', '/www/ready']);
    await eventually(async () => expect((await endpoints('gate_web')).map((e) => e.task)).toEqual([one!.metadata.name]), 5 * 2000);
    for (let i = 0; i < 20; i++) expect(await get('127.0.0.4', 18081)).toEqual({ ok: true, body: one!.metadata.name });
    void other;
    expect((await c.baton(['stack', 'rm', 'gate'])).code).toBe(0);
  });

  it('lets a task reach another service by name, with an unmodified command line', async () => {
    await c.apply('app', `services:
  api:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo hi from api > /www/msg && exec httpd -f -p $$BATON_HOST_IP:$$PORT -h /www"]
    expose: [8080]
  web:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
`);
    await eventually(async () => {
      expect(live(await c.tasksOf('app_api'))).toHaveLength(1);
      expect(live(await c.tasksOf('app_web'))).toHaveLength(1);
      expect(await endpoints('app_api')).toHaveLength(1);
    }, 5 * 5000);
    const web = live(await c.tasksOf('app_web'))[0]!;
    expect(await docker(['exec', web.status.containerId!, 'wget', '-qO-', 'http://api:8080/msg'])).toBe('hi from api');
    expect(await docker(['exec', web.status.containerId!, 'wget', '-qO-', 'http://app_api:8080/msg'])).toBe('hi from api');
    expect((await c.baton(['stack', 'rm', 'app'])).code).toBe(0);
  });

  it('sends the client address in a PROXY protocol v1 or v2 header', async () => {
    const listener = `["sh", "-c", "nc -l -p $$PORT > /tmp/got; exec sleep 3600"]`;
    await c.apply('pp', `services:
  one:
    image: ${TEST_IMAGE}
    command: ${listener}
    ports: ["18082:9000"]
    x-baton:
      lb: {proxy_protocol: v1}
  two:
    image: ${TEST_IMAGE}
    command: ${listener}
    ports: ["18083:9000"]
    x-baton:
      lb: {proxy_protocol: v2}
`);
    await eventually(async () => {
      expect(await endpoints('pp_one')).toHaveLength(1);
      expect(await endpoints('pp_two')).toHaveLength(1);
    }, 5 * 5000);
    const send = (port: number) =>
      new Promise<number>((resolve, reject) => {
        const s = connect({ host: '127.0.0.2', port, localAddress: '127.0.0.1' }, () => {
          const local = s.localPort!;
          s.end('hello\n', () => setTimeout(() => resolve(local), 300));
        });
        s.on('error', reject);
      });
    const got = async (svc: string) => {
      const t = live(await c.tasksOf(svc))[0]!;
      // Bytes as hex, since the header is binary (busybox od).
      const hex = await docker(['exec', t.status.containerId!, 'od', '-An', '-v', '-tx1', '/tmp/got']);
      return Buffer.from(hex.replace(/\s+/g, ''), 'hex');
    };
    // A task counts as ready once it runs (no probe): a connection that came before nc listened was refused and dropped
    // (nc is still waiting for its one connection), so the client sends again until one arrived.
    const deliver = async (svc: string, port: number) => {
      for (const deadline = Date.now() + 10_000; ; ) {
        const local = await send(port);
        if ((await got(svc)).length > 0 || Date.now() > deadline) return local;
      }
    };
    const p1 = await deliver('pp_one', 18082);
    const p2 = await deliver('pp_two', 18083);
    await eventually(async () => expect((await got('pp_one')).toString('latin1')).toBe(`PROXY TCP4 127.0.0.1 127.0.0.2 ${p1} 18082\r\nhello\n`), 10_000);
    const v2 = await eventually(async () => {
      const b = await got('pp_two');
      expect(b.length).toBe(16 + 12 + 6);
      return b;
    }, 10_000);
    const port = (n: number) => [n >> 8, n & 255];
    expect([...v2]).toEqual([
      0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
      0x21, 0x11, 0x00, 0x0c, // v2 PROXY, TCP over IPv4, 12 address bytes
      127, 0, 0, 1, 127, 0, 0, 2, ...port(p2), ...port(18083),
      ...Buffer.from('hello\n'),
    ]);
    expect((await c.baton(['stack', 'rm', 'pp'])).code).toBe(0);
  });

  it('sends new connections to the endpoint with the fewest open ones (least_conn)', async () => {
    await c.apply('lc', `services:
  web:
    image: ${TEST_IMAGE}
    command: ${HTTPD}
    ports: ["18085:80"]
    deploy:
      replicas: 2
    x-baton:
      lb: {algorithm: least_conn}
`);
    await eventually(async () => expect(await endpoints('lc_web')).toHaveLength(2), 5 * 5000);
    await meshApplied('lc_web');
    // On these nodes (nftables, HAProxy installed) the kernel sends the port's connections to the node's HAProxy.
    expect(await haproxyFrontends('n2')).toContain('127.0.0.2:');
    // One idle connection pins one endpoint; every short request after it goes to the other one.
    const idle = connect({ host: '127.0.0.2', port: 18085 });
    await new Promise<void>((r, j) => idle.once('connect', () => r()).once('error', j));
    await new Promise((r) => setTimeout(r, 200));
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const r = await get('127.0.0.2', 18085);
      expect(r.ok, r.body).toBe(true);
      seen.add(r.body);
      // Until the backend's side has closed too, the mesh still counts the connection as open.
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen.size).toBe(1);
    idle.write('GET /id HTTP/1.0\r\n\r\n');
    const pinned = await new Promise<string>((r) => {
      let b = '';
      idle.on('data', (d) => (b += d));
      idle.on('close', () => r(b.split('\r\n\r\n')[1]!.trim()));
    });
    expect(seen.has(pinned)).toBe(false);

    // HAProxy killed: the Node proxy takes the port at once, and the agent starts HAProxy again.
    const pid = haproxyPid('n2');
    process.kill(pid, 'SIGKILL');
    await eventually(async () => {
      const r = await get('127.0.0.2', 18085);
      expect(r.ok, r.body).toBe(true);
      expect(haproxyPid('n2')).not.toBe(pid);
      expect(await haproxyFrontends('n2')).toContain('127.0.0.2:');
    }, 5 * 5000);
    for (let i = 0; i < 4; i++) expect((await get('127.0.0.2', 18085)).ok).toBe(true);
    expect((await c.baton(['stack', 'rm', 'lc'])).code).toBe(0);
  });

  it('holds a connection while a service has no endpoint and forwards it when one appears', async () => {
    await c.apply('lazy', `services:
  web:
    image: ${TEST_IMAGE}
    command: ${HTTPD}
    ports: ["18084:80"]
    deploy:
      replicas: 0
    x-baton:
      lb: {hold_timeout: 60s}
`);
    await eventually(async () => expect(await endpoints('lazy_web')).toEqual([]), 5 * 2000);
    const started = Date.now();
    const pending = get('127.0.0.2', 18084, '/id', 60_000);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await c.baton(['service', 'scale', 'lazy_web=1'])).code).toBe(0);
    const r = await pending;
    expect(r.ok, r.body).toBe(true);
    expect(r.body).toBe(live(await c.tasksOf('lazy_web'))[0]!.metadata.name);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect((await c.baton(['stack', 'rm', 'lazy'])).code).toBe(0);
  });
});
