/**
 * The x-baton extension (src/manifest/compose/xBaton.ts): each subkey read,
 * and what is wrong with a bad one.
 */
import { describe, it, expect } from 'vitest';
import { read, service, errorsOf } from '../helpers/compose.js';

describe('readCompose: validation', () => {
  it('ignores x-* extensions but checks x-baton', () => {
    const r = read('x-anything: {a: 1}\nservices:\n  web:\n    image: nginx\n    x-foo: bar\n    deploy:\n      x-note: hi\n');
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(service('x-baton: {}').x).toEqual({});
    expect(errorsOf('x-baton:\n  foo: 1')).toEqual(['services.web.x-baton.foo: unknown x-baton key "foo"']);
    expect(read('x-baton: {}\nservices:\n  web: {image: x}\n').errors).toEqual([
      { path: 'x-baton', message: '`x-baton` belongs under a service (services.<name>.x-baton)', line: 1 },
    ]);
  });

  it('reads x-baton.tolerations and says what is wrong with a bad one', () => {
    expect(service('x-baton:\n  tolerations:\n    - {key: gpu, value: "true", effect: NoSchedule}\n    - {key: maint, operator: Exists}\n    - {operator: Exists}').placement.tolerations).toEqual([
      { key: 'gpu', operator: 'Equal', value: 'true', effect: 'NoSchedule' },
      { key: 'maint', operator: 'Exists' },
      { operator: 'Exists' },
    ]);
    expect(errorsOf('x-baton:\n  tolerations:\n    - {key: gpu, operator: Maybe}\n    - {key: a, effect: Never}\n    - {value: x}\n    - {key: a, operator: Exists, value: x, colour: red}')).toEqual([
      'services.web.x-baton.tolerations[0].operator: must be Equal or Exists, got "Maybe"',
      'services.web.x-baton.tolerations[1].effect: must be NoSchedule, PreferNoSchedule or NoExecute, got "Never"',
      'services.web.x-baton.tolerations[2]: a toleration without a key must use operator Exists (it then tolerates every taint)',
      'services.web.x-baton.tolerations[3].colour: unknown key "colour" (a toleration has key, operator, value, effect)',
      'services.web.x-baton.tolerations[3].value: operator Exists takes no value',
    ]);
  });

  it('reads x-baton affinity and anti_affinity, naming siblings by their short name', () => {
    const r = read('name: shop\nservices:\n  db: {image: x}\n  api:\n    image: x\n    x-baton:\n      affinity: [db]\n      anti_affinity:\n        - {service: api}\n        - {service: other_cache, required: false}\n');
    expect(r.errors).toEqual([]);
    expect(r.services.find((s) => s.name === 'shop_api')!.spec.placement).toMatchObject({
      affinity: [{ service: 'shop_db', required: true }],
      antiAffinity: [{ service: 'shop_api', required: true }, { service: 'other_cache', required: false }],
    });
    expect(errorsOf('x-baton:\n  affinity: db\n  anti_affinity: [{service: a, required: maybe, weight: 2}, 3]')).toEqual([
      'services.web.x-baton.affinity: must be a list of service names, or of {service: NAME, required: true|false}',
      'services.web.x-baton.anti_affinity[0].weight: unknown key "weight" (an anti_affinity entry has service and required)',
      'services.web.x-baton.anti_affinity[0].required: must be true or false',
      'services.web.x-baton.anti_affinity[1]: must be a service name or {service: NAME, required: true|false}',
    ]);
  });

  it('reads x-baton healthcheck and readiness probes over a Compose healthcheck, and says what is wrong with a bad one', () => {
    const c = service('healthcheck:\n  test: ["CMD", "true"]\n  interval: 5s\n  retries: 2\nx-baton:\n  healthcheck: {http: /healthz, port: 8080}\n  readiness: {tcp: 5432, interval: 1s}').container;
    expect(c.healthcheck).toEqual({ test: ['CMD', 'true'], http: { path: '/healthz', port: 8080 }, intervalMs: 5000, timeoutMs: 30_000, retries: 2, startPeriodMs: 0 });
    expect(c.readiness).toEqual({ test: [], tcp: { port: 5432 }, intervalMs: 1000, timeoutMs: 2000, retries: 3, startPeriodMs: 0 });
    expect(service('x-baton:\n  readiness: {test: "test -f /ready", retries: 1}').container.readiness).toMatchObject({ test: ['CMD-SHELL', 'test -f /ready'], retries: 1 });
    expect(errorsOf('x-baton:\n  healthcheck: {http: healthz, port: 99999}\n  readiness: {tcp: 80, test: [CMD, x], every: 1s}\n  restart: {backoff: {initial: fast, factor: 0.5, max: 1s}}')).toEqual([
      'services.web.x-baton.healthcheck.http: must be a path starting with "/", got "healthz"',
      'services.web.x-baton.readiness.every: unknown key "every" (x-baton.readiness has http and port, tcp, test, interval, timeout, retries, start_period)',
      'services.web.x-baton.readiness: takes one of http, tcp or test',
      'services.web.x-baton.restart.backoff.initial: invalid duration "fast": use a number and a unit (ns, us, ms, s, m, h), e.g. "1m30s"',
      'services.web.x-baton.restart.backoff.factor: must be a number from 1 to 10 (each crash multiplies the delay by it), got 0.5',
    ]);
    expect(errorsOf('x-baton:\n  healthcheck: {port: 80}')).toEqual([
      'services.web.x-baton.healthcheck.port: port goes with http (for tcp, write tcp: PORT)',
      'services.web.x-baton.healthcheck: says what to probe: {http: /healthz, port: 8080} or {tcp: 5432} or {test: [CMD, ...]}',
    ]);
  });

  it('reads x-baton.lb with its defaults, and says what is wrong with a bad one', () => {
    expect(service('x-baton:\n  lb: {algorithm: least_conn, proxy_protocol: v1, hold_timeout: 5s}').x.lb).toEqual({ algorithm: 'least_conn', proxyProtocol: 'v1', holdTimeoutMs: 5000 });
    expect(service('x-baton:\n  lb: {proxy_protocol: off}').x.lb).toEqual({ algorithm: 'round_robin', proxyProtocol: 'off', holdTimeoutMs: 30_000 });
    expect(errorsOf('x-baton:\n  lb: {algorithm: random, proxy_protocol: v3, hold_timeout: soon, sticky: true}')).toEqual([
      'services.web.x-baton.lb.algorithm: must be round_robin (the default) or least_conn, got "random"',
      'services.web.x-baton.lb.proxy_protocol: must be off (the default), v1 or v2, got "v3"',
      'services.web.x-baton.lb.hold_timeout: invalid duration "soon": use a number and a unit (ns, us, ms, s, m, h), e.g. "1m30s"',
      'services.web.x-baton.lb.sticky: unknown key "sticky" (x-baton.lb has algorithm, proxy_protocol, hold_timeout)',
    ]);
  });

  it('reads x-baton.canary as a count or {count, auto_promote}, at most one per replica', () => {
    expect(service('deploy: {replicas: 3}\nx-baton:\n  canary: 1').canary).toEqual({ count: 1 });
    expect(service('deploy: {replicas: 3}\nx-baton:\n  canary: {count: 2, auto_promote: 1m}').canary).toEqual({ count: 2, autoPromoteMs: 60_000 });
    expect(errorsOf('deploy: {replicas: 1}\nx-baton:\n  canary: 2')).toEqual(['services.web.x-baton.canary: 2 canaries for 1 replica(s): at most one per replica']);
    expect(errorsOf('x-baton:\n  canary: {count: 0, auto: 1}')).toEqual([
      'services.web.x-baton.canary.count: must be a number of canary tasks (1 or more), or {count, auto_promote: 5m}; got {"count":0,"auto":1}',
    ]);
  });

  it('reads x-baton.min_ready into the update and rollback settings (Kubernetes minReadySeconds), over update_config', () => {
    const s = service('deploy:\n  update_config: {parallelism: 2, monitor: 3s}\nx-baton:\n  min_ready: 10s');
    expect(s.update).toMatchObject({ parallelism: 2, monitorMs: 3000, minReadyMs: 10_000 });
    expect(s.rollbackConfig).toMatchObject({ minReadyMs: 10_000 });
    expect(service('x-baton:\n  min_ready: 0s').update).toBeUndefined();
    expect(errorsOf('x-baton:\n  min_ready: soon')[0]).toMatch(/^services\.web\.x-baton\.min_ready: .*how long a new task must stay ready/);
  });

  it('reads x-baton.metrics {port, path} (where its tasks serve Prometheus metrics), and says what is wrong', () => {
    expect(service('x-baton:\n  metrics: {port: 9100}').x.metrics).toEqual({ port: 9100 });
    expect(service('x-baton:\n  metrics: {port: 9100, path: /stats}').x.metrics).toEqual({ port: 9100, path: '/stats' });
    expect(errorsOf('x-baton:\n  metrics: {port: 0, scheme: https}')).toEqual([
      'services.web.x-baton.metrics.scheme: unknown key "scheme" (x-baton.metrics has port, path)',
      'services.web.x-baton.metrics.port: must be a container port from 1 to 65535, got 0',
    ]);
    expect(errorsOf('x-baton:\n  metrics: {port: 80, path: stats}')).toEqual(['services.web.x-baton.metrics.path: must be a URL path starting with "/", got "stats"']);
  });

  it('reads x-baton.schedule (cron job): 5 or 6 fields, time zone, concurrency, history; and says what is wrong', () => {
    expect(service('x-baton:\n  schedule: "*/5 * * * *"')).toMatchObject({ mode: 'replicated-job', schedule: { cron: '*/5 * * * *', concurrency: 'allow', successfulHistory: 3, failedHistory: 1 } });
    expect(service('x-baton:\n  schedule: {cron: "*/10 * * * * *", time_zone: Europe/Paris, concurrency: forbid, successful_history: 1, failed_history: 0}').schedule).toEqual({ cron: '*/10 * * * * *', timeZone: 'Europe/Paris', concurrency: 'forbid', successfulHistory: 1, failedHistory: 0 });
    expect(errorsOf('x-baton:\n  schedule: "61 * * * *"')).toEqual(['services.web.x-baton.schedule: "61 * * * *": Invalid value for minute: 61']);
    expect(errorsOf('x-baton:\n  schedule: "* * *"')).toEqual(['services.web.x-baton.schedule: must have 5 fields (minute hour day month weekday) or 6 (seconds first), got 3: "* * *"']);
    expect(errorsOf('x-baton:\n  schedule: {cron: "* * * * *", time_zone: Mars/Olympus, concurrency: sometimes}')).toEqual([
      'services.web.x-baton.schedule.time_zone: unknown time zone "Mars/Olympus" (an IANA name such as Europe/Paris)',
      'services.web.x-baton.schedule.concurrency: must be allow, forbid or replace, got "sometimes"',
    ]);
    expect(errorsOf('deploy: {mode: global}\nx-baton:\n  schedule: "* * * * *"')).toEqual(['services.web.x-baton.schedule: a schedule runs a job: use deploy.mode replicated-job or global-job (or leave mode out)']);
  });

  it('reads x-baton.autoscale: targets, windows, replicas as the starting count within min and max; says what is wrong', () => {
    const spec = service('ports: ["8080:80"]\ndeploy: {replicas: 1}\nx-baton:\n  autoscale: {min: 2, max: 8, cpu: 60%, rps: 100, scale_down: {stabilization: 60s, step: 1}}');
    expect(spec.autoscale).toEqual({ min: 2, max: 8, cpu: 0.6, rps: 100, scaleUp: { stabilizationMs: 0 }, scaleDown: { stabilizationMs: 60_000, step: 1 } });
    expect(spec.replicas).toBe(2);
    expect(errorsOf('x-baton:\n  autoscale: {min: 0, max: 3, cpu: 60%}')).toEqual(['services.web.x-baton.autoscale.min: scaling to zero (min: 0) needs a traffic target, rps or concurrency: CPU and memory never ask for zero']);
    expect(errorsOf('x-baton:\n  autoscale: {max: 3, rps: 10}')).toEqual(['services.web.x-baton.autoscale: rps and concurrency are measured by the routing mesh: the service needs published ports']);
    expect(errorsOf('x-baton:\n  autoscale: {min: 4, max: 2, cpu: lots, burst: 1}')).toEqual([
      'services.web.x-baton.autoscale.burst: unknown key "burst" (x-baton.autoscale has min, max, cpu, memory, rps, concurrency, scale_up, scale_down)',
      'services.web.x-baton.autoscale.min: min (4) must not be above max (2)',
      'services.web.x-baton.autoscale.cpu: must be a target utilisation such as 60%, got "lots"',
    ]);
  });

  it('reads x-baton.priority', () => {
    expect(service('x-baton:\n  priority: 100').placement.priority).toBe(100);
    expect(service('x-baton:\n  priority: 0').placement.priority).toBeUndefined();
    expect(errorsOf('x-baton:\n  priority: high')).toEqual(['services.web.x-baton.priority: must be a whole number from -1000000 to 1000000 (higher runs first and may preempt lower), got "high"']);
  });
});
