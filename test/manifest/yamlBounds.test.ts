/**
 * The YAML bounds both readers share (manifest/yamlBounds.ts): an alias
 * bomb, flow and block nesting past the depth, and an oversized file are
 * each refused with a clear error, in bounded memory; brackets inside
 * strings and comments are not nesting.
 */
import { describe, expect, it } from 'vitest';
import { readCompose } from '../../src/manifest/compose/index.js';
import { readKubernetes } from '../../src/manifest/kubernetes/index.js';
import { MAX_MANIFEST_BYTES, MAX_YAML_DEPTH, textProblem } from '../../src/manifest/yamlBounds.js';

const compose = (text: string) => readCompose(text, { fileName: 'f.yaml', baseDir: '/tmp', env: {} });
const kube = (text: string) => readKubernetes([{ name: 'k.yaml', text }]);

/** A "billion laughs": nine levels of nine aliases, 9^9 leaves if expanded. */
const BOMB = ['a: &a [x,x,x,x,x,x,x,x,x]', ...'bcdefghi'.split('').map((l, i) => `${l}: &${l} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(',')}]`)].join('\n') + '\n';

describe('YAML bounds', () => {
  it('refuses an alias bomb in both readers, in bounded memory', () => {
    const before = process.memoryUsage().heapUsed;
    const c = compose(`${BOMB}services:\n  web: {image: x, command: *i}\n`);
    const k = kube(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n${BOMB}data: {k: *i}\n`);
    expect(c.errors).toEqual([{ path: 'f.yaml', message: expect.stringMatching(/^YAML: its aliases expand past 1000 nodes \(an alias bomb/) }]);
    expect(k.errors).toEqual([{ path: 'documents[0]', message: expect.stringMatching(/^YAML: its aliases expand past 1000 nodes/) }]);
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 2 ** 20);
  });

  it('refuses flow nesting past the depth before parsing, and block nesting after, with the line', () => {
    const flow = `services:\n  web:\n    image: x\n    labels: ${'['.repeat(5000)}${']'.repeat(5000)}\n`;
    expect(compose(flow).errors).toEqual([{ path: 'f.yaml', message: `the file nests mappings and sequences deeper than ${MAX_YAML_DEPTH} levels`, line: 4 }]);
    expect(kube(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: ${'{a: '.repeat(100)}1${'}'.repeat(100)}\n`).errors).toEqual([{ path: 'documents', message: `the file nests mappings and sequences deeper than ${MAX_YAML_DEPTH} levels`, line: 4 }]);
    const block = 'services:\n  web:\n    image: x\n    x-deep:\n' + Array.from({ length: 80 }, (_, i) => `${'  '.repeat(i + 3)}k${i}:`).join('\n') + ' 1\n';
    expect(compose(block).errors).toEqual([{ path: 'f.yaml', message: `the file nests mappings and sequences deeper than ${MAX_YAML_DEPTH} levels` }]);
  });

  it('counts no bracket inside a string or a comment, and refuses a file past the size', () => {
    expect(textProblem(`a: "${'['.repeat(200)}"\nb: '${'{'.repeat(200)}'\n# ${'['.repeat(200)}\n`)).toBeUndefined();
    expect(textProblem('x'.repeat(MAX_MANIFEST_BYTES + 1))).toEqual({ message: 'the file is larger than 16 MiB' });
  });
});
