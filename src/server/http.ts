/**
 * buildHttp wires the REST API onto Fastify: TLS with optional client
 * certificates, the authorizer, the one error shape, and the route modules
 * under routes/ (each route declares who may call it and the schemas of its
 * params, query and body: routes/route.ts). Watches are NDJSON over chunked
 * HTTP (a browser EventSource cannot send an Authorization header). Errors
 * always leave as `{error: {code, message, details}}` from the one catalogue;
 * an unexpected one is logged here and leaves as "internal error" with no
 * detail of ours.
 */
import { StoreError } from '../store/store.js';
import websocket from '@fastify/websocket';
import { EXEC_SUBPROTOCOL } from '../base/execProtocol.js';
import { registerExecRoutes } from './routes/exec.js';
import { registerRegistryRoutes } from './routes/registries.js';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { TLSSocket } from 'node:tls';
import { BatonError, isBatonError } from '../base/errors.js';
import { peerIdentity } from './clusterPki.js';
import { indexTasks, recordEvent } from './controllers/context.js';
import { taskKind } from '../api/kinds.js';
import { DASHBOARD_DIR, registerDashboard } from './dashboard.js';
import { GoneError } from './watchCache.js';
import type { HttpDeps } from './routes/deps.js';
import { registerObjectRoutes } from './routes/objects.js';
import { registerServiceRoutes } from './routes/services.js';
import { registerNodeRoutes } from './routes/nodes.js';
import { registerObserveRoutes } from './routes/observe.js';
import { registerJoinRoutes } from './routes/join.js';
import { registerTokenRoutes } from './routes/tokens.js';
import { registerQuotaRoutes } from './routes/quotas.js';
import { registerFileRoutes } from './routes/files.js';
import { registerMeshRoutes } from './routes/mesh.js';
import { registerBlobRoutes } from './routes/blobs.js';
import { SERVER_CLIENT_CN } from '../api/tls.js';

export type { HttpDeps } from './routes/deps.js';

/** certRefusal turns an OpenSSL verification code into words a user can act on. */
function certRefusal(code: string): string {
  if (code === 'CERT_HAS_EXPIRED') return 'the node certificate has expired; an agent renews it before expiry, so this node was away too long: join it again with a token (baton join-token worker)';
  if (code === 'CERT_NOT_YET_VALID') return "the node certificate is not valid yet; check this node's clock";
  if (code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' || code === 'DEPTH_ZERO_SELF_SIGNED_CERT') {
    return "the node certificate was not issued by this cluster's CA; join this cluster with its token";
  }
  return `the node certificate was refused (${code})`;
}

/** Fastify's own client errors (a body that is not JSON, a wrong content type, ...): the request's fault, said as it is. */
const CLIENT_ERROR_CODES = new Set(['FST_ERR_CTP_INVALID_MEDIA_TYPE', 'FST_ERR_CTP_EMPTY_JSON_BODY', 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', 'FST_ERR_CTP_BODY_TOO_LARGE', 'FST_ERR_CTP_INVALID_JSON_BODY', 'FST_ERR_BAD_URL', 'FST_ERR_ASYNC_CONSTRAINT']);

export function buildHttp(deps: HttpDeps): FastifyInstance {
  const { ctx, tokens, caches, pki } = deps;
  const app = Fastify({
    logger: false,
    bodyLimit: 16 * 1024 * 1024,
    forceCloseConnections: true,
    // A path segment may be any name the API takes (at most 253 characters), so the route's schema says what is wrong with it.
    routerOptions: { maxParamLength: 512 },
    // The router's own refusals (a malformed or over-long path) in the catalogue's words, never echoing the path.
    frameworkErrors: (err: { code?: string }, _req: FastifyRequest, reply: FastifyReply) =>
      reply.status(400).send(new BatonError('BATON_ERR_BAD_REQUEST', err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a segment of the path is longer than 512 characters' : err.code === 'FST_ERR_BAD_URL' ? 'the path is not a valid URL' : 'bad request').toJSON()),
    https: { key: pki.serving.keyPem, cert: pki.serving.certPem, ca: pki.ca.certPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
  app.server.on('secureConnection', (sock: TLSSocket) => pki.track(sock));
  indexTasks(caches[taskKind.plural]!);

  // A refused certificate costs its address a request of the rate limit; its retries add to one Warning event's count.
  const refuse = (req: FastifyRequest, name: string, message: string, details: { path: string; message: string }[] = []): never => {
    deps.limiter.spend(req.ip, 'failed authentications');
    recordEvent(ctx, { type: 'Warning', reason: 'CertificateRefused', kind: 'Node', name: name || 'unknown', node: name || undefined, source: 'api', message: `node ${name || '(no name)'}: ${message}` });
    throw new BatonError('BATON_ERR_UNAUTHORIZED', message, details);
  };

  // The authorizer: who the caller is (a node certificate, else a bearer token), then whether the matched
  // route's access allows that role. Judged by the route that matched, not the raw URL: /%61pi/v1/services
  // matches /api/v1/services. The dashboard's files need no credentials (it logs in with a token).
  app.addHook('onRequest', async (req) => {
    const route = `${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`;
    const path = req.routeOptions.url ?? req.url;
    const access = req.routeOptions.config?.access;
    if (access === 'open') return;
    if (access === undefined && !(path.startsWith('/api/') || path === '/api' || path.startsWith('/metrics'))) return;
    const sock = req.raw.socket as TLSSocket;
    const { serial, cn, address } = peerIdentity(sock);
    if (serial) {
      if (!sock.authorized) refuse(req, cn, certRefusal(String(sock.authorizationError)));
      if (pki.isRevoked(serial)) refuse(req, cn, `the certificate of node ${cn} was revoked (baton node rm); to come back, join again with a token`, [{ path: 'certificate', message: 'revoked' }]);
      // Another server of the cluster (blobs.ts): its client certificate's CN is one no node may join with.
      if (cn === SERVER_CLIENT_CN) {
        if (!access?.includes('server')) throw new BatonError('BATON_ERR_FORBIDDEN', `a server certificate may not call ${route}`);
        req.role = 'server';
        return;
      }
      if (!access?.includes('agent')) throw new BatonError('BATON_ERR_FORBIDDEN', `a node certificate may not call ${route}`);
      req.role = 'agent';
      req.node = cn;
      req.nodeAddress = address;
      return;
    }
    const h = req.headers.authorization;
    const token = h?.startsWith('Bearer ') ? h.slice(7).trim() : undefined;
    // A token already known costs nothing; any other attempt (it may need a store read) spends from its address's bucket.
    let caller = token === undefined ? undefined : tokens.cached(token);
    if (!caller) {
      deps.limiter.spend(req.ip, 'failed authentications');
      if (token === undefined) throw new BatonError('BATON_ERR_UNAUTHORIZED', 'missing bearer token: pass --token or use a context with one (baton context ls)');
      caller = await tokens.verify(token);
    }
    if (!caller) throw new BatonError('BATON_ERR_UNAUTHORIZED', 'invalid token: it is unknown to this cluster, revoked, expired or malformed');
    // Known before the access check, so the audit log says who was refused.
    req.role = caller.role;
    req.who = caller.name ?? `token ${caller.id}`;
    if (caller.stacks) req.stacks = caller.stacks;
    // Unmatched paths under /api need an admin (then they are a 404).
    if (!(access ?? ['admin']).includes(caller.role)) throw new BatonError('BATON_ERR_FORBIDDEN', `this call needs the ${(access ?? ['admin']).join(' or ')} role; the token${caller.name ? ` ${caller.name}` : ''} is a ${caller.role}`);
  });

  // The audit log: every request that may change something, by a token or by no one (nodes' and servers' own traffic apart).
  app.addHook('onSend', async (req, reply, payload) => {
    if (reply.statusCode >= 400 && typeof payload === 'string' && payload.length < 65_536) req.errorCode = /"code":"(BATON_ERR_[A-Z_]+)"/.exec(payload)?.[1];
    return payload;
  });
  app.addHook('onResponse', async (req, reply) => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS' || req.role === 'agent' || req.role === 'server') return;
    // A refusal for the rate limit is not written: a flood must not become a flood of writes.
    if (reply.statusCode === 429) return;
    const url = req.routeOptions.url;
    if (!url?.startsWith('/api/')) return;
    const params = (req.params ?? {}) as Record<string, unknown>;
    deps.audit.record({
      time: new Date(ctx.clock.now()).toISOString(),
      user: req.who ?? 'anonymous',
      role: req.role ?? 'none',
      method: req.method,
      route: url,
      object: Object.entries(params).map(([k, v]) => `${k}=${String(v).slice(0, 253)}`).join(','),
      status: reply.statusCode,
      ...(req.errorCode ? { error: req.errorCode } : {}),
      address: req.ip,
    });
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
    if (isBatonError(err)) {
      if (err.retryAfterMs !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
      return reply.status(err.status).send(err.toJSON());
    }
    if (err instanceof GoneError) return reply.status(410).send(new BatonError('BATON_ERR_GONE', err.message).toJSON());
    // etcd without quorum (or no member answering in time): nothing was written; the client may try again.
    if (err instanceof StoreError && err.code === 'unavailable') {
      reply.header('retry-after', '1');
      return reply.status(503).send(new BatonError('BATON_ERR_STORE_UNAVAILABLE', 'the store is unavailable (etcd has no quorum, or no member answered in time): nothing was written; reads may be stale; try again').toJSON());
    }
    if (err?.statusCode === 413 || err?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.status(413).send(new BatonError('BATON_ERR_TOO_LARGE', `the request body is larger than the server accepts (16 MiB)`).toJSON());
    if (err?.validation || CLIENT_ERROR_CODES.has(err?.code) || (typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) || err instanceof SyntaxError) {
      return reply.status(400).send(new BatonError('BATON_ERR_BAD_REQUEST', `bad request: ${clientMessage(err)}`).toJSON());
    }
    // Ours, not the caller's: its text and stack stay in our log.
    ctx.log.error({ err, method: req.method, url: req.routeOptions.url ?? 'unmatched' }, 'request failed');
    return reply.status(500).send(new BatonError('BATON_ERR_INTERNAL', 'internal error; the server logged it').toJSON());
  });

  registerObserveRoutes(app, deps);
  registerObjectRoutes(app, deps);
  registerServiceRoutes(app, deps);
  registerNodeRoutes(app, deps);
  registerMeshRoutes(app, deps);
  registerFileRoutes(app, deps);
  registerRegistryRoutes(app, deps);
  registerTokenRoutes(app, deps);
  registerQuotaRoutes(app, deps);
  registerBlobRoutes(app, deps);

  registerJoinRoutes(app, deps);
  // exec's WebSocket route is declared once the plugin that upgrades is loaded (it wraps the routes declared after it).
  void app.register(websocket, { options: { maxPayload: 1 << 20, handleProtocols: (p: Set<string>) => (p.has(EXEC_SUBPROTOCOL) ? EXEC_SUBPROTOCOL : false) } });
  void app.register(async (scope) => registerExecRoutes(scope, deps));

  registerDashboard(app, DASHBOARD_DIR);
  return app;
}

/** clientMessage: what Fastify said about a request it could not parse, without anything of ours (it names the request's fault). */
function clientMessage(err: { code?: string; message?: string }): string {
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return 'unsupported content type; send application/json';
  if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return 'the content type is application/json but the body is empty';
  if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) return 'the body is not valid JSON';
  return String(err.message ?? 'malformed request').slice(0, 200);
}
