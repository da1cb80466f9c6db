/**
 * YAML (src/manifest/compose/yamlAst.ts): anchors and merge keys, the line
 * of a key reached through one, and Compose's !reset and !override tags.
 */
import { describe, it, expect } from 'vitest';
import { read } from '../helpers/compose.js';

describe('readCompose: YAML', () => {
  it('resolves anchors and merge keys', () => {
    const r = read(
      [
        'x-defaults: &defaults',
        '  image: base:1',
        '  environment: &env',
        '    A: "1"',
        '  restart: "no"',
        'services:',
        '  one:',
        '    <<: *defaults',
        '  two:',
        '    <<: *defaults',
        '    image: other:2',
        '    environment:',
        '      <<: *env',
        '      B: "2"',
      ].join('\n'),
    );
    expect(r.errors).toEqual([]);
    const [one, two] = r.services.map((s) => s.spec);
    expect(one!.container).toMatchObject({ image: 'base:1', env: { A: '1' } });
    expect(one!.restartPolicy.condition).toBe('none');
    expect(two!.container).toMatchObject({ image: 'other:2', env: { A: '1', B: '2' } });
  });

  it('points a schema error inside merged content at the anchored line', () => {
    const r = read('x-base: &base\n  image: nginx\n  enviroment: {}\nservices:\n  web:\n    <<: *base\n');
    expect(r.errors).toEqual([{ path: 'services.web.enviroment', message: 'unknown key `enviroment`; did you mean `environment`?', line: 3 }]);
  });

  it('gives Compose tags their single-file meaning', () => {
    const r = read('x-base: &base\n  image: nginx\n  command: [a]\nservices:\n  web:\n    <<: *base\n    user: !reset root\n    hostname: !override h\n');
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.services[0]!.spec.container.user).toBeUndefined();
    expect(r.services[0]!.spec.container.hostname).toBe('h');
  });
});
