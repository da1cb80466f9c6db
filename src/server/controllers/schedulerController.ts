/**
 * SchedulerController runs placement passes. Any pending task or node change
 * enqueues the single key "pass"; the queue collapses bursts, so one pass
 * places everything pending against one snapshot and writes the placements in
 * batched txns (one revision per 128 tasks, not one per task). Tasks that
 * cannot be placed keep waiting with their reason; they are retried when a
 * node or task changes, never by polling.
 */
import { WorkQueue } from '../../base/workqueue.js';
import { taskKind } from '../../api/kinds.js';
import type { Node, Task } from '../../api/types.js';
import { isTerminal } from '../../api/types.js';
import { MAX_TXN_OPS, type Compare, type Op } from '../../store/store.js';
import { priorityOf, type Placer } from '../../scheduler/placement.js';
import { recordEvent, type Controller, type ControllerContext } from './context.js';
import type { AnyObject } from '../registry.js';

const PASS = 'pass';

export class SchedulerController implements Controller {
  readonly name = 'scheduler';
  private queue: WorkQueue;
  private unsubs: (() => void)[] = [];

  constructor(
    private readonly ctx: ControllerContext,
    private readonly placer: Placer,
  ) {
    this.queue = new WorkQueue(() => this.pass(), {
      name: 'scheduler',
      clock: ctx.clock,
      backoff: { initialMs: 100, maxMs: 5000 },
      onError: (_k, err) => ctx.log.warn({ controller: 'scheduler', err: String(err) }, 'placement pass failed; will retry'),
    });
  }

  start(): void {
    this.unsubs.push(
      this.ctx.tasks.onDidChange((e) => {
        const t = e.object as Task;
        const prev = e.prev as Task | undefined;
        // A new pending task, or a task that released resources.
        if ((e.type !== 'DELETED' && t.spec.nodeName === '' && t.spec.desiredState === 'running') || (prev && !isTerminal(prev.status.state) && (e.type === 'DELETED' || isTerminal(t.status.state)))) this.queue.add(PASS);
      }),
      this.ctx.nodes.onDidChange(() => this.queue.add(PASS)),
    );
    this.queue.add(PASS);
  }

  stop(): void {
    for (const u of this.unsubs) u();
    this.queue.stop();
  }

  async pass(): Promise<void> {
    const { ctx } = this;
    const tasks = [...ctx.tasks.objects.values()] as Task[];
    const pending = tasks.filter((t) => t.spec.nodeName === '' && t.spec.desiredState === 'running' && t.status.state === 'pending');
    if (pending.length === 0) return;
    pending.sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp) || a.spec.slot - b.spec.slot);
    const nodes = [...ctx.nodes.objects.values()] as Node[];
    const plan = this.placer.place(pending, nodes, tasks);
    const now = new Date(ctx.clock.now()).toISOString();
    let conflicts = false;

    for (let i = 0; i < plan.placed.length; i += MAX_TXN_OPS) {
      const chunk = plan.placed.slice(i, i + MAX_TXN_OPS);
      const compares: Compare[] = [];
      const ops: Op[] = [];
      for (const { task, node, decision } of chunk) {
        const next = structuredClone(task);
        next.spec.nodeName = node.metadata.name;
        next.metadata.generation++;
        next.metadata.statusVersion = String(Number(next.metadata.statusVersion ?? '0') + 1);
        next.status = { ...next.status, state: 'assigned', message: `assigned to ${node.metadata.name}`, timestamp: now, scheduling: { ...decision, at: now } };
        delete next.status.pendingReason;
        const { compare, op } = ctx.registry.updateOp(taskKind, task, next);
        compares.push(compare);
        ops.push(op);
      }
      const r = await ctx.registry.store.txn(compares, ops);
      if (!r.succeeded) conflicts = true;
    }
    for (const { task, reason, decision } of plan.unplaced) {
      if (task.status.pendingReason === reason) continue;
      const status = { ...task.status, pendingReason: reason, message: 'pending', timestamp: task.status.timestamp, ...(decision ? { scheduling: { ...decision, at: now } } : {}) };
      const [r] = await ctx.registry.updateStatus(taskKind, [{ name: task.metadata.name, uid: task.metadata.uid, status }]);
      if (r && !r.ok) conflicts = true;
      recordEvent(ctx, { type: 'Warning', reason: 'FailedScheduling', kind: 'Task', name: task.metadata.name, uid: task.metadata.uid, source: 'scheduler', message: reason, service: task.spec.serviceName });
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
    // A lost race means our snapshot was stale: the queue retries with fresh caches.
    if (conflicts) throw new Error('placement raced with another write');
  }
}
