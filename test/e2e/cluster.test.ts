/**
 * A real cluster on one machine: one `baton server` process and four `baton
 * agent` processes on 127.0.0.2–127.0.0.5, each with its own port range, all
 * on the shared dockerd (containers carry their node's name as a label).
 *
 * Covers joining with a token over mutual TLS, labels and constraints, drain
 * (the ready tasks never drop below replicas, none is lost), token rotation,
 * revocation by `node rm` (the agent is cut off and stops), and kill -9,
 * SIGSTOP and restart of agents.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../../src/api/client.js';
import { nodeKind, serviceKind } from '../../src/api/kinds.js';
import type { Node, Task } from '../../src/api/types.js';
import { tlsTransport, withTransport, type Transport } from '../../src/api/tls.js';
import { baton, cleanupDir, docker, eventually, removeClusterContainers, startProc, stopProc, tempDir, waitOutput, writeFile, TEST_IMAGE, type Proc } from '../helpers/proc.js';

const HEARTBEAT_MS = 300;
const TIMINGS = JSON.stringify({ heartbeatIntervalMs: HEARTBEAT_MS, nodeDownAfterMs: 30_000, bookmarkIntervalMs: 1000, drainDeadlineMs: 60_000 });
const NODES = ['n2', 'n3', 'n4', 'n5'] as const;
const ZONE: Record<string, string> = { n2: 'a', n3: 'a', n4: 'b', n5: 'b' };

describe('a cluster of one server and four agent processes', () => {
  let dir: string;
  let server: Proc;
  let url = '';
  let api: ApiClient;
  let tls: Transport;
  let env: Record<string, string>;
  let clusterId = '';
  let token = '';
  const agents = new Map<string, Proc>();

  const addr = (n: string) => `127.0.0.${n.slice(1)}`;
  const agentArgs = (n: string, joinToken: string) => [
    'agent', '--join', url, '--token', joinToken, '--name', n, '--address', addr(n), '--data-dir', join(dir, n),
    '--port-range', `${25000 + Number(n.slice(1)) * 200}-${25199 + Number(n.slice(1)) * 200}`, '--listen-port', '0', '--pull', 'never', '--egress', 'none', '--dns-upstream', 'none', '--label', `zone=${ZONE[n]}`, '--log-level', 'warn',
  ];
  const startAgent = (n: string, joinToken = token) => {
    const p = startProc(agentArgs(n, joinToken), env);
    agents.set(n, p);
    return p;
  };
  const node = (n: string) => api.get<Node>(nodeKind, n);
  const state = async (n: string) => (await node(n)).status.state;
  const serviceTasks = async (svc: string) => (await api.tasks()).items.filter((t: Task) => t.spec.serviceName === svc);
  const liveRunning = (ts: Task[]) => ts.filter((t) => t.spec.desiredState === 'running' && t.status.state === 'running');
  const containersOf = async (n: string) => (await docker(['ps', '-q', '--filter', `label=baton.cluster=${clusterId}`, '--filter', `label=baton.node.name=${n}`])).split('\n').filter(Boolean);

  beforeAll(async () => {
    dir = tempDir('baton-cluster-');
    env = { BATON_HOME: dir, BATON_TIMINGS: TIMINGS };
    server = startProc(['server', '--data-dir', join(dir, 'server'), '--listen', '127.0.0.1:0', '--cluster-cidr', '10.204.0.0/16', '--log-level', 'warn'], env);
    url = (await waitOutput(server, /listening on (\S+)/, 30_000))[1]!;
    token = (await waitOutput(server, /join token: (\S+)/, 5000))[1]!;
    const data = join(dir, 'server/server');
    clusterId = JSON.parse(readFileSync(join(data, 'cluster.json'), 'utf8')).clusterId;
    const admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    tls = tlsTransport({ caPem: readFileSync(join(data, 'ca.crt'), 'utf8') });
    api = new ApiClient(withTransport({ server: url, token: admin }, tls));
    env = { ...env, BATON_SERVER: url, BATON_TOKEN: admin, BATON_CA: join(data, 'ca.crt') };
  }, 60_000);

  afterAll(async () => {
    for (const [n, p] of agents) {
      if (p.child.signalCode === 'SIGSTOP' || p.child.exitCode === null) p.child.kill('SIGCONT');
      if (p.child.exitCode !== null && p.child.exitCode !== 0 && p.child.exitCode !== 1) console.error(`agent ${n} exited ${p.child.exitCode}:\n${p.output()}`);
      await stopProc(p);
    }
    if (server) await stopProc(server);
    await tls?.close();
    await removeClusterContainers(clusterId);
    cleanupDir(dir);
  });

  it('joins three agents with the token; all are Ready with their labels, address and capacity', async () => {
    for (const n of NODES.slice(0, 3)) startAgent(n);
    await eventually(async () => {
      for (const n of NODES.slice(0, 3)) expect(await state(n)).toBe('ready');
    }, 30_000);
    const ls = await baton(['node', 'ls'], env);
    expect(ls.code, ls.stderr).toBe(0);
    for (const n of NODES.slice(0, 3)) expect(ls.stdout).toMatch(new RegExp(`${n}\\s+Ready\\s+active\\s+worker\\s+${addr(n).replace(/\./g, '\\.')}\\s.*zone=${ZONE[n]}`));
    const n2 = await node('n2');
    expect(n2.status.capacity.cpus).toBeGreaterThan(0);
    expect(n2.status.agentVersion).toMatch(/^\d+\.\d+\.\d+/);
    expect(Date.now() - Date.parse(n2.status.lastHeartbeat!)).toBeLessThan(5 * HEARTBEAT_MS * 3);
    // Each agent keeps its identity in its own data dir; the key is private.
    expect(readFileSync(join(dir, 'n2/pki/node.key'), 'utf8')).toMatch(/PRIVATE KEY/);
  });

  it('rotates the token: the old one is refused with a clear message, the new one joins (and gets its global task)', async () => {
    const rot = await baton(['join-token', 'worker', '--rotate'], env);
    expect(rot.code, rot.stderr).toBe(0);
    const fresh = /--token (\S+)/.exec(rot.stdout)![1]!;
    expect(fresh).not.toBe(token);
    const refused = startProc(agentArgs('n5', token), env);
    expect(await refused.exited).toBe(1);
    expect(refused.output()).toMatch(/error: join refused: the join token is wrong, was rotated/);
    expect(refused.output()).not.toMatch(/\n\s+at /);
    await expect(node('n5')).rejects.toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    token = fresh;
    // A global service runs on every node, and follows the node that joins next.
    const g = writeFile(dir, 'global.yaml', `services:\n  agent:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "3600"]\n    init: true\n    deploy:\n      mode: global\n`);
    expect((await baton(['apply', '-f', g, '--stack', 'g'], env)).code).toBe(0);
    const onNodes = async () => liveRunning(await serviceTasks('g_agent')).map((t) => t.spec.nodeName).sort();
    await eventually(async () => expect(await onNodes()).toEqual(['n2', 'n3', 'n4']), 30_000);
    startAgent('n5');
    await eventually(async () => expect(await state('n5')).toBe('ready'), 30_000);
    await eventually(async () => expect(await onNodes()).toEqual(['n2', 'n3', 'n4', 'n5']), 30_000);
    // The service's ready count follows its tasks' reports a moment later (a recount).
    await eventually(async () => expect((await baton(['service', 'ls'], env)).stdout).toMatch(/g_agent\s+global\s+4\/4 \(global\)/), 30_000);
    expect((await baton(['stack', 'rm', 'g'], env)).code).toBe(0);
    // Joined nodes were not affected.
    for (const n of NODES.slice(0, 3)) expect(await state(n)).toBe('ready');
    const ev = await baton(['events', '--node', 'n5'], env);
    expect(ev.stdout).toMatch(/JoinRefused .*wrong join token/);
  });

  it('places by labels, and follows a label change', async () => {
    const f = writeFile(dir, 'zoned.yaml', `services:\n  zb:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "3600"]\n    init: true\n    deploy:\n      replicas: 4\n      placement:\n        constraints: ["node.labels.zone == b"]\n`);
    // A dry run says where the tasks would land, and changes nothing.
    const dry = await baton(['apply', '-f', f, '--stack', 'c', '--dry-run'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/\(dry run\) would create service c_zb\n {4}would place: n4×2, n5×2/);
    await expect(api.get(serviceKind, 'c_zb')).rejects.toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    expect((await baton(['apply', '-f', f, '--stack', 'c'], env)).code).toBe(0);
    const ts = await eventually(async () => {
      const r = liveRunning(await serviceTasks('c_zb'));
      expect(r).toHaveLength(4);
      return r;
    }, 30_000);
    expect(new Set(ts.map((t) => t.spec.nodeName))).toEqual(new Set(['n4', 'n5']));
    const why = await baton(['explain', 'c_zb'], env);
    expect(why.code, why.stderr).toBe(0);
    expect(why.stdout).toMatch(/4 node\(s\) evaluated, 2 feasible/);
    expect(why.stdout).toMatch(/ruled out: 2 constraint not satisfied \(node\.labels\.zone==b\)/);
    expect(why.stdout).toMatch(/ranked: 1\. n[45]  sameService=\d+ used=\d/);
    const up = await baton(['node', 'update', 'n3', '--label-add', 'zone=b'], env);
    expect(up.stdout).toMatch(/node n3: availability active, labels zone=b/);
    expect((await node('n3')).metadata.labels.zone).toBe('b');
    // New placements may now use n3.
    expect((await baton(['service', 'scale', 'c_zb=9'], env)).code).toBe(0);
    await eventually(async () => {
      const r = liveRunning(await serviceTasks('c_zb'));
      expect(r).toHaveLength(9);
      expect(r.some((t) => t.spec.nodeName === 'n3')).toBe(true);
      expect(r.some((t) => t.spec.nodeName === 'n2')).toBe(false);
    }, 30_000);
    expect((await baton(['stack', 'rm', 'c'], env)).code).toBe(0);
    await eventually(async () => expect(await serviceTasks('c_zb')).toHaveLength(0), 30_000);
  });

  it('drains a node: every task moves first and stops after, ready never below replicas, none lost', async () => {
    const f = writeFile(dir, 'web.yaml', `services:\n  web:\n    image: ${TEST_IMAGE}\n    command: ["sh", "-c", "exec httpd -f -p $$BATON_HOST_IP:$$PORT -h /"]\n    expose: ["8080"]\n    deploy:\n      replicas: 4\n`);
    expect((await baton(['apply', '-f', f, '--stack', 'd'], env)).code).toBe(0);
    const before = await eventually(async () => {
      const r = liveRunning(await serviceTasks('d_web'));
      expect(r).toHaveLength(4);
      return r;
    }, 30_000);
    const victim = before[0]!.spec.nodeName;
    const onVictim = before.filter((t) => t.spec.nodeName === victim).length;
    expect(onVictim).toBeGreaterThan(0);

    let minReady = Infinity;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const ts = await serviceTasks('d_web').catch(() => undefined);
        if (ts) minReady = Math.min(minReady, liveRunning(ts).length);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const dr = await baton(['node', 'update', victim, '--availability', 'drain'], env);
    expect(dr.code, dr.stderr).toBe(0);
    try {
      await eventually(async () => {
        const live = (await serviceTasks('d_web')).filter((t) => t.spec.desiredState === 'running');
        expect(live).toHaveLength(4);
        expect(live.every((t) => t.status.state === 'running' && t.spec.nodeName !== victim)).toBe(true);
        expect(await containersOf(victim)).toEqual([]);
      }, 60_000);
    } finally {
      sampling = false;
      await sampler;
    }
    expect(minReady).toBeGreaterThanOrEqual(4);
    // Every slot still has exactly one task, and each answers.
    const after = liveRunning(await serviceTasks('d_web'));
    expect(after.map((t) => t.spec.slot).sort()).toEqual([1, 2, 3, 4]);
    for (const t of after) {
      const res = await eventually(() => fetch(`http://${t.status.taskIP}:8080/`), 10_000);
      expect(res.status).toBeLessThan(500);
    }
    expect((await node(victim)).spec.availability).toBe('drain');
    expect((await baton(['node', 'update', victim, '--availability', 'active'], env)).code).toBe(0);
  });

  it('marks a killed agent NotReady within 3 heartbeats; after a restart it is Ready and adopts its containers', async () => {
    const ts = liveRunning(await serviceTasks('d_web'));
    const n = ts[0]!.spec.nodeName;
    const mine = (await containersOf(n)).sort();
    expect(mine.length).toBeGreaterThan(0);
    agents.get(n)!.child.kill('SIGKILL');
    await agents.get(n)!.exited;
    await eventually(async () => expect(await state(n)).toBe('notready'), 5 * 3 * HEARTBEAT_MS + 2000);
    expect((await containersOf(n)).sort()).toEqual(mine); // containers outlive their agent
    startAgent(n);
    await eventually(async () => expect(await state(n)).toBe('ready'), 30_000);
    await eventually(async () => expect(liveRunning(await serviceTasks('d_web'))).toHaveLength(4), 30_000);
    expect((await containersOf(n)).sort()).toEqual(mine); // adopted, not duplicated
  });

  it('marks a stopped (SIGSTOP) agent NotReady, and Ready again after SIGCONT', async () => {
    const p = agents.get('n2')!;
    p.child.kill('SIGSTOP');
    try {
      await eventually(async () => expect(await state('n2')).toBe('notready'), 5 * 3 * HEARTBEAT_MS + 2000);
      const n2 = await node('n2');
      expect(n2.status.message).toMatch(/missed 3 heartbeats \(every 300 ms; the last at /);
    } finally {
      p.child.kill('SIGCONT');
    }
    await eventually(async () => expect(await state('n2')).toBe('ready'), 30_000);
    const ev = await baton(['events', '--node', 'n2'], env);
    expect(ev.stdout).toMatch(/NodeNotReady/);
    expect(ev.stdout).toMatch(/NodeReady/);
  });

  it('removes a node: its certificate is revoked, its agent is cut off and stops, its tasks run elsewhere', async () => {
    const ts = liveRunning(await serviceTasks('d_web'));
    const n = ts[0]!.spec.nodeName;
    const refused = await baton(['node', 'rm', n], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`error: node ${n} is Ready; drain it and stop its agent first, or pass --force`));
    const rm = await baton(['node', 'rm', n, '--force'], env);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toMatch(/1 certificate\(s\) revoked/);
    const p = agents.get(n)!;
    expect(await Promise.race([p.exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))])).toBe(1);
    expect(p.output()).toMatch(new RegExp(`error: node ${n} was removed from the cluster`));
    expect(await containersOf(n)).toEqual([]);
    await eventually(async () => {
      const r = liveRunning(await serviceTasks('d_web'));
      expect(r).toHaveLength(4);
      expect(r.every((t) => t.spec.nodeName !== n)).toBe(true);
    }, 30_000);
    await expect(node(n)).rejects.toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    // Its old identity no longer works, even after a restart of the agent.
    const again = startProc(agentArgs(n, token).filter((a, i, all) => a !== '--token' && all[i - 1] !== '--token'), env);
    expect(await again.exited).toBe(1);
    expect(again.output()).toMatch(/revoked/);
  });
});
