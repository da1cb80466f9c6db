/**
 * The autoscaler's arithmetic (Kubernetes HPA's): per-metric ratios, the
 * tolerance, the largest recommendation, stabilization windows, steps and
 * min/max.
 */
import { describe, expect, it } from 'vitest';
import { recommend, stabilize } from '../src/server/autoscale.js';
import type { AutoscaleSpec, ResourceSpec } from '../src/api/types.js';

const res = (cpus = 0.5, memoryBytes = 0): ResourceSpec => ({ reservations: { cpus, memoryBytes }, limits: { cpus: 0, memoryBytes: 0 } });
const spec = (o: Partial<AutoscaleSpec> = {}): AutoscaleSpec => ({ min: 1, max: 10, scaleUp: { stabilizationMs: 0 }, scaleDown: { stabilizationMs: 60_000 }, ...o });
const m = (o: Partial<{ tasks: number; cpuCores: number; memoryBytes: number; rps: number; concurrency: number }> = {}) => ({ tasks: 2, cpuCores: 0, memoryBytes: 0, rps: 0, concurrency: 0, ...o });

describe('autoscaler arithmetic', () => {
  it('cpu: usage over the reservation, ceil(current × metric / target), explained', () => {
    // 2 tasks using 0.915 cores together against 0.5 reserved each: 91.5% of a 60% target.
    const r = recommend(spec({ cpu: 0.6 }), res(0.5), 2, m({ cpuCores: 0.915 }));
    expect(r.desired).toBe(4);
    expect(r.why).toEqual(['cpu 92% of target 60% across 2 task(s) → 4']);
    // Over one core when nothing is reserved or limited.
    expect(recommend(spec({ cpu: 0.5 }), res(0), 2, m({ cpuCores: 2 })).desired).toBe(4);
  });

  it('leaves the count alone within the 10% tolerance', () => {
    expect(recommend(spec({ cpu: 0.6 }), res(0.5), 2, m({ cpuCores: 0.63 })).desired).toBe(2);
    expect(recommend(spec({ rps: 100 }), res(), 3, m({ rps: 315 })).desired).toBe(3);
  });

  it('takes the largest recommendation across metrics; traffic counts even at zero tasks', () => {
    const r = recommend(spec({ cpu: 0.6, rps: 50, concurrency: 10 }), res(0.5), 2, m({ cpuCores: 0.3, rps: 260, concurrency: 12 }));
    expect(r.desired).toBe(6);
    expect(r.why).toHaveLength(3);
    expect(recommend(spec({ rps: 50 }), res(), 0, m({ tasks: 0, rps: 3 })).desired).toBe(1);
    expect(recommend(spec({ memory: 0.8 }), res(0.5, 0), 2, m({ memoryBytes: 1 })).why).toEqual(['memory: no reservation or limit to measure against', 'no metrics yet']);
  });

  it('stabilizes: up takes the lowest of its window, down the highest of its window, within steps and min/max', () => {
    const s = spec({ scaleUp: { stabilizationMs: 10_000, step: 2 }, scaleDown: { stabilizationMs: 60_000 } });
    // A spike that is not sustained over the up window does not scale up beyond the lowest recommendation.
    expect(stabilize(s, 2, [{ at: 0, desired: 2 }, { at: 5_000, desired: 8 }], 6_000)).toBe(2);
    // Sustained: up, by at most `step`.
    expect(stabilize(s, 2, [{ at: 0, desired: 8 }, { at: 5_000, desired: 8 }], 6_000)).toBe(4);
    // Down: the highest recommendation of the last minute.
    expect(stabilize(s, 6, [{ at: 0, desired: 5 }, { at: 30_000, desired: 1 }], 50_000)).toBe(5);
    expect(stabilize(s, 6, [{ at: 0, desired: 5 }, { at: 30_000, desired: 1 }], 100_000)).toBe(1);
    // Never below min or above max.
    expect(stabilize(spec({ min: 2, max: 3 }), 3, [{ at: 0, desired: 9 }], 0)).toBe(3);
    expect(stabilize(spec({ min: 2, max: 3, scaleDown: { stabilizationMs: 0 } }), 3, [{ at: 0, desired: 0 }], 0)).toBe(2);
  });
});
