/**
 * Blob routes (blobs.ts has the design): a client uploads a build context
 * before the apply that names it; a node reads one while a task of its own
 * that should run is built from it; servers copy blobs to each other.
 */
import type { FastifyInstance } from 'fastify';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { BatonError } from '../../base/errors.js';
import { blobDigestSchema, MAX_BUILD_CONTEXT_BYTES } from '../../api/build.js';
import type { Task } from '../../api/types.js';
import { TASKS_BY_NODE } from '../controllers/context.js';
import { defineRoute, DEPLOYERS } from './route.js';
import { taskCache, type HttpDeps } from './deps.js';

const params = z.object({ digest: blobDigestSchema });
const stream = z.custom<Readable>((v) => v instanceof Readable, "the body must be the blob's bytes, sent as application/octet-stream");

/** builtFrom: whether a task of `node` that should run is built from the blob. */
function builtFrom(tasks: Iterable<Task>, node: string, digest: string): boolean {
  for (const t of tasks) if (t.spec.nodeName === node && t.spec.desiredState === 'running' && t.spec.container.build?.context === digest) return true;
  return false;
}

export function registerBlobRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { blobs } = deps;
  // The bytes pass through as a stream: Blobs.receive checks the size and the digest as they come.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/blobs/:digest/stat',
    access: DEPLOYERS,
    params,
    handler: async (_req, _reply, { params: p }) => {
      if (!(await blobs.ensure(p.digest))) throw new BatonError('BATON_ERR_NOT_FOUND', `blob ${p.digest} is not on any server`);
      return { digest: p.digest, size: blobs.size(p.digest) };
    },
  });

  defineRoute(app, {
    method: 'PUT',
    url: '/api/v1/blobs/:digest',
    access: [...DEPLOYERS, 'server'],
    // A build context, named by its digest: of no stack (an apply that names it is held to the deployer's stacks).
    stacks: () => [],
    params,
    body: stream,
    handler: async (req, reply, { params: p, body }) => {
      const declared = Number(req.headers['content-length']);
      if (Number.isFinite(declared) && declared > MAX_BUILD_CONTEXT_BYTES) {
        body.resume();
        throw new BatonError('BATON_ERR_TOO_LARGE', `the blob is ${declared} bytes; a build context may be at most ${MAX_BUILD_CONTEXT_BYTES} (64 MiB)`);
      }
      const { size } = await blobs.receive(p.digest, body);
      // A client's upload is on every live server before it is answered; a copy from a server goes no further.
      if (req.role !== 'server') await blobs.replicate(p.digest);
      return reply.status(201).send({ digest: p.digest, size });
    },
  });

  defineRoute(app, {
    method: 'GET',
    url: '/api/v1/blobs/:digest',
    access: ['admin', 'agent', 'server'],
    params,
    handler: async (req, reply, { params: p }) => {
      if (req.role === 'agent') {
        const tasks = taskCache(deps).byIndex(TASKS_BY_NODE, req.node!) as unknown as Task[];
        if (!builtFrom(tasks, req.node!, p.digest)) throw new BatonError('BATON_ERR_FORBIDDEN', `node ${req.node} runs no task built from ${p.digest}`);
      }
      // Another server asking is fetching what it lacks: this one answers from what it has, never asks further.
      const here = req.role === 'server' ? blobs.has(p.digest) : await blobs.ensure(p.digest);
      if (!here) throw new BatonError('BATON_ERR_NOT_FOUND', `blob ${p.digest} is not on any server`);
      reply.header('content-type', 'application/octet-stream');
      reply.header('content-length', String(blobs.size(p.digest)));
      return reply.send(blobs.open(p.digest));
    },
  });
}
