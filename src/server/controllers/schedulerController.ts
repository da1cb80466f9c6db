/**
 * SchedulerController runs placement passes. Any pending task or node change
 * enqueues the single key "pass"; the queue collapses bursts, so one pass
 * places everything pending against one snapshot and writes the placements in
 * batched txns (one revision per 128 tasks, not one per task). Tasks that
 * cannot be placed keep waiting with their reason; they are retried when a
 * node or task changes, never by polling.
 *
 * New tasks come to it unwritten (submit): the service controller decides
 * which tasks should exist, and the scheduler writes each one already placed,
 * or pending with the reason it fits nowhere. This is Nomad's model (an
 * evaluation's plan creates its allocations on their nodes) rather than
 * Kubernetes' (create the pod, then bind it): a task costs one write and one
 * watch event fewer, and no task waits in the store for a pass to notice it.
 *
 * A pass plans in parts, yielding between them, and takes in tasks handed
 * over while it plans, so a stack's services (handed over one by one) are one
 * pass; it then writes its placements node by node. Each agent hears of its
 * node's tasks at once and reports them in one request: on 5,000 nodes, one
 * pass per service made five to ten status requests per node where one does.
 */
import { withProps } from '../../base/json.js';
import { startedServices, waitReason } from './dependencies.js';
import { WorkQueue } from '../../base/workqueue.js';
import { timeSlicer } from '../../base/yield.js';
import { taskKind } from '../../api/kinds.js';
import type { Node, Service, Task } from '../../api/types.js';
import { isTaskReady, isTerminal, statefulOrdinal } from '../../api/types.js';
import { priorityOf, type Placement, type Placer } from '../../scheduler/placement.js';
import { recordEvent, writeInWaves, type Controller, type ControllerContext, queueOptions } from './context.js';
import type { AnyObject } from '../registry.js';

const PASS = 'pass';

/** TaskPlacement is how the service controller hands over the tasks it wants made. */
export interface TaskPlacement {
  /**
   * submit writes each task placed (or pending with its reason), and resolves
   * with the highest revision written once all are written (a task someone
   * already made counts as written). Rejects if the scheduler stops first.
   */
  submit(tasks: Task[]): Promise<number>;
  /** submitted: the task was handed over and is not written yet. */
  submitted(name: string): boolean;
}

/** A caller of submit, waiting for its tasks to be written. */
interface Submission {
  left: number;
  lastRev: number;
  resolve: (rev: number) => void;
  reject: (err: unknown) => void;
}

/** A submitted task, not yet written, and who waits for it. */
interface Unborn {
  task: Task;
  waiting: Submission[];
}

/** isPending: a task waiting for a node. */
function isPending(t: Task): boolean {
  return t.spec.nodeName === '' && t.spec.desiredState === 'running' && t.status.state === 'pending';
}
/**
 * A pass writes its placements in slices of this much busy time, then lets
 * the API in. Short slices starve placement when thousands of agents report
 * at once (each yield waits a whole turn of a busy loop); this bounds API
 * latency during a large pass to about this long instead.
 */
const SLICE_MS = 200;
/**
 * At most this many pending tasks per pass (highest priority, then oldest,
 * first): a whole deploy of 100,000 replicas is one pass, so each node gets
 * its tasks at once and its agent reports them in one request, not one per pass.
 */
const MAX_PER_PASS = 100_000;
/** A pass places its tasks in parts of this many, yielding between them by time slice (as it writes). */
const PLACE_PART = 1000;

export class SchedulerController implements Controller, TaskPlacement {
  readonly name = 'scheduler';
  private queue: WorkQueue;
  private unsubs: (() => void)[] = [];

  constructor(
    private readonly ctx: ControllerContext,
    private readonly placer: Placer,
  ) {
    this.queue = new WorkQueue(() => this.pass(), queueOptions(ctx, 'scheduler', { initialMs: 100, maxMs: 5000 }));
    ctx.metrics?.queue('scheduler', this.queue);
  }

  /** Tasks waiting for placement, kept from task events: a pass finds them without scanning 100,000 tasks. */
  private readonly pending = new Map<string, Task>();
  /** Submitted tasks not yet written, by name. */
  private readonly unborn = new Map<string, Unborn>();
  /** Names submitted since the current pass began planning, in order: the pass takes them in as it goes. */
  private arrivals: string[] = [];
  private running = false;

  submit(tasks: Task[]): Promise<number> {
    if (tasks.length === 0) return Promise.resolve(0);
    if (!this.running) return Promise.reject(new Error('the scheduler is not running (this server does not lead)'));
    return new Promise<number>((resolve, reject) => {
      const sub: Submission = { left: tasks.length, lastRev: 0, resolve, reject };
      for (const task of tasks) {
        const u = this.unborn.get(task.metadata.name);
        if (u) u.waiting.push(sub);
        else {
          this.unborn.set(task.metadata.name, { task, waiting: [sub] });
          this.arrivals.push(task.metadata.name);
        }
      }
      this.trigger();
    });
  }

  submitted(name: string): boolean {
    return this.unborn.has(name);
  }

  /** born: the unborn task was written at rev (or found already made): tell whoever waits for it. */
  private born(name: string, rev: number): void {
    const u = this.unborn.get(name);
    if (!u) return;
    this.unborn.delete(name);
    for (const sub of u.waiting) {
      sub.lastRev = Math.max(sub.lastRev, rev);
      if (--sub.left === 0) sub.resolve(sub.lastRev);
    }
  }

  private track(t: Task, deleted: boolean): void {
    if (!deleted && isPending(t)) this.pending.set(t.metadata.name, t);
    else this.pending.delete(t.metadata.name);
  }

  start(): void {
    this.queue.start();
    this.running = true;
    this.pending.clear();
    for (const t of this.ctx.tasks.objects.values()) this.track(t as Task, false);
    this.unsubs.push(
      this.ctx.tasks.onDidChange((e) => {
        const t = e.object as Task;
        const prev = e.prev as Task | undefined;
        this.track(t, e.type === 'DELETED');
        // A new pending task, or a task that released resources.
        if ((e.type !== 'DELETED' && t.spec.nodeName === '' && t.spec.desiredState === 'running') || (prev && !isTerminal(prev.status.state) && (e.type === 'DELETED' || isTerminal(t.status.state)))) this.trigger();
      }),
      this.ctx.nodes.onDidChange(() => this.trigger()),
      // A dependency that becomes ready (or completes) lets the tasks that wait for it go.
      this.ctx.services.onDidChange(() => {
        if (this.pending.size > 0) this.trigger();
      }),
    );
    this.queue.add(PASS);
  }

  stop(): void {
    this.running = false;
    for (const u of this.unsubs.splice(0)) u();
    this.queue.stop();
    const gone = new Error('the scheduler stopped before these tasks were written');
    for (const u of this.unborn.values()) for (const sub of u.waiting) sub.reject(gone);
    this.unborn.clear();
    this.arrivals = [];
  }

  /**
   * trigger asks for a pass, but no sooner than one pass's length after the
   * last one ended: a pass costs time in proportion to the cluster, so while
   * tasks pour in (100,000 created 128 at a time) each pass takes all that
   * arrived meanwhile, and placement never takes more than half the CPU.
   */
  private trigger(): void {
    const wait = this.notBefore - this.ctx.clock.now();
    if (wait > 0) this.queue.addAfter(PASS, wait);
    else this.queue.add(PASS);
  }

  private notBefore = 0;

  async pass(): Promise<void> {
    const began = this.ctx.clock.now();
    let again = false;
    try {
      again = await this.passOnce();
    } finally {
      const end = this.ctx.clock.now();
      this.notBefore = end + Math.min(end - began, 1000);
    }
    if (again) this.trigger();
  }

  /**
   * holdForDependencies takes out of `pending` (in place) the tasks whose
   * services wait for a dependency, and those of an ordered StatefulSet
   * whose lower ordinals are not all ready yet (OrderedReady), with the reason.
   */
  private holdForDependencies(pending: Task[], tasks: Task[]): { task: Task; reason: string }[] {
    const services = this.ctx.services.objects as Map<string, Service>;
    const names = [...new Set(pending.map((t) => t.spec.serviceName))];
    if (!names.some((n) => services.get(n)?.spec.dependsOn?.length || services.get(n)?.spec.stateful?.ordered)) return [];
    const started = startedServices(tasks);
    const view = { service: (n: string) => services.get(n), hasStarted: (n: string) => started.has(n) };
    const reasons = new Map<string, string | undefined>();
    const readySlots = orderedReadySlots(names.filter((n) => services.get(n)?.spec.stateful?.ordered), tasks);
    const held: { task: Task; reason: string }[] = [];
    let kept = 0;
    for (const t of pending) {
      const svc = t.spec.serviceName;
      if (!reasons.has(svc)) reasons.set(svc, waitReason(services.get(svc), view));
      const ready = readySlots.get(svc);
      let why = reasons.get(svc);
      if (!why && ready) {
        // The lowest ordinal not ready yet, below this one.
        for (let slot = 1; slot < t.spec.slot; slot++) {
          if (ready.has(slot)) continue;
          why = `waiting for ${services.get(svc)!.spec.shortName}-${statefulOrdinal(slot)} to be ready (ordered start)`;
          break;
        }
      }
      if (why) held.push({ task: t, reason: why });
      else pending[kept++] = t;
    }
    pending.length = kept;
    return held;
  }

  /** passOnce places what it can; true when it should run again (tasks left over, or placements that lost a race). */
  private async passOnce(): Promise<boolean> {
    const { ctx } = this;
    // Outside start() (a pass driven by hand) nothing keeps the index: read the cache.
    if (this.unsubs.length === 0) {
      this.pending.clear();
      for (const t of ctx.tasks.objects.values()) this.track(t as Task, false);
    }
    if (this.pending.size === 0 && this.unborn.size === 0) return false;
    const pending = [...this.pending.values()];
    // Which of them are new (to create), fixed for this pass: a stop() while it writes must not turn a create into an update.
    const isNew = new Set(this.unborn.keys());
    for (const u of this.unborn.values()) pending.push(u.task);
    this.arrivals = [];
    const tasks = [...ctx.tasks.objects.values()] as Task[];
    pending.sort(byPriorityThenAge);
    // Start order (depends_on): a task whose service waits for a dependency is not placed this pass; it says why.
    const held = this.holdForDependencies(pending, tasks);
    // A bounded pass: the rest wait for the next one, and a pass's memory and time stay bounded.
    let more = pending.length > MAX_PER_PASS;
    if (more) pending.length = MAX_PER_PASS;
    const nodes = [...ctx.nodes.objects.values()] as Node[];
    // Placed in parts against one snapshot, letting the API in between: planning 100,000 placements takes seconds.
    let busy = 0;
    const slice = timeSlicer(SLICE_MS);
    const session = this.placer.begin(nodes, tasks);
    for (let i = 0; i < pending.length; ) {
      const t0 = performance.now();
      const part = pending.slice(i, i + PLACE_PART);
      i += part.length;
      session.place(part);
      busy += performance.now() - t0;
      await slice();
      // Tasks handed over while this pass plans join it: a deploy's services are handed over one by one, and one
      // pass for all of them gives each node its tasks at once (one burst, one status report from its agent).
      if (this.arrivals.length > 0 && this.running) {
        const late = this.arrivals.splice(0).filter((name) => this.unborn.has(name) && !isNew.has(name)).map((name) => this.unborn.get(name)!.task);
        const room = MAX_PER_PASS - pending.length;
        if (late.length > room) more = true;
        for (const t of late.sort(byPriorityThenAge).slice(0, Math.max(0, room))) {
          isNew.add(t.metadata.name);
          pending.push(t);
        }
      }
    }
    const plan = session.plan;
    plan.unplaced.push(...held);
    ctx.metrics?.schedulerPass(busy / 1000);
    // Each node's placements written together: its agent hears of them in one burst and reports them in one request.
    plan.placed = groupByNode(plan.placed);
    ctx.metrics?.scheduled('placed', plan.placed.length);
    ctx.metrics?.scheduled('unschedulable', plan.unplaced.length);
    ctx.metrics?.scheduled('preempted', plan.preemptions?.length ?? 0);
    const now = new Date(ctx.clock.now()).toISOString();

    // One list of writes: placements (a stored task updated, a new one created on its node), then new tasks that wait.
    const waiting = plan.unplaced.filter(({ task, reason }) => isNew.has(task.metadata.name) || task.status.pendingReason !== reason);
    const newWaiting = waiting.filter(({ task }) => isNew.has(task.metadata.name));
    const written = await writeInWaves(
      ctx,
      plan.placed.length + newWaiting.length,
      (i) => {
        if (i >= plan.placed.length) {
          // A new task that fits nowhere yet: created pending, with why.
          const { task, reason, decision } = newWaiting[i - plan.placed.length]!;
          return ctx.registry.createOp(taskKind, { ...task, status: { ...task.status, pendingReason: reason, message: 'pending', ...(decision ? { scheduling: { ...decision, at: now } } : {}) } });
        }
        const { task, node, decision } = plan.placed[i]!;
        // A fresh top level over the task's unchanged parts: it is encoded, never mutated.
        const { pendingReason: _, ...status } = task.status;
        // Copied by withProps (base/json.ts): one hidden class for every task's status, not one each.
        const assigned = withProps(status, { state: 'assigned' as const, message: `assigned to ${node.metadata.name}`, timestamp: now, scheduling: withProps(decision, { at: now }) });
        if (isNew.has(task.metadata.name)) return ctx.registry.createOp(taskKind, { ...task, spec: { ...task.spec, nodeName: node.metadata.name }, status: assigned });
        const next: Task = {
          ...task,
          metadata: { ...task.metadata, generation: task.metadata.generation + 1, statusVersion: String(Number(task.metadata.statusVersion ?? '0') + 1) },
          spec: { ...task.spec, nodeName: node.metadata.name },
          status: assigned,
        };
        return ctx.registry.updateOp(taskKind, task, next);
      },
      slice,
    );
    // A placement that lost a race (the snapshot was stale for its task) is re-planned by the next pass.
    let conflicts = written.refused;
    // Why the rest wait: written only when the reason changed, in batched txns; one event per service and reason.
    const results = await ctx.registry.updateStatus(
      taskKind,
      waiting.filter(({ task }) => !isNew.has(task.metadata.name)).map(({ task, reason, decision }) => ({
        name: task.metadata.name,
        uid: task.metadata.uid,
        status: { ...task.status, pendingReason: reason, message: 'pending', timestamp: task.status.timestamp, ...(decision ? { scheduling: { ...decision, at: now } } : {}) },
      })),
    );
    if (results.some((r) => !r.ok && r.error.code === 'BATON_ERR_CONFLICT')) conflicts = true;
    const told = new Map<string, Task[]>();
    for (const { task, reason } of waiting) {
      const key = `${task.spec.serviceName}\0${reason}`;
      const list = told.get(key);
      if (list) list.push(task);
      else told.set(key, [task]);
    }
    for (const [key, ts] of told) {
      const reason = key.slice(key.indexOf('\0') + 1);
      const first = ts[0]!;
      const message = ts.length === 1 ? reason : `${ts.length} tasks of ${first.spec.serviceName} cannot be placed: ${reason}`;
      recordEvent(ctx, { type: 'Warning', reason: 'FailedScheduling', kind: 'Task', name: first.metadata.name, uid: first.metadata.uid, source: 'scheduler', message, service: first.spec.serviceName });
    }
    // Preemption: victims are told to stop; their services replace them (back to pending), and the
    // preemptor is placed by the pass that follows their release.
    for (const { victim, by, node } of plan.preemptions ?? []) {
      const out = await ctx.registry.mutate<Task & AnyObject>(taskKind, victim.metadata.name, (cur) => {
        if (cur.metadata.uid !== victim.metadata.uid || cur.spec.desiredState !== 'running') return undefined;
        cur.spec.desiredState = 'shutdown';
        cur.metadata.generation++;
        return cur;
      });
      if (!out) continue;
      recordEvent(ctx, {
        type: 'Warning',
        reason: 'Preempted',
        kind: 'Task',
        name: victim.metadata.name,
        uid: victim.metadata.uid,
        node,
        service: victim.spec.serviceName,
        source: 'scheduler',
        message: `${victim.metadata.name} (priority ${priorityOf(victim)}) preempted on ${node} for ${by.metadata.name} (priority ${priorityOf(by)})`,
      });
    }
    // The next pass must see these placements, or it would place the same tasks again.
    await ctx.tasks.caughtUp(written.lastRev);
    // New tasks this pass wrote (or found made already, by a create that lost to a stale cache) are born.
    for (const { task } of plan.placed) this.born(task.metadata.name, written.lastRev);
    for (const { task } of newWaiting) this.born(task.metadata.name, written.lastRev);
    // Tasks left over, or whose placement lost a race with another write, get a pass against fresh caches.
    return more || conflicts;
  }
}

/** byPriorityThenAge is the order a pass takes pending tasks in: highest priority, then oldest, then lowest slot. */
function byPriorityThenAge(a: Task, b: Task): number {
  return priorityOf(b) - priorityOf(a) || a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp) || a.spec.slot - b.spec.slot;
}

/** groupByNode orders placements node by node (nodes in order of their first placement; each node's in plan order). */
function groupByNode(placed: Placement[]): Placement[] {
  const byNode = new Map<string, Placement[]>();
  for (const p of placed) {
    const list = byNode.get(p.node.metadata.name);
    if (list) list.push(p);
    else byNode.set(p.node.metadata.name, [p]);
  }
  return [...byNode.values()].flat();
}

/** orderedReadySlots: for each of these services, the slots whose task should run and is ready. */
function orderedReadySlots(services: string[], tasks: Task[]): Map<string, Set<number>> {
  const out = new Map(services.map((n) => [n, new Set<number>()]));
  for (const t of tasks) {
    const set = out.get(t.spec.serviceName);
    if (set && t.spec.desiredState === 'running' && isTaskReady(t)) set.add(t.spec.slot);
  }
  return out;
}
