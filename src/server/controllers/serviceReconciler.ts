/**
 * reconcileService is the service controller's business logic, a pure
 * function after Nomad's reconciler: (service, its tasks, now) → a data-only
 * plan. No I/O and time as an input, so it is tested with tables and
 * properties and the controller around it only executes plans.
 *
 * Rules:
 * - Slots 1..replicas each want exactly one task with desiredState running.
 * - A spec change rolls out by `update_config` (Swarm's semantics): at most
 *   `parallelism` slots in transition, `delay` after a batch, each new task
 *   counted as updated only once it stayed ready for `monitor`; stop-first
 *   stops the old task before its replacement starts, start-first stops it
 *   once the replacement is ready. Failures of new tasks beyond
 *   `max_failure_ratio` pause the rollout, or ask the controller to roll
 *   back (plan.rollback). A canary rollout starts `count` new tasks beside
 *   the old ones and holds until promoted. Everything is derived from the
 *   tasks and the service's annotations, so a server restart resumes it.
 * - A task that ended although it should run (rejected, failed past its
 *   restart policy, orphaned) is replaced after a per-slot exponential
 *   backoff; one that completed under a policy that does not restart it is
 *   left complete.
 * - Tasks above `replicas` are told to shut down; terminal tasks beyond the
 *   history limit (5 per slot, like Swarm) are deleted.
 * - A global service has one slot per eligible node (active, not Down, its
 *   constraints hold): each slot's task is pinned to its node by a
 *   `node.name == <node>` constraint, so the scheduler still checks resources
 *   and explains a pending one. Nodes that stop being eligible lose their task.
 */
import { disruptionsAllowed, isGlobal, isJob, isTaskReady, isTerminal, type RolloutStatus, type Service, type ServiceStatus, type Task, type TaskSpec } from '../../api/types.js';
import { formatTaint, tolerates } from '../../scheduler/filters.js';
import type { Node, Taint } from '../../api/types.js';
import { attemptOf, consecutiveFailures, created, failedSince, GLOBAL_NODE_LABEL, globalEligible, newTaskSpec, shouldReplace, slotBackoff, specHash, stateTime, taskIdentity, TASK_HISTORY_LIMIT, type NewTaskPlan } from './taskSlots.js';
import { countTasks, PROMOTED, RESUMED_AT, ROLLBACK_REASON, ROLLBACK_TO, ROLLOUT_PAUSED, rolloutTests } from './rolloutRules.js';
import { reconcileJob } from './jobReconciler.js';

// What the reconcilers' modules define, for those who import them from here.
export { GLOBAL_NODE_LABEL, globalEligible, newTaskSpec, specHash, taskIdentity, TASK_HISTORY_LIMIT, type NewTaskPlan } from './taskSlots.js';
export { PROMOTED, RESUMED_AT, ROLLBACK_REASON, ROLLBACK_TO, ROLLOUT_PAUSED } from './rolloutRules.js';
export { DEFAULT_BACKOFF_LIMIT } from './jobReconciler.js';

/** DrainState tells the reconciler which nodes are draining, since when, and how to pace migrations. */
export interface DrainState {
  /** nodeName → when its drain started (ms). */
  draining: ReadonlyMap<string, number>;
  /** Replacements in flight per service at once ("a few at a time"). */
  parallel: number;
  /** After this long, tasks still on a draining node are stopped even if their replacement is not ready. */
  deadlineMs: number;
  /** nodeName → its NoExecute taints: tasks that do not tolerate them are evicted. */
  noExecute?: ReadonlyMap<string, readonly Taint[]>;
}

export const NO_DRAIN: DrainState = { draining: new Map(), parallel: 2, deadlineMs: 60_000 };

/** How often a drain held by a disruption budget looks again (a task turning ready reconciles the service at once anyway). */
const BUDGET_RECHECK_MS = 5000;

export interface ServicePlan {
  create: NewTaskPlan[];
  /** The rollout failed and its failure_action is rollback: the controller rolls the spec back. */
  rollback?: { reason: string };
  /** The canaries stayed healthy for auto_promote: the controller records the promotion. */
  promote?: boolean;
  /** Tasks whose desiredState must change. */
  setDesired: { task: Task; desiredState: TaskSpec['desiredState']; reason?: string }[];
  delete: Task[];
  /** Reconcile again after this long (a backoff is running). */
  requeueAfterMs?: number;
  /** Every slot holds exactly one task, wanted running, of the current spec, or none yet (its create is planned); no other slot has any, and nothing is created beside a live task. */
  allSettled?: boolean;
  status?: ServiceStatus;
}

/**
 * pastAttempts, when given, says the highest attempt a slot's tasks had
 * that are deleted now (a slot scaled away and back): a new task of the
 * slot numbers its attempt past it, so it never takes a deleted task's
 * name (task identities are deterministic).
 */
export function reconcileService(svc: Service | undefined, tasks: Task[], now: number, drain: DrainState = NO_DRAIN, nodes: readonly Node[] = [], pastAttempts?: (slot: string | number) => number): ServicePlan {
  const plan: ServicePlan = { create: [], setDesired: [], delete: [] };

  if (!svc) {
    // Owner gone: shut everything down, delete what has stopped.
    for (const t of tasks) {
      if (t.spec.desiredState === 'running') plan.setDesired.push({ task: t, desiredState: 'shutdown' });
      else if (isTerminal(t.status.state) || !t.spec.nodeName) plan.delete.push(t);
    }
    return plan;
  }

  if (svc.spec.schedule) {
    // A cron job's template runs nothing itself: the cron controller makes its runs.
    for (const t of tasks) if (t.spec.desiredState === 'running') plan.setDesired.push({ task: t, desiredState: 'shutdown' });
    plan.status = { observedGeneration: svc.metadata.generation, desired: 0, running: 0, ready: 0, ...(svc.status?.cron ? { cron: svc.status.cron } : {}) };
    return plan;
  }
  if (isJob(svc.spec)) return reconcileJob(svc, tasks, now, nodes, plan);

  const hash = specHash(svc);
  const global = isGlobal(svc.spec);
  // Slots: 1..replicas, or one per eligible node for a global service.
  // A replicated service's slots are numbers: Map and Set keys that cost nothing to hash (10,000 slots per reconcile).
  const keys: (string | number)[] = global ? globalEligible(svc, nodes) : Array.from({ length: svc.spec.replicas }, (_, i) => i + 1);
  const wanted = new Set(keys);
  const keyOf = (t: Task): string | number => (global ? (t.metadata.labels[GLOBAL_NODE_LABEL] ?? '') : t.spec.slot);
  const bySlot = new Map<string | number, Task[]>();
  for (const t of tasks) {
    const k = keyOf(t);
    const list = bySlot.get(k);
    if (list) list.push(t);
    else bySlot.set(k, [t]);
  }
  for (const list of bySlot.values()) if (list.length > 1) list.sort((a, b) => attemptOf(a) - attemptOf(b) || created(a) - created(b));
  /**
   * settled: the slot holds one task, wanted running, of the current spec —
   * nearly every slot of a large steady service. Such a slot is neither in
   * transition nor migrating, and needs nothing unless it ended or its node
   * drains or repels it; the loops below skip it without allocating.
   */
  const settled = (list: Task[] | undefined): list is [Task] => list !== undefined && list.length === 1 && list[0]!.spec.desiredState === 'running' && list[0]!.spec.specHash === hash;

  // Scale down: every slot no longer wanted stops (above replicas, or a node no longer eligible).
  for (const [slot, list] of bySlot) {
    if (wanted.has(slot)) continue;
    for (const t of list) {
      if (t.spec.desiredState === 'running') plan.setDesired.push({ task: t, desiredState: 'shutdown' });
    }
  }

  // ---- the rollout: where each slot stands, derived from its tasks
  const ann = svc.metadata.annotations ?? {};
  const { rollingBack, up, availableAt, stableAt, failedInRollout } = rolloutTests(svc, hash, now);
  let requeue: number | undefined;
  const want = (ms: number) => (requeue = requeue === undefined ? ms : Math.min(requeue, ms));
  const oldSlots: (string | number)[] = [];
  let updating = 0;
  let failures = 0;
  /** Updated slots whose new task is still in its monitor window: the rollout is not complete until they pass it. */
  let monitoring = 0;
  let settledSlots = 0;
  let emptySlots = 0;
  let lastAvailable = -Infinity;
  /** New tasks started beside old ones (start-first transitions and canaries). */
  let beside = 0;
  for (const slot of keys) {
    const list = bySlot.get(slot);
    if (!list) {
      emptySlots++;
      continue;
    }
    for (const t of list) if (failedInRollout(t)) failures++;
    // A slot that only ever had this task was never old (a first deploy or a scale-up): not in the rollout's way.
    if (settled(list)) {
      settledSlots++;
      continue;
    }
    const live = list.filter((t) => t.spec.desiredState === 'running');
    const fresh = live.find((t) => t.spec.specHash === hash && !isTerminal(t.status.state));
    const old = live.filter((t) => t.spec.specHash !== hash);
    const stopping = list.some((t) => t.spec.desiredState !== 'running' && !isTerminal(t.status.state) && t.spec.nodeName);
    if (fresh && old.length) beside++;
    if (fresh) {
      // Swarm's pacing: the slot is done once its new task is running (ready; available, with min_ready) and its old
      // one is going; its monitor window runs on in the background, and only the rollout's completion waits for it.
      const av = availableAt(fresh);
      if (av !== undefined && av <= now && old.length === 0) {
        lastAvailable = Math.max(lastAvailable, av);
        const st = stableAt(fresh)!;
        if (st > now) {
          monitoring++;
          want(st - now);
        }
      } else {
        updating++;
        if (av !== undefined && av > now) want(av - now);
      }
    } else if (old.some((t) => !isTerminal(t.status.state))) oldSlots.push(slot);
    // Old task stopping or stopped, its replacement not made yet (stop-first): in transition.
    else if (stopping || list.some((t) => t.spec.specHash !== hash)) updating++;
  }
  // A rollout that completed stays complete (a later restart of a task is not a rollout).
  const prev = svc.status?.rollout;
  const finished = prev?.hash === hash && (prev.state === 'completed' || prev.state === 'rolled-back');
  const rolling = !finished && (oldSlots.length > 0 || updating > 0 || monitoring > 0);
  const canary = svc.spec.canary && !rollingBack ? svc.spec.canary : undefined;
  let promoted = !canary || ann[PROMOTED] === hash;
  if (canary && !promoted && canary.autoPromoteMs !== undefined && beside >= canary.count) {
    // Every canary ready for auto_promote: promote without waiting for a person.
    const canaries = tasks.filter((t) => t.spec.desiredState === 'running' && t.spec.specHash === hash);
    const since = canaries.map((t) => (isTaskReady(t) ? Date.parse(t.status.readyAt ?? t.status.timestamp) : Infinity));
    const due = Math.max(...since) + canary.autoPromoteMs;
    if (canaries.length >= canary.count && due <= now) {
      promoted = true;
      plan.promote = true;
    } else if (Number.isFinite(due)) want(due - now);
  }
  // A failed rollout: more failures than max_failure_ratio of the slots.
  const failedRollout = rolling && failures > 0 && failures / Math.max(1, keys.length) > up.maxFailureRatio;
  let blocked: RolloutStatus['state'] | undefined;
  let message: string | undefined;
  if (ann[ROLLOUT_PAUSED] === 'true') {
    blocked = 'paused';
    message = 'paused (baton service resume)';
  } else if (failedRollout && up.failureAction !== 'continue') {
    if (up.failureAction === 'rollback' && !rollingBack) plan.rollback = { reason: `${failures} new task(s) failed` };
    blocked = 'paused';
    message = `${failures} new task(s) failed; ${up.failureAction === 'rollback' && !rollingBack ? 'rolling back' : 'paused (fix the spec and apply, baton service rollback, or baton service resume)'}`;
  } else if (!promoted && beside >= canary!.count) {
    blocked = 'awaiting-promotion';
    message = `${canary!.count} canary task(s) started; waiting for baton service promote`;
  }
  // A disruption budget: how many ready tasks a drain or a stop-first update may still stop before their replacements are ready.
  const budgetSpec = global ? undefined : svc.spec.disruptionBudget;
  let budget = Infinity;
  if (budgetSpec) {
    const readySlots = new Set<string | number>();
    for (const t of tasks) if (t.spec.desiredState === 'running' && wanted.has(keyOf(t)) && isTaskReady(t)) readySlots.add(keyOf(t));
    budget = disruptionsAllowed(budgetSpec, keys.length, readySlots.size);
  }
  let budgetHeld: string | undefined;
  const budgetWords = budgetSpec ? (budgetSpec.minAvailable !== undefined ? `minAvailable ${budgetSpec.minAvailable}` : `maxUnavailable ${budgetSpec.maxUnavailable}`) : '';
  // Which old slots start their update now: up to parallelism in transition, `delay` after the last batch.
  const startNow = new Set<string | number>();
  if (!blocked && oldSlots.length > 0) {
    let room = up.parallelism === 0 ? oldSlots.length : up.parallelism - updating;
    if (!promoted) room = Math.min(room, canary!.count - beside);
    const nextAt = up.delayMs > 0 && lastAvailable > -Infinity && updating === 0 ? lastAvailable + up.delayMs : 0;
    if (nextAt > now) {
      want(nextAt - now);
      room = 0;
    }
    for (const slot of oldSlots) {
      if (room <= 0) break;
      startNow.add(slot);
      room--;
    }
  }
  /** A canary or start-first rollout starts the new task beside the old one. */
  const startFirst = up.order === 'start-first' || !promoted;

  // Migrations already in flight count against drain.parallel.
  let migrations = 0;
  for (const slot of keys) {
    const list = bySlot.get(slot);
    if (!list || settled(list)) continue;
    const live = list.filter((t) => t.spec.desiredState === 'running');
    if (live.length > 1 && live.slice(0, -1).every((t) => drain.draining.has(t.spec.nodeName))) migrations++;
  }

  for (const slot of keys) {
    const list = bySlot.get(slot) ?? [];
    if (settled(list)) {
      const t = list[0];
      if (!isTerminal(t.status.state) && !drain.draining.has(t.spec.nodeName) && !drain.noExecute?.has(t.spec.nodeName)) continue;
    }
    const live = list.filter((t) => t.spec.desiredState === 'running');
    const nextAttempt = list.reduce((m, t) => Math.max(m, attemptOf(t)), pastAttempts?.(slot) ?? 0) + 1;
    const make = () => {
      const id = taskIdentity(svc.metadata.name, svc.metadata.uid, slot, hash, nextAttempt);
      if (global) plan.create.push({ ...id, slot: 0, node: String(slot), attempt: nextAttempt, spec: newTaskSpec(svc, 0, hash, String(slot)) });
      else {
        const spec = newTaskSpec(svc, Number(slot), hash);
        // Failure penalty: nodes where this slot failed past its restart policy rank last for the new attempt.
        const avoid = [...new Set(list.filter((t) => t.status.state === 'failed' && t.spec.nodeName).map((t) => t.spec.nodeName))].sort();
        if (avoid.length) spec.avoidNodes = avoid;
        plan.create.push({ ...id, slot: Number(slot), attempt: nextAttempt, spec });
      }
    };

    const onDraining = (t: Task) => drain.draining.has(t.spec.nodeName);
    if (live.length > 1) {
      // Two live tasks in one slot: a drain migration (old on a draining node,
      // new elsewhere). The old one stops once the new one is ready, or at the
      // drain deadline; any other duplicate keeps only the newest.
      const newest = live.at(-1)!;
      const older = live.slice(0, -1);
      if (newest.spec.specHash === hash && older.every((t) => t.spec.specHash !== hash) && !older.every(onDraining)) {
        // A start-first update (or a canary): the old task serves until its replacement is ready (and promoted).
        if (isTerminal(newest.status.state)) plan.setDesired.push({ task: newest, desiredState: 'shutdown' });
        else if (promoted && isTaskReady(newest)) {
          // Available (ready for min_ready): its old task stops now; until then, look again when it will be.
          const av = availableAt(newest)!;
          if (av <= now) for (const o of older) plan.setDesired.push({ task: o, desiredState: 'shutdown' });
          else want(av - now);
        }
        continue;
      }
      if (older.every(onDraining) && isTerminal(newest.status.state)) {
        // The replacement died: retire it and keep the old task serving; the
        // next pass tries again after the slot's failure backoff.
        plan.setDesired.push({ task: newest, desiredState: 'shutdown' });
        continue;
      }
      const migrating = older.every(onDraining) && !onDraining(newest) && !isTaskReady(newest) && !isTerminal(newest.status.state);
      if (migrating) {
        const due = Math.min(...older.map((t) => drain.draining.get(t.spec.nodeName)!)) + drain.deadlineMs;
        if (now < due) {
          want(due - now);
          continue;
        }
        // Past the deadline the old task stops before its replacement is ready, unless that breaks the disruption budget.
        if (older.some(isTaskReady)) {
          if (budget < 1) {
            budgetHeld ??= `drain of ${older[0]!.spec.nodeName} held: stopping ${older[0]!.metadata.name} before its replacement is ready would break the disruption budget (${budgetWords})`;
            want(BUDGET_RECHECK_MS);
            continue;
          }
          budget--;
        }
      }
      for (const extra of older) plan.setDesired.push({ task: extra, desiredState: 'shutdown' });
      continue;
    }
    const cur = live.at(-1);

    // NoExecute: a task that does not tolerate its node's taint is evicted; its slot is refilled elsewhere.
    const evicting = cur && drain.noExecute?.get(cur.spec.nodeName)?.find((t) => !tolerates(svc.spec.placement.tolerations, t));
    if (cur && evicting && !isTerminal(cur.status.state)) {
      plan.setDesired.push({ task: cur, desiredState: 'shutdown', reason: `evicted: untolerated taint ${formatTaint(evicting)}` });
      continue;
    }
    if (cur && onDraining(cur) && !isTerminal(cur.status.state)) {
      // Drain: replace elsewhere first, then stop (above), a few at a time;
      // past the drain deadline every remaining task moves at once.
      const due = drain.draining.get(cur.spec.nodeName)! + drain.deadlineMs;
      const retry = failedSince(list, cur);
      if (retry > 0) {
        const last = list.at(-1)!;
        const wait = stateTime(last) + slotBackoff(svc, retry) - now;
        if (wait > 0) {
          want(wait);
          continue;
        }
      }
      if (migrations < drain.parallel || now >= due) {
        migrations++;
        make();
      } else want(due - now);
      continue;
    }
    if (cur && cur.spec.specHash !== hash) {
      // An old task: its update starts when the rollout says so.
      if (startNow.has(slot) && !isTerminal(cur.status.state)) {
        // After a failed attempt in this slot, the next one waits for the slot's backoff.
        const tries = list.filter((t) => t.spec.specHash === hash && failedInRollout(t));
        const wait = tries.length ? stateTime(tries.at(-1)!) + slotBackoff(svc, tries.length) - now : 0;
        if (wait > 0) want(wait);
        else if (startFirst) make();
        // Stop-first, unless stopping a ready task breaks the disruption budget: then its new task starts first.
        else if (isTaskReady(cur) && budget < 1) make();
        else {
          if (isTaskReady(cur)) budget--;
          plan.setDesired.push({ task: cur, desiredState: 'shutdown' });
        }
        continue;
      }
      if (!isTerminal(cur.status.state)) continue;
      // An old task that ended: replaced by the new spec (below), as any ended task.
    }
    if (cur && isTerminal(cur.status.state)) {
      if (!shouldReplace(cur)) {
        plan.setDesired.push({ task: cur, desiredState: 'complete' });
        continue;
      }
      plan.setDesired.push({ task: cur, desiredState: 'shutdown' });
      // fall through to the backoff check below, treating the slot as empty
    } else if (cur) {
      continue;
    }

    // The slot is empty. Wait while an old task is still stopping (stop-first).
    if (list.some((t) => t.spec.desiredState !== 'running' && !isTerminal(t.status.state) && t.spec.nodeName)) continue;
    // Back off after consecutive failures in this slot.
    const failures = consecutiveFailures(list, cur);
    if (failures > 0) {
      const last = cur ?? list.at(-1)!;
      const delay = slotBackoff(svc, failures);
      const due = stateTime(last) + delay;
      if (now < due) {
        want(due - now);
        continue;
      }
    }
    // A slot that ended under a non-restarting policy stays done.
    const lastOfSlot = list.at(-1);
    if (!cur && lastOfSlot && lastOfSlot.spec.desiredState === 'complete' && lastOfSlot.spec.specHash === hash) continue;
    make();
  }

  // History: keep the newest TASK_HISTORY_LIMIT stopped tasks per slot.
  for (const [slot, list] of bySlot) {
    const dead = list.filter((t) => t.spec.desiredState !== 'running' && (isTerminal(t.status.state) || !t.spec.nodeName));
    const keep = wanted.has(slot) ? TASK_HISTORY_LIMIT : 0;
    const excess = dead.length - keep;
    if (excess > 0) plan.delete.push(...dead.slice(0, excess));
  }

  const { running, ready } = countTasks(tasks, hash, (t) => wanted.has(keyOf(t)));
  const state: RolloutStatus['state'] = finished ? prev!.state : !rolling ? (rollingBack ? 'rolled-back' : 'completed') : (blocked ?? (rollingBack ? 'rolling-back' : 'progressing'));
  // Progress: when the rollout last moved a slot forward; standing still past the deadline, it is stalled (and goes on).
  const progressAt = rolling ? (prev?.hash === hash && prev.progressAt && prev.updated === Math.max(0, keys.length - oldSlots.length - updating) ? prev.progressAt : new Date(now).toISOString()) : undefined;
  let stalled = false;
  if (progressAt && up.progressDeadlineMs !== undefined && !blocked) {
    const left = Date.parse(progressAt) + up.progressDeadlineMs - now;
    if (left <= 0) {
      stalled = true;
      message ??= `no slot moved forward for ${Math.round(up.progressDeadlineMs / 1000)} s (progress deadline)`;
    } else want(left);
  }
  const rollout: RolloutStatus = {
    hash,
    ...(prev?.hash === hash && prev.revision !== undefined ? { revision: prev.revision } : {}),
    state,
    // Slots not waiting for the rollout (done, or never held an old task).
    updated: Math.max(0, keys.length - oldSlots.length - updating),
    total: keys.length,
    failed: failures,
    ...(message && rolling ? { message } : rollingBack && ann[ROLLBACK_REASON] ? { message: `rolled back by itself: ${ann[ROLLBACK_REASON]}` } : {}),
    startedAt: prev?.hash === hash && prev.startedAt ? prev.startedAt : new Date(now).toISOString(),
    ...(state === 'completed' || state === 'rolled-back' ? { finishedAt: prev?.hash === hash && prev.finishedAt ? prev.finishedAt : new Date(now).toISOString() } : {}),
    ...(progressAt ? { progressAt } : {}),
    ...(stalled ? { stalled: true } : {}),
  };
  plan.status = {
    observedGeneration: svc.metadata.generation,
    desired: keys.length,
    running,
    ready,
    ...(budgetHeld
      ? { message: budgetHeld }
      : rolling
        ? { message: state === 'progressing' && oldSlots.length === 0 && updating === 0 ? `updated ${keys.length}/${keys.length}; watching ${monitoring} new task(s) for failures (monitor ${up.monitorMs / 1000} s)` : `${state === 'progressing' ? 'updating' : state} ${rollout.updated}/${keys.length}` }
        : {}),
    rollout,
  };
  if (requeue !== undefined) plan.requeueAfterMs = requeue;
  // Steady only if every create fills an empty slot (a create beside a live task is a migration or an update).
  if (settledSlots + emptySlots === keys.length && bySlot.size === settledSlots && plan.create.every((c) => !bySlot.has(global ? c.node! : c.slot))) plan.allSettled = true;
  return plan;
}

/**
 * steadyPlan tells whether a replicated service's plan leaves it steady:
 * every slot settled (one task, wanted running, of the current spec) or
 * empty with its new task already in the scheduler's hands (`held`), its
 * rollout finished, nothing else to create, stop, delete or wait for. Until
 * its spec, its set of tasks (other than those held arriving) or a task's
 * phase changes, a change that only moves its counts (a task placed, started,
 * turned ready or unhealthy) changes nothing in its plan but the counts and
 * the rollout's failure count: refreshCounts computes those alone.
 */
export function steadyPlan(svc: Service, plan: ServicePlan, held: (name: string) => boolean = () => false): boolean {
  const state = plan.status?.rollout?.state;
  return (
    svc.spec.mode === 'replicated' && !svc.spec.schedule && plan.allSettled === true &&
    plan.create.every((c) => held(c.name)) && plan.setDesired.length === 0 && plan.delete.length === 0 &&
    plan.requeueAfterMs === undefined && !plan.rollback && !plan.promote && plan.status?.message === undefined &&
    (state === 'completed' || state === 'rolled-back')
  );
}

/**
 * refreshCounts is a steady service's status with its counts taken afresh
 * from `tasks`: what reconcileService would return, without its cost
 * (milliseconds for a service of 10,000 tasks, run at every batch of reports).
 * One pass over the tasks, each read once: at 20,000 tasks a service, recounts
 * were a quarter of the server's time at the end of a deploy (docs/scale.md).
 */
export function refreshCounts(svc: Service, status: ServiceStatus, tasks: Iterable<Task>, now: number): ServiceStatus {
  // The status was planned for this spec (same generation): its rollout names the spec's hash.
  const hash = status.rollout!.hash;
  const replicas = svc.spec.replicas;
  const { failedInRollout } = rolloutTests(svc, hash, now);
  let failed = 0;
  let running = 0;
  let ready = 0;
  for (const t of tasks) {
    const spec = t.spec;
    if (!(spec.slot >= 1 && spec.slot <= replicas)) continue;
    if (failedInRollout(t)) failed++;
    // As countTasks counts them.
    if (spec.desiredState !== 'running') continue;
    if (t.status.state === 'running') running++;
    if (spec.specHash === hash && isTaskReady(t)) ready++;
  }
  return { ...status, running, ready, rollout: { ...status.rollout!, failed } };
}

