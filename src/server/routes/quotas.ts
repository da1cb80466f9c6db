/**
 * Stacks' quotas (`baton quota set|ls|rm`): an admin sets and removes them;
 * every token role reads them (a deployer reads beyond its stacks, as it
 * reads their services), each with what its stack uses now. Enforcement is in the service writes (quotas.ts).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { quotaLimitsSchema } from '../../api/quotas.js';
import { defineRoute, READERS } from './route.js';
import type { HttpDeps } from './deps.js';

const stackParam = z.object({ stack: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be a stack name: lowercase letters, digits, "_" or "-", starting with a letter or digit') });

export function registerQuotaRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { quotas } = deps;

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/quotas',
    access: READERS,
    handler: async () => ({ items: (await quotas.list()).sort((a, b) => a.stack.localeCompare(b.stack)) }),
  });

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/quotas/:stack',
    access: READERS,
    params: stackParam,
    handler: async (_req, _reply, { params }) => quotas.view(params.stack),
  });

  defineRoute(app, {
    method: 'PUT',
    url: '/api/v1/quotas/:stack',
    access: ['admin'],
    params: stackParam,
    body: quotaLimitsSchema,
    handler: async (req, _reply, { params, body }) => quotas.set(params.stack, body, req.who),
  });

  defineRoute(app, {
    method: 'DELETE',
    url: '/api/v1/quotas/:stack',
    access: ['admin'],
    params: stackParam,
    handler: async (_req, _reply, { params }) => {
      await quotas.remove(params.stack);
      return { stack: params.stack, removed: true };
    },
  });
}
