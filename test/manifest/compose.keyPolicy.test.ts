/**
 * The key policy table (src/manifest/compose/keyPolicy.ts): keys Baton does
 * not translate are refused (a warning with --ignore-unsupported) or only
 * warned about, each with its reason.
 */
import { describe, it, expect } from 'vitest';
import { COMPOSE_KEY_POLICY } from '../../src/manifest/compose/index.js';
import { read, errorsOf } from '../helpers/compose.js';

describe('readCompose: key policy', () => {
  it.each([
    ['privileged: true', 'services.web.privileged', '`services.web.privileged` is not supported by Baton yet'],
    ['links: ["db:database"]', 'services.web.links[0]', "`services.web.links[0]` (alias database) is not supported by Baton yet: a link's alias is seen by the linking service alone, and a network's names are the same for every task on it: give the alias with `networks.<name>.aliases`"],
    ['cpu_shares: 512', 'services.web.cpu_shares', '`services.web.cpu_shares` is not supported by Baton yet: use `deploy.resources.limits.cpus`'],
    ['devices: ["/dev/ttyUSB0:/dev/ttyUSB0"]', 'services.web.devices', '`services.web.devices` is not supported by Baton yet'],
  ])('%s is an error, and a warning with --ignore-unsupported', (body, path, message) => {
    const line = 3 + body.split('\n').length; // the last line of the body holds the refused key or value
    const strict = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`);
    expect(strict.services).toEqual([]);
    expect(strict.errors).toEqual([{ path, message, line }]);
    const lax = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`, { ignoreUnsupported: true });
    expect(lax.errors).toEqual([]);
    expect(lax.warnings).toEqual([{ path, message: `${message} (ignored)`, line }]);
    expect(lax.services).toHaveLength(1);
    expect(lax.services[0]!.spec.mode).toBe('replicated');
  });

  it('keeps every unsupported error, not just the first', () => {
    expect(errorsOf('privileged: true\npid: host\nipc: host').map((e) => e.split(':')[0])).toEqual([
      'services.web.privileged',
      'services.web.pid',
      'services.web.ipc',
    ]);
  });

  it.each([
    ['container_name: web1', 'services.web.container_name'],
    ['logging:\n  driver: json-file', 'services.web.logging'],
    ['links: [db]', 'services.web.links'],
    ['stdin_open: true', 'services.web.stdin_open'],
    ['tty: true', 'services.web.tty'],
    ['deploy:\n  endpoint_mode: dnsrr', 'services.web.deploy.endpoint_mode'],
  ])('%s only warns', (body, path) => {
    const r = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`);
    expect(r.errors).toEqual([]);
    expect(r.services).toHaveLength(1);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatchObject({ path, line: path.startsWith('services.web.deploy.') ? 5 : 4 });
    expect(r.warnings[0]!.message).toMatch(new RegExp(`^\`${path.replace(/\./g, '\\.')}\` is ignored: .+`));
  });

  it('gives every row a reason when it only warns', () => {
    for (const [key, row] of Object.entries(COMPOSE_KEY_POLICY)) if (row.kind === 'warn') expect(row.reason, key).toBeTruthy();
  });
});
