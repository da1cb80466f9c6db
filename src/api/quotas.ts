/**
 * A stack's quota (Kubernetes' ResourceQuota over a namespace): the most
 * tasks, CPUs and memory its services may ask for together. What a service
 * asks for is its desired tasks times what each task reserves (serviceUsage);
 * the server refuses a write that would take a stack past its quota, in the
 * transaction of the write (src/server/quotas.ts).
 */
import { z } from 'zod';
import { isGlobal, isJob, type JobStatus, type Node, type ServiceSpec } from './types.js';

/** Hard limits; an absent one is not limited. CPUs in whole millicores. */
export interface QuotaLimits {
  cpus?: number;
  memoryBytes?: number;
  tasks?: number;
}

/** What a stack's services ask for, in the units of QuotaLimits (CPUs as millicores here, so sums are exact). */
export interface Usage {
  millicpus: number;
  memoryBytes: number;
  tasks: number;
}

export interface Quota {
  stack: string;
  hard: QuotaLimits;
  /** When it was set, and by whom (a token's name). */
  updatedAt: string;
  updatedBy?: string;
  /** What the stack's services asked for at the last write charged to it. */
  charged?: Usage;
  chargedAt?: string;
}

/** QuotaView is a quota with what its stack uses now (GET /api/v1/quotas). */
export interface QuotaView extends Quota {
  used: { cpus: number; memoryBytes: number; tasks: number };
}

export const quotaLimitsSchema = z
  .object({
    cpus: z.number().min(0).max(1_000_000).refine((c) => Math.abs(c * 1000 - Math.round(c * 1000)) <= 1e-6, 'cpus must be in whole millicores (at most three decimals)').optional(),
    memoryBytes: z.number().int().min(0).max(2 ** 53 - 1).optional(),
    tasks: z.number().int().min(0).max(10_000_000).optional(),
  })
  .strict()
  .refine((q) => q.cpus !== undefined || q.memoryBytes !== undefined || q.tasks !== undefined, 'a quota limits at least one of cpus, memoryBytes and tasks');

export const ZERO_USAGE: Usage = { millicpus: 0, memoryBytes: 0, tasks: 0 };

/**
 * perTask: what one task of the service reserves for a quota: its
 * reservations (what the scheduler places; sidecars are counted in them),
 * or its limits where it reserves nothing, as Kubernetes takes a limit for
 * the request a container leaves out.
 */
export function perTask(spec: ServiceSpec): { millicpus: number; memoryBytes: number } {
  const r = spec.resources;
  return {
    millicpus: Math.round((r.reservations.cpus || r.limits.cpus || 0) * 1000),
    memoryBytes: r.reservations.memoryBytes || r.limits.memoryBytes || 0,
  };
}

/**
 * desiredTasks: how many tasks the service asks to run at once: its
 * replicas; a job's parallelism (none once it finished); one per eligible
 * node for a global service (`nodes`); none for a cron job's template (its
 * runs are services of their own, charged when made).
 */
export function desiredTasks(spec: ServiceSpec, nodes: number, job?: JobStatus): number {
  if (spec.schedule) return 0;
  if (isJob(spec) && job && job.state !== 'running') return 0;
  if (isGlobal(spec)) return nodes;
  if (isJob(spec)) return Math.min(spec.job?.parallelism ?? 1, spec.job?.completions ?? 1);
  return spec.replicas;
}

export function serviceUsage(spec: ServiceSpec, nodes: number, job?: JobStatus): Usage {
  const n = desiredTasks(spec, nodes, job);
  const each = perTask(spec);
  return { millicpus: n * each.millicpus, memoryBytes: n * each.memoryBytes, tasks: n };
}

export function addUsage(a: Usage, b: Usage, sign = 1): Usage {
  return { millicpus: a.millicpus + sign * b.millicpus, memoryBytes: a.memoryBytes + sign * b.memoryBytes, tasks: a.tasks + sign * b.tasks };
}

export function usageView(u: Usage): QuotaView['used'] {
  return { cpus: u.millicpus / 1000, memoryBytes: u.memoryBytes, tasks: u.tasks };
}

/** eligibleForGlobal: how many nodes a global service's quota counts a task on: the Ready ones that take new tasks. */
export function eligibleForGlobal(nodes: readonly Node[]): number {
  let n = 0;
  for (const node of nodes) if (node.status.state === 'ready' && node.spec.availability === 'active') n++;
  return n;
}
