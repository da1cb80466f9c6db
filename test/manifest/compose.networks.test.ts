/**
 * A service's network_mode (src/manifest/compose/networks.ts); the rest of
 * Compose networking is in test/manifest.networks.test.ts.
 */
import { describe, it, expect } from 'vitest';
import { read, service, errorsOf } from '../helpers/compose.js';

describe('readCompose: supported keys', () => {
  it.each([
    ['network_mode: host', 'host'],
    ['network_mode: none', 'none'],
    ['network_mode: bridge', 'bridge'],
  ])('%s', (body, mode) => {
    expect(service(body).container.networkMode).toBe(mode);
  });

  it.each([
    ['service:db', "each task has a network namespace of its own, and sharing another service's is not supported: reach that service by name, or run both programs in one service"],
    ['container:abc', "each task has a network namespace of its own; Baton does not join a container's"],
  ])('refuses network_mode %s with the reason', (mode, reason) => {
    expect(errorsOf(`network_mode: "${mode}"`)).toEqual([`services.web.network_mode: \`services.web.network_mode\` (${mode}) is not supported by Baton yet: ${reason}`]);
  });

  it('refuses a network_mode Compose does not know, pointing a network name to networks', () => {
    expect(errorsOf('network_mode: default')).toEqual([
      `services.web.network_mode: must be bridge (the default: a network namespace of the task's own), host or none; got "default"`,
    ]);
    const r = read('services:\n  web:\n    image: nginx\n    network_mode: front\nnetworks:\n  front:\n');
    expect(r.errors).toEqual([
      {
        path: 'services.web.network_mode',
        message: `must be bridge (the default: a network namespace of the task's own), host or none; got "front"; to join network "front", write \`networks: [front]\``,
        line: 4,
      },
    ]);
  });
});
