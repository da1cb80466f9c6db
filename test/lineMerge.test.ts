/**
 * The k-way merge of log streams (base/lineMerge.ts): finished sources come
 * out in time order whatever the chunking (fast-check); followed sources
 * come out in order too, a quiet one holding the others back only until the
 * watermark passes, and a source added while following is merged in.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { keyAt, LineMerger } from '../src/base/lineMerge.js';

const key = (line: string) => line.slice(line.indexOf(' ') + 1, line.indexOf(' ') + 31);
const line = (src: string, ms: number, text: string) => `${src} ${keyAt(ms)} o ${text}`;

async function* chunks(lines: string[], sizes: number[]): AsyncGenerator<string> {
  let i = 0;
  let s = 0;
  while (i < lines.length) {
    const n = Math.max(1, sizes[s++ % sizes.length]!);
    yield lines.slice(i, i + n).map((l) => l + '\n').join('');
    i += n;
    await Promise.resolve();
  }
}

async function collect(m: LineMerger, until?: (lines: string[]) => boolean): Promise<string[]> {
  const out: string[] = [];
  for await (const c of m.lines()) {
    out.push(...c.split('\n').slice(0, -1));
    if (until?.(out)) break;
  }
  return out;
}

describe('LineMerger', () => {
  it('merges finished sources into time order, keeping each source in its own order, whatever the chunks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ times: fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 40 }), sizes: fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 5 }) }), { maxLength: 6 }),
        async (sources) => {
          const m = new LineMerger({ key });
          const all: string[] = [];
          sources.forEach((s, i) => {
            const lines = [...s.times].sort((a, b) => a - b).map((t, j) => line(`s${i}`, 1_700_000_000_000 + t, `${j}`));
            all.push(...lines);
            m.add(chunks(lines, s.sizes));
          });
          const got = await collect(m);
          expect(got).toHaveLength(all.length);
          expect([...got].sort()).toEqual([...all].sort());
          for (let i = 1; i < got.length; i++) expect(key(got[i - 1]!) <= key(got[i]!)).toBe(true);
          // Within a source, its own order.
          for (let s = 0; s < sources.length; s++) {
            const mine = got.filter((l) => l.startsWith(`s${s} `)).map((l) => Number(l.split(' o ')[1]));
            expect(mine).toEqual(mine.map((_, j) => j));
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('following: a quiet source holds the others back only until the watermark passes; one added later is merged in', async () => {
    const ac = new AbortController();
    const m = new LineMerger({ key, follow: true, latenessMs: 200, signal: ac.signal });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const t0 = Date.now();
    // A busy source with lines 9 s to 7 s old, and a quiet one that says nothing for now.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    m.add((async function* () {
      yield [line('busy', t0 - 9000, 'a'), line('busy', t0 - 8000, 'b'), line('busy', t0 - 7000, 'c')].join('\n') + '\n';
      await gate;
      // Stamped 300 ms ahead, so that it surely waits for the watermark while the checks below look.
      yield line('busy', Date.now() + 300, 'late') + '\n';
    })());
    m.add((async function* () {
      await gate;
      yield line('quiet', t0 - 7500, 'q') + '\n';
    })());
    const got: string[] = [];
    const texts = () => got.map((l) => l.split(' o ')[1]);
    const reading = (async () => {
      for await (const c of m.lines()) got.push(...c.split('\n').slice(0, -1));
    })();
    // Older than the watermark: out although the quiet source said nothing (5× the 200 ms lateness at most).
    for (let i = 0; i < 50 && got.length < 3; i++) await sleep(20);
    expect(texts()).toEqual(['a', 'b', 'c']);
    // The quiet source speaks (an old line: out at once); the busy one's new line waits for the watermark.
    release();
    await sleep(60);
    expect(texts()).toEqual(['a', 'b', 'c', 'q']);
    // A source added now, with a line older than that new one: merged in before it.
    m.add((async function* () {
      yield line('new', Date.now() - 1000, 'n') + '\n';
    })());
    for (let i = 0; i < 150 && got.length < 6; i++) await sleep(20);
    expect(texts()).toEqual(['a', 'b', 'c', 'q', 'n', 'late']);
    ac.abort();
    await reading;
  });
});
