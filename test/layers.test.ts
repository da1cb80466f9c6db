/**
 * The layer order, kept in one place and checked: a folder under src/ may
 * import only from the layers listed for it (VS Code's layering rule). The
 * agent and the server never import each other; both speak through src/api.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { ERROR_CODES } from '../src/base/errors.js';

const SRC = resolve(import.meta.dirname, '../src');
const DASHBOARD = resolve(import.meta.dirname, '../dashboard');

export const LAYERS: Record<string, string[]> = {
  base: [],
  store: ['base'],
  api: ['base'],
  manifest: ['base', 'api'],
  scheduler: ['base', 'api'],
  agent: ['base', 'api'],
  server: ['base', 'store', 'api', 'scheduler'],
  cli: ['base', 'store', 'api', 'manifest', 'scheduler', 'agent', 'server'],
};

/** The web dashboard (dashboard/, outside src/) runs in a browser: of src/ it may import the typed client's layer only. */
export const DASHBOARD_LAYERS = ['api'];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : /\.tsx?$/.test(p) ? [p] : [];
  });
}

describe('layers', () => {
  it('every import goes to the same layer or one listed below it', () => {
    const violations: string[] = [];
    for (const file of files(SRC)) {
      const layer = relative(SRC, file).split('/')[0]!;
      const allowed = LAYERS[layer];
      if (!allowed) {
        violations.push(`${relative(SRC, file)}: folder "${layer}" is not in the layer table`);
        continue;
      }
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = relative(SRC, resolve(dirname(file), m[1]!)).split('/')[0]!;
        if (target !== layer && !allowed.includes(target)) violations.push(`${relative(SRC, file)} imports ${m[1]} (${layer} → ${target})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('the dashboard imports from src/ only the layers listed for it', () => {
    const violations: string[] = [];
    for (const file of files(join(DASHBOARD, 'src'))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = resolve(dirname(file), m[1]!);
        if (!target.startsWith(SRC + '/')) continue;
        const layer = relative(SRC, target).split('/')[0]!;
        if (!DASHBOARD_LAYERS.includes(layer)) violations.push(`${relative(DASHBOARD, file)} imports ${m[1]} (dashboard → ${layer})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('every error code is documented in docs/errors.md', () => {
    const doc = readFileSync(resolve(SRC, '../docs/errors.md'), 'utf8');
    const missing = Object.keys(ERROR_CODES).filter((c) => !doc.includes(`\`${c}\``));
    expect(missing).toEqual([]);
  });
});
