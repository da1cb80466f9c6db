/**
 * The value helpers (src/manifest/compose/values.ts), through the keys that
 * use them: command and entrypoint, split the way Compose splits them.
 */
import { describe, it, expect } from 'vitest';
import { service, errorsOf } from '../helpers/compose.js';

describe('readCompose: supported keys', () => {
  it.each([
    ['command: bundle exec thin -p 3000', { command: ['bundle', 'exec', 'thin', '-p', '3000'] }],
    [`command: sh -c "echo 'a b'; exit 1"`, { command: ['sh', '-c', "echo 'a b'; exit 1"] }],
    ['command: ["a", "b c"]', { command: ['a', 'b c'] }],
    ['command: null', {}],
    ['command: ""', { command: [] }],
    ['command: []', { command: [] }],
    ['entrypoint: /entry.sh --flag', { entrypoint: ['/entry.sh', '--flag'] }],
    ['entrypoint: []', { entrypoint: [] }],
    ['entrypoint: ["tini", "--"]', { entrypoint: ['tini', '--'] }],
  ])('%s', (body, expected) => {
    const c = service(body).container;
    expect({ command: c.command, entrypoint: c.entrypoint }).toEqual({ command: undefined, entrypoint: undefined, ...expected });
  });

  it('refuses shell operators and unbalanced quotes in a string command', () => {
    expect(errorsOf('command: a && b')).toEqual([
      'services.web.command: "a && b" contains the shell operator "&&": write the command as a list, or as ["sh", "-c", "..."]',
    ]);
    expect(errorsOf(`command: echo 'oops`)).toEqual([`services.web.command: "echo 'oops" has an unterminated single quote`]);
  });
});
