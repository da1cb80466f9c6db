/**
 * Helpers for the Compose reader's tests (test/manifest/compose.*.test.ts):
 * read a whole file, or one service's body (under `services.web`, image
 * nginx), through the public readCompose, as a file in /srv/app.
 */
import { expect } from 'vitest';
import { readCompose, type ComposeReadOptions, type ComposeResult } from '../../src/manifest/compose/index.js';
import type { ServiceSpec } from '../../src/api/types.js';

const BASE = '/srv/app';

export function read(text: string, opts: Partial<ComposeReadOptions> = {}): ComposeResult {
  return readCompose(text, { fileName: 'compose.yaml', baseDir: BASE, env: {}, ...opts });
}

/** service reads a one-service file (`services: { web: <body> }`) and returns its spec, failing on any error. */
export function service(body: string, opts: Partial<ComposeReadOptions> = {}): ServiceSpec {
  const r = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`, opts);
  expect(r.errors).toEqual([]);
  expect(r.services).toHaveLength(1);
  return r.services[0]!.spec;
}

/** errorsOf reads a one-service file and returns its errors as "path: message" lines. */
export function errorsOf(body: string, opts: Partial<ComposeReadOptions> = {}): string[] {
  const r = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`, opts);
  if (r.errors.length > 0) expect(r.services).toEqual([]);
  return r.errors.map((e) => `${e.path}: ${e.message}`);
}

export function warningsOf(body: string, opts: Partial<ComposeReadOptions> = {}): string[] {
  const r = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`, opts);
  expect(r.errors).toEqual([]);
  return r.warnings.map((e) => `${e.path}: ${e.message}`);
}
