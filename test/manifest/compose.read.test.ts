/**
 * readCompose's pipeline (src/manifest/compose/read.ts): interpolation of
 * the whole file, the stack name, YAML errors, one document, the Kubernetes
 * refusal, and no internal error whatever the input.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import type { ComposeResult } from '../../src/manifest/compose/index.js';
import { read, service } from '../helpers/compose.js';

describe('interpolation', () => {
  it('reads the interpolation env in a Compose file and reports ${VAR:?msg} with its path and line', () => {
    const r = read('services:\n  web:\n    image: "nginx:${TAG:?set TAG first}"\n');
    expect(r.errors).toEqual([{ path: 'services.web.image', message: 'required variable TAG is missing a value: set TAG first', line: 3 }]);
    expect(r.services).toEqual([]);
    const ok = read('services:\n  web:\n    image: "nginx:${TAG:?set TAG first}"\n', { env: { TAG: '1.27' } });
    expect(ok.services[0]!.spec.container.image).toBe('nginx:1.27');
  });

  it('turns $$ into a literal $ and leaves the command un-expanded', () => {
    const spec = service('command: echo $$HOME "$${USER}"\nenvironment:\n  PRICE: "$$5"');
    expect(spec.container.command).toEqual(['echo', '$HOME', '${USER}']);
    expect(spec.container.env).toEqual({ PRICE: '$5' });
  });

  it('warns about unset variables with the key path', () => {
    const r = read('services:\n  web:\n    image: nginx\n    environment:\n      A: ${MISSING}\n');
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([{ path: 'services.web.environment.A', message: 'variable "MISSING" is not set; substituting an empty string', line: 5 }]);
  });
});

describe('readCompose: supported keys', () => {
  it('names the stack from --stack, then `name`, then the directory', () => {
    expect(read('name: shop\nservices:\n  web:\n    image: nginx\n').services[0]!.name).toBe('shop_web');
    expect(read('name: shop\nservices:\n  web:\n    image: nginx\n', { stack: 'prod' }).services[0]!.name).toBe('prod_web');
    expect(read('services:\n  web:\n    image: nginx\n', { stack: 'Bad Name' }).errors).toEqual([
      { path: '--stack', message: 'invalid stack name "Bad Name": use lowercase letters, digits, "_" and "-", starting with a letter or digit' },
    ]);
    expect(read('name: Shop\nservices:\n  web:\n    image: nginx\n').errors[0]).toMatchObject({ path: 'name', line: 1 });
  });
});

describe('readCompose: YAML', () => {
  it('reports YAML syntax errors with their line', () => {
    const r = read('services:\n  web:\n    image: nginx\n    ports: [80\n');
    expect(r.services).toEqual([]);
    expect(r.errors.length).toBeGreaterThan(0);
    expect(r.errors[0]).toMatchObject({ path: 'compose.yaml' });
    expect(r.errors[0]!.message).toMatch(/^YAML syntax error: /);
    expect(r.errors[0]!.line).toBeGreaterThanOrEqual(4);
  });

  it('refuses duplicate keys', () => {
    expect(read('services:\n  web:\n    image: a\n    image: b\n').errors).toEqual([{ path: 'compose.yaml', message: 'YAML syntax error: Map keys must be unique', line: 4 }]);
  });

  it('refuses an empty file and a multi-document Compose file', () => {
    expect(read('# nothing\n').errors).toEqual([{ path: 'compose.yaml', message: 'the file is empty: a Compose file needs a `services` mapping' }]);
    expect(read('services:\n  a: {image: x}\n---\nservices:\n  b: {image: y}\n').errors).toEqual([
      { path: 'documents[1]', message: 'a Compose file holds one YAML document; this file has 2', line: 4 },
    ]);
  });
});

describe('readCompose: Kubernetes', () => {
  it('refuses each Kubernetes document among Compose with its kind and name (apply gives manifests to the Kubernetes reader)', () => {
    const r = read('apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\n# svc\napiVersion: v1\nkind: Service\nmetadata:\n  name: web-svc\n---\n');
    expect(r.services).toEqual([]);
    expect(r.errors).toEqual([
      { path: 'documents[0]', message: 'a Kubernetes Deployment web among Compose: a file is either a Compose file or Kubernetes manifests', line: 1 },
      { path: 'documents[1]', message: 'a Kubernetes Service web-svc among Compose: a file is either a Compose file or Kubernetes manifests', line: 7 },
    ]);
  });

  it('names objects without metadata by kind alone', () => {
    expect(read('apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n').errors).toEqual([
      { path: 'documents[0]', message: 'a Kubernetes Kustomization among Compose: a file is either a Compose file or Kubernetes manifests', line: 1 },
    ]);
  });
});

describe('readCompose: robustness', () => {
  const serviceKeys = [
    'image', 'command', 'entrypoint', 'environment', 'env_file', 'labels', 'ports', 'expose', 'network_mode', 'deploy', 'scale',
    'volumes', 'user', 'working_dir', 'read_only', 'cap_add', 'tmpfs', 'ulimits', 'sysctls', 'extra_hosts', 'hostname', 'init',
    'stop_signal', 'stop_grace_period', 'healthcheck', 'pull_policy', 'restart', 'cpus', 'mem_limit', 'x-baton', 'secrets', 'build',
    'networks', 'links',
  ];
  const noInternalError = (r: ComposeResult) => {
    for (const e of r.errors) expect(e.message).not.toMatch(/^internal error/);
    for (const e of r.errors) expect(e.path).toBeTruthy();
    if (r.errors.length > 0) expect(r.services).toEqual([]);
  };

  it('survives arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => noInternalError(read(text))),
      { numRuns: 300 },
    );
  });

  it('survives arbitrary values under known keys', () => {
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.constantFrom('80:80', '1.2.3.4:1-2:3-4/udp', '${X:?}', '$$', 'a:/b:ro', '~/x:/y', '1m', '1g', 'on-failure:2', 'service:x'),
    );
    const deployValue = fc.dictionary(fc.constantFrom('mode', 'replicas', 'resources', 'restart_policy', 'placement', 'labels', 'endpoint_mode'), fc.jsonValue({ maxDepth: 3 }));
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...serviceKeys), value), deployValue, (svc, deploy) => {
        noInternalError(read(JSON.stringify({ services: { web: { ...svc, deploy } }, volumes: { data: null } })));
        noInternalError(read(JSON.stringify({ services: { web: { ...svc, deploy } } }), { ignoreUnsupported: true }));
      }),
      { numRuns: 400 },
    );
  });
});

describe('readCompose: hostile keys', () => {
  it('treats prototype names as ordinary (unknown) keys', () => {
    const r = read('constructor: 1\nservices:\n  web:\n    image: nginx\n    toString: 1\n    x-baton:\n      toString: 1\n      __proto__: 2\n    deploy:\n      mode: {toString: false}\n');
    expect(r.services).toEqual([]);
    expect(r.errors.map((e) => e.path)).toEqual([
      'constructor',
      'services.web.toString',
      'services.web.x-baton.toString',
      'services.web.x-baton.__proto__',
      'services.web.deploy.mode',
    ]);
    for (const e of r.errors) expect(e.message).not.toMatch(/^internal error/);
  });
});

describe('readCompose: profiles', () => {
  const file = 'services:\n  web:\n    image: nginx\n  seed:\n    image: seed\n    profiles: [seed]\n  debug:\n    image: busybox\n    profiles: [debug, tools]\n';
  it('leaves out services whose profiles are not enabled, saying so, as docker compose up does', () => {
    const r = read(file);
    expect(r.errors).toEqual([]);
    expect(r.services.map((s) => s.shortName)).toEqual(['web']);
    expect(r.warnings.map((w) => `${w.path}: ${w.message}`)).toEqual(['services.seed.profiles: services.seed is not deployed: none of its profiles (seed) is enabled (--profile)', 'services.debug.profiles: services.debug is not deployed: none of its profiles (debug, tools) is enabled (--profile)']);
    expect(read(file, { profiles: ['tools'] }).services.map((s) => s.shortName)).toEqual(['web', 'debug']);
    expect(read(file, { profiles: ['*'] }).services).toHaveLength(3);
  });

  it('refuses a service that needs one left out', () => {
    const r = read('services:\n  web:\n    image: nginx\n    depends_on: [seed]\n  seed:\n    image: seed\n    profiles: [seed]\n');
    expect(r.errors).toEqual([{ path: 'services.web.depends_on[0]', message: 'depends on seed, whose profiles are not enabled: enable one with --profile', line: 4 }]);
    expect(read('services:\n  web:\n    image: nginx\n    depends_on: [seed]\n  seed:\n    image: seed\n    profiles: [seed]\n', { profiles: ['seed'] }).errors).toEqual([]);
  });
});
