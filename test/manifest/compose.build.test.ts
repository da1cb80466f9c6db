/**
 * `build:` in the Compose reader (src/manifest/compose/build.ts): the short
 * and long forms, which service is built, the keys refused or warned
 * about, and the image's repository.
 */
import { describe, it, expect } from 'vitest';
import { read } from '../helpers/compose.js';

const one = (body: string, env: Record<string, string> = {}) => read(`services:\n  web:\n${body.replace(/^/gm, '    ')}\n`, { env, stack: 'shop' });

describe('readCompose: build', () => {
  it('reads the short form as the context, relative to the file', () => {
    const r = one('build: ./web');
    expect(r.errors).toEqual([]);
    expect(r.services[0]!.build).toEqual({ contextDir: '/srv/app/web', dockerfile: { path: 'Dockerfile' }, args: {}, labels: {}, keyPath: 'services.web.build', line: 3 });
    // The CLI tags it with the build's hash once the context is packed.
    expect(r.services[0]!.spec.container.image).toBe('shop_web');
  });

  it('reads the long form', () => {
    const r = one('build:\n  context: ..\n  dockerfile: docker/Dockerfile.prod\n  args: [VERSION=2, FROM_ENV, ABSENT]\n  labels: {team: web}\n  target: runtime\n  network: host\n  no_cache: true\n  pull: "true"\n  extra_hosts: ["db:127.0.0.9"]', { FROM_ENV: 'yes' });
    expect(r.errors).toEqual([]);
    expect(r.services[0]!.build).toMatchObject({
      contextDir: '/srv',
      dockerfile: { path: 'docker/Dockerfile.prod' },
      // `- NAME` takes its value from the environment; one absent there keeps the Dockerfile's default.
      args: { VERSION: '2', FROM_ENV: 'yes' },
      labels: { team: 'web' },
      target: 'runtime',
      network: 'host',
      noCache: true,
      pull: true,
      extraHosts: ['db:127.0.0.9'],
    });
  });

  it('takes an inline Dockerfile, and refuses it beside dockerfile', () => {
    expect(one('build:\n  context: .\n  dockerfile_inline: |\n    FROM busybox\n').services[0]!.build!.dockerfile).toEqual({ inline: 'FROM busybox\n' });
    expect(one('build:\n  dockerfile: D\n  dockerfile_inline: FROM x').errors.map((e) => e.path)).toEqual(['services.web.build.dockerfile_inline']);
  });

  it('builds a service with an image only under pull_policy build', () => {
    const r = one('image: registry.example/web:1\nbuild: .\npull_policy: build');
    expect(r.errors).toEqual([]);
    expect(r.services[0]!.build?.contextDir).toBe('/srv/app');
    expect(r.services[0]!.spec.container.image).toBe('shop_web');
    expect(r.services[0]!.spec.container.pullPolicy).toBeUndefined();
  });

  it('refuses what no node can build, naming the key and line', () => {
    expect(one('build: https://github.com/docker/app.git#main').errors).toEqual([
      { path: 'services.web.build', message: 'a remote build context (https://github.com/docker/app.git#main) is not supported: clone it and give its directory', line: 3 },
    ]);
    expect(one('build:\n  context: .\n  network: backend').errors[0]).toMatchObject({ path: 'services.web.build.network', line: 5 });
    expect(one('build:\n  context: .\n  args: {"1BAD": x}').errors[0]!.path).toBe('services.web.build.args.1BAD');
    const ssh = one('build:\n  context: .\n  ssh: [default]').errors[0]!;
    expect(ssh.path).toBe('services.web.build.ssh');
    expect(ssh.message).toMatch(/BuildKit/);
    expect(one('build:\n  context: .\n  privileged: true').errors[0]!.message).toMatch(/every capability/);
  });

  it('only warns about keys that change nothing that runs', () => {
    const r = one('build:\n  context: .\n  tags: [x:1]\n  cache_from: [x:0]\n  platforms: [linux/amd64]');
    expect(r.errors).toEqual([]);
    expect(r.warnings.map((w) => w.path)).toEqual(['services.web.build.tags', 'services.web.build.cache_from', 'services.web.build.platforms']);
  });
});
