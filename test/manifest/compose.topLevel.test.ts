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

  it('refuses non-local volume drivers, saying why, and takes `driver: local` written out', () => {
    expect(read('services:\n  web: {image: x}\nvolumes:\n  v: {driver: rexray}\n').errors).toEqual([
      {
        path: 'volumes.v.driver',
        message:
          '`volumes.v.driver` (driver rexray) is not supported by Baton yet: remote filesystems and volume plugins are not supported: a task may run on any node, and Baton keeps volumes with each node\'s "local" driver (bind a path mounted on every node with type: none, o: bind, device: <path>)',
        line: 4,
      },
    ]);
    // A plain named volume, as with no driver at all.
    for (const v of ['{driver: local}', '{driver: local, driver_opts: {}}', '{driver: default}', '{}']) {
      const r = read(`services:\n  web: {image: x, volumes: ["v:/data"]}\nvolumes:\n  v: ${v}\n`);
      expect(r.errors, v).toEqual([]);
      expect(r.services[0]!.spec.container.mounts, v).toEqual([{ type: 'volume', source: 'app_v', target: '/data', readOnly: false }]);
    }
  });
});
