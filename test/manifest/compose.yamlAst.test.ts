/**
 * YAML (src/manifest/compose/yamlAst.ts): anchors and merge keys, the line
 * of a key reached through one, and Compose's !reset and !override tags.
 */
import { describe, it, expect } from 'vitest';
import { LineCounter, isScalar, parseDocument } from 'yaml';
import { walkAst } from '../../src/manifest/compose/yamlAst.js';
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

describe('walkAst', () => {
  const text = 'x-base: &base\n  ports: &p [80, 443]\nservices:\n  web:\n    <<: *base\n    more: *p\n';
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, merge: true });
  const line = (offset: number | undefined) => (offset === undefined ? undefined : lineCounter.linePos(offset).line);

  it('follows a path through a merge key, a sequence and an alias to the node and its line', () => {
    const merged = walkAst(doc, ['services', 'web', 'ports', 1]);
    expect(merged.complete).toBe(true);
    expect(line(merged.offset)).toBe(2);
    expect(isScalar(merged.node) && merged.node.value).toBe(443);
    const aliased = walkAst(doc, ['services', 'web', 'more', 0]);
    expect(aliased.complete).toBe(true);
    expect(isScalar(aliased.node) && aliased.node.value).toBe(80);
  });

  it('stops at the deepest key that exists, so an issue about a missing key points at its parent', () => {
    const r = walkAst(doc, ['services', 'web', 'image']);
    expect(r.complete).toBe(false);
    expect(r.node).toBeUndefined();
    expect(line(r.offset)).toBe(4);
    expect(walkAst(doc, ['services', 'web', 'more', 5]).complete).toBe(false);
  });
});
