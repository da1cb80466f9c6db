/**
 * Rollout operations on a service: its revisions (every spec it ran, as
 * `baton service history` lists them), rollback (automatic, from the
 * service controller when a rollout fails with failure_action rollback, or
 * by hand), rolling restart, pause and resume, and canary promotion. Each
 * is one guarded write of the service (spec or annotations); the service
 * reconciler derives the rollout from the tasks, so a server restart in the
 * middle resumes it.
 */
import { BatonError } from '../base/errors.js';
import { revisionKind, serviceKind } from '../api/kinds.js';
import type { Revision, Service } from '../api/types.js';
import type { ControllerContext } from './controllers/context.js';
import { recordEvent } from './controllers/context.js';
import { PROMOTED, RESUMED_AT, ROLLBACK_REASON, ROLLBACK_TO, ROLLOUT_PAUSED, specHash } from './controllers/serviceReconciler.js';
import type { AnyObject } from './registry.js';

/** Revisions kept per service (Kubernetes' revisionHistoryLimit). */
export const REVISION_HISTORY_LIMIT = 10;

/** CHANGE_CAUSE: `<cause>@<spec hash>`, the cause the revision of that spec records (set by restart and rollback). */
export const CHANGE_CAUSE = 'baton.change-cause';

type Ctx = Pick<ControllerContext, 'registry' | 'events' | 'log' | 'clock'> & { revisions?: ControllerContext['revisions'] };

/** revisionsOf lists a service's revisions, oldest first. */
export function revisionsOf(ctx: Ctx, service: string, uid?: string): Revision[] {
  if (!ctx.revisions) return [];
  // Read through an index: the service controller asks at every reconcile of every service.
  ctx.revisions.addIndex(REVISIONS_BY_SERVICE, (o) => (o as unknown as Revision).spec.service);
  const out = (ctx.revisions.byIndex(REVISIONS_BY_SERVICE, service) as unknown as Revision[]).filter((r) => !uid || r.spec.serviceUid === uid);
  return out.sort((a, b) => a.spec.revision - b.spec.revision);
}

const REVISIONS_BY_SERVICE = 'byService';

/**
 * recordRevision makes sure the service's current spec is a revision (a new
 * one numbered after the last), trims the oldest beyond the limit, and
 * returns the current spec's revision number.
 */
export async function recordRevision(ctx: Ctx, svc: Service): Promise<number | undefined> {
  if (!ctx.revisions) return undefined;
  const hash = specHash(svc);
  const list = revisionsOf(ctx, svc.metadata.name, svc.metadata.uid);
  const have = list.find((r) => r.spec.hash === hash);
  if (have) return have.spec.revision;
  const revision = (list.at(-1)?.spec.revision ?? 0) + 1;
  const given = /^(.*)@([0-9a-f]+)$/.exec(svc.metadata.annotations?.[CHANGE_CAUSE] ?? '');
  const cause = given && given[2] === hash ? given[1]! : revision === 1 ? 'created' : 'apply';
  try {
    await ctx.registry.create(revisionKind, {
      metadata: { name: `${svc.metadata.name}.${hash}`, labels: { 'baton.service': svc.metadata.name }, ownerRefs: [{ kind: 'Service', name: svc.metadata.name, uid: svc.metadata.uid }] },
      spec: { service: svc.metadata.name, serviceUid: svc.metadata.uid, revision, hash, spec: svc.spec, cause },
      status: {},
    });
  } catch (e) {
    // Made meanwhile (a stale cache): it is there, which is all we need.
    if ((e as BatonError).code !== 'BATON_ERR_ALREADY_EXISTS') throw e;
  }
  const keep = svc.spec.revisionHistoryLimit !== undefined ? svc.spec.revisionHistoryLimit + 1 : REVISION_HISTORY_LIMIT;
  for (const old of list.slice(0, Math.max(0, list.length + 1 - keep))) {
    await ctx.registry.store.txn([], [{ type: 'delete', key: ctx.registry.key(revisionKind, old.metadata.name) }]);
  }
  return revision;
}

/** deleteRevisions removes the revisions of a service that is gone. */
export async function deleteRevisions(ctx: Ctx, service: string): Promise<void> {
  for (const r of revisionsOf(ctx, service)) await ctx.registry.store.txn([], [{ type: 'delete', key: ctx.registry.key(revisionKind, r.metadata.name) }]);
}

function mustGet(svc: Service | undefined, name: string): Service {
  if (!svc) throw new BatonError('BATON_ERR_NOT_FOUND', `service "${name}" not found`);
  return svc;
}

/**
 * rollback sets the service's spec back to a revision (the one before the
 * current, or `to`), keeping its replicas, and marks the rollout a rollback
 * (it follows rollback_config). Returns the revision rolled back to.
 */
export async function rollback(ctx: Ctx, name: string, o: { to?: number; reason: string; automatic: boolean }): Promise<Revision> {
  const current = mustGet((await ctx.registry.get<Service & AnyObject>(serviceKind, name)) as Service | undefined, name);
  const hash = specHash(current);
  const list = revisionsOf(ctx, name, current.metadata.uid);
  const cur = list.find((r) => r.spec.hash === hash);
  let target: Revision | undefined;
  if (o.to !== undefined) {
    target = list.find((r) => r.spec.revision === o.to);
    if (!target) throw new BatonError('BATON_ERR_NOT_FOUND', `service ${name} has no revision ${o.to}; its revisions: ${list.map((r) => r.spec.revision).join(', ') || 'none'} (baton service history ${name})`);
    if (target.spec.hash === hash) throw new BatonError('BATON_ERR_CONFLICT', `service ${name} already runs revision ${o.to}`);
  } else {
    // The newest revision deployed before the current one.
    target = [...list].reverse().find((r) => r.spec.hash !== hash && (!cur || r.spec.revision < cur.spec.revision));
    if (!target) throw new BatonError('BATON_ERR_CONFLICT', `service ${name} has no earlier revision to roll back to`);
  }
  const to = target;
  await ctx.registry.mutate<Service & AnyObject>(serviceKind, name, (s) => {
    if (s.metadata.uid !== current.metadata.uid) return undefined;
    s.spec = { ...to.spec.spec, replicas: s.spec.replicas, stack: s.spec.stack, shortName: s.spec.shortName };
    s.metadata.annotations = { ...s.metadata.annotations, [ROLLBACK_TO]: to.spec.hash, [CHANGE_CAUSE]: `rollback to ${to.spec.revision}@${to.spec.hash}` };
    delete s.metadata.annotations[ROLLOUT_PAUSED];
    if (o.automatic) s.metadata.annotations[ROLLBACK_REASON] = o.reason;
    else delete s.metadata.annotations[ROLLBACK_REASON];
    s.metadata.generation++;
    return s;
  });
  recordEvent(ctx, {
    type: o.automatic ? 'Warning' : 'Normal',
    reason: 'RollbackStarted',
    kind: 'Service',
    name,
    uid: current.metadata.uid,
    service: name,
    source: o.automatic ? 'controller/service' : 'api',
    message: `rolling ${name} back from revision ${cur?.spec.revision ?? '?'} to ${to.spec.revision} (${to.spec.spec.container.image}): ${o.reason}`,
  });
  return to;
}

/** setAnnotations writes (or with undefined, removes) annotations of a service; they steer its rollout. */
export async function setAnnotations(ctx: Ctx, name: string, values: Record<string, string | undefined>): Promise<Service> {
  const out = await ctx.registry.mutate<Service & AnyObject>(serviceKind, name, (s) => {
    const next = { ...s.metadata.annotations };
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete next[k];
      else next[k] = v;
    }
    s.metadata.annotations = next;
    return s;
  });
  return mustGet(out as Service | undefined, name);
}

export async function pause(ctx: Ctx, name: string): Promise<Service> {
  return setAnnotations(ctx, name, { [ROLLOUT_PAUSED]: 'true' });
}

/** resume lifts a pause, by hand or after failures (those before now no longer count). */
export async function resume(ctx: Ctx, name: string): Promise<Service> {
  return setAnnotations(ctx, name, { [ROLLOUT_PAUSED]: undefined, [RESUMED_AT]: new Date(ctx.clock.now()).toISOString() });
}

/** promote lets a canary rollout go on to every task. */
export async function promote(ctx: Ctx, name: string): Promise<Service> {
  const svc = mustGet((await ctx.registry.get<Service & AnyObject>(serviceKind, name)) as Service | undefined, name);
  if (!svc.spec.canary) throw new BatonError('BATON_ERR_CONFLICT', `service ${name} has no canaries to promote (x-baton.canary)`);
  return setAnnotations(ctx, name, { [PROMOTED]: specHash(svc) });
}

/** restart rolls every task out again with the same spec (a rolling restart, by update_config). */
export async function restart(ctx: Ctx, name: string): Promise<Service> {
  const out = await ctx.registry.mutate<Service & AnyObject>(serviceKind, name, (s) => {
    s.spec = { ...s.spec, forceUpdate: (s.spec.forceUpdate ?? 0) + 1 };
    s.metadata.annotations = { ...s.metadata.annotations, [CHANGE_CAUSE]: `restart@${specHash(s as Service)}` };
    s.metadata.generation++;
    return s;
  });
  return mustGet(out as Service | undefined, name);
}
