/**
 * EndpointsController keeps one Endpoints object per service that has ports
 * or whose tasks run in namespaces of their own (bridge networking): what
 * every node's routing mesh needs (ports to publish, container ports
 * reachable by name, the service's VIP, routing settings), what its DNS and
 * isolation need (the service's networks and aliases), and the service's
 * ready tasks with their addresses. Nodes watch Endpoints, never tasks or
 * services, as kube-proxy watches EndpointSlices. Services on the host's
 * network (or none) without ports have none: nothing routes or resolves to
 * them, and the scheduler's benchmarks run 100,000 such tasks.
 *
 * Each Endpoints holds a VIP of the service CIDR for the service's life,
 * given and freed in the same txns that create and delete it (serviceVips.ts).
 *
 * Task changes are gathered for `endpointsBatchMs` (100 ms) and written as
 * one update per service; a task that stops being ready (told to stop,
 * unhealthy, not ready, gone) leaves its endpoints within that batch, so it
 * gets no new connections within a second of the change.
 */
import { WorkQueue } from '../../base/workqueue.js';
import { DEFAULT_LB, isTaskReady, serviceNetworks, type EndpointsSpec, type Endpoints, type LbSpec, type Service, type Task } from '../../api/types.js';
import { isStatusOnly } from '../watchCache.js';
import type { AnyObject } from '../registry.js';
import { ownerUid, ServiceVips } from '../serviceVips.js';
import { indexTasks, TASKS_BY_SERVICE, type Controller, type ControllerContext, queueOptions } from './context.js';

/** hasEndpoints: the service has a port for the mesh to route (ports or expose), or tasks with addresses of their own for DNS to answer with (bridge). */
function hasEndpoints(svc: Service | undefined): svc is Service {
  return svc !== undefined && (routesPorts(svc.spec) || svc.spec.container.networkMode === 'bridge');
}

/** routesPorts: the service has a port the mesh routes (tcp or udp, published or exposed), so every ready task of it is an endpoint. */
export function routesPorts(s: Service['spec']): boolean {
  return s.ports.length > 0 || s.expose.length > 0;
}

/**
 * listed is whether a task is one of its service's endpoints: it is to run,
 * ready, placed with a host address, and reachable (the service routes a
 * port, or the task has an address of its own for DNS). Without a port to
 * route, a simulated node's tasks (no address of their own) are never listed,
 * and a service of 100,000 of them stays an empty list.
 */
export function listed(t: Task, ports: boolean): boolean {
  return (ports || !!t.status.taskIP) && t.spec.desiredState === 'running' && !!t.status.hostIP && !!t.spec.nodeName && isTaskReady(t);
}

/**
 * endpointsSpec is the pure rule: a service and its tasks → its Endpoints
 * (without its VIP, which the controller keeps or gives), or undefined when
 * it needs none. A task with an address of its own is reached at
 * taskIP:target on every target; its status lists only its host-mode ports.
 */
export function endpointsSpec(svc: Service, tasks: readonly Task[]): EndpointsSpec | undefined {
  const s = svc.spec;
  if (!hasEndpoints(svc)) return undefined;
  const targets = [...new Set([...s.ports.filter((p) => p.protocol !== 'udp').map((p) => p.target), ...s.expose])].sort((a, b) => a - b);
  const udpTargets = [...new Set(s.ports.filter((p) => p.protocol === 'udp').map((p) => p.target))].sort((a, b) => a - b);
  const vipPorts = (s.vipPorts ?? []).filter((v) => targets.includes(v.target) && !targets.includes(v.port)).sort((a, b) => a.port - b.port);
  const ports = routesPorts(s);
  const endpoints = tasks
    .filter((t) => listed(t, ports))
    .map((t) => ({
      task: t.metadata.name,
      node: t.spec.nodeName,
      address: t.status.hostIP!,
      ports: t.status.taskIP ? Object.fromEntries(targets.map((p) => [String(p), p])) : Object.fromEntries(t.status.ports.map((p) => [String(p.target), p.hostPort])),
      ...(t.status.taskIP ? { taskIP: t.status.taskIP } : {}),
    }))
    .sort((a, b) => (a.task < b.task ? -1 : a.task > b.task ? 1 : 0));
  return {
    serviceName: svc.metadata.name,
    stack: s.stack,
    shortName: s.shortName,
    networks: serviceNetworks(s),
    published: s.ports
      .filter((p) => p.mode === 'ingress' && p.published !== undefined)
      .map((p) => ({ published: p.published!, target: p.target, ...(p.protocol === 'udp' ? { protocol: 'udp' as const } : {}), ...(p.hostIP !== undefined ? { hostIP: p.hostIP } : {}) })),
    targets,
    ...(udpTargets.length ? { udpTargets } : {}),
    // A VIP port reaches a container port the service serves; one that names another is left out, as is one that is a target itself.
    ...(vipPorts.length ? { vipPorts } : {}),
    ...(s.stateful ? { stateful: true as const } : {}),
    lb: { ...DEFAULT_LB, ...(s.x.lb as Partial<LbSpec> | undefined) },
    endpoints,
  };
}

export class EndpointsController implements Controller {
  readonly name = 'endpoints';
  private readonly queue: WorkQueue;
  private unsubs: (() => void)[] = [];
  private readonly vips: ServiceVips;

  constructor(private readonly ctx: ControllerContext) {
    this.vips = new ServiceVips(ctx);
    this.queue = new WorkQueue((k) => this.reconcile(k), queueOptions(ctx, 'endpoints', { initialMs: 50, maxMs: 5000 }, 2));
    ctx.metrics?.queue('endpoints', this.queue);
    indexTasks(ctx.tasks);
  }

  start(): void {
    this.queue.start();
    const batch = this.ctx.timings.endpointsBatchMs;
    this.unsubs.push(
      this.ctx.services.onDidChange((e) => {
        if (!isStatusOnly(e)) this.queue.add(e.object.metadata.name);
      }),
      this.ctx.tasks.onDidChange((e) => {
        const t = e.object as Task;
        const p = e.prev as Task | undefined;
        const svc = this.ctx.services.objects.get(t.spec.serviceName) as unknown as Service | undefined;
        // Most services need no Endpoints (host networking, no ports): their tasks' events cost a lookup, not a reconcile.
        if (!hasEndpoints(svc) && !this.ctx.endpoints.objects.has(t.spec.serviceName)) return;
        // Only a task listed before or after the change can change the list (a service gone, or changed, is queued by its own event).
        const ports = svc !== undefined && routesPorts(svc.spec);
        const was = p !== undefined && listed(p, ports);
        const is = e.type !== 'DELETED' && listed(t, ports);
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
    let cur = ctx.endpoints.objects.get(name) as unknown as (Endpoints & AnyObject) | undefined;
    const spec = svc ? endpointsSpec(svc, ctx.tasks.byIndex(TASKS_BY_SERVICE, name) as unknown as Task[]) : undefined;
    // Gone, needing none, or left by an earlier service of this name: deleted with its VIP.
    if (cur && (!spec || ownerUid(cur) !== svc!.metadata.uid)) {
      if (await this.vips.delete(cur)) this.retryWithoutVip();
      cur = undefined;
    }
    if (spec) await this.vips.write(svc!, cur, spec);
  }

  /** retryWithoutVip: a VIP was freed, so the services written without one (a full range) try again. */
  private retryWithoutVip(): void {
    for (const [name, e] of this.ctx.endpoints.objects) if (!(e as unknown as Endpoints).spec.vip) this.queue.add(name);
  }
}
