/**
 * Start order in Compose files (src/manifest/compose/dependsOn.ts): the
 * short and long forms of depends_on, and the whole file's checks (no
 * cycle, service_healthy needs a health check, completion needs a job).
 */
import { describe, expect, it } from 'vitest';
import { read } from '../helpers/compose.js';

const errors = (text: string) => read(text, { stack: 'st' }).errors.map((e) => `${e.path}${e.line ? ` (line ${e.line})` : ''}: ${e.message}`);

describe('Compose depends_on', () => {
  it('translates the short form and the long form with its conditions', () => {
    const r = read(
      `services:
  web:
    image: x
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
      cache: {condition: service_started, required: false, restart: true}
  api:
    image: x
    depends_on: [db]
  db:
    image: x
    healthcheck: {test: ["CMD", "true"]}
  migrate:
    image: x
    deploy: {mode: replicated-job}
  cache:
    image: x
`,
      { stack: 'st' },
    );
    expect(r.errors).toEqual([]);
    const by = Object.fromEntries(r.services.map((s) => [s.shortName, s.spec.dependsOn]));
    expect(by.web).toEqual([
      { service: 'st_db', condition: 'service_healthy', required: true },
      { service: 'st_migrate', condition: 'service_completed_successfully', required: true },
      { service: 'st_cache', condition: 'service_started', required: false },
    ]);
    expect(by.api).toEqual([{ service: 'st_db', condition: 'service_started', required: true }]);
    expect(by.db).toBeUndefined();
    expect(r.warnings.map((w) => w.path)).toEqual(['services.web.depends_on.cache.restart']);
  });

  it('refuses a cycle, an unknown service, a bad condition, service_healthy without a health check and completion of a non-job', () => {
    expect(errors(`services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n  c: {image: x, depends_on: [a]}\n`)).toEqual([
      'services.a.depends_on (line 2): depends_on makes a cycle (a → b → c → a): none of them could start',
    ]);
    expect(errors(`services:\n  a:\n    image: x\n    depends_on:\n      - nope\n`)).toEqual(['services.a.depends_on[0] (line 5): depends on "nope", which is not a service of this file']);
    expect(errors(`services:\n  a:\n    image: x\n    depends_on:\n      b: {condition: when_ready}\n  b: {image: x}\n`)).toEqual([
      expect.stringMatching(/^services\.a\.depends_on\.b\.condition \(line 5\): must be one of:? service_started/),
    ]);
    expect(errors(`services:\n  a:\n    image: x\n    depends_on:\n      b: {condition: service_healthy}\n  b: {image: x}\n`)).toEqual([
      'services.a.depends_on.b.condition (line 5): service_healthy needs a health check on b (healthcheck or x-baton.readiness), and it has none',
    ]);
    expect(errors(`services:\n  a:\n    image: x\n    depends_on:\n      b: {condition: service_completed_successfully}\n  b: {image: x}\n`)).toEqual([
      'services.a.depends_on.b.condition (line 5): service_completed_successfully needs b to be a job (deploy.mode: replicated-job), or it never completes',
    ]);
  });
});
