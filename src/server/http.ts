/**
 * buildHttp wires the REST API onto Fastify. Routes for store-backed kinds are
 * generated from the KINDS table; watches are NDJSON over chunked HTTP (a
 * browser EventSource cannot send an Authorization header). Errors always
 * leave as `{error: {code, message, details}}` from the one catalogue.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { BatonError, isBatonError } from '../base/errors.js';
import { compatible, VERSION } from '../base/version.js';
import { KINDS, endpointsKind, nodeKind, revisionKind, serviceKind, taskKind, type KindInfo } from '../api/kinds.js';
import { pause, promote, restart, resume, rollback } from './rollout.js';
import { endpointsAppliedQuerySchema, meshReportSchema, objectNameSchema, zodDetails } from '../api/schemas.js';
import { isGlobal, isTerminal, type ApplyRequest, type ClusterInfo, type Node, type NodeAvailability, type NodeStatus, type Service, type Taint, type Task } from '../api/types.js';
import type { StoredEvent } from '../store/events.js';
import { matchesEventQuery } from '../store/events.js';
import type { Role, Tokens } from './auth.js';
import type { TLSSocket } from 'node:tls';
import { peerIdentity, type ClusterPki } from './clusterPki.js';
import type { ControllerContext } from './controllers/context.js';
import { DRAIN_STARTED_ANNOTATION, heartbeatInterval, statusFlushInterval, recordEvent, TASKS_BY_NODE, indexTasks } from './controllers/context.js';
import { applyStack, previewPlacement, removeStack } from './apply.js';
import { SERVER_CLIENT_CN } from '../api/tls.js';
import { DASHBOARD_DIR, registerDashboard } from './dashboard.js';
import { parseUsage, type UsageStore } from './usage.js';
import type { MeshRevisions } from './meshRevisions.js';
import type { ServerMetrics } from './metrics.js';
import type { AutoscaleController } from './controllers/autoscaleController.js';
import { parseSince, type LogRouter } from './logs.js';
import type { TopResponse } from '../api/types.js';
import type { NewEventBody } from '../api/client.js';
import { GoneError, isStatusOnly, type WatchCache } from './watchCache.js';
import { stableStringify, type AnyObject } from './registry.js';
import { filterNode, formatTaint, parseTaint, Snapshot, SpreadPlacer } from '../scheduler/placement.js';

declare module 'fastify' {
  interface FastifyRequest {
    role?: Role;
    /** For a caller with a node certificate: the node it is (the certificate's CN). */
    node?: string;
  }
}

export interface HttpDeps {
  ctx: ControllerContext;
  tokens: Tokens;
  clusterId: string;
  storeBackend: string;
  caches: Record<string, WatchCache>;
  /** The cluster's PKI: serves HTTPS and authenticates nodes by certificate. */
  pki: ClusterPki;
  /** Usage agents report with their heartbeats (top, charts). */
  usage: UsageStore;
  metrics: ServerMetrics;
  /** Reads logs from the agents. */
  logs: LogRouter;
  autoscaler: AutoscaleController;
  /** The Endpoints revision each node's routing mesh has applied (deregistration of stopping tasks). */
  meshes: MeshRevisions;
  /** Writes an online backup of the store to a file and returns its path (SQLite only). */
  snapshot?: () => Promise<string>;
  logger?: boolean;
}

/** A label key, as Kubernetes allows them (an optional prefix/ and a name). */
const LABEL_KEY = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$/;

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

/** ownNode lets a node certificate act only for its own node (the Node authorizer's rule); admins act for any. */
function ownNode(req: FastifyRequest, name: string): void {
  if (req.role === 'agent' && req.node !== name) throw new BatonError('BATON_ERR_FORBIDDEN', `node ${req.node} may not act for node ${name}`);
}

/** Routes that need no credentials: health and the first steps of a join (the proof is checked inside). */
const OPEN_ROUTES = new Set(['GET /healthz', 'GET /api/v1/join/ca', 'POST /api/v1/join/nonce', 'POST /api/v1/join']);

/** What a node certificate may call; everything else is for admins. */
const AGENT_ROUTES = new Set([
  'GET /api/v1/info',
  'POST /api/v1/nodes/register',
  'POST /api/v1/nodes/:name/heartbeat',
  'POST /api/v1/nodes/:name/certificate',
  'GET /api/v1/tasks',
  'GET /api/v1/endpoints',
  'POST /api/v1/tasks/-/status',
  'PUT /api/v1/tasks/:name/status',
  'POST /api/v1/events',
  'POST /api/v1/services/:name/activate',
  'POST /api/v1/nodes/:name/mesh',
  'GET /api/v1/endpoints/-/applied',
]);

/** certRefusal turns an OpenSSL verification code into words a user can act on. */
function certRefusal(code: string): string {
  if (code === 'CERT_HAS_EXPIRED') return 'the node certificate has expired; an agent renews it before expiry, so this node was away too long: join it again with a token (baton join-token worker)';
  if (code === 'CERT_NOT_YET_VALID') return "the node certificate is not valid yet; check this node's clock";
  if (code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' || code === 'DEPTH_ZERO_SELF_SIGNED_CERT') {
    return "the node certificate was not issued by this cluster's CA; join this cluster with its token";
  }
  return `the node certificate was refused (${code})`;
}

/** How long a list waits for the watch cache to catch up with the store before reading the store instead. */
const CONSISTENT_READ_WAIT_MS = 3000;

export function buildHttp(deps: HttpDeps): FastifyInstance {
  const { ctx, tokens, caches, pki } = deps;
  const app = Fastify({
    logger: false,
    bodyLimit: 16 * 1024 * 1024,
    forceCloseConnections: true,
    https: { key: pki.serving.keyPem, cert: pki.serving.certPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
  app.server.on('secureConnection', (sock: TLSSocket) => pki.track(sock));
  indexTasks(caches[taskKind.plural]!);

  // One Warning event per refused certificate a minute, not one per retry.
  const refusedAt = new Map<string, number>();
  const refuse = (serial: string, name: string, message: string, details: { path: string; message: string }[] = []): never => {
    const now = ctx.clock.now();
    if ((refusedAt.get(serial) ?? 0) + 60_000 < now) {
      if (refusedAt.size > 10_000) refusedAt.clear();
      refusedAt.set(serial, now);
      recordEvent(ctx, { type: 'Warning', reason: 'CertificateRefused', kind: 'Node', name: name || 'unknown', node: name || undefined, source: 'api', message: `node ${name || '(no name)'}: ${message}` });
    }
    throw new BatonError('BATON_ERR_UNAUTHORIZED', message, details);
  };

  /** recordPosted records events an agent or admin posted (at most 1000 a request), every field coerced to its type. */
  const recordPosted = (items: NewEventBody[]): number => {
    const some = items.slice(0, 1000);
    for (const e of some) recordEvent(ctx, { type: e?.type === 'Warning' ? 'Warning' : 'Normal', reason: String(e?.reason), message: String(e?.message), kind: String(e?.kind), name: String(e?.name), uid: e?.uid, node: e?.node, service: e?.service, source: String(e?.source) });
    return some.length;
  };
  app.addHook('onRequest', async (req) => {
    const route = `${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`;
    // The API and /metrics need credentials; the dashboard's files do not (it logs in with a token).
    // Judged by the route that matched, not the raw URL: /%61pi/v1/services matches /api/v1/services.
    const path = req.routeOptions.url ?? req.url;
    if (OPEN_ROUTES.has(route) || !(path.startsWith('/api/') || path === '/api' || path.startsWith('/metrics'))) return;
    const sock = req.raw.socket as TLSSocket;
    const { serial, cn } = peerIdentity(sock);
    if (serial) {
      if (!sock.authorized) refuse(serial, cn, certRefusal(String(sock.authorizationError)));
      if (pki.isRevoked(serial)) refuse(serial, cn, `the certificate of node ${cn} was revoked (baton node rm); to come back, join again with a token`, [{ path: 'certificate', message: 'revoked' }]);
      if (!AGENT_ROUTES.has(route)) throw new BatonError('BATON_ERR_FORBIDDEN', `a node certificate may not call ${route}`);
      req.role = 'agent';
      req.node = cn;
      return;
    }
    const h = req.headers.authorization;
    if (!h || !h.startsWith('Bearer ')) throw new BatonError('BATON_ERR_UNAUTHORIZED', 'missing bearer token: pass --token or use a context with one (baton context ls)');
    const role = await tokens.verify(h.slice(7).trim());
    if (!role) throw new BatonError('BATON_ERR_UNAUTHORIZED', 'invalid token: it is unknown to this cluster or malformed');
    req.role = role;
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const labels = { method: req.method, route };
    deps.metrics.requests.inc({ ...labels, code: String(reply.statusCode) });
    const q = req.query as Record<string, string> | undefined;
    // Streams and held waits (a stopping task's, for every mesh) last as long as they are meant to: not latency.
    if (q?.watch !== 'true' && q?.follow !== 'true' && route !== '/api/v1/endpoints/-/applied') deps.metrics.latency.observe(labels, reply.elapsedTime / 1000);
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

  async function listKind(kind: KindInfo, cache: WatchCache, q: Record<string, string | undefined>, fields?: Record<string, string>, labels?: Record<string, string>) {
    if (q.limit) {
      if (fields || labels) throw new BatonError('BATON_ERR_BAD_REQUEST', 'limit cannot be combined with selectors');
      const r = await ctx.registry.list(kind, { limit: Number(q.limit), continue: q.continue, atRevision: q.resourceVersion ? Number(q.resourceVersion) : undefined });
      return { items: r.items, metadata: { resourceVersion: String(r.revision), ...(r.continue ? { continue: r.continue } : {}) } };
    }
    // Serve from the watch cache once it has seen every write committed before this request (a consistent read);
    // read the store only if the cache cannot catch up in time: decoding 100,000 tasks to answer one agent costs seconds.
    const rev = await ctx.registry.store.currentRevision();
    if (await cache.syncedTo(rev, CONSISTENT_READ_WAIT_MS)) return { items: cache.list(fields, labels), metadata: { resourceVersion: String(cache.revision) } };
    const r = await ctx.registry.list(kind);
    return { items: cache.filter(r.items, fields, labels), metadata: { resourceVersion: String(r.revision) } };
  }

  function withLastBeat(n: Node): Node {
    const b = ctx.heartbeats.get(n.metadata.name);
    return b ? { ...n, status: { ...n.status, lastHeartbeat: new Date(b.at).toISOString() } } : n;
  }

  /** ownTasks refuses a node's status write for a task placed on another node. */
  function ownTasks(req: FastifyRequest, names: string[]): void {
    const tasks = caches[taskKind.plural]!.objects;
    for (const name of names) {
      const t = tasks.get(name) as Task | undefined;
      if (t && t.spec.nodeName !== req.node) throw new BatonError('BATON_ERR_FORBIDDEN', `node ${req.node} may not report status for task ${name} (placed on ${t.spec.nodeName || 'no node'})`);
    }
  }

  for (const kind of KINDS) {
    if (kind.storage !== 'store') continue;
    const cache = caches[kind.plural]!;
    const base = `/api/v1/${kind.plural}`;

    app.get(base, async (req, reply) => {
      const q = req.query as Record<string, string | undefined>;
      const fields = parseSelector(q.fieldSelector, 'fieldSelector');
      const labels = parseSelector(q.labelSelector, 'labelSelector');
      // A node lists only its own tasks; every node's routing mesh reads all Endpoints.
      if (req.role === 'agent' && kind === taskKind && fields?.['spec.nodeName'] !== req.node) throw new BatonError('BATON_ERR_FORBIDDEN', `node ${req.node} may list only its own tasks (fieldSelector spec.nodeName=${req.node})`);
      if (req.role === 'agent' && kind !== taskKind && kind !== endpointsKind) throw new BatonError('BATON_ERR_FORBIDDEN', `a node certificate may not list ${kind.plural}`);
      // A node that watches Endpoints runs a routing mesh: stopping tasks wait for it (MeshRevisions).
      if ((q.watch === 'true' || q.watch === '1') && req.role === 'agent' && kind === endpointsKind) deps.meshes.watching(req.node!);
      if (q.watch === 'true' || q.watch === '1') return serveWatch(req, reply, kind, cache, Number(q.resourceVersion ?? 0), fields, labels, q.ignoreStatusUpdates === 'true');
      const r = await listKind(kind, cache, q, fields, labels);
      // Node lists carry the last heartbeat from memory: it is never written per beat.
      return kind === nodeKind ? { ...r, items: (r.items as unknown as Node[]).map(withLastBeat) } : r;
    });

    app.get(`${base}/:name`, async (req) => {
      const obj = await ctx.registry.mustGet(kind, (req.params as { name: string }).name);
      return kind === nodeKind ? withLastBeat(obj as unknown as Node) : obj;
    });

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
      if (req.role === 'agent') ownTasks(req, [name]);
      const body = req.body as { metadata?: { uid?: string; statusVersion?: string }; status: unknown };
      const [r] = await ctx.registry.updateStatus(kind, [{ name, uid: body?.metadata?.uid, statusVersion: body?.metadata?.statusVersion, status: body?.status }], serverOwned(kind), (n) => cache.objects.get(n));
      if (!r!.ok) throw r!.error;
      return r!.object;
    });
    app.post(`${base}/-/status`, async (req) => {
      need(req, 'admin', 'agent');
      const body = req.body as { items: { name: string; uid?: string; statusVersion?: string; status: unknown }[]; events?: NewEventBody[] };
      if (!Array.isArray(body?.items)) throw new BatonError('BATON_ERR_BAD_REQUEST', 'body must be {items: [{name, uid, status}], events?: [...]}');
      if (body.events !== undefined && !Array.isArray(body.events)) throw new BatonError('BATON_ERR_BAD_REQUEST', 'events must be a list');
      if (req.role === 'agent') ownTasks(req, body.items.map((i) => i.name));
      const results = await ctx.registry.updateStatus(kind, body.items, serverOwned(kind), (n) => cache.objects.get(n));
      // The events that came with the statuses (an agent's task starts and failures), once those are written.
      if (body.events) recordPosted(body.events);
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
      if (cur.spec.autoscale) throw new BatonError('BATON_ERR_CONFLICT', `service ${name} is autoscaled (x-baton.autoscale, ${cur.spec.autoscale.min} to ${cur.spec.autoscale.max} replicas): the autoscaler owns its replicas; change min and max instead (baton autoscale ls shows its decisions)`);
      if (isGlobal(cur.spec)) throw new BatonError('BATON_ERR_BAD_REQUEST', `service ${name} is ${cur.spec.mode}: it runs one task on every eligible node and cannot be scaled`);
      if (cur.spec.replicas === replicas) return undefined;
      return ctx.registry.specUpdate(cur, { spec: { ...cur.spec, replicas } }) as Service & AnyObject;
    });
    if (!out) throw new BatonError('BATON_ERR_NOT_FOUND', `service "${name}" not found`);
    return out;
  });

  // ---------------------------------------------------------------- explain
  // Rollouts: each a guarded write of the service; the service controller does the rest.
  const rolloutCtx = { ...ctx, revisions: caches[revisionKind.plural] };
  app.post('/api/v1/services/:name/rollback', async (req) => {
    need(req, 'admin');
    const name = (req.params as { name: string }).name;
    const to = (req.body as { to?: unknown } | undefined)?.to;
    if (to !== undefined && !(typeof to === 'number' && Number.isInteger(to) && to > 0)) throw new BatonError('BATON_ERR_VALIDATION', 'to must be a revision number', [{ path: 'to', message: `got ${JSON.stringify(to)}` }]);
    const r = await rollback(rolloutCtx, name, { to: to as number | undefined, reason: 'asked by hand', automatic: false });
    return { service: name, revision: r.spec.revision, hash: r.spec.hash, image: r.spec.spec.container.image };
  });
  for (const [verb, fn] of [['restart', restart], ['pause', pause], ['resume', resume], ['promote', promote]] as const) {
    app.post(`/api/v1/services/:name/${verb}`, async (req) => {
      need(req, 'admin');
      return fn(rolloutCtx, (req.params as { name: string }).name);
    });
  }
  app.get('/api/v1/autoscale', async (req) => {
    need(req, 'admin');
    return { items: [...deps.autoscaler.views.values()].sort((a, b) => a.service.localeCompare(b.service)) };
  });
  app.post('/api/v1/services/:name/activate', async (req) => {
    need(req, 'admin', 'agent');
    return { activated: await deps.autoscaler.activate((req.params as { name: string }).name) };
  });
  app.get('/api/v1/tasks/:name/explain', async (req) => {
    const name = (req.params as { name: string }).name;
    const task = (await ctx.registry.mustGet(taskKind, name)) as unknown as Task;
    const allNodes = ['1', 'true'].includes(String((req.query as { allNodes?: string }).allNodes ?? ''));
    if (!allNodes) return { task: name, decision: task.status.scheduling ?? null };
    // Re-run the filters now, against the current caches, for every node.
    const tasks = [...caches[taskKind.plural]!.objects.values()] as unknown as Task[];
    const nodes = ([...nodeCache(caches).objects.values()] as unknown as Node[]).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    const snap = new Snapshot(nodes, tasks.filter((t) => t.metadata.name !== name));
    return {
      task: name,
      decision: task.status.scheduling ?? null,
      nodes: snap.nodes.map((ns) => {
        const reason = filterNode(task, ns, snap);
        return { node: ns.name, fits: reason === undefined, ...(reason ? { reason } : {}) };
      }),
    };
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
    if (body?.dryRun) {
      const changed = new Set(res.results.filter((r) => r.action === 'create' || r.action === 'update').map((r) => r.name));
      const nodes = [...nodeCache(caches).objects.values()] as unknown as Node[];
      const tasks = [...caches[taskKind.plural]!.objects.values()] as unknown as Task[];
      res.placement = previewPlacement(body.services, changed, nodes, tasks, new SpreadPlacer(), ctx.clock.now());
    } else {
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
  const beatInterval = (requested: unknown) => heartbeatInterval(ctx.timings, nodeCache(caches).objects.size, typeof requested === 'number' && requested > 0 ? requested : undefined);

  app.post('/api/v1/nodes/register', async (req) => {
    need(req, 'admin', 'agent');
    const b = req.body as {
      name: string; address: string; hostname: string; agentVersion: string; labels?: Record<string, string>; heartbeatMs?: number; platform?: { os: string; arch: string };
      capacity: { cpus: number; memoryBytes: number }; portRange: [number, number]; engine: { ok: boolean; version: string; error?: string }; agentPort?: number;
    };
    const n = objectNameSchema.safeParse(b?.name);
    if (!n.success) throw new BatonError('BATON_ERR_VALIDATION', 'invalid node name', zodDetails(n.error, 'name'));
    ownNode(req, b.name);
    if (!compatible(VERSION, String(b.agentVersion))) {
      recordEvent(ctx, { type: 'Warning', reason: 'AgentRefused', kind: 'Node', name: b.name, source: 'api', message: `agent version ${b.agentVersion} is not compatible with server ${VERSION}` });
      throw new BatonError('BATON_ERR_INCOMPATIBLE_AGENT', `agent version ${b.agentVersion} is not compatible with server version ${VERSION}; run an agent of version ${VERSION.split('.').slice(0, 2).join('.')}.x`);
    }
    const now = new Date(ctx.clock.now()).toISOString();
    const interval = beatInterval(b.heartbeatMs);
    ctx.heartbeats.beat(b.name, b.engine, interval);
    const status = (prev?: NodeStatus): NodeStatus => ({
      ...prev,
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
      agentPort: Number.isInteger(b.agentPort) && b.agentPort! > 0 && b.agentPort! < 65536 ? b.agentPort : undefined,
      ...(b.platform && typeof b.platform.os === 'string' && typeof b.platform.arch === 'string' ? { platform: { os: b.platform.os, arch: b.platform.arch } } : {}),
      lastHeartbeat: now,
      timestamp: prev?.timestamp ?? now,
    });
    const existing = await ctx.registry.get<Node & AnyObject>(nodeKind, b.name);
    let node: AnyObject;
    if (!existing) {
      // Agent labels apply when the node is first made; afterwards `baton node update` owns them.
      node = await ctx.registry.create(nodeKind, { metadata: { name: b.name, labels: b.labels ?? {} }, spec: { availability: 'active' }, status: status() });
      recordEvent(ctx, { type: 'Normal', reason: 'NodeRegistered', kind: 'Node', name: b.name, uid: node.metadata.uid, node: b.name, source: 'api', message: `node ${b.name} registered at ${b.address} (${b.capacity.cpus} cpus, ${Math.round(b.capacity.memoryBytes / 1048576)} MiB)` });
    } else {
      node = (await ctx.registry.mutate<Node & AnyObject>(nodeKind, b.name, (cur) => ({ ...cur, status: status(cur.status) })))!;
    }
    return { node, clusterId: deps.clusterId, heartbeatIntervalMs: interval, statusFlushMs: statusFlushInterval(ctx.timings, nodeCache(caches).objects.size), serverVersion: VERSION };
  });

  app.post('/api/v1/nodes/:name/heartbeat', async (req) => {
    need(req, 'admin', 'agent');
    const name = (req.params as { name: string }).name;
    ownNode(req, name);
    if (!nodeCache(caches).objects.has(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" is not registered; register again`);
    const b = req.body as { engine?: { ok: boolean; version: string; error?: string }; intervalMs?: number; volumes?: unknown; usage?: unknown };
    const usage = parseUsage(b?.usage);
    if (usage) deps.usage.record(name, usage);
    const next = beatInterval(undefined);
    const volumes = Array.isArray(b?.volumes) && b.volumes.every((v) => typeof v === 'string') ? [...(b.volumes as string[])].sort() : undefined;
    // Judged against the interval the agent beats at now; it learns `next` from this answer.
    ctx.heartbeats.beat(name, b?.engine ?? { ok: true, version: '' }, typeof b?.intervalMs === 'number' && b.intervalMs > 0 ? b.intervalMs : next, volumes);
    return { heartbeatIntervalMs: next, statusFlushMs: statusFlushInterval(ctx.timings, nodeCache(caches).objects.size) };
  });

  app.post('/api/v1/nodes/:name/certificate', async (req) => {
    need(req, 'agent');
    const name = (req.params as { name: string }).name;
    ownNode(req, name);
    const node = nodeCache(caches).objects.get(name) as unknown as Node | undefined;
    if (!node) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" is not registered`);
    const csr = (req.body as { csr?: unknown })?.csr;
    if (typeof csr !== 'string') throw new BatonError('BATON_ERR_BAD_REQUEST', 'body must be {csr: PEM}');
    const cert = await pki.issue(name, csr, node.status.address, ctx.timings.nodeCertTtlMs);
    recordEvent(ctx, { type: 'Normal', reason: 'CertificateRenewed', kind: 'Node', name, uid: node.metadata.uid, node: name, source: 'api', message: `node ${name} renewed its certificate (serial ${cert.serial}, valid until ${cert.notAfter.toISOString()})` });
    return { certificate: cert.certPem, ca: pki.ca.certPem, notAfter: cert.notAfter.toISOString() };
  });

  app.patch('/api/v1/nodes/:name', async (req) => {
    need(req, 'admin');
    const name = (req.params as { name: string }).name;
    const b = (req.body ?? {}) as { labelsAdd?: Record<string, string>; labelsRemove?: string[]; availability?: NodeAvailability; taintsAdd?: string[]; taintsRemove?: string[] };
    const details = [];
    const addTaints: Taint[] = [];
    (Array.isArray(b.taintsAdd) ? b.taintsAdd : b.taintsAdd === undefined ? [] : [null]).forEach((t, i) => {
      const r = typeof t === 'string' ? parseTaint(t) : 'must be a taint string key=value:Effect';
      if (typeof r === 'string') details.push({ path: `taintsAdd[${i}]`, message: r });
      else addTaints.push(r);
    });
    if (b.taintsRemove !== undefined && (!Array.isArray(b.taintsRemove) || b.taintsRemove.some((k) => typeof k !== 'string'))) details.push({ path: 'taintsRemove', message: 'must be a list of taint keys, or key:Effect' });
    for (const [k, v] of Object.entries(b.labelsAdd ?? {})) {
      if (!LABEL_KEY.test(k)) details.push({ path: `labelsAdd.${k}`, message: 'a label key is letters, digits, ".", "-", "_" and "/", starting and ending with a letter or digit, at most 253 characters' });
      if (typeof v !== 'string' || v.length > 253) details.push({ path: `labelsAdd.${k}`, message: 'a label value is a string of at most 253 characters' });
    }
    if (b.labelsRemove !== undefined && (!Array.isArray(b.labelsRemove) || b.labelsRemove.some((k) => typeof k !== 'string'))) details.push({ path: 'labelsRemove', message: 'must be a list of label keys' });
    if (b.availability !== undefined && !['active', 'pause', 'drain'].includes(b.availability)) details.push({ path: 'availability', message: `must be active, pause or drain, got ${JSON.stringify(b.availability)}` });
    if (details.length) throw new BatonError('BATON_ERR_VALIDATION', `invalid update of node ${name}`, details);
    let before: Node | undefined;
    const out = await ctx.registry.mutate<Node & AnyObject>(nodeKind, name, (cur) => {
      before = cur;
      const labels = { ...cur.metadata.labels, ...(b.labelsAdd ?? {}) };
      for (const k of b.labelsRemove ?? []) delete labels[k];
      const availability = b.availability ?? cur.spec.availability;
      const annotations = { ...(cur.metadata.annotations ?? {}) };
      if (availability === 'drain' && cur.spec.availability !== 'drain') annotations[DRAIN_STARTED_ANNOTATION] = new Date(ctx.clock.now()).toISOString();
      if (availability !== 'drain') delete annotations[DRAIN_STARTED_ANNOTATION];
      // A taint is keyed by key and effect, as in Kubernetes: adding one replaces its value; removing `key` drops all its effects.
      let taints = [...(cur.spec.taints ?? [])];
      for (const r of b.taintsRemove ?? []) {
        const [key, effect] = r.split(':');
        taints = taints.filter((t) => t.key !== key || (effect !== undefined && t.effect !== effect));
      }
      for (const t of addTaints) taints = [...taints.filter((x) => x.key !== t.key || x.effect !== t.effect), t];
      const spec = { ...cur.spec, availability, ...(taints.length ? { taints } : {}) };
      if (!taints.length) delete (spec as { taints?: Taint[] }).taints;
      const next = ctx.registry.specUpdate(cur, { spec, labels, annotations }) as Node & AnyObject;
      return stableStringify(next) === stableStringify(cur) ? undefined : next;
    });
    if (!out) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" not found`);
    const changes: string[] = [];
    if (before && before.spec.availability !== out.spec.availability) changes.push(`availability ${before.spec.availability} → ${out.spec.availability}`);
    for (const [k, v] of Object.entries(b.labelsAdd ?? {})) if (before?.metadata.labels[k] !== v) changes.push(`label ${k}=${v}`);
    for (const k of b.labelsRemove ?? []) if (before && k in before.metadata.labels) changes.push(`label ${k} removed`);
    const taintsText = (n: Node | undefined) => (n?.spec.taints ?? []).map(formatTaint).join(',') || 'none';
    if (taintsText(before) !== taintsText(out as unknown as Node)) changes.push(`taints ${taintsText(before)} → ${taintsText(out as unknown as Node)}`);
    if (changes.length) recordEvent(ctx, { type: 'Normal', reason: 'NodeUpdated', kind: 'Node', name, uid: out.metadata.uid, node: name, source: 'api', message: `node ${name}: ${changes.join(', ')}` });
    return withLastBeat(out as unknown as Node);
  });

  app.delete('/api/v1/nodes/:name', async (req) => {
    need(req, 'admin');
    const name = (req.params as { name: string }).name;
    const force = ['1', 'true'].includes(String((req.query as { force?: string }).force ?? ''));
    const node = (await ctx.registry.get(nodeKind, name)) as (Node & AnyObject) | undefined;
    if (!node) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" not found`);
    if (node.status.state === 'ready' && !force) {
      throw new BatonError('BATON_ERR_CONFLICT', `node ${name} is Ready; drain it and stop its agent first, or pass --force (its tasks are then replaced elsewhere)`);
    }
    const serials = await pki.revokeNode(name);
    await ctx.registry.delete(nodeKind, name, {});
    ctx.heartbeats.forget(name);
    // Its tasks can no longer be reached: mark them orphaned so their services replace them.
    const tasks = (caches[taskKind.plural]!.byIndex(TASKS_BY_NODE, name) as unknown as Task[]).filter((t) => !isTerminal(t.status.state));
    const at = new Date(ctx.clock.now()).toISOString();
    for (let i = 0; i < tasks.length; i += 128) {
      await ctx.registry.updateStatus(taskKind, tasks.slice(i, i + 128).map((t) => ({ name: t.metadata.name, uid: t.metadata.uid, status: { ...t.status, state: 'orphaned', message: `node ${name} was removed`, timestamp: at } })));
    }
    recordEvent(ctx, { type: 'Warning', reason: 'NodeRemoved', kind: 'Node', name, uid: node.metadata.uid, node: name, source: 'api', message: `node ${name} removed${force ? ' (forced)' : ''}; ${serials.length} certificate(s) revoked, ${tasks.length} task(s) orphaned` });
    return { removed: name, revokedCertificates: serials, orphanedTasks: tasks.length };
  });

  // ---------------------------------------------------------------- routing-mesh revisions (deregistration)
  // Each node's mesh reports the Endpoints revision it has applied; the agent of a stopping task waits until
  // every Ready node's mesh has applied the revision that removed the task's endpoint (server/meshRevisions.ts).
  app.post('/api/v1/nodes/:name/mesh', async (req) => {
    need(req, 'agent');
    const name = (req.params as { name: string }).name;
    ownNode(req, name);
    if (!nodeCache(caches).objects.has(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" is not registered; register again`);
    const b = meshReportSchema.safeParse(req.body);
    if (!b.success) throw new BatonError('BATON_ERR_VALIDATION', `invalid mesh report from node ${name}`, zodDetails(b.error, 'body'));
    deps.meshes.report(name, Number(b.data.endpointsRevision));
    return { node: name, endpointsRevision: b.data.endpointsRevision };
  });
  app.get('/api/v1/endpoints/-/applied', async (req, reply) => {
    need(req, 'admin', 'agent');
    const q = endpointsAppliedQuerySchema.safeParse(req.query ?? {});
    if (!q.success) throw new BatonError('BATON_ERR_VALIDATION', 'invalid query: expected ?revision=N[&timeoutMs=MS]', zodDetails(q.error, 'query'));
    // A client that hangs up stops the wait (the response's close, not the request's: that fires once the request is read).
    const gone = new AbortController();
    reply.raw.once('close', () => gone.abort());
    return deps.meshes.waitApplied(Number(q.data.revision), q.data.timeoutMs ?? 0, gone.signal);
  });

  // ---------------------------------------------------------------- joining
  app.get('/api/v1/join/ca', async () => ({ ca: pki.ca.certPem, fingerprint: pki.caFingerprint }));
  app.post('/api/v1/join/nonce', async () => pki.newNonce(ctx.timings.joinNonceTtlMs));
  app.post('/api/v1/join', async (req) => {
    const b = (req.body ?? {}) as { name?: unknown; address?: unknown; csr?: unknown; nonce?: unknown; proof?: unknown };
    const name = typeof b.name === 'string' ? b.name : '';
    const n = objectNameSchema.safeParse(b.name);
    if (!n.success) throw new BatonError('BATON_ERR_VALIDATION', 'invalid node name', zodDetails(n.error, 'name'));
    if (name === SERVER_CLIENT_CN) throw new BatonError('BATON_ERR_VALIDATION', 'invalid node name', [{ path: 'name', message: `"${SERVER_CLIENT_CN}" is the server's own identity; pick another --name` }]);
    if (typeof b.address !== 'string' || !/^[0-9A-Za-z.:-]{1,253}$/.test(b.address)) throw new BatonError('BATON_ERR_VALIDATION', 'invalid join request', [{ path: 'address', message: 'must be the IP address or DNS name this node is reached at' }]);
    if (typeof b.csr !== 'string' || typeof b.nonce !== 'string' || typeof b.proof !== 'string') throw new BatonError('BATON_ERR_BAD_REQUEST', 'body must be {name, address, csr, nonce, proof}');
    const refused = (why: string, message: string): never => {
      recordEvent(ctx, { type: 'Warning', reason: 'JoinRefused', kind: 'Node', name, node: name, source: 'api', message: `join of ${name} from ${req.ip} refused: ${why}` });
      throw new BatonError('BATON_ERR_JOIN_REFUSED', message);
    };
    // The nonce is spent by any attempt, right or wrong.
    const nonce = pki.takeNonce(b.nonce);
    if (nonce === 'unknown') refused('replayed or unknown nonce', 'join refused: the nonce was already used or was never issued (a replayed join); start the join again');
    if (nonce === 'expired') refused('expired nonce', 'join refused: the nonce expired before the join completed; start the join again');
    if (!pki.verifyProof(b.nonce, b.csr, b.proof)) {
      refused('wrong join token', 'join refused: the join token is wrong, was rotated (baton join-token worker --rotate), or belongs to another cluster; get the current one with `baton join-token worker`');
    }
    const existing = nodeCache(caches).objects.get(name) as unknown as Node | undefined;
    const beat = ctx.heartbeats.get(name);
    if (existing && beat && ctx.clock.now() - beat.at < beat.intervalMs * ctx.timings.missedHeartbeats) {
      refused(`name held by the live node at ${existing.status.address}`, `join refused: node name ${name} is held by a live node at ${existing.status.address} (last heartbeat ${Math.round((ctx.clock.now() - beat.at) / 1000)}s ago); pick another --name, or remove that node first (baton node rm ${name})`);
    }
    // A name taken over from a dead node: the old holder's certificates stop working.
    const revoked = existing ? await pki.revokeNode(name) : [];
    const cert = await pki.issue(name, b.csr, b.address, ctx.timings.nodeCertTtlMs);
    recordEvent(ctx, { type: 'Normal', reason: 'NodeJoined', kind: 'Node', name, node: name, source: 'api', message: `node ${name} joined from ${req.ip} at ${b.address}${revoked.length ? ` (replacing a dead node of that name; ${revoked.length} old certificate(s) revoked)` : ''}` });
    return { certificate: cert.certPem, ca: pki.ca.certPem, clusterId: deps.clusterId, notAfter: cert.notAfter.toISOString() };
  });
  app.get('/api/v1/join/token', async (req) => {
    need(req, 'admin');
    return { role: 'worker', token: pki.joinToken() };
  });
  app.post('/api/v1/join/token/rotate', async (req) => {
    need(req, 'admin');
    const token = await pki.rotate();
    recordEvent(ctx, { type: 'Normal', reason: 'JoinTokenRotated', kind: 'Cluster', name: deps.clusterId, source: 'api', message: 'the worker join token was rotated; the old one no longer joins new nodes, joined nodes are unaffected' });
    return { role: 'worker', token };
  });

  // ---------------------------------------------------------------- events
  app.get('/api/v1/events', async (req, reply) => {
    const q = req.query as Record<string, string | undefined>;
    const query = { kind: q.kind, name: q.name, service: q.service, node: q.node, type: q.type, afterId: q.afterId ? Number(q.afterId) : undefined, limit: q.limit ? Number(q.limit) : undefined };
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
    const b = req.body as { items: NewEventBody[] };
    if (!Array.isArray(b?.items)) throw new BatonError('BATON_ERR_BAD_REQUEST', 'body must be {items: [...]}');
    return { recorded: recordPosted(b.items) };
  });

  // ---------------------------------------------------------------- logs, usage, metrics
  const logQuery = (req: FastifyRequest) => {
    const q = req.query as Record<string, string | undefined>;
    const tail = q.tail === undefined || q.tail === '' || q.tail === 'all' ? undefined : Number(q.tail);
    if (tail !== undefined && !(Number.isInteger(tail) && tail >= 0)) throw new BatonError('BATON_ERR_BAD_REQUEST', `tail must be a number of lines or "all", got "${q.tail}"`);
    if (q.grep) {
      try {
        new RegExp(q.grep);
      } catch (e) {
        throw new BatonError('BATON_ERR_BAD_REQUEST', `grep: ${(e as Error).message}`);
      }
    }
    return { follow: q.follow === 'true' || q.follow === '1', tail, since: q.since ? parseSince(q.since, ctx.clock.now()) : undefined, grep: q.grep || undefined };
  };
  app.get('/api/v1/services/:name/logs', async (req, reply) => {
    need(req, 'admin');
    const name = (req.params as { name: string }).name;
    const q = logQuery(req);
    // A removed service's logs stay readable on its nodes for their retention: only say "not found" when no node could have any.
    if (!caches[serviceKind.plural]!.objects.has(name) && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `service "${name}" not found`);
    reply.hijack();
    await deps.logs.serve({ service: name }, q, reply.raw);
  });
  app.get('/api/v1/tasks/:name/logs', async (req, reply) => {
    need(req, 'admin');
    const name = (req.params as { name: string }).name;
    const q = logQuery(req);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `task "${name}" not found`);
    reply.hijack();
    await deps.logs.serve({ task: name }, q, reply.raw);
  });
  app.get('/api/v1/top', async (req): Promise<TopResponse> => {
    need(req, 'admin');
    const tasks = deps.usage.tasks();
    const perNode = new Map<string, number>();
    for (const t of tasks) perNode.set(t.node, (perNode.get(t.node) ?? 0) + 1);
    const nodes = [...nodeCache(caches).objects.values()].map((o) => {
      const n = o as unknown as Node;
      const u = deps.usage.node(n.metadata.name);
      return { name: n.metadata.name, state: n.status.state, cpu: u?.cpu ?? 0, memoryBytes: u?.memoryBytes ?? 0, capacity: n.status.capacity, tasks: perNode.get(n.metadata.name) ?? 0 };
    });
    return { time: new Date(ctx.clock.now()).toISOString(), nodes, tasks };
  });
  app.get('/api/v1/services/:name/stats', async (req) => {
    need(req, 'admin');
    const name = (req.params as { name: string }).name;
    if (!caches[serviceKind.plural]!.objects.has(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `service "${name}" not found`);
    return deps.usage.stats(name);
  });
  app.get('/metrics', async (req, reply) => {
    need(req, 'admin');
    return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
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

  function serveWatch(req: FastifyRequest, reply: FastifyReply, kind: KindInfo, cache: WatchCache, rv: number, fields?: Record<string, string>, labels?: Record<string, string>, ignoreStatusUpdates = false) {
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

  registerDashboard(app, DASHBOARD_DIR);
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

/** serverOwned names the status fields the server writes and agents leave out (a task's scheduling decision is the scheduler's, not the agent's to echo). */
function serverOwned(kind: KindInfo): string[] {
  return kind === taskKind ? ['scheduling'] : [];
}
