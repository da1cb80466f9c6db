/** Start order as the scheduler applies it (server/controllers/dependencies.ts): who waits, for what, and until when. */
import { describe, expect, it } from 'vitest';
import { startedServices, waitReason } from '../src/server/controllers/dependencies.js';
import type { Service } from '../src/api/types.js';
import { service, serviceSpec, task } from './fixtures.js';

const withStatus = (s: Service, st: Partial<Service['status']>): Service => ({ ...s, status: { ...s.status, ...st } });

describe('depends_on', () => {
  const web = service(serviceSpec({ dependsOn: [{ service: 'st_db', condition: 'service_healthy', required: true }, { service: 'st_cache', condition: 'service_started', required: false }, { service: 'st_init', condition: 'service_completed_successfully', required: true }] }), 'st_web');
  const db = withStatus(service(serviceSpec({ replicas: 3 }), 'st_db'), { desired: 3, running: 3, ready: 1 });
  const init = withStatus(service(serviceSpec({ mode: 'replicated-job', replicas: 1 }), 'st_init'), { job: { state: 'running', completions: 1, succeeded: 0, failed: 0, active: 1 } });
  const view = (services: Service[], started: string[] = []) => ({ service: (n: string) => services.find((s) => s.metadata.name === n), hasStarted: (n: string) => started.includes(n) });

  it('says every unmet condition; an optional dependency that is not deployed is not waited for', () => {
    expect(waitReason(web, view([web, db, init]))).toBe('waiting for st_db: 1/3 healthy; st_init: its job has 0/1 completions');
    expect(waitReason(web, view([web]))).toBe('waiting for st_db: not deployed; st_init: not deployed');
  });

  it('lets the service go once every condition holds, and never holds it again once it has run', () => {
    const healthy = withStatus(db, { ready: 3 });
    const done = withStatus(init, { job: { state: 'complete', completions: 1, succeeded: 1, failed: 0, active: 0 } });
    expect(waitReason(web, view([web, healthy, done]))).toBeUndefined();
    expect(waitReason(web, view([web, db, init], ['st_web']))).toBeUndefined();
    const failed = withStatus(init, { job: { state: 'failed', completions: 1, succeeded: 0, failed: 2, active: 0 } });
    expect(waitReason(web, view([web, healthy, failed]))).toMatch(/st_init: its job failed/);
  });

  it('counts a service as started once a task of it ran', () => {
    const t = task(web, 1, { state: 'running', node: 'n1' });
    expect([...startedServices([t])]).toEqual(['st_web']);
    expect([...startedServices([task(web, 2, { state: 'pending' })])]).toEqual([]);
  });
});
