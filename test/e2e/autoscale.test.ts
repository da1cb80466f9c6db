/**
 * Autoscaling on a real cluster (a server and two agent processes, real
 * containers, load on loopback): CPU under load scales up and back down, a
 * re-apply keeps the autoscaler's count, and a service scaled to zero
 * serves its first request.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceKind } from '../../src/api/kinds.js';
import type { Service } from '../../src/api/types.js';
import { TestCluster, live } from '../helpers/cluster.js';
import { eventually, getOnce } from '../helpers/proc.js';

const IMAGE = 'baton-test/busybox:latest';

/** httpd with a CGI that burns CPU for each request. */
const burner = (autoscale: string, replicas = 1) => `services:
  api:
    image: ${IMAGE}
    command: ["sh", "-c", "mkdir -p /tmp/w/cgi-bin; echo hi > /tmp/w/index.html; printf '#!/bin/sh\\\\ni=0; while [ $$i -lt 30000 ]; do i=$$((i+1)); done\\\\necho Content-Type: text/plain\\\\necho\\\\necho burnt\\\\n' > /tmp/w/cgi-bin/burn; chmod +x /tmp/w/cgi-bin/burn; exec httpd -f -p $$PORT -h /tmp/w"]
    ports: ["38890:80"]
    deploy:
      replicas: ${replicas}
      resources: {reservations: {cpus: "0.1"}}
    x-baton:
      autoscale: ${autoscale}
`;

describe('autoscaling', () => {
  const c = new TestCluster('baton-autoscale-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 5000, bookmarkIntervalMs: 1000, usageBucketMs: 500, autoscaleSyncMs: 500 }, 39000);
  const svc = (name: string) => c.api.get<Service>(serviceKind, name);

  beforeAll(async () => {
    await c.start(['n2', 'n3']);
  }, 120_000);
  afterAll(async () => {
    await c.stop();
  }, 60_000);

  it('scales a CPU-bound service up under load and back down after it; a re-apply keeps the count; scale is refused', async () => {
    const policy = '{min: 1, max: 3, cpu: 50%, scale_down: {stabilization: 3s}}';
    await c.apply('as', burner(policy));
    await eventually(async () => expect(await getOnce('http://127.0.0.2:38890/cgi-bin/burn', 5000, { lenient: true })).toBe('burnt\n'), 30_000);
    let stop = false;
    const load = Array.from({ length: 3 }, async () => {
      while (!stop) await getOnce('http://127.0.0.2:38890/cgi-bin/burn', 20_000, { lenient: true }).catch(() => undefined);
    });
    try {
      await eventually(async () => {
        expect((await svc('as_api')).spec.replicas).toBe(3);
        expect(live(await c.tasksOf('as_api'))).toHaveLength(3);
      }, 60_000);
      // A re-apply of the same file (replicas: 1) does not fight the autoscaler.
      await c.apply('as', burner(policy));
      expect((await svc('as_api')).spec.replicas).toBe(3);
      const scale = await c.baton(['service', 'scale', 'as_api=1']);
      expect(scale.code).not.toBe(0);
      expect(scale.stderr).toMatch(/is autoscaled .* the autoscaler owns its replicas/);
      const ls = await c.baton(['autoscale', 'ls']);
      expect(ls.stdout).toMatch(/as_api +3 +1 +3 +cpu 50%/);
    } finally {
      stop = true;
      await Promise.all(load);
    }
    await eventually(async () => expect((await svc('as_api')).spec.replicas).toBe(1), 60_000);
    const events = (await c.api.events({ service: 'as_api' })).items.filter((e: { reason: string }) => e.reason === 'ScaledUp' || e.reason === 'ScaledDown');
    expect(events.some((e: { reason: string; message: string }) => e.reason === 'ScaledUp' && /cpu \d+% of target 50% across \d task\(s\) → \d/.test(e.message))).toBe(true);
    expect(events.some((e: { reason: string }) => e.reason === 'ScaledDown')).toBe(true);
    expect((await c.baton(['stack', 'rm', 'as'])).code).toBe(0);
  }, 180_000);

  it('scales to zero without traffic, and the first request starts a task and succeeds', async () => {
    await c.apply(
      'zero',
      `services:
  web:
    image: ${IMAGE}
    command: ["sh", "-c", "echo awake > /tmp/index.html; exec httpd -f -p $$PORT -h /tmp"]
    ports: ["38891:80"]
    x-baton:
      autoscale: {min: 0, max: 2, rps: 50, scale_down: {stabilization: 2s}}
`,
    );
    await eventually(async () => {
      expect((await svc('zero_web')).spec.replicas).toBe(0);
      expect(await c.running('zero_web')).toHaveLength(0);
    }, 60_000);
    const t0 = Date.now();
    expect(await getOnce('http://127.0.0.3:38891/', 30_000)).toBe('awake\n');
    const cold = Date.now() - t0;
    console.log(`cold start (zero tasks → first response): ${cold} ms`);
    expect((await svc('zero_web')).spec.replicas).toBe(1);
    const reasons = (await c.api.events({ service: 'zero_web' })).items.map((e: { reason: string; message: string }) => `${e.reason}: ${e.message}`);
    expect(reasons.some((r: string) => /ScaledUp: .*a connection is waiting/.test(r))).toBe(true);
    // Baton reports the cold start itself: an event and `baton autoscale ls`.
    await eventually(async () => {
      const ev = (await c.api.events({ service: 'zero_web', type: 'ColdStart' })).items;
      expect(ev.length).toBeGreaterThanOrEqual(1);
      expect(ev[0].message).toMatch(/ready on n[23] \d+ ms after the first connection waited for it/);
      expect((await c.baton(['autoscale', 'ls'])).stdout).toMatch(/zero_web +[012] +0 +2 +rps 50 +\S+ +\d+ ms/);
    }, 10_000);
  }, 120_000);

  it('reports tasks left pending for lack of capacity in its explanation, not hidden', async () => {
    await c.apply(
      'big',
      `services:
  w:
    image: ${IMAGE}
    command: ["sleep", "3600"]
    deploy: {resources: {reservations: {memory: 1000g}}}
    x-baton:
      autoscale: {min: 1, max: 2, cpu: 50%}
`,
    );
    await eventually(async () => {
      const ls = await c.baton(['autoscale', 'ls']);
      expect(ls.stdout).toMatch(/big_w .*1 task\(s\) pending: .*insufficient memory/);
    }, 30_000);
    expect((await c.baton(['stack', 'rm', 'big'])).code).toBe(0);
  }, 60_000);
});
