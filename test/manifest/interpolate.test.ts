/**
 * Interpolation (src/manifest/interpolate.ts): `${VAR}` and its forms in a
 * string, and in every value (never a key) of a parsed tree.
 */
import { describe, it, expect } from 'vitest';
import { interpolateString, interpolateTree } from '../../src/manifest/interpolate.js';

describe('interpolation', () => {
  const env: Record<string, string> = { SET: 'v', EMPTY: '' };
  const lookup = (n: string) => env[n];

  it.each([
    ['$SET', 'v'],
    ['${SET}', 'v'],
    ['a-${SET}-b', 'a-v-b'],
    ['${UNSET:-d}', 'd'],
    ['${EMPTY:-d}', 'd'],
    ['${EMPTY-d}', ''],
    ['${UNSET-d}', 'd'],
    ['${SET:-d}', 'v'],
    ['${SET:+alt}', 'alt'],
    ['${EMPTY:+alt}', ''],
    ['${EMPTY+alt}', 'alt'],
    ['${UNSET+alt}', ''],
    ['${UNSET:-${SET}}', 'v'],
    ['${UNSET:-a${UNSET2:-b}c}', 'abc'],
    ['$$', '$'],
    ['$$SET', '$SET'],
    ['$${SET}', '${SET}'],
    ['cost $ 5', 'cost $ 5'],
    ['$1 and $', '$1 and $'],
    ['${EMPTY?err}', ''],
  ])('%s → %j', (input, out) => {
    const r = interpolateString(input, lookup);
    expect(r.errors).toEqual([]);
    expect(r.value).toBe(out);
  });

  it.each([
    ['${UNSET:?need it}', 'required variable UNSET is missing a value: need it'],
    ['${EMPTY:?}', 'required variable EMPTY is missing a value'],
    ['${UNSET?gone}', 'required variable UNSET is missing a value: gone'],
    ['${UNSET', 'invalid interpolation format: "${UNSET" has no closing "}"'],
    ['${1BAD}', 'invalid interpolation format: "${1BAD}" (expected a variable name)'],
    ['${A*B}', 'invalid interpolation format: "${A*B}" (expected "}", ":-", "-", ":?", "?", ":+" or "+" after A)'],
  ])('%s is an error', (input, message) => {
    expect(interpolateString(input, lookup).errors).toEqual([message]);
  });

  it('reports unset variables without defaults', () => {
    expect(interpolateString('$NOPE ${NOPE2}', lookup).unset).toEqual(['NOPE', 'NOPE2']);
  });

  it('interpolates values, never keys, and reports each path', () => {
    const r = interpolateTree({ '${SET}': '$SET', list: ['${X:?x}', 3, true, null] }, lookup);
    expect(r.value).toEqual({ '${SET}': 'v', list: ['', 3, true, null] });
    expect(r.errors).toEqual([{ path: ['list', 0], message: 'required variable X is missing a value: x' }]);
  });

  it('warns once per unset variable, at its first use', () => {
    const r = interpolateTree({ a: '$X', b: ['${X}', '$Y', '$X'] }, lookup);
    expect(r.warnings).toEqual([
      { path: ['a'], message: 'variable "X" is not set; substituting an empty string (here and in 2 more places)' },
      { path: ['b', 1], message: 'variable "Y" is not set; substituting an empty string' },
    ]);
  });
});
