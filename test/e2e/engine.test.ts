/**
 * The container engine dies under the agent: a `baton server` and one agent
 * (127.0.0.2) whose engine is a dockerd of the test's own, killed with
 * SIGKILL in the middle of a scale from 4 to 20 and started again (same
 * directories) a few seconds later, as `kill -9` of dockerd does on a node.
 * Its containers die with it (the restarted engine finds them exited 143),
 * creates and starts in flight fail, and its event stream breaks.
 *
 * Once the engine answers again every task must reach running, the tasks
 * that were starting when it died included, with exactly the wanted
 * replicas and no stray container, and the tasks that ran before keep
 * their addresses. The shared dockerd is never touched.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Task } from '../../src/api/types.js';
import { eventually, TEST_IMAGE } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';
import { leftovers, PrivateDockerd } from '../helpers/dockerd.js';

const HEARTBEAT_MS = 300;
/** How long the engine stays dead (the report: 6 s). */
const OUTAGE_MS = 4000;
/** Goal: all 20 run within about 10 s of the engine's return; the deadline is ≥5× that. */
const RECOVERY_DEADLINE_MS = 60_000;

describe('engine killed with -9 during a scale', () => {
  const engine = new PrivateDockerd('baton-eng-');
  const c = new TestCluster('baton-engine-', { heartbeatIntervalMs: HEARTBEAT_MS, nodeDownAfterMs: 60_000, bookmarkIntervalMs: 1000 }, 41000, { dockerSocket: engine.socket });

  beforeAll(async () => {
    await engine.start();
    await engine.loadTestImage();
    await c.start(['n2']);
  }, 120_000);

  afterAll(async () => {
    await c.stop();
    await engine.cleanup();
    // Nothing of the killed engine outlives the test: no shim, no container process, no mount.
    expect(leftovers(engine.dir)).toEqual([]);
    expect(readFileSync('/proc/self/mounts', 'utf8')).not.toContain(engine.dir);
  }, 60_000);

  /** containers: this cluster's containers on the private engine, with their state and task. */
  const containers = async () =>
    (await engine.docker(['ps', '-a', '--filter', `label=baton.cluster=${c.clusterId}`, '--filter', 'label=baton.service', '--format', '{{.ID}} {{.State}} {{.Label "baton.task"}}']))
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [id, state, task] = l.split(' ');
        return { id: id!, state: state!, task: task! };
      });

  it('drives every task to running again, the ones caught starting included: exactly 20, no stray container', async () => {
    await c.apply('eng', `services:
  app:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    deploy:
      replicas: 4
`);
    await eventually(async () => expect(live(await c.tasksOf('eng_app'))).toHaveLength(4), 30_000);
    const first = new Set((await containers()).map((x) => x.id));
    expect(first.size).toBe(4);
    // Each task has an address of its own (network_mode bridge, the default), to be kept across the engine's death.
    const addressBefore = new Map(live(await c.tasksOf('eng_app')).map((t) => [t.metadata.name, t.status.taskIP]));
    for (const a of addressBefore.values()) expect(a).toMatch(/^10\./);

    expect((await c.baton(['service', 'scale', 'eng_app=20'])).code).toBe(0);
    // Kill the engine as soon as it made the first new container: the others are being created or started, or not yet.
    let atKill: { id: string; state: string; task: string }[] = [];
    await eventually(async () => {
      atKill = await containers();
      expect(atKill.length).toBeGreaterThan(4);
    }, 30_000, 20);
    const tasksAtKill = await c.tasksOf('eng_app');
    await engine.kill9();
    const unfinished = tasksAtKill.filter((t) => t.spec.desiredState === 'running' && t.status.state !== 'running').map((t) => t.metadata.name);
    const caughtStarting = atKill.filter((x) => !first.has(x.id)).map((x) => x.task);
    console.log(`engine killed with ${atKill.length} containers (${atKill.filter((x) => x.state !== 'running').length} not running yet); ${unfinished.length} tasks not reported running`);
    expect(unfinished.length).toBeGreaterThan(0);

    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    await engine.start();

    const running = await eventually(async () => {
      const ts = await c.tasksOf('eng_app');
      const up = live(ts);
      expect(up.map((t) => `${t.metadata.name}: ${t.status.state} ${t.status.message}`)).toHaveLength(20);
      // Every container on the engine is a running task's, and runs: no stray, none exited.
      const cs = await containers();
      expect(cs.map((x) => `${x.task} ${x.state}`).sort()).toEqual(up.map((t) => `${t.metadata.name} running`).sort());
      return up;
    }, RECOVERY_DEADLINE_MS, 500).catch(async (e) => {
      const ts = await c.tasksOf('eng_app');
      console.error(ts.map((t: Task) => `${t.metadata.name} desired=${t.spec.desiredState} ${t.status.state} ${t.status.message ?? ''} ${t.status.error ?? ''}`).join('\n'));
      console.error(c.agents.get('n2')?.output().slice(-4000));
      throw e;
    });
    const names = new Set(running.map((t) => t.metadata.name));
    // The first four tasks ran on, restarted in place: same address, plumbed again into their new sandboxes.
    for (const [name, address] of addressBefore) {
      const t = running.find((x) => x.metadata.name === name);
      expect(t?.status.taskIP, name).toBe(address);
      expect(await engine.docker(['exec', t!.status.containerId!, 'ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0'])).toContain(` ${address}/`);
    }
    // The tasks that were starting (or waiting to) when the engine died were driven on, not left behind and replaced.
    const all = await c.tasksOf('eng_app');
    const why = (name: string) => all.filter((t) => t.metadata.name === name).map((t) => `${t.spec.desiredState}/${t.status.state} ${t.status.message} ${t.status.error ?? ''}`).join('; ');
    for (const t of [...unfinished, ...caughtStarting]) expect(names, `${t} should run: ${why(t)}`).toContain(t);
  }, 180_000);
});
