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
import { nodeKind, serviceKind } from '../../src/api/kinds.js';
import { contains, parseCidr } from '../../src/base/cidr.js';
import type { Node, Service, Task } from '../../src/api/types.js';
import { docker, eventually, TEST_IMAGE } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';

const HEARTBEAT_MS = 300;
const DOWN_AFTER_MS = 3000;
const NODES = ['n2', 'n3', 'n4'] as const;

describe('failure recovery on a 3-node cluster', () => {
  const c = new TestCluster('baton-recovery-', { heartbeatIntervalMs: HEARTBEAT_MS, nodeDownAfterMs: DOWN_AFTER_MS, bookmarkIntervalMs: 1000 }, 26000);
  /** A service's events of one reason, oldest first. */
  const events = async (svc: string, reason: string) => (await c.api.events({ service: svc })).items.filter((e) => e.reason === reason);

  beforeAll(() => c.start(NODES), 90_000);
  afterAll(() => c.stop());

  it('restarts a container that exits 1 every second in place, its backoff growing to its cap', async () => {
    await c.apply('crash', `services:
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
      const [t] = await c.tasksOf('crash_loop');
      if (t?.status.nextRestartAt) waitingStatus = t;
      // A repeat of the same message is one event with a count (an event series): each occurrence counts.
      seen = (await events('crash_loop', 'TaskCrashed')).flatMap((e) => Array<string>(e.count ?? 1).fill(String(e.message).replace(/^\S+: /, '')));
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
    const [t] = await c.tasksOf('crash_loop');
    expect(t!.status.restartCount).toBeGreaterThanOrEqual(4);
    expect(t!.status.exitCode).toBe(1);
    // One container, restarted in place; the wait before a restart shows when it ends.
    expect(await docker(['ps', '-aq', '--filter', `label=baton.cluster=${c.clusterId}`, '--filter', 'label=baton.service=crash_loop'])).toMatch(/^\w+\n?$/);
    expect(waitingStatus?.status.message).toMatch(/restarting in 0\.\ds/);
    const ps = await c.baton(['service', 'ps', 'crash_loop']);
    expect(ps.stdout).toMatch(/RESTARTS/);
    expect(ps.stdout).toMatch(/\d+ \(last exit 1\)/);
    expect((await c.baton(['stack', 'rm', 'crash'])).code).toBe(0);
  });

  it('reschedules a task that failed past max_attempts on one node to another node (failure penalty)', async () => {
    const out = join(c.dir, 'penalty-out');
    // It fails on the first node it lands on, and runs anywhere else.
    await c.apply('penalty', `services:
  picky:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "[ -e /out/first ] || echo $$BATON_HOST_IP > /out/first; [ \\"$$(cat /out/first)\\" = \\"$$BATON_HOST_IP\\" ] && exit 1; exec sleep 3600"]
    volumes: ["${out}:/out"]
    deploy:
      restart_policy: {condition: on-failure, max_attempts: 2}
`);
    // Three failures on the first node (max_attempts 2), then a new task elsewhere that stays up.
    const all = await eventually(async () => {
      const ts = await c.tasksOf('penalty_picky');
      expect(ts.filter((t) => t.status.state === 'failed')).toHaveLength(1);
      expect(live(ts)).toHaveLength(1);
      return ts;
    }, 5 * 5000);
    const first = readFileSync(join(out, 'first'), 'utf8').trim();
    const failed = all.find((t) => t.status.state === 'failed')!;
    // It wrote its own address, from its node's task range.
    expect(contains(parseCidr((await c.api.get<Node>(nodeKind, failed.spec.nodeName)).status.taskRange!), first)).toBe(true);
    expect(failed.status.error).toMatch(new RegExp(`exited with code 1; gave up after 2 restarts on ${failed.spec.nodeName}$`));
    const [now] = live(all);
    expect(now!.spec.nodeName).not.toBe(failed.spec.nodeName);
    expect(now!.spec.avoidNodes).toEqual([failed.spec.nodeName]);
    expect((await c.baton(['stack', 'rm', 'penalty'])).code).toBe(0);
  });

  it('restarts a task whose health check fails, and reports a task whose readiness probe fails as running but not ready', async () => {
    await c.apply('hc', `services:
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
    const svc = (n: string) => c.api.get<Service>(serviceKind, n);
    // A health check that passes makes the task ready, from the agent's first probe.
    await eventually(async () => {
      const [t] = live(await c.tasksOf('hc_live'));
      expect(t?.status.healthy).toBe(true);
      expect((await svc('hc_live')).status.ready).toBe(1);
      const [w] = live(await c.tasksOf('hc_web'));
      expect(w?.status.healthy).toBe(true);
      expect((await svc('hc_web')).status.ready).toBe(1);
    }, 5 * 3000);
    const [web] = live(await c.tasksOf('hc_web'));
    expect(await (await fetch(`http://${web!.status.taskIP}:8080/ok`)).text()).toBe('ok\n');
    // The readiness probe fails: running, not ready, never restarted.
    await eventually(async () => {
      const [g] = await c.tasksOf('hc_gate');
      expect(g?.status.state).toBe('running');
      expect(g?.status.ready).toBe(false);
      expect(g?.status.message).toMatch(/^not ready: exit code 1/);
      expect(await svc('hc_gate')).toMatchObject({ status: { running: 1, ready: 0 } });
    }, 5 * 2000);
    expect((await c.baton(['service', 'ps', 'hc_gate'])).stdout).toMatch(/not ready/);
    const [gate] = await c.tasksOf('hc_gate');
    await docker(['exec', gate!.status.containerId!, 'touch', '/tmp/ready']);
    await eventually(async () => {
      const [g] = await c.tasksOf('hc_gate');
      expect(g?.status.ready).toBe(true);
      expect((await svc('hc_gate')).status.ready).toBe(1);
    }, 5 * 1000);
    expect((await c.tasksOf('hc_gate'))[0]!.status.restartCount).toBe(0);

    // The health check starts failing: after `retries` failures the task is stopped and restarted in place (which heals it here).
    const [before] = live(await c.tasksOf('hc_live'));
    await docker(['exec', before!.status.containerId!, 'rm', '/tmp/alive']);
    await eventually(async () => {
      const [t] = live(await c.tasksOf('hc_live'));
      expect(t?.status.restartCount).toBe(1);
      expect(t?.status.healthy).toBe(true);
      expect(t?.metadata.name).toBe(before!.metadata.name);
    }, 5 * 3000);
    const crashed = await events('hc_live', 'TaskCrashed');
    expect(crashed.map((e) => e.message)).toEqual([expect.stringMatching(/unhealthy \(exit code 1\); restarting$/)]);
    expect((await c.baton(['stack', 'rm', 'hc'])).code).toBe(0);
  });

  it('honours stop_signal and stop_grace_period when a task stops', async () => {
    const out = join(c.dir, 'grace-out');
    await c.apply('grace', `services:
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
      expect(live(await c.tasksOf('grace_polite'))).toHaveLength(1);
      expect(live(await c.tasksOf('grace_stubborn'))).toHaveLength(1);
    }, 5 * 3000);
    const names = { polite: live(await c.tasksOf('grace_polite'))[0]!.metadata.name, stubborn: live(await c.tasksOf('grace_stubborn'))[0]!.metadata.name };
    const since = Date.now() / 1000;
    expect((await c.baton(['service', 'scale', 'grace_polite=0', 'grace_stubborn=0'])).code).toBe(0);
    await eventually(async () => expect([...(await c.running('grace_polite')), ...(await c.running('grace_stubborn'))]).toEqual([]), 5 * 3000);
    // The engine's own record of each container's death: when, and with which exit code.
    const died = (await docker(['events', '--since', since.toFixed(3), '--until', (Date.now() / 1000 + 1).toFixed(3), '--filter', `label=baton.cluster=${c.clusterId}`, '--filter', 'event=die', '--format', '{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}} {{.TimeNano}}']))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' '))
      .map(([name, code, ns]) => ({ name, code: Number(code), afterMs: Number(BigInt(ns!) / 1_000_000n) - since * 1000 }));
    const polite = died.find((d) => d.name === names.polite)!;
    const stubborn = died.find((d) => d.name === names.stubborn)!;
    // The polite one got its own signal and exited 0 at once; the stubborn one ignored SIGTERM and was killed after its grace period.
    expect(polite.code).toBe(0);
    expect(readFileSync(join(out, 'polite'), 'utf8')).toBe('got USR1\n');
    // "At once" against its 20 s grace period: well under it, whatever the load (the CLI's own start is in this time).
    expect(polite.afterMs).toBeLessThan(10_000);
    expect(stubborn.code).toBe(137);
    expect(stubborn.afterMs).toBeGreaterThanOrEqual(1400);
    expect((await c.baton(['stack', 'rm', 'grace'])).code).toBe(0);
  });

  it('runs the tasks of a killed agent elsewhere; back, the agent stops its stale containers', async () => {
    await c.apply('spread', `services:
  web:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    deploy:
      replicas: 6
`);
    await eventually(async () => expect(live(await c.tasksOf('spread_web'))).toHaveLength(6), 5 * 4000);
    const victim = 'n4';
    const stale = (await c.running('spread_web', victim)).sort();
    expect(stale.length).toBe(2);
    const p = c.agents.get(victim)!;
    const killedAt = Date.now();
    p.child.kill('SIGKILL');
    await p.exited;
    // Down after 3 s without heartbeats; its 2 tasks are replaced on n2 and n3.
    await eventually(async () => {
      const r = live(await c.tasksOf('spread_web'));
      expect(r).toHaveLength(6);
      expect(r.every((t) => t.spec.nodeName !== victim)).toBe(true);
    }, 5 * (DOWN_AFTER_MS + 2000));
    const took = Date.now() - killedAt;
    expect(await c.state(victim)).toBe('down');
    const orphaned = (await c.tasksOf('spread_web')).filter((t) => t.spec.nodeName === victim);
    expect(orphaned.map((t) => [t.status.state, t.spec.desiredState])).toEqual([['orphaned', 'shutdown'], ['orphaned', 'shutdown']]);
    // Its containers outlived it: 8 run until it comes back.
    expect((await c.running('spread_web')).length).toBe(8);
    c.startAgent(victim);
    await eventually(async () => expect(await c.state(victim)).toBe('ready'), 30_000);
    await eventually(async () => {
      expect(await c.running('spread_web', victim)).toEqual([]);
      expect((await c.running('spread_web')).length).toBe(6);
    }, 30_000);
    expect(live(await c.tasksOf('spread_web'))).toHaveLength(6);
    expect(took).toBeGreaterThanOrEqual(DOWN_AFTER_MS);
  });

  it('recovers from power loss of a node: agent killed and its containers killed too; back, it runs nothing extra', async () => {
    const victim = 'n3';
    const mine = await c.running('spread_web', victim);
    expect(mine.length).toBeGreaterThan(0);
    const p = c.agents.get(victim)!;
    p.child.kill('SIGKILL');
    await p.exited;
    const all = (await docker(['ps', '-q', '--filter', `label=baton.cluster=${c.clusterId}`, '--filter', `label=baton.node.name=${victim}`])).split('\n').filter(Boolean);
    await docker(['kill', ...all]);
    await eventually(async () => {
      const r = live(await c.tasksOf('spread_web'));
      expect(r).toHaveLength(6);
      expect(r.every((t) => t.spec.nodeName !== victim)).toBe(true);
      expect((await c.running('spread_web')).length).toBe(6);
    }, 5 * (DOWN_AFTER_MS + 2000));
    c.startAgent(victim);
    await eventually(async () => expect(await c.state(victim)).toBe('ready'), 30_000);
    // Back from the dead, it restarts none of its old tasks (they were replaced).
    await new Promise((r) => setTimeout(r, 2000));
    expect(await c.running('spread_web', victim)).toEqual([]);
    expect((await c.running('spread_web')).length).toBe(6);
    expect(live(await c.tasksOf('spread_web'))).toHaveLength(6);
    expect((await c.baton(['stack', 'rm', 'spread'])).code).toBe(0);
    await eventually(async () => expect(await c.running('spread_web')).toEqual([]), 30_000);
  });

  /** noDuplicates: every slot has one live task and one container; there are `n` of each. */
  const exactly = async (svc: string, n: number) => {
    const r = live(await c.tasksOf(svc));
    expect(r).toHaveLength(n);
    expect(new Set(r.map((t) => t.spec.slot)).size).toBe(n);
    expect(await c.running(svc)).toHaveLength(n);
  };

  it('converges to exactly 50 after kill -9 of the server in the middle of a scale from 10 to 50', async () => {
    await c.apply('scale', `services:
  web:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    deploy:
      replicas: 10
`);
    await eventually(() => exactly('scale_web', 10), 5 * 5000);
    expect((await c.baton(['service', 'scale', 'scale_web=50'])).code).toBe(0);
    // Kill it once the scale is under way, before it is done.
    await eventually(async () => expect((await c.running('scale_web')).length).toBeGreaterThan(12), 30_000, 20);
    c.server.child.kill('SIGKILL');
    await c.server.exited;
    expect((await c.running('scale_web')).length).toBeLessThan(50);
    await c.startServer();
    await eventually(() => exactly('scale_web', 50), 90_000, 500);
  }, 300_000);

  it('converges to exactly 50 after kill -9 of an agent in the middle of a scale from 10 to 50', async () => {
    expect((await c.baton(['service', 'scale', 'scale_web=10'])).code).toBe(0);
    await eventually(() => exactly('scale_web', 10), 60_000, 500);
    const victim = 'n2';
    expect((await c.baton(['service', 'scale', 'scale_web=50'])).code).toBe(0);
    await eventually(async () => expect((await c.running('scale_web', victim)).length).toBeGreaterThan(4), 30_000, 20);
    const p = c.agents.get(victim)!;
    p.child.kill('SIGKILL');
    await p.exited;
    c.startAgent(victim);
    await eventually(() => exactly('scale_web', 50), 90_000, 500);
    expect((await c.baton(['stack', 'rm', 'scale'])).code).toBe(0);
    await eventually(async () => expect(await c.running('scale_web')).toEqual([]), 60_000);
  }, 300_000);
});
