/**
 * reconcileService is the service controller's business logic, a pure
 * function after Nomad's reconciler: (service, its tasks, now) → a data-only
 * plan. No I/O and time as an input, so it is tested with tables and
 * properties and the controller around it only executes plans.
 *
 * Rules:
 * - Slots 1..replicas each want exactly one task with desiredState running.
 * - A slot whose running task has an old specHash is replaced stop-first, and
 *   at most one slot is in transition at a time (the rollout issue replaces
 *   this with update_config).
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
import { createHash } from 'node:crypto';
import { backoffDelay } from '../../base/backoff.js';
import { isTaskReady, isTerminal, type Service, type ServiceStatus, type Task, type TaskSpec } from '../../api/types.js';
import { stableStringify } from '../registry.js';
import { formatTaint, GLOBAL_TASK_LABEL, matchConstraint, tolerates, untolerated } from '../../scheduler/filters.js';
import type { Node, Taint } from '../../api/types.js';

/** GLOBAL_NODE_LABEL marks the node a global service's task belongs to (its slot). */
export const GLOBAL_NODE_LABEL = GLOBAL_TASK_LABEL;

export const TASK_HISTORY_LIMIT = 5;

export interface NewTaskPlan {
  name: string;
  uid: string;
  slot: number;
  /** For a global service: the node this task belongs to. */
  node?: string;
  attempt: number;
  spec: TaskSpec;
}

/** globalEligible lists the nodes a global service runs on: active, not Down, its constraints met. */
export function globalEligible(svc: Service, nodes: readonly Node[]): string[] {
  return nodes
    .filter(
      (n) =>
        n.spec.availability === 'active' &&
        n.status.state !== 'down' &&
        svc.spec.placement.constraints.every((c) => matchConstraint(c, n)) &&
        untolerated(n, svc.spec.placement.tolerations, ['NoSchedule', 'NoExecute']).length === 0,
    )
    .map((n) => n.metadata.name)
    .sort();
}

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

export interface ServicePlan {
  create: NewTaskPlan[];
  /** Tasks whose desiredState must change. */
  setDesired: { task: Task; desiredState: TaskSpec['desiredState']; reason?: string }[];
  delete: Task[];
  /** Reconcile again after this long (a backoff is running). */
  requeueAfterMs?: number;
  status?: ServiceStatus;
}

/** specHash covers every field that shapes a task's container; changing any of them makes new tasks. */
export function specHash(svc: Service): string {
  const s = svc.spec;
  return createHash('sha256')
    .update(stableStringify({ c: s.container, p: s.ports, e: s.expose, r: s.resources, rp: s.restartPolicy, pl: s.placement }))
    .digest('hex')
    .slice(0, 12);
}

/** taskIdentity is deterministic, so a retried create collides instead of duplicating. */
export function taskIdentity(serviceName: string, serviceUid: string, slot: number | string, hash: string, attempt: number): { name: string; uid: string } {
  const h = createHash('sha256').update(`${serviceUid}/${slot}/${hash}/${attempt}`).digest('hex');
  return { name: `${serviceName}.${slot}.${h.slice(0, 10)}`, uid: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}` };
}

function attemptOf(t: Task): number {
  return Number(t.metadata.labels['baton.attempt'] ?? '0');
}

function created(t: Task): number {
  return Date.parse(t.metadata.creationTimestamp);
}

function stateTime(t: Task): number {
  return Date.parse(t.status.timestamp);
}

/** shouldReplace: the task ended while it should run, and its policy wants it running again. */
function shouldReplace(t: Task): boolean {
  const st = t.status.state;
  if (st === 'rejected' || st === 'orphaned' || st === 'shutdown') return true;
  const cond = t.spec.restartPolicy.condition;
  if (st === 'complete') return cond === 'any';
  if (st === 'failed') return cond !== 'none';
  return false;
}

export function reconcileService(svc: Service | undefined, tasks: Task[], now: number, drain: DrainState = NO_DRAIN, nodes: readonly Node[] = []): ServicePlan {
  const plan: ServicePlan = { create: [], setDesired: [], delete: [] };

  if (!svc) {
    // Owner gone: shut everything down, delete what has stopped.
    for (const t of tasks) {
      if (t.spec.desiredState === 'running') plan.setDesired.push({ task: t, desiredState: 'shutdown' });
      else if (isTerminal(t.status.state) || !t.spec.nodeName) plan.delete.push(t);
    }
    return plan;
  }

  const hash = specHash(svc);
  const global = svc.spec.mode === 'global';
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

  // Is a slot already mid-replacement (old stopping, or new not yet running)?
  let inTransition = 0;
  for (const slot of keys) {
    const list = bySlot.get(slot) ?? [];
    if (settled(list)) continue;
    const stopping = list.some((t) => t.spec.desiredState !== 'running' && !isTerminal(t.status.state) && t.spec.nodeName);
    const live = list.filter((t) => t.spec.desiredState === 'running');
    const newNotReady = live.some((t) => t.spec.specHash === hash && !isTaskReady(t)) && list.some((t) => t.spec.specHash !== hash);
    if (stopping || newNotReady) inTransition++;
  }

  let requeue: number | undefined;
  // Migrations already in flight count against drain.parallel.
  let migrations = 0;
  for (const slot of keys) {
    const list = bySlot.get(slot);
    if (!list || settled(list)) continue;
    const live = list.filter((t) => t.spec.desiredState === 'running');
    if (live.length > 1 && live.slice(0, -1).every((t) => drain.draining.has(t.spec.nodeName))) migrations++;
  }
  const want = (ms: number) => (requeue = requeue === undefined ? ms : Math.min(requeue, ms));

  for (const slot of keys) {
    const list = bySlot.get(slot) ?? [];
    if (settled(list)) {
      const t = list[0];
      if (!isTerminal(t.status.state) && !drain.draining.has(t.spec.nodeName) && !drain.noExecute?.has(t.spec.nodeName)) continue;
    }
    const live = list.filter((t) => t.spec.desiredState === 'running');
    const nextAttempt = list.reduce((m, t) => Math.max(m, attemptOf(t)), 0) + 1;
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
      // Stop-first replacement, one slot at a time.
      if (inTransition === 0) {
        plan.setDesired.push({ task: cur, desiredState: 'shutdown' });
        inTransition++;
      }
      continue;
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

  let running = 0;
  let ready = 0;
  for (const t of tasks) {
    if (t.spec.desiredState !== 'running' || !wanted.has(keyOf(t))) continue;
    if (t.status.state === 'running') running++;
    if (isTaskReady(t) && t.spec.specHash === hash) ready++;
  }
  plan.status = {
    observedGeneration: svc.metadata.generation,
    desired: keys.length,
    running,
    ready,
    ...(inTransition > 0 ? { message: 'updating' } : {}),
  };
  if (requeue !== undefined) plan.requeueAfterMs = requeue;
  return plan;
}

/** failedSince counts the replacements that failed after cur in its slot (list is in attempt order). */
function failedSince(list: Task[], cur: Task): number {
  let n = 0;
  for (let i = list.length - 1; i >= 0 && list[i] !== cur; i--) if (list[i]!.status.state === 'failed' || list[i]!.status.state === 'rejected') n++;
  return n;
}

/** slotBackoff is how long a slot waits before replacing a task after `failures` failures in a row (the restart policy's backoff). */
function slotBackoff(svc: Service, failures: number): number {
  const rp = svc.spec.restartPolicy;
  return backoffDelay({ initialMs: rp.delayMs || 1000, maxMs: Math.max(rp.maxDelayMs, rp.delayMs) || 30_000, factor: rp.factor ?? 2 }, failures);
}

/** consecutiveFailures counts the slot's latest tasks that ended badly; a task lost with its node is not its own failure, and ends the count. */
function consecutiveFailures(list: Task[], cur: Task | undefined): number {
  let n = 0;
  const all = cur && !list.includes(cur) ? [...list, cur] : list;
  for (let i = all.length - 1; i >= 0; i--) {
    const t = all[i]!;
    if (!isTerminal(t.status.state) || t.status.state === 'orphaned') break;
    if (t.status.state === 'complete' || (t.status.state === 'shutdown' && t.spec.desiredState !== 'running')) break;
    n++;
  }
  return n;
}

export function newTaskSpec(svc: Service, slot: number, hash: string, pinnedNode?: string): TaskSpec {
  const s = svc.spec;
  const placement = pinnedNode ? { ...s.placement, constraints: [...s.placement.constraints, `node.name == ${pinnedNode}`] } : s.placement;
  return {
    serviceName: svc.metadata.name,
    serviceUid: svc.metadata.uid,
    slot,
    specHash: hash,
    nodeName: '',
    desiredState: 'running',
    container: s.container,
    ports: s.ports,
    expose: s.expose,
    resources: s.resources,
    restartPolicy: s.restartPolicy,
    placement,
  };
}
