/**
 * The scheduler's vocabulary: constant rejection reasons, the per-pass
 * snapshot of every node (what it holds, in integer millicores and bytes),
 * node classes, and the feasibility chain for one task on one node. Pure: no
 * I/O, no clocks. The placer (placement.ts), `baton explain --all-nodes` and
 * the apply preview all judge a node through `filterNode`, so the three never
 * disagree.
 */
import type { Node, Taint, TaintEffect, Task, Toleration } from '../api/types.js';
import { isTerminal } from '../api/types.js';

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
export const REASON_HOST_PORT = 'host port in use';
export const REASON_VOLUME = 'volume is on another node';

/** The label that pins a global service's task to its node (set by the service reconciler). */
export const GLOBAL_TASK_LABEL = 'baton.global.node';

export const priorityOf = (t: Task): number => t.spec.placement.priority ?? 0;

/** milli turns cores (Compose `cpus: '0.5'`) into integer millicores, so sums never drift. */
export const milli = (cpus: number): number => Math.round(cpus * 1000);

/** formatMilli prints millicores as Kubernetes does: 500m, 2. */
export function formatMilli(m: number): string {
  return m % 1000 === 0 ? String(m / 1000) : `${m}m`;
}

/** formatBytes prints a memory amount as Kubernetes does: 512Mi, 2Gi. */
export function formatBytes(n: number): string {
  const gi = n / 1024 ** 3;
  if (n >= 1024 ** 3 && Number.isInteger(Math.round(gi * 10) / 10)) return `${Math.round(gi)}Gi`;
  return `${Math.round(n / 1048576)}Mi`;
}

// ---------------------------------------------------------------- taints

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

// ---------------------------------------------------------------- constraints

/** nodeAttribute reads the value a constraint or preference key names on a node (undefined when the node lacks it). */
export function nodeAttribute(key: string, node: Node): string | undefined {
  if (key === 'node.hostname') return node.status.hostname;
  if (key === 'node.name') return node.metadata.name;
  if (key === 'node.id') return node.metadata.uid;
  if (key === 'node.role') return node.status.role ?? 'worker';
  if (key === 'node.platform.os') return node.status.platform?.os;
  if (key === 'node.platform.arch') return node.status.platform?.arch;
  if (key.startsWith('node.labels.')) return node.metadata.labels[key.slice('node.labels.'.length)];
  return undefined;
}

const CONSTRAINT = /^\s*([\w.\-/]+)\s*(==|!=)\s*(.+?)\s*$/;

/** matchConstraint evaluates one Swarm-style constraint ("node.labels.zone == a") against a node. */
export function matchConstraint(expr: string, node: Node): boolean {
  const m = CONSTRAINT.exec(expr);
  if (!m) return false;
  const [, key, op, want] = m;
  const eq = nodeAttribute(key!, node) === want;
  return op === '==' ? eq : !eq;
}

/** Attributes unique to one node: a constraint on them cannot be decided once per node class. */
const UNIQUE_ATTRIBUTES = new Set(['node.hostname', 'node.name', 'node.id']);

function namesUniqueAttribute(expr: string): boolean {
  const m = CONSTRAINT.exec(expr);
  return m !== null && UNIQUE_ATTRIBUTES.has(m[1]!);
}

// ---------------------------------------------------------------- what a task needs

/** taskUsesResources: a task holds its reservation from assignment until it is terminal. */
export function taskUsesResources(t: Task): boolean {
  return t.spec.nodeName !== '' && !isTerminal(t.status.state);
}

/**
 * fixedHostPorts are the host ports a task must bind itself, so two such
 * tasks never share a node: Compose `ports` in `mode: host` with a published
 * port (the engine binds that port on the task's node, as Swarm does).
 */
export function fixedHostPorts(t: Task): number[] {
  const out: number[] = [];
  for (const p of t.spec.ports) if (p.mode === 'host' && p.published !== undefined) out.push(p.protocol === 'udp' ? UDP_PORT_KEY + p.published : p.published);
  return out;
}

/** A UDP host port's key among a node's taken ports: its number plus this, so TCP 53 and UDP 53 do not collide. */
const UDP_PORT_KEY = 0x10000;

/** portName shows a fixedHostPorts key as people write it (8080, 53/udp). */
function portName(key: number): string {
  return key >= UDP_PORT_KEY ? `${key - UDP_PORT_KEY}/udp` : String(key);
}

/**
 * namedVolumes are the named volumes a task mounts. A volume lives on the
 * node that created it; a replicated service's task goes back to that node
 * (a global service has one copy per node by design, so it is exempt).
 */
export function namedVolumes(t: Task): string[] {
  if (t.metadata.labels[GLOBAL_TASK_LABEL] !== undefined) return [];
  const out: string[] = [];
  for (const m of t.spec.container.mounts) if (m.type === 'volume' && m.source) out.push(m.source);
  return out;
}

// ---------------------------------------------------------------- the snapshot

/** NodeState is one node as the scheduler sees it in one pass; placements update it. */
export interface NodeState {
  node: Node;
  name: string;
  /** Position in name order: ties between equal nodes go to the smaller name, so equal inputs give equal plans. */
  order: number;
  /** Index into Snapshot.nodes. */
  idx: number;
  cls: NodeClass;
  cpuCap: number;
  memCap: number;
  /** Reserved by live tasks: millicores, bytes, and how many tasks. */
  cpu: number;
  mem: number;
  count: number;
  /** Live tasks per service. */
  services: Map<string, number>;
  /** Fixed host ports held by live tasks. */
  ports: Set<number>;
  /** Live tasks, for preemption. */
  tasks: Task[];
  /** Bumped on every placement here: a queued score with an older version is stale. */
  version: number;
}

/** occupy records a live task on a node: its reservation, its service, its fixed ports. */
export function occupy(ns: NodeState, t: Task): void {
  const r = t.spec.resources.reservations;
  ns.cpu += milli(r.cpus);
  ns.mem += r.memoryBytes;
  ns.count++;
  ns.services.set(t.spec.serviceName, (ns.services.get(t.spec.serviceName) ?? 0) + 1);
  for (const p of fixedHostPorts(t)) ns.ports.add(p);
  ns.tasks.push(t);
  ns.version++;
}

/** NodeClass groups nodes that every static filter treats alike (state, availability, role, labels, platform, taints), as Nomad's computed node class does. */
export interface NodeClass {
  key: string;
  /** For people: "zone=a,disk=ssd" (or "no labels"), with taints and state when they matter. */
  label: string;
}

export interface Alloc {
  cpus: number;
  memoryBytes: number;
  count: number;
}

/**
 * Snapshot indexes nodes and live tasks once per pass: reservations per
 * node, tasks per service per node, fixed ports, and where each named volume
 * lives (nodes that report it, and nodes any task mounting it was assigned to).
 */
export class Snapshot {
  readonly nodes: NodeState[];
  readonly byName = new Map<string, NodeState>();
  /** Volume name → nodes holding it. */
  readonly volumes = new Map<string, Set<string>>();

  constructor(nodes: readonly Node[], tasks: readonly Task[]) {
    const classes = new Map<string, NodeClass>();
    const sorted = nodes.map((n) => n.metadata.name).sort();
    const order = new Map(sorted.map((n, i) => [n, i]));
    this.nodes = nodes.map((node, idx) => {
      const key = classKey(node);
      let cls = classes.get(key);
      if (!cls) classes.set(key, (cls = { key, label: classLabel(node) }));
      const ns: NodeState = {
        node, name: node.metadata.name, order: order.get(node.metadata.name)!, idx, cls,
        cpuCap: milli(node.status.capacity.cpus), memCap: node.status.capacity.memoryBytes,
        cpu: 0, mem: 0, count: 0, services: new Map(), ports: new Set(), tasks: [], version: 0,
      };
      this.byName.set(ns.name, ns);
      for (const v of node.status.volumes ?? []) this.volumeOn(v, ns.name);
      return ns;
    });
    for (const t of tasks) {
      if (t.spec.nodeName === '') continue;
      for (const v of namedVolumes(t)) this.volumeOn(v, t.spec.nodeName);
      if (!taskUsesResources(t)) continue;
      const ns = this.byName.get(t.spec.nodeName);
      if (ns) this.add(ns, t);
    }
  }

  private volumeOn(volume: string, node: string): void {
    let s = this.volumes.get(volume);
    if (!s) this.volumes.set(volume, (s = new Set()));
    s.add(node);
  }

  /** add records a task on a node, and the volumes it creates there. */
  add(ns: NodeState, t: Task): void {
    occupy(ns, t);
    for (const v of namedVolumes(t)) this.volumeOn(v, ns.name);
  }
}

function classKey(n: Node): string {
  const labels = Object.entries(n.metadata.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([n.status.state, n.spec.availability, n.status.role ?? 'worker', labels, n.status.platform ?? null, n.spec.taints ?? []]);
}

function classLabel(n: Node): string {
  const labels = Object.entries(n.metadata.labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`);
  const parts = [labels.length ? labels.join(',') : 'no labels'];
  if (n.status.role === 'manager') parts.push('manager');
  if (n.spec.taints?.length) parts.push(`taints ${n.spec.taints.map(formatTaint).join(',')}`);
  if (n.status.state !== 'ready') parts.push(n.status.state);
  if (n.spec.availability !== 'active') parts.push(n.spec.availability);
  return parts.join(' ');
}

/** allocatedByNode sums reservations of tasks holding resources, per node. */
export function allocatedByNode(tasks: readonly Task[]): Map<string, Alloc> {
  const m = new Map<string, { cpu: number; memoryBytes: number; count: number }>();
  for (const t of tasks) {
    if (!taskUsesResources(t)) continue;
    const a = m.get(t.spec.nodeName) ?? { cpu: 0, memoryBytes: 0, count: 0 };
    a.cpu += milli(t.spec.resources.reservations.cpus);
    a.memoryBytes += t.spec.resources.reservations.memoryBytes;
    a.count++;
    m.set(t.spec.nodeName, a);
  }
  return new Map([...m].map(([k, a]) => [k, { cpus: a.cpu / 1000, memoryBytes: a.memoryBytes, count: a.count }]));
}

// ---------------------------------------------------------------- the feasibility chain

/**
 * staticReason is the part of the chain that depends only on the node and
 * the task's placement (state, availability, taints, constraints). All but
 * constraints on a node's own name, hostname or id are the same for every
 * node of a class (classReason), so a pass decides them once per class;
 * those come last (identityReason).
 */
export function staticReason(task: Task, node: Node): string | undefined {
  return classReason(task, node) ?? identityReason(task, node);
}

export function classReason(task: Task, node: Node): string | undefined {
  const pl = task.spec.placement;
  if (node.status.state !== 'ready') return REASON_NOT_READY;
  if (node.spec.availability !== 'active') return REASON_UNAVAILABLE;
  const taint = node.spec.taints?.length ? untolerated(node, pl.tolerations, ['NoSchedule', 'NoExecute'])[0] : undefined;
  if (taint) return `${REASON_TAINT} (${formatTaint(taint)})`;
  const failed = pl.constraints.find((c) => !namesUniqueAttribute(c) && !matchConstraint(c, node));
  if (failed !== undefined) return constraintReason(failed);
  return undefined;
}

export function identityReason(task: Task, node: Node): string | undefined {
  const failed = task.spec.placement.constraints.find((c) => namesUniqueAttribute(c) && !matchConstraint(c, node));
  return failed === undefined ? undefined : constraintReason(failed);
}

/** hasIdentityConstraint: the task names a node by its own name, hostname or id. */
export function hasIdentityConstraint(task: Task): boolean {
  return task.spec.placement.constraints.some(namesUniqueAttribute);
}

const constraintReason = (c: string) => `${REASON_CONSTRAINT} (${c.replace(/\s+/g, '')})`;

/**
 * dynamicReason is the rest of the chain, which changes as tasks are placed:
 * replicas per node, required (anti-)affinity, fixed host ports, volumes,
 * then cpu and memory. Every check only gets harder as a pass places tasks,
 * except required affinity, which a placement can satisfy.
 */
export function dynamicReason(task: Task, ns: NodeState, snap: Snapshot, need: Need): string | undefined {
  const pl = task.spec.placement;
  const mine = ns.services.get(task.spec.serviceName) ?? 0;
  if (pl.maxReplicasPerNode && mine >= pl.maxReplicasPerNode) return `${REASON_MAX_REPLICAS} (${pl.maxReplicasPerNode})`;
  if (pl.affinity?.length || pl.antiAffinity?.length) {
    const needs = pl.affinity?.find((x) => x.required && (ns.services.get(x.service) ?? 0) === 0);
    if (needs) return `${REASON_AFFINITY} (no ${needs.service} task here)`;
    const avoids = pl.antiAffinity?.find((x) => x.required && (ns.services.get(x.service) ?? 0) > 0);
    if (avoids) return `${REASON_ANTI_AFFINITY} (${avoids.service} runs here)`;
  }
  for (const p of need.ports) if (ns.ports.has(p)) return `${REASON_HOST_PORT} (${portName(p)})`;
  for (const v of need.volumes) {
    const holders = snap.volumes.get(v);
    if (holders && !holders.has(ns.name)) return `${REASON_VOLUME} (${v} is on ${[...holders].sort().join(', ')})`;
  }
  if (need.cpu > 0 && ns.cpuCap - ns.cpu < need.cpu) return REASON_CPU;
  if (need.mem > 0 && ns.memCap - ns.mem < need.mem) return REASON_MEMORY;
  return undefined;
}

/** Need is what one task asks of a node, computed once per task group. */
export interface Need {
  cpu: number;
  mem: number;
  ports: number[];
  volumes: string[];
}

export function needOf(t: Task): Need {
  return { cpu: milli(t.spec.resources.reservations.cpus), mem: t.spec.resources.reservations.memoryBytes, ports: fixedHostPorts(t), volumes: namedVolumes(t) };
}

/** filterNode is the whole chain for one task on one node: the constant reason it is ruled out, or undefined when it fits. */
export function filterNode(task: Task, ns: NodeState, snap: Snapshot, need: Need = needOf(task)): string | undefined {
  return staticReason(task, ns.node) ?? dynamicReason(task, ns, snap, need);
}

/** isResourceReason: the node is ruled out only by cpu or memory (preemption could help). */
export const isResourceReason = (r: string | undefined): boolean => r === REASON_CPU || r === REASON_MEMORY;
