/**
 * registerDashboard (src/server/dashboard.ts) on a bare Fastify: the built
 * files at their paths with the right caching, index.html for other pages,
 * Baton's JSON 404 for API paths and missing assets, and a "not built" page
 * when there is no build.
 */
import { afterAll, describe, expect, it } from 'vitest';
import Fastify from 'fastify';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dashboardDir, registerDashboard } from '../src/server/dashboard.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function build(withIndex: boolean): string {
  const d = mkdtempSync(join(tmpdir(), 'baton-dash-'));
  dirs.push(d);
  if (withIndex) {
    mkdirSync(join(d, 'assets'));
    writeFileSync(join(d, 'index.html'), '<!doctype html><title>Baton</title><script type="module" src="/assets/index-abc123.js"></script>');
    writeFileSync(join(d, 'assets/index-abc123.js'), 'console.log(1)');
  }
  return d;
}

async function app(dir: string) {
  const a = Fastify();
  a.get('/api/v1/info', async () => ({ ok: true }));
  registerDashboard(a, dir);
  await a.ready();
  return a;
}

describe('registerDashboard', () => {
  it('serves the build: index.html revalidated, hashed assets cached for good', async () => {
    const a = await app(build(true));
    const root = await a.inject({ method: 'GET', url: '/' });
    expect(root.statusCode).toBe(200);
    expect(root.headers['content-type']).toMatch(/text\/html/);
    expect(root.headers['cache-control']).toBe('no-cache');
    expect(root.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
    expect(root.body).toContain('<title>Baton</title>');
    const js = await a.inject({ method: 'GET', url: '/assets/index-abc123.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/javascript/);
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect((await a.inject({ method: 'HEAD', url: '/assets/index-abc123.js' })).statusCode).toBe(200);
    await a.close();
  });

  it('answers other pages with index.html, and API paths and missing files with a JSON 404', async () => {
    const a = await app(build(true));
    const page = await a.inject({ method: 'GET', url: '/services/web?x=1' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('<title>Baton</title>');
    for (const [method, url] of [['GET', '/api/v1/nope'], ['GET', '/api'], ['GET', '/assets/index-old.js'], ['GET', '/favicon.ico'], ['POST', '/services/web']] as const) {
      const r = await a.inject({ method, url });
      expect(r.statusCode, `${method} ${url}`).toBe(404);
      expect(r.json().error.code, `${method} ${url}`).toBe('BATON_ERR_NOT_FOUND');
    }
    expect((await a.inject({ method: 'GET', url: '/api/v1/info' })).json()).toEqual({ ok: true });
    await a.close();
  });

  it('says the dashboard was not built when there is no build', async () => {
    const a = await app(build(false));
    const r = await a.inject({ method: 'GET', url: '/' });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.body).toMatch(/dashboard was not built/);
    expect(r.body).toMatch(/npm run build/);
    expect((await a.inject({ method: 'GET', url: '/api/v1/nope' })).json().error.code).toBe('BATON_ERR_NOT_FOUND');
    await a.close();
  });

  it('finds dist/dashboard from the compiled module and from the source', () => {
    expect(dashboardDir('/pkg/dist/src/server')).toBe('/pkg/dist/dashboard');
    expect(dashboardDir('/pkg/src/server')).toBe('/pkg/dist/dashboard');
  });
});
