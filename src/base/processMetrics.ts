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

/**
 * processMetrics registers the defaults on reg. `eventLoopPrecisionMs` is
 * how often the event-loop delay is sampled (prom-client's default, 10 ms,
 * when not given): each sample is a timer that wakes the process, which
 * alone costs an idle process about 0.5% of a core at 10 ms and 0.1% at
 * 100 ms on this machine. A delay at least as long as the precision is
 * always seen; a shorter one only when a sample falls in it.
 */
export function processMetrics(reg: Registry, prefix: string, eventLoopPrecisionMs?: number): void {
  collectDefaultMetrics({ register: reg, prefix, ...(eventLoopPrecisionMs ? { eventLoopMonitoringPrecision: eventLoopPrecisionMs } : {}) });
  for (const name of MISNAMED) reg.removeSingleMetric(prefix + name);
}
