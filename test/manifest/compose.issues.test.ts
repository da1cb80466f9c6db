/**
 * Paths and issues (src/manifest/compose/issues.ts): key paths as messages
 * show them, and Ctx, which collects a read's issues and applies the key
 * policy table.
 */
import { describe, it, expect } from 'vitest';
import { COMPOSE_KEY_POLICY, formatKeyPath, type ComposeReadOptions } from '../../src/manifest/compose/index.js';
import { Ctx } from '../../src/manifest/compose/issues.js';

describe('readCompose: validation', () => {
  it('formats key paths', () => {
    expect(formatKeyPath(['services', 'web', 'ports', 0])).toBe('services.web.ports[0]');
    expect(formatKeyPath(['services', 'web', 'labels', 'com.example.a'])).toBe('services.web.labels["com.example.a"]');
  });
});

describe('Ctx', () => {
  /** ctx is a context for a file whose every path is on line 7 (the tests here look at issues, not lines). */
  const ctx = (opts: Partial<ComposeReadOptions> = {}) => new Ctx({ fileName: 'compose.yaml', baseDir: '/srv/app', env: {}, ...opts }, () => 7, () => undefined);

  it('refuses by the policy row with its reason, or only warns with --ignore-unsupported', () => {
    const reason = COMPOSE_KEY_POLICY['services.*.dns']!.reason;
    const strict = ctx();
    strict.unsupported(['services', 'web', 'dns'], 'services.*.dns');
    expect(strict.errors).toEqual([{ segs: ['services', 'web', 'dns'], message: `\`services.web.dns\` is not supported by Baton yet: ${reason}`, blocking: false }]);
    expect(strict.warnings).toEqual([]);
    const lax = ctx({ ignoreUnsupported: true });
    lax.unsupported(['services', 'web', 'ports', 0], 'services.*.ports[]/sctp', 'protocol sctp');
    expect(lax.errors).toEqual([]);
    expect(lax.warnings).toEqual([{ segs: ['services', 'web', 'ports', 0], message: '`services.web.ports[0]` (protocol sctp) is not supported by Baton yet: Baton publishes TCP and UDP ports (ignored)' }]);
  });

  it('warns for a warn row, and refuses a key that has no row', () => {
    const c = ctx();
    c.policy(['services', 'web', 'tty'], 'services.*.tty');
    c.policy(['services', 'web', 'brand_new'], 'services.*.brand_new');
    expect(c.warnings.map((w) => w.message)).toEqual(['`services.web.tty` is ignored: Baton tasks run detached; nothing attaches to a terminal']);
    expect(c.errors.map((e) => e.message)).toEqual(['`services.web.brand_new` is not supported by Baton yet']);
  });

  it('checks the keys a translator leaves: skips the handled ones and x-*, refuses a misplaced x-baton', () => {
    const c = ctx();
    c.checkKeys({ replicas: 2, 'x-note': 'hi', 'x-baton': {}, labels: {}, rollout: 1 }, ['services', 'web', 'deploy'], 'services.*.deploy', ['replicas', 'labels']);
    expect(c.errors).toEqual([
      { segs: ['services', 'web', 'deploy', 'x-baton'], message: '`x-baton` belongs directly under a service (services.<name>.x-baton)', blocking: false },
      { segs: ['services', 'web', 'deploy', 'rollout'], message: '`services.web.deploy.rollout` is not supported by Baton yet', blocking: false },
    ]);
    expect(c.warnings).toEqual([]);
  });

});
