/**
 * Rollouts in the pure service reconciler: update_config's parallelism,
 * order, monitor, delay and failure action; canaries; the status it derives.
 */
import { describe, expect, it } from 'vitest';
import { PROMOTED, reconcileService, ROLLBACK_TO, ROLLOUT_PAUSED, specHash } from '../src/server/controllers/serviceReconciler.js';
import { DEFAULT_UPDATE_CONFIG, type Service, type Task, type UpdateConfig } from '../src/api/types.js';
import { service, task } from './fixtures.js';

const MONITOR = 1000;
function pair(replicas: number, update: Partial<UpdateConfig> = {}, extra: Partial<Service['spec']> = {}) {
  const old = service({ replicas });
  const svc = service({ replicas, container: { ...old.spec.container, image: 'new:2' }, update: { ...DEFAULT_UPDATE_CONFIG, monitorMs: MONITOR, ...update }, ...extra });
  return { old, svc, tasks: Array.from({ length: replicas }, (_, i) => task(old, i + 1)) };
}
/** ready: a running task of `svc` ready since `at`. */
function fresh(svc: Service, slot: number, at: number, attempt = 2): Task {
  const t = task(svc, slot, { attempt, at });
  t.status.readyAt = new Date(at).toISOString();
  return t;
}
const stopped = (t: Task): Task => ({ ...t, spec: { ...t.spec, desiredState: 'shutdown' }, status: { ...t.status, state: 'shutdown' } });
const withAnn = (svc: Service, a: Record<string, string>): Service => ({ ...svc, metadata: { ...svc.metadata, annotations: { ...svc.metadata.annotations, ...a } } });

describe('rollouts (pure)', () => {
  it("stop-first with parallelism 2: two old tasks stop at once, their replacements follow; the next batch starts once they run, their monitor goes on in the background (Swarm's meaning)", () => {
    const { svc, tasks } = pair(4, { parallelism: 2 });
    const p1 = reconcileService(svc, tasks, 0);
    expect(p1.setDesired.map((s) => s.task.spec.slot)).toEqual([1, 2]);
    expect(p1.create).toEqual([]);
    expect(p1.status!.rollout).toMatchObject({ state: 'progressing', updated: 0, total: 4, hash: specHash(svc) });
    // Stopped: their replacements are made; slots 3 and 4 wait.
    const t2 = [stopped(tasks[0]!), stopped(tasks[1]!), tasks[2]!, tasks[3]!];
    const p2 = reconcileService(svc, t2, 10);
    expect(p2.create.map((c) => c.slot)).toEqual([1, 2]);
    expect(p2.setDesired).toEqual([]);
    // Starting: still the first batch.
    const t3s = [...t2, task(svc, 1, { attempt: 2, state: 'starting' }), task(svc, 2, { attempt: 2, state: 'starting' })];
    expect(reconcileService(svc, t3s, 50).setDesired).toEqual([]);
    // Running (ready): the next batch at once, though their monitor window has just begun.
    const t3 = [...t2, fresh(svc, 1, 100), fresh(svc, 2, 100)];
    const p3 = reconcileService(svc, t3, 100);
    expect(p3.setDesired.map((s) => s.task.spec.slot)).toEqual([3, 4]);
    expect(p3.status!.rollout).toMatchObject({ state: 'progressing', updated: 2 });
    // Every slot updated: the rollout completes only once the last batch's monitor window has passed, as Swarm's does.
    const t4 = [...t3.slice(0, 2), stopped(tasks[2]!), stopped(tasks[3]!), ...t3.slice(4), fresh(svc, 3, 200), fresh(svc, 4, 200)];
    const p4 = reconcileService(svc, t4, 200 + MONITOR - 1);
    expect(p4.status!.rollout).toMatchObject({ state: 'progressing', updated: 4 });
    expect(p4.requeueAfterMs).toBe(1);
    expect(reconcileService(svc, t4, 200 + MONITOR).status!.rollout).toMatchObject({ state: 'completed', updated: 4 });
    // A task of the first batch that fails inside its monitor window, after the next batch started, still fails the rollout.
    const crashed = { ...t3[5]!, status: { ...t3[5]!.status, restartCount: 1, timestamp: new Date(150).toISOString() } } as Task;
    const p5 = reconcileService(svc, [...t3.slice(0, 5), crashed], 150);
    expect(p5.status!.rollout).toMatchObject({ state: 'paused', failed: 1 });
  });

  it('min_ready (Kubernetes minReadySeconds): a new task counts as available, letting the next batch start, only once ready that long', () => {
    const { svc, tasks } = pair(2, { minReadyMs: 500 });
    const t = [stopped(tasks[0]!), fresh(svc, 1, 100), tasks[1]!];
    const early = reconcileService(svc, t, 599);
    expect(early.setDesired).toEqual([]);
    expect(early.requeueAfterMs).toBe(1);
    expect(reconcileService(svc, t, 600).setDesired.map((s) => s.task.spec.slot)).toEqual([2]);
    // Start-first: the old task stops only once its replacement is available.
    const sf = pair(1, { order: 'start-first', minReadyMs: 500 });
    const both = [...sf.tasks, fresh(sf.svc, 1, 100)];
    expect(reconcileService(sf.svc, both, 599).setDesired).toEqual([]);
    expect(reconcileService(sf.svc, both, 600).setDesired.map((s) => s.desiredState)).toEqual(['shutdown']);
  });

  it('start-first: the replacement starts beside the old task, which stops once the new one is ready', () => {
    const { svc, tasks } = pair(2, { order: 'start-first' });
    const p1 = reconcileService(svc, tasks, 0);
    expect(p1.create.map((c) => c.slot)).toEqual([1]);
    expect(p1.setDesired).toEqual([]);
    const starting = task(svc, 1, { attempt: 2, state: 'starting' });
    expect(reconcileService(svc, [...tasks, starting], 10).setDesired).toEqual([]);
    const ready = fresh(svc, 1, 20);
    const p3 = reconcileService(svc, [...tasks, ready], 30);
    expect(p3.setDesired.map((s) => [s.task.spec.slot, s.task.spec.specHash, s.desiredState])).toEqual([[1, tasks[0]!.spec.specHash, 'shutdown']]);
    expect(p3.create).toEqual([]); // slot 2 waits while slot 1's old task is still wanted
    // Slot 1's old task is going: slot 2 starts, without waiting for slot 1's monitor window.
    expect(reconcileService(svc, [stopped(tasks[0]!), tasks[1]!, ready], 31).create.map((c) => c.slot)).toEqual([2]);
  });

  it('parallelism 0 updates every slot at once; delay waits after a batch', () => {
    const all = pair(3, { parallelism: 0 });
    expect(reconcileService(all.svc, all.tasks, 0).setDesired).toHaveLength(3);
    const { svc, tasks } = pair(2, { delayMs: 5000 });
    const t = [stopped(tasks[0]!), fresh(svc, 1, 0), tasks[1]!];
    expect(reconcileService(svc, t, 0).setDesired).toEqual([]);
    expect(reconcileService(svc, t, 4999).setDesired).toEqual([]);
    expect(reconcileService(svc, t, 4999).requeueAfterMs).toBe(1);
    expect(reconcileService(svc, t, 5000).setDesired.map((s) => s.task.spec.slot)).toEqual([2]);
  });

  it('a new task that fails pauses the rollout (failure_action pause), or asks for a rollback', () => {
    const { svc, tasks } = pair(3);
    const crashing = task(svc, 1, { attempt: 2, at: 50 });
    // It crashed twice and came back half a second ago: not yet ready for `monitor`.
    crashing.status.restartCount = 2;
    crashing.status.readyAt = new Date(9_500).toISOString();
    const t = [stopped(tasks[0]!), crashing, tasks[1]!, tasks[2]!];
    const paused = reconcileService(svc, t, 10_000);
    expect(paused.setDesired).toEqual([]);
    expect(paused.rollback).toBeUndefined();
    expect(paused.status!.rollout).toMatchObject({ state: 'paused', failed: 1 });
    expect(paused.status!.rollout!.message).toMatch(/1 new task\(s\) failed/);
    const rb = service({ ...svc.spec, update: { ...svc.spec.update!, failureAction: 'rollback' } });
    const t2 = [stopped(tasks[0]!), { ...crashing, spec: { ...crashing.spec, specHash: specHash(rb) } }, tasks[1]!, tasks[2]!];
    expect(reconcileService(rb, t2, 10_000).rollback).toEqual({ reason: '1 new task(s) failed' });
    // max_failure_ratio tolerates some: 1 of 3 is below 0.5.
    const tolerant = service({ ...svc.spec, update: { ...svc.spec.update!, maxFailureRatio: 0.5 } });
    const t3 = [stopped(tasks[0]!), { ...crashing, spec: { ...crashing.spec, specHash: specHash(tolerant) } }, tasks[1]!, tasks[2]!];
    expect(reconcileService(tolerant, t3, 10_000).status!.rollout!.state).toBe('progressing');
  });

  it('a rollback follows rollback_config, and ends rolled back', () => {
    const { svc, tasks } = pair(2, {}, { rollbackConfig: { ...DEFAULT_UPDATE_CONFIG, parallelism: 0, monitorMs: 0 } });
    const back = withAnn(svc, { [ROLLBACK_TO]: specHash(svc) });
    expect(reconcileService(back, tasks, 0).setDesired).toHaveLength(2);
    expect(reconcileService(back, tasks, 0).status!.rollout!.state).toBe('rolling-back');
    const done = reconcileService(back, [stopped(tasks[0]!), stopped(tasks[1]!), fresh(svc, 1, 0), fresh(svc, 2, 0)], 10);
    expect(done.status!.rollout!.state).toBe('rolled-back');
  });

  it('pauses by hand, and a completed rollout stays complete', () => {
    const { svc, tasks } = pair(2);
    expect(reconcileService(withAnn(svc, { [ROLLOUT_PAUSED]: 'true' }), tasks, 0).setDesired).toEqual([]);
    const after = [stopped(tasks[0]!), stopped(tasks[1]!), fresh(svc, 1, 0), fresh(svc, 2, 0)];
    const done = reconcileService(svc, after, MONITOR);
    expect(done.status!.rollout).toMatchObject({ state: 'completed', updated: 2 });
    // Later a task restarts (not ready for a moment): still completed.
    const again = { ...svc, status: done.status! };
    const restarted = [...after.slice(0, 3), { ...after[3]!, status: { ...after[3]!.status, readyAt: new Date(5 * MONITOR).toISOString() } }];
    expect(reconcileService(again, restarted, 5 * MONITOR).status!.rollout!.state).toBe('completed');
  });

  it('canaries: N new tasks beside the old ones, held until promoted (or auto_promote)', () => {
    const { svc, tasks } = pair(3, { parallelism: 3 }, { canary: { count: 1 } });
    const p1 = reconcileService(svc, tasks, 0);
    expect(p1.create.map((c) => c.slot)).toEqual([1]);
    expect(p1.setDesired).toEqual([]);
    const canary = fresh(svc, 1, 0);
    const held = reconcileService(svc, [...tasks, canary], 60_000);
    expect(held.setDesired).toEqual([]);
    expect(held.create).toEqual([]);
    expect(held.status!.rollout).toMatchObject({ state: 'awaiting-promotion' });
    // Promoted: the canary's old task stops and the others update.
    const promoted = reconcileService(withAnn(svc, { [PROMOTED]: specHash(svc) }), [...tasks, canary], 60_000);
    expect(promoted.setDesired.map((s) => s.task.spec.slot).sort()).toEqual([1, 2, 3]);
    // auto_promote after the canaries stayed ready that long.
    const auto = service({ ...svc.spec, canary: { count: 1, autoPromoteMs: 30_000 } });
    const c2 = { ...canary, spec: { ...canary.spec, specHash: specHash(auto) } };
    expect(reconcileService(auto, [...tasks, c2], 10_000).promote).toBeUndefined();
    expect(reconcileService(auto, [...tasks, c2], 10_000).requeueAfterMs).toBe(20_000);
    expect(reconcileService(auto, [...tasks, c2], 30_000).promote).toBe(true);
  });

  it('a restart (forceUpdate) is a rollout of the same spec', () => {
    const old = service({ replicas: 1 });
    const svc = service({ replicas: 1, forceUpdate: 1 });
    expect(specHash(svc)).not.toBe(specHash(old));
    expect(reconcileService(svc, [task(old, 1)], 0).setDesired).toHaveLength(1);
  });
});

describe('jobs (pure)', () => {
  const jobSvc = (completions: number, parallelism: number, backoffLimit = 2) => service({ mode: 'replicated-job', replicas: 0, job: { completions, parallelism, backoffLimit } });
  const done = (svc: Service, slot: number, attempt = 1) => task(svc, slot, { attempt, state: 'complete' });

  it('runs `parallelism` tasks at a time until `completions` succeeded, each with no restart in place', () => {
    const svc = jobSvc(5, 2);
    const p1 = reconcileService(svc, [], 0);
    expect(p1.create.map((c) => c.slot)).toEqual([1, 2]);
    expect(p1.create.every((c) => c.spec.restartPolicy.condition === 'none')).toBe(true);
    expect(p1.status!.job).toMatchObject({ state: 'running', completions: 5, succeeded: 0, active: 0 });
    const running = [task(svc, 1), task(svc, 2)];
    expect(reconcileService(svc, running, 0).create).toEqual([]);
    const p3 = reconcileService(svc, [done(svc, 1), task(svc, 2)], 0);
    expect(p3.create.map((c) => c.slot)).toEqual([3]);
    expect(p3.setDesired.map((s) => [s.task.spec.slot, s.desiredState])).toEqual([[1, 'complete']]);
    const all = [1, 2, 3, 4, 5].map((i) => done(svc, i));
    expect(reconcileService(svc, all, 0).status!.job).toMatchObject({ state: 'complete', succeeded: 5, active: 0 });
  });

  it('retries a failed task after its backoff, and fails the job past backoff_limit', () => {
    const svc = jobSvc(1, 1, 1);
    const f1 = task(svc, 1, { state: 'failed', attempt: 1, at: 0 });
    expect(reconcileService(svc, [f1], 10).create).toEqual([]);
    expect(reconcileService(svc, [f1], 10).requeueAfterMs).toBeGreaterThan(0);
    expect(reconcileService(svc, [f1], 60_000).create.map((c) => c.attempt)).toEqual([2]);
    const f2 = task(svc, 1, { state: 'failed', attempt: 2, at: 100 });
    const p = reconcileService(svc, [f1, f2], 60_000);
    expect(p.create).toEqual([]);
    expect(p.status!.job).toMatchObject({ state: 'failed', failed: 2 });
    expect(p.status!.job!.message).toMatch(/more than backoff_limit 1/);
  });
});
