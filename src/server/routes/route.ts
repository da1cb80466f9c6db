/**
 * defineRoute is how every API route is declared: its method and URL, who
 * may call it, and zod schemas for its params, query and body, checked before
 * the handler runs. A route that declares no query or body takes none worth
 * reading (unknown query keys are ignored, as Kubernetes' API server does; an
 * unexpected body is refused). So no handler reads an unvalidated value, and
 * a malformed request is a 400 naming every problem's place (`body.items[0].
 * status.hostIP`), never a 500. (A well-formed object that breaks a rule of
 * its kind, a service spec say, is a 422 from the layer that knows the rule.)
 *
 * Every route lands in ROUTES, the table the authorizer judges by (the
 * onRequest hook reads the matched route's `access`), and that tests walk.
 */
import { z } from 'zod';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { BatonError } from '../../base/errors.js';
import { zodDetails } from '../../api/schemas.js';
import type { Role } from '../auth.js';

/** Who may call a route: anyone (the proof is checked inside), or these roles. */
export type Access = 'open' | readonly Role[];

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RouteInput<P, Q, B> {
  params: P;
  query: Q;
  body: B;
}

export interface RouteDef<P, Q, B> {
  method: Method;
  url: string;
  access: Access;
  params?: z.ZodType<P>;
  query?: z.ZodType<Q>;
  body?: z.ZodType<B>;
  /** A body limit below the API's 16 MiB (routes open to strangers). */
  bodyLimit?: number;
  /**
   * The stacks the call acts in, when a deployer calls it (a deployer acts
   * only in the stacks of its token): each must be one of them. Undefined
   * (the object does not exist): the handler answers (a 404). Every route
   * that lets a deployer change something names its stacks.
   */
  stacks?: (input: RouteInput<P, Q, B>) => string[] | undefined;
  /** Runs after the authorizer, before the body is read (a per-address rate limit). */
  onRequest?: (req: FastifyRequest) => Promise<void>;
  /** Returns the reply's body, or hijacks the reply (streams) and returns nothing. */
  handler: (req: FastifyRequest, reply: FastifyReply, input: RouteInput<P, Q, B>) => Promise<unknown>;
}

export interface RouteEntry {
  method: Method;
  url: string;
  access: Access;
  /** A deployer's call is held to its stacks. */
  scoped: boolean;
}

/** Every token role reads. */
export const READERS: readonly Role[] = ['admin', 'deployer', 'viewer'];
/** An admin and, within its stacks, a deployer. */
export const DEPLOYERS: readonly Role[] = ['admin', 'deployer'];

/** ROUTES: every API route declared, in declaration order (one table for the whole process: routes do not vary by server). */
export const ROUTES: RouteEntry[] = [];

/** routesTable renders ROUTES as the Markdown table docs/architecture.md carries (a test keeps the two equal). */
export function routesTable(): string {
  const who = (r: RouteEntry) => (r.access === 'open' ? 'anyone (the proof is checked inside)' : r.access.map((x) => (x === 'deployer' && r.scoped ? 'deployer (its stacks)' : x)).join(', '));
  return ['| Method | Route | Who may call it |', '|---|---|---|', ...ROUTES.map((r) => `| ${r.method} | \`${r.url}\` | ${who(r)} |`)].join('\n');
}

/** The config key the route's access rides under, for the authorizer's hook. */
declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
}

/** No params, no query keys read, and no body (an empty object is accepted: clients send `{}` for verbs). */
const NONE = z.object({});
const NO_BODY = z.union([z.undefined(), z.null(), z.object({}).strict()]);

export function defineRoute<P = Record<string, never>, Q = Record<string, never>, B = undefined>(app: FastifyInstance, def: RouteDef<P, Q, B>): void {
  if (def.access !== 'open' && def.access.includes('deployer') && def.method !== 'GET' && !def.stacks) throw new Error(`${def.method} ${def.url} lets a deployer change something without naming its stacks`);
  if (!ROUTES.some((r) => r.method === def.method && r.url === def.url)) ROUTES.push({ method: def.method, url: def.url, access: def.access, scoped: def.stacks !== undefined });
  const params = (def.params ?? NONE) as z.ZodType<P>;
  const query = (def.query ?? NONE) as z.ZodType<Q>;
  const body = (def.body ?? NO_BODY) as z.ZodType<B>;
  app.route({
    method: def.method,
    url: def.url,
    config: { access: def.access },
    ...(def.bodyLimit !== undefined ? { bodyLimit: def.bodyLimit } : {}),
    ...(def.onRequest ? { onRequest: def.onRequest } : {}),
    handler: async (req, reply) => {
      const input = {
        params: parseInput(params, req.params, 'params', 'BATON_ERR_BAD_REQUEST'),
        query: parseInput(query, req.query, 'query', 'BATON_ERR_BAD_REQUEST'),
        body: parseInput(body, req.body, 'body', 'BATON_ERR_BAD_REQUEST'),
      };
      if (req.role === 'deployer' && def.stacks) {
        const outside = (def.stacks(input) ?? []).filter((s) => !(req.stacks ?? []).includes(s));
        if (outside.length) throw new BatonError('BATON_ERR_FORBIDDEN', `this token may act only in the stacks ${(req.stacks ?? []).join(', ') || '(none)'}, not in ${outside.map((s) => (s === '' ? 'a service of no stack' : s)).join(', ')}`);
      }
      return def.handler(req, reply, input);
    },
  });
}

/** parseInput validates one part of a request; every problem is listed with its path. */
export function parseInput<T>(schema: z.ZodType<T>, value: unknown, where: string, code: 'BATON_ERR_BAD_REQUEST' | 'BATON_ERR_VALIDATION'): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  // At most 50 details: a hostile body must not make a huge answer.
  throw new BatonError(code, `invalid request ${where}`, zodDetails(r.error, where).slice(0, 50));
}

// ---------------------------------------------------------------- shared pieces of schemas

/** A query flag: "true"/"1" or "false"/"0". */
export const flag = z
  .enum(['true', 'false', '1', '0', ''])
  .optional()
  .transform((v) => v === 'true' || v === '1');

/** A query integer within bounds (query values arrive as text). */
export function queryInt(min: number, max: number) {
  return z
    .string()
    .regex(/^\d{1,15}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
}

/** A query string of bounded length (repeated keys are refused: each is read once). */
export function queryText(max = 1024) {
  return z.string().max(max);
}

/** One path parameter: an object name, as every kind allows (at most 253 characters, no slash or control character). */
export const nameParam = z.object({ name: z.string().min(1).max(253).regex(/^[^\s/\\\u0000-\u001f]+$/, 'must be a name without spaces or slashes') });
