/**
 * Schema validation (src/manifest/compose/schema.ts): the Compose
 * Specification's errors as one message per path, with a "did you mean".
 */
import { describe, it, expect } from 'vitest';
import { read } from '../helpers/compose.js';

describe('readCompose: validation', () => {
  it('names an unknown key, suggests the nearest one and gives its line', () => {
    const r = read('services:\n  web:\n    image: nginx\n    enviroment:\n      A: 1\n    deploy:\n      resources:\n        limits:\n          cpu: 1\n');
    expect(r.services).toEqual([]);
    expect(r.errors).toEqual([
      { path: 'services.web.enviroment', message: 'unknown key `enviroment`; did you mean `environment`?', line: 4 },
      { path: 'services.web.deploy.resources.limits.cpu', message: 'unknown key `cpu`; did you mean `cpus`?', line: 9 },
    ]);
  });

  it('suggests nothing when no key is close', () => {
    expect(read('services:\n  web:\n    image: nginx\n    zzzzzzzz: 1\n').errors).toEqual([{ path: 'services.web.zzzzzzzz', message: 'unknown key `zzzzzzzz`', line: 4 }]);
    expect(read('servics:\n  web:\n    image: nginx\n').errors[0]).toEqual({ path: 'servics', message: 'unknown key `servics`; did you mean `services`?', line: 1 });
  });

  it('folds oneOf cascades into one message per path, and collects all errors', () => {
    const r = read(
      'services:\n  web:\n    image: nginx\n    environment: 5\n    ports: [true]\n    command: {a: 1}\n    healthcheck:\n      test: [1]\n    volumes:\n      - {source: /a}\n',
    );
    expect(r.errors).toEqual([
      { path: 'services.web.environment', message: 'must be a mapping or a list', line: 4 },
      { path: 'services.web.ports[0]', message: 'must be a number, a string or a mapping', line: 5 },
      { path: 'services.web.command', message: 'must be null, a string or a list', line: 6 },
      { path: 'services.web.healthcheck.test[0]', message: 'must be a string', line: 8 },
      { path: 'services.web.volumes[0]', message: '`type` is required', line: 10 },
    ]);
  });

  it('validates service names', () => {
    expect(read('services:\n  "my app": {image: x}\n  .hidden: {image: x}\n').errors).toEqual([
      { path: 'services["my app"]', message: 'invalid name `my app`: must match ^[a-zA-Z0-9._-]+$', line: 2 },
      { path: 'services[".hidden"]', message: 'invalid service name ".hidden": use letters, digits, "_", "." and "-", starting with a letter or digit', line: 3 },
    ]);
  });
});

describe('readCompose: hostile keys', () => {
  it('survives list items with a toString key (which make ajv throw)', () => {
    const r = read('services:\n  web:\n    image: nginx\n    ports:\n      - {target: 80}\n      - {target: 81, toString: []}\n');
    expect(r.services).toEqual([]);
    expect(r.errors).toEqual([{ path: 'services.web.ports[1].toString', message: 'unknown key `toString`', line: 6 }]);
  });
});
