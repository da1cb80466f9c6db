/**
 * Tokens, an admin's to make, list and revoke (`baton token create|ls|
 * revoke`): each with a role (admin, deployer, viewer), the stacks a
 * deployer acts in, and an expiry. A token is shown once, when made; the
 * store keeps its hash.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { TOKEN_ROLES } from '../auth.js';
import { defineRoute } from './route.js';
import type { HttpDeps } from './deps.js';

const tokenName = z.string().regex(/^[a-z0-9]([-a-z0-9._]{0,61}[a-z0-9])?$/, 'must be a name of lowercase letters, digits, "-", "." and "_" (at most 63)');
const stackName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be a stack name');

export const newTokenSchema = z
  .object({
    name: tokenName,
    role: z.enum(TOKEN_ROLES),
    stacks: z.array(stackName).min(1).max(100).optional(),
    /** How long it is valid (ms); absent: until revoked. */
    ttlMs: z.number().int().min(1000).max(10 * 365 * 86_400_000).optional(),
    description: z.string().max(200).optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.role === 'deployer' && !t.stacks) ctx.addIssue({ code: 'custom', path: ['stacks'], message: 'a deployer acts in the stacks it is given: pass --stacks' });
    if (t.role !== 'deployer' && t.stacks) ctx.addIssue({ code: 'custom', path: ['stacks'], message: `only a deployer is held to stacks; a ${t.role} ${t.role === 'admin' ? 'acts' : 'reads'} everywhere` });
  });

export function registerTokenRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { tokens, ctx } = deps;

  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/tokens',
    access: ['admin'],
    body: newTokenSchema,
    handler: async (_req, reply, { body }) => {
      const expiresAt = body.ttlMs !== undefined ? new Date(ctx.clock.now() + body.ttlMs).toISOString() : undefined;
      const token = await tokens.create(body.role, body.description ?? '', { name: body.name, ...(body.stacks ? { stacks: body.stacks } : {}), ...(expiresAt ? { expiresAt } : {}) });
      return reply.status(201).send({ name: body.name, role: body.role, ...(body.stacks ? { stacks: body.stacks } : {}), ...(expiresAt ? { expiresAt } : {}), token });
    },
  });

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/tokens',
    access: ['admin'],
    handler: async () => ({ items: (await tokens.list()).sort((a, b) => (a.name ?? '').localeCompare(b.name ?? '') || a.createdAt.localeCompare(b.createdAt)) }),
  });

  defineRoute(app, {
    method: 'DELETE',
    url: '/api/v1/tokens/:name',
    access: ['admin'],
    params: z.object({ name: tokenName }),
    handler: async (_req, _reply, { params }) => {
      await tokens.revoke(params.name);
      return { name: params.name, revoked: true };
    },
  });
}
