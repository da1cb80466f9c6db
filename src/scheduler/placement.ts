/**
 * Placer assigns pending tasks to nodes. It is pure business logic: it reads a
 * snapshot (nodes, all tasks) and returns a data-only plan; the scheduler
 * controller is the single applier that writes it.
 *
 * Every rejection is a constant reason (filters.ts), counted per reason and
 * per class of identical nodes, and recorded on the task as
 * `status.scheduling`; a task that fits nowhere keeps a one-line summary in
 * `status.pendingReason`, which is how `baton service ps` answers "why is my
 * task pending?".
 */
import TinyQueue from 'tinyqueue';
import type { Node, SchedulingDecision, Task } from '../api/types.js';
import {
  dynamicReason,
  filterNode,
  formatBytes,
  formatMilli,
  isResourceReason,
  needOf,
  nodeAttribute,
  priorityOf,
  REASON_CPU,
  REASON_MEMORY,
  REASON_NO_NODES,
  classReason,
  hasIdentityConstraint,
  identityReason,
  occupy,
  Snapshot,
  untolerated,
  type Need,
  type NodeState,
} from './filters.js';

export * from './filters.js';

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

/**
 * PlacementSession is one pass fed in parts: every part is placed against the
 * same snapshot, updated by the parts before it, so feeding a list in parts
 * plans exactly what one call with the whole list would (when it is already in
 * priority order). A caller can yield between parts; the session does no I/O.
 */
export interface PlacementSession {
  place(pending: Task[]): void;
  readonly plan: PlacementPlan;
}

export interface Placer {
  place(pending: Task[], nodes: Node[], tasks: Task[]): PlacementPlan;
  begin(nodes: Node[], tasks: Task[]): PlacementSession;
}

/** TOP_RANKED is how many ranked nodes a decision keeps, as Nomad's AllocMetric keeps its top scores. */
const TOP_RANKED = 5;
/** At most this many node classes are named in a decision's classFiltered. */
const TOP_CLASSES = 10;

/** A queued score for one node; stale once the node's version moves on. */
interface Entry {
  ns: NodeState;
  version: number;
  /** A spread preference over values that each node holds alone (node.id): the service's tasks on this node, before anything else. */
  kp: number;
  k0: number;
  k1: number;
  k2: number;
  k3: number;
}

const compareEntries = (a: Entry, b: Entry): number => a.kp - b.kp || a.k0 - b.k0 || a.k1 - b.k1 || a.k2 - b.k2 || a.k3 - b.k3 || a.ns.order - b.ns.order;

/**
 * A Group is the tasks of one pass that ask the same of a node (service,
 * placement, reservations, fixed ports, volumes): the static filters run once
 * for the group, per node class, and the feasible nodes wait in a heap
 * ordered by score.
 */
interface Group {
  sample: Task;
  need: Need;
  binpack: boolean;
  /** The heap path applies: every dynamic check only gets harder within a pass, and the score needs no other service's counts. */
  fast: boolean;
  /** 1 while a node passes the static filters and no dynamic check has ruled it out for this group. */
  member: Uint8Array;
  /** Nodes that pass the static filters. */
  members: NodeState[];
  /** PreferNoSchedule taints the group does not tolerate, per node index. */
  avoid: Uint8Array;
  staticCounts: Map<string, number>;
  staticByClass: Map<string, number>;
  /** Heap path: nodes ruled out by dynamic checks so far. */
  dynCounts: Map<string, number>;
  dynByClass: Map<string, number>;
  resourceOut: NodeState[];
  live: number;
  /** The one spread preference (heap path), with one heap per label value. */
  pref?: string;
  /**
   * The one spread preference names a value each node holds alone (node.id,
   * node.name, a hostname no other node shares): spreading over it is one
   * per node, round robin, as Swarm's. Its groups are the nodes, so the
   * service's count on each node leads the node's score in one heap (one
   * heap per node would cost a scan of every heap per task).
   */
  perNode?: boolean;
  heaps: Map<string, TinyQueue<Entry>>;
  /** Set once a task of the group found no node: later ones fail the same way (Nomad's coalesced failures). */
  failed?: { reason: string; decision: SchedulingDecision };
}

/**
 * SpreadPlacer is the scheduler. Pending tasks go highest priority first
 * (oldest first among equals). For each task, cheap filters first (node
 * ready, availability, taints, constraints, replicas per node, required
 * (anti-)affinity, fixed host ports, volumes, then cpu and memory), then a
 * ranking of the nodes that pass:
 *
 * 1. spread preferences, outermost first: the label value (a node without the
 *    label is its own group) holding the fewest live tasks of the service;
 * 2. untolerated PreferNoSchedule taints and unmet preferred (anti-)affinity;
 * 3. the strategy: spread (default) takes the node with the fewest tasks of
 *    the service, then the least allocated; binpack takes the most allocated,
 *    then the one with the most tasks;
 * 4. the node name, so equal inputs give equal plans.
 *
 * Speed comes from not judging every node for every task, with the same
 * answer a full scan would give: static filters run once per group of
 * identical tasks and node class; each group keeps its nodes in a heap by
 * score; a placement only raises a spread score, so a stale heap entry is a
 * lower bound, re-scored when it reaches the top (binpack scores fall, so a
 * placement re-queues that node at once). A group whose checks are not
 * monotone (required affinity, preferred affinity, nested preferences) scans
 * its nodes per task instead.
 */
export class SpreadPlacer implements Placer {
  /** heap: false makes every group scan (the reference the tests compare the heap path with). */
  constructor(private readonly opts: { heap?: boolean } = {}) {}

  place(pending: Task[], nodes: Node[], tasks: Task[]): PlacementPlan {
    return new Pass(new Snapshot(nodes, tasks), this.opts.heap !== false).run(pending);
  }

  begin(nodes: Node[], tasks: Task[]): PlacementSession {
    const pass = new Pass(new Snapshot(nodes, tasks), this.opts.heap !== false);
    return {
      place: (pending) => void pass.run(pending),
      get plan() {
        return pass.plan;
      },
    };
  }
}

class Pass {
  readonly plan: PlacementPlan = { placed: [], unplaced: [] };
  private readonly groups = new Map<string, Group>();
  private readonly binpackGroups: Group[] = [];
  /** Static verdicts per (constraints, tolerations) and node class. */
  private readonly staticCache = new Map<string, Map<string, string | null>>();
  /** Live tasks of a service per value of a preference label: `${service}\0${pref}` → value → count. */
  private readonly prefCounts = new Map<string, Map<string, number>>();
  private readonly prefsOf = new Map<string, string[]>();
  /** Per preference: whether every node holds a value of it that no other node has. */
  private readonly unique = new Map<string, boolean>();
  private readonly victimsTaken = new Set<string>();

  constructor(
    private readonly snap: Snapshot,
    private readonly heap: boolean,
  ) {}

  /** run places `pending` (highest priority first, else in the order given) and returns the plan so far; it may be called again with more. */
  run(pending: Task[]): PlacementPlan {
    const ordered = pending.map((t, i) => ({ t, i })).sort((a, b) => priorityOf(b.t) - priorityOf(a.t) || a.i - b.i).map((x) => x.t);
    for (const task of ordered) {
      if (this.snap.nodes.length === 0) {
        this.plan.unplaced.push({ task, reason: REASON_NO_NODES });
        continue;
      }
      const g = this.group(task);
      if (g.failed && priorityOf(task) === 0) {
        this.plan.unplaced.push({ task, reason: g.failed.reason, decision: g.failed.decision });
        continue;
      }
      const choice = g.fast ? this.chooseHeap(g) : this.chooseScan(g, task);
      if (!choice) {
        this.fail(g, task);
        continue;
      }
      this.plan.placed.push({ task, node: choice.best.node, decision: choice.decision });
      this.commit(choice.best, task);
    }
    return this.plan;
  }

  // ---------------------------------------------------------------- groups

  private group(task: Task): Group {
    const pl = task.spec.placement;
    const need = needOf(task);
    const key = JSON.stringify([task.spec.serviceName, pl.constraints, pl.preferences ?? null, pl.maxReplicasPerNode ?? 0, pl.strategy ?? '', pl.tolerations ?? null, pl.affinity ?? null, pl.antiAffinity ?? null, need, task.spec.avoidNodes ?? null]);
    let g = this.groups.get(key);
    if (g) return g;
    const n = this.snap.nodes.length;
    const fast =
      this.heap &&
      (pl.preferences?.length ?? 0) <= 1 &&
      !pl.affinity?.length &&
      !(pl.antiAffinity ?? []).some((x) => !x.required);
    g = {
      sample: task, need, binpack: pl.strategy === 'binpack', fast,
      member: new Uint8Array(n), members: [], avoid: new Uint8Array(n),
      staticCounts: new Map(), staticByClass: new Map(), dynCounts: new Map(), dynByClass: new Map(), resourceOut: [], live: 0,
      ...(fast && pl.preferences?.length === 1 ? (this.perNode(pl.preferences[0]!) ? { perNode: true } : { pref: pl.preferences[0] }) : {}),
      heaps: new Map(),
    };
    const identity = hasIdentityConstraint(task);
    const cacheKey = JSON.stringify([pl.constraints, pl.tolerations ?? null]);
    let cache = this.staticCache.get(cacheKey);
    if (!cache) this.staticCache.set(cacheKey, (cache = new Map()));
    const avoidCache = new Map<string, number>();
    const penalized = new Set(task.spec.avoidNodes ?? []);
    for (const ns of this.snap.nodes) {
      let reason: string | undefined;
      const hit = cache.get(ns.cls.key);
      if (hit === undefined) cache.set(ns.cls.key, (reason = classReason(task, ns.node)) ?? null);
      else reason = hit ?? undefined;
      if (reason === undefined && identity) reason = identityReason(task, ns.node);
      if (reason !== undefined) {
        bump(g.staticCounts, reason);
        bump(g.staticByClass, ns.cls.label);
        continue;
      }
      g.member[ns.idx] = 1;
      g.members.push(ns);
      let avoid = avoidCache.get(ns.cls.key);
      if (avoid === undefined) avoidCache.set(ns.cls.key, (avoid = ns.node.spec.taints?.length ? untolerated(ns.node, pl.tolerations, ['PreferNoSchedule']).length : 0));
      // Nomad's reschedule penalty: a node where this slot failed past its restart policy ranks as if it had one more untolerated PreferNoSchedule taint.
      g.avoid[ns.idx] = avoid + (penalized.has(ns.name) ? 1 : 0);
    }
    g.live = g.members.length;
    if (fast) {
      for (const ns of g.members) this.heapFor(g, ns).data.push(this.entry(g, ns));
      // Heapify each queue once, rather than pushing one by one.
      for (const [v, h] of g.heaps) g.heaps.set(v, new TinyQueue(h.data, compareEntries));
      if (g.binpack) this.binpackGroups.push(g);
    }
    this.groups.set(key, g);
    return g;
  }

  /** perNode: every node has a value of `pref` that no other node has (node.id always; node.hostname unless agents share a machine). */
  private perNode(pref: string): boolean {
    let u = this.unique.get(pref);
    if (u === undefined) {
      const seen = new Set<string>();
      u = this.snap.nodes.every((ns) => {
        const v = nodeAttribute(pref, ns.node);
        if (v === undefined || seen.has(v)) return false;
        seen.add(v);
        return true;
      });
      this.unique.set(pref, u);
    }
    return u;
  }

  private heapFor(g: Group, ns: NodeState): TinyQueue<Entry> {
    const v = g.pref === undefined ? '' : (nodeAttribute(g.pref, ns.node) ?? '');
    let h = g.heaps.get(v);
    if (!h) g.heaps.set(v, (h = new TinyQueue<Entry>([], compareEntries)));
    return h;
  }

  private entry(g: Group, ns: NodeState, avoid = g.avoid[ns.idx]!): Entry {
    const used = usedFraction(ns);
    const mine = ns.services.get(g.sample.spec.serviceName) ?? 0;
    const kp = g.perNode ? mine : 0;
    return g.binpack ? { ns, version: ns.version, kp, k0: avoid, k1: -used, k2: -ns.count, k3: 0 } : { ns, version: ns.version, kp, k0: avoid, k1: mine, k2: used, k3: ns.count };
  }

  // ---------------------------------------------------------------- heap path

  /** top makes the heap's first entry current and feasible, ruling out (for good, for this group) nodes that no longer fit. */
  private top(g: Group, h: TinyQueue<Entry>): Entry | undefined {
    for (;;) {
      const e = h.peek();
      if (!e) return undefined;
      if (!g.member[e.ns.idx]) {
        h.pop();
        continue;
      }
      if (e.version !== e.ns.version) {
        h.pop();
        // Binpack re-queued the node when it changed; spread re-scores it now (its score only rose).
        if (!g.binpack) h.push(this.entry(g, e.ns));
        continue;
      }
      const reason = dynamicReason(g.sample, e.ns, this.snap, g.need);
      if (reason === undefined) return e;
      h.pop();
      g.member[e.ns.idx] = 0;
      g.live--;
      bump(g.dynCounts, reason);
      bump(g.dynByClass, e.ns.cls.label);
      if (isResourceReason(reason)) g.resourceOut.push(e.ns);
    }
  }

  /** candidates are the heaps a task may take from: all of them, or those of the emptiest preference values that still have a feasible node. */
  private candidates(g: Group): TinyQueue<Entry>[] {
    if (g.pref === undefined) {
      const h = g.heaps.get('');
      return h && this.top(g, h) ? [h] : [];
    }
    const counts = this.prefCount(g.sample.spec.serviceName, g.pref);
    for (;;) {
      let min = Infinity;
      for (const [v, h] of g.heaps) if (h.length) min = Math.min(min, counts.get(v) ?? 0);
      if (min === Infinity) return [];
      const tied = [...g.heaps].filter(([v, h]) => h.length && (counts.get(v) ?? 0) === min).map(([, h]) => h);
      if (tied.every((h) => this.top(g, h))) return tied;
    }
  }

  private chooseHeap(g: Group): { best: NodeState; decision: SchedulingDecision } | undefined {
    const heaps = this.candidates(g);
    if (heaps.length === 0) return undefined;
    // The best few across the candidate heaps: take them out, then put them back.
    const taken: [TinyQueue<Entry>, Entry][] = [];
    while (taken.length < TOP_RANKED) {
      let best: [TinyQueue<Entry>, Entry] | undefined;
      for (const h of heaps) {
        const e = this.top(g, h);
        if (e && (!best || compareEntries(e, best[1]) < 0)) best = [h, e];
      }
      // As with label values, only the emptiest nodes are candidates (and ranked), as a scan narrows them.
      if (!best || (taken.length > 0 && best[1].kp !== taken[0]![1].kp)) break;
      best[0].pop();
      taken.push(best);
    }
    for (const [h, e] of taken) h.push(e);
    const ranked = taken.map(([, e]) => rankedEntry(g, e.ns, usedFraction(e.ns)));
    return { best: taken[0]![1].ns, decision: this.decision(g, g.dynCounts, g.dynByClass, g.live, ranked) };
  }

  // ---------------------------------------------------------------- scan path

  private chooseScan(g: Group, task: Task): { best: NodeState; decision: SchedulingDecision } | undefined {
    const counts = new Map<string, number>();
    const byClass = new Map<string, number>();
    let feasible: NodeState[] = [];
    for (const ns of g.members) {
      const reason = dynamicReason(task, ns, this.snap, g.need);
      if (reason === undefined) feasible.push(ns);
      else {
        bump(counts, reason);
        bump(byClass, ns.cls.label);
      }
    }
    if (feasible.length === 0) {
      g.resourceOut = g.members.filter((ns) => isResourceReason(dynamicReason(task, ns, this.snap, g.need)));
      g.dynCounts = counts;
      g.dynByClass = byClass;
      return undefined;
    }
    const total = feasible.length;
    const pl = task.spec.placement;
    const svc = task.spec.serviceName;
    // Spread preferences narrow the candidates to the emptiest group, level by level.
    for (const pref of pl.preferences ?? []) {
      const groupCount = this.prefCount(svc, pref);
      let min = Infinity;
      for (const ns of feasible) min = Math.min(min, groupCount.get(nodeAttribute(pref, ns.node) ?? '') ?? 0);
      feasible = feasible.filter((ns) => (groupCount.get(nodeAttribute(pref, ns.node) ?? '') ?? 0) === min);
    }
    const top: Entry[] = [];
    for (const ns of feasible) {
      // Preferred (anti-)affinity: each unmet preference counts against the node, as an untolerated PreferNoSchedule taint does.
      let avoid = g.avoid[ns.idx]!;
      for (const x of pl.affinity ?? []) if (!x.required && (ns.services.get(x.service) ?? 0) === 0) avoid++;
      for (const x of pl.antiAffinity ?? []) if (!x.required && (ns.services.get(x.service) ?? 0) > 0) avoid++;
      const e = this.entry(g, ns, avoid);
      // Keep only the best few: a partial selection, not a full sort of thousands of nodes.
      let i = top.length;
      while (i > 0 && compareEntries(e, top[i - 1]!) < 0) i--;
      if (i < TOP_RANKED) {
        top.splice(i, 0, e);
        if (top.length > TOP_RANKED) top.pop();
      }
    }
    const ranked = top.map((e) => rankedEntry(g, e.ns, usedFraction(e.ns)));
    return { best: top[0]!.ns, decision: this.decision(g, counts, byClass, total, ranked) };
  }

  // ---------------------------------------------------------------- outcomes

  private decision(g: Group, dyn: Map<string, number>, dynByClass: Map<string, number>, feasible: number, ranked: SchedulingDecision['ranked']): SchedulingDecision {
    const filtered = Object.fromEntries(merge(g.staticCounts, dyn));
    const classes = [...merge(g.staticByClass, dynByClass)].sort((a, b) => b[1] - a[1]).slice(0, TOP_CLASSES);
    return { evaluated: this.snap.nodes.length, filtered, feasible, ranked, ...(classes.length ? { classFiltered: Object.fromEntries(classes) } : {}) };
  }

  private fail(g: Group, task: Task): void {
    const counts = merge(g.staticCounts, g.dynCounts);
    // Most common reason first, as the example and kube-scheduler's message read.
    const sorted = [...counts].sort(([ra, a], [rb, b]) => b - a || (ra < rb ? -1 : ra > rb ? 1 : 0));
    let maxCpu = 0;
    let maxMem = 0;
    for (const ns of g.resourceOut) {
      maxCpu = Math.max(maxCpu, ns.cpuCap - ns.cpu);
      maxMem = Math.max(maxMem, ns.memCap - ns.mem);
    }
    const parts = sorted.map(([r, n]) => {
      if (r === REASON_CPU) return `${n} ${r} (need ${formatMilli(g.need.cpu)}, most free ${formatMilli(maxCpu)})`;
      if (r === REASON_MEMORY) return `${n} ${r} (need ${formatBytes(g.need.mem)}, most free ${formatBytes(maxMem)})`;
      return `${n} ${r}`;
    });
    let reason = `0/${this.snap.nodes.length} nodes available: ${parts.join(', ')}`;
    const decision = this.decision(g, g.dynCounts, g.dynByClass, 0, []);
    if (priorityOf(task) > 0 && (counts.has(REASON_CPU) || counts.has(REASON_MEMORY))) {
      const p = preempt(task, this.snap, g.need, this.victimsTaken);
      if (p?.wait) reason += `; waiting for preempted task(s) to stop on ${p.node}`;
      else if (p) {
        for (const v of p.victims) {
          this.victimsTaken.add(v.metadata.name);
          (this.plan.preemptions ??= []).push({ victim: v, by: task, node: p.node });
        }
        reason += `; preempting ${p.victims.length} lower-priority task(s) on ${p.node}`;
      }
    }
    if (g.fast || !task.spec.placement.affinity?.some((x) => x.required)) g.failed = { reason, decision };
    this.plan.unplaced.push({ task, reason, decision });
  }

  private commit(ns: NodeState, task: Task): void {
    this.snap.add(ns, task);
    const svc = task.spec.serviceName;
    for (const pref of this.prefsOf.get(svc) ?? []) {
      const m = this.prefCounts.get(`${svc}\0${pref}`)!;
      const v = nodeAttribute(pref, ns.node) ?? '';
      m.set(v, (m.get(v) ?? 0) + 1);
    }
    // A binpack score falls as a node fills: queue the node again with its new score.
    for (const g of this.binpackGroups) if (g.member[ns.idx]) this.heapFor(g, ns).push(this.entry(g, ns));
  }

  /** prefCount: the service's live tasks per value of a preference label, over every node. */
  private prefCount(svc: string, pref: string): Map<string, number> {
    const key = `${svc}\0${pref}`;
    let m = this.prefCounts.get(key);
    if (m) return m;
    m = new Map();
    for (const ns of this.snap.nodes) {
      const n = ns.services.get(svc) ?? 0;
      if (!n) continue;
      const v = nodeAttribute(pref, ns.node) ?? '';
      m.set(v, (m.get(v) ?? 0) + n);
    }
    this.prefCounts.set(key, m);
    this.prefsOf.set(svc, [...(this.prefsOf.get(svc) ?? []), pref]);
    return m;
  }
}

function rankedEntry(g: Group, ns: NodeState, used: number): SchedulingDecision['ranked'][number] {
  const keys: Record<string, number> = g.binpack ? { used: round(used), tasks: ns.count } : { sameService: ns.services.get(g.sample.spec.serviceName) ?? 0, used: round(used), tasks: ns.count };
  // Untolerated PreferNoSchedule taints and the failure penalty, when they weigh.
  if (g.avoid[ns.idx]) keys.avoid = g.avoid[ns.idx]!;
  return { node: ns.name, keys };
}

/** usedFraction is how full a node is: the larger of its cpu and memory reservation shares. */
function usedFraction(ns: NodeState): number {
  return Math.max(ns.cpuCap > 0 ? ns.cpu / ns.cpuCap : 0, ns.memCap > 0 ? ns.mem / ns.memCap : 0);
}

/** hypothetical is a node as it would be with only `keep` running: what preemption asks the filters about. */
function hypothetical(ns: NodeState, keep: readonly Task[]): NodeState {
  const h: NodeState = { ...ns, cpu: 0, mem: 0, count: 0, services: new Map(), ports: new Set(), tasks: [] };
  for (const t of keep) occupy(h, t);
  return h;
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
function preempt(task: Task, snap: Snapshot, need: Need, taken: ReadonlySet<string>): { node: string; victims: Task[]; wait?: boolean } | undefined {
  const prio = priorityOf(task);
  const fits = (ns: NodeState, keep: readonly Task[]) => filterNode(task, hypothetical(ns, keep), snap, need) === undefined;
  let best: { node: string; victims: Task[]; key: [number, number] } | undefined;
  for (const ns of snap.nodes) {
    const here = ns.tasks;
    // Already leaving: told to stop (by an earlier preemption or anything else), or chosen in this pass.
    const staying = here.filter((t) => t.spec.desiredState === 'running' && !taken.has(t.metadata.name));
    if (staying.length < here.length && fits(ns, staying)) return { node: ns.name, victims: [], wait: true };
    const lower = staying.filter((t) => priorityOf(t) < prio);
    if (lower.length === 0) continue;
    const keep = staying.filter((t) => priorityOf(t) >= prio);
    if (!fits(ns, keep)) continue;
    // Reprieve the most important victims first while the task still fits.
    const victims: Task[] = [];
    for (const v of [...lower].sort((a, b) => priorityOf(b) - priorityOf(a))) {
      if (fits(ns, [...keep, v])) keep.push(v);
      else victims.push(v);
    }
    if (victims.length === 0) continue;
    const key: [number, number] = [Math.max(...victims.map(priorityOf)), victims.length];
    if (!best || key[0] < best.key[0] || (key[0] === best.key[0] && (key[1] < best.key[1] || (key[1] === best.key[1] && ns.name < best.node)))) {
      best = { node: ns.name, victims, key };
    }
  }
  return best && { node: best.node, victims: best.victims };
}

function bump(m: Map<string, number>, k: string, n = 1): void {
  m.set(k, (m.get(k) ?? 0) + n);
}

function merge(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  const m = new Map(a);
  for (const [k, n] of b) bump(m, k, n);
  return m;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
