/**
 * The duration and size units of Compose values (src/manifest/units.ts).
 */
import { describe, it, expect } from 'vitest';
import { parseBytes, parseDurationMs } from '../../src/manifest/units.js';

describe('units', () => {
  it.each([
    ['10s', 10_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1h', 3_600_000],
    ['1.5s', 1500],
    ['2h45m', 9_900_000],
    ['0', 0],
    ['250us', 0],
    [0, 0],
  ])('duration %j → %d ms', (input, ms) => {
    expect(parseDurationMs(input, 'x')).toEqual({ ok: true, value: ms });
  });

  it.each(['10', '-1s', '1x', 'abc', '', 30, '1s2'])('duration %j is refused with its path', (input) => {
    const r = parseDurationMs(input, 'services.web.stop_grace_period');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.path).toBe('services.web.stop_grace_period');
  });

  it.each([
    ['512m', 512 * 1024 ** 2],
    ['1g', 1024 ** 3],
    ['100k', 102_400],
    ['1024', 1024],
    ['2gb', 2 * 1024 ** 3],
    ['50M', 50 * 1024 ** 2],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['100b', 100],
    [4096, 4096],
  ])('size %j → %d bytes', (input, n) => {
    expect(parseBytes(input, 'x')).toEqual({ ok: true, value: n });
  });

  it.each(['12q', '-1m', 'g', '', true])('size %j is refused with its path', (input) => {
    const r = parseBytes(input, 'services.web.mem_limit');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.path).toBe('services.web.mem_limit');
  });
});
