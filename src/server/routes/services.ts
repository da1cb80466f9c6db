/**
 * Service verbs beyond the generic object routes (scale, rollouts, the
 * autoscaler's view and activation, scheduling explanations, usage) and
 * stacks (list, apply, remove).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { BatonError } from '../../base/errors.js';
import { revisionKind, serviceKind, taskKind } from '../../api/kinds.js';
import { isGlobal, type ApplyRequest, type Node, type Service, type Task } from '../../api/types.js';
import { fileInputSchema } from '../../api/schemas.js';
import { filterNode, Snapshot, SpreadPlacer } from '../../scheduler/placement.js';
import { pause, promote, restart, resume, rollback } from '../rollout.js';
import { applyStack, previewPlacement, removeStack } from '../apply.js';
import { checkBuilds } from '../blobs.js';
import { recordEvent } from '../controllers/context.js';
import type { AnyObject } from '../registry.js';
import { defineRoute, DEPLOYERS, flag, nameParam, READERS } from './route.js';
import { nodeCache, serviceCache, serviceStacks, taskCache, type HttpDeps } from './deps.js';

const stackParam = z.object({ stack: z.string().min(1).max(63) });

const applyBody = z
  .object({
    services: z
      .array(
        z
          .object({
            name: z.string().max(253),
            spec: z.unknown(),
            labels: z.record(z.string().max(253), z.string().max(1024)).optional(),
          })
          .strict(),
      )
      .max(1000),
    prune: z.boolean().optional(),
    dryRun: z.boolean().optional(),
    secrets: z.array(fileInputSchema).max(100).optional(),
    configs: z.array(fileInputSchema).max(100).optional(),
  })
  .strict();

export function registerServiceRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { ctx, caches } = deps;

  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/services/:name/scale',
    access: DEPLOYERS,
    stacks: ({ params }) => serviceStacks(deps, params.name),
    params: nameParam,
    body: z.object({ replicas: z.number({ error: 'replicas must be a whole number from 0 to 100000' }).int('replicas must be a whole number from 0 to 100000').min(0, 'replicas must be a whole number from 0 to 100000').max(100_000, 'replicas must be a whole number from 0 to 100000') }).strict(),
    handler: async (_req, _reply, { params: { name }, body: { replicas } }) => {
      const out = await ctx.registry.mutate<Service & AnyObject>(serviceKind, name, (cur) => {
        if (cur.spec.autoscale) throw new BatonError('BATON_ERR_CONFLICT', `service ${name} is autoscaled (x-baton.autoscale, ${cur.spec.autoscale.min} to ${cur.spec.autoscale.max} replicas): the autoscaler owns its replicas; change min and max instead (baton autoscale ls shows its decisions)`);
        if (isGlobal(cur.spec)) throw new BatonError('BATON_ERR_BAD_REQUEST', `service ${name} is ${cur.spec.mode}: it runs one task on every eligible node and cannot be scaled`);
        if (cur.spec.replicas === replicas) return undefined;
        return ctx.registry.specUpdate(cur, { spec: { ...cur.spec, replicas } }) as Service & AnyObject;
      });
      if (!out) throw new BatonError('BATON_ERR_NOT_FOUND', `service "${name}" not found`);
      return out;
    },
  });

  // Rollouts: each a guarded write of the service; the service controller does the rest.
  const rolloutCtx = { ...ctx, revisions: caches[revisionKind.plural] };
  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/services/:name/rollback',
    access: DEPLOYERS,
    stacks: ({ params }) => serviceStacks(deps, params.name),
    params: nameParam,
    body: z.object({ to: z.number().int().min(1, 'to must be a revision number').optional() }).strict().optional(),
    handler: async (_req, _reply, { params: { name }, body }) => {
      const r = await rollback(rolloutCtx, name, { to: body?.to, reason: 'asked by hand', automatic: false });
      return { service: name, revision: r.spec.revision, hash: r.spec.hash, image: r.spec.spec.container.image };
    },
  });
  for (const [verb, fn] of [['restart', restart], ['pause', pause], ['resume', resume], ['promote', promote]] as const) {
    defineRoute(app, {
      method: 'POST',
      url: `/api/v1/services/:name/${verb}`,
      access: DEPLOYERS,
      stacks: ({ params }) => serviceStacks(deps, params.name),
      params: nameParam,
      handler: async (_req, _reply, { params }) => fn(rolloutCtx, params.name),
    });
  }

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/autoscale',
    access: READERS,
    handler: async () => ({ items: [...deps.autoscaler.views.values()].sort((a, b) => a.service.localeCompare(b.service)) }),
  });
  // A node's mesh holding a connection for a service scaled to zero wakes it.
  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/services/:name/activate',
    access: ['admin', 'agent'],
    params: nameParam,
    handler: async (_req, _reply, { params }) => ({ activated: await deps.autoscaler.activate(params.name) }),
  });

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/tasks/:name/explain',
    access: READERS,
    params: nameParam,
    query: z.object({ allNodes: flag }),
    handler: async (_req, _reply, { params: { name }, query }) => {
      const task = (await ctx.registry.mustGet(taskKind, name)) as unknown as Task;
      if (!query.allNodes) return { task: name, decision: task.status.scheduling ?? null };
      // Re-run the filters now, against the current caches, for every node.
      const tasks = [...taskCache(deps).objects.values()] as unknown as Task[];
      const nodes = ([...nodeCache(deps).objects.values()] as unknown as Node[]).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
      const snap = new Snapshot(nodes, tasks.filter((t) => t.metadata.name !== name));
      return {
        task: name,
        decision: task.status.scheduling ?? null,
        nodes: snap.nodes.map((ns) => {
          const reason = filterNode(task, ns, snap);
          return { node: ns.name, fits: reason === undefined, ...(reason ? { reason } : {}) };
        }),
      };
    },
  });

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/services/:name/stats',
    access: READERS,
    params: nameParam,
    handler: async (_req, _reply, { params: { name } }) => {
      if (!serviceCache(deps).objects.has(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `service "${name}" not found`);
      return deps.usage.stats(name);
    },
  });

  // ---------------------------------------------------------------- stacks
  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/stacks',
    access: READERS,
    handler: async () => {
      const stacks = new Map<string, { name: string; services: number; replicas: number; ready: number }>();
      for (const s of serviceCache(deps).list() as unknown as Service[]) {
        if (!s.spec.stack) continue;
        const e = stacks.get(s.spec.stack) ?? { name: s.spec.stack, services: 0, replicas: 0, ready: 0 };
        e.services++;
        e.replicas += s.spec.replicas;
        e.ready += s.status.ready ?? 0;
        stacks.set(s.spec.stack, e);
      }
      return { items: [...stacks.values()].sort((a, b) => a.name.localeCompare(b.name)) };
    },
  });
  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/stacks/:stack/apply',
    access: DEPLOYERS,
    stacks: ({ params }) => [params.stack],
    params: stackParam,
    body: applyBody,
    handler: async (_req, _reply, { params: { stack }, body }) => {
      // applyStack checks each spec against the service schema, listing every problem with its path.
      const services = body.services.map((s) => ({ name: s.name, spec: s.spec, labels: s.labels ?? {} })) as ApplyRequest['services'];
      await checkBuilds(deps.blobs, services.map((s, i) => ({ path: `services[${i}].spec.container`, container: s.spec?.container })));
      const res = await applyStack(ctx.registry, { stack, services, prune: !!body.prune, dryRun: !!body.dryRun, ...(body.secrets ? { secrets: body.secrets } : {}), ...(body.configs ? { configs: body.configs } : {}) }, deps.files);
      if (body.dryRun) {
        const changed = new Set(res.results.filter((r) => r.action === 'create' || r.action === 'update').map((r) => r.name));
        const nodes = [...nodeCache(deps).objects.values()] as unknown as Node[];
        const tasks = [...taskCache(deps).objects.values()] as unknown as Task[];
        res.placement = previewPlacement(services, changed, nodes, tasks, new SpreadPlacer(), ctx.clock.now());
      } else {
        const changed = res.results.filter((r) => r.action !== 'unchanged');
        const filesChanged = (res.files ?? []).map((f) => `${f.action} ${f.kind} ${f.name}`);
        if (changed.length || filesChanged.length) recordEvent(ctx, { type: 'Normal', reason: 'StackApplied', kind: 'Stack', name: stack, source: 'api', message: [...filesChanged, ...changed.map((r) => `${r.action} ${r.name}`)].join(', ') });
      }
      return res;
    },
  });
  defineRoute(app, {
    method: 'DELETE',
    url: '/api/v1/stacks/:stack',
    access: DEPLOYERS,
    stacks: ({ params }) => [params.stack],
    params: stackParam,
    handler: async (_req, _reply, { params: { stack } }) => {
      const removed = await removeStack(ctx.registry, stack);
      recordEvent(ctx, { type: 'Normal', reason: 'StackRemoved', kind: 'Stack', name: stack, source: 'api', message: `removed ${removed.join(', ')}` });
      return { removed };
    },
  });
}
