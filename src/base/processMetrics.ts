/**
 * The process metrics every Baton process serves (prom-client's defaults:
 * CPU, memory, heap, event-loop lag, handles), under the process's prefix.
 *
 * prom-client also registers three gauges named `…_total`
 * (nodejs_active_handles_total, _requests_total, _resources_total), which
 * `promtool check metrics` rejects: `_total` is for counters. They are
 * removed; the same numbers stay in nodejs_active_handles,
 * nodejs_active_requests and nodejs_active_resources, by type (sum them).
 */
import { collectDefaultMetrics, type Registry } from 'prom-client';

const MISNAMED = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export function processMetrics(reg: Registry, prefix: string): void {
  collectDefaultMetrics({ register: reg, prefix });
  for (const name of MISNAMED) reg.removeSingleMetric(prefix + name);
}
