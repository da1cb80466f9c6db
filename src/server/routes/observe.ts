/**
 * What operators read: cluster info, events (listed, watched, posted), logs
 * of services and tasks from every node, usage (top), Prometheus metrics, and
 * online snapshots of the store.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { BatonError } from '../../base/errors.js';
import { VERSION } from '../../base/version.js';
import { newEventSchema } from '../../api/schemas.js';
import { MAIN_CONTAINER, podContainerNames, type ClusterInfo, type Node, type Service, type Task, type TopResponse } from '../../api/types.js';
import type { StoredEvent } from '../../store/events.js';
import { matchesEventQuery } from '../../store/events.js';
import { parseSince } from '../logs.js';
import { prometheusTargets } from '../promSd.js';
import { defineRoute, flag, nameParam, queryInt, queryText, READERS } from './route.js';
import { logStacks, nodeCache, recordPosted, serviceCache, taskCache, type HttpDeps } from './deps.js';

const eventsQuery = z.object({
  kind: queryText(64).optional(),
  name: queryText(253).optional(),
  service: queryText(253).optional(),
  node: queryText(253).optional(),
  type: queryText(128).optional(),
  afterId: queryInt(0, Number.MAX_SAFE_INTEGER).optional(),
  limit: queryInt(1, 100_000).optional(),
  watch: flag,
});

const logsQuery = z.object({
  follow: flag,
  tail: z.union([z.literal('all'), z.literal(''), queryInt(0, 10_000_000)]).optional(),
  since: queryText(64).optional(),
  grep: queryText(1024).optional(),
  /** One container of a task that runs several (its main one when absent). */
  container: z.string().regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, "must be a container's name (a DNS label)").optional(),
  /** false: each node's lines as they come, grouped by task, not merged in time order. */
  merge: z.enum(['true', 'false']).optional(),
});

/** A log target's name: what a task or service may be called (a removed one's logs stay readable). */
const LOG_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function registerObserveRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { ctx } = deps;

  defineRoute(app, { method: 'GET', url: '/healthz', access: 'open', handler: async () => ({ ok: true }) });

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/info',
    access: [...READERS, 'agent'],
    handler: async (req): Promise<ClusterInfo> => ({
      clusterId: deps.clusterId,
      // Who asked (a token's role, name and a deployer's stacks): the dashboard shows only what that role may do.
      ...(req.role === 'admin' || req.role === 'deployer' || req.role === 'viewer' ? { caller: { role: req.role, name: req.who ?? '', ...(req.stacks ? { stacks: req.stacks } : {}) } } : {}),
      version: VERSION,
      apiVersion: 'baton/v1',
      storeBackend: deps.storeBackend,
      storeEpoch: deps.storeEpoch,
      revision: String(await ctx.registry.store.currentRevision()),
      ...(deps.election ? { leader: await deps.election.leader(), leading: deps.election.leading } : {}),
      ...(deps.servers ? { servers: await deps.servers() } : {}),
    }),
  });

  // ---------------------------------------------------------------- Prometheus discovery
  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/sd/prometheus',
    access: READERS,
    handler: async () =>
      prometheusTargets(
        [...nodeCache(deps).objects.values()] as unknown as Node[],
        [...serviceCache(deps).objects.values()] as unknown as Service[],
        [...taskCache(deps).objects.values()] as unknown as Task[],
      ),
  });

  // ---------------------------------------------------------------- the audit log
  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/audit',
    access: ['admin'],
    query: z.object({ user: queryText(253).optional(), since: queryText(64).optional(), limit: queryInt(1, 10_000).optional() }),
    handler: async (_req, _reply, { query: q }) => ({ items: await deps.audit.list({ ...(q.user ? { user: q.user } : {}), ...(q.since ? { since: parseSince(q.since, ctx.clock.now()) } : {}), ...(q.limit ? { limit: q.limit } : {}) }) }),
  });

  // ---------------------------------------------------------------- events
  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/events',
    access: READERS,
    query: eventsQuery,
    handler: async (_req, reply, { query: q }) => {
      const query = { kind: q.kind, name: q.name, service: q.service, node: q.node, type: q.type, afterId: q.afterId, limit: q.limit };
      const items = ctx.events.list(query).map(eventObject);
      if (!q.watch) return { items };
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      raw.flushHeaders();
      for (const e of items) raw.write(JSON.stringify({ type: 'ADDED', object: e }) + '\n');
      const unsub = ctx.events.subscribe((e) => {
        // A repeat comes again with its count grown: MODIFIED, the same id.
        if (matchesEventQuery(e, { ...query, afterId: undefined, limit: undefined })) raw.write(JSON.stringify({ type: e.count > 1 ? 'MODIFIED' : 'ADDED', object: eventObject(e) }) + '\n');
      });
      raw.on('close', unsub);
    },
  });
  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/events',
    access: ['admin', 'agent'],
    body: z.object({ items: z.array(newEventSchema).max(1000) }).strict(),
    handler: async (req, _reply, { body }) => {
      // A node speaks only for itself: its events name its node and come from its agent, whatever they said.
      const items = req.role === 'agent' ? body.items.map((e) => ({ ...e, node: req.node, source: `agent/${req.node}` })) : body.items;
      return { recorded: recordPosted(deps, items) };
    },
  });

  // ---------------------------------------------------------------- logs
  const logOptions = (q: z.infer<typeof logsQuery>) => {
    if (q.grep) {
      try {
        new RegExp(q.grep);
      } catch (e) {
        throw new BatonError('BATON_ERR_BAD_REQUEST', `grep: ${(e as Error).message}`, [{ path: 'query.grep', message: 'must be a regular expression' }]);
      }
    }
    const tail = q.tail === undefined || q.tail === '' || q.tail === 'all' ? undefined : q.tail;
    return { follow: q.follow, tail, since: q.since ? parseSince(q.since, ctx.clock.now()) : undefined, grep: q.grep || undefined, merge: q.merge !== 'false' };
  };
  // A removed service's or task's logs stay readable on its nodes for their retention: "not found" only for a name nothing could have.
  for (const target of ['service', 'task'] as const) {
    defineRoute(app, {
      method: 'GET',
      url: `/api/v1/${target}s/:name/logs`,
      access: READERS,
      stacks: ({ params }) => logStacks(deps, target, params.name),
      params: nameParam,
      query: logsQuery,
      handler: async (_req, reply, { params: { name }, query }) => {
        const q = logOptions(query);
        const known = target === 'service' && serviceCache(deps).objects.has(name);
        if (!known && !LOG_NAME.test(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `${target} "${name}" not found`);
        if (query.container !== undefined && target === 'service') throw new BatonError('BATON_ERR_BAD_REQUEST', "a container is one task's: pass a task (baton logs TASK -c NAME)", [{ path: 'query.container', message: "a service's logs hold every container's" }]);
        if (query.container !== undefined && target === 'task') {
          const t = taskCache(deps).objects.get(name) as unknown as Task | undefined;
          const names = t ? podContainerNames(t.spec) : undefined;
          if (names && !names.includes(query.container)) throw new BatonError('BATON_ERR_NOT_FOUND', `task "${name}" has no container "${query.container}" (it has ${names.join(', ')})`, [{ path: 'query.container', message: `one of ${names.join(', ')}` }]);
        }
        reply.hijack();
        // A pod container's lines are kept under `<task>~<container>` (agent/pod.ts); the main container's under the task's name.
        const main = (t?: Task) => query.container === (t?.spec.containerName ?? MAIN_CONTAINER);
        const key = target === 'task' && query.container !== undefined && !main(taskCache(deps).objects.get(name) as unknown as Task | undefined) ? `${name}~${query.container}` : name;
        await deps.logs.serve(target === 'service' ? { service: name } : { task: key }, q, reply.raw);
      },
    });
  }

  // ---------------------------------------------------------------- usage and metrics
  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/top',
    access: READERS,
    handler: async (): Promise<TopResponse> => {
      const tasks = deps.usage.tasks();
      const perNode = new Map<string, number>();
      for (const t of tasks) perNode.set(t.node, (perNode.get(t.node) ?? 0) + 1);
      const nodes = [...nodeCache(deps).objects.values()].map((o) => {
        const n = o as unknown as Node;
        const u = deps.usage.node(n.metadata.name);
        return { name: n.metadata.name, state: n.status.state, cpu: u?.cpu ?? 0, memoryBytes: u?.memoryBytes ?? 0, capacity: n.status.capacity, tasks: perNode.get(n.metadata.name) ?? 0 };
      });
      return { time: new Date(ctx.clock.now()).toISOString(), nodes, tasks };
    },
  });
  defineRoute(app, {
    method: 'GET',
    url: '/metrics',
    access: READERS,
    handler: async (_req, reply) => reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics()),
  });

  // ---------------------------------------------------------------- snapshot
  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/snapshot',
    access: ['admin'],
    handler: async (_req, reply) => {
      const file = await deps.snapshot();
      const { createReadStream } = await import('node:fs');
      const { rm } = await import('node:fs/promises');
      const stream = createReadStream(file);
      stream.on('close', () => void rm(file, { force: true }).catch(() => {}));
      return reply.type('application/vnd.sqlite3').send(stream);
    },
  });
}

function eventObject(e: StoredEvent) {
  return { ...e, time: new Date(e.time).toISOString(), lastTime: new Date(e.lastTime).toISOString() };
}
