/**
 * The routes every store-backed kind gets from the KINDS table: list (or
 * watch), get, and for client-writable kinds create, update and delete; and
 * the task status subresource, where agents report (validated field by field,
 * and only for their own tasks, at addresses their node owns).
 */
import { checkBuilds } from '../blobs.js';
import { isIPv4 } from 'node:net';
import { contains, parseCidr } from '../../base/cidr.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { BatonError } from '../../base/errors.js';
import { KINDS, endpointsKind, nodeKind, serviceKind, taskKind, type KindInfo } from '../../api/kinds.js';
import { objectNameSchema, taskStatusBatchSchema, taskStatusPutSchema, zodDetails } from '../../api/schemas.js';
import type { Node, ServiceSpec, Task, TaskStatus } from '../../api/types.js';
import { resolveFileRefs } from '../files.js';
import type { Registry } from '../registry.js';
import { GoneError, isStatusOnly, type WatchCache } from '../watchCache.js';
import { defineRoute, DEPLOYERS, flag, nameParam, queryInt, queryText, READERS } from './route.js';
import { nodeCache, recordPosted, sameAddress, serviceStacks, taskCache, withLastBeat, type HttpDeps } from './deps.js';

/** Buffered bytes after which a slow watch stream is closed; the client re-watches from its last revision. */
const SLOW_WATCHER_BYTES = 8 * 1024 * 1024;

/** How long a list waits for the watch cache to catch up with the store before reading the store instead. */
const CONSISTENT_READ_WAIT_MS = 3000;

const listQuery = z.object({
  watch: flag,
  resourceVersion: queryInt(0, Number.MAX_SAFE_INTEGER).optional(),
  fieldSelector: queryText().optional(),
  labelSelector: queryText().optional(),
  limit: queryInt(1, 100_000).optional(),
  continue: queryText().optional(),
  ignoreStatusUpdates: flag,
  /** The epoch the client's resourceVersion belongs to (from a list's metadata): another epoch's revision is 410 Gone. */
  storeEpoch: queryText(64).optional(),
});

const deleteQuery = z.object({ resourceVersion: queryText(32).optional() });

/** An object as a client sends it to create or update: metadata and spec (status is the server's, ignored). */
const objectBody = z.object({
  metadata: z.object({ name: z.string().optional(), resourceVersion: z.string().max(32).optional(), labels: z.record(z.string(), z.string()).optional() }).passthrough(),
  spec: z.unknown(),
  status: z.unknown().optional(),
}).passthrough();

export function parseSelector(s: string | undefined, what: string): Record<string, string> | undefined {
  if (s === undefined || s === '') return undefined;
  const out: Record<string, string> = {};
  for (const part of s.split(',')) {
    const m = /^([^=!]+)==?(.*)$/.exec(part.trim());
    if (!m) throw new BatonError('BATON_ERR_BAD_REQUEST', `${what} "${part}" must look like key=value`, [{ path: `query.${what}`, message: 'must be key=value[,key=value…]' }]);
    out[m[1]!.trim()] = m[2]!.trim();
  }
  return out;
}

export function registerObjectRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { ctx } = deps;

  async function listKind(kind: KindInfo, cache: WatchCache, q: z.infer<typeof listQuery>, fields?: Record<string, string>, labels?: Record<string, string>) {
    if (q.limit !== undefined) {
      if (fields || labels) throw new BatonError('BATON_ERR_BAD_REQUEST', 'limit cannot be combined with selectors');
      const r = await ctx.registry.list(kind, { limit: q.limit, continue: q.continue, atRevision: q.resourceVersion || undefined });
      return { items: r.items, metadata: { resourceVersion: String(r.revision), storeEpoch: deps.storeEpoch, ...(r.continue ? { continue: r.continue } : {}) } };
    }
    // Serve from the watch cache once it has seen every write committed before this request (a consistent read);
    // read the store only if the cache cannot catch up in time: decoding 100,000 tasks to answer one agent costs seconds.
    const rev = await ctx.registry.store.currentRevision();
    if (await cache.syncedTo(rev, CONSISTENT_READ_WAIT_MS)) return { items: cache.list(fields, labels), metadata: { resourceVersion: String(cache.revision), storeEpoch: deps.storeEpoch } };
    const r = await ctx.registry.list(kind);
    return { items: cache.filter(r.items, fields, labels), metadata: { resourceVersion: String(r.revision), storeEpoch: deps.storeEpoch } };
  }

  for (const kind of KINDS) {
    if (kind.storage !== 'store') continue;
    const cache = deps.caches[kind.plural]!;
    const base = `/api/v1/${kind.plural}`;
    // A node lists (and watches) only its own tasks; every node's routing mesh reads all Endpoints, and its
    // task network every Node (each one's address and task range: the routes to other nodes' tasks), as kubelets read Nodes.
    const agentReads = kind === taskKind || kind === endpointsKind || kind === nodeKind;

    defineRoute(app, {
      method: 'GET',
      url: base,
      access: agentReads ? [...READERS, 'agent'] : READERS,
      query: listQuery,
      handler: async (req, reply, { query: q }) => {
        const fields = parseSelector(q.fieldSelector, 'fieldSelector');
        const labels = parseSelector(q.labelSelector, 'labelSelector');
        if (req.role === 'agent' && kind === taskKind && fields?.['spec.nodeName'] !== req.node) throw new BatonError('BATON_ERR_FORBIDDEN', `node ${req.node} may list only its own tasks (fieldSelector spec.nodeName=${req.node})`);
        // A node that watches Endpoints runs a routing mesh: stopping tasks wait for it (MeshRevisions).
        if (q.watch && req.role === 'agent' && kind === endpointsKind) deps.meshes.watching(req.node!);
        // A revision of another epoch (the state was copied into this store since) means nothing here: list again.
        if (q.watch && q.storeEpoch !== undefined && q.storeEpoch !== deps.storeEpoch) {
          throw new BatonError('BATON_ERR_GONE', `resourceVersion ${q.resourceVersion ?? 0} is of store epoch ${q.storeEpoch}; this store's epoch is ${deps.storeEpoch} (its state was copied here): list again`);
        }
        if (q.watch) return serveWatch(deps, reply, kind, cache, q.resourceVersion ?? 0, fields, labels, q.ignoreStatusUpdates);
        const r = await listKind(kind, cache, q, fields, labels);
        // Node lists carry the last heartbeat from memory: it is never written per beat.
        return kind === nodeKind ? { ...r, items: (r.items as unknown as Node[]).map((n) => withLastBeat(deps, n)) } : r;
      },
    });

    defineRoute(app, {
      method: 'GET',
      url: `${base}/:name`,
      access: READERS,
      params: nameParam,
      handler: async (_req, _reply, { params }) => {
        const obj = await ctx.registry.mustGet(kind, params.name);
        return kind === nodeKind ? withLastBeat(deps, obj as unknown as Node) : obj;
      },
    });

    if (kind.clientWritable) {
      defineRoute(app, {
        method: 'POST',
        url: base,
        ...(kind === serviceKind ? { access: DEPLOYERS, stacks: ({ body }: { body: { spec?: unknown } }) => [stackOf(body.spec)] } : { access: ['admin'] as const }),
        body: objectBody,
        handler: async (_req, reply, { body }) => {
          const spec = await withFileHashes(ctx.registry, kind, validateObject(kind, body));
          if (kind === serviceKind) await checkBuilds(deps.blobs, [{ path: 'spec.container', container: (spec as ServiceSpec).container }]);
          const obj = await ctx.registry.create(kind, { metadata: { name: body.metadata.name!, labels: body.metadata.labels }, spec, status: initialStatus(kind) });
          return reply.status(201).send(obj);
        },
      });
      defineRoute(app, {
        method: 'PUT',
        url: `${base}/:name`,
        ...(kind === serviceKind ? { access: DEPLOYERS, stacks: ({ params, body }: { params: { name: string }; body: { spec?: unknown } }) => [...(serviceStacks(deps, params.name) ?? []), stackOf(body.spec)] } : { access: ['admin'] as const }),
        params: nameParam,
        body: objectBody,
        handler: async (_req, _reply, { params, body }) => {
          const spec = await withFileHashes(ctx.registry, kind, validateObject(kind, { spec: body.spec, metadata: { name: params.name } }));
          if (kind === serviceKind) await checkBuilds(deps.blobs, [{ path: 'spec.container', container: (spec as ServiceSpec).container }]);
          return ctx.registry.update(kind, params.name, body.metadata.resourceVersion, { spec, labels: body.metadata.labels });
        },
      });
      defineRoute(app, {
        method: 'DELETE',
        url: `${base}/:name`,
        ...(kind === serviceKind ? { access: DEPLOYERS, stacks: ({ params }: { params: { name: string } }) => serviceStacks(deps, params.name) } : { access: ['admin'] as const }),
        params: nameParam,
        query: deleteQuery,
        handler: async (_req, _reply, { params, query }) => ctx.registry.delete(kind, params.name, { resourceVersion: query.resourceVersion }),
      });
    }
  }

  registerTaskStatus(app, deps);
}

/**
 * The task status subresource: what agents report. Only tasks have one over
 * HTTP (every other kind's status is written by the server's controllers in
 * process). A report is refused whole (nothing stored) when any field of any
 * item is malformed, when a task is placed on another node, or when it names
 * an address its node does not own: Endpoints, and so every node's mesh
 * rules, are built from what is stored here.
 */
function registerTaskStatus(app: FastifyInstance, deps: HttpDeps): void {
  const { ctx } = deps;
  const cache = taskCache(deps);

  /** checkReports refuses a node's report for a task placed elsewhere, or naming an address that is not its node's. */
  const checkReports = (req: FastifyRequest, items: readonly { name: string; status: TaskStatus }[], path: (i: number) => string): void => {
    if (req.role !== 'agent') return;
    const node = nodeCache(deps).objects.get(req.node!) as unknown as Node | undefined;
    const details: { path: string; message: string }[] = [];
    items.forEach((item, i) => {
      const t = cache.objects.get(item.name) as unknown as Task | undefined;
      if (t && t.spec.nodeName !== req.node) throw new BatonError('BATON_ERR_FORBIDDEN', `node ${req.node} may not report status for task ${item.name} (placed on ${t.spec.nodeName || 'no node'})`);
      const ip = item.status.hostIP;
      if (ip !== undefined && !nodeOwns(node, ip)) details.push({ path: `${path(i)}.hostIP`, message: `${ip} is not an address of node ${req.node} (${node ? node.status.address : 'not registered'})` });
      const own = item.status.taskIP;
      if (own !== undefined && !inTaskRange(node, own)) details.push({ path: `${path(i)}.taskIP`, message: `${own} is not in the task range of node ${req.node} (${node?.status.taskRange ?? 'none allocated'})` });
    });
    if (details.length) throw new BatonError('BATON_ERR_FORBIDDEN', `node ${req.node} reported addresses it does not own; nothing was stored`, details);
  };

  defineRoute(app, {
    method: 'PUT',
    url: '/api/v1/tasks/:name/status',
    access: ['admin', 'agent'],
    params: nameParam,
    body: taskStatusPutSchema,
    handler: async (req, _reply, { params, body }) => {
      checkReports(req, [{ name: params.name, status: body.status as TaskStatus }], () => 'body.status');
      const [r] = await ctx.registry.updateStatus(taskKind, [{ name: params.name, uid: body.metadata?.uid, statusVersion: body.metadata?.statusVersion, status: body.status }], SERVER_OWNED, (n) => cache.objects.get(n));
      if (!r!.ok) throw r!.error;
      return r!.object;
    },
  });

  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/tasks/-/status',
    access: ['admin', 'agent'],
    body: taskStatusBatchSchema,
    handler: async (req, _reply, { body }) => {
      checkReports(req, body.items as { name: string; status: TaskStatus }[], (i) => `body.items[${i}].status`);
      const events = body.events ?? [];
      const results = await ctx.registry.updateStatus(taskKind, body.items, SERVER_OWNED, (n) => cache.objects.get(n));
      // The events that came with the statuses (an agent's task starts and failures), once those are written.
      recordPosted(deps, req.role === 'agent' ? events.map((e) => ({ ...e, node: req.node, source: `agent/${req.node}` })) : events);
      return {
        items: results.map((r, i) => (r.ok ? { name: body.items[i]!.name, ok: true, resourceVersion: r.object.metadata.resourceVersion } : { name: body.items[i]!.name, ok: false, error: r.error.toJSON().error })),
      };
    },
  });
}

/** The status fields the server writes and agents leave out: kept as they are when a report arrives. */
const SERVER_OWNED = ['scheduling', 'pendingReason'];

/** nodeOwns: an address that is the node's own (its registered address). */
export function nodeOwns(node: Node | undefined, ip: string): boolean {
  return node !== undefined && sameAddress(node.status.address, ip);
}

/** inTaskRange: an address inside the task range the server allocated the node. */
export function inTaskRange(node: Node | undefined, ip: string): boolean {
  if (!node?.status.taskRange || !isIPv4(ip)) return false;
  try {
    return contains(parseCidr(node.status.taskRange), ip);
  } catch {
    return false;
  }
}

/** validateObject checks a client's object and returns its spec as the schema reads it (unknown keys dropped). */
function validateObject(kind: KindInfo, body: { metadata: { name?: unknown }; spec: unknown }): unknown {
  const details = [];
  const n = objectNameSchema.safeParse(body?.metadata?.name);
  if (!n.success) details.push(...zodDetails(n.error, 'metadata.name'));
  let spec = body.spec;
  if (kind.specSchema) {
    const r = kind.specSchema.safeParse(body?.spec);
    if (!r.success) details.push(...zodDetails(r.error as any, 'spec'));
    else spec = r.data;
  }
  if (details.length) throw new BatonError('BATON_ERR_VALIDATION', `invalid ${kind.kind.toLowerCase()}`, details);
  return spec;
}

/** stackOf: the stack a service spec in a request names ('' for none or for a body that is not one: its schema refuses it after). */
function stackOf(spec: unknown): string {
  const st = spec && typeof spec === 'object' ? (spec as { stack?: unknown }).stack : undefined;
  return typeof st === 'string' ? st : '';
}

/** withFileHashes: a service's secret and config references take their current hashes (or it is refused). */
async function withFileHashes(registry: Registry, kind: KindInfo, spec: unknown): Promise<unknown> {
  if (kind !== serviceKind) return spec;
  return resolveFileRefs(registry, spec as ServiceSpec, 'spec');
}

function initialStatus(kind: KindInfo): unknown {
  if (kind === serviceKind) return { observedGeneration: 0, desired: 0, ready: 0, running: 0 };
  return {};
}

/** serveWatch streams a kind's changes as NDJSON from revision rv (0: from now), with bookmarks. */
function serveWatch(deps: HttpDeps, reply: FastifyReply, kind: KindInfo, cache: WatchCache, rv: number, fields: Record<string, string> | undefined, labels: Record<string, string> | undefined, ignoreStatusUpdates: boolean): void {
  const { ctx } = deps;
  // Validate and subscribe before hijacking, so a bad selector or a stale rv is a normal error reply.
  const lines: string[] = [];
  let raw: import('node:http').ServerResponse | undefined;
  const write = (s: string) => {
    if (!raw) return void lines.push(s);
    raw.write(s);
    if (raw.writableLength > SLOW_WATCHER_BYTES) {
      ctx.log.warn({ kind: kind.plural }, 'closing a slow watch stream');
      raw.destroy();
    }
  };
  let last = rv || cache.revision;
  const unsub = cache.subscribe(
    rv || cache.revision,
    fields,
    labels,
    (events, revision) => {
      // One write per batch: each write is a chunk and a TLS record of its own.
      let out = '';
      for (const e of events) {
        // ?ignoreStatusUpdates=true: a change of status alone (same generation and labels) is not sent; 5,000 agents need not hear their own reports back.
        if (ignoreStatusUpdates && isStatusOnly(e)) continue;
        out += JSON.stringify({ type: e.type, object: e.object }) + '\n';
      }
      if (out) write(out);
      last = revision;
    },
    (err) => {
      // A compacted revision is the client's to handle (list again); anything else is ours, and its text stays in our log.
      if (!(err instanceof GoneError)) ctx.log.error({ err, kind: kind.plural }, 'watch failed');
      write(JSON.stringify({ type: 'ERROR', object: err instanceof GoneError ? { code: 410, message: err.message } : { code: 500, message: 'the watch failed; list and watch again' } }) + '\n');
      raw?.end();
    },
  );
  reply.hijack();
  raw = reply.raw;
  raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  raw.flushHeaders();
  for (const l of lines) raw.write(l);
  // Bookmarks let a quiet, filtered watcher resume from a recent revision.
  const bm = setInterval(() => {
    if (cache.revision > last) last = cache.revision;
    write(JSON.stringify({ type: 'BOOKMARK', object: { kind: kind.kind, metadata: { resourceVersion: String(last) } } }) + '\n');
  }, ctx.timings.bookmarkIntervalMs);
  bm.unref();
  raw.on('close', () => {
    clearInterval(bm);
    unsub();
  });
}
