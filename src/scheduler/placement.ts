/**
 * Placer assigns pending tasks to nodes. It is pure business logic: it reads a
 * snapshot (nodes, all live tasks) and returns a data-only plan, so the full
 * scheduler of a later issue (feasibility chain, rankers, preemption) replaces
 * the implementation behind this interface and nothing around it.
 *
 * Every rejection is a constant reason with numbers, recorded on the task as
 * `status.pendingReason`, which is how `baton service ps` answers "why is my
 * task pending?".
 */
import type { Node, SchedulingDecision, Taint, TaintEffect, Task, Toleration } from '../api/types.js';
import { isTerminal } from '../api/types.js';

export interface Placement {
  task: Task;
  node: Node;
  decision: SchedulingDecision;
}

export interface Unplaced {
  task: Task;
  reason: string;
  decision?: SchedulingDecision;
}

/** Preemption: `victim` must stop so that `by` (of higher priority) can run on `node`. */
export interface Preemption {
  victim: Task;
  by: Task;
  node: string;
}

export interface PlacementPlan {
  placed: Placement[];
  unplaced: Unplaced[];
  /** Tasks to stop so that higher-priority pending tasks fit; their services replace them (back to pending). */
  preemptions?: Preemption[];
}

export const priorityOf = (t: Task): number => t.spec.placement.priority ?? 0;

export interface Placer {
  place(pending: Task[], nodes: Node[], tasks: Task[]): PlacementPlan;
}

export const REASON_NO_NODES = 'no nodes in the cluster';
export const REASON_NOT_READY = 'node not ready';
export const REASON_UNAVAILABLE = 'node availability is not active';
export const REASON_CPU = 'insufficient cpu';
export const REASON_MEMORY = 'insufficient memory';
export const REASON_CONSTRAINT = 'constraint not satisfied';
export const REASON_MAX_REPLICAS = 'max replicas per node reached';
export const REASON_TAINT = 'untolerated taint';
export const REASON_AFFINITY = 'affinity not satisfied';
export const REASON_ANTI_AFFINITY = 'anti-affinity not satisfied';

/** ServiceCounts gives a service's live tasks per node. */
export type ServiceCounts = (service: string) => ReadonlyMap<string, number> | undefined;

const TAINT_EFFECTS: readonly TaintEffect[] = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'];

/** parseTaint reads Kubernetes' taint form, key=value:Effect or key:Effect; a string says what is wrong. */
export function parseTaint(text: string): Taint | string {
  const m = /^([A-Za-z0-9][A-Za-z0-9._/-]*)(?:=([A-Za-z0-9._-]*))?:([A-Za-z]+)$/.exec(text.trim());
  if (!m) return `taint "${text}" must look like key=value:Effect or key:Effect (Effect: ${TAINT_EFFECTS.join(', ')})`;
  if (!TAINT_EFFECTS.includes(m[3] as TaintEffect)) return `taint "${text}": effect must be one of ${TAINT_EFFECTS.join(', ')}, got ${m[3]}`;
  return { key: m[1]!, ...(m[2] !== undefined && m[2] !== '' ? { value: m[2] } : {}), effect: m[3] as TaintEffect };
}

export function formatTaint(t: Taint): string {
  return `${t.key}${t.value !== undefined ? `=${t.value}` : ''}:${t.effect}`;
}

/** tolerates: some toleration matches the taint's key (or is a wildcard Exists), its value (Equal) and its effect (or all effects). */
export function tolerates(tolerations: readonly Toleration[] | undefined, t: Taint): boolean {
  return (tolerations ?? []).some(
    (o) =>
      (o.effect === undefined || o.effect === t.effect) &&
      (o.key === undefined ? o.operator === 'Exists' : o.key === t.key && (o.operator === 'Exists' || (o.value ?? '') === (t.value ?? ''))),
  );
}

/** untolerated lists a node's taints of the given effects that the tolerations do not cover. */
export function untolerated(node: Node, tolerations: readonly Toleration[] | undefined, effects: readonly TaintEffect[]): Taint[] {
  return (node.spec.taints ?? []).filter((t) => effects.includes(t.effect) && !tolerates(tolerations, t));
}

/** taskUsesResources: a task holds its reservation from assignment until it is terminal. */
export function taskUsesResources(t: Task): boolean {
  return t.spec.nodeName !== '' && !isTerminal(t.status.state);
}

/** allocatedOn sums reservations of tasks holding resources, per node. */
export function allocatedByNode(tasks: Task[]): Map<string, { cpus: number; memoryBytes: number; count: number }> {
  const m = new Map<string, { cpus: number; memoryBytes: number; count: number }>();
  for (const t of tasks) {
    if (!taskUsesResources(t)) continue;
    const a = m.get(t.spec.nodeName) ?? { cpus: 0, memoryBytes: 0, count: 0 };
    a.cpus += t.spec.resources.reservations.cpus;
    a.memoryBytes += t.spec.resources.reservations.memoryBytes;
    a.count++;
    m.set(t.spec.nodeName, a);
  }
  return m;
}

/** nodeAttribute reads the value a constraint or preference key names on a node (undefined when the node lacks it). */
export function nodeAttribute(key: string, node: Node): string | undefined {
  if (key === 'node.hostname') return node.status.hostname;
  if (key === 'node.name') return node.metadata.name;
  if (key === 'node.id') return node.metadata.uid;
  if (key === 'node.role') return 'worker';
  if (key === 'node.platform.os') return node.status.platform?.os;
  if (key === 'node.platform.arch') return node.status.platform?.arch;
  if (key.startsWith('node.labels.')) return node.metadata.labels[key.slice('node.labels.'.length)];
  return undefined;
}

/** matchConstraint evaluates one Swarm-style constraint ("node.labels.zone == a") against a node. */
export function matchConstraint(expr: string, node: Node): boolean {
  const m = /^\s*([\w.\-/]+)\s*(==|!=)\s*(.+?)\s*$/.exec(expr);
  if (!m) return false;
  const [, key, op, want] = m;
  const eq = nodeAttribute(key!, node) === want;
  return op === '==' ? eq : !eq;
}

export interface Alloc {
  cpus: number;
  memoryBytes: number;
  count: number;
}

/**
 * SpreadPlacer is the scheduler: for each pending task, in order, cheap
 * filters first (node ready, availability, constraints, replicas per node,
 * then resources), every rejection counted under a constant reason; then a
 * ranking of the nodes that pass:
 *
 * 1. spread preferences, outermost first: the label value (a node without the
 *    label is its own group) holding the fewest live tasks of the service;
 * 2. the strategy: spread (default) takes the node with the fewest tasks of
 *    the service, then the least allocated; binpack takes the most allocated,
 *    then the one with the most tasks;
 * 3. the node name, so equal inputs give equal plans.
 *
 * Each placement updates the snapshot, so one pass never over-commits a node.
 */
export class SpreadPlacer implements Placer {
  place(pending: Task[], nodes: Node[], tasks: Task[]): PlacementPlan {
    const plan: PlacementPlan = { placed: [], unplaced: [] };
    const alloc = allocatedByNode(tasks);
    // Live tasks per service per node.
    const perService = new Map<string, Map<string, number>>();
    const onNodes = (svc: string) => {
      let m = perService.get(svc);
      if (!m) perService.set(svc, (m = new Map()));
      return m;
    };
    const bumpService = (svc: string, node: string) => onNodes(svc).set(node, (onNodes(svc).get(node) ?? 0) + 1);
    for (const t of tasks) if (taskUsesResources(t)) bumpService(t.spec.serviceName, t.spec.nodeName);
    const byName = new Map(nodes.map((n) => [n.metadata.name, n]));
    // Live tasks per node, for preemption.
    const onNode = new Map<string, Task[]>();
    for (const t of tasks) if (taskUsesResources(t)) onNode.set(t.spec.nodeName, [...(onNode.get(t.spec.nodeName) ?? []), t]);
    const victimsTaken = new Set<string>();

    // Higher priority first; equal priorities keep their order (oldest first).
    const ordered = pending.map((t, i) => ({ t, i })).sort((a, b) => priorityOf(b.t) - priorityOf(a.t) || a.i - b.i).map((x) => x.t);
    for (const task of ordered) {
      if (nodes.length === 0) {
        plan.unplaced.push({ task, reason: REASON_NO_NODES });
        continue;
      }
      const svc = task.spec.serviceName;
      const mine = onNodes(svc);
      const need = task.spec.resources.reservations;
      const counts = new Map<string, number>();
      let maxFreeCpu = 0;
      let maxFreeMem = 0;
      const feasible: Node[] = [];
      for (const node of nodes) {
        const a = alloc.get(node.metadata.name);
        const reason = filterNode(task, node, a, mine, (x) => perService.get(x));
        if (reason === undefined || reason === REASON_CPU || reason === REASON_MEMORY) {
          maxFreeCpu = Math.max(maxFreeCpu, node.status.capacity.cpus - (a?.cpus ?? 0));
          maxFreeMem = Math.max(maxFreeMem, node.status.capacity.memoryBytes - (a?.memoryBytes ?? 0));
        }
        if (reason === undefined) feasible.push(node);
        else counts.set(reason, (counts.get(reason) ?? 0) + 1);
      }
      const decision = (ranked: SchedulingDecision['ranked']): SchedulingDecision => ({ evaluated: nodes.length, filtered: Object.fromEntries(counts), feasible: feasible.length, ranked });
      if (feasible.length === 0) {
        const parts = [...counts].map(([r, n]) => {
          if (r === REASON_CPU) return `${n} ${r} (need ${need.cpus}, most free ${round(maxFreeCpu)})`;
          if (r === REASON_MEMORY) return `${n} ${r} (need ${mib(need.memoryBytes)}, most free ${mib(maxFreeMem)})`;
          return `${n} ${r}`;
        });
        let reason = `0/${nodes.length} nodes available: ${parts.join(', ')}`;
        if (priorityOf(task) > 0 && (counts.has(REASON_CPU) || counts.has(REASON_MEMORY))) {
          const p = preempt(task, nodes, onNode, mine, (x) => perService.get(x), victimsTaken);
          if (p?.wait) reason += `; waiting for preempted task(s) to stop on ${p.node}`;
          else if (p) {
            for (const v of p.victims) {
              victimsTaken.add(v.metadata.name);
              (plan.preemptions ??= []).push({ victim: v, by: task, node: p.node });
            }
            reason += `; preempting ${p.victims.length} lower-priority task(s) on ${p.node}`;
          }
        }
        plan.unplaced.push({ task, reason, decision: decision([]) });
        continue;
      }
      const ranked = rank(task, feasible, alloc, mine, byName, (x) => perService.get(x));
      const best = byName.get(ranked[0]!.node)!;
      plan.placed.push({ task, node: best, decision: decision(ranked) });
      onNode.set(best.metadata.name, [...(onNode.get(best.metadata.name) ?? []), task]);
      const a = alloc.get(best.metadata.name) ?? { cpus: 0, memoryBytes: 0, count: 0 };
      a.cpus += need.cpus;
      a.memoryBytes += need.memoryBytes;
      a.count++;
      alloc.set(best.metadata.name, a);
      bumpService(svc, best.metadata.name);
    }
    return plan;
  }
}

/**
 * filterNode is the feasibility chain for one task on one node, cheapest
 * check first; it returns the constant reason the node is ruled out, or
 * undefined when the task fits. `mine` counts the service's live tasks per node.
 */
export function filterNode(task: Task, node: Node, a: Alloc | undefined, mine: ReadonlyMap<string, number>, counts: ServiceCounts = () => undefined): string | undefined {
  const pl = task.spec.placement;
  if (node.status.state !== 'ready') return REASON_NOT_READY;
  if (node.spec.availability !== 'active') return REASON_UNAVAILABLE;
  const taint = node.spec.taints?.length ? untolerated(node, pl.tolerations, ['NoSchedule', 'NoExecute'])[0] : undefined;
  if (taint) return `${REASON_TAINT} (${formatTaint(taint)})`;
  const failed = pl.constraints.find((c) => !matchConstraint(c, node));
  if (failed !== undefined) return `${REASON_CONSTRAINT} (${failed.replace(/\s+/g, '')})`;
  if (pl.maxReplicasPerNode && (mine.get(node.metadata.name) ?? 0) >= pl.maxReplicasPerNode) return `${REASON_MAX_REPLICAS} (${pl.maxReplicasPerNode})`;
  const here = (svc: string) => (svc === task.spec.serviceName ? mine : counts(svc))?.get(node.metadata.name) ?? 0;
  const needs = pl.affinity?.find((x) => x.required && here(x.service) === 0);
  if (needs) return `${REASON_AFFINITY} (no ${needs.service} task here)`;
  const avoids = pl.antiAffinity?.find((x) => x.required && here(x.service) > 0);
  if (avoids) return `${REASON_ANTI_AFFINITY} (${avoids.service} runs here)`;
  const need = task.spec.resources.reservations;
  if (need.cpus > 0 && node.status.capacity.cpus - (a?.cpus ?? 0) + 1e-9 < need.cpus) return REASON_CPU;
  if (need.memoryBytes > 0 && node.status.capacity.memoryBytes - (a?.memoryBytes ?? 0) < need.memoryBytes) return REASON_MEMORY;
  return undefined;
}

/** servicePerNode counts a service's live tasks per node, as filterNode wants them. */
export function servicePerNode(tasks: Task[], service: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of tasks) if (t.spec.serviceName === service && taskUsesResources(t)) m.set(t.spec.nodeName, (m.get(t.spec.nodeName) ?? 0) + 1);
  return m;
}

/**
 * preempt finds where a task that fits nowhere could run by stopping tasks of
 * lower priority, in kube-scheduler's order: on every node where only
 * resources stand in the way, take all lower-priority tasks away, then spare
 * (reprieve) them highest priority first while the task still fits; pick the
 * node whose victims have the lowest highest priority, then the fewest
 * victims. When tasks already stopping on a node would make room, it waits
 * for them instead of choosing more victims.
 */
function preempt(
  task: Task,
  nodes: Node[],
  onNode: Map<string, Task[]>,
  mine: ReadonlyMap<string, number>,
  counts: ServiceCounts,
  taken: ReadonlySet<string>,
): { node: string; victims: Task[]; wait?: boolean } | undefined {
  const prio = priorityOf(task);
  const sum = (ts: Task[]): Alloc => ts.reduce((a, t) => ({ cpus: a.cpus + t.spec.resources.reservations.cpus, memoryBytes: a.memoryBytes + t.spec.resources.reservations.memoryBytes, count: a.count + 1 }), { cpus: 0, memoryBytes: 0, count: 0 });
  let best: { node: string; victims: Task[]; key: [number, number] } | undefined;
  for (const node of nodes) {
    const here = onNode.get(node.metadata.name) ?? [];
    // Already leaving: told to stop (by an earlier preemption or anything else), or chosen in this pass.
    const staying = here.filter((t) => t.spec.desiredState === 'running' && !taken.has(t.metadata.name));
    if (staying.length < here.length && filterNode(task, node, sum(staying), mine, counts) === undefined) return { node: node.metadata.name, victims: [], wait: true };
    const lower = staying.filter((t) => priorityOf(t) < prio);
    if (lower.length === 0) continue;
    const keep = staying.filter((t) => priorityOf(t) >= prio);
    if (filterNode(task, node, sum(keep), mine, counts) !== undefined) continue;
    // Reprieve the most important victims first while the task still fits.
    const victims: Task[] = [];
    for (const v of [...lower].sort((a, b) => priorityOf(b) - priorityOf(a))) {
      if (filterNode(task, node, sum([...keep, v]), mine, counts) === undefined) keep.push(v);
      else victims.push(v);
    }
    if (victims.length === 0) continue;
    const key: [number, number] = [Math.max(...victims.map(priorityOf)), victims.length];
    if (!best || key[0] < best.key[0] || (key[0] === best.key[0] && (key[1] < best.key[1] || (key[1] === best.key[1] && node.metadata.name < best.node)))) {
      best = { node: node.metadata.name, victims, key };
    }
  }
  return best && { node: best.node, victims: best.victims };
}

/** usedFraction is how full a node is: the larger of its cpu and memory reservation shares. */
function usedFraction(node: Node, a: Alloc | undefined): number {
  if (!a) return 0;
  const c = node.status.capacity;
  return Math.max(c.cpus > 0 ? a.cpus / c.cpus : 0, c.memoryBytes > 0 ? a.memoryBytes / c.memoryBytes : 0);
}

/** TOP_RANKED is how many ranked nodes a decision keeps, as Nomad's AllocMetric keeps its top scores. */
const TOP_RANKED = 5;

/** rank orders the feasible nodes best first and returns the top ones with the keys that ordered them. */
function rank(task: Task, feasible: Node[], alloc: Map<string, Alloc>, mine: Map<string, number>, byName: Map<string, Node>, counts: ServiceCounts): SchedulingDecision['ranked'] {
  const pl = task.spec.placement;
  let candidates = feasible;
  // Spread preferences narrow the candidates to the emptiest group, level by level.
  for (const pref of pl.preferences ?? []) {
    const groupCount = new Map<string, number>();
    for (const [node, n] of mine) {
      const nd = byName.get(node);
      if (!nd) continue;
      const v = nodeAttribute(pref, nd) ?? '';
      groupCount.set(v, (groupCount.get(v) ?? 0) + n);
    }
    let min = Infinity;
    for (const nd of candidates) min = Math.min(min, groupCount.get(nodeAttribute(pref, nd) ?? '') ?? 0);
    candidates = candidates.filter((nd) => (groupCount.get(nodeAttribute(pref, nd) ?? '') ?? 0) === min);
  }
  const binpack = pl.strategy === 'binpack';
  const keyed = candidates.map((nd) => {
    const a = alloc.get(nd.metadata.name);
    const used = usedFraction(nd, a);
    // PreferNoSchedule: a node with such a taint the task does not tolerate comes last, whatever the strategy.
    let avoid = nd.spec.taints?.length ? untolerated(nd, pl.tolerations, ['PreferNoSchedule']).length : 0;
    // Preferred (anti-)affinity: each unmet preference counts against the node.
    const here = (svc: string) => (svc === task.spec.serviceName ? mine : counts(svc))?.get(nd.metadata.name) ?? 0;
    for (const x of pl.affinity ?? []) if (!x.required && here(x.service) === 0) avoid++;
    for (const x of pl.antiAffinity ?? []) if (!x.required && here(x.service) > 0) avoid++;
    const key = binpack ? [avoid, -used, -(a?.count ?? 0)] : [avoid, mine.get(nd.metadata.name) ?? 0, used, a?.count ?? 0];
    return { nd, key, used, count: a?.count ?? 0 };
  });
  // Keep only the best few: a partial selection, not a full sort of thousands of nodes.
  const top: typeof keyed = [];
  for (const k of keyed) {
    let i = top.length;
    while (i > 0 && (less(k.key, top[i - 1]!.key) || (equal(k.key, top[i - 1]!.key) && k.nd.metadata.name < top[i - 1]!.nd.metadata.name))) i--;
    if (i < TOP_RANKED) {
      top.splice(i, 0, k);
      if (top.length > TOP_RANKED) top.pop();
    }
  }
  return top.map((k) => ({
    node: k.nd.metadata.name,
    keys: (binpack ? { used: round(k.used), tasks: k.count } : { sameService: mine.get(k.nd.metadata.name) ?? 0, used: round(k.used), tasks: k.count }) as Record<string, number>,
  }));
}

function less(a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    if (Math.abs(a[i]! - b[i]!) < 1e-12) continue;
    return a[i]! < b[i]!;
  }
  return false;
}

function equal(a: number[], b: number[]): boolean {
  return a.every((x, i) => Math.abs(x - b[i]!) < 1e-12);
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

function mib(n: number): string {
  return `${Math.round(n / 1048576)}MiB`;
}
