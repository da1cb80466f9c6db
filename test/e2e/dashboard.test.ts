/**
 * The web dashboard in a real browser (Debian's headless Chromium through
 * playwright-core) against a real cluster: one `baton server` and two
 * `baton agent` processes (127.0.0.2–3) on the shared dockerd.
 *
 * - the server serves the dashboard's files without credentials and its API
 *   only with them (also under a percent-encoded path);
 * - a wrong token is refused with a clear message; the admin token signs in;
 * - the overview shows the nodes and the service;
 * - the service page shows its running task, scales it from 1 to 2 (both
 *   running, in the page and in the API), and its live log tail follows:
 *   a `tick N` line newer than any shown at first appears; its events and
 *   CPU and memory charts show;
 * - a node's page shows its tasks; signing out forgets the token.
 * Screenshots go to test-artifacts/dashboard/.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { serviceKind } from '../../src/api/kinds.js';
import type { Service } from '../../src/api/types.js';
import { eventually, ROOT, TEST_IMAGE, writeFile } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';

const NODES = ['n2', 'n3'] as const;
const SERVICE = 'dash_tick';
const ARTIFACTS = join(ROOT, 'test-artifacts/dashboard');
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
/** A task that prints `tick N` every 200 ms. */
const TICK = `["sh", "-c", "i=0; while true; do i=$$((i+1)); echo tick $$i; sleep 0.2; done"]`;
/** One log line as the dashboard shows it: `task@node | text`. */
const LOG_LINE = /^(\S+)@(n\d+) \| tick (\d+)$/;

/** get fetches a path from the server with no credentials (its certificate is the cluster CA's: not checked here). */
function get(base: string, path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method: 'GET', rejectUnauthorized: false, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.on('error', reject);
    req.end();
  });
}

describe('the web dashboard', () => {
  // One usage point per second for the charts (5 s by default).
  const c = new TestCluster('baton-dashboard-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 5000, bookmarkIntervalMs: 1000, usageBucketMs: 1000 }, 36000);
  let profile = '';
  let browser: BrowserContext | undefined;
  let page: Page;
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  /** The largest tick shown when the service page first showed logs. */
  let ticksAtOpen = -1;

  /** gotoPage navigates, once more if Chromium aborted it because an interface came or went (the cluster's tasks make veths). */
  const gotoPage = async (url: string) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await page.goto(url);
      } catch (e) {
        if (attempt >= 4 || !String(e).includes('ERR_NETWORK_CHANGED')) throw e;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  };
  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  const testid = (id: string) => page.locator(`[data-testid="${id}"]`);
  /** The tick numbers in the live tail now. */
  const ticks = async () =>
    (await testid('log-line').allTextContents())
      .map((t) => LOG_LINE.exec(t.trim()))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[3]));

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await c.start(NODES);
    await c.apply('dash', `services:
  tick:
    image: ${TEST_IMAGE}
    command: ${TICK}
    deploy:
      replicas: 1
`);
    await eventually(async () => expect(live(await c.tasksOf(SERVICE))).toHaveLength(1), 5 * 5000);
    profile = mkdtempSync(join(tmpdir(), 'baton-dashboard-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      ignoreHTTPSErrors: true,
      viewport: { width: 1440, height: 1000 },
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(30_000);
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
  }, 120_000);

  // Each step goes on from where the one before left the page: after a failure the rest are skipped, not timed out one by one.
  let failed = false;
  beforeEach((ctx) => {
    if (failed) ctx.skip();
  });
  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== 'fail') return;
    failed = true;
    if (browser) {
      await shot(`failed-${ctx.task.name.replace(/\W+/g, '-').slice(0, 60)}`).catch(() => {});
      console.error(`browser console errors:\n${consoleErrors.join('\n')}\npage errors:\n${pageErrors.join('\n')}`);
    }
  });

  afterAll(async () => {
    await browser?.close().catch(() => {});
    if (profile) rmSync(profile, { recursive: true, force: true });
    await c.stop();
  }, 60_000);

  it("serves the dashboard's files without a token, and the API only with one", async () => {
    const index = await get(c.url, '/');
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toMatch(/text\/html/);
    expect(index.headers['cache-control']).toBe('no-cache');
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(index.body)?.[1];
    expect(script, index.body).toBeDefined();
    const js = await get(c.url, script!);
    expect(js.status).toBe(200);
    expect(js.headers['cache-control']).toMatch(/immutable/);
    // Any other page is the dashboard too; API paths are not.
    expect((await get(c.url, '/services/x')).body).toBe(index.body);
    for (const path of ['/api/v1/services', '/api/v1/tasks?watch=true', '/%61pi/v1/services', '/api/v1/no-such-route']) {
      const r = await get(c.url, path);
      expect(r.status, `${path}: ${r.body}`).toBe(401);
      expect(JSON.parse(r.body).error.code).toBe('BATON_ERR_UNAUTHORIZED');
    }
  }, 60_000);

  it('refuses a wrong token with a clear message and signs in with the admin token', async () => {
    await gotoPage(`${c.url}/`);
    await testid('login-token').fill('baton.000000000000.not-the-token');
    await testid('login-submit').click();
    await testid('login-error').waitFor();
    expect(await testid('login-error').textContent()).toMatch(/wrong token/i);
    await shot('01-login-wrong-token');

    await testid('login-token').fill(c.env.BATON_TOKEN!);
    await testid('login-submit').click();
    await testid('cluster-id').waitFor();
    expect(await testid('cluster-id').textContent()).toBe(c.clusterId);
    expect(await testid('login-form').count()).toBe(0);
  }, 60_000);

  it('shows the nodes and the service with its replica health on the overview', async () => {
    for (const n of NODES) await page.locator(`[data-testid="node-row-${n}"][data-state="ready"]`).waitFor();
    await page.locator(`[data-testid="service-row-${SERVICE}"][data-ready="1"][data-desired="1"]`).waitFor();
    expect(await page.locator(`[data-testid="service-row-${SERVICE}"] [data-testid="service-replicas"]`).textContent()).toBe('1/1');
    await shot('02-overview');
  }, 60_000);

  it('opens the service page: its running task and a live log tail', async () => {
    await testid(`service-link-${SERVICE}`).click();
    await page.waitForURL(/#\/services\/dash_tick$/);
    await page.locator('[data-testid="task-row"][data-state="running"]').first().waitFor();
    expect(await page.locator('[data-testid="task-row"][data-state="running"]').count()).toBe(1);
    // The tail's first lines: the last 100 of the task so far, each `task@node | text`.
    await eventually(async () => expect((await ticks()).length).toBeGreaterThan(0), 5 * 5000);
    const first = (await testid('log-line').first().textContent())!.trim();
    const [task] = live(await c.tasksOf(SERVICE));
    expect(first).toMatch(new RegExp(`^${task!.metadata.name.replace(/\./g, '\\.')}@${task!.spec.nodeName} \\| tick \\d+$`));
    ticksAtOpen = Math.max(...(await ticks()));
    await shot('03-service');
  }, 60_000);

  it('scales the service from 1 to 2 from the page', async () => {
    await testid('scale-input').fill('2');
    await testid('scale-submit').click();
    await testid('scale-done').waitFor();
    await eventually(async () => expect(await page.locator('[data-testid="task-row"][data-state="running"]').count()).toBe(2), 5 * 5000);
    expect((await c.api.get<Service>(serviceKind, SERVICE)).spec.replicas).toBe(2);
    expect(live(await c.tasksOf(SERVICE))).toHaveLength(2);
    await page.locator(`[data-testid="service-replicas"]`, { hasText: '2/2' }).waitFor();
    await shot('04-scaled');
  }, 60_000);

  it("shows the service's events as they happen", async () => {
    await c.api.postEvents([{ type: 'Normal', reason: 'DashboardTest', message: 'hello from the dashboard test', kind: 'Service', name: SERVICE, service: SERVICE, source: 'test' }]);
    await page.locator('[data-testid="event-row"]', { hasText: 'hello from the dashboard test' }).waitFor();
  }, 60_000);

  it("charts the service's CPU and memory from its stats", async () => {
    for (const chart of ['chart-cpu', 'chart-memory']) await page.locator(`[data-testid="${chart}"] svg`).waitFor({ timeout: 5 * 10_000 });
    expect(await page.locator('[data-testid="chart-memory"] .chart-value').textContent()).toMatch(/^\d+(\.\d)? (B|KiB|MiB|GiB)$/);
  }, 120_000);

  it('follows the log tail: a newer tick line appears', async () => {
    expect(ticksAtOpen).toBeGreaterThan(0);
    await eventually(async () => expect(Math.max(...(await ticks()))).toBeGreaterThan(ticksAtOpen), 5 * 5000);
    await shot('05-logs');
  }, 60_000);

  it("shows an autoscaled service's targets against what the autoscaler measures", async () => {
    await c.apply('dashas', `services:
  w:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    x-baton:
      autoscale: {min: 1, max: 2, cpu: 80%}
`);
    await gotoPage(`${c.url}/#/services/dashas_w`);
    const section = page.locator('[data-testid="autoscale"]');
    await section.locator('text=between 1 and 2').waitFor({ timeout: 5 * 5000 });
    await section.locator('[data-testid="autoscale-targets"] td', { hasText: '80%' }).waitFor();
    // Once the autoscaler has measured the task: its CPU now, and why it keeps 1 replica.
    await section.locator('text=/cpu \\d+% of target 80% across 1 task/').waitFor({ timeout: 5 * 10_000 });
    await shot('06-autoscale');
    await gotoPage(`${c.url}/#/services/${SERVICE}`);
    await page.locator('[data-testid="task-row"][data-state="running"]').first().waitFor();
  }, 120_000);

  it('shows each container of a pod under its task', async () => {
    const file = writeFile(c.dir, 'dashpod.yaml', `apiVersion: v1
kind: Pod
metadata: {name: duo, namespace: dashpod}
spec:
  terminationGracePeriodSeconds: 1
  initContainers: [{name: prep, image: ${TEST_IMAGE}, command: ["true"]}]
  containers:
  - {name: app, image: ${TEST_IMAGE}, command: [sleep, "3600"]}
  - {name: helper, image: ${TEST_IMAGE}, command: [sleep, "3600"]}
`);
    const r = await c.baton(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
    await gotoPage(`${c.url}/#/services/dashpod_duo`);
    await page.locator('[data-testid="task-row"][data-state="running"]').first().waitFor({ timeout: 5 * 10_000 });
    await page.locator('[data-testid="container-row"][data-container="helper"][data-state="running"]').waitFor({ timeout: 5 * 5000 });
    const rows = await page.locator('[data-testid="container-row"]').allTextContents();
    expect(rows.map((x) => x.replace(/\s+/g, ' ').trim())).toEqual([expect.stringMatching(/^└ prep \(init\)\s*exited 0/), expect.stringMatching(/^└ app \(main\)\s*running/), expect.stringMatching(/^└ helper \(sidecar\)\s*running/)]);
    await shot('065-pod');
    expect((await c.baton(['stack', 'rm', 'dashpod'])).code).toBe(0);
    await gotoPage(`${c.url}/#/services/${SERVICE}`);
    await page.locator('[data-testid="task-row"][data-state="running"]').first().waitFor();
  }, 120_000);

  it('shows a node with its tasks, and signs out', async () => {
    const node = live(await c.tasksOf(SERVICE))[0]!.spec.nodeName;
    await page.locator('[data-testid="tasks"]').locator(`[data-testid="node-link-${node}"]`).click();
    await page.waitForURL(new RegExp(`#/nodes/${node}$`));
    await page.locator('[data-testid="page-node"] [data-testid="node-state"]', { hasText: 'ready' }).waitFor();
    await page.locator(`[data-testid="task-row"][data-state="running"]`).first().waitFor();
    expect(await page.locator('[data-testid="task-row"]').allTextContents()).toEqual(expect.arrayContaining([expect.stringContaining(SERVICE)]));
    await shot('07-node');

    await testid('logout').click();
    await testid('login-form').waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('baton.token'))).toBeNull();
    expect(pageErrors).toEqual([]);
  }, 60_000);

  it("signs in with any token and offers only what its role may do; an admin reads the audit log and every role the stacks' quotas", async () => {
    await c.api.call('PUT', '/api/v1/quotas/dash', { tasks: 4 });
    const make = async (name: string, body: object) => (await c.api.call<{ token: string }>('POST', '/api/v1/tokens', { name, ...body })).token;
    const signIn = async (token: string) => {
      await testid('login-token').fill(token);
      await testid('login-submit').click();
      await testid('caller').waitFor();
      await page.evaluate(() => {
        location.hash = '#/';
      });
      await testid('page-overview').waitFor();
    };
    const signOut = async () => {
      await testid('logout').click();
      await testid('login-form').waitFor();
    };

    // A viewer: reads the service, the quota; no scale form, no audit log (nor by its address).
    await signIn(await make('grafana', { role: 'viewer' }));
    expect(await testid('caller').textContent()).toBe('grafana, viewer');
    await page.locator('[data-testid="quota-row-dash"] [data-testid="quota-tasks"]', { hasText: '2 / 4' }).waitFor();
    expect(await testid('nav-audit').count()).toBe(0);
    await gotoPage(`${c.url}/#/services/${SERVICE}`);
    await testid('scale-not-allowed').waitFor();
    expect(await testid('scale-not-allowed').textContent()).toContain('Signed in as grafana, viewer: scaling stack dash needs an admin or a deployer of dash');
    expect(await testid('scale-form').count()).toBe(0);
    await gotoPage(`${c.url}/#/audit`);
    await testid('audit-not-allowed').waitFor();
    await shot('08-viewer');
    await signOut();

    // A deployer of another stack: reads, may not scale here. A deployer of this stack scales, within the quota.
    await signIn(await make('other-ci', { role: 'deployer', stacks: ['other'] }));
    await gotoPage(`${c.url}/#/services/${SERVICE}`);
    await testid('scale-not-allowed').waitFor();
    await signOut();
    await signIn(await make('ci', { role: 'deployer', stacks: ['dash'] }));
    expect(await testid('caller').textContent()).toBe('ci, deployer in dash');
    await gotoPage(`${c.url}/#/services/${SERVICE}`);
    await testid('scale-input').fill('5');
    await testid('scale-submit').click();
    await page.locator('[data-testid="scale-error"]', { hasText: 'the quota of stack "dash" does not allow this' }).waitFor();
    await testid('scale-input').fill('1');
    await testid('scale-submit').click();
    await testid('scale-done').waitFor();
    await shot('09-deployer');
    await signOut();

    // An admin: the audit log shows the deployer's refused and granted scales.
    await signIn(c.env.BATON_TOKEN!);
    expect(await testid('caller').getAttribute('data-role')).toBe('admin');
    await testid('nav-audit').click();
    await testid('page-audit').waitFor();
    await testid('audit-user').fill('ci');
    await page.locator('[data-testid="audit-row"][data-user="ci"][data-status="403"]', { hasText: 'BATON_ERR_QUOTA_EXCEEDED' }).waitFor();
    await page.locator('[data-testid="audit-row"][data-user="ci"][data-status="200"]', { hasText: `name=${SERVICE}` }).waitFor();
    await shot('10-audit');
    await c.api.call('DELETE', '/api/v1/quotas/dash');
    expect(pageErrors).toEqual([]);
  }, 120_000);
});
