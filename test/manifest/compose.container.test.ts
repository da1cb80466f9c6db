/**
 * The container settings (src/manifest/compose/container.ts and the plain
 * copies in services.ts): environment over env_file, ulimits, extra_hosts,
 * healthcheck, pull_policy and the rest.
 */
import { describe, it, expect } from 'vitest';
import type { ServiceSpec } from '../../src/api/types.js';
import { service, errorsOf } from '../helpers/compose.js';

describe('readCompose: supported keys', () => {
  it.each([
    ['environment:\n  A: "1"\n  B: 2\n  C: true\n  D: ""', {}, { A: '1', B: '2', C: 'true', D: '' }],
    ['environment:\n  - A=1\n  - B=x=y\n  - C=', {}, { A: '1', B: 'x=y', C: '' }],
    ['environment:\n  - FROM_ENV\n  - ABSENT', { FROM_ENV: 'e' }, { FROM_ENV: 'e' }],
    ['environment:\n  FROM_ENV:\n  ABSENT:', { FROM_ENV: 'e' }, { FROM_ENV: 'e' }],
  ])('environment %#', (body, env, expected) => {
    expect(service(body, { env }).container.env).toEqual(expected);
  });

  it('reads env_file relative to baseDir, in order, under environment', () => {
    const files: Record<string, string> = {
      '/srv/app/a.env': 'A=from-a\nB=from-a\nREF=${HOST_VAR}',
      '/srv/app/conf/b.env': 'B=from-b\nC=from-b',
    };
    const readFile = (p: string) => {
      if (p in files) return files[p]!;
      throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    };
    const spec = service(
      'env_file:\n  - a.env\n  - path: ./conf/b.env\n  - path: missing.env\n    required: false\nenvironment:\n  C: from-environment',
      { readFile, env: { HOST_VAR: 'h' } },
    );
    expect(spec.container.env).toEqual({ A: 'from-a', B: 'from-b', C: 'from-environment', REF: 'h' });
    expect(service('env_file: a.env', { readFile }).container.env).toMatchObject({ A: 'from-a' });
    expect(errorsOf('env_file: nope.env', { readFile })).toEqual(['services.web.env_file: env file /srv/app/nope.env not found']);
    expect(errorsOf('env_file: bad.env', { readFile: () => 'NOT VALID' })).toEqual([
      'services.web.env_file: env file /srv/app/bad.env: line 1: expected "=" after NOT',
    ]);
  });

  it.each<[string, Partial<ServiceSpec['container']>]>([
    ['user: "1000:1000"', { user: '1000:1000' }],
    ['working_dir: /app', { workingDir: '/app' }],
    ['read_only: true', { readOnly: true }],
    ['read_only: "true"', { readOnly: true }],
    ['cap_add: [NET_ADMIN]\ncap_drop: [ALL]', { capAdd: ['NET_ADMIN'], capDrop: ['ALL'] }],
    ['tmpfs: /run', { tmpfs: ['/run'] }],
    ['tmpfs: [/run, "/tmp:size=64m"]', { tmpfs: ['/run', '/tmp:size=64m'] }],
    ['ulimits:\n  nproc: 65535\n  nofile: {soft: 20000, hard: 40000}', { ulimits: { nproc: { soft: 65535, hard: 65535 }, nofile: { soft: 20000, hard: 40000 } } }],
    ['sysctls:\n  net.core.somaxconn: 1024', { sysctls: { 'net.core.somaxconn': '1024' } }],
    ['sysctls: ["net.ipv4.ip_forward=1"]', { sysctls: { 'net.ipv4.ip_forward': '1' } }],
    ['extra_hosts: ["a:1.2.3.4", "b=5.6.7.8", "v6:::1"]', { extraHosts: ['a:1.2.3.4', 'b:5.6.7.8', 'v6:::1'] }],
    ['extra_hosts:\n  a: 1.2.3.4\n  b: [5.6.7.8, "::1"]', { extraHosts: ['a:1.2.3.4', 'b:5.6.7.8', 'b:::1'] }],
    ['hostname: web1', { hostname: 'web1' }],
    ['init: false', { init: false }],
    ['stop_signal: SIGINT', { stopSignal: 'SIGINT' }],
    ['stop_grace_period: 1m30s', { stopGracePeriodMs: 90_000 }],
    ['pull_policy: always', { pullPolicy: 'always' }],
    ['pull_policy: missing', { pullPolicy: 'missing' }],
    ['pull_policy: if_not_present', { pullPolicy: 'missing' }],
    ['pull_policy: never', { pullPolicy: 'never' }],
  ])('%s', (body, expected) => {
    expect(service(body).container).toMatchObject(expected);
  });

  it('refuses pull_policy build without a build, and bad values', () => {
    expect(errorsOf('pull_policy: build')).toEqual(['services.web.pull_policy: pull_policy "build" needs a build section']);
    expect(errorsOf('ulimits:\n  nofile: {soft: 2, hard: 1}')).toEqual(['services.web.ulimits.nofile: soft limit 2 exceeds hard limit 1']);
    expect(errorsOf('stop_grace_period: "10"')).toEqual(['services.web.stop_grace_period: invalid duration "10": missing unit (for example "10s")']);
    expect(errorsOf('stop_grace_period: 10')).toEqual(['services.web.stop_grace_period: must be a string']);
  });

  it.each<[string, ServiceSpec['container']['healthcheck']]>([
    ['healthcheck:\n  test: curl -f http://localhost', { test: ['CMD-SHELL', 'curl -f http://localhost'], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 }],
    [
      'healthcheck:\n  test: ["CMD", "pg_isready"]\n  interval: 5s\n  timeout: 2s\n  retries: 5\n  start_period: 1m\n  start_interval: 1s',
      { test: ['CMD', 'pg_isready'], intervalMs: 5000, timeoutMs: 2000, retries: 5, startPeriodMs: 60_000, startIntervalMs: 1000 },
    ],
    ['healthcheck:\n  disable: true', { test: ['NONE'], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 }],
    ['healthcheck:\n  interval: 10s', { test: [], intervalMs: 10_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 }],
  ])('%s', (body, hc) => {
    expect(service(body).container.healthcheck).toEqual(hc);
  });

  it('refuses a healthcheck list without NONE/CMD/CMD-SHELL', () => {
    expect(errorsOf('healthcheck:\n  test: ["curl", "x"]')).toEqual([
      'services.web.healthcheck.test[0]: a test list starts with NONE, CMD or CMD-SHELL, got "curl" (use a string for a shell command)',
    ]);
  });
});
