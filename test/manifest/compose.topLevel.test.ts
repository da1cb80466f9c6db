/**
 * The file's top level (src/manifest/compose/topLevel.ts): top-level keys
 * the policy table decides, and declared volumes' drivers.
 */
import { describe, it, expect } from 'vitest';
import { read } from '../helpers/compose.js';

describe('readCompose: key policy', () => {
  it('warns about the obsolete version; secrets and configs defined and not used are still read (apply creates them)', () => {
    const r = read('version: "3.9"\nservices:\n  web: {image: x}\nnetworks:\n  front:\nsecrets:\n  s: {external: true}\nconfigs:\n  c: {content: "x"}\n', { stack: 'st' });
    expect(r.errors).toEqual([]);
    expect(r.warnings.map((w) => [w.path, w.line])).toEqual([['version', 1]]);
    expect(r.configs.map((c) => c.name)).toEqual(['st_c']);
    expect(r.secrets).toEqual([]);
  });

  it('refuses non-local volume drivers', () => {
    expect(read('services:\n  web: {image: x}\nvolumes:\n  v: {driver: rexray}\n').errors).toEqual([
      { path: 'volumes.v.driver', message: '`volumes.v.driver` is not supported by Baton yet: Baton creates volumes with the engine\'s "local" driver', line: 4 },
    ]);
    expect(read('services:\n  web: {image: x}\nvolumes:\n  v: {driver: local}\n').errors).toEqual([]);
  });
});
