/**
 * Resources and restarts (src/manifest/compose/resources.ts): resources and
 * their short keys, restart and deploy.restart_policy (with x-baton's
 * backoff), update_config and rollback_config.
 */
import { describe, it, expect } from 'vitest';
import type { ServiceSpec } from '../../src/api/types.js';
import { service, errorsOf, warningsOf } from '../helpers/compose.js';

describe('readCompose: supported keys', () => {
  it('reads resources, and the short keys as the same fields', () => {
    const spec = service(
      'deploy:\n  resources:\n    limits: {cpus: "0.5", memory: 512M, pids: 100}\n    reservations: {cpus: 0.25, memory: 1g}',
    );
    expect(spec.resources).toEqual({
      limits: { cpus: 0.5, memoryBytes: 512 * 1024 ** 2, pids: 100 },
      reservations: { cpus: 0.25, memoryBytes: 1024 ** 3 },
    });
    expect(service('cpus: 1.5\nmem_limit: 2g\nmem_reservation: 1g\npids_limit: 50').resources).toEqual({
      limits: { cpus: 1.5, memoryBytes: 2 * 1024 ** 3, pids: 50 },
      reservations: { cpus: 0, memoryBytes: 1024 ** 3 },
    });
    expect(errorsOf('cpus: 1\ndeploy:\n  resources:\n    limits: {cpus: 2}')).toEqual([
      'services.web.cpus: conflicts with deploy.resources.limits.cpus (1 vs 2); set one of them',
    ]);
    expect(errorsOf('deploy:\n  resources:\n    reservations: {cpus: "0.0005"}')).toEqual([
      'services.web.deploy.resources.reservations.cpus: "0.0005" is finer than a millicore; use at most three decimals (0.001 cpus = 1m)',
    ]);
    expect(errorsOf('deploy:\n  resources:\n    limits: {memory: lots}')).toEqual([
      'services.web.deploy.resources.limits.memory: invalid size "lots": use a number and an optional unit (b, k, m, g, t, p), e.g. "512m"',
    ]);
  });

  it.each<[string, Partial<ServiceSpec['restartPolicy']>]>([
    ['restart: "no"', { condition: 'none' }],
    ['restart: always', { condition: 'any' }],
    ['restart: unless-stopped', { condition: 'any' }],
    ['restart: on-failure', { condition: 'on-failure', maxAttempts: 0 }],
    ['restart: on-failure:3', { condition: 'on-failure', maxAttempts: 3 }],
    [
      'deploy:\n  restart_policy:\n    condition: on-failure\n    delay: 5s\n    max_attempts: 3\n    window: 2m',
      { condition: 'on-failure', delayMs: 5000, maxDelayMs: 30_000, maxAttempts: 3, windowMs: 120_000 },
    ],
    ['deploy:\n  restart_policy:\n    condition: none', { condition: 'none', delayMs: 200 }],
    ['x-baton:\n  restart:\n    backoff: {initial: 1s, max: 2m, factor: 3}', { condition: 'any', delayMs: 1000, maxDelayMs: 120_000, factor: 3 }],
    ['deploy:\n  restart_policy:\n    delay: 5s\nx-baton:\n  restart:\n    backoff: {max: 10s}', { delayMs: 5000, maxDelayMs: 10_000 }],
    ['deploy:\n  restart_policy:\n    delay: 2m', { condition: 'any', delayMs: 120_000, maxDelayMs: 120_000 }],
  ])('%s', (body, rp) => {
    expect(service(body).restartPolicy).toMatchObject(rp);
  });

  it('warns that restart is ignored next to deploy.restart_policy', () => {
    expect(warningsOf('restart: always\ndeploy:\n  restart_policy:\n    condition: none')).toEqual([
      'services.web.restart: `services.web.restart` is ignored: `deploy.restart_policy` takes precedence, as in Swarm',
    ]);
  });
});

describe('readCompose: validation', () => {
  it('reads update_config and rollback_config with Swarm\'s defaults, and says what is wrong', () => {
    const spec = service('deploy:\n  replicas: 4\n  update_config: {parallelism: 2, delay: 10s, failure_action: rollback, monitor: 30s, max_failure_ratio: 0.25, order: start-first}\n  rollback_config: {parallelism: 0}');
    expect(spec.update).toEqual({ parallelism: 2, delayMs: 10_000, failureAction: 'rollback', monitorMs: 30_000, maxFailureRatio: 0.25, order: 'start-first' });
    expect(spec.rollbackConfig).toEqual({ parallelism: 0, delayMs: 0, failureAction: 'pause', monitorMs: 5000, maxFailureRatio: 0, order: 'stop-first' });
    expect(service('deploy: {replicas: 2}').update).toBeUndefined();
    expect(errorsOf('deploy:\n  update_config: {parallelism: -1, failure_action: explode, max_failure_ratio: 2, order: random, monitor: soon}\n  rollback_config: {failure_action: rollback}')).toEqual([
      'services.web.deploy.update_config.order: must be one of: start-first, stop-first',
      'services.web.deploy.update_config.parallelism: must be an integer ≥ 0, got -1',
      'services.web.deploy.update_config.monitor: invalid duration "soon": use a number and a unit (ns, us, ms, s, m, h), e.g. "1m30s"',
      'services.web.deploy.update_config.failure_action: must be one of: pause, continue, rollback; got "explode"',
      'services.web.deploy.update_config.max_failure_ratio: must be a number from 0 to 1 (the share of tasks that may fail), got 2',
      'services.web.deploy.rollback_config.failure_action: must be one of: pause, continue; got "rollback"',
    ]);
  });
});
