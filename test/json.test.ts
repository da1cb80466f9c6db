/** withProps copies as an object spread does, and its copies share one hidden class where spread copies did not. */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { withProps } from '../src/base/json.js';

describe('withProps', () => {
  it('is { ...o, ...extra }: own enumerable properties, extra last, in order', () => {
    const proto = { inherited: 1 };
    const o = Object.assign(Object.create(proto) as Record<string, unknown>, { a: 1, b: { c: 2 }, d: undefined });
    const r = withProps(o, { b: 3, e: 4 });
    expect(r).toEqual({ ...o, ...{ b: 3, e: 4 } });
    expect(Object.keys(r)).toEqual(['a', 'b', 'd', 'e']);
    expect('inherited' in r).toBe(false);
    expect(withProps(o, {}).b).toBe(o.b);
  });

  it('keeps a "__proto__" key from JSON as a property, never as the prototype', () => {
    const parsed = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as Record<string, unknown>;
    const r = withProps(parsed, { b: 2 }) as Record<string, unknown>;
    expect(Object.getPrototypeOf(r)).toBe(Object.prototype);
    expect((r as { polluted?: boolean }).polluted).toBeUndefined();
    expect(Object.hasOwn(r, '__proto__')).toBe(true);
    expect(JSON.stringify(r)).toBe(JSON.stringify({ ...parsed, b: 2 }));
  });

  it('gives copies of same-shaped objects one hidden class (V8), as the watch cache makes them', () => {
    // The registry's path: a stored object without resourceVersion, then a copy with it, at a site that sees many shapes.
    const script = `const { withProps } = await import(${JSON.stringify(new URL('../dist/src/base/json.js', import.meta.url).href)});
const stored = (o) => { const { resourceVersion: _rv, ...meta } = o.metadata; return { ...o, metadata: meta }; };
const build = (i, k) => ({ kind: 'K' + k, metadata: { name: 't' + i, uid: 'u' + i, resourceVersion: '0', generation: 1, labels: {}, ownerRefs: [], creationTimestamp: 'x', statusVersion: '0' }, spec: {}, status: {} });
const copied = [];
for (let i = 0; i < 2000; i++) copied.push(withProps(stored(build(i, i % 7)).metadata, { resourceVersion: String(i) }));
console.log(JSON.stringify({ copied: %HaveSameMap(copied[1000], copied[1700]) }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script]).toString()) as { copied: boolean };
    expect(out.copied).toBe(true);
  });
});
