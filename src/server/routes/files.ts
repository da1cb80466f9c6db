/**
 * Secret and config routes (files.ts has the design): create, update (which
 * rolls the services using it), delete; lists and gets are the generic
 * object routes, which never carry content. A node reads a content only
 * while one of its tasks that should run uses it.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { BatonError } from '../../base/errors.js';
import { serviceKind } from '../../api/kinds.js';
import { fileDataSchema, fileInputSchema, fileLabelsSchema, objectNameSchema } from '../../api/schemas.js';
import type { Service, Task } from '../../api/types.js';
import { TASKS_BY_NODE, recordEvent } from '../controllers/context.js';
import { entitled, FILE_KINDS, type FileKindName } from '../files.js';
import { defineRoute, nameParam } from './route.js';
import { ownNode, taskCache, type HttpDeps } from './deps.js';

const createBody = fileInputSchema;
const updateBody = z.object({ data: fileDataSchema, labels: fileLabelsSchema }).strict();
const nodeFileParams = z.object({ name: objectNameSchema, file: objectNameSchema });

export function registerFileRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { ctx, files } = deps;
  for (const kind of ['secret', 'config'] as const satisfies readonly FileKindName[]) {
    const base = `/api/v1/${kind}s`;
    const decode = (data: string) => Buffer.from(data, 'base64');

    defineRoute(app, {
      method: 'POST',
      url: base,
      access: ['admin'],
      body: createBody,
      handler: async (_req, reply, { body }) => {
        const have = await ctx.registry.get(FILE_KINDS[kind], body.name);
        if (have) throw new BatonError('BATON_ERR_ALREADY_EXISTS', `${kind} "${body.name}" already exists; give it a new content with baton ${kind} update`);
        const r = await files.put(kind, body.name, decode(body.data), body.labels);
        recordEvent(ctx, { type: 'Normal', reason: `${cap(kind)}Created`, kind: cap(kind), name: body.name, source: 'api', message: `${kind} ${body.name} created (sha256 ${r.object.spec.hash.slice(0, 12)}, ${r.object.spec.size} bytes)` });
        return reply.status(201).send(r.object);
      },
    });

    defineRoute(app, {
      method: 'PUT',
      url: `${base}/:name`,
      access: ['admin'],
      params: nameParam,
      body: updateBody,
      handler: async (_req, _reply, { params, body }) => {
        await ctx.registry.mustGet(FILE_KINDS[kind], params.name);
        const r = await files.put(kind, params.name, decode(body.data), body.labels);
        if (r.rolled.length) {
          recordEvent(ctx, { type: 'Normal', reason: `${cap(kind)}Updated`, kind: cap(kind), name: params.name, source: 'api', message: `${kind} ${params.name} has a new content (sha256 ${r.object.spec.hash.slice(0, 12)}): rolling ${r.rolled.join(', ')}` });
        }
        return { ...r.object, rolled: r.rolled };
      },
    });

    defineRoute(app, {
      method: 'DELETE',
      url: `${base}/:name`,
      access: ['admin'],
      params: nameParam,
      handler: async (_req, _reply, { params }) => {
        const services = (await ctx.registry.list<Service>(serviceKind)).items;
        await files.remove(kind, params.name, services);
        return { name: params.name, deleted: true };
      },
    });

    // An agent reads the content for its task; the answer is never cached or logged.
    defineRoute(app, {
      method: 'GET',
      url: `/api/v1/nodes/:name/${kind}s/:file`,
      access: ['agent'],
      params: nodeFileParams,
      handler: async (req, reply, { params }) => {
        ownNode(req, params.name);
        const tasks = taskCache(deps).byIndex(TASKS_BY_NODE, params.name) as unknown as Task[];
        if (!entitled(tasks, params.name, kind, params.file)) {
          throw new BatonError('BATON_ERR_FORBIDDEN', `node ${params.name} runs no task that uses ${kind} "${params.file}"`);
        }
        const { data, hash } = await files.read(kind, params.file);
        reply.header('cache-control', 'no-store');
        return { data: data.toString('base64'), hash };
      },
    });
  }
}

function cap(kind: FileKindName): string {
  return kind === 'secret' ? 'Secret' : 'Config';
}
