/**
 * Resources and restarts: `deploy.resources` and the short keys that mean
 * the same fields (cpus, mem_limit, mem_reservation, pids_limit),
 * `deploy.update_config` and `rollback_config`, and `deploy.restart_policy`
 * with the service-level `restart` it takes precedence over.
 */

import { DEFAULT_UPDATE_CONFIG, type ResourceSpec, type RestartPolicy, type UpdateConfig } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { isObj, type Ctx, type Obj } from './issues.js';
import { bytes, duration, text, toCpus, toInt } from './values.js';

export function translateResources(ctx: Ctx, svc: Obj, deploy: Obj, base: PathSegment[]): ResourceSpec {
  const r: ResourceSpec = { reservations: { cpus: 0, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } };
  const res = isObj(deploy.resources) ? deploy.resources : undefined;
  const rseg = [...base, 'deploy', 'resources'];
  const limits = res && isObj(res.limits) ? res.limits : {};
  const reservations = res && isObj(res.reservations) ? res.reservations : {};
  if (res) ctx.checkKeys(res, rseg, 'services.*.deploy.resources', ['limits', 'reservations']);
  if (res && isObj(res.limits)) ctx.checkKeys(limits, [...rseg, 'limits'], 'services.*.deploy.resources.limits', ['cpus', 'memory', 'pids']);
  if (res && isObj(res.reservations)) ctx.checkKeys(reservations, [...rseg, 'reservations'], 'services.*.deploy.resources.reservations', ['cpus', 'memory']);

  type Field = { long?: unknown; longSegs: PathSegment[]; short?: unknown; shortSegs: PathSegment[]; parse: (v: unknown, s: PathSegment[]) => number | undefined; set: (n: number) => void };
  const cpus = (v: unknown, s: PathSegment[]) => toCpus(ctx, v, s);
  const mem = (v: unknown, s: PathSegment[]) => bytes(ctx, v, s);
  const pids = (v: unknown, s: PathSegment[]) => toInt(ctx, v, s, -1);
  const fields: Field[] = [
    { long: limits.cpus, longSegs: [...rseg, 'limits', 'cpus'], short: svc.cpus, shortSegs: [...base, 'cpus'], parse: cpus, set: (n) => (r.limits.cpus = n) },
    { long: limits.memory, longSegs: [...rseg, 'limits', 'memory'], short: svc.mem_limit, shortSegs: [...base, 'mem_limit'], parse: mem, set: (n) => (r.limits.memoryBytes = n) },
    {
      long: limits.pids,
      longSegs: [...rseg, 'limits', 'pids'],
      short: svc.pids_limit,
      shortSegs: [...base, 'pids_limit'],
      parse: pids,
      set: (n) => {
        if (n > 0) r.limits.pids = n;
      },
    },
    { long: reservations.cpus, longSegs: [...rseg, 'reservations', 'cpus'], shortSegs: [], parse: cpus, set: (n) => (r.reservations.cpus = n) },
    {
      long: reservations.memory,
      longSegs: [...rseg, 'reservations', 'memory'],
      short: svc.mem_reservation,
      shortSegs: [...base, 'mem_reservation'],
      parse: mem,
      set: (n) => (r.reservations.memoryBytes = n),
    },
  ];
  for (const f of fields) {
    const has = (v: unknown) => v !== undefined && v !== null && v !== '';
    const long = has(f.long) ? f.parse(f.long, f.longSegs) : undefined;
    const short = has(f.short) ? f.parse(f.short, f.shortSegs) : undefined;
    if (long !== undefined && short !== undefined && long !== short) {
      ctx.error(f.shortSegs, `conflicts with ${formatKeyPath(f.longSegs.slice(2))} (${text(f.short)} vs ${text(f.long)}); set one of them`);
      continue;
    }
    const n = long ?? short;
    if (n !== undefined) f.set(n);
  }
  return r;
}

/** translateUpdate reads `deploy.update_config` / `rollback_config` (Swarm's keys and defaults). */
export function translateUpdate(ctx: Ctx, v: unknown, segs: PathSegment[], rollback: boolean): UpdateConfig | undefined {
  if (!isObj(v)) {
    ctx.error(segs, 'must be a mapping {parallelism, delay, failure_action, monitor, max_failure_ratio, order}');
    return undefined;
  }
  ctx.checkKeys(v, segs, rollback ? 'services.*.deploy.rollback_config' : 'services.*.deploy.update_config', ['parallelism', 'delay', 'failure_action', 'monitor', 'max_failure_ratio', 'order']);
  const u: UpdateConfig = { ...DEFAULT_UPDATE_CONFIG };
  if (v.parallelism !== undefined) u.parallelism = toInt(ctx, v.parallelism, [...segs, 'parallelism']) ?? u.parallelism;
  if (v.delay !== undefined) u.delayMs = duration(ctx, v.delay, [...segs, 'delay']) ?? u.delayMs;
  if (v.monitor !== undefined) u.monitorMs = duration(ctx, v.monitor, [...segs, 'monitor']) ?? u.monitorMs;
  if (v.failure_action !== undefined) {
    const allowed = rollback ? ['pause', 'continue'] : ['pause', 'continue', 'rollback'];
    if (allowed.includes(v.failure_action as string)) u.failureAction = v.failure_action as UpdateConfig['failureAction'];
    else ctx.error([...segs, 'failure_action'], `must be one of: ${allowed.join(', ')}; got ${JSON.stringify(v.failure_action)}`);
  }
  if (v.max_failure_ratio !== undefined) {
    const r = typeof v.max_failure_ratio === 'string' ? Number(v.max_failure_ratio) : v.max_failure_ratio;
    if (typeof r === 'number' && r >= 0 && r <= 1) u.maxFailureRatio = r;
    else ctx.error([...segs, 'max_failure_ratio'], `must be a number from 0 to 1 (the share of tasks that may fail), got ${JSON.stringify(v.max_failure_ratio)}`);
  }
  if (v.order !== undefined) {
    if (v.order === 'stop-first' || v.order === 'start-first') u.order = v.order;
    else ctx.error([...segs, 'order'], `must be stop-first or start-first, got ${JSON.stringify(v.order)}`);
  }
  return u;
}

const RESTART_DEFAULT: RestartPolicy = { condition: 'any', delayMs: 200, maxDelayMs: 30_000, maxAttempts: 0, windowMs: 0 };

export function translateRestart(ctx: Ctx, svc: Obj, deploy: Obj, base: PathSegment[]): RestartPolicy {
  const rp: RestartPolicy = { ...RESTART_DEFAULT };
  const segs = [...base, 'deploy', 'restart_policy'];
  if (isObj(deploy.restart_policy)) {
    const p = deploy.restart_policy;
    ctx.checkKeys(p, segs, 'services.*.deploy.restart_policy', ['condition', 'delay', 'max_attempts', 'window']);
    if (svc.restart !== undefined) ctx.policy([...base, 'restart'], 'services.*.restart+deploy.restart_policy');
    if (p.condition !== undefined) {
      if (p.condition === 'none' || p.condition === 'on-failure' || p.condition === 'any') rp.condition = p.condition;
      else ctx.error([...segs, 'condition'], `must be one of: none, on-failure, any; got ${JSON.stringify(p.condition)}`);
    }
    if (p.delay !== undefined) {
      const d = duration(ctx, p.delay, [...segs, 'delay']);
      if (d !== undefined) {
        rp.delayMs = d;
        rp.maxDelayMs = Math.max(rp.maxDelayMs, d);
      }
    }
    if (p.max_attempts !== undefined) rp.maxAttempts = toInt(ctx, p.max_attempts, [...segs, 'max_attempts']) ?? 0;
    if (p.window !== undefined) rp.windowMs = duration(ctx, p.window, [...segs, 'window']) ?? 0;
    return rp;
  }
  if (svc.restart === undefined || svc.restart === null) return rp;
  const r = text(svc.restart);
  const m = /^on-failure(?::(\d+))?$/.exec(r);
  if (r === 'no' || r === 'false') rp.condition = 'none';
  else if (r === 'always' || r === 'unless-stopped') rp.condition = 'any';
  else if (m) {
    rp.condition = 'on-failure';
    if (m[1] !== undefined) rp.maxAttempts = Number(m[1]);
  } else ctx.error([...base, 'restart'], `must be one of: no, always, unless-stopped, on-failure[:N]; got ${JSON.stringify(svc.restart)}`);
  return rp;
}
