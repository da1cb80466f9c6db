/**
 * registerDashboard serves the web dashboard (dashboard/, built by `npm run
 * build` into dist/dashboard/) at `/`: each built file at its own path (the
 * file list is read once, at registration: wildcard off, so no catch-all
 * route shadows the API), index.html for every other GET outside /api/ (the
 * dashboard routes in the URL's hash, so this only catches stray paths), and
 * Baton's JSON 404 for the rest. Hashed files under /assets/ are cached for a
 * year; index.html is revalidated on every load, so a new build shows at once.
 * Without a build, `/` says how to make one.
 *
 * The dashboard's files hold no secrets: they are served without credentials;
 * every API call the dashboard makes carries the admin token.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fastifyStatic from '@fastify/static';
import { BatonError } from '../base/errors.js';

/**
 * DASHBOARD_DIR is where `npm run build` puts the dashboard: dist/dashboard/
 * of this package, whether this module runs compiled (dist/src/server/) or
 * from source (src/server/, under tsx or vitest).
 */
export const DASHBOARD_DIR = dashboardDir(dirname(fileURLToPath(import.meta.url)));

export function dashboardDir(moduleDir: string): string {
  const up = resolve(moduleDir, '../..');
  return basename(up) === 'dist' ? join(up, 'dashboard') : join(up, 'dist', 'dashboard');
}

/** Hashed build output: its name changes with its content, so it may be cached for good. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

/**
 * What the dashboard's pages may do: load their own scripts and styles,
 * call this server's API, not be framed.
 */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

function isApiPath(url: string): boolean {
  const path = url.split('?')[0]!;
  return path === '/api' || path.startsWith('/api/');
}

const HTML_HEADERS: Record<string, string> = { 'cache-control': 'no-cache', 'content-security-policy': CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };

function htmlHeaders(reply: FastifyReply): void {
  for (const [k, v] of Object.entries(HTML_HEADERS)) reply.header(k, v);
}

function notFound(req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const path = req.url.split('?')[0];
  return reply.status(404).send(new BatonError('BATON_ERR_NOT_FOUND', `no such route: ${req.method} ${path}`).toJSON());
}

const NOT_BUILT = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Baton</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>Baton</h1>
<p>The dashboard was not built, so this server has nothing to show here. Build it with <code>npm run build</code> (it goes to <code>dist/dashboard/</code>) and restart the server.</p>
<p>The API is served under <code>/api/v1/</code> as usual.</p>
</body>
</html>
`;

export function registerDashboard(app: FastifyInstance, dir: string): void {
  const root = resolve(dir);
  if (!existsSync(join(root, 'index.html'))) {
    app.get('/', async (_req, reply) => {
      htmlHeaders(reply);
      return reply.type('text/html; charset=utf-8').send(NOT_BUILT);
    });
    app.setNotFoundHandler(notFound);
    return;
  }

  const assets = join(root, 'assets') + sep;
  app.register(fastifyStatic, {
    root,
    prefix: '/',
    wildcard: false,
    index: ['index.html'],
    // Cache-Control is set below, per file.
    cacheControl: false,
    dotfiles: 'ignore',
    setHeaders(res, path) {
      if (resolve(path).startsWith(assets)) {
        res.setHeader('cache-control', IMMUTABLE);
        res.setHeader('x-content-type-options', 'nosniff');
      } else for (const [k, v] of Object.entries(HTML_HEADERS)) res.setHeader(k, v);
    },
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!;
    // A page the dashboard may route to gets index.html; an API path or a missing file (an asset of an older build) gets a 404.
    if ((req.method === 'GET' || req.method === 'HEAD') && !isApiPath(path) && !path.startsWith('/assets/') && !/\.[A-Za-z0-9]+$/.test(path)) {
      htmlHeaders(reply);
      return reply.type('text/html; charset=utf-8').sendFile('index.html');
    }
    return notFound(req, reply);
  });
}
