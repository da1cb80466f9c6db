/**
 * A service's slots and the tasks that fill them: what a task of a spec is
 * (specHash, newTaskSpec), its deterministic identity, the nodes a global
 * service runs on, and the per-slot rules the reconcilers share: how long a
 * slot backs off after failures, and whether an ended task is replaced.
 * Pure functions, no I/O.
 */
import { createHash } from 'node:crypto';
import { backoffDelay } from '../../base/backoff.js';
import { isTerminal, statefulOrdinal, type ContainerSpec, type Node, type Service, type ServiceSpec, type Task, type TaskSpec } from '../../api/types.js';
import { stableStringify } from '../registry.js';
import { GLOBAL_TASK_LABEL, matchConstraint, untolerated } from '../../scheduler/filters.js';

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

/** specHash covers every field that shapes a task's container; changing any of them makes new tasks. */
export function specHash(svc: Service): string {
  const s = svc.spec;
  return createHash('sha256')
    .update(
      stableStringify({
        c: s.container,
        p: s.ports,
        e: s.expose,
        r: s.resources,
        rp: s.restartPolicy,
        pl: s.placement,
        ...(s.forceUpdate ? { f: s.forceUpdate } : {}),
        // A pod's other containers (absent for one container, so the hashes of existing services stay as they were).
        ...(s.containerName ? { cn: s.containerName } : {}),
        ...(s.sidecars?.length ? { sc: s.sidecars } : {}),
        ...(s.initContainers?.length ? { ic: s.initContainers } : {}),
      }),
    )
    .digest('hex')
    .slice(0, 12);
}

/** taskIdentity is deterministic, so a retried create collides instead of duplicating. */
export function taskIdentity(serviceName: string, serviceUid: string, slot: number | string, hash: string, attempt: number): { name: string; uid: string } {
  const h = createHash('sha256').update(`${serviceUid}/${slot}/${hash}/${attempt}`).digest('hex');
  return { name: `${serviceName}.${slot}.${h.slice(0, 10)}`, uid: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}` };
}

export function attemptOf(t: Task): number {
  return Number(t.metadata.labels['baton.attempt'] ?? '0');
}

export function created(t: Task): number {
  return Date.parse(t.metadata.creationTimestamp);
}

export function stateTime(t: Task): number {
  return Date.parse(t.status.timestamp);
}

/** shouldReplace: the task ended while it should run, and its policy wants it running again. */
export function shouldReplace(t: Task): boolean {
  const st = t.status.state;
  if (st === 'rejected' || st === 'orphaned' || st === 'shutdown') return true;
  const cond = t.spec.restartPolicy.condition;
  if (st === 'complete') return cond === 'any';
  if (st === 'failed') return cond !== 'none';
  return false;
}

/** failedSince counts the replacements that failed after cur in its slot (list is in attempt order). */
export function failedSince(list: Task[], cur: Task): number {
  let n = 0;
  for (let i = list.length - 1; i >= 0 && list[i] !== cur; i--) if (list[i]!.status.state === 'failed' || list[i]!.status.state === 'rejected') n++;
  return n;
}

/** slotBackoff is how long a slot waits before replacing a task after `failures` failures in a row (the restart policy's backoff). */
export function slotBackoff(svc: Service, failures: number): number {
  const rp = svc.spec.restartPolicy;
  return backoffDelay({ initialMs: rp.delayMs || 1000, maxMs: Math.max(rp.maxDelayMs, rp.delayMs) || 30_000, factor: rp.factor ?? 2 }, failures);
}

/** consecutiveFailures counts the slot's latest tasks that ended badly; a task lost with its node is not its own failure, and ends the count. */
export function consecutiveFailures(list: Task[], cur: Task | undefined): number {
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

/** statefulContainer: a StatefulSet slot's container: its ordinal's hostname and volumes. */
function statefulContainer(s: ServiceSpec, slot: number, c: ContainerSpec = s.container, name?: string): ContainerSpec {
  const ordinal = statefulOrdinal(slot);
  const mounts = s.stateful!.volumes.filter((v) => v.container === name).map((v) => ({ type: 'volume' as const, source: `${s.stack || 'baton'}_${v.name}-${s.shortName}-${ordinal}`, target: v.target, readOnly: v.readOnly }));
  return { ...c, hostname: `${s.shortName}-${ordinal}`, mounts: [...c.mounts, ...mounts] };
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
    container: s.stateful && !pinnedNode ? statefulContainer(s, slot) : s.container,
    ports: s.ports,
    expose: s.expose,
    resources: s.resources,
    restartPolicy: s.restartPolicy,
    placement,
    ...(s.containerName ? { containerName: s.containerName } : {}),
    ...(s.sidecars?.length ? { sidecars: s.stateful && !pinnedNode ? s.sidecars.map((p) => ({ ...p, container: statefulContainer(s, slot, p.container, p.name) })) : s.sidecars } : {}),
    ...(s.initContainers?.length ? { initContainers: s.stateful && !pinnedNode ? s.initContainers.map((p) => ({ ...p, container: statefulContainer(s, slot, p.container, p.name) })) : s.initContainers } : {}),
  };
}
