/**
 * One service to one ServiceSpec (src/manifest/compose/services.ts): the
 * defaults, image, labels, replicas and scale, deploy.mode with jobs, and
 * placement.
 */
import { describe, it, expect } from 'vitest';
import { read, service, errorsOf } from '../helpers/compose.js';

describe('readCompose: supported keys', () => {
  it('fills ContainerSpec and ServiceSpec defaults', () => {
    const r = read('services:\n  web:\n    image: nginx\n', { baseDir: '/srv/My App!' });
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.stack).toBe('myapp');
    expect(r.services).toEqual([
      {
        name: 'myapp_web',
        shortName: 'web',
        labels: { 'baton.stack': 'myapp' },
        spec: {
          stack: 'myapp',
          shortName: 'web',
          mode: 'replicated',
          replicas: 1,
          container: {
            image: 'nginx',
            env: {},
            labels: {},
            readOnly: false,
            capAdd: [],
            capDrop: [],
            tmpfs: [],
            ulimits: {},
            sysctls: {},
            extraHosts: [],
            init: true,
            stopGracePeriodMs: 10_000,
            mounts: [],
            networkMode: 'bridge',
          },
          ports: [],
          expose: [],
          resources: { reservations: { cpus: 0, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } },
          restartPolicy: { condition: 'any', delayMs: 200, maxDelayMs: 30_000, maxAttempts: 0, windowMs: 0 },
          placement: { constraints: [] },
          x: {},
        },
      },
    ]);
  });

  it('requires an image or a build, and runs the image when a service has both', () => {
    expect(read('services:\n  web:\n    command: [x]\n').errors).toEqual([{ path: 'services.web.image', message: 'image is required, or build to build one', line: 2 }]);
    const r = read('services:\n  web:\n    image: app:1\n    build: .\n');
    expect(r.errors).toEqual([]);
    expect(r.services[0]!.build).toBeUndefined();
    expect(r.services[0]!.spec.container.image).toBe('app:1');
    expect(r.warnings).toEqual([{ path: 'services.web.build', message: '`services.web.build` is ignored: the service has an `image`, which Baton runs (Compose pulls it too, and builds only when the pull fails); set `pull_policy: build` to build it', line: 4 }]);
  });

  it('places a service with a platform on nodes of that OS and architecture, by the names nodes report', () => {
    expect(service('platform: linux/amd64').placement.constraints).toEqual(['node.platform.os == linux', 'node.platform.arch == x86_64']);
    expect(service('platform: linux/arm64/v8\ndeploy:\n  placement:\n    constraints: ["node.labels.zone == a"]').placement.constraints).toEqual(['node.platform.os == linux', 'node.platform.arch == aarch64', 'node.labels.zone == a']);
    expect(service('platform: linux').placement.constraints).toEqual(['node.platform.os == linux']);
    expect(errorsOf('platform: wasi/wasm')).toEqual(['services.web.platform: `services.web.platform` (architecture wasm) is not supported by Baton yet: Baton places a platform on the nodes that report it: amd64, arm64, arm/v7, arm/v6, 386, ppc64le, s390x, riscv64']);
  });

  it('reads container labels and service labels', () => {
    const r = read('services:\n  web:\n    image: nginx\n    labels: [a=1, b]\n    deploy:\n      labels:\n        traefik.enable: "true"\n        n: 5\n', { stack: 's' });
    expect(r.services[0]!.spec.container.labels).toEqual({ a: '1', b: '' });
    expect(r.services[0]!.labels).toEqual({ 'traefik.enable': 'true', n: '5', 'baton.stack': 's' });
  });

  it('reads replicas, scale and their conflict', () => {
    expect(service('deploy:\n  replicas: 3').replicas).toBe(3);
    expect(service('deploy:\n  replicas: "4"').replicas).toBe(4);
    expect(service('scale: 2').replicas).toBe(2);
    expect(service('deploy:\n  mode: replicated\n  replicas: 0').replicas).toBe(0);
    expect(errorsOf('scale: 2\ndeploy:\n  replicas: 3')).toEqual(['services.web.scale: conflicts with deploy.replicas (2 vs 3); set one of them']);
  });

  it('stores placement constraints as written', () => {
    expect(service('deploy:\n  placement:\n    constraints: ["node.role==manager", "node.labels.disk == ssd"]').placement).toEqual({
      constraints: ['node.role==manager', 'node.labels.disk == ssd'],
    });
  });
});

describe('readCompose: validation', () => {
  it('reads jobs (replicated-job, global-job) with completions, parallelism and backoff_limit', () => {
    expect(service('deploy: {mode: replicated-job, replicas: 4}\nx-baton: {parallelism: 2}')).toMatchObject({ mode: 'replicated-job', replicas: 0, job: { completions: 4, parallelism: 2, backoffLimit: 6 } });
    expect(service('deploy: {mode: replicated-job}\nx-baton: {completions: 3, backoff_limit: 0}').job).toEqual({ completions: 3, parallelism: 3, backoffLimit: 0 });
    expect(service('deploy: {mode: global-job}').mode).toBe('global-job');
    expect(errorsOf('x-baton: {completions: 2}')).toEqual(['services.web.x-baton.completions: only a job has completions: use deploy.mode replicated-job or global-job']);
    expect(errorsOf('deploy: {mode: replicated-job}\nx-baton: {parallelism: 0}')).toEqual(['services.web.x-baton.parallelism: must be a whole number from 1 to 100000 (tasks of the job that run at once), got 0']);
  });

  it('reads deploy.mode: global, and refuses replicas beside it', () => {
    const spec = service('deploy:\n  mode: global\n  placement:\n    constraints: ["node.labels.role == edge"]');
    expect(spec).toMatchObject({ mode: 'global', replicas: 0, placement: { constraints: ['node.labels.role == edge'] } });
    expect(errorsOf('deploy:\n  mode: global\n  replicas: 3')).toEqual(['services.web.deploy.replicas: a global service runs one task on every eligible node; remove replicas, or use mode: replicated']);
  });

  it('reads placement: constraints (checked), spread preferences, max replicas per node, and x-baton.strategy', () => {
    const spec = service('deploy:\n  placement:\n    constraints: ["node.labels.zone == a", "node.platform.os == linux"]\n    preferences:\n      - spread: node.labels.zone\n      - spread: node.labels.rack\n    max_replicas_per_node: 2\nx-baton:\n  strategy: binpack');
    expect(spec.placement).toEqual({ constraints: ['node.labels.zone == a', 'node.platform.os == linux'], preferences: ['node.labels.zone', 'node.labels.rack'], maxReplicasPerNode: 2, strategy: 'binpack' });
    expect(service('deploy:\n  placement:\n    max_replicas_per_node: 0').placement).toEqual({ constraints: [] });
    for (const spread of ['node.id', 'node.hostname', 'node.name']) expect(service(`deploy:\n  placement:\n    preferences:\n      - spread: ${spread}`).placement.preferences).toEqual([spread]);
    expect(service('deploy:\n  placement:\n    constraints: ["node.role == manager", "node.role != manager", "node.role==worker"]').placement.constraints).toHaveLength(3);
    expect(errorsOf('deploy:\n  placement:\n    constraints: ["node.role == master"]')).toEqual(['services.web.deploy.placement.constraints[0]: "master": node.role is manager (a node that runs a server: baton up\'s) or worker']);
    expect(errorsOf('deploy:\n  placement:\n    constraints: ["zone=a", "engine.labels.x == y", "node.color == red"]\n    preferences:\n      - spread: engine.labels.zone\n    max_replicas_per_node: -1\nx-baton:\n  strategy: tight')).toEqual([
      'services.web.deploy.placement.constraints[0]: "zone=a" must look like <attribute> == <value> or <attribute> != <value>, e.g. node.labels.zone == a',
      'services.web.deploy.placement.constraints[1]: "engine.labels.x": engine labels are not supported; use node labels (baton node update --label-add)',
      'services.web.deploy.placement.constraints[2]: "node.color" is not a node attribute Baton knows; use one of node.id, node.hostname, node.name, node.role, node.platform.os, node.platform.arch, node.labels.<key>',
      'services.web.deploy.placement.preferences[0].spread: "engine.labels.zone": Baton spreads over node.labels.<key>, node.id, node.hostname or node.name',
      'services.web.deploy.placement.max_replicas_per_node: must be a whole number ≥ 0 (0 means no limit), got -1',
      'services.web.x-baton.strategy: must be spread (fewest tasks, least allocated; the default) or binpack (most allocated first), got "tight"',
    ]);
  });
});
