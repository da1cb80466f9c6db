/**
 * applyStack makes a stack's services match a declared set in ONE store txn:
 * every service is created, updated or (with prune) deleted together, or
 * nothing is. Re-applying the same declaration writes nothing. The diff it
 * returns is what `--dry-run` prints.
 */
import { BatonError, type ErrorDetail } from '../base/errors.js';
import { serviceKind } from '../api/kinds.js';
import { objectNameSchema, serviceSpecSchema, zodDetails } from '../api/schemas.js';
import { mapPodContainers, podContainerSpecs, type ApplyRequest, type ApplyResponse, type ApplyServiceResult, type Config, type Node, type Secret, type Service, type Task } from '../api/types.js';
import { FILE_KINDS, rollOps, usesFiles, withHashes, type FileContents, type FileKindName } from './files.js';
import type { Placer } from '../scheduler/placement.js';
import { NO_DRAIN, reconcileService } from './controllers/serviceReconciler.js';
import { MAX_TXN_OPS, type Compare, type Op } from '../store/store.js';
import { stableStringify, type AnyObject, type Registry, type WriteChange } from './registry.js';

const STACK_LABEL = 'baton.stack';

export function validateApply(req: ApplyRequest): ErrorDetail[] {
  const details: ErrorDetail[] = [];
  if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(req.stack ?? '')) details.push({ path: 'stack', message: 'stack name must be lowercase letters, digits, "_" or "-", starting with a letter or digit' });
  if (!Array.isArray(req.services)) {
    details.push({ path: 'services', message: 'must be a list' });
    return details;
  }
  const seen = new Set<string>();
  req.services.forEach((s, i) => {
    const n = objectNameSchema.safeParse(s?.name);
    if (!n.success) details.push(...zodDetails(n.error, `services[${i}].name`));
    if (seen.has(s?.name)) details.push({ path: `services[${i}].name`, message: `duplicate service "${s.name}"` });
    seen.add(s?.name);
    const r = serviceSpecSchema.safeParse(s?.spec);
    if (!r.success) details.push(...zodDetails(r.error, `services.${s?.name ?? i}.spec`));
    else if (s.spec.stack !== req.stack) details.push({ path: `services.${s.name}.spec.stack`, message: `is "${s.spec.stack}" but the stack being applied is "${req.stack}"` });
  });
  return details;
}

/** diffLines lists changed leaves as "path: old → new", for humans. */
export function diffLines(a: unknown, b: unknown, path = ''): string[] {
  if (stableStringify(a) === stableStringify(b)) return [];
  const isObj = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a as object), ...Object.keys(b as object)])].sort();
    return keys.flatMap((k) => diffLines((a as any)[k], (b as any)[k], path ? `${path}.${k}` : k));
  }
  return [`${path}: ${JSON.stringify(a) ?? '(none)'} → ${JSON.stringify(b) ?? '(none)'}`];
}

export async function applyStack(registry: Registry, req: ApplyRequest, files?: FileContents): Promise<ApplyResponse> {
  const details = validateApply(req);
  if (details.length) throw new BatonError('BATON_ERR_VALIDATION', `stack "${req.stack}" is invalid`, details);
  if ((req.secrets?.length || req.configs?.length) && !files) throw new BatonError('BATON_ERR_BAD_REQUEST', 'this server keeps no secrets or configs');

  for (let attempt = 0; attempt < 5; attempt++) {
    const existing = (await registry.list<Service & AnyObject>(serviceKind)).items;
    const byName = new Map(existing.map((s) => [s.metadata.name, s]));
    const clash = publishedClashes(req, existing);
    if (clash.length) throw new BatonError('BATON_ERR_CONFLICT', `stack "${req.stack}" publishes a port another service already publishes`, clash);
    const compares: Compare[] = [];
    const ops: Op[] = [];
    const results: ApplyServiceResult[] = [];
    /** What the services' writes change, for their stacks' quotas (charged in this txn). */
    const changes: WriteChange[] = [];
    // Secrets and configs first: the services' references take their hashes (a new content rolls them).
    // Read only when the file defines some or a service uses some: most applies do neither.
    const needsFiles = !!(req.secrets?.length || req.configs?.length) || req.services.some((s) => podContainerSpecs(s.spec).some(({ container: c }) => usesFiles(c)));
    const planned = files && needsFiles ? await planFiles(registry, files, req) : { compares: [], ops: [], changes: [], hash: () => undefined };
    compares.push(...planned.compares);
    ops.push(...planned.ops);
    const refProblems: ErrorDetail[] = [];
    for (const s of req.services) s.spec = mapPodContainers(s.spec, (c, at) => withHashes(c, planned.hash, `services.${s.spec.shortName}${at === 'container' ? '' : `.${at}`}`, refProblems));
    if (refProblems.length) throw new BatonError('BATON_ERR_VALIDATION', `stack "${req.stack}" uses secrets or configs that do not exist`, refProblems);
    for (const s of req.services) {
      const labels = { ...s.labels, [STACK_LABEL]: req.stack };
      const cur = byName.get(s.name);
      if (!cur) {
        const obj = registry.build(serviceKind, { metadata: { name: s.name, labels }, spec: s.spec, status: { observedGeneration: 0, desired: s.spec.replicas, ready: 0, running: 0 } });
        const c = registry.createOp(serviceKind, obj);
        changes.push({ after: obj });
        compares.push(c.compare);
        ops.push(c.op);
        results.push({ name: s.name, action: 'create' });
        continue;
      }
      if (cur.spec.stack !== req.stack) {
        throw new BatonError('BATON_ERR_CONFLICT', `service "${s.name}" belongs to stack "${cur.spec.stack || '(none)'}", not "${req.stack}"`, [{ path: `services.${s.spec.shortName}`, message: 'name already taken by another stack' }]);
      }
      // An autoscaled service's replicas belong to the autoscaler: the file's count is only the starting one.
      if (cur.spec.autoscale && s.spec.autoscale) s.spec = { ...s.spec, replicas: Math.min(s.spec.autoscale.max, Math.max(s.spec.autoscale.min, cur.spec.replicas)) };
      const diff = [...diffLines(cur.spec, s.spec, 'spec'), ...diffLines(cur.metadata.labels, labels, 'labels')];
      if (diff.length === 0) {
        results.push({ name: s.name, action: 'unchanged' });
        continue;
      }
      const next = registry.specUpdate(cur, { spec: s.spec, labels });
      const u = registry.updateOp(serviceKind, cur, next);
      changes.push({ before: cur, after: next });
      compares.push(u.compare);
      ops.push(u.op);
      results.push({ name: s.name, action: 'update', diff });
    }
    // Services outside this file that use a secret or config it changed roll too.
    const declaredNames = new Set(req.services.map((s) => s.name));
    for (const c of planned.changes.filter((x) => x.action === 'update')) {
      const roll = rollOps(registry, existing.filter((s) => !declaredNames.has(s.metadata.name)), c.kind, c.name, c.hash);
      compares.push(...roll.compares);
      ops.push(...roll.ops);
      for (const n of roll.names) results.push({ name: n, action: 'update', diff: [`spec.container.${c.kind}s: ${c.name} has a new content`] });
    }
    if (req.prune) {
      const declared = new Set(req.services.map((s) => s.name));
      for (const cur of existing) {
        // A cron job's runs belong to their template, not to the file.
        if (cur.spec.stack !== req.stack || declared.has(cur.metadata.name) || cur.metadata.ownerRefs?.some((r) => r.kind === 'Service')) continue;
        const d = registry.deleteOp(serviceKind, cur);
        changes.push({ before: cur });
        compares.push(d.compare);
        ops.push(d.op);
        results.push({ name: cur.metadata.name, action: 'delete' });
      }
    }
    // The stack's quota: refused here (a dry run too) when the stack would ask for more than it allows.
    const charge = await registry.guardOps(serviceKind, changes);
    compares.push(...charge.compares);
    ops.push(...charge.ops);
    if (ops.length > MAX_TXN_OPS) {
      throw new BatonError('BATON_ERR_TOO_LARGE', `stack "${req.stack}" changes ${ops.length} services at once; one apply is one transaction of at most ${MAX_TXN_OPS}`);
    }
    const changedFiles = planned.changes.map(({ kind, name, action }) => ({ kind, name, action }));
    if (req.dryRun || ops.length === 0) {
      return { stack: req.stack, revision: String(await registry.store.currentRevision()), results, warnings: [], ...(changedFiles.length ? { files: changedFiles } : {}) };
    }
    const r = await registry.store.txn(compares, ops);
    if (r.succeeded) return { stack: req.stack, revision: String(r.revision), results, warnings: [], ...(changedFiles.length ? { files: changedFiles } : {}) };
    // Someone changed a service between our read and write: read again.
  }
  throw new BatonError('BATON_ERR_CONFLICT', `stack "${req.stack}" kept changing while applying; try again`);
}

/**
 * planFiles plans the writes of the secrets and configs a file defines, and
 * says each one's hash: the new content's, or the one in the cluster.
 */
async function planFiles(registry: Registry, files: FileContents, req: ApplyRequest) {
  const compares: Compare[] = [];
  const ops: Op[] = [];
  const changes: { kind: FileKindName; name: string; action: 'create' | 'update'; hash: string }[] = [];
  const hashes = new Map<string, string>();
  for (const kind of ['secret', 'config'] as const) {
    const current = new Map((await registry.list<Secret | Config>(FILE_KINDS[kind])).items.map((o) => [o.metadata.name, o]));
    for (const [name, o] of current) hashes.set(`${kind}/${name}`, o.spec.hash);
    for (const f of (kind === 'secret' ? req.secrets : req.configs) ?? []) {
      const cur = current.get(f.name);
      const p = files.plan(kind, f.name, Buffer.from(f.data, 'base64'), cur, { ...f.labels, [STACK_LABEL]: req.stack });
      if (!p) continue;
      compares.push(p.compare);
      ops.push(...p.ops);
      hashes.set(`${kind}/${f.name}`, p.object.spec.hash);
      changes.push({ kind, name: f.name, action: cur ? 'update' : 'create', hash: p.object.spec.hash });
    }
  }
  return { compares, ops, changes, hash: (kind: FileKindName, name: string) => hashes.get(`${kind}/${name}`) };
}

/**
 * publishedClashes finds routing-mesh ports (mode ingress) that two services
 * would publish: the mesh listens on each published port on every node, so
 * one port is one service, as in Swarm.
 */
function publishedClashes(req: ApplyRequest, existing: readonly Service[]): ErrorDetail[] {
  const declared = new Set(req.services.map((s) => s.name));
  /** By `<port>/<protocol>`: TCP 53 and UDP 53 are two ports. */
  const owner = new Map<string, string>();
  for (const s of existing) {
    // Services of this stack are replaced by what is declared now (or pruned, or left as they are).
    if (declared.has(s.metadata.name) || (req.prune && s.spec.stack === req.stack)) continue;
    for (const p of s.spec.ports) if (p.mode === 'ingress' && p.published !== undefined) owner.set(`${p.published}/${p.protocol}`, s.metadata.name);
  }
  const out: ErrorDetail[] = [];
  for (const s of req.services) {
    s.spec.ports.forEach((p, i) => {
      if (p.mode !== 'ingress' || p.published === undefined) return;
      const key = `${p.published}/${p.protocol}`;
      const other = owner.get(key);
      if (other && other !== s.name) out.push({ path: `services.${s.spec.shortName}.ports[${i}]`, message: `port ${key} is already published by service ${other}` });
      else owner.set(key, s.name);
    });
  }
  return out;
}

/** removeStack deletes every service of a stack in one txn (their tasks are then stopped by the service controller). */
export async function removeStack(registry: Registry, stack: string): Promise<string[]> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const existing = (await registry.list<Service & AnyObject>(serviceKind)).items.filter((s) => s.spec.stack === stack);
    if (existing.length === 0) throw new BatonError('BATON_ERR_NOT_FOUND', `stack "${stack}" not found`);
    const compares: Compare[] = [];
    const ops: Op[] = [];
    for (const s of existing) {
      const d = registry.deleteOp(serviceKind, s);
      compares.push(d.compare);
      ops.push(d.op);
    }
    const r = await registry.store.txn(compares, ops);
    if (r.succeeded) return existing.map((s) => s.metadata.name);
  }
  throw new BatonError('BATON_ERR_CONFLICT', `stack "${stack}" kept changing while removing; try again`);
}

/**
 * previewPlacement answers "where would these services' tasks land?" for a
 * dry run: each created or updated service's desired tasks are made as the
 * service controller would (one per slot, or one per eligible node for a
 * global service) and placed in one pass, as the scheduler would, against
 * the current nodes and every other service's live tasks. Nothing is written.
 */
export function previewPlacement(services: ApplyRequest['services'], changed: Set<string>, nodes: Node[], tasks: Task[], placer: Placer, now: number): NonNullable<ApplyResponse['placement']> {
  const out: NonNullable<ApplyResponse['placement']> = {};
  const names = new Set(services.filter((s) => changed.has(s.name)).map((s) => s.name));
  const others = tasks.filter((t) => !names.has(t.spec.serviceName));
  const pending: Task[] = [];
  for (const s of services) {
    if (!names.has(s.name)) continue;
    out[s.name] = { nodes: {}, pending: {} };
    const svc = { apiVersion: 'baton/v1', kind: 'Service', metadata: { name: s.name, uid: `dry-run-${s.name}`, resourceVersion: '0', generation: 1, labels: s.labels ?? {}, ownerRefs: [], creationTimestamp: new Date(now).toISOString() }, spec: s.spec, status: { observedGeneration: 0, desired: 0, ready: 0, running: 0 } } as Service;
    for (const c of reconcileService(svc, [], now, NO_DRAIN, nodes).create) {
      pending.push({ apiVersion: 'baton/v1', kind: 'Task', metadata: { name: c.name, uid: c.uid, resourceVersion: '0', generation: 1, labels: {}, ownerRefs: [], creationTimestamp: svc.metadata.creationTimestamp }, spec: c.spec, status: { state: 'pending', message: '', ports: [], restartCount: 0, timestamp: svc.metadata.creationTimestamp } } as Task);
    }
  }
  const plan = placer.place(pending, nodes, others);
  for (const p of plan.placed) {
    const e = out[p.task.spec.serviceName]!.nodes;
    e[p.node.metadata.name] = (e[p.node.metadata.name] ?? 0) + 1;
  }
  for (const u of plan.unplaced) {
    const e = out[u.task.spec.serviceName]!.pending;
    e[u.reason] = (e[u.reason] ?? 0) + 1;
  }
  return out;
}
