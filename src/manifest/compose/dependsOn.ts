/**
 * Start order: a service's `depends_on` (a list of service keys, or a
 * mapping of keys to `{condition, required, restart}`), translated into the
 * spec's dependencies, which the scheduler waits for when the stack is first
 * deployed (server/controllers/dependencies.ts). The file as a whole is
 * checked once every service is read: no cycle, and `service_healthy` only
 * on a service that has a health check.
 */
import type { Dependency } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { isObj, type Ctx } from './issues.js';
import type { ComposeService } from './types.js';

const CONDITIONS = ['service_started', 'service_healthy', 'service_completed_successfully'] as const;

/** dependsOn reads one service's depends_on. */
export function dependsOn(ctx: Ctx, raw: unknown, segs: PathSegment[]): Dependency[] {
  if (raw === undefined || raw === null) return [];
  const out: Dependency[] = [];
  const add = (key: unknown, at: PathSegment[], condition: Dependency['condition'] = 'service_started', required = true) => {
    if (typeof key !== 'string' || !ctx.serviceKeys.has(key)) return void ctx.error(at, `depends on ${JSON.stringify(key)}, which is not a service of this file`);
    out.push({ service: `${ctx.stack}_${key}`, condition, required });
  };
  if (Array.isArray(raw)) {
    raw.forEach((k, i) => add(k, [...segs, i]));
    return out;
  }
  if (!isObj(raw)) return void ctx.error(segs, 'must be a list of services, or a mapping of services to {condition, required}'), [];
  for (const [key, v] of Object.entries(raw)) {
    const at: PathSegment[] = [...segs, key];
    const d = isObj(v) ? v : {};
    if (v !== null && v !== undefined && !isObj(v)) ctx.error(at, 'must be a mapping with condition, required or restart');
    ctx.checkKeys(d, at, 'services.*.depends_on.*', ['condition', 'required', 'restart']);
    const condition = d.condition ?? 'service_started';
    if (!CONDITIONS.includes(condition as (typeof CONDITIONS)[number])) {
      ctx.error([...at, 'condition'], `must be one of ${CONDITIONS.join(', ')}`);
      continue;
    }
    if (d.restart !== undefined) ctx.warn([...at, 'restart'], '`restart` is ignored: Baton does not restart a service when its dependency is updated (its update_config rolls it when its own spec changes)');
    add(key, at, condition as Dependency['condition'], d.required !== false && d.required !== 'false');
  }
  return out;
}

/** checkDependencyGraph refuses cycles, and service_healthy on a service without a health check. */
export function checkDependencyGraph(ctx: Ctx, services: ComposeService[]): void {
  const byName = new Map(services.map((s) => [s.name, s]));
  for (const s of services) {
    for (const d of s.spec.dependsOn ?? []) {
      const dep = byName.get(d.service);
      if (d.condition === 'service_healthy' && dep && !dep.spec.container.healthcheck && !dep.spec.container.readiness) {
        ctx.error(['services', s.shortName, 'depends_on', dep.shortName, 'condition'], `service_healthy needs a health check on ${dep.shortName} (healthcheck or x-baton.readiness), and it has none`);
      }
      if (d.condition === 'service_completed_successfully' && dep && dep.spec.mode !== 'replicated-job' && dep.spec.mode !== 'global-job') {
        ctx.error(['services', s.shortName, 'depends_on', dep.shortName, 'condition'], `service_completed_successfully needs ${dep.shortName} to be a job (deploy.mode: replicated-job), or it never completes`);
      }
    }
  }
  // A cycle never starts: find one by depth-first search, and name it.
  const state = new Map<string, 'visiting' | 'done'>();
  const path: string[] = [];
  const visit = (name: string): string[] | undefined => {
    if (state.get(name) === 'done') return undefined;
    if (state.get(name) === 'visiting') return [...path.slice(path.indexOf(name)), name];
    state.set(name, 'visiting');
    path.push(name);
    for (const d of byName.get(name)?.spec.dependsOn ?? []) {
      const cycle = visit(d.service);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(name, 'done');
    return undefined;
  };
  for (const s of services) {
    const cycle = visit(s.name);
    if (cycle) {
      const short = cycle.map((n) => byName.get(n)?.shortName ?? n);
      ctx.error(['services', short[0]!, 'depends_on'], `depends_on makes a cycle (${short.join(' → ')}): none of them could start`);
      return;
    }
  }
}
