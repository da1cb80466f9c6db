/**
 * Failure recovery on a real cluster: one `baton server` and three `baton
 * agent` processes (127.0.0.2–4) on the shared dockerd.
 *
 * - a container that exits 1 every second shows its backoff growing;
 * - a failing health check gets the task restarted; a task whose readiness
 *   probe fails runs but is reported not ready; an HTTP probe gates readiness;
 * - stop_signal and stop_grace_period are honoured end to end;
 * - kill -9 of one agent gets its tasks running elsewhere, and bringing it
 *   back stops its stale containers (exactly `replicas` again);
 * - the power-loss variant also `docker kill`s the node's containers;
 * - kill -9 of the server, then of an agent, in the middle of a scale from
 *   10 to 50: after restart exactly 50 run, none lost, none duplicated.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../../src/api/client.js';
import { nodeKind, serviceKind } from '../../src/api/kinds.js';
import type { Node, Service, Task } from '../../src/api/types.js';
import { tlsTransport, withTransport, type Transport } from '../../src/api/tls.js';
import { baton, cleanupDir, freePort, docker, eventually, removeClusterContainers, startProc, stopProc, tempDir, waitOutput, writeFile, TEST_IMAGE, type Proc } from '../helpers/proc.js';

const HEARTBEAT_MS = 300;
const DOWN_AFTER_MS = 3000;
const TIMINGS = JSON.stringify({ heartbeatIntervalMs: HEARTBEAT_MS, nodeDownAfterMs: DOWN_AFTER_MS, bookmarkIntervalMs: 1000 });
const NODES = ['n2', 'n3', 'n4'] as const;

describe('failure recovery on a 3-node cluster', () => {
  let dir: string;
  let server: Proc;
  let port = 0;
  let url = '';
  let api: ApiClient;
  let tls: Transport;
  let env: Record<string, string>;
  let clusterId = '';
  let token = '';
  const agents = new Map<string, Proc>();

  const addr = (n: string) => `127.0.0.${n.slice(1)}`;
  const startAgent = (n: string) => {
    const p = startProc(
      ['agent', '--join', url, '--token', token, '--name', n, '--address', addr(n), '--data-dir', join(dir, n), '--port-range', `${26000 + Number(n.slice(1)) * 200}-${26199 + Number(n.slice(1)) * 200}`, '--pull', 'never', '--log-level', 'warn'],
      env,
    );
    agents.set(n, p);
    return p;
  };
  const startServer = async () => {
    server = startProc(['server', '--data-dir', join(dir, 'server'), '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], env);
    url = (await waitOutput(server, /listening on (\S+)/, 30_000))[1]!;
  };
  const state = async (n: string) => (await api.get<Node>(nodeKind, n)).status.state;
  const tasksOf = async (svc: string) => (await api.tasks({ fieldSelector: { 'spec.serviceName': svc } })).items;
  const live = (ts: Task[]) => ts.filter((t) => t.spec.desiredState === 'running' && t.status.state === 'running');
  /** Running containers of a service, on every node, straight from the engine. */
  const running = async (svc: string, node?: string) =>
    (await docker(['ps', '-q', '--filter', `label=baton.cluster=${clusterId}`, '--filter', `label=baton.service=${svc}`, ...(node ? ['--filter', `label=baton.node.name=${node}`] : [])])).split('\n').filter(Boolean);
  const apply = async (name: string, yaml: string) => {
    const r = await baton(['apply', '-f', writeFile(dir, `${name}.yaml`, `name: ${name}\n${yaml}`)], env);
    expect(r.code, r.stderr).toBe(0);
  };
  /** A service's events of one reason, oldest first. */
  const events = async (svc: string, reason: string) => (await api.events({ service: svc })).items.filter((e) => e.reason === reason);

  beforeAll(async () => {
    dir = tempDir('baton-recovery-');
    env = { BATON_HOME: dir, BATON_TIMINGS: TIMINGS };
    port = await freePort();
    await startServer();
    token = (await waitOutput(server, /join token: (\S+)/, 5000))[1]!;
    const data = join(dir, 'server/server');
    clusterId = JSON.parse(readFileSync(join(data, 'cluster.json'), 'utf8')).clusterId;
    const admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    tls = tlsTransport({ caPem: readFileSync(join(data, 'ca.crt'), 'utf8') });
    api = new ApiClient(withTransport({ server: url, token: admin }, tls));
    env = { ...env, BATON_SERVER: url, BATON_TOKEN: admin, BATON_CA: join(data, 'ca.crt') };
    for (const n of NODES) startAgent(n);
    await eventually(async () => {
      for (const n of NODES) expect(await state(n)).toBe('ready');
    }, 30_000);
  }, 90_000);

  afterAll(async () => {
    for (const [n, p] of agents) {
      if (p.child.exitCode !== null && p.child.exitCode !== 0 && p.child.signalCode !== 'SIGKILL') console.error(`agent ${n} exited ${p.child.exitCode}:\n${p.output()}`);
      await stopProc(p);
    }
    if (server) await stopProc(server);
    await tls?.close();
    await removeClusterContainers(clusterId);
    cleanupDir(dir);
  });

  it('restarts a container that exits 1 every second in place, its backoff growing to its cap', async () => {
    await apply('crash', `services:
  loop:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "sleep 1; exit 1"]
    deploy:
      placement: {constraints: ["node.name == n2"]}
    x-baton:
      restart:
        backoff: {initial: 200ms, max: 800ms}
`);
    // Each crash is one TaskCrashed event, whose message says when the next start comes.
    let seen: string[] = [];
    let waitingStatus: Task | undefined;
    await eventually(async () => {
      const [t] = await tasksOf('crash_loop');
      if (t?.status.nextRestartAt) waitingStatus = t;
      seen = (await events('crash_loop', 'TaskCrashed')).map((e) => String(e.message).replace(/^\S+: /, ''));
      expect(seen.length).toBeGreaterThanOrEqual(5);
    }, 5 * 8_000);
    // Immediate first, then 200 ms doubling up to the 800 ms cap.
    expect(seen.slice(0, 5)).toEqual([
      'exited with code 1; restarting',
      'exited with code 1; restarting in 0.2s',
      'exited with code 1; restarting in 0.4s',
      'exited with code 1; restarting in 0.8s',
      'exited with code 1; restarting in 0.8s',
    ]);
    const [t] = await tasksOf('crash_loop');
    expect(t!.status.restartCount).toBeGreaterThanOrEqual(4);
    expect(t!.status.exitCode).toBe(1);
    // One container, restarted in place; the wait before a restart shows when it ends.
    expect(await docker(['ps', '-aq', '--filter', `label=baton.cluster=${clusterId}`, '--filter', 'label=baton.service=crash_loop'])).toMatch(/^\w+\n?$/);
    expect(waitingStatus?.status.message).toMatch(/restarting in 0\.\ds/);
    const ps = await baton(['service', 'ps', 'crash_loop'], env);
    expect(ps.stdout).toMatch(/RESTARTS/);
    expect(ps.stdout).toMatch(/\d+ \(last exit 1\)/);
    expect((await baton(['stack', 'rm', 'crash'], env)).code).toBe(0);
  });

  it('reschedules a task that failed past max_attempts on one node to another node (failure penalty)', async () => {
    const out = join(dir, 'penalty-out');
    // It fails on the first node it lands on, and runs anywhere else.
    await apply('penalty', `services:
  picky:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "[ -e /out/first ] || echo $$BATON_HOST_IP > /out/first; [ \\"$$(cat /out/first)\\" = \\"$$BATON_HOST_IP\\" ] && exit 1; exec sleep 3600"]
    volumes: ["${out}:/out"]
    deploy:
      restart_policy: {condition: on-failure, max_attempts: 2}
`);
    await eventually(async () => expect(live(await tasksOf('penalty_picky'))).toHaveLength(1), 5 * 5000);
    const first = readFileSync(join(out, 'first'), 'utf8').trim();
    const all = await tasksOf('penalty_picky');
    const failed = all.find((t) => t.status.state === 'failed')!;
    expect(addr(failed.spec.nodeName)).toBe(first);
    expect(failed.status.error).toMatch(new RegExp(`exited with code 1; gave up after 2 restarts on ${failed.spec.nodeName}$`));
    const [now] = live(all);
    expect(now!.spec.nodeName).not.toBe(failed.spec.nodeName);
    expect(now!.spec.avoidNodes).toEqual([failed.spec.nodeName]);
    expect((await baton(['stack', 'rm', 'penalty'], env)).code).toBe(0);
  });

  it('restarts a task whose health check fails, and reports a task whose readiness probe fails as running but not ready', async () => {
    await apply('hc', `services:
  live:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "touch /tmp/alive; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/alive"]
      interval: 200ms
      timeout: 2s
      retries: 2
    deploy:
      placement: {constraints: ["node.name == n3"]}
  gate:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    deploy:
      placement: {constraints: ["node.name == n3"]}
    x-baton:
      readiness: {test: "test -f /tmp/ready", interval: 200ms, retries: 1}
  web:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/ok && exec httpd -f -p $$BATON_HOST_IP:$$PORT -h /www"]
    expose: [8080]
    deploy:
      placement: {constraints: ["node.name == n3"]}
    x-baton:
      healthcheck: {http: /ok, port: 8080, interval: 300ms}
`);
    const svc = (n: string) => api.get<Service>(serviceKind, n);
    // A health check that passes makes the task ready, from the agent's first probe.
    await eventually(async () => {
      const [t] = live(await tasksOf('hc_live'));
      expect(t?.status.healthy).toBe(true);
      expect((await svc('hc_live')).status.ready).toBe(1);
      const [w] = live(await tasksOf('hc_web'));
      expect(w?.status.healthy).toBe(true);
      expect((await svc('hc_web')).status.ready).toBe(1);
    }, 5 * 3000);
    const [web] = live(await tasksOf('hc_web'));
    expect(await (await fetch(`http://${web!.status.hostIP}:${web!.status.ports[0]!.hostPort}/ok`)).text()).toBe('ok\n');
    // The readiness probe fails: running, not ready, never restarted.
    await eventually(async () => {
      const [g] = await tasksOf('hc_gate');
      expect(g?.status.state).toBe('running');
      expect(g?.status.ready).toBe(false);
      expect(g?.status.message).toMatch(/^not ready: exit code 1/);
      expect(await svc('hc_gate')).toMatchObject({ status: { running: 1, ready: 0 } });
    }, 5 * 2000);
    expect((await baton(['service', 'ps', 'hc_gate'], env)).stdout).toMatch(/not ready/);
    const [gate] = await tasksOf('hc_gate');
    await docker(['exec', gate!.status.containerId!, 'touch', '/tmp/ready']);
    await eventually(async () => {
      const [g] = await tasksOf('hc_gate');
      expect(g?.status.ready).toBe(true);
      expect((await svc('hc_gate')).status.ready).toBe(1);
    }, 5 * 1000);
    expect((await tasksOf('hc_gate'))[0]!.status.restartCount).toBe(0);

    // The health check starts failing: after `retries` failures the task is stopped and restarted in place (which heals it here).
    const [before] = live(await tasksOf('hc_live'));
    await docker(['exec', before!.status.containerId!, 'rm', '/tmp/alive']);
    await eventually(async () => {
      const [t] = live(await tasksOf('hc_live'));
      expect(t?.status.restartCount).toBe(1);
      expect(t?.status.healthy).toBe(true);
      expect(t?.metadata.name).toBe(before!.metadata.name);
    }, 5 * 3000);
    const crashed = await events('hc_live', 'TaskCrashed');
    expect(crashed.map((e) => e.message)).toEqual([expect.stringMatching(/unhealthy \(exit code 1\); restarting$/)]);
    expect((await baton(['stack', 'rm', 'hc'], env)).code).toBe(0);
  });

  it('honours stop_signal and stop_grace_period when a task stops', async () => {
    const out = join(dir, 'grace-out');
    await apply('grace', `services:
  polite:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "trap 'echo got USR1 > /out/polite; exit 0' USR1; while true; do sleep 0.1; done"]
    stop_signal: SIGUSR1
    stop_grace_period: 20s
    volumes: ["${out}:/out"]
    deploy:
      placement: {constraints: ["node.name == n4"]}
  stubborn:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
    stop_grace_period: 1500ms
    deploy:
      placement: {constraints: ["node.name == n4"]}
`);
    await eventually(async () => {
      expect(live(await tasksOf('grace_polite'))).toHaveLength(1);
      expect(live(await tasksOf('grace_stubborn'))).toHaveLength(1);
    }, 5 * 3000);
    const names = { polite: live(await tasksOf('grace_polite'))[0]!.metadata.name, stubborn: live(await tasksOf('grace_stubborn'))[0]!.metadata.name };
    const since = Date.now() / 1000;
    expect((await baton(['service', 'scale', 'grace_polite=0', 'grace_stubborn=0'], env)).code).toBe(0);
    await eventually(async () => expect([...(await running('grace_polite')), ...(await running('grace_stubborn'))]).toEqual([]), 5 * 3000);
    // The engine's own record of each container's death: when, and with which exit code.
    const died = (await docker(['events', '--since', since.toFixed(3), '--until', (Date.now() / 1000 + 1).toFixed(3), '--filter', `label=baton.cluster=${clusterId}`, '--filter', 'event=die', '--format', '{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}} {{.TimeNano}}']))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' '))
      .map(([name, code, ns]) => ({ name, code: Number(code), afterMs: Number(BigInt(ns!) / 1_000_000n) - since * 1000 }));
    const polite = died.find((d) => d.name === names.polite)!;
    const stubborn = died.find((d) => d.name === names.stubborn)!;
    // The polite one got its own signal and exited 0 at once; the stubborn one ignored SIGTERM and was killed after its grace period.
    expect(polite.code).toBe(0);
    expect(readFileSync(join(out, 'polite'), 'utf8')).toBe('got USR1\n');
    expect(polite.afterMs).toBeLessThan(1500);
    expect(stubborn.code).toBe(137);
    expect(stubborn.afterMs).toBeGreaterThanOrEqual(1400);
    expect((await baton(['stack', 'rm', 'grace'], env)).code).toBe(0);
  });

  it('runs the tasks of a killed agent elsewhere; back, the agent stops its stale containers', async () => {
    await apply('spread', `services:
  web:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    deploy:
      replicas: 6
`);
    await eventually(async () => expect(live(await tasksOf('spread_web'))).toHaveLength(6), 5 * 4000);
    const victim = 'n4';
    const stale = (await running('spread_web', victim)).sort();
    expect(stale.length).toBe(2);
    const p = agents.get(victim)!;
    const killedAt = Date.now();
    p.child.kill('SIGKILL');
    await p.exited;
    // Down after 3 s without heartbeats; its 2 tasks are replaced on n2 and n3.
    await eventually(async () => {
      const r = live(await tasksOf('spread_web'));
      expect(r).toHaveLength(6);
      expect(r.every((t) => t.spec.nodeName !== victim)).toBe(true);
    }, 5 * (DOWN_AFTER_MS + 2000));
    const took = Date.now() - killedAt;
    expect(await state(victim)).toBe('down');
    const orphaned = (await tasksOf('spread_web')).filter((t) => t.spec.nodeName === victim);
    expect(orphaned.map((t) => [t.status.state, t.spec.desiredState])).toEqual([['orphaned', 'shutdown'], ['orphaned', 'shutdown']]);
    // Its containers outlived it: 8 run until it comes back.
    expect((await running('spread_web')).length).toBe(8);
    startAgent(victim);
    await eventually(async () => expect(await state(victim)).toBe('ready'), 30_000);
    await eventually(async () => {
      expect(await running('spread_web', victim)).toEqual([]);
      expect((await running('spread_web')).length).toBe(6);
    }, 30_000);
    expect(live(await tasksOf('spread_web'))).toHaveLength(6);
    expect(took).toBeGreaterThanOrEqual(DOWN_AFTER_MS);
  });

  it('recovers from power loss of a node: agent killed and its containers killed too; back, it runs nothing extra', async () => {
    const victim = 'n3';
    const mine = await running('spread_web', victim);
    expect(mine.length).toBeGreaterThan(0);
    const p = agents.get(victim)!;
    p.child.kill('SIGKILL');
    await p.exited;
    const all = (await docker(['ps', '-q', '--filter', `label=baton.cluster=${clusterId}`, '--filter', `label=baton.node.name=${victim}`])).split('\n').filter(Boolean);
    await docker(['kill', ...all]);
    await eventually(async () => {
      const r = live(await tasksOf('spread_web'));
      expect(r).toHaveLength(6);
      expect(r.every((t) => t.spec.nodeName !== victim)).toBe(true);
      expect((await running('spread_web')).length).toBe(6);
    }, 5 * (DOWN_AFTER_MS + 2000));
    startAgent(victim);
    await eventually(async () => expect(await state(victim)).toBe('ready'), 30_000);
    // Back from the dead, it restarts none of its old tasks (they were replaced).
    await new Promise((r) => setTimeout(r, 2000));
    expect(await running('spread_web', victim)).toEqual([]);
    expect((await running('spread_web')).length).toBe(6);
    expect(live(await tasksOf('spread_web'))).toHaveLength(6);
    expect((await baton(['stack', 'rm', 'spread'], env)).code).toBe(0);
    await eventually(async () => expect(await running('spread_web')).toEqual([]), 30_000);
  });

  /** noDuplicates: every slot has one live task and one container; there are `n` of each. */
  const exactly = async (svc: string, n: number) => {
    const r = live(await tasksOf(svc));
    expect(r).toHaveLength(n);
    expect(new Set(r.map((t) => t.spec.slot)).size).toBe(n);
    expect(await running(svc)).toHaveLength(n);
  };

  it('converges to exactly 50 after kill -9 of the server in the middle of a scale from 10 to 50', async () => {
    await apply('scale', `services:
  web:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    deploy:
      replicas: 10
`);
    await eventually(() => exactly('scale_web', 10), 5 * 5000);
    expect((await baton(['service', 'scale', 'scale_web=50'], env)).code).toBe(0);
    // Kill it once the scale is under way, before it is done.
    await eventually(async () => expect((await running('scale_web')).length).toBeGreaterThan(12), 30_000, 20);
    server.child.kill('SIGKILL');
    await server.exited;
    expect((await running('scale_web')).length).toBeLessThan(50);
    await startServer();
    await eventually(() => exactly('scale_web', 50), 90_000, 500);
  });

  it('converges to exactly 50 after kill -9 of an agent in the middle of a scale from 10 to 50', async () => {
    expect((await baton(['service', 'scale', 'scale_web=10'], env)).code).toBe(0);
    await eventually(() => exactly('scale_web', 10), 60_000, 500);
    const victim = 'n2';
    expect((await baton(['service', 'scale', 'scale_web=50'], env)).code).toBe(0);
    await eventually(async () => expect((await running('scale_web', victim)).length).toBeGreaterThan(4), 30_000, 20);
    const p = agents.get(victim)!;
    p.child.kill('SIGKILL');
    await p.exited;
    startAgent(victim);
    await eventually(() => exactly('scale_web', 50), 90_000, 500);
    expect((await baton(['stack', 'rm', 'scale'], env)).code).toBe(0);
    await eventually(async () => expect(await running('scale_web')).toEqual([]), 60_000);
  });
});
