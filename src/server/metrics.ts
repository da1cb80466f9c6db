/**
 * The server's Prometheus metrics (GET /metrics, admin token): API requests
 * and their latency, open watches, scheduler placements and pass latency,
 * controller reconcile durations and queue depths, nodes and tasks by state,
 * and the usage agents report (CPU and memory per task, mesh connections per
 * service), so one scrape of the server sees the whole cluster. Counts by
 * state are read from the watch caches when scraped.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { processMetrics } from '../base/processMetrics.js';
import type { WorkQueue } from '../base/workqueue.js';
import type { ControlPlaneMetrics } from './controllers/context.js';
import type { WatchCache } from './watchCache.js';
import type { UsageStore } from './usage.js';

export class ServerMetrics implements ControlPlaneMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'route' | 'code'>;
  readonly latency: Histogram<'method' | 'route'>;
  private readonly reconciles: Histogram<'controller'>;
  private readonly reconcileErrors: Counter<'controller'>;
  private readonly placements: Counter<'result'>;
  private readonly passes: Histogram;
  private readonly queues = new Map<string, WorkQueue>();

  constructor(caches: Record<string, WatchCache>, usage: UsageStore) {
    const reg = this.registry;
    processMetrics(reg, 'baton_server_');
    this.requests = new Counter({ name: 'baton_api_requests_total', help: 'API requests by method, route and status code.', labelNames: ['method', 'route', 'code'], registers: [reg] });
    this.latency = new Histogram({
      name: 'baton_api_request_duration_seconds',
      help: 'API request latency (streams such as watches and log follows are left out).',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [reg],
    });
    this.reconciles = new Histogram({ name: 'baton_controller_reconcile_duration_seconds', help: 'Time per reconcile, by controller.', labelNames: ['controller'], buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10], registers: [reg] });
    this.reconcileErrors = new Counter({ name: 'baton_controller_reconcile_errors_total', help: 'Reconciles that failed (retried with backoff).', labelNames: ['controller'], registers: [reg] });
    this.placements = new Counter({ name: 'baton_scheduler_placements_total', help: 'Scheduler decisions: tasks placed, left pending (unschedulable), and tasks preempted.', labelNames: ['result'], registers: [reg] });
    this.passes = new Histogram({ name: 'baton_scheduler_pass_duration_seconds', help: 'Time to plan one placement pass (pure placement, before writes).', buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [reg] });
    const queues = this.queues;
    new Gauge({
      name: 'baton_controller_queue_depth',
      help: 'Keys waiting in each controller work queue.',
      labelNames: ['controller'],
      registers: [reg],
      collect() {
        for (const [name, q] of queues) this.set({ controller: name }, q.length);
      },
    });
    new Gauge({
      name: 'baton_watches',
      help: 'Open watch streams, by kind.',
      labelNames: ['kind'],
      registers: [reg],
      collect() {
        for (const c of Object.values(caches)) this.set({ kind: c.kind.plural }, c.watcherCount);
      },
    });
    const countBy = (cache: WatchCache | undefined, field: (o: any) => string) => {
      const n = new Map<string, number>();
      for (const o of cache?.objects.values() ?? []) n.set(field(o), (n.get(field(o)) ?? 0) + 1);
      return n;
    };
    new Gauge({
      name: 'baton_nodes',
      help: 'Nodes by state.',
      labelNames: ['state'],
      registers: [reg],
      collect() {
        this.reset();
        for (const s of ['ready', 'notready', 'down', 'unknown']) this.set({ state: s }, 0);
        for (const [s, v] of countBy(caches.nodes, (n) => n.status.state)) this.set({ state: s }, v);
      },
    });
    new Gauge({
      name: 'baton_tasks',
      help: 'Tasks by state and desired state.',
      labelNames: ['state', 'desired'],
      registers: [reg],
      collect() {
        this.reset();
        for (const [k, v] of countBy(caches.tasks, (t) => `${t.status.state}\0${t.spec.desiredState}`)) {
          const [state, desired] = k.split('\0');
          this.set({ state: state!, desired: desired! }, v);
        }
      },
    });
    new Gauge({
      name: 'baton_task_cpu_cores',
      help: 'CPU in use by each running task (cores), as its agent last reported.',
      labelNames: ['task', 'service', 'node'],
      registers: [reg],
      collect() {
        this.reset();
        for (const t of usage.tasks()) this.set({ task: t.task, service: t.service, node: t.node }, t.cpu);
      },
    });
    new Gauge({
      name: 'baton_task_memory_bytes',
      help: 'Memory in use by each running task, as its agent last reported.',
      labelNames: ['task', 'service', 'node'],
      registers: [reg],
      collect() {
        this.reset();
        for (const t of usage.tasks()) this.set({ task: t.task, service: t.service, node: t.node }, t.memoryBytes);
      },
    });
  }

  reconciled(controller: string, seconds: number, failed: boolean): void {
    this.reconciles.observe({ controller }, seconds);
    if (failed) this.reconcileErrors.inc({ controller });
  }

  queue(controller: string, q: WorkQueue): void {
    this.queues.set(controller, q);
  }

  scheduled(result: 'placed' | 'unschedulable' | 'preempted', n: number): void {
    if (n > 0) this.placements.inc({ result }, n);
  }

  schedulerPass(seconds: number): void {
    this.passes.observe(seconds);
  }
}
