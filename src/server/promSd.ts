/**
 * Prometheus HTTP service discovery (`GET /api/v1/sd/prometheus`, for
 * `http_sd_configs`): every node's agent `/metrics` (HTTPS, the cluster CA),
 * and every running task that says it serves metrics, with
 * `x-baton.metrics: {port, path}` or the common `prometheus.io/scrape`,
 * `prometheus.io/port` and `prometheus.io/path` labels (on the container or
 * the service). A task is scraped at its own address (its namespace's) on
 * the container port, or at its node's address when it shares the node's
 * network. Labels carry the stack, service, task, slot and node, as
 * Kubernetes' and Consul's discovery do; `__metrics_path__` and
 * `__scheme__` steer the scrape.
 */
import { z } from 'zod';
import type { Node, Service, Task } from '../api/types.js';

export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

/** What a task scrapes: x-baton.metrics, read defensively (spec.x holds what a client sent). */
const metricsSpec = z.object({ port: z.number().int().min(1).max(65_535), path: z.string().regex(/^\/[\x21-\x7e]{0,255}$/).optional() });

/** scrapeOf: the port and path a service's tasks serve metrics on, or undefined. */
export function scrapeOf(svc: Service): { port: number; path: string } | undefined {
  const x = metricsSpec.safeParse(svc.spec.x?.metrics);
  if (x.success) return { port: x.data.port, path: x.data.path ?? '/metrics' };
  const labels = { ...svc.metadata.labels, ...svc.spec.container.labels };
  if (labels['prometheus.io/scrape'] !== 'true') return undefined;
  const port = Number(labels['prometheus.io/port']);
  const path = labels['prometheus.io/path'] ?? '/metrics';
  if (!Number.isInteger(port) || port < 1 || port > 65_535 || !/^\/[\x21-\x7e]{0,255}$/.test(path)) return undefined;
  return { port, path };
}

const hostPort = (address: string, port: number) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

export function prometheusTargets(nodes: readonly Node[], services: readonly Service[], tasks: readonly Task[]): TargetGroup[] {
  const out: TargetGroup[] = [];
  for (const n of [...nodes].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))) {
    if (!n.status.agentPort || n.status.state === 'down' || !n.status.address) continue;
    out.push({ targets: [hostPort(n.status.address, n.status.agentPort)], labels: { __scheme__: 'https', __metrics_path__: '/metrics', baton_role: 'agent', baton_node: n.metadata.name } });
  }
  const scrape = new Map<string, { port: number; path: string; stack: string }>();
  for (const s of services) {
    const sc = scrapeOf(s);
    if (sc) scrape.set(s.metadata.name, { ...sc, stack: s.spec.stack });
  }
  const byName = (a: Task, b: Task) => a.metadata.name.localeCompare(b.metadata.name);
  for (const t of [...tasks].sort(byName)) {
    const sc = scrape.get(t.spec.serviceName);
    if (!sc || t.spec.desiredState !== 'running' || t.status.state !== 'running') continue;
    const address = t.status.taskIP ?? t.status.hostIP;
    if (!address) continue;
    out.push({
      targets: [hostPort(address, sc.port)],
      labels: { __scheme__: 'http', __metrics_path__: sc.path, baton_role: 'task', baton_stack: sc.stack, baton_service: t.spec.serviceName, baton_task: t.metadata.name, baton_slot: String(t.spec.slot), baton_node: t.spec.nodeName },
    });
  }
  return out;
}
