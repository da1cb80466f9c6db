/**
 * ServiceController keeps each service's slots filled. Watches enqueue service
 * names (a task change enqueues its owner); reconcile re-reads the caches,
 * asks the pure reconcileService for a plan and executes it. Creates are
 * create-if-absent with deterministic names, so a stale cache or a crash
 * between plan and write can never duplicate a task.
 */
import { WorkQueue } from '../../base/workqueue.js';
import { timeSlicer } from '../../base/yield.js';
import { serviceKind, taskKind } from '../../api/kinds.js';
import type { JobStatus, Node, Service, ServiceStatus, Taint, Task } from '../../api/types.js';
import { isGlobal, isTaskReady, isTerminal } from '../../api/types.js';
import { stableStringify, type AnyObject } from '../registry.js';
import { GLOBAL_NODE_LABEL, PROMOTED, reconcileService, refreshCounts, steadyPlan, type DrainState, type ServicePlan } from './serviceReconciler.js';
import { deleteRevisions, recordRevision, rollback, setAnnotations } from '../rollout.js';
import { isBatonError } from '../../base/errors.js';
import { isStatusOnly } from '../watchCache.js';
import type { TaskPlacement } from './schedulerController.js';
import { DRAIN_STARTED_ANNOTATION, indexTasks, recordEvent, TASKS_BY_NODE, TASKS_BY_SERVICE, writeInWaves, type Controller, type ControllerContext, queueOptions } from './context.js';

/** Creates run in slices of this much busy time (see the scheduler's SLICE_MS). */
const SLICE_MS = 100;
/** The batch window of a service that is rolling out (statusBatchMs for the others). */
const ROLLING_BATCH_MS = 25;

/** At most this many tasks are created per reconcile of a service (Kubernetes' burstReplicas; here a whole 10,000-replica service, so that a deploy is one scheduler pass). */
const CREATE_BURST = 20_000;
/** The longest a steady service's counts wait for a recount (recountDelay). */
const MAX_RECOUNT_WINDOW_MS = 5000;

export class ServiceController implements Controller {
  readonly name = 'service';
  private queue: WorkQueue;
  private unsubs: (() => void)[] = [];

  /**
   * placement, when given, writes the tasks this controller wants made,
   * already placed (the scheduler); without it they are written pending, for
   * a scheduler to place later.
   */
  constructor(
    private readonly ctx: ControllerContext,
    private readonly placement?: TaskPlacement,
  ) {
    // Services reconcile side by side: one making thousands of tasks never holds up another's status.
    this.queue = new WorkQueue((k) => this.run(k), queueOptions(ctx, 'service', { initialMs: 100, maxMs: 30_000 }, 4));
    ctx.metrics?.queue('service', this.queue);
    indexTasks(ctx.tasks);
  }

  start(): void {
    this.queue.start();
    this.drain = undefined;
    this.unsubs.push(
      // A service's own status write changes nothing it acts on.
      this.ctx.services.onDidChange((e) => {
        if (!isStatusOnly(e)) this.want(e.object.metadata.name);
      }),
      this.ctx.tasks.onDidChange((e) => {
        const t = e.object as Task;
        const p = e.prev as Task | undefined;
        // At once: a task that ended, was deleted, or is wanted elsewhere or stopped. Batched: changes that only move
        // the service's counts (and the next step of an update): a task made (the controller's own creates, placed or
        // pending), placed, started or ready. Reconciling a 10,000-task service for each of those would be most of the server's work.
        const act = e.type === 'DELETED' || (p ? taskPhase(p) !== taskPhase(t) : !newPending(t));
        if (act) this.want(t.spec.serviceName);
        // A task made: one a steady service was waiting for (its own create) only moves counts; any other is
        // reconciled in full, batched (while a deploy makes thousands).
        else if (!p) {
          const name = t.spec.serviceName;
          if (this.steady.get(name)?.awaiting.delete(t.metadata.name)) this.queue.addAfter(name, this.recountDelay(name));
          else this.want(name, this.batchDelay(name));
        }
        else if (p.spec.nodeName !== t.spec.nodeName || isTaskReady(p) !== isTaskReady(t) || (p.status.state === 'running') !== (t.status.state === 'running')) {
          // Counts moved: a steady service only recounts (cheap, so soon); any other is reconciled, batched.
          const name = t.spec.serviceName;
          this.queue.addAfter(name, this.steady.has(name) ? this.recountDelay(name) : this.batchDelay(name));
        }
      }),
      // A node that starts or stops draining (or is paused) changes what its services must do.
      this.ctx.nodes.onDidChange((e) => {
        this.drain = undefined;
        const now = e.object as Node;
        const prev = e.prev as Node | undefined;
        // Global services follow nodes as they join, leave, or change labels, availability or Down-ness.
        const eligibility = (n: Node | undefined) => n && stableStringify([n.spec.availability, n.spec.taints ?? [], n.status.state === 'down', n.metadata.labels, n.status.platform, n.status.hostname]);
        if (e.type !== 'MODIFIED' || eligibility(prev) !== eligibility(now)) {
          for (const o of this.ctx.services.objects.values()) if (isGlobal((o as unknown as Service).spec)) this.want(o.metadata.name);
        }
        if (e.type === 'MODIFIED' && prev?.spec.availability === now.spec.availability && stableStringify(prev?.spec.taints ?? []) === stableStringify(now.spec.taints ?? [])) return;
        for (const t of this.ctx.tasks.byIndex(TASKS_BY_NODE, now.metadata.name)) this.want((t as unknown as Task).spec.serviceName);
      }),
    );
    this.steady.clear();
    for (const name of this.ctx.services.objects.keys()) this.want(name);
    // Orphans too: tasks whose service is gone.
    for (const t of this.ctx.tasks.objects.values()) this.want((t as Task).spec.serviceName);
  }

  /** How long the last plan of each service took (ms of CPU: reconcileService is synchronous). */
  private readonly cost = new Map<string, number>();

  /**
   * batchDelay is how long batched changes wait: statusBatchMs, or longer for
   * a service whose reconcile is expensive (a 10,000-task service costs
   * milliseconds each time), so that keeping its counts fresh costs each
   * service at most about 2% of a core.
   */
  private batchDelay(service: string): number {
    // A service rolling out paces its next batch by these changes: a shorter window (a large one's cost still stretches it).
    const state = (this.ctx.services.objects.get(service) as Service | undefined)?.status?.rollout?.state;
    const floor = state === 'progressing' || state === 'rolling-back' ? Math.min(ROLLING_BATCH_MS, this.ctx.timings.statusBatchMs) : this.ctx.timings.statusBatchMs;
    return this.throttled(service, Math.max(floor, Math.min(5000, 50 * (this.cost.get(service) ?? 0))));
  }

  /**
   * The highest attempt of each slot whose tasks were all deleted (by
   * service uid and slot), in memory: a new leader starts without it, and a
   * slot scaled away and back within a leader change may take a deleted
   * task's name, as every slot did before this was kept.
   */
  private readonly pastAttempts = new Map<string, { uid: string; slots: Map<string | number, number> }>();

  private pastAttempt(svc: Service, slot: string | number): number {
    const p = this.pastAttempts.get(svc.metadata.name);
    return p && p.uid === svc.metadata.uid ? (p.slots.get(slot) ?? 0) : 0;
  }

  /** When each service was last reconciled or recounted (clock ms). */
  private readonly lastRun = new Map<string, number>();

  /**
   * throttled: how long a batched change waits so that a service runs at
   * most once per `window`: nothing when it has not run for a window (the
   * next step of a rollout follows a task turning ready at once), the rest
   * of the window when it has (a deploy's thousands of reports still make
   * one reconcile a window).
   */
  private throttled(service: string, window: number): number {
    const last = this.lastRun.get(service);
    return last === undefined ? 0 : Math.max(0, last + window - this.ctx.clock.now());
  }

  /** How long the last recount of each steady service took (ms). */
  private readonly recountCost = new Map<string, number>();

  /**
   * recountDelay is how long count changes of a steady service wait:
   * statusBatchMs, or 200 times what its last recount took (half a percent
   * of the server's time per service), up to MAX_RECOUNT_WINDOW_MS. A
   * service of 20,000 tasks, whose recount takes 15–20 ms, recounts every 3–4
   * s during a deploy instead of every second (ten such services took a
   * quarter of the server's time).
   */
  private recountDelay(service: string): number {
    return this.throttled(service, Math.max(this.ctx.timings.statusBatchMs, Math.min(MAX_RECOUNT_WINDOW_MS, 200 * (this.recountCost.get(service) ?? 0))));
  }

  stop(): void {
    for (const u of this.unsubs.splice(0)) u();
    this.queue.stop();
  }

  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** The last drainState, until a node changes. */
  private drain: DrainState | undefined;

  /** drainState reads which nodes are draining, and since when, from the node cache (once per node change, not per reconcile). */
  private drainState(): DrainState {
    return (this.drain ??= this.readDrainState());
  }

  private readDrainState(): DrainState {
    const draining = new Map<string, number>();
    for (const o of this.ctx.nodes.objects.values()) {
      const n = o as unknown as Node;
      if (n.spec.availability !== 'drain') continue;
      const at = Date.parse(n.metadata.annotations?.[DRAIN_STARTED_ANNOTATION] ?? n.metadata.creationTimestamp);
      draining.set(n.metadata.name, Number.isFinite(at) ? at : 0);
    }
    const noExecute = new Map<string, Taint[]>();
    for (const o of this.ctx.nodes.objects.values()) {
      const n = o as unknown as Node;
      const taints = (n.spec.taints ?? []).filter((t) => t.effect === 'NoExecute');
      if (taints.length) noExecute.set(n.metadata.name, taints);
    }
    return { draining, parallel: this.ctx.timings.drainParallel, deadlineMs: this.ctx.timings.drainDeadlineMs, noExecute };
  }

  /** rolloutActions carries out what the rollout asks (roll back, promote) and records its turns as events. */
  private async rolloutActions(svc: Service, plan: ServicePlan): Promise<void> {
    const { ctx } = this;
    const name = svc.metadata.name;
    const r = plan.status!.rollout!;
    const prev = svc.status?.rollout;
    const turned = !prev || prev.hash !== r.hash || prev.state !== r.state;
    if (plan.promote) {
      await setAnnotations(ctx, name, { [PROMOTED]: r.hash });
      recordEvent(ctx, { type: 'Normal', reason: 'CanaryPromoted', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/service', message: `the canaries of ${name} revision ${r.revision ?? '?'} stayed healthy for auto_promote: promoted` });
    }
    if (plan.rollback) {
      try {
        await rollback(ctx, name, { reason: plan.rollback.reason, automatic: true });
        return;
      } catch (e) {
        if (!isBatonError(e) || e.code === 'BATON_ERR_INTERNAL') throw e;
        if (turned) recordEvent(ctx, { type: 'Warning', reason: 'RollbackFailed', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/service', message: `${name}: cannot roll back (${e.message}); the rollout is paused` });
      }
    }
    if (!turned) return;
    const at = `${name} revision ${r.revision ?? '?'}`;
    if (r.state === 'paused') recordEvent(ctx, { type: 'Warning', reason: 'RolloutPaused', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/service', message: `${at}: ${r.message ?? 'paused'} (${r.updated}/${r.total} updated)` });
    else if (r.state === 'awaiting-promotion') recordEvent(ctx, { type: 'Normal', reason: 'CanariesStarted', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/service', message: `${at}: ${r.message ?? 'waiting for promotion'}` });
    else if (r.state === 'rolled-back' && prev?.state !== 'completed') recordEvent(ctx, { type: 'Warning', reason: 'RolledBack', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/service', message: `${name} is back on revision ${r.revision ?? '?'} (${r.total} tasks)` });
    else if (r.state === 'completed' && prev && prev.hash === r.hash && prev.state !== 'completed') recordEvent(ctx, { type: 'Normal', reason: 'RolloutCompleted', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/service', message: `${at}: every task updated (${r.total})` });
  }

  /** recordRescheduled records one Rescheduled event per service and reconcile: which tasks replace which, and why. */
  private recordRescheduled(service: string, created: { name: string; slot: number; node?: string; attempt: number }[], tasks: Task[]): void {
    // Attempt 1 is a slot's first task: only a later attempt can replace one (most reconciles create none).
    const replacing = created.filter((c) => c.attempt > 1);
    if (replacing.length === 0) return;
    const lines: string[] = [];
    // The newest task of each slot (a global service's slot is its node): one pass over the service's tasks, not one
    // per created task (5,000 creates in a 10,000-task service were 50 million comparisons a reconcile).
    const newest = new Map<string | number, Task>();
    for (const t of tasks) {
      const slot = t.metadata.labels[GLOBAL_NODE_LABEL] ?? t.spec.slot;
      const had = newest.get(slot);
      if (!had || had.metadata.creationTimestamp.localeCompare(t.metadata.creationTimestamp) < 0) newest.set(slot, t);
    }
    for (const c of replacing) {
      const prev = newest.get(c.node ?? c.slot);
      if (!prev || !RESCHEDULED_STATES.has(prev.status.state)) continue;
      lines.push(`${prev.metadata.name} (${prev.status.state} on ${prev.spec.nodeName || 'no node'}: ${prev.status.error ?? prev.status.message}) → ${c.name}`);
    }
    if (lines.length === 0) return;
    const message = lines.length <= 3 ? `rescheduled ${lines.join('; ')}` : `rescheduled ${lines.length} tasks of ${service}: ${lines.slice(0, 3).join('; ')}; …`;
    recordEvent(this.ctx, { type: 'Warning', reason: 'Rescheduled', kind: 'Service', name: service, service, source: 'controller/service', message });
  }

  /** Services whose next run must reconcile in full: anything but counts moved (or a run failed). */
  private readonly full = new Set<string>();
  /**
   * Steady services (steadyPlan), with their status as last planned, for the
   * generation and incarnation planned, and the tasks they wait for (created
   * by the scheduler, not written yet).
   */
  private readonly steady = new Map<string, { uid: string; generation: number; status: ServiceStatus; awaiting: Set<string> }>();

  /** want queues a full reconcile of a service, now or after ms. */
  private want(name: string, afterMs = 0): void {
    this.full.add(name);
    if (afterMs > 0) this.queue.addAfter(name, afterMs);
    else this.queue.add(name);
  }

  /**
   * run is the queue's handler: a steady service whose counts alone moved is
   * recounted; anything else is reconciled in full. On 5,000 nodes a deploy's
   * reports made each 10,000-task service reconcile every second or two, a
   * fifth of the server's time in all; a recount is a loop over its tasks.
   */
  private async run(name: string): Promise<void> {
    this.lastRun.set(name, this.ctx.clock.now());
    const svc = this.ctx.services.objects.get(name) as Service | undefined;
    const st = this.steady.get(name);
    if (!this.full.has(name) && svc && st && st.uid === svc.metadata.uid && st.generation === svc.metadata.generation) {
      const began = performance.now();
      const tasks = this.ctx.tasks.eachIndexed(TASKS_BY_SERVICE, name) as unknown as Iterable<Task>;
      st.status = refreshCounts(svc, st.status, tasks, this.ctx.clock.now());
      this.recountCost.set(name, performance.now() - began);
      this.deployFinished(svc, st.status);
      await this.writeStatus(svc, st.status);
      return;
    }
    this.full.delete(name);
    try {
      await this.reconcile(name);
    } catch (e) {
      this.full.add(name);
      throw e;
    }
  }

  /** deployFinished records DeployFinished when every task of the service's generation has just become ready. */
  private deployFinished(svc: Service, status: ServiceStatus): void {
    const name = svc.metadata.name;
    if (status.observedGeneration === svc.metadata.generation && status.ready === status.desired && status.desired > 0 && !(svc.status?.observedGeneration === svc.metadata.generation && svc.status.ready === svc.status.desired)) {
      recordEvent(this.ctx, { type: 'Normal', reason: 'DeployFinished', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/service', message: `${name} generation ${svc.metadata.generation}: all ${status.desired} tasks ready` });
    }
  }

  /** writeStatus writes the service's status when it changed. */
  private async writeStatus(svc: Service, status: ServiceStatus): Promise<void> {
    if (stableStringify(status) === stableStringify(svc.status)) return;
    const [r] = await this.ctx.registry.updateStatus(serviceKind, [{ name: svc.metadata.name, uid: svc.metadata.uid, status }]);
    if (r && !r.ok && r.error.code !== 'BATON_ERR_NOT_FOUND') throw r.error;
  }

  /** reconcile plans the service in full (reconcileService) and carries the plan out. */
  async reconcile(name: string): Promise<void> {
    const { ctx } = this;
    const svc = ctx.services.objects.get(name) as Service | undefined;
    const began = performance.now();
    const tasks = ctx.tasks.byIndex(TASKS_BY_SERVICE, name) as unknown as Task[];
    if (!svc && tasks.length === 0) {
      this.cost.delete(name);
      this.recountCost.delete(name);
      this.lastRun.delete(name);
      this.pastAttempts.delete(name);
      this.steady.delete(name);
      return;
    }
    const nodes = svc && isGlobal(svc.spec) ? ([...ctx.nodes.objects.values()] as unknown as Node[]) : [];
    const plan = reconcileService(svc, tasks, ctx.clock.now(), this.drainState(), nodes, svc ? (slot) => this.pastAttempt(svc, slot) : undefined);
    this.cost.set(name, performance.now() - began);

    // Creates: at most CREATE_BURST per reconcile (the rest on the next, once the cache shows these). The scheduler
    // writes them placed; without one, they are written pending, one txn per 128, each guarded by "absent".
    // Tasks the scheduler holds, handed over by an earlier reconcile and not written yet, are not asked for again
    // (a reconcile during a large deploy would build thousands of task objects only for the scheduler to merge them).
    const wanted = this.placement ? plan.create.filter((c) => !this.placement!.submitted(c.name)) : plan.create;
    const more = wanted.length > CREATE_BURST;
    // Built in slices of busy time: a 10,000-replica service's task objects take a few hundred ms to build, and the
    // event loop serves requests and heartbeats in between (the key stays this worker's meanwhile).
    const slice = timeSlicer(SLICE_MS);
    const creates: ReturnType<typeof ctx.registry.build>[] = [];
    const pendingSince = new Date(ctx.clock.now()).toISOString();
    for (const c of wanted.slice(0, CREATE_BURST)) {
      if (creates.length % 256 === 255) await slice();
      creates.push(ctx.registry.build(taskKind, {
        metadata: {
          name: c.name,
          uid: c.uid,
          labels: {
            'baton.service': name,
            'baton.slot': String(c.slot),
            'baton.attempt': String(c.attempt),
            ...(c.node ? { [GLOBAL_NODE_LABEL]: c.node } : {}),
            ...(svc?.spec.stack ? { 'baton.stack': svc.spec.stack } : {}),
          },
          ownerRefs: svc ? [{ kind: 'Service', name, uid: svc.metadata.uid }] : [],
        },
        spec: c.spec,
        status: { state: 'pending', message: 'waiting for placement', ports: [], restartCount: 0, timestamp: pendingSince },
      }));
    }
    // Guarded by "absent": a create someone already made (stale cache) is refused alone.
    let lastRev = 0;
    if (!this.placement) lastRev = (await writeInWaves(ctx, creates.length, (i) => ctx.registry.createOp(taskKind, creates[i]!), timeSlicer(SLICE_MS))).lastRev;
    else if (more) lastRev = await this.placement.submit(creates as unknown as Task[]);
    else if (creates.length) {
      // Not waited for: every service's new tasks join the scheduler's pass (a stack of ten services is one pass, not
      // three rounds of four workers). A reconcile before they are written does not ask for them again (and a
      // scheduler that stopped refuses them, so they are asked for after a second); their arrival in the cache
      // reconciles the service again.
      this.placement.submit(creates as unknown as Task[]).catch((e) => {
        ctx.log.warn({ service: name, err: String(e) }, 'new tasks were not written; will retry');
        this.want(name, 1000);
      });
    }
    this.recordRescheduled(name, wanted.slice(0, CREATE_BURST), tasks);
    if (svc && svc.status?.observedGeneration !== svc.metadata.generation && plan.status?.observedGeneration === svc.metadata.generation) {
      recordEvent(ctx, { type: 'Normal', reason: 'DeployStarted', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/service', message: `deploying generation ${svc.metadata.generation} of ${name}: ${isGlobal(svc.spec) ? svc.spec.mode : `${svc.spec.replicas} replicas`} of ${svc.spec.container.image}` });
    }
    if (svc && plan.status) this.deployFinished(svc, plan.status);
    if (more) {
      await ctx.tasks.caughtUp(lastRev);
      this.want(name);
    }
    for (const { task, desiredState, reason } of plan.setDesired) {
      await ctx.registry.mutate<Task & AnyObject>(taskKind, task.metadata.name, (cur) => {
        if (cur.metadata.uid !== task.metadata.uid || cur.spec.desiredState === desiredState) return undefined;
        cur.spec.desiredState = desiredState;
        cur.metadata.generation++;
        return cur;
      });
      if (desiredState === 'shutdown' && task.status.state !== 'pending') {
        recordEvent(ctx, {
          type: reason ? 'Warning' : 'Normal',
          reason: reason ? 'Evicted' : 'Stopping',
          kind: 'Task',
          name: task.metadata.name,
          uid: task.metadata.uid,
          source: 'controller/service',
          message: `stopping task ${task.metadata.name} on ${task.spec.nodeName || '(unassigned)'}${reason ? ` (${reason})` : ''}`,
          node: task.spec.nodeName || undefined,
          service: task.spec.serviceName,
        });
      }
    }
    for (const t of plan.delete) {
      const cur = ctx.tasks.objects.get(t.metadata.name);
      if (!cur) continue;
      const { compare, op } = ctx.registry.deleteOp(taskKind, cur);
      const r = await ctx.registry.store.txn([compare], [op]);
      // The last task of a slot scaled away: its attempt is remembered, so the slot's next task never takes its name.
      if (r.succeeded && svc && !tasks.some((o) => o !== t && slotOf(o) === slotOf(t) && !plan.delete.includes(o))) {
        let p = this.pastAttempts.get(name);
        if (!p || p.uid !== svc.metadata.uid) this.pastAttempts.set(name, (p = { uid: svc.metadata.uid, slots: new Map() }));
        p.slots.set(slotOf(t), Math.max(p.slots.get(slotOf(t)) ?? 0, Number(t.metadata.labels['baton.attempt'] ?? 0)));
      }
    }
    // A slot that has tasks again numbers them from its list: forgotten (bounded by the slots scaled away and not back).
    const past = this.pastAttempts.get(name);
    if (past) for (const c of plan.create) past.slots.delete(c.node ?? c.slot);
    if (svc && plan.status?.rollout) {
      const revision = await recordRevision(ctx, svc);
      if (revision !== undefined) plan.status.rollout.revision = revision;
      await this.rolloutActions(svc, plan);
    }
    if (!svc && tasks.length === 0) await deleteRevisions(ctx, name);
    if (svc && plan.status) await this.writeStatus(svc, plan.status);
    // Steady once every slot is settled or waits for a task the scheduler holds (not yet written: checked now, after
    // the writes above, so a task written meanwhile makes the service reconcile in full once more).
    const held = (n: string) => this.placement?.submitted(n) === true;
    if (svc && plan.status && steadyPlan(svc, plan, held)) {
      this.steady.set(name, { uid: svc.metadata.uid, generation: svc.metadata.generation, status: plan.status, awaiting: new Set(plan.create.map((c) => c.name)) });
    } else this.steady.delete(name);
    if (plan.requeueAfterMs !== undefined) this.want(name, plan.requeueAfterMs);
    if (svc && plan.status?.job) await this.expire(svc, plan.status.job);
  }

  /** expire removes a finished job once its ttlAfterFinishedMs has passed (Kubernetes' ttlSecondsAfterFinished), or asks to look again then. */
  private async expire(svc: Service, job: JobStatus): Promise<void> {
    const ttl = svc.spec.job?.ttlAfterFinishedMs;
    if (ttl === undefined || job.state === 'running' || !job.completedAt) return;
    const name = svc.metadata.name;
    const left = Date.parse(job.completedAt) + ttl - this.ctx.clock.now();
    if (left > 0) return this.want(name, left);
    // The same service, and no other of its name; a status written meanwhile (a conflict) is read again.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.ctx.registry.delete(serviceKind, name, { uid: svc.metadata.uid });
        break;
      } catch (e) {
        if (isBatonError(e) && e.code === 'BATON_ERR_NOT_FOUND') return;
        if (!isBatonError(e) || e.code !== 'BATON_ERR_CONFLICT' || attempt >= 3) throw e;
      }
    }
    recordEvent(this.ctx, { type: 'Normal', reason: 'JobExpired', kind: 'Service', name, uid: svc.metadata.uid, service: name, source: 'controller/service', message: `${name} ${job.state} at ${job.completedAt}; removed ${ttl / 1000} s later (ttlSecondsAfterFinished)` });
  }
}

/** RESCHEDULED_STATES: a slot's task ended this way, so its replacement is a reschedule (not an update or a scale-up). */
const RESCHEDULED_STATES = new Set(['failed', 'rejected', 'orphaned']);

/** taskPhase is what the service reconciler acts on at once: whether the task is wanted, whether it ended, and its spec. */
function taskPhase(t: Task): string {
  return `${t.spec.desiredState}|${isTerminal(t.status.state) ? t.status.state : ''}|${t.spec.specHash}`;
}

/** newPending: a task as the service controller has it made: wanted running, placed (assigned) or waiting for placement. */
function newPending(t: Task): boolean {
  return t.spec.desiredState === 'running' && (t.status.state === 'pending' || t.status.state === 'assigned');
}

/** slotOf: a task's slot as the reconciler keys it (a global service's: its node). */
function slotOf(t: Task): string | number {
  return t.metadata.labels[GLOBAL_NODE_LABEL] ?? t.spec.slot;
}
