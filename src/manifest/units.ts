/**
 * Compose's duration and size strings, turned into the milliseconds and bytes
 * that src/api/types.ts carries, so nothing downstream re-parses "1m30s" or
 * "512M". Pure functions; a bad value comes back as an ErrorDetail naming the
 * key path, never as a throw.
 */

import type { ErrorDetail } from '../base/errors.js';

/** UnitResult is a parsed amount or the reason it could not be parsed, so callers collect errors instead of stopping at the first. */
export type UnitResult = { ok: true; value: number } | { ok: false; error: ErrorDetail };

const DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/**
 * parseDurationMs reads a Go-style duration ("1m30s", "10s", "500ms", "1h",
 * "1.5s", "0") into whole milliseconds, because Compose inherits Go's
 * time.ParseDuration grammar and users copy values between the two. Negative
 * durations and bare numbers other than 0 are refused: every duration Compose
 * takes is a wait, and a unit-less "30" is ambiguous.
 */
export function parseDurationMs(value: unknown, path: string): UnitResult {
  const fail = (why: string): UnitResult => ({ ok: false, error: { path, message: why } });
  if (typeof value === 'number') {
    if (value === 0) return { ok: true, value: 0 };
    return fail(`invalid duration ${value}: missing unit (for example "${value}s")`);
  }
  if (typeof value !== 'string') return fail('must be a duration string such as "10s" or "1m30s"');
  const text = value.trim();
  if (text === '0' || text === '+0') return { ok: true, value: 0 };
  if (text === '') return fail('invalid duration "": empty');
  if (text.startsWith('-')) return fail(`invalid duration "${value}": must not be negative`);
  const body = text.startsWith('+') ? text.slice(1) : text;
  let total = 0;
  let pos = 0;
  DURATION_PART.lastIndex = 0;
  while (pos < body.length) {
    DURATION_PART.lastIndex = pos;
    const m = DURATION_PART.exec(body);
    if (!m) {
      const rest = body.slice(pos);
      if (/^\d+(\.\d*)?$/.test(rest)) return fail(`invalid duration "${value}": missing unit (for example "${value}s")`);
      return fail(`invalid duration "${value}": use a number and a unit (ns, us, ms, s, m, h), e.g. "1m30s"`);
    }
    total += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
    pos = DURATION_PART.lastIndex;
  }
  if (!Number.isFinite(total)) return fail(`invalid duration "${value}": too large`);
  return { ok: true, value: Math.round(total) };
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

const SIZE = /^(\d+(?:\.\d+)?) ?([kmgtp]?)(?:i?b)?$/i;

/**
 * parseBytes reads a Docker-style size ("512m", "1g", "100k", "1024", "2gb",
 * "1.5GiB") into bytes with binary multiples, as Docker's RAMInBytes does, so
 * a Compose file means the same memory limit under Baton as under Docker. A
 * plain number is already bytes.
 */
export function parseBytes(value: unknown, path: string): UnitResult {
  const fail = (why: string): UnitResult => ({ ok: false, error: { path, message: why } });
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) return fail(`invalid size ${value}: must be a non-negative number of bytes`);
    return { ok: true, value: Math.trunc(value) };
  }
  if (typeof value !== 'string') return fail('must be a size such as "512m" or "1g"');
  const m = SIZE.exec(value.trim());
  if (!m) return fail(`invalid size "${value}": use a number and an optional unit (b, k, m, g, t, p), e.g. "512m"`);
  const bytes = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(Math.trunc(bytes))) return fail(`invalid size "${value}": too large`);
  return { ok: true, value: Math.trunc(bytes) };
}
