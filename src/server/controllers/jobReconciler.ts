/**
 * reconcileJob: the service controller's plan for a job (replicated-job or
 * global-job), beside reconcileService's for a long-running service. Pure.
 */
import { isTerminal, type JobStatus, type Node, type Service, type Task } from '../../api/types.js';
import { GLOBAL_NODE_LABEL, attemptOf, globalEligible, newTaskSpec, slotBackoff, specHash, stateTime, taskIdentity } from './taskSlots.js';
import type { ServicePlan } from './serviceReconciler.js';

/** DEFAULT_BACKOFF_LIMIT: failed tasks a job tolerates (Kubernetes' default). */
export const DEFAULT_BACKOFF_LIMIT = 6;

/**
 * reconcileJob runs a job to completion: slots 1..completions (or one per
 * eligible node for a global job), each done once one of its tasks of the
 * current spec completed (exit 0); at most `parallelism` tasks live at once;
 * a failed task is retried in a new task after the slot's backoff, and more
 * than backoffLimit failed tasks fail the job (its live tasks stop). Tasks
 * never restart in place: a job task's restart policy is `none`.
 */
export function reconcileJob(svc: Service, tasks: Task[], now: number, nodes: readonly Node[], plan: ServicePlan): ServicePlan {
  const hash = specHash(svc);
  const global = svc.spec.mode === 'global-job';
  const job = svc.spec.job ?? { completions: 1, parallelism: 1, backoffLimit: DEFAULT_BACKOFF_LIMIT };
  const keys: (string | number)[] = global ? globalEligible(svc, nodes) : Array.from({ length: job.completions }, (_, i) => i + 1);
  const keyOf = (t: Task): string | number => (global ? (t.metadata.labels[GLOBAL_NODE_LABEL] ?? '') : t.spec.slot);
  const bySlot = new Map<string | number, Task[]>();
  let failed = 0;
  let active = 0;
  for (const t of tasks) {
    // A spec change re-runs the job: tasks of another spec stop and do not count.
    if (t.spec.specHash !== hash) {
      if (t.spec.desiredState === 'running') plan.setDesired.push({ task: t, desiredState: 'shutdown' });
      continue;
    }
    const k = keyOf(t);
    const list = bySlot.get(k);
    if (list) list.push(t);
    else bySlot.set(k, [t]);
    if (t.status.state === 'failed' || t.status.state === 'rejected') failed++;
    if (t.spec.desiredState === 'running' && !isTerminal(t.status.state)) active++;
  }
  for (const list of bySlot.values()) list.sort((a, b) => attemptOf(a) - attemptOf(b));
  const doneSlot = (k: string | number) => (bySlot.get(k) ?? []).some((t) => t.status.state === 'complete');
  const succeeded = keys.filter(doneSlot).length;
  const prev = svc.status?.job;
  let state: JobStatus['state'] = succeeded === keys.length ? 'complete' : failed > job.backoffLimit ? 'failed' : 'running';
  // A finished job stays finished (until its spec changes).
  if (prev && prev.state !== 'running' && svc.status?.rollout?.hash === hash) state = prev.state;
  let requeue: number | undefined;
  // Ended tasks leave the running set: complete ones as complete, the others shut down.
  for (const list of bySlot.values()) {
    for (const t of list) {
      if (t.spec.desiredState !== 'running') continue;
      if (state === 'failed' && !isTerminal(t.status.state)) plan.setDesired.push({ task: t, desiredState: 'shutdown', reason: `job failed: ${failed} failed task(s), more than backoff_limit ${job.backoffLimit}` });
      else if (isTerminal(t.status.state)) plan.setDesired.push({ task: t, desiredState: t.status.state === 'complete' ? 'complete' : 'shutdown' });
    }
  }
  if (state === 'running') {
    let room = global ? Infinity : job.parallelism - active;
    for (const slot of keys) {
      if (room <= 0) break;
      const list = bySlot.get(slot) ?? [];
      if (doneSlot(slot) || list.some((t) => t.spec.desiredState === 'running' && !isTerminal(t.status.state))) continue;
      const failures = list.filter((t) => t.status.state === 'failed' || t.status.state === 'rejected').length;
      if (failures > 0) {
        const due = stateTime(list.at(-1)!) + slotBackoff(svc, failures);
        if (due > now) {
          requeue = Math.min(requeue ?? Infinity, due - now);
          continue;
        }
      }
      const attempt = list.reduce((m, t) => Math.max(m, attemptOf(t)), 0) + 1;
      const id = taskIdentity(svc.metadata.name, svc.metadata.uid, slot, hash, attempt);
      const spec = global ? newTaskSpec(svc, 0, hash, String(slot)) : newTaskSpec(svc, Number(slot), hash);
      spec.restartPolicy = { ...spec.restartPolicy, condition: 'none' };
      plan.create.push({ ...id, slot: global ? 0 : Number(slot), ...(global ? { node: String(slot) } : {}), attempt, spec });
      room--;
    }
  }
  // History: every task of the current run is kept (its logs and exit codes); older runs' tasks go.
  for (const t of tasks) if (t.spec.specHash !== hash && t.spec.desiredState !== 'running' && isTerminal(t.status.state)) plan.delete.push(t);
  const startedAt = prev?.startedAt && svc.status?.rollout?.hash === hash ? prev.startedAt : new Date(now).toISOString();
  plan.status = {
    observedGeneration: svc.metadata.generation,
    desired: keys.length,
    running: active,
    ready: succeeded,
    // The spec hash the job status belongs to (a new spec is a new run).
    rollout: { hash, state: 'completed', updated: keys.length, total: keys.length, failed: 0, startedAt },
    job: {
      state,
      completions: keys.length,
      succeeded,
      failed,
      active,
      startedAt,
      ...(state !== 'running' ? { completedAt: prev?.completedAt && prev.state === state ? prev.completedAt : new Date(now).toISOString() } : {}),
      ...(state === 'failed' ? { message: `${failed} task(s) failed, more than backoff_limit ${job.backoffLimit}` } : {}),
    },
  };
  if (requeue !== undefined) plan.requeueAfterMs = requeue;
  return plan;
}

