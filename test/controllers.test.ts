/**
 * Controllers called directly against a real (in-memory) store with an
 * injected clock: no HTTP, no sleeping through real schedules.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { FakeClock } from '../src/base/clock.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { endpointsKind, nodeKind, serviceKind, taskKind } from '../src/api/kinds.js';
import type { Node, Service, Task } from '../src/api/types.js';
import { Registry } from '../src/server/registry.js';
import { WatchCache } from '../src/server/watchCache.js';
import { Heartbeats } from '../src/server/heartbeats.js';
import { DEFAULT_TIMINGS, type ControllerContext } from '../src/server/controllers/context.js';
import { ServiceController } from '../src/server/controllers/serviceController.js';
import { SchedulerController } from '../src/server/controllers/schedulerController.js';
import { NodeLifecycleController } from '../src/server/controllers/nodeLifecycleController.js';
import { SpreadPlacer } from '../src/scheduler/placement.js';
import { node as nodeFixture, serviceSpec } from './fixtures.js';

const settle = () => new Promise((r) => setTimeout(r, 20));

describe('controllers against a store with a fake clock', () => {
  let clock: FakeClock;
  let store: MemoryStore;
  let ctx: ControllerContext;
  let caches: WatchCache[];

  beforeEach(async () => {
    clock = new FakeClock();
    store = new MemoryStore({ clock });
    caches = [new WatchCache(store, nodeKind), new WatchCache(store, serviceKind), new WatchCache(store, taskKind), new WatchCache(store, endpointsKind)];
    for (const c of caches) await c.start();
    ctx = {
      registry: new Registry(store, clock),
      nodes: caches[0]!,
      services: caches[1]!,
      tasks: caches[2]!,
      endpoints: caches[3]!,
      events: new MemoryEventStore({ clock } as never),
      heartbeats: new Heartbeats(clock),
      clock,
      timings: { ...DEFAULT_TIMINGS, heartbeatIntervalMs: 1000 },
      log: pino({ level: 'silent' }),
    };
  });

  afterEach(async () => {
    for (const c of caches) c.stop();
    await store.close();
  });

  const tasks = () => [...ctx.tasks.objects.values()] as unknown as Task[];
  const addNodes = async (names: string[]) => {
    for (const n of names) {
      const f = nodeFixture(n);
      await ctx.registry.create(nodeKind, { metadata: { name: n }, spec: f.spec, status: f.status });
    }
  };

  it('fills every slot, and a rejected slot is retried only after its backoff', async () => {
    const sc = new ServiceController(ctx);
    await ctx.registry.create(serviceKind, { metadata: { name: 'app_web' }, spec: serviceSpec({ replicas: 2, restartPolicy: { condition: 'any', delayMs: 1000, maxDelayMs: 8000, maxAttempts: 0, windowMs: 0 } }), status: {} });
    await settle();
    await sc.reconcile('app_web');
    await settle();
    expect(tasks().map((t) => t.spec.slot).sort()).toEqual([1, 2]);
    expect(tasks().every((t) => t.status.state === 'pending' && t.spec.desiredState === 'running')).toBe(true);

    // Reconciling again with the same state writes nothing new.
    const rev = await store.currentRevision();
    await sc.reconcile('app_web');
    await sc.reconcile('app_web');
    expect(await store.currentRevision()).toBe(rev);

    // The agent reports slot 1 rejected.
    const t1 = tasks().find((t) => t.spec.slot === 1)!;
    await ctx.registry.updateStatus(taskKind, [{ name: t1.metadata.name, status: { ...t1.status, state: 'rejected', error: 'No such image', timestamp: new Date(clock.now()).toISOString() } }]);
    await settle();
    await sc.reconcile('app_web');
    await settle();
    await sc.reconcile('app_web');
    await settle();
    expect(tasks().filter((t) => t.spec.slot === 1)).toHaveLength(1);
    clock.advance(999);
    await sc.reconcile('app_web');
    await settle();
    expect(tasks().filter((t) => t.spec.slot === 1)).toHaveLength(1);
    clock.advance(1);
    await sc.reconcile('app_web');
    await settle();
    const slot1 = tasks().filter((t) => t.spec.slot === 1);
    expect(slot1).toHaveLength(2);
    expect(slot1.find((t) => t.metadata.name !== t1.metadata.name)!.metadata.labels['baton.attempt']).toBe('2');
    sc.stop();
  });

  it('removes a finished job once its ttlAfterFinishedMs has passed, and not before', async () => {
    const sc = new ServiceController(ctx);
    await ctx.registry.create(serviceKind, { metadata: { name: 'app_once' }, spec: serviceSpec({ shortName: 'once', mode: 'replicated-job', replicas: 1, job: { completions: 1, parallelism: 1, backoffLimit: 0, ttlAfterFinishedMs: 5000 }, restartPolicy: { condition: 'none', delayMs: 0, maxDelayMs: 0, maxAttempts: 0, windowMs: 0 } }), status: {} });
    await settle();
    await sc.reconcile('app_once');
    await settle();
    const [t] = tasks();
    await ctx.registry.updateStatus(taskKind, [{ name: t!.metadata.name, status: { ...t!.status, state: 'complete', exitCode: 0, timestamp: new Date(clock.now()).toISOString() } }]);
    await settle();
    await sc.reconcile('app_once');
    await settle();
    expect((ctx.services.objects.get('app_once') as unknown as Service).status.job?.state).toBe('complete');
    clock.advance(4999);
    await sc.reconcile('app_once');
    await settle();
    expect(ctx.services.objects.has('app_once')).toBe(true);
    clock.advance(1);
    await sc.reconcile('app_once');
    await settle();
    expect(ctx.services.objects.has('app_once')).toBe(false);
    expect(ctx.events.list({ type: 'JobExpired' })).toHaveLength(1);
    sc.stop();
  });

  it('gives each slot of a stateful service its ordinal\'s name and volume, and places an ordered one ordinal by ordinal', async () => {
    const sc = new ServiceController(ctx);
    const sched = new SchedulerController(ctx, new SpreadPlacer());
    await addNodes(['a', 'b']);
    const spec = serviceSpec({ stack: 'db', shortName: 'pg', replicas: 3, stateful: { ordered: true, volumes: [{ name: 'data', target: '/var/lib/pg', readOnly: false }] } });
    await ctx.registry.create(serviceKind, { metadata: { name: 'db_pg' }, spec, status: {} });
    await settle();
    await sc.reconcile('db_pg');
    await settle();
    const bySlot = () => new Map(tasks().map((t) => [t.spec.slot, t]));
    for (const [slot, t] of bySlot()) {
      expect(t.spec.container.hostname).toBe(`pg-${slot - 1}`);
      expect(t.spec.container.mounts).toContainEqual({ type: 'volume', source: `db_data-pg-${slot - 1}`, target: '/var/lib/pg', readOnly: false });
    }
    // Only ordinal 0 is placed; the others say what they wait for.
    await sched.pass().catch(() => {});
    await settle();
    expect(bySlot().get(1)!.spec.nodeName).not.toBe('');
    expect(bySlot().get(2)!.spec.nodeName).toBe('');
    expect(bySlot().get(2)!.status.pendingReason).toBe('waiting for pg-0 to be ready (ordered start)');
    expect(bySlot().get(3)!.status.pendingReason).toBe('waiting for pg-0 to be ready (ordered start)');
    // Ordinal 0 turns ready: ordinal 1 goes, 2 waits for it.
    const t0 = bySlot().get(1)!;
    const now = new Date(clock.now()).toISOString();
    await ctx.registry.updateStatus(taskKind, [{ name: t0.metadata.name, status: { ...t0.status, state: 'running', startedAt: now, readyAt: now, timestamp: now } }]);
    await settle();
    await sched.pass().catch(() => {});
    await settle();
    expect(bySlot().get(2)!.spec.nodeName).not.toBe('');
    expect(bySlot().get(3)!.status.pendingReason).toBe('waiting for pg-1 to be ready (ordered start)');
    sc.stop();
    sched.stop();
  });

  it('places pending tasks on Ready nodes in one batch, and explains when it cannot', async () => {
    const sc = new ServiceController(ctx);
    const sched = new SchedulerController(ctx, new SpreadPlacer());
    await ctx.registry.create(serviceKind, { metadata: { name: 'app_web' }, spec: serviceSpec({ replicas: 4 }), status: {} });
    await settle();
    await sc.reconcile('app_web');
    await settle();
    await sched.pass().catch(() => {});
    await settle();
    expect(tasks().every((t) => t.status.pendingReason === 'no nodes in the cluster')).toBe(true);

    await addNodes(['a', 'b']);
    await settle();
    const before = await store.currentRevision();
    await sched.pass();
    await settle();
    expect(await store.currentRevision()).toBe(before + 1); // one txn for all four placements
    const placed = tasks().map((t) => t.spec.nodeName).sort();
    expect(placed).toEqual(['a', 'a', 'b', 'b']);
    expect(tasks().every((t) => t.status.state === 'assigned')).toBe(true);
  });

  it('creates new tasks already placed (one write each), or pending with why, when the scheduler makes them', async () => {
    const sched = new SchedulerController(ctx, new SpreadPlacer());
    const sc = new ServiceController(ctx, sched);
    await addNodes(['a', 'b']);
    await ctx.registry.create(serviceKind, { metadata: { name: 'app_web' }, spec: serviceSpec({ replicas: 3 }), status: {} });
    // 1 MiB of memory is more than any fixture node has: created pending, with the scheduler's reason.
    await ctx.registry.create(serviceKind, { metadata: { name: 'app_big' }, spec: serviceSpec({ replicas: 1, resources: { reservations: { cpus: 0, memoryBytes: 1024 ** 5 }, limits: { cpus: 0, memoryBytes: 0 } } }), status: {} });
    await settle();
    sched.start();
    const before = await store.currentRevision();
    await Promise.all([sc.reconcile('app_web'), sc.reconcile('app_big')]);
    // The reconciles hand their tasks over without waiting for them to be written.
    for (let i = 0; i < 100 && (tasks().length < 4 || ctx.events.list({ type: 'FailedScheduling' }).length === 0); i++) await settle();
    const web = tasks().filter((t) => t.spec.serviceName === 'app_web');
    expect(web.map((t) => [t.status.state, t.metadata.statusVersion, t.metadata.generation])).toEqual(Array(3).fill(['assigned', '0', 1]));
    expect(web.map((t) => t.spec.nodeName).sort()).toEqual(['a', 'a', 'b']);
    expect(web.every((t) => t.status.scheduling?.ranked.length)).toBe(true);
    const [big] = tasks().filter((t) => t.spec.serviceName === 'app_big');
    expect([big!.status.state, big!.spec.nodeName]).toEqual(['pending', '']);
    expect(big!.status.pendingReason).toMatch(/0\/2 nodes available: 2 insufficient memory/);
    // Both services' tasks are made in one pass and one txn, and none was ever stored unplaced and then placed (statusVersion 0, generation 1).
    expect(new Set(tasks().map((t) => t.metadata.resourceVersion)).size).toBe(1);
    expect(Number(web[0]!.metadata.resourceVersion)).toBeGreaterThan(before);
    expect((ctx.events.list({ type: 'FailedScheduling' }))).toHaveLength(1);
    // A second reconcile makes nothing more; a stopped scheduler refuses new work.
    await sc.reconcile('app_web');
    expect(tasks()).toHaveLength(4);
    sched.stop();
    await expect(sched.submit(web)).rejects.toThrow(/not running/);
    sc.stop();
  });

  it("writes a pass's placements node by node, so each agent hears of its tasks in one burst", async () => {
    const sched = new SchedulerController(ctx, new SpreadPlacer());
    const sc = new ServiceController(ctx, sched);
    await addNodes(['a', 'b', 'c']);
    await ctx.registry.create(serviceKind, { metadata: { name: 'app_web' }, spec: serviceSpec({ replicas: 12 }), status: {} });
    await settle();
    const order: string[] = [];
    const unsub = ctx.tasks.onDidChange((e) => e.type === 'ADDED' && order.push((e.object as unknown as Task).spec.nodeName));
    sched.start();
    await sc.reconcile('app_web');
    for (let i = 0; i < 100 && order.length < 12; i++) await settle();
    unsub();
    // Spread placement takes the nodes in turn (a, b, c, a, …); the writes come out grouped: four of one node, then the next.
    expect(order).toHaveLength(12);
    const runs = order.filter((n, i) => i === 0 || order[i - 1] !== n);
    expect(runs.sort()).toEqual(['a', 'b', 'c']);
    sched.stop();
    sc.stop();
  });

  it('takes tasks handed over while a pass plans into that pass (a stack is one pass, not one per service)', async () => {
    const sched = new SchedulerController(ctx, new SpreadPlacer());
    const sc = new ServiceController(ctx, sched);
    await addNodes(['a', 'b']);
    for (const s of ['app_one', 'app_two', 'app_three']) await ctx.registry.create(serviceKind, { metadata: { name: s }, spec: serviceSpec({ replicas: 2 }), status: {} });
    await settle();
    sched.start();
    await settle();
    const before = await store.currentRevision();
    // The first hand-over starts a pass at once; the next two arrive while it plans.
    await Promise.all(['app_one', 'app_two', 'app_three'].map((s) => sc.reconcile(s)));
    for (let i = 0; i < 100 && tasks().length < 6; i++) await settle();
    expect(tasks().map((t) => t.status.state)).toEqual(Array(6).fill('assigned'));
    // One pass, one txn: every task has the same revision, and the two nodes share the six tasks evenly.
    expect(new Set(tasks().map((t) => t.metadata.resourceVersion))).toEqual(new Set([String(before + 1)]));
    expect(tasks().filter((t) => t.spec.nodeName === 'a')).toHaveLength(3);
    sched.stop();
    sc.stop();
  });

  it('keeps a deploying service counted as its tasks arrive, start and turn ready, and says when it finished', async () => {
    const sched = new SchedulerController(ctx, new SpreadPlacer());
    const sc = new ServiceController(ctx, sched);
    await addNodes(['a', 'b']);
    await ctx.registry.create(serviceKind, { metadata: { name: 'app_web' }, spec: serviceSpec({ replicas: 4 }), status: {} });
    await settle();
    sched.start();
    sc.start();
    const svc = () => ctx.services.objects.get('app_web') as unknown as { status: { desired: number; running: number; ready: number } };
    const until = async (ok: () => boolean) => {
      for (let i = 0; i < 200 && !ok(); i++) {
        clock.advance(500);
        await settle();
      }
      expect(ok()).toBe(true);
    };
    await until(() => tasks().length === 4 && svc().status.desired === 4);
    expect(svc().status).toMatchObject({ running: 0, ready: 0 });
    // Agents report two tasks running, then the other two.
    const report = async (ts: Task[]) => {
      const now = new Date(clock.now()).toISOString();
      await ctx.registry.updateStatus(taskKind, ts.map((t) => ({ name: t.metadata.name, status: { ...t.status, state: 'running', startedAt: now, readyAt: now, timestamp: now } })));
    };
    await report(tasks().slice(0, 2));
    await until(() => svc().status.running === 2 && svc().status.ready === 2);
    expect(ctx.events.list({ type: 'DeployFinished' })).toHaveLength(0);
    await report(tasks().filter((t) => t.status.state !== 'running'));
    await until(() => svc().status.running === 4 && svc().status.ready === 4);
    expect(ctx.events.list({ type: 'DeployFinished' })).toHaveLength(1);
    // A task that ends is not a count-only change: its slot is refilled.
    const [gone] = tasks();
    await ctx.registry.updateStatus(taskKind, [{ name: gone!.metadata.name, status: { ...gone!.status, state: 'failed', error: 'exit 1', timestamp: new Date(clock.now()).toISOString() } }]);
    await until(() => tasks().length === 5 && svc().status.running === 3);
    sched.stop();
    sc.stop();
  });

  it('marks a node NotReady after missed heartbeats and Down later, writing only on change', async () => {
    const lc = new NodeLifecycleController(ctx);
    const f = nodeFixture('a', { state: 'unknown' });
    await ctx.registry.create(nodeKind, { metadata: { name: 'a' }, spec: f.spec, status: f.status });
    await settle();
    ctx.heartbeats.beat('a', { ok: true, version: '20.10' }, 1000);
    await lc.reconcile('a');
    await settle();
    const state = () => (ctx.nodes.objects.get('a') as unknown as Node).status.state;
    expect(state()).toBe('ready');
    const rev = await store.currentRevision();
    clock.advance(1000);
    ctx.heartbeats.beat('a', { ok: true, version: '20.10' }, 1000);
    await lc.reconcile('a');
    expect(await store.currentRevision()).toBe(rev); // a heartbeat is not a revision
    clock.advance(3000);
    await lc.reconcile('a');
    await settle();
    expect(state()).toBe('notready');
    // Time passing while NotReady writes nothing: the message names the last beat, not the age.
    const quiet = await store.currentRevision();
    clock.advance(700);
    await lc.reconcile('a');
    await settle();
    expect(await store.currentRevision()).toBe(quiet);
    clock.advance(DEFAULT_TIMINGS.nodeDownAfterMs);
    await lc.reconcile('a');
    await settle();
    expect(state()).toBe('down');
    ctx.heartbeats.beat('a', { ok: false, version: '20.10', error: 'connect ENOENT' }, 1000);
    await lc.reconcile('a');
    await settle();
    expect(state()).toBe('notready');
    expect((ctx.nodes.objects.get('a') as unknown as Node).status.message).toMatch(/engine unreachable: connect ENOENT/);
    expect(ctx.events.list({ name: 'a' }).map((e) => e.reason)).toEqual(['NodeReady', 'NodeNotReady', 'NodeDown', 'NodeNotReady']);
  });

  it('marks the live tasks of a Down node orphaned, so their service replaces them elsewhere', async () => {
    const lc = new NodeLifecycleController(ctx);
    const sc = new ServiceController(ctx);
    for (const n of ['a', 'b']) {
      const f = nodeFixture(n, { state: 'unknown' });
      await ctx.registry.create(nodeKind, { metadata: { name: n }, spec: f.spec, status: f.status });
    }
    await settle();
    const beat = () => ['a', 'b'].forEach((n) => ctx.heartbeats.beat(n, { ok: true, version: '20.10' }, 1000));
    beat();
    await lc.reconcile('a');
    await lc.reconcile('b');
    await ctx.registry.create(serviceKind, { metadata: { name: 'app_web' }, spec: serviceSpec({ replicas: 2 }), status: {} });
    await settle();
    await sc.reconcile('app_web');
    await settle();
    // Place one task on each node and let them run.
    const mine = () => tasks().filter((t) => t.spec.desiredState === 'running');
    for (const [i, t] of mine().entries()) {
      const [r] = await ctx.registry.updateStatus(taskKind, [{ name: t.metadata.name, status: { ...t.status, state: 'running' } }]);
      expect(r!.ok).toBe(true);
      await ctx.registry.update(taskKind, t.metadata.name, undefined, { spec: { ...t.spec, nodeName: i === 0 ? 'a' : 'b' } });
    }
    await settle();
    // b keeps beating, a goes silent until Down.
    clock.advance(DEFAULT_TIMINGS.nodeDownAfterMs + 1000);
    ctx.heartbeats.beat('b', { ok: true, version: '20.10' }, 1000);
    await lc.reconcile('a');
    await settle();
    const onA = tasks().filter((t) => t.spec.nodeName === 'a');
    expect(onA.map((t) => [t.status.state, t.status.message])).toEqual([['orphaned', expect.stringMatching(/^node a is down \(no heartbeat since/)]]);
    expect(ctx.events.list({ name: 'a' }).map((e) => e.reason)).toContain('TasksOrphaned');
    await sc.reconcile('app_web');
    await settle();
    // The lost task is told to stop (its agent stops it if it comes back) and a new one waits for the scheduler.
    expect(tasks().find((t) => t.metadata.name === onA[0]!.metadata.name)!.spec.desiredState).toBe('shutdown');
    expect(mine().map((t) => t.spec.nodeName || 'pending').sort()).toEqual(['b', 'pending']);
    // Reconciling the Down node again orphans nothing more.
    await lc.reconcile('a');
    await settle();
    const rev = await store.currentRevision();
    await lc.reconcile('a');
    await settle();
    expect(await store.currentRevision()).toBe(rev);
    expect(ctx.events.list({ name: 'a' }).filter((e) => e.reason === 'TasksOrphaned')).toHaveLength(1);
  });
});
