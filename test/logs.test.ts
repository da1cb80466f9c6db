/**
 * The agent's log store on real files: segments, tail across them, filters,
 * following, retention by size and age, and resuming after a restart.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LogStore, nanoTime } from '../src/agent/logs.js';
import { parseSince } from '../src/server/logs.js';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'baton-logs-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A record at second s (and nanosecond n) of a fixed minute. */
const at = (s: number, n = 0) => `2026-11-27T10:00:${String(s).padStart(2, '0')}.${String(n).padStart(9, '0')}Z`;
const rec = (t: string, text: string, stream = 'o') => `${t} ${stream} ${text}\n`;

async function all(it: AsyncIterable<string>): Promise<string[]> {
  let s = '';
  for await (const c of it) s += c;
  return s.split('\n').filter(Boolean);
}

describe('LogStore', () => {
  it('keeps records in order across segments; tail, since and grep select from them', async () => {
    const s = new LogStore({ dir: tmp(), segmentBytes: 200 });
    const lines: string[] = [];
    for (let i = 0; i < 40; i++) {
      const r = rec(at(i), `line ${i}`, i % 2 ? 'e' : 'o');
      lines.push(r.slice(0, -1));
      s.append('web.1.abc', 'web', r, at(i));
    }
    expect(s.list()).toEqual([{ task: 'web.1.abc', service: 'web', bytes: lines.join('\n').length + 1 }]);
    expect(await all(s.read('web.1.abc'))).toEqual(lines);
    expect(await all(s.read('web.1.abc', { tail: 3 }))).toEqual(lines.slice(-3));
    expect(await all(s.read('web.1.abc', { tail: 0 }))).toEqual([]);
    expect(await all(s.read('web.1.abc', { tail: 1000 }))).toEqual(lines);
    expect(await all(s.read('web.1.abc', { since: '2026-11-27T10:00:37Z' }))).toEqual(lines.slice(37));
    expect(await all(s.read('web.1.abc', { grep: /^line 1\d$/ }))).toEqual(lines.slice(10, 20));
    expect(await all(s.read('nope'))).toEqual([]);
  });

  it('a follower gets what is appended later, until its signal aborts', async () => {
    const s = new LogStore({ dir: tmp(), segmentBytes: 100 });
    s.append('t.1.a', 't', rec(at(0), 'first'), at(0));
    const abort = new AbortController();
    const seen: string[] = [];
    const reader = (async () => {
      for await (const c of s.read('t.1.a', { follow: true, signal: abort.signal })) {
        seen.push(...c.split('\n').filter(Boolean));
        if (seen.length === 20) abort.abort();
      }
    })();
    for (let i = 1; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 2));
      s.append('t.1.a', 't', rec(at(i), `more ${i}`), at(i));
    }
    await reader;
    expect(seen.map((l) => l.slice(33))).toEqual(['first', ...Array.from({ length: 19 }, (_, i) => `more ${i + 1}`)]);
  });

  it('removes the oldest segments over the size limit and past the age limit', async () => {
    let now = Date.parse('2026-11-27T10:00:00Z');
    const s = new LogStore({ dir: tmp(), maxBytes: 2000, maxAgeMs: 60_000, segmentBytes: 400, now: () => now });
    for (let i = 0; i < 100; i++) s.append('a.1.x', 'a', rec(at(i % 60), `old ${i}`), at(i % 60));
    expect(s.totalBytes()).toBeLessThanOrEqual(2000 + 400);
    const kept = await all(s.read('a.1.x'));
    expect(kept.at(-1)).toMatch(/old 99$/);
    // Whole records only, still in order.
    const nums = kept.map((l) => Number(/old (\d+)$/.exec(l)![1]));
    expect(nums).toEqual([...nums].sort((x, y) => x - y));
    s.append('b.1.y', 'b', rec(at(1), 'b'), at(1));
    s.closeTask('a.1.x');
    now += 120_000;
    s.append('b.1.y', 'b', rec(at(2), 'b again'), at(2));
    s.prune(); // (the append above may already have pruned: it was over the size limit)
    expect(s.list().map((t) => t.task)).toEqual(['b.1.y']);
  });

  it('picks up after a restart: the last time is known, earlier records readable', async () => {
    const dir = tmp();
    const a = new LogStore({ dir, segmentBytes: 100 });
    for (let i = 0; i < 10; i++) a.append('s.2.q', 's', rec(at(i, 5), `r${i}`), at(i, 5));
    a.close();
    const b = new LogStore({ dir, segmentBytes: 100 });
    expect(b.lastTime('s.2.q')).toBe(at(9, 5));
    b.append('s.2.q', 's', rec(at(10), 'r10'), at(10));
    expect((await all(b.read('s.2.q'))).map((l) => l.slice(33))).toEqual(Array.from({ length: 11 }, (_, i) => `r${i}`));
    expect(b.list({ service: 's' })).toHaveLength(1);
    expect(b.list({ service: 'other' })).toHaveLength(0);
  });

  it('refuses a task name that is not a safe file name', () => {
    const s = new LogStore({ dir: tmp() });
    expect(() => s.append('../evil', 'x', rec(at(0), 'x'), at(0))).toThrow(/unsafe task name/);
  });
});

describe('times', () => {
  it('nanoTime pads to 9 digits so times sort as text', () => {
    expect(nanoTime('2026-11-27T10:00:00Z')).toBe('2026-11-27T10:00:00.000000000Z');
    expect(nanoTime('2026-11-27T10:00:00.5Z')).toBe('2026-11-27T10:00:00.500000000Z');
    expect(nanoTime('2026-11-27T11:00:00+01:00')).toBe('2026-11-27T10:00:00.000000000Z');
  });
  it('parseSince reads durations and times, and says what is wrong', () => {
    const now = Date.parse('2026-11-27T10:00:00Z');
    expect(parseSince('10m', now)).toBe('2026-11-27T09:50:00.000Z');
    expect(parseSince('1h30m', now)).toBe('2026-11-27T08:30:00.000Z');
    expect(parseSince('2026-11-27T09:00:00Z', now)).toBe('2026-11-27T09:00:00.000Z');
    expect(() => parseSince('yesterday', now)).toThrow(/neither a duration/);
  });
});
