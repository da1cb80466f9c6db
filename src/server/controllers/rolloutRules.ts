/**
 * The rollout's rules, shared by the reconciler and the controller: the
 * annotations that steer a rollout, and its judgements of a task of the
 * spec being rolled out (when it is available and stable, whether it
 * failed in the rollout).
 */
import { DEFAULT_UPDATE_CONFIG, isTaskReady, isTerminal, type Service, type Task, type UpdateConfig } from '../../api/types.js';
import { stateTime } from './taskSlots.js';

/** Annotations that steer a rollout (written by the API and the controller, read here). */
export const ROLLOUT_PAUSED = 'baton.rollout.paused';
/** The rollout to this spec hash is a rollback: it follows rollback_config. */
export const ROLLBACK_TO = 'baton.rollout.rollbackTo';
/** The canaries of this spec hash were promoted. */
export const PROMOTED = 'baton.rollout.promoted';
/** Why the service was rolled back by itself (absent after a rollback by hand). */
export const ROLLBACK_REASON = 'baton.rollout.rollbackReason';
/** Failures before this time no longer count (a resume after a failure pause). */
export const RESUMED_AT = 'baton.rollout.resumedAt';

/**
 * rolloutTests are the rollout's judgements of a task of the spec `hash`:
 * when it is available (ready, for minReady when one is set: its old task
 * may stop and the next batch start), when it is stable (ready for the
 * update's monitor period too: no failure of it counts any more), and
 * whether it failed in the rollout (failed, rejected, restarted or
 * unhealthy before it was stable, and after the last resume).
 */
export function rolloutTests(svc: Service, hash: string, now: number) {
  const ann = svc.metadata.annotations ?? {};
  const rollingBack = ann[ROLLBACK_TO] === hash;
  const up: UpdateConfig = (rollingBack ? svc.spec.rollbackConfig : svc.spec.update) ?? DEFAULT_UPDATE_CONFIG;
  const resumedAt = Date.parse(ann[RESUMED_AT] ?? '') || 0;
  const minReady = up.minReadyMs ?? 0;
  const readySince = (t: Task): number | undefined => {
    if (!isTaskReady(t)) return undefined;
    const since = Date.parse(t.status.readyAt ?? t.status.startedAt ?? t.status.timestamp);
    return Number.isFinite(since) ? since : now;
  };
  /** availableAt: when a ready task of the new spec has been ready for minReady (undefined while not ready). */
  const availableAt = (t: Task): number | undefined => {
    const since = readySince(t);
    return since === undefined ? undefined : since + minReady;
  };
  /** stableAt: when a ready task of the new spec is past its monitor window (and available). */
  const stableAt = (t: Task): number | undefined => {
    const since = readySince(t);
    return since === undefined ? undefined : since + Math.max(up.monitorMs, minReady);
  };
  /** failedInRollout: a task of the new spec that failed, was rejected, crashed or turned unhealthy before it was stable. */
  const failedInRollout = (t: Task): boolean => {
    // Cheap tests first: this runs for every task of a large service.
    if (t.spec.specHash !== hash) return false;
    const st = t.status.state;
    const bad = st === 'failed' || st === 'rejected' || (!isTerminal(st) && (t.status.restartCount > 0 || t.status.healthy === false));
    if (!bad || stateTime(t) < resumedAt) return false;
    if (st === 'failed' || st === 'rejected') return true;
    const at = stableAt(t);
    return at === undefined || at > now;
  };
  return { rollingBack, up, availableAt, stableAt, failedInRollout };
}

/** countTasks counts a service's live tasks in wanted slots: running ones, and ready ones of the current spec. */
export function countTasks(tasks: readonly Task[], hash: string, inSlot: (t: Task) => boolean): { running: number; ready: number } {
  let running = 0;
  let ready = 0;
  for (const t of tasks) {
    if (t.spec.desiredState !== 'running' || !inSlot(t)) continue;
    if (t.status.state === 'running') running++;
    if (isTaskReady(t) && t.spec.specHash === hash) ready++;
  }
  return { running, ready };
}

