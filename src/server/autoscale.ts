/**
 * The autoscaler's arithmetic, pure (Kubernetes HPA's algorithm): for each
 * metric, desired = ceil(current × metric / target), left alone within a
 * 10% tolerance; the largest recommendation across metrics wins; then the
 * stabilization windows (a scale-up takes the lowest recommendation of its
 * window, a scale-down the highest of its window) and the step limits; then
 * min and max. Every recommendation carries the words that explain it.
 */
import type { AutoscaleSpec, ResourceSpec } from '../api/types.js';

/** What the autoscaler knows about a service now. */
export interface ServiceMetrics {
  /** Tasks that reported usage. */
  tasks: number;
  /** Summed over those tasks. */
  cpuCores: number;
  memoryBytes: number;
  /** Connections per second through the routing mesh, all nodes together. */
  rps: number;
  /** Open connections through the routing mesh, all nodes together. */
  concurrency: number;
}

export const TOLERANCE = 0.1;

const pct = (x: number) => `${Math.round(x * 100)}%`;
const num = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(1));

/** recommend: the replicas each metric asks for, the largest of them, and why. */
export function recommend(spec: AutoscaleSpec, resources: ResourceSpec, current: number, m: ServiceMetrics): { desired: number; why: string[] } {
  const why: string[] = [];
  let desired: number | undefined;
  const take = (d: number, text: string) => {
    why.push(`${text} → ${d}`);
    desired = Math.max(desired ?? 0, d);
  };
  /** ratio-based: HPA's formula over the tasks that reported. */
  const byRatio = (name: string, util: number, target: number, base: number, shown: string) => {
    const ratio = util / target;
    const d = Math.abs(ratio - 1) <= TOLERANCE ? current : Math.ceil(base * ratio);
    take(d, `${name} ${shown} of target ${name === 'cpu' || name === 'memory' ? pct(target) : num(target)} across ${base} task(s)`);
  };
  if (spec.cpu !== undefined && m.tasks > 0) {
    const per = resources.reservations.cpus || resources.limits.cpus || 1;
    const util = m.cpuCores / m.tasks / per;
    byRatio('cpu', util, spec.cpu, m.tasks, pct(util));
  }
  if (spec.memory !== undefined && m.tasks > 0) {
    const per = resources.reservations.memoryBytes || resources.limits.memoryBytes;
    if (per > 0) {
      const util = m.memoryBytes / m.tasks / per;
      byRatio('memory', util, spec.memory, m.tasks, pct(util));
    } else why.push('memory: no reservation or limit to measure against');
  }
  // Traffic: per task of the current count, so a service at zero still gets a recommendation from its first requests.
  if (spec.rps !== undefined) {
    const per = current > 0 ? m.rps / current : m.rps;
    const d = current > 0 && Math.abs(per / spec.rps - 1) <= TOLERANCE ? current : Math.ceil(m.rps / spec.rps);
    take(d, `rps ${num(m.rps)} (${num(per)} per task) of target ${num(spec.rps)} per task`);
  }
  if (spec.concurrency !== undefined) {
    const per = current > 0 ? m.concurrency / current : m.concurrency;
    const d = current > 0 && Math.abs(per / spec.concurrency - 1) <= TOLERANCE ? current : Math.ceil(m.concurrency / spec.concurrency);
    take(d, `concurrency ${num(m.concurrency)} (${num(per)} per task) of target ${num(spec.concurrency)} per task`);
  }
  if (desired === undefined) {
    why.push('no metrics yet');
    desired = current;
  }
  return { desired, why };
}

export interface Recommendation {
  at: number;
  desired: number;
}

/**
 * stabilize turns the raw recommendation into the replicas to set: within
 * the scale-up window the lowest recommendation, within the scale-down
 * window the highest (so a brief dip never scales down, a brief spike
 * never scales up more than the window allows), at most `step` per
 * decision, within min and max. `history` holds the recent recommendations
 * (this one included), oldest first.
 */
export function stabilize(spec: AutoscaleSpec, current: number, history: readonly Recommendation[], now: number): number {
  const within = (ms: number) => history.filter((r) => r.at >= now - ms).map((r) => r.desired);
  const latest = history.at(-1)?.desired ?? current;
  let next = current;
  if (latest > current) {
    next = Math.min(...within(spec.scaleUp.stabilizationMs), latest);
    if (spec.scaleUp.step) next = Math.min(next, current + spec.scaleUp.step);
    next = Math.max(next, current);
  } else if (latest < current) {
    next = Math.max(...within(spec.scaleDown.stabilizationMs), latest);
    if (spec.scaleDown.step) next = Math.max(next, current - spec.scaleDown.step);
    next = Math.min(next, current);
  }
  return Math.min(spec.max, Math.max(spec.min, next));
}
