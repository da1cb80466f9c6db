/**
 * NodeLifecycleController derives each node's state from in-memory heartbeats
 * and writes Node status only when something changes: Ready ↔ NotReady ↔ Down
 * (each transition also an Event), or the node's allocation and task count.
 *
 * A node is Ready when its last heartbeat is fresh (within
 * missedHeartbeats × interval) and its engine answers. After a server
 * restart, nodes get one full NotReady window to heartbeat again before they
 * are marked NotReady, so a restart does not flap the cluster.
 *
 * A Down node's tasks that should still run are marked `orphaned`: their
 * services replace them elsewhere at once (as Swarm does), and when the
 * node comes back its agent finds them told to stop, so the service is back
 * to exactly its replicas.
 */
import { WorkQueue } from '../../base/workqueue.js';
import { nodeKind, taskKind } from '../../api/kinds.js';
import { isTerminal, type Node, type NodeState, type NodeStatus, type Task } from '../../api/types.js';
import { allocatedByNode, taskUsesResources } from '../../scheduler/filters.js';
import { stableStringify } from '../registry.js';
import { heartbeatInterval, indexTasks, recordEvent, TASKS_BY_NODE, type Controller, type ControllerContext, queueOptions } from './context.js';

export class NodeLifecycleController implements Controller {
  readonly name = 'node-lifecycle';
  private queue: WorkQueue;
  private unsubs: (() => void)[] = [];
  private cancelTick?: () => void;

  constructor(private readonly ctx: ControllerContext) {
    this.queue = new WorkQueue((k) => this.reconcile(k), queueOptions(ctx, 'node-lifecycle', { initialMs: 100, maxMs: 5000 }));
    ctx.metrics?.queue('node-lifecycle', this.queue);
    indexTasks(ctx.tasks);
  }

  start(): void {
    this.queue.start();
    this.unsubs.push(
      this.ctx.nodes.onDidChange((e) => e.type !== 'DELETED' && this.queue.add(e.object.metadata.name)),
      this.ctx.heartbeats.onDidChange((n) => this.queue.add(n)),
      // A node's allocation and task count only report: refreshed in batches as tasks come and go.
      this.ctx.tasks.onDidChange((e) => {
        const t = e.object as Task;
        const p = e.prev as Task | undefined;
        const holds = e.type !== 'DELETED' && taskUsesResources(t);
        const held = p !== undefined && taskUsesResources(p);
        if (held === holds && p?.spec.nodeName === t.spec.nodeName) return;
        if (t.spec.nodeName) this.queue.addAfter(t.spec.nodeName, this.ctx.timings.statusBatchMs);
        if (p?.spec.nodeName && p.spec.nodeName !== t.spec.nodeName) this.queue.addAfter(p.spec.nodeName, this.ctx.timings.statusBatchMs);
      }),
    );
    this.tick();
  }

  stop(): void {
    for (const u of this.unsubs) u();
    this.cancelTick?.();
    this.queue.stop();
  }

  /**
   * tick re-judges every node once per heartbeat interval, since staleness is
   * a matter of time passing; only a node whose state would change is queued
   * (allocation changes arrive through task events), so an idle cluster of
   * thousands of nodes costs a comparison per node per tick.
   */
  private tick(): void {
    const now = this.ctx.clock.now();
    for (const [name, o] of this.ctx.nodes.objects) {
      const node = o as unknown as Node;
      const d = this.deriveState(node, now);
      if (d.state !== node.status.state || d.message !== node.status.message) this.queue.add(name);
      // A Down node still holding live tasks (a crash between the two writes, or a server restart) is finished here.
      else if (d.state === 'down' && this.holdsLiveTasks(name)) this.queue.add(name);
    }
    this.cancelTick = this.ctx.clock.setTimeout(() => this.tick(), this.ctx.timings.heartbeatIntervalMs);
  }

  private holdsLiveTasks(name: string): boolean {
    return (this.ctx.tasks.byIndex(TASKS_BY_NODE, name) as unknown as Task[]).some((t) => t.spec.desiredState === 'running' && !isTerminal(t.status.state));
  }

  /** deriveState is the node state rule, from the last beat and the time. */
  deriveState(node: Node, now: number): { state: NodeState; message: string } {
    const { timings, heartbeats } = this.ctx;
    const beat = heartbeats.get(node.metadata.name);
    const notReadyAfter = heartbeatInterval(timings, this.ctx.nodes.objects.size) * timings.missedHeartbeats;
    if (!beat) {
      // Fresh server: give agents a window to reconnect before judging them.
      if (now - heartbeats.startedAt < notReadyAfter) return { state: node.status.state, message: node.status.message };
      const since = node.status.lastHeartbeat ? Date.parse(node.status.lastHeartbeat) : heartbeats.startedAt;
      if (now - Math.max(since, heartbeats.startedAt) >= timings.nodeDownAfterMs) return { state: 'down', message: 'no heartbeat since the server started' };
      return { state: 'notready', message: 'no heartbeat since the server started' };
    }
    // Counted from the grace's start at the latest: a new leader (or one back after the store was away) has not
    // seen the beats other servers took meanwhile, and judges no node before it could have.
    const age = now - Math.max(beat.at, heartbeats.startedAt);
    // A stretched interval (many nodes) stretches both thresholds with it.
    const interval = Math.max(beat.intervalMs, 1);
    const downAfter = Math.max(timings.nodeDownAfterMs, interval * (timings.missedHeartbeats + 2));
    // Messages name the last beat, not the age, so they stay put (no status write per tick).
    const last = new Date(beat.at).toISOString();
    if (age >= downAfter) return { state: 'down', message: `no heartbeat since ${last}` };
    if (age >= interval * timings.missedHeartbeats) return { state: 'notready', message: `missed ${timings.missedHeartbeats} heartbeats (every ${interval} ms; the last at ${last})` };
    if (!beat.engineOk) return { state: 'notready', message: `container engine unreachable: ${beat.engineError ?? 'no answer'}` };
    return { state: 'ready', message: '' };
  }

  async reconcile(name: string): Promise<void> {
    const { ctx } = this;
    const node = ctx.nodes.objects.get(name) as Node | undefined;
    if (!node) return;
    const now = ctx.clock.now();
    const { state, message } = this.deriveState(node, now);
    const tasks = ctx.tasks.byIndex(TASKS_BY_NODE, name) as unknown as Task[];
    if (state === 'down') await this.orphan(name, tasks, message, now);
    const alloc = allocatedByNode(tasks).get(name) ?? { cpus: 0, memoryBytes: 0, count: 0 };
    const beat = ctx.heartbeats.get(name);
    const next: NodeStatus = {
      ...node.status,
      state,
      message,
      allocated: { cpus: Math.round(alloc.cpus * 1000) / 1000, memoryBytes: alloc.memoryBytes },
      taskCount: alloc.count,
      engineVersion: beat?.engineVersion ?? node.status.engineVersion,
      ...(beat?.volumes ? { volumes: beat.volumes } : {}),
      timestamp: state !== node.status.state ? new Date(now).toISOString() : node.status.timestamp,
      ...(state !== node.status.state && beat ? { lastHeartbeat: new Date(beat.at).toISOString() } : {}),
    };
    if (stableStringify(next) === stableStringify(node.status)) return;
    // `next` comes from the cache, which may not show a task range given a moment ago: never write it away.
    const [r] = await ctx.registry.updateStatus(nodeKind, [{ name, uid: node.metadata.uid, status: next }], ['taskRange']);
    if (r && !r.ok) throw r.error;
    if (state !== node.status.state) {
      const label = { ready: 'Ready', notready: 'NotReady', down: 'Down', unknown: 'Unknown' }[state];
      recordEvent(ctx, {
        type: state === 'ready' ? 'Normal' : 'Warning',
        reason: `Node${label}`,
        kind: 'Node',
        name,
        uid: node.metadata.uid,
        node: name,
        source: 'controller/node-lifecycle',
        message: `node ${name} is ${label}${message ? `: ${message}` : ''}`,
      });
    }
  }

  /** orphan marks the tasks on a Down node that should still run; a task whose status moved meanwhile is left for the next pass (its change queues the node again). */
  private async orphan(name: string, tasks: readonly Task[], why: string, now: number): Promise<void> {
    const lost = tasks.filter((t) => t.spec.desiredState === 'running' && !isTerminal(t.status.state));
    if (lost.length === 0) return;
    const at = new Date(now).toISOString();
    const results = await this.ctx.registry.updateStatus(
      taskKind,
      lost.map((t) => ({
        name: t.metadata.name,
        uid: t.metadata.uid,
        statusVersion: t.metadata.statusVersion ?? '0',
        status: { ...t.status, state: 'orphaned' as const, message: `node ${name} is down (${why})`, timestamp: at },
      })),
    );
    const failed = results.find((r) => !r.ok && r.error.code !== 'BATON_ERR_NOT_FOUND' && r.error.code !== 'BATON_ERR_CONFLICT');
    if (failed && !failed.ok) throw failed.error;
    const n = results.filter((r) => r.ok).length;
    if (n === 0) return;
    recordEvent(this.ctx, {
      type: 'Warning',
      reason: 'TasksOrphaned',
      kind: 'Node',
      name,
      uid: (this.ctx.nodes.objects.get(name) as Node | undefined)?.metadata.uid ?? '',
      node: name,
      source: 'controller/node-lifecycle',
      message: `node ${name} is down: ${n} task(s) will run elsewhere`,
    });
  }
}
