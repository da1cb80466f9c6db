/**
 * Routing-mesh revisions (deregistration): each node's mesh reports the
 * Endpoints revision it has applied; the agent of a stopping task waits
 * until every Ready node's mesh has applied the revision that removed the
 * task's endpoint (server/meshRevisions.ts, agent/deregistration.ts).
 */
import type { FastifyInstance } from 'fastify';
import { BatonError } from '../../base/errors.js';
import { endpointsAppliedQuerySchema, meshReportSchema } from '../../api/schemas.js';
import { defineRoute, nameParam } from './route.js';
import { nodeCache, ownNode, type HttpDeps } from './deps.js';

export function registerMeshRoutes(app: FastifyInstance, deps: HttpDeps): void {
  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/nodes/:name/mesh',
    access: ['agent'],
    params: nameParam,
    body: meshReportSchema,
    handler: async (req, _reply, { params: { name }, body }) => {
      ownNode(req, name);
      if (!nodeCache(deps).objects.has(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" is not registered; register again`);
      deps.meshes.report(name, Number(body.endpointsRevision));
      return { node: name, endpointsRevision: body.endpointsRevision };
    },
  });
  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/endpoints/-/applied',
    access: ['admin', 'agent'],
    query: endpointsAppliedQuerySchema,
    handler: async (_req, reply, { query }) => {
      // A client that hangs up stops the wait (the response's close, not the request's: that fires once the request is read).
      const gone = new AbortController();
      reply.raw.once('close', () => gone.abort());
      return deps.meshes.waitApplied(Number(query.revision), query.timeoutMs ?? 0, gone.signal);
    },
  });
}
