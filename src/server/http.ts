/**
 * buildHttp wires the REST API onto Fastify. Routes for store-backed kinds are
 * generated from the KINDS table; watches are NDJSON over chunked HTTP (a
 * browser EventSource cannot send an Authorization header). Errors always
 * leave as `{error: {code, message, details}}` from the one catalogue.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { BatonError, isBatonError } from '../base/errors.js';
import { compatible, VERSION } from '../base/version.js';
import { KINDS, nodeKind, serviceKind, taskKind, type KindInfo } from '../api/kinds.js';
import { objectNameSchema, zodDetails } from '../api/schemas.js';
import type { ApplyRequest, ClusterInfo, Node, NodeStatus, Service } from '../api/types.js';
import type { StoredEvent } from '../store/events.js';
import { matchesEventQuery } from '../store/events.js';
import type { Role, Tokens } from './auth.js';
import type { ControllerContext } from './controllers/context.js';
import { recordEvent } from './controllers/context.js';
import { applyStack, removeStack } from './apply.js';
import { GoneError, type WatchCache } from './watchCache.js';
import type { AnyObject } from './registry.js';

declare module 'fastify' {
  interface FastifyRequest {
    role?: Role;
  }
}

export interface HttpDeps {
  ctx: ControllerContext;
  tokens: Tokens;
  clusterId: string;
  storeBackend: string;
  caches: Record<string, WatchCache>;
  /** Writes an online backup of the store to a file and returns its path (SQLite only). */
  snapshot?: () => Promise<string>;
  logger?: boolean;
}

/** Buffered bytes after which a slow watch stream is closed; the client re-watches from its last revision. */
const SLOW_WATCHER_BYTES = 8 * 1024 * 1024;

function parseSelector(s: unknown, what: string): Record<string, string> | undefined {
  if (typeof s !== 'string' || s === '') return undefined;
  const out: Record<string, string> = {};
  for (const part of s.split(',')) {
    const m = /^([^=!]+)==?(.*)$/.exec(part.trim());
    if (!m) throw new BatonError('BATON_ERR_BAD_REQUEST', `${what} "${part}" must look like key=value`);
    out[m[1]!.trim()] = m[2]!.trim();
  }
  return out;
}

function need(req: FastifyRequest, ...roles: Role[]): void {
  if (!req.role || !roles.includes(req.role)) throw new BatonError('BATON_ERR_FORBIDDEN', `this call needs the ${roles.join(' or ')} role`);
}

export function buildHttp(deps: HttpDeps): FastifyInstance {
  const { ctx, tokens, caches } = deps;
  const app = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024, forceCloseConnections: true });

  app.addHook('onRequest', async (req) => {
    if (req.url === '/healthz') return;
    const h = req.headers.authorization;
    if (!h || !h.startsWith('Bearer ')) throw new BatonError('BATON_ERR_UNAUTHORIZED', 'missing bearer token: pass --token or use a context with one (baton context ls)');
    const role = await tokens.verify(h.slice(7).trim());
    if (!role) throw new BatonError('BATON_ERR_UNAUTHORIZED', 'invalid token: it is unknown to this cluster or malformed');
    req.role = role;
  });

  app.setErrorHandler((err: any, req, reply) => {
    if (isBatonError(err)) return reply.status(err.status).send(err.toJSON());
    if (err instanceof GoneError) return reply.status(410).send(new BatonError('BATON_ERR_GONE', err.message).toJSON());
    if (err.validation || err.statusCode === 400 || err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err instanceof SyntaxError) {
      return reply.status(400).send(new BatonError('BATON_ERR_BAD_REQUEST', err.message).toJSON());
    }
    if (err.statusCode === 413) return reply.status(413).send(new BatonError('BATON_ERR_TOO_LARGE', err.message).toJSON());
    ctx.log.error({ err, url: req.url }, 'request failed');
    return reply.status(500).send(new BatonError('BATON_ERR_INTERNAL', `internal error: ${err.message}`).toJSON());
  });

  app.get('/healthz', async () => ({ ok: true }));

  app.get('/api/v1/info', async (): Promise<ClusterInfo> => ({
    clusterId: deps.clusterId,
    version: VERSION,
    apiVersion: 'baton/v1',
    storeBackend: deps.storeBackend,
    revision: String(await ctx.registry.store.currentRevision()),
  }));

  for (const kind of KINDS) {
    if (kind.storage !== 'store') continue;
    const cache = caches[kind.plural]!;
    const base = `/api/v1/${kind.plural}`;

    app.get(base, async (req, reply) => {
      const q = req.query as Record<string, string | undefined>;
      const fields = parseSelector(q.fieldSelector, 'fieldSelector');
      const labels = parseSelector(q.labelSelector, 'labelSelector');
      if (q.watch === 'true' || q.watch === '1') return serveWatch(req, reply, kind, cache, Number(q.resourceVersion ?? 0), fields, labels);
      if (q.limit) {
        if (fields || labels) throw new BatonError('BATON_ERR_BAD_REQUEST', 'limit cannot be combined with selectors');
        const r = await ctx.registry.list(kind, { limit: Number(q.limit), continue: q.continue, atRevision: q.resourceVersion ? Number(q.resourceVersion) : undefined });
        return { items: r.items, metadata: { resourceVersion: String(r.revision), ...(r.continue ? { continue: r.continue } : {}) } };
      }
      // Serve from the watch cache when it has seen every committed write; else read the store
      // (the cache's revision only moves with its own kind's changes and progress notifications).
      const rev = await ctx.registry.store.currentRevision();
      if (cache.revision >= rev) return { items: cache.list(fields, labels), metadata: { resourceVersion: String(cache.revision) } };
      const r = await ctx.registry.list(kind);
      return { items: cache.filter(r.items, fields, labels), metadata: { resourceVersion: String(r.revision) } };
    });

    app.get(`${base}/:name`, async (req) => ctx.registry.mustGet(kind, (req.params as { name: string }).name));

    if (kind.clientWritable) {
      app.post(base, async (req, reply) => {
        need(req, 'admin');
        const body = req.body as AnyObject;
        validateObject(kind, body);
        const obj = await ctx.registry.create(kind, { metadata: { name: body.metadata.name, labels: body.metadata.labels }, spec: body.spec, status: initialStatus(kind) });
        return reply.status(201).send(obj);
      });
      app.put(`${base}/:name`, async (req) => {
        need(req, 'admin');
        const body = req.body as AnyObject;
        const name = (req.params as { name: string }).name;
        validateObject(kind, { ...body, metadata: { ...body?.metadata, name } });
        return ctx.registry.update(kind, name, body.metadata?.resourceVersion, { spec: body.spec, labels: body.metadata?.labels });
      });
      app.delete(`${base}/:name`, async (req) => {
        need(req, 'admin');
        const q = req.query as Record<string, string | undefined>;
        return ctx.registry.delete(kind, (req.params as { name: string }).name, { resourceVersion: q.resourceVersion });
      });
    }

    // Status: its own endpoint and precondition, batched for agents.
    app.put(`${base}/:name/status`, async (req) => {
      need(req, 'admin', 'agent');
      const name = (req.params as { name: string }).name;
      const body = req.body as { metadata?: { uid?: string; statusVersion?: string }; status: unknown };
      const [r] = await ctx.registry.updateStatus(kind, [{ name, uid: body?.metadata?.uid, statusVersion: body?.metadata?.statusVersion, status: body?.status }]);
      if (!r!.ok) throw r!.error;
      return r!.object;
    });
    app.post(`${base}/-/status`, async (req) => {
      need(req, 'admin', 'agent');
      const body = req.body as { items: { name: string; uid?: string; statusVersion?: string; status: unknown }[] };
      if (!Array.isArray(body?.items)) throw new BatonError('BATON_ERR_BAD_REQUEST', 'body must be {items: [{name, uid, status}]}');
      const results = await ctx.registry.updateStatus(kind, body.items);
      return {
        items: results.map((r, i) => (r.ok ? { name: body.items[i]!.name, ok: true, resourceVersion: r.object.metadata.resourceVersion } : { name: body.items[i]!.name, ok: false, error: r.error.toJSON().error })),
      };
    });
  }

  // ---------------------------------------------------------------- services
  app.post('/api/v1/services/:name/scale', async (req) => {
    need(req, 'admin');
    const name = (req.params as { name: string }).name;
    const replicas = (req.body as { replicas?: unknown })?.replicas;
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0 || replicas > 100_000) {
      throw new BatonError('BATON_ERR_VALIDATION', 'replicas must be a whole number from 0 to 100000', [{ path: 'replicas', message: `got ${JSON.stringify(replicas)}` }]);
    }
    const out = await ctx.registry.mutate<Service & AnyObject>(serviceKind, name, (cur) => {
      if (cur.spec.replicas === replicas) return undefined;
      return ctx.registry.specUpdate(cur, { spec: { ...cur.spec, replicas } }) as Service & AnyObject;
    });
    if (!out) throw new BatonError('BATON_ERR_NOT_FOUND', `service "${name}" not found`);
    return out;
  });

  // ---------------------------------------------------------------- stacks
  app.get('/api/v1/stacks', async () => {
    const stacks = new Map<string, { name: string; services: number; replicas: number; ready: number }>();
    for (const s of serviceCache(caches).list() as unknown as Service[]) {
      if (!s.spec.stack) continue;
      const e = stacks.get(s.spec.stack) ?? { name: s.spec.stack, services: 0, replicas: 0, ready: 0 };
      e.services++;
      e.replicas += s.spec.replicas;
      e.ready += s.status.ready ?? 0;
      stacks.set(s.spec.stack, e);
    }
    return { items: [...stacks.values()].sort((a, b) => a.name.localeCompare(b.name)) };
  });
  app.post('/api/v1/stacks/:stack/apply', async (req) => {
    need(req, 'admin');
    const body = req.body as Omit<ApplyRequest, 'stack'>;
    const stack = (req.params as { stack: string }).stack;
    const res = await applyStack(ctx.registry, { stack, services: body?.services, prune: !!body?.prune, dryRun: !!body?.dryRun });
    if (!body?.dryRun) {
      const changed = res.results.filter((r) => r.action !== 'unchanged');
      if (changed.length) recordEvent(ctx, { type: 'Normal', reason: 'StackApplied', kind: 'Stack', name: stack, source: 'api', message: changed.map((r) => `${r.action} ${r.name}`).join(', ') });
    }
    return res;
  });
  app.delete('/api/v1/stacks/:stack', async (req) => {
    need(req, 'admin');
    const stack = (req.params as { stack: string }).stack;
    const removed = await removeStack(ctx.registry, stack);
    recordEvent(ctx, { type: 'Normal', reason: 'StackRemoved', kind: 'Stack', name: stack, source: 'api', message: `removed ${removed.join(', ')}` });
    return { removed };
  });

  // ---------------------------------------------------------------- nodes
  app.post('/api/v1/nodes/register', async (req) => {
    need(req, 'admin', 'agent');
    const b = req.body as {
      name: string; address: string; hostname: string; agentVersion: string; labels?: Record<string, string>;
      capacity: { cpus: number; memoryBytes: number }; portRange: [number, number]; engine: { ok: boolean; version: string; error?: string };
    };
    const n = objectNameSchema.safeParse(b?.name);
    if (!n.success) throw new BatonError('BATON_ERR_VALIDATION', 'invalid node name', zodDetails(n.error, 'name'));
    if (!compatible(VERSION, String(b.agentVersion))) {
      recordEvent(ctx, { type: 'Warning', reason: 'AgentRefused', kind: 'Node', name: b.name, source: 'api', message: `agent version ${b.agentVersion} is not compatible with server ${VERSION}` });
      throw new BatonError('BATON_ERR_INCOMPATIBLE_AGENT', `agent version ${b.agentVersion} is not compatible with server version ${VERSION}; run an agent of version ${VERSION.split('.').slice(0, 2).join('.')}.x`);
    }
    const now = new Date(ctx.clock.now()).toISOString();
    ctx.heartbeats.beat(b.name, b.engine);
    const status = (prev?: NodeStatus): NodeStatus => ({
      state: prev?.state ?? 'unknown',
      message: prev?.message ?? 'registered',
      address: b.address,
      hostname: b.hostname,
      capacity: b.capacity,
      allocated: prev?.allocated ?? { cpus: 0, memoryBytes: 0 },
      taskCount: prev?.taskCount ?? 0,
      agentVersion: b.agentVersion,
      engineVersion: b.engine.version,
      portRange: b.portRange,
      lastHeartbeat: now,
      timestamp: prev?.timestamp ?? now,
    });
    const existing = await ctx.registry.get<Node & AnyObject>(nodeKind, b.name);
    let node: AnyObject;
    if (!existing) {
      node = await ctx.registry.create(nodeKind, { metadata: { name: b.name, labels: b.labels ?? {} }, spec: { availability: 'active' }, status: status() });
      recordEvent(ctx, { type: 'Normal', reason: 'NodeRegistered', kind: 'Node', name: b.name, uid: node.metadata.uid, node: b.name, source: 'api', message: `node ${b.name} joined at ${b.address} (${b.capacity.cpus} cpus, ${Math.round(b.capacity.memoryBytes / 1048576)} MiB)` });
    } else {
      const labels = { ...existing.metadata.labels, ...(b.labels ?? {}) };
      node = (await ctx.registry.mutate<Node & AnyObject>(nodeKind, b.name, (cur) => ({ ...cur, metadata: { ...cur.metadata, labels }, status: status(cur.status) })))!;
    }
    return { node, clusterId: deps.clusterId, heartbeatIntervalMs: ctx.timings.heartbeatIntervalMs, serverVersion: VERSION };
  });

  app.post('/api/v1/nodes/:name/heartbeat', async (req) => {
    need(req, 'admin', 'agent');
    const name = (req.params as { name: string }).name;
    if (!nodeCache(caches).objects.has(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" is not registered; register again`);
    const b = req.body as { engine?: { ok: boolean; version: string; error?: string } };
    ctx.heartbeats.beat(name, b?.engine ?? { ok: true, version: '' });
    return { heartbeatIntervalMs: ctx.timings.heartbeatIntervalMs };
  });

  // ---------------------------------------------------------------- events
  app.get('/api/v1/events', async (req, reply) => {
    const q = req.query as Record<string, string | undefined>;
    const query = { kind: q.kind, name: q.name, service: q.service, node: q.node, afterId: q.afterId ? Number(q.afterId) : undefined, limit: q.limit ? Number(q.limit) : undefined };
    const items = ctx.events.list(query).map(eventObject);
    if (q.watch !== 'true' && q.watch !== '1') return { items };
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    for (const e of items) raw.write(JSON.stringify({ type: 'ADDED', object: e }) + '\n');
    const unsub = ctx.events.subscribe((e) => {
      if (matchesEventQuery(e, { ...query, afterId: undefined, limit: undefined })) raw.write(JSON.stringify({ type: 'ADDED', object: eventObject(e) }) + '\n');
    });
    raw.on('close', unsub);
  });
  app.post('/api/v1/events', async (req) => {
    need(req, 'admin', 'agent');
    const b = req.body as { items: { type: 'Normal' | 'Warning'; reason: string; message: string; kind: string; name: string; uid?: string; node?: string; service?: string; source: string }[] };
    if (!Array.isArray(b?.items)) throw new BatonError('BATON_ERR_BAD_REQUEST', 'body must be {items: [...]}');
    for (const e of b.items.slice(0, 1000)) recordEvent(ctx, { type: e.type === 'Warning' ? 'Warning' : 'Normal', reason: String(e.reason), message: String(e.message), kind: String(e.kind), name: String(e.name), uid: e.uid, node: e.node, service: e.service, source: String(e.source) });
    return { recorded: Math.min(1000, b.items.length) };
  });

  // ---------------------------------------------------------------- snapshot
  app.get('/api/v1/snapshot', async (req, reply) => {
    need(req, 'admin');
    if (!deps.snapshot) throw new BatonError('BATON_ERR_BAD_REQUEST', `snapshots need the sqlite store; this server uses ${deps.storeBackend}`);
    const file = await deps.snapshot();
    const { createReadStream } = await import('node:fs');
    const { rm } = await import('node:fs/promises');
    const stream = createReadStream(file);
    stream.on('close', () => void rm(file, { force: true }).catch(() => {}));
    return reply.type('application/vnd.sqlite3').send(stream);
  });

  function serveWatch(req: FastifyRequest, reply: FastifyReply, kind: KindInfo, cache: WatchCache, rv: number, fields?: Record<string, string>, labels?: Record<string, string>) {
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
        for (const e of events) write(JSON.stringify({ type: e.type, object: e.object }) + '\n');
        last = revision;
      },
      (err) => {
        write(JSON.stringify({ type: 'ERROR', object: { code: err instanceof GoneError ? 410 : 500, message: err.message } }) + '\n');
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
    void req;
  }

  return app;
}

function serviceCache(caches: Record<string, WatchCache>): WatchCache {
  return caches[serviceKind.plural]!;
}

function nodeCache(caches: Record<string, WatchCache>): WatchCache {
  return caches[nodeKind.plural]!;
}

function validateObject(kind: KindInfo, body: AnyObject): void {
  const details = [];
  const n = objectNameSchema.safeParse(body?.metadata?.name);
  if (!n.success) details.push(...zodDetails(n.error, 'metadata.name'));
  if (kind.specSchema) {
    const r = kind.specSchema.safeParse(body?.spec);
    if (!r.success) details.push(...zodDetails(r.error as any, 'spec'));
  }
  if (details.length) throw new BatonError('BATON_ERR_VALIDATION', `invalid ${kind.kind.toLowerCase()}`, details);
}

function initialStatus(kind: KindInfo): unknown {
  if (kind === serviceKind) return { observedGeneration: 0, desired: 0, ready: 0, running: 0 };
  return {};
}

function eventObject(e: StoredEvent) {
  return { ...e, time: new Date(e.time).toISOString() };
}

export { taskKind };
