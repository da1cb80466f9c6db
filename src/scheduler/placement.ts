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
import type { Node, Task } from '../api/types.js';
import { isTerminal } from '../api/types.js';

export interface Placement {
  task: Task;
  node: Node;
}

export interface Unplaced {
  task: Task;
  reason: string;
}

export interface PlacementPlan {
  placed: Placement[];
  unplaced: Unplaced[];
}

export interface Placer {
  place(pending: Task[], nodes: Node[], tasks: Task[]): PlacementPlan;
}

export const REASON_NO_NODES = 'no nodes in the cluster';
export const REASON_NOT_READY = 'node not ready';
export const REASON_UNAVAILABLE = 'node availability is not active';
export const REASON_CPU = 'insufficient cpu';
export const REASON_MEMORY = 'insufficient memory';
export const REASON_CONSTRAINT = 'constraint not satisfied';

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

/** matchConstraint evaluates one Swarm-style constraint ("node.labels.zone == a") against a node. */
export function matchConstraint(expr: string, node: Node): boolean {
  const m = /^\s*([\w.\-]+)\s*(==|!=)\s*(.+?)\s*$/.exec(expr);
  if (!m) return false;
  const [, key, op, want] = m;
  let have: string | undefined;
  if (key === 'node.hostname') have = node.status.hostname;
  else if (key === 'node.name') have = node.metadata.name;
  else if (key === 'node.id') have = node.metadata.uid;
  else if (key === 'node.role') have = 'worker';
  else if (key!.startsWith('node.labels.')) have = node.metadata.labels[key!.slice('node.labels.'.length)];
  else if (key!.startsWith('engine.labels.')) have = undefined;
  const eq = have === want;
  return op === '==' ? eq : !eq;
}

/**
 * SpreadPlacer fits reservations against capacity and spreads a service's
 * tasks: the node with the fewest tasks of the same service wins, then the one
 * with the fewest tasks overall, then the name (for determinism).
 */
export class SpreadPlacer implements Placer {
  place(pending: Task[], nodes: Node[], tasks: Task[]): PlacementPlan {
    const plan: PlacementPlan = { placed: [], unplaced: [] };
    const alloc = allocatedByNode(tasks);
    const perService = new Map<string, number>();
    const svcKey = (svc: string, node: string) => `${svc}\u0000${node}`;
    for (const t of tasks) if (taskUsesResources(t)) perService.set(svcKey(t.spec.serviceName, t.spec.nodeName), (perService.get(svcKey(t.spec.serviceName, t.spec.nodeName)) ?? 0) + 1);

    for (const task of pending) {
      if (nodes.length === 0) {
        plan.unplaced.push({ task, reason: REASON_NO_NODES });
        continue;
      }
      const need = task.spec.resources.reservations;
      const counts = new Map<string, number>();
      const bump = (r: string) => counts.set(r, (counts.get(r) ?? 0) + 1);
      let best: Node | undefined;
      let bestScore: [number, number, string] | undefined;
      let maxFreeCpu = 0;
      let maxFreeMem = 0;
      for (const node of nodes) {
        if (node.status.state !== 'ready') { bump(REASON_NOT_READY); continue; }
        if (node.spec.availability !== 'active') { bump(REASON_UNAVAILABLE); continue; }
        const constraints = task.spec.placement.constraints;
        if (!constraints.every((c) => matchConstraint(c, node))) { bump(REASON_CONSTRAINT); continue; }
        const a = alloc.get(node.metadata.name) ?? { cpus: 0, memoryBytes: 0, count: 0 };
        const freeCpu = node.status.capacity.cpus - a.cpus;
        const freeMem = node.status.capacity.memoryBytes - a.memoryBytes;
        maxFreeCpu = Math.max(maxFreeCpu, freeCpu);
        maxFreeMem = Math.max(maxFreeMem, freeMem);
        if (need.cpus > 0 && freeCpu + 1e-9 < need.cpus) { bump(REASON_CPU); continue; }
        if (need.memoryBytes > 0 && freeMem < need.memoryBytes) { bump(REASON_MEMORY); continue; }
        const score: [number, number, string] = [perService.get(svcKey(task.spec.serviceName, node.metadata.name)) ?? 0, a.count, node.metadata.name];
        if (!bestScore || score[0] < bestScore[0] || (score[0] === bestScore[0] && (score[1] < bestScore[1] || (score[1] === bestScore[1] && score[2] < bestScore[2])))) {
          best = node;
          bestScore = score;
        }
      }
      if (!best) {
        const parts = [...counts].map(([r, n]) => {
          if (r === REASON_CPU) return `${n} ${r} (need ${need.cpus}, most free ${round(maxFreeCpu)})`;
          if (r === REASON_MEMORY) return `${n} ${r} (need ${mib(need.memoryBytes)}, most free ${mib(maxFreeMem)})`;
          return `${n} ${r}`;
        });
        plan.unplaced.push({ task, reason: `0/${nodes.length} nodes available: ${parts.join(', ')}` });
        continue;
      }
      plan.placed.push({ task, node: best });
      const a = alloc.get(best.metadata.name) ?? { cpus: 0, memoryBytes: 0, count: 0 };
      a.cpus += need.cpus;
      a.memoryBytes += need.memoryBytes;
      a.count++;
      alloc.set(best.metadata.name, a);
      const k = svcKey(task.spec.serviceName, best.metadata.name);
      perService.set(k, (perService.get(k) ?? 0) + 1);
    }
    return plan;
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

function mib(n: number): string {
  return `${Math.round(n / 1048576)}MiB`;
}
