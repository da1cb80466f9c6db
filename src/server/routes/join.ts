/**
 * The join routes: the CA and the two steps of a join (no credentials; the
 * proof is checked inside), and the admin's join token. What a stranger can
 * make the server hold is bounded: each source address has a token bucket
 * for these calls (AddressRateLimiter), the nonce pool is capped in all and
 * per address, bodies are small and validated, and a refusal repeated is one
 * Event with a count (the event store's series), not a row per attempt.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BatonError } from '../../base/errors.js';
import { joinRequestSchema } from '../../api/schemas.js';
import { SERVER_CLIENT_CN } from '../../api/tls.js';
import type { Node } from '../../api/types.js';
import { recordEvent } from '../controllers/context.js';
import { addressKey } from '../rateLimit.js';
import { defineRoute } from './route.js';
import type { HttpDeps } from './deps.js';

/** A join body is a CSR and a few short strings; nothing near the API's 16 MiB. */
const JOIN_BODY_LIMIT = 64 * 1024;

/** registerJoinRoutes adds /api/v1/join/{ca,nonce,token,token/rotate} and /api/v1/join to `app`. */
export function registerJoinRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { ctx, pki, limiter } = deps;
  const limited = { bodyLimit: JOIN_BODY_LIMIT, onRequest: async (req: FastifyRequest) => limiter.spend(req.ip, 'join requests') };

  defineRoute(app, { method: 'GET', url: '/api/v1/join/ca', access: 'open', handler: async () => ({ ca: pki.ca.certPem, fingerprint: pki.caFingerprint }) });
  defineRoute(app, { method: 'POST', url: '/api/v1/join/nonce', access: 'open', ...limited, handler: async (req) => pki.newNonce(addressKey(req.ip)) });
  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/join',
    access: 'open',
    ...limited,
    body: joinRequestSchema,
    handler: async (req, _reply, { body: b }) => {
      const name = b.name;
      if (name === SERVER_CLIENT_CN) throw new BatonError('BATON_ERR_BAD_REQUEST', 'invalid request body', [{ path: 'body.name', message: `"${SERVER_CLIENT_CN}" is the server's own identity; pick another --name` }]);
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
      const existing = ctx.nodes.objects.get(name) as unknown as Node | undefined;
      const beat = ctx.heartbeats.get(name);
      if (existing && beat && ctx.clock.now() - beat.at < beat.intervalMs * ctx.timings.missedHeartbeats) {
        refused(`name held by the live node at ${existing.status.address}`, `join refused: node name ${name} is held by a live node at ${existing.status.address} (last heartbeat ${Math.round((ctx.clock.now() - beat.at) / 1000)}s ago); pick another --name, or remove that node first (baton node rm ${name})`);
      }
      // A name taken over from a dead node: the old holder's certificates stop working.
      const revoked = existing ? await pki.revokeNode(name) : [];
      const cert = await pki.issue(name, b.csr, b.address, ctx.timings.nodeCertTtlMs);
      recordEvent(ctx, { type: 'Normal', reason: 'NodeJoined', kind: 'Node', name, node: name, source: 'api', message: `node ${name} joined from ${req.ip} at ${b.address}${revoked.length ? ` (replacing a dead node of that name; ${revoked.length} old certificate(s) revoked)` : ''}` });
      return { certificate: cert.certPem, ca: pki.ca.certPem, clusterId: deps.clusterId, notAfter: cert.notAfter.toISOString() };
    },
  });
  defineRoute(app, { method: 'GET', url: '/api/v1/join/token', access: ['admin'], handler: async () => ({ role: 'worker', token: pki.joinToken() }) });
  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/join/token/rotate',
    access: ['admin'],
    handler: async () => {
      const token = await pki.rotate();
      recordEvent(ctx, { type: 'Normal', reason: 'JoinTokenRotated', kind: 'Cluster', name: deps.clusterId, source: 'api', message: 'the worker join token was rotated; the old one no longer joins new nodes, joined nodes are unaffected' });
      return { role: 'worker', token };
    },
  });
}
