/**
 * Task sandboxes on the real dockerd: the pause image the agent builds
 * itself, pause containers holding network namespaces, and the agent's own
 * plumbing (a bridge, veth pairs, addresses from a range this test owns).
 * Two unmodified servers listening on the same port run side by side, each
 * at its own address; a task's namespace has no route off the machine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { DockerDriver } from '../src/agent/docker/dockerDriver.js';
import { NodeNetwork } from '../src/agent/net/nodeNetwork.js';
import Docker from 'dockerode';
import { PAUSE_IMAGE, pauseExecutable } from '../src/agent/net/pauseImage.js';
import { ensurePauseImage, ensureSandbox, removeSandbox, type Sandbox } from '../src/agent/docker/sandbox.js';
import { attach, deleteBridge, detach, ensureBridge, foreignRoutes, ifName, parseCidr, routesIn, type BridgeOptions } from '../src/agent/net/plumbing.js';
import { NetTable, netTableName, rulesetText } from '../src/agent/net/netTable.js';
import { freePort, getOnce, TEST_IMAGE } from './helpers/proc.js';

const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const RUN = randomBytes(4).toString('hex');
const LABELS = { 'baton.test': `sandbox-${RUN}` };
/** A range of this test's own: the bridge (the tasks' gateway) and the tasks' addresses, all on this machine. */
const RANGE = parseCidr('10.250.77.0/24');
const CLUSTER = parseCidr('10.250.0.0/16');

describe('foreignRoutes', () => {
  const routes = [
    'default via 192.0.2.1 dev eth0',
    '192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2',
    '10.250.77.0/24 dev btaaaaaaaaaaaa proto kernel scope link src 10.250.77.1',
    'local 10.250.77.1 dev btaaaaaaaaaaaa table local proto kernel scope host src 10.250.77.1',
    '10.250.0.0/16 via 192.0.2.9 dev eth0',
    'local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1',
  ].join('\n');
  it('finds a network this machine routes into a range through anything but its own bridge; the default route is none', () => {
    expect(foreignRoutes(routes, parseCidr('10.250.77.0/24'), 'btaaaaaaaaaaaa')).toEqual(['10.250.0.0/16 via 192.0.2.9 dev eth0']);
    expect(foreignRoutes(routes, parseCidr('192.0.2.128/25'), 'btaaaaaaaaaaaa')).toEqual(['192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2']);
    expect(foreignRoutes(routes, parseCidr('10.251.0.0/24'), 'btaaaaaaaaaaaa')).toEqual([]);
    // Another bridge over the range (another agent's, or a leftover) is foreign too.
    expect(foreignRoutes(routes, parseCidr('10.250.77.0/24'), 'btbbbbbbbbbbbb')).toHaveLength(3);
  });
});

describe('task sandboxes (real dockerd, real namespaces)', () => {
  const bridge: BridgeOptions = { name: ifName('bt', `test-${RUN}`), range: RANGE };
  const sandboxes: Sandbox[] = [];
  const table = new NetTable(netTableName(`test${RUN}`, 'sandbox'));

  beforeAll(async () => {
    await ensurePauseImage(docker);
    await ensureBridge(bridge);
  });

  afterAll(async () => {
    const mine = await docker.listContainers({ all: true, filters: { label: [`baton.test=sandbox-${RUN}`] } });
    for (const c of mine) await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
    await table.close();
    for (const i of [0, 1]) await detach(ifName('vb', `${RUN}-${i}`));
    await deleteBridge(bridge.name);
  });

  it('builds a pause image of one static executable that blocks', async () => {
    expect(pauseExecutable()!.length).toBeLessThan(200);
    const img = await docker.getImage(PAUSE_IMAGE).inspect();
    expect(img.Config.Cmd).toEqual(['/pause']);
    expect(img.Size).toBeLessThan(1024);
  });

  it('runs two servers on port 80 side by side, each in its own namespace at its own address', async () => {
    for (const i of [0, 1]) {
      const sb = await ensureSandbox(docker, `baton-test-${RUN}-${i}`, LABELS);
      sandboxes.push(sb);
      await attach({ bridge, hostIf: ifName('vb', `${RUN}-${i}`), pid: sb.pid, address: `10.250.77.${10 + i}`, routes: [CLUSTER], egress: false });
      const app = await docker.createContainer({
        name: `baton-test-${RUN}-${i}`,
        Image: TEST_IMAGE,
        Cmd: ['sh', '-c', `echo task-${i} > /tmp/index.html; exec httpd -f -p 80 -h /tmp`],
        Labels: LABELS,
        HostConfig: { NetworkMode: `container:${sb.id}` },
      });
      await app.start();
    }
    for (const i of [0, 1]) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const body = await getOnce(`http://10.250.77.${10 + i}:80/`).catch((e: Error) => e);
        if (body === `task-${i}\n`) break;
        if (Date.now() > deadline) throw new Error(`task ${i} never answered: ${String(body)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });

  it('leaves a task no route off the machine: only the cluster range, through the gateway', async () => {
    const routes = await routesIn(sandboxes[0]!.pid);
    expect(routes.some((r) => r.startsWith('default'))).toBe(false);
    expect(routes).toEqual(expect.arrayContaining([expect.stringMatching(/^10\.250\.0\.0\/16 via 10\.250\.77\.1 dev eth0/), expect.stringMatching(/^10\.250\.77\.0\/24 dev eth0/)]));
  });

  it('keeps the address when a container restarts in place, and plumbing again is a no-op', async () => {
    await docker.getContainer(`baton-test-${RUN}-1`).restart({ t: 0 });
    await attach({ bridge, hostIf: ifName('vb', `${RUN}-1`), pid: sandboxes[1]!.pid, address: '10.250.77.11', routes: [CLUSTER], egress: false });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const body = await getOnce('http://10.250.77.11:80/').catch((e: Error) => e);
      if (body === 'task-1\n') break;
      if (Date.now() > deadline) throw new Error(`task 1 never answered after its restart: ${String(body)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await ensureSandbox(docker, `baton-test-${RUN}-1`, LABELS)).pid).toBe(sandboxes[1]!.pid);
  });

  it('maps a port of the node into a task, also for a loopback client (route_localnet, masqueraded, guarded)', async () => {
    const port = await freePort();
    await table.sync({ bridges: [bridge], mappings: [{ address: '127.0.0.1', port, protocol: 'tcp', to: '10.250.77.11', toPort: 80 }], internal: [CLUSTER], egress: false });
    expect(await getOnce(`http://127.0.0.1:${port}/`)).toBe('task-1\n');
    // The same spec again changes nothing; another mapping replaces the table whole.
    await table.sync({ bridges: [bridge], mappings: [{ address: '127.0.0.1', port, protocol: 'tcp', to: '10.250.77.11', toPort: 80 }], internal: [CLUSTER], egress: false });
    await table.sync({ bridges: [bridge], mappings: [], internal: [CLUSTER], egress: false });
    await expect(getOnce(`http://127.0.0.1:${port}/`, 1000)).rejects.toBeTruthy();
  });

  it('renders rules only from checked values', () => {
    const ok = { bridges: [bridge], mappings: [{ address: '127.0.0.1', port: 8080, protocol: 'tcp' as const, to: '10.250.77.11', toPort: 80 }], internal: [CLUSTER], egress: false };
    const text = rulesetText('t', ok);
    // Without egress, a task's packets are forwarded only within the cluster's ranges; with it, the rest leaves as the node.
    expect(text).toMatch(new RegExp(`iifname "${bridge.name}" ip daddr != \\{ 10\\.250\\.0\\.0/16 \\} drop`));
    expect(text).not.toMatch(/masquerade\n.*iifname/);
    // Without egress a task routes nothing but the cluster's ranges: a client from elsewhere is answered through the gateway,
    // and that reply passes the drop as part of a connection made to the task.
    expect(text).toMatch(new RegExp(`oifname "${bridge.name}" ip saddr != \\{ 10\\.250\\.0\\.0/16 \\} masquerade`));
    expect(text).toMatch(new RegExp(`ct state established,related accept\n\\s+iifname "${bridge.name}" ip daddr != `));
    expect(rulesetText('t', { ...ok, egress: true })).not.toMatch(/ip saddr != .* masquerade|established/);
    expect(rulesetText('t', { ...ok, egress: true })).toMatch(new RegExp(`iifname "${bridge.name}" oifname != "${bridge.name}" ip saddr 10\\.250\\.77\\.0/24 ip daddr != \\{ 10\\.250\\.0\\.0/16 \\} masquerade`));
    expect(rulesetText('t', { ...ok, egress: true })).not.toMatch(/ drop\n.*chain guard/);
    expect(text).toMatch(/ip daddr 127\.0\.0\.1 tcp dport 8080 dnat to 10\.250\.77\.11:80/);
    expect(text).toMatch(new RegExp(`iifname "${bridge.name}" ip daddr 127\\.0\\.0\\.0/8 drop`));
    expect(() => rulesetText('t', { ...ok, mappings: [{ ...ok.mappings[0]!, to: '10.0.0.1; flush ruleset' }] })).toThrow(/mappings\[0\]\.to must be an IPv4 address/);
    expect(() => rulesetText('t', { ...ok, mappings: [{ ...ok.mappings[0]!, port: 80.5 }] })).toThrow(/mappings\[0\]\.port must be a port/);
    expect(() => rulesetText('t', { ...ok, bridges: [{ ...bridge, name: 'eth0" accept' }] })).toThrow(/not a bridge/);
    expect(() => rulesetText('t; flush ruleset', ok)).toThrow(/not a table name/);
  });

  it('removes a sandbox and its namespace', async () => {
    await docker.getContainer(`baton-test-${RUN}-0`).remove({ force: true });
    await removeSandbox(docker, `baton-test-${RUN}-0`);
    await removeSandbox(docker, `baton-test-${RUN}-0`);
    await expect(docker.getContainer(`baton-test-${RUN}-0.pause`).inspect()).rejects.toMatchObject({ statusCode: 404 });
    await expect(getOnce('http://10.250.77.10:80/', 1000)).rejects.toBeTruthy();
  });
});

describe('a node task network (real dockerd, real namespaces)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-nodenet-'));
  const log = pino({ level: 'silent' });
  const opts = { node: `nn${RUN}`, cluster: 'sandbox-test', range: '10.250.79.0/24', address: '127.0.0.1', dataDir: dir, routes: ['10.250.0.0/16'], egress: false, log };
  const net = new NodeNetwork(opts);
  const driver = new DockerDriver();

  afterAll(async () => {
    const mine = await docker.listContainers({ all: true, filters: { label: [`baton.test=sandbox-${RUN}`] } });
    for (const c of mine) await docker.getContainer(c.Id).remove({ force: true }).catch(() => {});
    await net.release('t1', 'uid-1');
    await net.close();
    await deleteBridge(net.bridge.name);
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives a task an address that outlives the agent, and maps a node port to it', async () => {
    await net.start();
    const sb = await driver.sandbox('nodenet-t1-' + RUN, LABELS);
    // The driver lists task containers only, never their sandboxes.
    expect((await driver.list(LABELS)).map((c) => c.handle.name)).not.toContain(`nodenet-t1-${RUN}.pause`);
    const ip = await net.plumb('t1', 'uid-1', sb.pid);
    expect(ip).toBe('10.250.79.2');
    const app = await docker.createContainer({ name: `nodenet-t1-${RUN}`, Image: TEST_IMAGE, Cmd: ['sh', '-c', 'echo t1 > /tmp/index.html; exec httpd -f -p 8081 -h /tmp'], Labels: LABELS, HostConfig: { NetworkMode: `container:${sb.id}` } });
    await app.start();
    const port = await freePort();
    await net.setMappings('t1', [{ hostPort: port, target: 8081 }]);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const body = await getOnce(`http://127.0.0.1:${port}/`, 1000).catch((e: Error) => e);
      if (body === 't1\n') break;
      if (Date.now() > deadline) throw new Error(`no answer through the mapping: ${String(body)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // A new agent on the same data directory gives the task the same address; another task gets the next.
    const again = new NodeNetwork(opts);
    expect(again.addressOf('t1')).toBe('10.250.79.2');
    expect(again.addressOf('t2')).toBe('10.250.79.3');
  });
});
