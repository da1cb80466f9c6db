/** The server's V8 flags go into NODE_OPTIONS beside what the operator put there, never over it. */
import { describe, expect, it } from 'vitest';
import { SERVER_NODE_FLAGS, withServerFlags } from '../src/base/nodeFlags.js';

describe('withServerFlags', () => {
  it('adds the flags to an empty or unrelated NODE_OPTIONS', () => {
    expect(withServerFlags({}).NODE_OPTIONS).toBe(SERVER_NODE_FLAGS.join(' '));
    expect(withServerFlags({ NODE_OPTIONS: '--enable-source-maps' }).NODE_OPTIONS).toBe(['--enable-source-maps', ...SERVER_NODE_FLAGS].join(' '));
  });

  it('keeps a value the operator chose for the same flag', () => {
    expect(withServerFlags({ NODE_OPTIONS: '--max-semi-space-size=8' }).NODE_OPTIONS).toBe('--max-semi-space-size=8');
  });

  it('takes effect in a process started with them: its young generation grows past Node\'s default', async () => {
    const { execFileSync } = await import('node:child_process');
    // Short-lived objects with survivors: V8 grows the young generation up to its limit (Node 20: 2 × 16 MiB).
    const script = `const v8 = require('v8'); const keep = [];
for (let i = 0; i < 3e6; i++) { const o = { a: i, b: [i], s: 'x' + i }; if (i % 3 === 0) keep.push(o); if (keep.length > 200000) keep.splice(0, 100000); }
console.log(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);`;
    const newSpace = (env: NodeJS.ProcessEnv) => Number(execFileSync(process.execPath, ['-e', script], { env: { PATH: process.env.PATH, ...env } }).toString());
    expect(newSpace({})).toBeLessThanOrEqual(32 * 2 ** 20);
    expect(newSpace(withServerFlags({}))).toBeGreaterThan(32 * 2 ** 20);
  }, 30_000);
});
