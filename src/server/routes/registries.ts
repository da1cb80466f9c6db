/**
 * Registry logins (`baton registry login|ls|logout`; api/registries.ts has
 * the design). A login is tried against the registry first (api/registryProbe.ts)
 * and kept only if the registry took it: a wrong password or an unreachable
 * registry is said at once, not at the first pull. It is kept as a secret
 * (`registry-<server>`, labelled with the server), so it is sealed in the
 * store and reaches only the nodes whose tasks pull with it. Only an admin
 * logs in or out; every token role lists the logins (never their content).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { BatonError } from '../../base/errors.js';
import { secretKind, serviceKind } from '../../api/kinds.js';
import { REGISTRY_LABEL, registryCredentialSchema, registrySecretName, registryServerSchema } from '../../api/registries.js';
import type { Secret, Service } from '../../api/types.js';
import { recordEvent } from '../controllers/context.js';
import { probeRegistry } from '../../api/registryProbe.js';
import { defineRoute, READERS } from './route.js';
import type { HttpDeps } from './deps.js';

const serverParam = z.object({ server: registryServerSchema }).strict();

export interface RegistryLogin {
  server: string;
  secret: string;
  updatedAt: string;
}

export function registerRegistryRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { ctx, files } = deps;

  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/registries',
    access: ['admin'],
    body: registryCredentialSchema,
    handler: async (_req, reply, { body }) => {
      const verdict = await probeRegistry(body.serveraddress, body);
      if (!verdict.ok) throw new BatonError('BATON_ERR_BAD_REQUEST', verdict.message, [{ path: verdict.why === 'refused' ? 'body.password' : 'body.serveraddress', message: verdict.why }]);
      const name = registrySecretName(body.serveraddress);
      const r = await files.put('secret', name, Buffer.from(JSON.stringify(body)), { [REGISTRY_LABEL]: body.serveraddress });
      recordEvent(ctx, { type: 'Normal', reason: 'RegistryLogin', kind: 'Secret', name, source: 'api', message: `logged in to registry ${body.serveraddress} as ${body.username} (kept as secret ${name})` });
      return reply.status(r.created ? 201 : 200).send({ server: body.serveraddress, secret: name, updatedAt: r.object.metadata.creationTimestamp } satisfies RegistryLogin);
    },
  });

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/registries',
    access: READERS,
    handler: async () => {
      const secrets = (await ctx.registry.list<Secret>(secretKind)).items.filter((s) => s.metadata.labels?.[REGISTRY_LABEL]);
      return { items: secrets.map((s) => ({ server: s.metadata.labels[REGISTRY_LABEL]!, secret: s.metadata.name, updatedAt: s.metadata.creationTimestamp }) satisfies RegistryLogin) };
    },
  });

  defineRoute(app, {
    method: 'DELETE',
    url: '/api/v1/registries/:server',
    access: ['admin'],
    params: serverParam,
    handler: async (_req, _reply, { params }) => {
      const name = registrySecretName(params.server);
      const have = await ctx.registry.get<Secret>(secretKind, name);
      if (!have?.metadata.labels?.[REGISTRY_LABEL]) throw new BatonError('BATON_ERR_NOT_FOUND', `not logged in to registry ${params.server} (baton registry ls)`);
      await files.remove('secret', name, (await ctx.registry.list<Service>(serviceKind)).items);
      return { server: params.server, deleted: true };
    },
  });
}
