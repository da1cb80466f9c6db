/**
 * EndpointsController keeps one Endpoints object per service that has ports:
 * what every node's routing mesh needs (ports to publish, container ports
 * reachable by name, routing settings) and the service's ready tasks with
 * their addresses. Meshes watch Endpoints, never tasks, as kube-proxy
 * watches EndpointSlices.
 *
 * Task changes are gathered for `endpointsBatchMs` (100 ms) and written as
 * one update per service; a task that stops being ready (told to stop,
 * unhealthy, not ready, gone) leaves its endpoints within that batch, so it
 * gets no new connections within a second of the change.
 */
import { WorkQueue } from '../../base/workqueue.js';
import { endpointsKind } from '../../api/kinds.js';
import { DEFAULT_LB, isTaskReady, type EndpointsSpec, type Endpoints, type LbSpec, type Service, type Task } from '../../api/types.js';
import { stableStringify } from '../registry.js';
import { isStatusOnly } from '../watchCache.js';
import { indexTasks, TASKS_BY_SERVICE, type Controller, type ControllerContext, queueOptions } from './context.js';

/** routed: the service has a port for the mesh to route (ports or expose). */
function routed(svc: Service | undefined): svc is Service {
  return svc !== undefined && (svc.spec.ports.length > 0 || svc.spec.expose.length > 0);
}

/** endpointsSpec is the pure rule: a service and its tasks → its Endpoints, or undefined when it has no port to route. */
export function endpointsSpec(svc: Service, tasks: readonly Task[]): EndpointsSpec | undefined {
  const s = svc.spec;
  const targets = [...new Set([...s.ports.map((p) => p.target), ...s.expose])].sort((a, b) => a - b);
  if (targets.length === 0) return undefined;
  const endpoints = tasks
    .filter((t) => t.spec.desiredState === 'running' && isTaskReady(t) && t.status.hostIP && t.spec.nodeName)
    .map((t) => ({
      task: t.metadata.name,
      node: t.spec.nodeName,
      address: t.status.hostIP!,
      ports: Object.fromEntries(t.status.ports.map((p) => [String(p.target), p.hostPort])),
      ...(t.status.taskIP ? { taskIP: t.status.taskIP } : {}),
    }))
    .sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : 0));
  return {
    serviceName: svc.metadata.name,
    stack: s.stack,
    shortName: s.shortName,
    published: s.ports.filter((p) => p.mode === 'ingress' && p.published !== undefined).map((p) => ({ published: p.published!, target: p.target })),
    targets,
    lb: { ...DEFAULT_LB, ...(s.x.lb as Partial<LbSpec> | undefined) },
    endpoints,
  };
}

export class EndpointsController implements Controller {
  readonly name = 'endpoints';
  private readonly queue: WorkQueue;
  private unsubs: (() => void)[] = [];

  constructor(private readonly ctx: ControllerContext) {
    this.queue = new WorkQueue((k) => this.reconcile(k), queueOptions(ctx, 'endpoints', { initialMs: 50, maxMs: 5000 }, 2));
    ctx.metrics?.queue('endpoints', this.queue);
    indexTasks(ctx.tasks);
  }

  start(): void {
    const batch = this.ctx.timings.endpointsBatchMs;
    this.unsubs.push(
      this.ctx.services.onDidChange((e) => {
        if (!isStatusOnly(e)) this.queue.add(e.object.metadata.name);
      }),
      this.ctx.tasks.onDidChange((e) => {
        const t = e.object as Task;
        const p = e.prev as Task | undefined;
        // Most services have no ports (no Endpoints): their tasks' events cost a lookup, not a reconcile.
        if (!routed(this.ctx.services.objects.get(t.spec.serviceName) as unknown as Service | undefined) && !this.ctx.endpoints.objects.has(t.spec.serviceName)) return;
        const was = p !== undefined && p.spec.desiredState === 'running' && isTaskReady(p);
        const is = e.type !== 'DELETED' && t.spec.desiredState === 'running' && isTaskReady(t);
        if (was || is) this.queue.addAfter(t.spec.serviceName, batch);
      }),
    );
    for (const name of this.ctx.services.objects.keys()) this.queue.add(name);
    // Endpoints whose service is gone (deleted while no server ran).
    for (const name of this.ctx.endpoints.objects.keys()) if (!this.ctx.services.objects.has(name)) this.queue.add(name);
  }

  stop(): void {
    for (const u of this.unsubs.splice(0)) u();
    this.queue.stop();
  }

  async reconcile(name: string): Promise<void> {
    const { ctx } = this;
    const svc = ctx.services.objects.get(name) as unknown as Service | undefined;
    const cur = ctx.endpoints.objects.get(name) as unknown as Endpoints | undefined;
    const spec = routed(svc) ? endpointsSpec(svc, ctx.tasks.byIndex(TASKS_BY_SERVICE, name) as unknown as Task[]) : undefined;
    if (!spec) {
      if (cur) await ctx.registry.delete(endpointsKind, name, { resourceVersion: cur.metadata.resourceVersion });
      return;
    }
    if (cur && stableStringify(cur.spec) === stableStringify(spec)) return;
    if (!cur) {
      await ctx.registry.create(endpointsKind, { metadata: { name, ownerRefs: [{ kind: 'Service', name, uid: svc!.metadata.uid }] }, spec, status: {} });
    } else {
      await ctx.registry.update(endpointsKind, name, cur.metadata.resourceVersion, { spec });
    }
  }
}
