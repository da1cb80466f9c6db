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
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { TLSSocket } from 'node:tls';
import { BatonError, isBatonError } from '../base/errors.js';
import { objectNameSchema, zodDetails } from '../api/schemas.js';
import { SERVER_CLIENT_CN } from '../api/tls.js';
import type { Node } from '../api/types.js';
import type { Role } from './auth.js';
import { peerIdentity } from './clusterPki.js';
import { indexTasks, recordEvent } from './controllers/context.js';
import { taskKind } from '../api/kinds.js';
import { DASHBOARD_DIR, registerDashboard } from './dashboard.js';
import { GoneError } from './watchCache.js';
import { nodeCache, type HttpDeps } from './routes/deps.js';
import { registerObjectRoutes } from './routes/objects.js';
import { registerServiceRoutes } from './routes/services.js';
import { registerNodeRoutes } from './routes/nodes.js';
import { registerObserveRoutes } from './routes/observe.js';

export type { HttpDeps } from './routes/deps.js';

function need(req: FastifyRequest, ...roles: Role[]): void {
  if (!req.role || !roles.includes(req.role)) throw new BatonError('BATON_ERR_FORBIDDEN', `this call needs the ${roles.join(' or ')} role`);
}

/** Routes not declared with defineRoute that need no credentials: the first steps of a join (the proof is checked inside). */
const OPEN_ROUTES = new Set(['GET /api/v1/join/ca', 'POST /api/v1/join/nonce', 'POST /api/v1/join']);

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

  // The authorizer: who the caller is (a node certificate, else a bearer token), then whether the matched
  // route's access allows that role. Judged by the route that matched, not the raw URL: /%61pi/v1/services
  // matches /api/v1/services. The dashboard's files need no credentials (it logs in with a token).
  app.addHook('onRequest', async (req) => {
    const route = `${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`;
    const path = req.routeOptions.url ?? req.url;
    const access = req.routeOptions.config?.access;
    if (access === 'open' || OPEN_ROUTES.has(route)) return;
    if (access === undefined && !(path.startsWith('/api/') || path === '/api' || path.startsWith('/metrics'))) return;
    const sock = req.raw.socket as TLSSocket;
    const { serial, cn, address } = peerIdentity(sock);
    if (serial) {
      if (!sock.authorized) refuse(serial, cn, certRefusal(String(sock.authorizationError)));
      if (pki.isRevoked(serial)) refuse(serial, cn, `the certificate of node ${cn} was revoked (baton node rm); to come back, join again with a token`, [{ path: 'certificate', message: 'revoked' }]);
      if (!access?.includes('agent')) throw new BatonError('BATON_ERR_FORBIDDEN', `a node certificate may not call ${route}`);
      req.role = 'agent';
      req.node = cn;
      req.nodeAddress = address;
      return;
    }
    const h = req.headers.authorization;
    if (!h || !h.startsWith('Bearer ')) throw new BatonError('BATON_ERR_UNAUTHORIZED', 'missing bearer token: pass --token or use a context with one (baton context ls)');
    const role = await tokens.verify(h.slice(7).trim());
    if (!role) throw new BatonError('BATON_ERR_UNAUTHORIZED', 'invalid token: it is unknown to this cluster or malformed');
    // Undeclared routes (none but the join's) and unmatched paths under /api need an admin.
    if (!(access ?? ['admin']).includes(role)) throw new BatonError('BATON_ERR_FORBIDDEN', `this call needs the ${(access ?? ['admin']).join(' or ')} role`);
    req.role = role;
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const labels = { method: req.method, route };
    deps.metrics.requests.inc({ ...labels, code: String(reply.statusCode) });
    const q = req.query as Record<string, string> | undefined;
    if (q?.watch !== 'true' && q?.follow !== 'true') deps.metrics.latency.observe(labels, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: any, req, reply) => {
    if (isBatonError(err)) return reply.status(err.status).send(err.toJSON());
    if (err instanceof GoneError) return reply.status(410).send(new BatonError('BATON_ERR_GONE', err.message).toJSON());
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
    const existing = nodeCache(deps).objects.get(name) as unknown as Node | undefined;
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
