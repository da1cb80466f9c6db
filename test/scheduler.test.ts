import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { reconcileService, refreshCounts, specHash, steadyPlan, GLOBAL_NODE_LABEL } from '../src/server/controllers/serviceReconciler.js';
import { SpreadPlacer, REASON_NOT_READY, REASON_HOST_PORT, REASON_VOLUME, REASON_CPU, REASON_MEMORY, REASON_CONSTRAINT, matchConstraint, allocatedByNode, parseTaint, tolerates, priorityOf, fixedHostPorts } from '../src/scheduler/placement.js';
import { node, service, task } from './fixtures.js';
import type { Service, ServiceSpec, Task } from '../src/api/types.js';

describe('reconcileService (pure)', () => {
  it('creates one task per empty slot with deterministic names', () => {
    const svc = service({ replicas: 3 });
    const a = reconcileService(svc, [], 0);
    const b = reconcileService(svc, [], 0);
    expect(a.create.map((c) => c.slot)).toEqual([1, 2, 3]);
    expect(a.create.map((c) => c.name)).toEqual(b.create.map((c) => c.name));
    expect(new Set(a.create.map((c) => c.name)).size).toBe(3);
  });

  it('does nothing when every slot runs the current spec', () => {
    const svc = service({ replicas: 2 });
    const plan = reconcileService(svc, [task(svc, 1), task(svc, 2)], 0);
    expect(plan.create).toEqual([]);
    expect(plan.setDesired).toEqual([]);
    expect(plan.status).toMatchObject({ desired: 2, running: 2, ready: 2 });
  });

  it('scales down by shutting down the highest slots', () => {
    const svc = service({ replicas: 1 });
    const plan = reconcileService(svc, [task(svc, 1), task(svc, 2), task(svc, 3)], 0);
    expect(plan.setDesired.map((s) => [s.task.spec.slot, s.desiredState])).toEqual([[2, 'shutdown'], [3, 'shutdown']]);
  });

  it('replaces a changed spec stop-first, one slot at a time', () => {
    const old = service({ replicas: 2 });
    const svc = service({ replicas: 2, container: { ...old.spec.container, image: 'new:2' } });
    const tasks = [task(old, 1), task(old, 2)];
    const p1 = reconcileService(svc, tasks, 0);
    expect(p1.create).toEqual([]);
    expect(p1.setDesired).toHaveLength(1);
    expect(p1.setDesired[0]!.task.spec.slot).toBe(1);
    // While slot 1's old task is still stopping, nothing else moves.
    tasks[0] = { ...tasks[0]!, spec: { ...tasks[0]!.spec, desiredState: 'shutdown' } };
    const p2 = reconcileService(svc, tasks, 0);
    expect(p2.create).toEqual([]);
    expect(p2.setDesired).toEqual([]);
    // Once stopped, the new task for slot 1 is created.
    tasks[0] = { ...tasks[0]!, status: { ...tasks[0]!.status, state: 'shutdown' } };
    const p3 = reconcileService(svc, tasks, 0);
    expect(p3.create.map((c) => [c.slot, c.spec.specHash])).toEqual([[1, specHash(svc)]]);
  });

  it('replaces a rejected task after a backoff that grows with consecutive failures', () => {
    const svc = service({ replicas: 1, restartPolicy: { condition: 'any', delayMs: 1000, maxDelayMs: 8000, maxAttempts: 0, windowMs: 0 } });
    const t1 = task(svc, 1, { state: 'rejected', desired: 'shutdown', attempt: 1, at: 0 });
    expect(reconcileService(svc, [t1], 500).requeueAfterMs).toBe(500);
    expect(reconcileService(svc, [t1], 1000).create).toHaveLength(1);
    const t2 = task(svc, 1, { state: 'rejected', desired: 'shutdown', attempt: 2, at: 1000 });
    const p = reconcileService(svc, [t1, t2], 2000);
    expect(p.create).toEqual([]);
    expect(p.requeueAfterMs).toBe(1000); // 2 failures → 2 s after the last
    const again = reconcileService(svc, [t1, t2], 3000);
    expect(again.create[0]!.attempt).toBe(3);
  });

  it("replaces a task lost with its node at once: node loss is not the task's failure", () => {
    const svc = service({ replicas: 1, restartPolicy: { condition: 'any', delayMs: 1000, maxDelayMs: 8000, maxAttempts: 0, windowMs: 0 } });
    const failed = task(svc, 1, { state: 'failed', desired: 'shutdown', attempt: 1, at: 0 });
    const lost = task(svc, 1, { state: 'orphaned', attempt: 2, at: 100, node: 'n2' });
    const p = reconcileService(svc, [failed, lost], 100);
    expect(p.setDesired).toEqual([{ task: lost, desiredState: 'shutdown' }]);
    expect(p.create.map((c) => c.attempt)).toEqual([3]);
  });

  it('asks the scheduler to avoid the nodes where the slot failed past its restart policy', () => {
    const svc = service({ replicas: 2, restartPolicy: { condition: 'any', delayMs: 1, maxDelayMs: 1, maxAttempts: 3, windowMs: 0 } });
    const tasks = [
      task(svc, 1, { state: 'failed', desired: 'shutdown', attempt: 1, node: 'n1' }),
      task(svc, 1, { state: 'failed', desired: 'shutdown', attempt: 2, node: 'n2' }),
      task(svc, 2, { state: 'orphaned', desired: 'shutdown', attempt: 1, node: 'n3' }),
    ];
    const p = reconcileService(svc, tasks, 10_000);
    expect(p.create.map((c) => [c.slot, c.spec.avoidNodes])).toEqual([[1, ['n1', 'n2']], [2, undefined]]);
  });

  it('leaves a slot complete when its policy does not restart', () => {
    const svc = service({ replicas: 1, restartPolicy: { condition: 'on-failure', delayMs: 1, maxDelayMs: 1, maxAttempts: 0, windowMs: 0 } });
    const done = task(svc, 1, { state: 'complete', exitCode: 0 });
    const p = reconcileService(svc, [done], 10);
    expect(p.create).toEqual([]);
    expect(p.setDesired).toEqual([{ task: done, desiredState: 'complete' }]);
  });

  it('keeps five stopped tasks per slot', () => {
    const svc = service({ replicas: 1 });
    const dead = [1, 2, 3, 4, 5, 6, 7].map((a) => task(svc, 1, { state: 'shutdown', desired: 'shutdown', attempt: a, at: a }));
    const p = reconcileService(svc, [...dead, task(svc, 1, { attempt: 8, at: 8 })], 100);
    expect(p.delete.map((t) => t.metadata.labels['baton.attempt'])).toEqual(['1', '2']);
  });

  it('shuts down and then deletes the tasks of a removed service', () => {
    const svc = service({ replicas: 2 });
    const live = task(svc, 1);
    const stopped = task(svc, 2, { state: 'shutdown', desired: 'shutdown' });
    const p = reconcileService(undefined, [live, stopped], 0);
    expect(p.setDesired).toEqual([{ task: live, desiredState: 'shutdown' }]);
    expect(p.delete).toEqual([stopped]);
  });

  it('property: after applying its own plan, every slot up to replicas has exactly one running task', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 12 }), (have, want) => {
        const svc = service({ replicas: want });
        const tasks = Array.from({ length: have }, (_, i) => task(svc, i + 1));
        const plan = reconcileService(svc, tasks, 0);
        const stopped = new Set(plan.setDesired.filter((s) => s.desiredState !== 'running').map((s) => s.task.metadata.name));
        const live = tasks.filter((t) => !stopped.has(t.metadata.name)).map((t) => t.spec.slot);
        const all = [...live, ...plan.create.map((c) => c.slot)].sort((a, b) => a - b);
        expect(all).toEqual(Array.from({ length: want }, (_, i) => i + 1));
      }),
    );
  });
});

describe('a steady service recounts instead of reconciling', () => {
  const x0 = (ts: Task[], t: Task) => ts.some((o) => o.metadata.name === t.metadata.name);
  // Changes that only move counts: a task placed, started, turned ready or unhealthy, restarted in place.
  const look = fc.record({
    state: fc.constantFrom('assigned' as const, 'starting' as const, 'running' as const),
    healthy: fc.constantFrom(undefined, true, false),
    restarts: fc.constantFrom(0, 1),
    readyAgoMs: fc.integer({ min: 0, max: 10_000 }),
    node: fc.constantFrom('n1', 'n2'),
  });
  const apply = (t: Task, l: { state: Task['status']['state']; healthy?: boolean; restarts: number; readyAgoMs: number; node: string }, now: number): Task => ({
    ...t,
    spec: { ...t.spec, nodeName: l.node },
    status: { ...t.status, state: l.state, restartCount: l.restarts, timestamp: new Date(now - l.readyAgoMs).toISOString(), ...(l.healthy === undefined ? {} : { healthy: l.healthy }), ...(l.state === 'running' ? { readyAt: new Date(now - l.readyAgoMs).toISOString() } : {}) },
  });

  it('property: after count-only changes and arrivals of the tasks it waits for, refreshCounts gives the status a full reconcile would', () => {
    const slots = fc.array(fc.record({ made: fc.boolean(), arrives: fc.boolean(), before: look, after: look }), { minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(slots, fc.boolean(), fc.integer({ min: 0, max: 20_000 }), (ss, probe, later) => {
        const svc = service({ replicas: ss.length, ...(probe ? { update: { parallelism: 1, delayMs: 0, failureAction: 'pause', monitorMs: 5000, maxFailureRatio: 0.5, order: 'stop-first' } } : {}) });
        if (probe) svc.spec.container.healthcheck = { test: ['CMD', 'true'], intervalMs: 1000, timeoutMs: 1000, retries: 1, startPeriodMs: 0 };
        const now0 = 1_000_000;
        // Some slots hold their task, the others' tasks are in the scheduler's hands (planned, not written yet).
        const tasks0 = ss.flatMap((x, i) => (x.made ? [apply(task(svc, i + 1), x.before, now0)] : []));
        const plan0 = reconcileService(svc, tasks0, now0);
        const held = new Set(plan0.create.map((c) => c.name));
        expect(plan0.create.map((c) => c.slot)).toEqual(ss.flatMap((x, i) => (x.made ? [] : [i + 1])));
        expect(steadyPlan(svc, plan0)).toBe(held.size === 0);
        expect(steadyPlan(svc, plan0, (n) => held.has(n))).toBe(true);
        // The controller writes the status; then tasks move on, some of those waited for arrive, and time passes.
        const written = { ...svc, status: plan0.status! };
        const now1 = now0 + later;
        const tasks1 = ss.flatMap((x, i) => (x.made ? [apply(tasks0.find((t) => t.spec.slot === i + 1)!, x.after, now1)] : x.arrives ? [apply(task(svc, i + 1), x.after, now1)] : []));
        for (const t of tasks1) if (!x0(tasks0, t)) expect(held.has(t.metadata.name)).toBe(true);
        const full = reconcileService(written, tasks1, now1);
        expect(steadyPlan(written, full, (n) => held.has(n))).toBe(true);
        expect(refreshCounts(written, plan0.status!, tasks1, now1)).toEqual(full.status);
      }),
      { numRuns: 300 },
    );
  });

  it('a service with a slot in transition, an ended task or history is not steady', () => {
    const svc = service({ replicas: 2 });
    expect(steadyPlan(svc, reconcileService(svc, [task(svc, 1), task(svc, 2)], 0))).toBe(true);
    expect(steadyPlan(svc, reconcileService(svc, [task(svc, 1)], 0))).toBe(false);
    expect(steadyPlan(svc, reconcileService(svc, [task(svc, 1), task(svc, 2, { state: 'failed' })], 0))).toBe(false);
    // A slot with history: its live task's rollout bookkeeping (stable or not) can move with a count-only change.
    const history = reconcileService(svc, [task(svc, 1), task(svc, 2), task(svc, 2, { state: 'shutdown', desired: 'shutdown', attempt: 0 })], 10_000);
    expect([history.create, history.setDesired, history.delete, history.requeueAfterMs]).toEqual([[], [], [], undefined]);
    expect(steadyPlan(svc, history)).toBe(false);
    expect(steadyPlan(svc, reconcileService(svc, [task(svc, 1), task(svc, 2, { hash: 'old' })], 0))).toBe(false);
    // A drain: the replacement is created beside the live task (held by the scheduler or not, it is a migration).
    const draining = reconcileService(svc, [task(svc, 1, { node: 'n1' }), task(svc, 2, { node: 'n2' })], 10_000, { draining: new Map([['n1', 0]]), parallel: 1, deadlineMs: 60_000 });
    expect(draining.create.map((c) => c.slot)).toEqual([1]);
    expect(steadyPlan(svc, draining, () => true)).toBe(false);
  });
});

describe('reconcileService drain', () => {
  const drain = (deadlineMs = 60_000, parallel = 2) => ({ draining: new Map([['n1', 0]]), parallel, deadlineMs });
  const ready = (t: Task, node: string): Task => ({ ...t, spec: { ...t.spec, nodeName: node }, status: { ...t.status, state: 'running' } });

  it('starts replacements elsewhere first, a few at a time, and stops nothing yet', () => {
    const svc = service({ replicas: 3 });
    const tasks = [1, 2, 3].map((s) => task(svc, s, { node: 'n1' }));
    const p = reconcileService(svc, tasks, 10, drain());
    expect(p.create.map((c) => [c.slot, c.attempt])).toEqual([[1, 2], [2, 2]]);
    expect(p.setDesired).toEqual([]);
    expect(p.requeueAfterMs).toBe(60_000 - 10);
  });

  it('stops the old task once its replacement is ready, and only then', () => {
    const svc = service({ replicas: 1 });
    const old = task(svc, 1, { node: 'n1' });
    const fresh = task(svc, 1, { node: 'n2', attempt: 2, state: 'starting' });
    expect(reconcileService(svc, [old, fresh], 10, drain()).setDesired).toEqual([]);
    const p = reconcileService(svc, [old, { ...fresh, status: { ...fresh.status, state: 'running' } }], 10, drain());
    expect(p.setDesired).toEqual([{ task: old, desiredState: 'shutdown' }]);
  });

  it('stops the old task at the deadline even if its replacement is not ready', () => {
    const svc = service({ replicas: 1 });
    const old = task(svc, 1, { node: 'n1' });
    const pending = task(svc, 1, { node: '', attempt: 2, state: 'pending' });
    expect(reconcileService(svc, [old, pending], 999, drain(1000)).requeueAfterMs).toBe(1);
    expect(reconcileService(svc, [old, pending], 1000, drain(1000)).setDesired).toEqual([{ task: old, desiredState: 'shutdown' }]);
  });

  it('retires a failed replacement, keeps the old task serving, and retries after a backoff', () => {
    const svc = service({ replicas: 1, restartPolicy: { condition: 'any', delayMs: 1000, maxDelayMs: 8000, maxAttempts: 0, windowMs: 0 } });
    const old = task(svc, 1, { node: 'n1' });
    const failed = task(svc, 1, { node: 'n2', attempt: 2, state: 'failed', at: 100 });
    const p = reconcileService(svc, [old, failed], 200, drain());
    expect(p.setDesired).toEqual([{ task: failed, desiredState: 'shutdown' }]);
    const retired = { ...failed, spec: { ...failed.spec, desiredState: 'shutdown' as const } };
    expect(reconcileService(svc, [old, retired], 500, drain()).create).toEqual([]);
    expect(reconcileService(svc, [old, retired], 1100, drain()).create.map((c) => c.attempt)).toEqual([3]);
  });

  it('holds a task past the drain deadline while stopping it would break the disruption budget, and says why', () => {
    const svc = (budget: ServiceSpec['disruptionBudget']) => service({ replicas: 2, disruptionBudget: budget });
    const at = (s: Service) => {
      const old = task(s, 1, { node: 'n1' });
      const other = task(s, 2, { node: 'n2' });
      const pending = task(s, 1, { node: '', attempt: 2, state: 'pending' });
      return { old, tasks: [old, other, pending] };
    };
    const held = svc({ minAvailable: 2 });
    const h = at(held);
    const p = reconcileService(held, h.tasks, 1000, drain(1000));
    expect(p.setDesired).toEqual([]);
    expect(p.requeueAfterMs).toBeGreaterThan(0);
    expect(p.status?.message).toMatch(/^drain of n1 held: stopping app_web\.1\.\w+ before its replacement is ready would break the disruption budget \(minAvailable 2\)$/);
    // 50% of 2 may be unavailable: one task, so it stops.
    const loose = svc({ maxUnavailable: '50%' });
    const l = at(loose);
    expect(reconcileService(loose, l.tasks, 1000, drain(1000)).setDesired).toEqual([{ task: l.old, desiredState: 'shutdown' }]);
  });

  it('starts the new task first in a stop-first update while the disruption budget allows no ready task to stop', () => {
    const stopFirst = { parallelism: 1, delayMs: 0, failureAction: 'pause' as const, monitorMs: 0, maxFailureRatio: 0, order: 'stop-first' as const };
    const plan = (budget: ServiceSpec['disruptionBudget']) => {
      const s = service({ replicas: 2, update: stopFirst, disruptionBudget: budget });
      return reconcileService(s, [task(s, 1, { node: 'n1', hash: 'old' }), task(s, 2, { node: 'n2', hash: 'old' })], 10);
    };
    const strict = plan({ minAvailable: '100%' });
    expect(strict.setDesired).toEqual([]);
    expect(strict.create.map((c) => c.slot)).toEqual([1]);
    const loose = plan({ maxUnavailable: 1 });
    expect(loose.setDesired.map((x) => [x.task.spec.slot, x.desiredState])).toEqual([[1, 'shutdown']]);
    expect(loose.create).toEqual([]);
  });

  it('marks a rollout that moves no slot forward within its progress deadline stalled, and goes on', () => {
    const s = service({ replicas: 1, update: { parallelism: 1, delayMs: 0, failureAction: 'pause', monitorMs: 0, maxFailureRatio: 0, order: 'start-first', progressDeadlineMs: 1000 } });
    const tasks = [task(s, 1, { node: 'n1', hash: 'old' }), task(s, 1, { node: 'n2', attempt: 2, state: 'starting' })];
    const first = reconcileService(s, tasks, 10);
    expect(first.status?.rollout).toMatchObject({ state: 'progressing', progressAt: new Date(10).toISOString() });
    expect(first.status?.rollout?.stalled).toBeUndefined();
    expect(first.requeueAfterMs).toBe(1000);
    const later = { ...s, status: first.status! };
    const stalled = reconcileService(later, tasks, 1010);
    expect(stalled.status?.rollout).toMatchObject({ state: 'progressing', stalled: true, message: 'no slot moved forward for 1 s (progress deadline)', progressAt: new Date(10).toISOString() });
  });

  it('property: during a drain the ready count never drops below replicas before the deadline', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3 }), fc.array(fc.boolean(), { minLength: 1, maxLength: 60 }), (replicas, parallel, coin) => {
        const svc = service({ replicas });
        let tasks: Task[] = Array.from({ length: replicas }, (_, i) => task(svc, i + 1, { node: 'n1' }));
        const st = drain(1e9, parallel);
        let i = 0;
        for (let step = 0; step < 200; step++) {
          const p = reconcileService(svc, tasks, step, st);
          // Apply the plan: creations land on n2 as starting, shutdowns stop at once.
          const down = new Map(p.setDesired.map((s) => [s.task.metadata.name, s.desiredState]));
          tasks = tasks.map((t) => (down.has(t.metadata.name) ? { ...t, spec: { ...t.spec, desiredState: down.get(t.metadata.name)! }, status: { ...t.status, state: 'shutdown' as const } } : t));
          for (const c of p.create) {
            const t = task(svc, c.slot, { node: 'n2', attempt: c.attempt, state: 'starting', at: step });
            tasks.push(t);
          }
          // Some starting replacements become ready.
          tasks = tasks.map((t) => (t.status.state === 'starting' && coin[i++ % coin.length] ? ready(t, 'n2') : t));
          const readyNow = tasks.filter((t) => t.spec.desiredState === 'running' && t.status.state === 'running').length;
          expect(readyNow).toBeGreaterThanOrEqual(replicas);
          if (!coin.includes(true)) break;
        }
        if (coin.includes(true)) {
          // Eventually everything runs on n2, one per slot.
          const live = tasks.filter((t) => t.spec.desiredState === 'running');
          expect(live.every((t) => t.spec.nodeName === 'n2')).toBe(true);
          expect(live.map((t) => t.spec.slot).sort((a, b) => a - b)).toEqual(Array.from({ length: replicas }, (_, k) => k + 1));
        }
      }),
    );
  });
});

describe('reconcileService: global services', () => {
  const gsvc = (constraints: string[] = []) => service({ mode: 'global', replicas: 0, placement: { constraints } });
  const gtask = (svc: ReturnType<typeof service>, nodeName: string, over: Parameters<typeof task>[2] = {}) => {
    const t = task(svc, 0, { node: nodeName, ...over });
    t.metadata.labels[GLOBAL_NODE_LABEL] = nodeName;
    t.metadata.name = `${svc.metadata.name}.${nodeName}.test`;
    return t;
  };

  it('wants one task on every eligible node, pinned to it, and none on paused, draining, Down or unmatched nodes', () => {
    const svc = gsvc(['node.labels.zone != c']);
    const nodes = [node('a'), node('b', {}, 'pause'), node('c', {}, 'drain'), node('d', { state: 'down' }), node('e', { state: 'notready' }), node('f', {}, 'active', { zone: 'c' })];
    const p = reconcileService(svc, [], 0, undefined, nodes);
    expect(p.create.map((c) => c.node)).toEqual(['a', 'e']);
    expect(p.create[0]!.spec.placement.constraints).toEqual(['node.labels.zone != c', 'node.name == a']);
    expect(new Set(p.create.map((c) => c.name)).size).toBe(2);
    expect(p.status).toMatchObject({ desired: 2 });
  });

  it('follows nodes: a new node gets a task, a node that leaves or drains loses its task', () => {
    const svc = gsvc();
    const tasks = [gtask(svc, 'a'), gtask(svc, 'b')];
    const grown = reconcileService(svc, tasks, 0, undefined, [node('a'), node('b'), node('c')]);
    expect(grown.create.map((c) => c.node)).toEqual(['c']);
    expect(grown.setDesired).toEqual([]);
    const shrunk = reconcileService(svc, tasks, 0, undefined, [node('a'), node('b', {}, 'drain')]);
    expect(shrunk.create).toEqual([]);
    expect(shrunk.setDesired).toEqual([{ task: tasks[1], desiredState: 'shutdown' }]);
    expect(reconcileService(svc, tasks, 0, undefined, [node('a')]).setDesired.map((s) => s.task.metadata.labels[GLOBAL_NODE_LABEL])).toEqual(['b']);
  });

  it('property: exactly one live task per eligible node after applying its own plan', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ avail: fc.constantFrom('active', 'pause', 'drain'), state: fc.constantFrom('ready', 'notready', 'down'), zone: fc.constantFrom('a', 'b') }), { maxLength: 10 }), fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 10 }), (ns, have) => {
        const svc = gsvc(['node.labels.zone == a']);
        const nodes = ns.map((n, i) => node(`n${i}`, { state: n.state as 'ready' }, n.avail as 'active', { zone: n.zone }));
        const tasks = [...new Set(have)].filter((i) => i < nodes.length).map((i) => gtask(svc, `n${i}`));
        const plan = reconcileService(svc, tasks, 0, undefined, nodes);
        const stopped = new Set(plan.setDesired.map((s) => s.task.metadata.name));
        const live = [...tasks.filter((t) => !stopped.has(t.metadata.name)).map((t) => t.metadata.labels[GLOBAL_NODE_LABEL]), ...plan.create.map((c) => c.node)].sort();
        const eligible = nodes.filter((n) => n.spec.availability === 'active' && n.status.state !== 'down' && n.metadata.labels.zone === 'a').map((n) => n.metadata.name).sort();
        expect(live).toEqual(eligible);
      }),
    );
  });
});

describe('SpreadPlacer', () => {
  it('spreads a service across ready nodes', () => {
    const svc = service({ replicas: 4 });
    const pending = [1, 2, 3, 4].map((s) => task(svc, s, { node: '', state: 'pending' }));
    const plan = new SpreadPlacer().place(pending, [node('a'), node('b')], pending);
    expect(plan.placed.map((p) => p.node.metadata.name).sort()).toEqual(['a', 'a', 'b', 'b']);
  });

  it('explains why a task cannot be placed', () => {
    const svc = service({ replicas: 1, resources: { reservations: { cpus: 4, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } } });
    const pending = [task(svc, 1, { node: '', state: 'pending' })];
    const plan = new SpreadPlacer().place(pending, [node('a'), node('b', { state: 'notready' })], pending);
    expect(plan.placed).toEqual([]);
    expect(plan.unplaced[0]!.reason).toBe(`0/2 nodes available: 1 insufficient cpu (need 4, most free 2), 1 ${REASON_NOT_READY}`);
  });

  it('counts reservations of tasks already placed', () => {
    const svc = service({ replicas: 3, resources: { reservations: { cpus: 1, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } } });
    const placed = [task(svc, 1, { node: 'a' }), task(svc, 2, { node: 'a' })];
    const pending = [task(svc, 3, { node: '', state: 'pending' })];
    const plan = new SpreadPlacer().place(pending, [node('a')], [...placed, ...pending]);
    expect(plan.unplaced).toHaveLength(1);
  });

  it('ranks the nodes a task should avoid (failure penalty) last, but still uses them when nothing else fits', () => {
    const svc = service({ replicas: 3 });
    const busy = [task(svc, 2, { node: 'b' }), task(svc, 3, { node: 'b' })];
    const retry = task(svc, 1, { node: '', state: 'pending', attempt: 2 });
    retry.spec.avoidNodes = ['a'];
    // a is emptier, but the slot failed there.
    for (const heap of [true, false]) {
      const plan = new SpreadPlacer({ heap }).place([retry], [node('a'), node('b')], [...busy, retry]);
      expect(plan.placed.map((p) => p.node.metadata.name)).toEqual(['b']);
      expect(plan.placed[0]!.decision.ranked.map((r) => [r.node, r.keys.avoid ?? 0])).toEqual([['b', 0], ['a', 1]]);
    }
    expect(new SpreadPlacer().place([retry], [node('a')], [retry]).placed.map((p) => p.node.metadata.name)).toEqual(['a']);
  });

  it('honours constraints and availability', () => {
    const svc = service({ replicas: 1, placement: { constraints: ['node.labels.zone == b'] } });
    const pending = [task(svc, 1, { node: '', state: 'pending' })];
    const nodes = [node('a', {}, 'active', { zone: 'a' }), node('b', {}, 'active', { zone: 'b' }), node('c', {}, 'drain', { zone: 'b' })];
    expect(new SpreadPlacer().place(pending, nodes, pending).placed[0]!.node.metadata.name).toBe('b');
    expect(matchConstraint('node.labels.zone != a', nodes[0]!)).toBe(false);
  });
});

describe('SpreadPlacer: constraints, preferences, replicas per node, strategies', () => {
  const pend = (svc: ReturnType<typeof service>, n: number, from = 1) => Array.from({ length: n }, (_, i) => task(svc, from + i, { node: '', state: 'pending' }));
  const where = (plan: ReturnType<SpreadPlacer['place']>) => plan.placed.map((p) => p.node.metadata.name);

  it.each([
    ['node.labels.zone == a', true],
    ['node.labels.zone != a', false],
    ['node.labels.zone==b', false],
    ['node.labels.missing != x', true],
    ['node.hostname == a', true],
    ['node.name == a', true],
    ['node.role == worker', true],
    ['node.role == manager', false],
    ['node.platform.os == linux', true],
    ['node.platform.arch == x86_64', true],
    ['node.platform.arch != x86_64', false],
    ['nonsense', false],
  ])('constraint %s on a node in zone a → %s', (expr, want) => {
    const n = node('a', { platform: { os: 'linux', arch: 'x86_64' } }, 'active', { zone: 'a' });
    expect(matchConstraint(expr, n)).toBe(want);
  });

  it('places node.role == manager on the nodes that run a server only, and != manager on the others', () => {
    // Alike in all but role: the role is part of a node's class, or one verdict would be cached for all three.
    const nodes = [node('up', { role: 'manager' }), node('w1'), node('w2', { role: 'worker' })];
    expect(['up', 'w1', 'w2'].map((n) => matchConstraint('node.role == manager', nodes.find((x) => x.metadata.name === n)!))).toEqual([true, false, false]);
    const mgr = service({ replicas: 3, placement: { constraints: ['node.role == manager'] } }, 'app_mgr');
    const wrk = service({ replicas: 4, placement: { constraints: ['node.role != manager'] } }, 'app_wrk');
    for (const heap of [true, false]) {
      const plan = new SpreadPlacer({ heap }).place([...pend(mgr, 3), ...pend(wrk, 4)], nodes, []);
      expect(plan.placed.filter((p) => p.task.spec.serviceName === 'app_mgr').map((p) => p.node.metadata.name)).toEqual(['up', 'up', 'up']);
      expect(new Set(plan.placed.filter((p) => p.task.spec.serviceName === 'app_wrk').map((p) => p.node.metadata.name))).toEqual(new Set(['w1', 'w2']));
    }
    const only = new SpreadPlacer().place(pend(mgr, 1), [node('w1'), node('w2')], []);
    expect(only.unplaced[0]!.reason).toBe('0/2 nodes available: 2 constraint not satisfied (node.role==manager)');
  });

  it('names the failing constraint in the pending reason', () => {
    const svc = service({ replicas: 1, placement: { constraints: ['node.labels.zone == eu'] } });
    const plan = new SpreadPlacer().place(pend(svc, 1), [node('a', {}, 'active', { zone: 'us' }), node('b', {}, 'active', { zone: 'us' })], []);
    expect(plan.unplaced[0]!.reason).toBe('0/2 nodes available: 2 constraint not satisfied (node.labels.zone==eu)');
  });

  it('caps replicas per node and says so when the cap leaves no room', () => {
    const svc = service({ replicas: 5, placement: { constraints: [], maxReplicasPerNode: 2 } });
    const plan = new SpreadPlacer().place(pend(svc, 5), [node('a'), node('b')], []);
    expect(where(plan).sort()).toEqual(['a', 'a', 'b', 'b']);
    expect(plan.unplaced[0]!.reason).toBe('0/2 nodes available: 2 max replicas per node reached (2)');
  });

  it('spreads over the values of a label first (a node without it is its own group), then over nodes', () => {
    const svc = service({ replicas: 6, placement: { constraints: [], preferences: ['node.labels.zone'] } });
    // Zone a has three nodes, zone b one, and one node has no zone.
    const nodes = [node('a1', {}, 'active', { zone: 'a' }), node('a2', {}, 'active', { zone: 'a' }), node('a3', {}, 'active', { zone: 'a' }), node('b1', {}, 'active', { zone: 'b' }), node('x')];
    const plan = new SpreadPlacer().place(pend(svc, 6), nodes, []);
    const zone = (n: string) => (n.startsWith('a') ? 'a' : n.startsWith('b') ? 'b' : '-');
    const perZone = new Map<string, number>();
    for (const n of where(plan)) perZone.set(zone(n), (perZone.get(zone(n)) ?? 0) + 1);
    expect(Object.fromEntries(perZone)).toEqual({ a: 2, b: 2, '-': 2 });
    // Inside zone a the two tasks are on two different nodes.
    expect(new Set(where(plan).filter((n) => n.startsWith('a'))).size).toBe(2);
  });

  it.each(['node.id', 'node.name', 'node.hostname'])('spreads over %s one task per node, round robin, even where binpack would fill one node', (pref) => {
    const res = { reservations: { cpus: 0.1, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } };
    const nodes = [node('a'), node('b'), node('c'), node('d')];
    const count = (names: string[]) => Object.fromEntries(['a', 'b', 'c', 'd'].map((n) => [n, names.filter((x) => x === n).length]));
    for (const strategy of ['spread', 'binpack'] as const) {
      const svc = service({ replicas: 10, resources: res, placement: { constraints: [], preferences: [pref], strategy } });
      // Two tasks already run on a: the others catch up first, then all take turns.
      const running = [task(svc, 11, { node: 'a' }), task(svc, 12, { node: 'a' })];
      for (const heap of [true, false]) {
        const plan = new SpreadPlacer({ heap }).place(pend(svc, 10), nodes, running);
        expect(plan.unplaced).toEqual([]);
        expect(count(where(plan)), `${strategy}, heap ${heap}`).toEqual({ a: 1, b: 3, c: 3, d: 3 });
        // Round robin: every prefix of the plan is within one task per node (counting those already running).
        const seen = new Map([['a', 2]]);
        for (const n of where(plan)) {
          seen.set(n, (seen.get(n) ?? 0) + 1);
          const counts = ['a', 'b', 'c', 'd'].map((x) => seen.get(x) ?? 0);
          if (Math.min(...counts) >= 2) expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
        }
      }
    }
    // Without the preference, binpack puts every task on the node it fills first.
    const packed = service({ replicas: 10, resources: res, placement: { constraints: [], strategy: 'binpack' } });
    expect(new Set(where(new SpreadPlacer().place(pend(packed, 10), nodes, [])))).toEqual(new Set(['a']));
  });

  it('spreads over node.hostname by machine when agents share one', () => {
    const svc = service({ replicas: 6, placement: { constraints: [], preferences: ['node.hostname'] } });
    // a1 and a2 are two agents on machine h1; b1 is alone on h2: each machine gets half.
    const nodes = [node('a1', { hostname: 'h1' }), node('a2', { hostname: 'h1' }), node('b1', { hostname: 'h2' })];
    for (const heap of [true, false]) {
      const names = where(new SpreadPlacer({ heap }).place(pend(svc, 6), nodes, []));
      expect(names.filter((n) => n === 'b1')).toHaveLength(3);
      expect([names.filter((n) => n === 'a1').length, names.filter((n) => n === 'a2').length].sort()).toEqual([1, 2]);
    }
  });

  it('binpack fills the most allocated node first; spread the least', () => {
    const res = { reservations: { cpus: 0.5, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } };
    const other = service({ replicas: 1, resources: res }, 'app_other');
    const busy = task(other, 1, { node: 'a' });
    const bp = service({ replicas: 2, resources: res, placement: { constraints: [], strategy: 'binpack' } });
    expect(where(new SpreadPlacer().place(pend(bp, 2), [node('a'), node('b')], [busy]))).toEqual(['a', 'a']);
    const sp = service({ replicas: 2, resources: res });
    expect(where(new SpreadPlacer().place(pend(sp, 2), [node('a'), node('b')], [busy])).sort()).toEqual(['a', 'b']);
    expect(where(new SpreadPlacer().place(pend(sp, 1), [node('a'), node('b')], [busy]))).toEqual(['b']);
  });

  it('property: no node is over-committed, constraints and caps always hold, and zones stay within ±1', () => {
    const arb = fc.record({
      nodes: fc.array(fc.record({ cpus: fc.integer({ min: 1, max: 8 }), zone: fc.constantFrom('a', 'b', 'c'), ready: fc.boolean() }), { minLength: 1, maxLength: 12 }),
      services: fc.array(
        fc.record({
          replicas: fc.integer({ min: 1, max: 12 }),
          cpus: fc.constantFrom(0, 0.5, 1, 2),
          constraint: fc.constantFrom(undefined, 'node.labels.zone != c', 'node.labels.zone == a'),
          spread: fc.boolean(),
          cap: fc.constantFrom(undefined, 1, 2),
          binpack: fc.boolean(),
        }),
        { minLength: 1, maxLength: 4 },
      ),
    });
    fc.assert(
      fc.property(arb, ({ nodes: ns, services }) => {
        const nodes = ns.map((n, i) => node(`n${i}`, { capacity: { cpus: n.cpus, memoryBytes: 2 ** 34 }, state: n.ready ? 'ready' : 'notready' }, 'active', { zone: n.zone }));
        const pending = services.flatMap((sv, i) =>
          pend(
            service(
              {
                replicas: sv.replicas,
                resources: { reservations: { cpus: sv.cpus, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } },
                placement: { constraints: sv.constraint ? [sv.constraint] : [], ...(sv.spread ? { preferences: ['node.labels.zone'] } : {}), ...(sv.cap ? { maxReplicasPerNode: sv.cap } : {}), ...(sv.binpack ? { strategy: 'binpack' as const } : {}) },
              },
              `app_s${i}`,
            ),
            sv.replicas,
          ),
        );
        const plan = new SpreadPlacer().place(pending, nodes, []);
        expect(plan.placed.length + plan.unplaced.length).toBe(pending.length);
        const placed = plan.placed.map((p) => ({ ...p.task, spec: { ...p.task.spec, nodeName: p.node.metadata.name }, status: { ...p.task.status, state: 'assigned' as const } }));
        for (const [name, a] of allocatedByNode(placed)) {
          const n = nodes.find((x) => x.metadata.name === name)!;
          expect(n.status.state).toBe('ready');
          expect(a.cpus).toBeLessThanOrEqual(n.status.capacity.cpus + 1e-9);
        }
        for (const p of plan.placed) for (const c of p.task.spec.placement.constraints) expect(matchConstraint(c, p.node)).toBe(true);
        services.forEach((sv, i) => {
          const mine = plan.placed.filter((p) => p.task.spec.serviceName === `app_s${i}`);
          const perNode = new Map<string, number>();
          for (const p of mine) perNode.set(p.node.metadata.name, (perNode.get(p.node.metadata.name) ?? 0) + 1);
          if (sv.cap) for (const c of perNode.values()) expect(c).toBeLessThanOrEqual(sv.cap);
          // Spread within ±1 across zones, when resources are not the limit (no cpus, no cap) and nothing was left over.
          if (sv.spread && sv.cpus === 0 && !sv.cap && mine.length === sv.replicas) {
            const eligible = new Set(nodes.filter((n) => n.status.state === 'ready' && (!sv.constraint || matchConstraint(sv.constraint, n))).map((n) => n.metadata.labels.zone));
            const perZone = [...eligible].map((z) => mine.filter((p) => p.node.metadata.labels.zone === z).length);
            expect(Math.max(...perZone) - Math.min(...perZone)).toBeLessThanOrEqual(1);
          }
        });
      }),
      { numRuns: 300 },
    );
  });
});

describe('taints and tolerations', () => {
  it.each([
    ['gpu=true:NoSchedule', { key: 'gpu', value: 'true', effect: 'NoSchedule' }],
    ['dedicated:PreferNoSchedule', { key: 'dedicated', effect: 'PreferNoSchedule' }],
    ['example.com/maint=x:NoExecute', { key: 'example.com/maint', value: 'x', effect: 'NoExecute' }],
    ['gpu=true', 'taint "gpu=true" must look like key=value:Effect or key:Effect (Effect: NoSchedule, PreferNoSchedule, NoExecute)'],
    ['gpu:Never', 'taint "gpu:Never": effect must be one of NoSchedule, PreferNoSchedule, NoExecute, got Never'],
  ])('parses %s', (text, want) => expect(parseTaint(text)).toEqual(want));

  it.each([
    [[{ key: 'gpu', operator: 'Equal', value: 'true' }], true],
    [[{ key: 'gpu', operator: 'Equal', value: 'false' }], false],
    [[{ key: 'gpu', operator: 'Exists' }], true],
    [[{ key: 'gpu', operator: 'Exists', effect: 'NoExecute' }], false],
    [[{ operator: 'Exists' }], true],
    [[], false],
  ] as const)('tolerations %j on gpu=true:NoSchedule → %s', (tols, want) => {
    expect(tolerates(tols as never, { key: 'gpu', value: 'true', effect: 'NoSchedule' })).toBe(want);
  });

  const tainted = (name: string, ...taints: string[]) => {
    const n = node(name);
    n.spec.taints = taints.map((t) => parseTaint(t) as never);
    return n;
  };

  it('keeps a task off a NoSchedule node unless it tolerates it, and prefers nodes without PreferNoSchedule', () => {
    const plain = service({ replicas: 1 });
    const p1 = new SpreadPlacer().place([task(plain, 1, { node: '', state: 'pending' })], [tainted('a', 'gpu=true:NoSchedule')], []);
    expect(p1.unplaced[0]!.reason).toBe('0/1 nodes available: 1 untolerated taint (gpu=true:NoSchedule)');
    const tol = service({ replicas: 1, placement: { constraints: [], tolerations: [{ key: 'gpu', operator: 'Exists' }] } });
    expect(new SpreadPlacer().place([task(tol, 1, { node: '', state: 'pending' })], [tainted('a', 'gpu=true:NoSchedule')], []).placed[0]!.node.metadata.name).toBe('a');
    // PreferNoSchedule: avoided while another node fits, used when none does.
    const svc = service({ replicas: 3 });
    const pend = [1, 2, 3].map((i) => task(svc, i, { node: '', state: 'pending' }));
    const placed = new SpreadPlacer().place(pend, [tainted('a', 'old:PreferNoSchedule'), node('b')], []).placed.map((p) => p.node.metadata.name);
    expect(placed).toEqual(['b', 'b', 'b']);
    expect(new SpreadPlacer().place(pend.slice(0, 1), [tainted('a', 'old:PreferNoSchedule')], []).placed[0]!.node.metadata.name).toBe('a');
  });

  it('evicts a task that does not tolerate its node\'s NoExecute taint, and keeps global services off such nodes', () => {
    const svc = service({ replicas: 2 });
    const tasks = [task(svc, 1, { node: 'a' }), task(svc, 2, { node: 'b' })];
    const noExecute = new Map([['a', [{ key: 'maint', effect: 'NoExecute' as const }]]]);
    const p = reconcileService(svc, tasks, 0, { draining: new Map(), parallel: 2, deadlineMs: 1000, noExecute });
    expect(p.setDesired).toEqual([{ task: tasks[0], desiredState: 'shutdown', reason: 'evicted: untolerated taint maint:NoExecute' }]);
    const tol = service({ replicas: 1, placement: { constraints: [], tolerations: [{ key: 'maint', operator: 'Exists', effect: 'NoExecute' }] } });
    expect(reconcileService(tol, [task(tol, 1, { node: 'a' })], 0, { draining: new Map(), parallel: 2, deadlineMs: 1000, noExecute }).setDesired).toEqual([]);
    const g = service({ mode: 'global', replicas: 0 });
    expect(reconcileService(g, [], 0, undefined, [tainted('a', 'maint:NoExecute'), tainted('b', 'x=1:PreferNoSchedule'), node('c')]).create.map((c) => c.node)).toEqual(['b', 'c']);
  });
});

describe('affinity and anti-affinity between services', () => {
  const db = service({ replicas: 1 }, 'app_db');
  const onA = task(db, 1, { node: 'a' });

  it('required affinity places next to the other service; required anti-affinity keeps away (self: one per node)', () => {
    const near = service({ replicas: 2, placement: { constraints: [], affinity: [{ service: 'app_db', required: true }] } }, 'app_api');
    const plan = new SpreadPlacer().place([1, 2].map((i) => task(near, i, { node: '', state: 'pending' })), [node('a'), node('b')], [onA]);
    expect(plan.placed.map((p) => p.node.metadata.name)).toEqual(['a', 'a']);
    const far = service({ replicas: 1, placement: { constraints: [], antiAffinity: [{ service: 'app_db', required: true }] } }, 'app_cache');
    expect(new SpreadPlacer().place([task(far, 1, { node: '', state: 'pending' })], [node('a'), node('b')], [onA]).placed[0]!.node.metadata.name).toBe('b');
    const solo = service({ replicas: 3, placement: { constraints: [], antiAffinity: [{ service: 'app_solo', required: true }] } }, 'app_solo');
    const p = new SpreadPlacer().place([1, 2, 3].map((i) => task(solo, i, { node: '', state: 'pending' })), [node('a'), node('b')], []);
    expect(p.placed.map((x) => x.node.metadata.name).sort()).toEqual(['a', 'b']);
    expect(p.unplaced[0]!.reason).toBe('0/2 nodes available: 2 anti-affinity not satisfied (app_solo runs here)');
    const lonely = new SpreadPlacer().place([task(near, 1, { node: '', state: 'pending' })], [node('b')], [onA]);
    expect(lonely.unplaced[0]!.reason).toBe('0/1 nodes available: 1 affinity not satisfied (no app_db task here)');
  });

  it('preferred affinity and anti-affinity only rank', () => {
    const near = service({ replicas: 1, placement: { constraints: [], affinity: [{ service: 'app_db', required: false }] } }, 'app_api');
    expect(new SpreadPlacer().place([task(near, 1, { node: '', state: 'pending' })], [node('a'), node('b')], [onA]).placed[0]!.node.metadata.name).toBe('a');
    expect(new SpreadPlacer().place([task(near, 1, { node: '', state: 'pending' })], [node('b')], [onA]).placed[0]!.node.metadata.name).toBe('b');
    const far = service({ replicas: 1, placement: { constraints: [], antiAffinity: [{ service: 'app_db', required: false }] } }, 'app_cache');
    expect(new SpreadPlacer().place([task(far, 1, { node: '', state: 'pending' })], [node('a'), node('b')], [onA]).placed[0]!.node.metadata.name).toBe('b');
  });
});

describe('priority and preemption', () => {
  const res = (cpus: number) => ({ reservations: { cpus, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } });
  const svcP = (name: string, priority: number, cpus: number) => service({ replicas: 10, resources: res(cpus), placement: { constraints: [], ...(priority ? { priority } : {}) } }, name);
  const running = (svc: ReturnType<typeof service>, slot: number, node: string) => task(svc, slot, { node });
  const pending = (svc: ReturnType<typeof service>, slot = 1) => task(svc, slot, { node: '', state: 'pending' });

  it('places higher priorities first', () => {
    const lo = svcP('app_lo', 0, 2);
    const hi = svcP('app_hi', 10, 2);
    const plan = new SpreadPlacer().place([pending(lo), pending(hi)], [node('a')], []);
    expect(plan.placed.map((p) => p.task.spec.serviceName)).toEqual(['app_hi']);
    expect(plan.preemptions).toBeUndefined(); // app_hi was placed first; app_lo (priority 0) never preempts
  });

  it('preempts on the node whose victims have the lowest highest priority, then the fewest, sparing what it can', () => {
    const hi = svcP('app_hi', 100, 1.5);
    const p1 = svcP('app_p1', 1, 1);
    const p5 = svcP('app_p5', 5, 1);
    const p0 = svcP('app_p0', 0, 0.5);
    // a: two priority-5 tasks; b: a priority-1 and a priority-0 (0.5 cpu) task. Both nodes have 2 cpus and are full-ish.
    const tasks = [running(p5, 1, 'a'), running(p5, 2, 'a'), running(p1, 1, 'b'), running(p0, 1, 'b')];
    const plan = new SpreadPlacer().place([pending(hi)], [node('a'), node('b')], tasks);
    expect(plan.placed).toEqual([]);
    // On b, the victims' highest priority is 1 (lower than a's 5); stopping the 1-cpu priority-1 task frees enough,
    // and the priority-0 task stays (0.5 + 1.5 = 2 cpus): the reprieve spares it.
    expect(plan.preemptions!.map((p) => [p.victim.spec.serviceName, p.node])).toEqual([['app_p1', 'b']]);
    expect(plan.unplaced[0]!.reason).toMatch(/; preempting 1 lower-priority task\(s\) on b$/);
  });

  it('never preempts equal or higher priorities, nor when some node fits, and waits for tasks already stopping', () => {
    const hi = svcP('app_hi', 10, 2);
    const same = svcP('app_same', 10, 2);
    expect(new SpreadPlacer().place([pending(hi)], [node('a')], [running(same, 1, 'a')]).preemptions).toBeUndefined();
    const lo = svcP('app_lo', 0, 2);
    expect(new SpreadPlacer().place([pending(hi)], [node('a'), node('b')], [running(lo, 1, 'a')]).preemptions).toBeUndefined();
    const stopping = { ...running(lo, 1, 'a'), spec: { ...running(lo, 1, 'a').spec, desiredState: 'shutdown' as const } };
    const plan = new SpreadPlacer().place([pending(hi)], [node('a')], [stopping]);
    expect(plan.preemptions).toBeUndefined();
    expect(plan.unplaced[0]!.reason).toMatch(/waiting for preempted task\(s\) to stop on a$/);
  });

  it('property: victims are only of lower priority, and only when the task fits nowhere', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ node: fc.integer({ min: 0, max: 3 }), prio: fc.integer({ min: 0, max: 5 }), cpus: fc.constantFrom(0.5, 1, 2) }), { maxLength: 12 }),
        fc.integer({ min: 0, max: 6 }),
        fc.constantFrom(0.5, 1, 2, 3),
        (existing, prio, cpus) => {
          const nodes = [0, 1, 2, 3].map((i) => node(`n${i}`, { capacity: { cpus: 3, memoryBytes: 2 ** 34 } }));
          // Existing tasks that fit their node (drop the rest).
          const used = new Map<number, number>();
          const tasks = existing.flatMap((e, i) => {
            if ((used.get(e.node) ?? 0) + e.cpus > 3) return [];
            used.set(e.node, (used.get(e.node) ?? 0) + e.cpus);
            return [running(svcP(`app_e${i}`, e.prio, e.cpus), 1, `n${e.node}`)];
          });
          const t = pending(svcP('app_new', prio, cpus));
          const fitsSomewhere = [0, 1, 2, 3].some((i) => (used.get(i) ?? 0) + cpus <= 3);
          const plan = new SpreadPlacer().place([t], nodes, tasks);
          if (fitsSomewhere) expect(plan.placed).toHaveLength(1);
          for (const p of plan.preemptions ?? []) expect(priorityOf(p.victim)).toBeLessThan(prio);
          if (fitsSomewhere || prio === 0) expect(plan.preemptions ?? []).toEqual([]);
          // The victims free enough room on their node.
          const byNode = new Map<string, number>();
          for (const p of plan.preemptions ?? []) byNode.set(p.node, (byNode.get(p.node) ?? 0) + p.victim.spec.resources.reservations.cpus);
          for (const [n, freed] of byNode) expect((used.get(Number(n.slice(1))) ?? 0) - freed + cpus).toBeLessThanOrEqual(3 + 1e-9);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('the heap path places exactly as a full scan does, and a pass fed in parts as one fed whole', () => {
  const pend = (svc: ReturnType<typeof service>, n: number) => Array.from({ length: n }, (_, i) => task(svc, i + 1, { node: '', state: 'pending' }));
  it('property: same placements and the same tasks left pending, over random clusters, services and running tasks', () => {
    const arb = fc.record({
      nodes: fc.array(
        fc.record({
          zone: fc.constantFrom('a', 'b', 'c'),
          cpus: fc.constantFrom(0.5, 1, 2, 4),
          memGi: fc.constantFrom(1, 2, 8),
          ready: fc.boolean(),
          soft: fc.boolean(),
          // Agents sharing a machine share a hostname: spreading over it is then by machine, not by node.
          machine: fc.constantFrom(undefined, 'm1', 'm2'),
        }),
        { minLength: 1, maxLength: 9 },
      ),
      services: fc.array(
        fc.record({
          replicas: fc.integer({ min: 1, max: 10 }),
          cpus: fc.constantFrom(0, 0.1, 0.25, 0.5, 1),
          memMi: fc.constantFrom(0, 256, 1024),
          constraint: fc.constantFrom(undefined, 'node.labels.zone != c', 'node.labels.zone == a', 'node.hostname != n0'),
          spread: fc.constantFrom(undefined, 'node.labels.zone', 'node.id', 'node.hostname'),
          cap: fc.constantFrom(undefined, 1, 2),
          binpack: fc.boolean(),
          antiSelf: fc.boolean(),
          port: fc.constantFrom(undefined, 8080, 9090),
          volume: fc.constantFrom(undefined, 'app_data'),
          running: fc.integer({ min: 0, max: 3 }),
          tolerate: fc.boolean(),
        }),
        { minLength: 1, maxLength: 5 },
      ),
      part: fc.integer({ min: 1, max: 7 }),
    });
    fc.assert(
      fc.property(arb, ({ nodes: ns, services: svs, part }) => {
        const nodes = ns.map((n, i) => {
          const nd = node(`n${i}`, { capacity: { cpus: n.cpus, memoryBytes: n.memGi * 1024 ** 3 }, state: n.ready ? 'ready' : 'notready', hostname: n.machine ?? `n${i}` }, 'active', { zone: n.zone });
          if (n.soft) nd.spec.taints = [{ key: 'old', effect: 'PreferNoSchedule' }];
          return nd;
        });
        const running: Task[] = [];
        const pending = svs.flatMap((sv, i) => {
          const svc = service(
            {
              replicas: sv.replicas,
              resources: { reservations: { cpus: sv.cpus, memoryBytes: sv.memMi * 1048576 }, limits: { cpus: 0, memoryBytes: 0 } },
              ports: sv.port ? [{ target: 80, published: sv.port, protocol: 'tcp', mode: 'host' }] : [],
              placement: {
                constraints: sv.constraint ? [sv.constraint] : [],
                ...(sv.spread ? { preferences: [sv.spread] } : {}),
                ...(sv.cap ? { maxReplicasPerNode: sv.cap } : {}),
                ...(sv.binpack ? { strategy: 'binpack' as const } : {}),
                ...(sv.antiSelf ? { antiAffinity: [{ service: `app_s${i}`, required: true }] } : {}),
                ...(sv.tolerate ? { tolerations: [{ key: 'old', operator: 'Exists' as const }] } : {}),
              },
            },
            `app_s${i}`,
          );
          if (sv.volume) svc.spec.container.mounts = [{ type: 'volume', source: sv.volume, target: '/data', readOnly: false }];
          for (let k = 0; k < sv.running; k++) running.push(task(svc, 100 + k, { node: `n${(i + k) % nodes.length}` }));
          return pend(svc, sv.replicas);
        });
        const all = [...running, ...pending];
        const fast = new SpreadPlacer().place(pending, nodes, all);
        const scan = new SpreadPlacer({ heap: false }).place(pending, nodes, all);
        const placed = (p: ReturnType<SpreadPlacer['place']>) => p.placed.map((x) => `${x.task.metadata.name}@${x.node.metadata.name}`);
        expect(placed(fast)).toEqual(placed(scan));
        expect(fast.unplaced.map((u) => u.task.metadata.name)).toEqual(scan.unplaced.map((u) => u.task.metadata.name));
        expect(fast.placed.map((x) => x.decision.ranked.map((r) => r.node))).toEqual(scan.placed.map((x) => x.decision.ranked.map((r) => r.node)));
        // The scheduler controller feeds a pass in parts (yielding between them): the same plan, decisions included.
        const session = new SpreadPlacer().begin(nodes, all);
        for (let i = 0; i < pending.length; i += part) session.place(pending.slice(i, i + part));
        expect(placed(session.plan)).toEqual(placed(fast));
        expect(session.plan.unplaced.map((u) => `${u.task.metadata.name}: ${u.reason}`)).toEqual(fast.unplaced.map((u) => `${u.task.metadata.name}: ${u.reason}`));
        expect(session.plan.placed.map((x) => x.decision)).toEqual(fast.placed.map((x) => x.decision));
        // Nothing over-committed, no fixed port twice on a node, a volume's tasks on one node.
        const after = [...running, ...fast.placed.map((x) => ({ ...x.task, spec: { ...x.task.spec, nodeName: x.node.metadata.name }, status: { ...x.task.status, state: 'assigned' as const } }))];
        // (Running tasks were made up without regard to capacity: a node may start over-committed, never get more so.)
        const before = allocatedByNode(running);
        for (const [name, a] of allocatedByNode(after)) {
          const n = nodes.find((x) => x.metadata.name === name)!;
          const b = before.get(name) ?? { cpus: 0, memoryBytes: 0 };
          if (a.cpus > b.cpus) expect(a.cpus).toBeLessThanOrEqual(n.status.capacity.cpus);
          if (a.memoryBytes > b.memoryBytes) expect(a.memoryBytes).toBeLessThanOrEqual(n.status.capacity.memoryBytes);
        }
        const ports = new Set<string>();
        for (const t of after.filter((x) => x.status.state === 'assigned'))
          for (const p of fixedHostPorts(t)) {
            const k = `${t.spec.nodeName}:${p}`;
            const clash = running.some((r) => r.spec.nodeName === t.spec.nodeName && fixedHostPorts(r).includes(p));
            expect(clash || !ports.has(k)).toBe(true);
            ports.add(k);
          }
        const withVolume = (ts: Task[]) => new Set(ts.filter((t) => t.spec.container.mounts.some((m) => m.source === 'app_data')).map((t) => t.spec.nodeName));
        const holders = withVolume(running);
        const placedOn = withVolume(after.filter((t) => t.status.state === 'assigned'));
        if (holders.size) for (const n of placedOn) expect(holders.has(n)).toBe(true);
        else expect(placedOn.size).toBeLessThanOrEqual(1);
      }),
      { numRuns: 400 },
    );
  });
});

describe('host ports, volumes, millicores, node classes', () => {
  const pend = (svc: ReturnType<typeof service>, n: number) => Array.from({ length: n }, (_, i) => task(svc, i + 1, { node: '', state: 'pending' }));

  it('never puts two tasks that publish the same host-mode port on one node', () => {
    const svc = service({ replicas: 3, ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'host' }] });
    const plan = new SpreadPlacer().place(pend(svc, 3), [node('a'), node('b')], []);
    expect(plan.placed.map((p) => p.node.metadata.name).sort()).toEqual(['a', 'b']);
    expect(plan.unplaced[0]!.reason).toBe(`0/2 nodes available: 2 ${REASON_HOST_PORT} (8080)`);
    // Ingress ports are the routing mesh's business: they never block a node.
    const mesh = service({ replicas: 3, ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }] }, 'app_mesh');
    expect(new SpreadPlacer().place(pend(mesh, 3), [node('a')], []).placed).toHaveLength(3);
    // Another service's task holding the port blocks it too.
    const other = service({ replicas: 1, ports: [{ target: 81, published: 8080, protocol: 'tcp', mode: 'host' }] }, 'app_other');
    expect(new SpreadPlacer().place(pend(svc, 1), [node('a'), node('b')], [task(other, 1, { node: 'a' })]).placed[0]!.node.metadata.name).toBe('b');
  });

  it('sends a task with a named volume back to the node that holds it, and waits for that node', () => {
    const svc = service({ replicas: 1 }, 'db_pg');
    svc.spec.container.mounts = [{ type: 'volume', source: 'db_data', target: '/var/lib/pg', readOnly: false }];
    // Reported by the node's agent.
    const b = node('b');
    b.status.volumes = ['db_data'];
    expect(new SpreadPlacer().place(pend(svc, 1), [node('a'), b, node('c')], []).placed[0]!.node.metadata.name).toBe('b');
    // Known from an earlier task (ended, still recorded), before any heartbeat says so.
    const old = task(svc, 1, { node: 'c', state: 'failed', desired: 'shutdown' });
    expect(new SpreadPlacer().place(pend(svc, 1), [node('a'), node('b'), node('c')], [old]).placed[0]!.node.metadata.name).toBe('c');
    // The holder is down: the task waits rather than start empty elsewhere.
    const down = new SpreadPlacer().place(pend(svc, 1), [node('a'), node('c', { state: 'down' })], [old]);
    expect(down.unplaced[0]!.reason).toBe(`0/2 nodes available: 1 ${REASON_NOT_READY}, 1 ${REASON_VOLUME} (db_data is on c)`);
    // Replicas placed in one pass follow the first one.
    const many = service({ replicas: 3 }, 'db_pg');
    many.spec.container.mounts = svc.spec.container.mounts;
    expect(new Set(new SpreadPlacer().place(pend(many, 3), [node('a'), node('b')], []).placed.map((p) => p.node.metadata.name)).size).toBe(1);
  });

  it('counts cpu in millicores: ten 0.1-cpu tasks fill a 1-cpu node exactly, and the reason says 100m', () => {
    const svc = service({ replicas: 11, resources: { reservations: { cpus: 0.1, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } } });
    const plan = new SpreadPlacer().place(pend(svc, 11), [node('a', { capacity: { cpus: 1, memoryBytes: 2 ** 30 } })], []);
    expect(plan.placed).toHaveLength(10);
    expect(plan.unplaced[0]!.reason).toBe(`0/1 nodes available: 1 ${REASON_CPU} (need 100m, most free 0)`);
    const mem = service({ replicas: 1, resources: { reservations: { cpus: 0, memoryBytes: 512 * 1048576 }, limits: { cpus: 0, memoryBytes: 0 } } });
    const nodes = [node('a', { capacity: { cpus: 1, memoryBytes: 256 * 1048576 } }), node('b', { capacity: { cpus: 1, memoryBytes: 128 * 1048576 } }), node('c', {}, 'active', { zone: 'us' })];
    mem.spec.placement.constraints = ['node.labels.zone != us'];
    expect(new SpreadPlacer().place(pend(mem, 1), nodes, []).unplaced[0]!.reason).toBe(`0/3 nodes available: 2 ${REASON_MEMORY} (need 512Mi, most free 256Mi), 1 ${REASON_CONSTRAINT} (node.labels.zone!=us)`);
  });

  it('counts rejections per class of identical nodes', () => {
    const svc = service({ replicas: 1, placement: { constraints: ['node.labels.zone == eu'] } });
    const nodes = [node('a', {}, 'active', { zone: 'us' }), node('b', {}, 'active', { zone: 'us' }), node('c', { state: 'down' }, 'active', { zone: 'eu' }), node('d'), node('e', {}, 'active', { zone: 'eu' })];
    const plan = new SpreadPlacer().place(pend(svc, 1), nodes, []);
    expect(plan.placed[0]!.node.metadata.name).toBe('e');
    expect(plan.placed[0]!.decision.classFiltered).toEqual({ 'zone=us': 2, 'zone=eu down': 1, 'no labels': 1 });
    expect(plan.placed[0]!.decision.filtered).toEqual({ [`${REASON_CONSTRAINT} (node.labels.zone==eu)`]: 3, [REASON_NOT_READY]: 1 });
  });
});
