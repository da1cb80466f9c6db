/**
 * The Store conformance suite: every backend (memory, SQLite, later etcd)
 * runs the same checks, so "implements Store" means the same thing for all.
 * Imported only by tests (it defines vitest suites).
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../base/clock.js';
import {
  MAX_TXN_OPS,
  StoreClosedError,
  StoreCompactedError,
  StoreError,
  StoreFutureRevisionError,
  StoreLeaseNotFoundError,
  StoreTooManyOpsError,
  compareHolds,
  type Compare,
  type KeyValue,
  type Op,
  type Store,
  type WatchBatch,
  type WatchEvent,
} from './store.js';

/** StoreFactory makes a fresh, empty store (revision 0) whose timers run on the given clock. */
export type StoreFactory = (opts: { clock: FakeClock }) => Promise<Store>;

/** settle lets every queued microtask run, so watch batches already due have been delivered. */
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

const put = (s: Store, key: string, value: string, lease?: number) => s.txn([], [{ type: 'put', key, value, ...(lease ? { lease } : {}) }]);
const del = (s: Store, key: string) => s.txn([], [{ type: 'delete', key }]);
const keysOf = (kvs: KeyValue[]) => kvs.map((kv) => kv.key);

/** byteOrder sorts keys by UTF-8 bytes, independently of the backends' own comparison. */
const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Recorder collects what one watch delivers. */
interface Recorder {
  batches: WatchBatch[];
  errors: Error[];
  close(): void;
  requestProgress(): void;
  /** Events of the non-progress batches, flattened. */
  events(): WatchEvent[];
}

function record(s: Store, prefix: string, afterRevision: number, onBatch?: (b: WatchBatch) => void): Recorder {
  const batches: WatchBatch[] = [];
  const errors: Error[] = [];
  const w = s.watch(prefix, afterRevision, {
    onBatch: (b) => {
      batches.push(b);
      onBatch?.(b);
    },
    onError: (e) => errors.push(e),
  });
  return { batches, errors, close: () => w.close(), requestProgress: () => w.requestProgress(), events: () => batches.flatMap((b) => b.events) };
}

/** summary reduces events to comparable tuples. */
const summary = (events: WatchEvent[]) => events.map((e) => [e.type, e.kv.key, e.kv.modRevision, e.prevKv?.value]);

/** runStoreConformance defines the vitest suite every Store backend must pass. */
export function runStoreConformance(name: string, factory: StoreFactory): void {
  describe(`Store conformance: ${name}`, () => {
    let clock: FakeClock;
    let store: Store;

    beforeEach(async () => {
      clock = new FakeClock();
      store = await factory({ clock });
    });
    afterEach(async () => {
      await store.close();
    });

    describe('revisions', () => {
      it('starts at revision 0 and gives every write txn a strictly higher one', async () => {
        expect(await store.currentRevision()).toBe(0);
        expect(await store.compactRevision()).toBe(0);
        const r1 = await put(store, 'a', '1');
        const r2 = await put(store, 'b', '2');
        const r3 = await del(store, 'a');
        expect(r1).toEqual({ succeeded: true, revision: expect.any(Number) });
        expect(r1.revision).toBeGreaterThan(0);
        expect(r2.revision).toBeGreaterThan(r1.revision);
        expect(r3.revision).toBeGreaterThan(r2.revision);
        expect(await store.currentRevision()).toBe(r3.revision);
      });

      it('shares one revision across all ops of a txn', async () => {
        await put(store, 'old', 'x');
        const r = await store.txn([], [
          { type: 'put', key: 'x/1', value: 'a' },
          { type: 'put', key: 'x/2', value: 'b' },
          { type: 'delete', key: 'old' },
        ]);
        expect((await store.get('x/1'))?.modRevision).toBe(r.revision);
        expect((await store.get('x/2'))?.modRevision).toBe(r.revision);
        const w = record(store, '', r.revision - 1);
        await settle();
        expect(w.events().map((e) => e.kv.modRevision)).toEqual([r.revision, r.revision, r.revision]);
        expect(w.batches).toHaveLength(1);
        expect(w.batches[0]!.revision).toBe(r.revision);
        expect(await store.currentRevision()).toBe(r.revision);
      });

      it('tracks createRevision, modRevision and version per key', async () => {
        const r1 = await put(store, 'k', 'a');
        const r2 = await put(store, 'k', 'b');
        expect(await store.get('k')).toEqual({ key: 'k', value: 'b', createRevision: r1.revision, modRevision: r2.revision, version: 2, lease: 0 });
        await del(store, 'k');
        expect(await store.get('k')).toBeUndefined();
        const r4 = await put(store, 'k', 'c');
        expect(await store.get('k')).toEqual({ key: 'k', value: 'c', createRevision: r4.revision, modRevision: r4.revision, version: 1, lease: 0 });
      });

      it('writes a revision for a put of an identical value', async () => {
        const r1 = await put(store, 'k', 'same');
        const r2 = await put(store, 'k', 'same');
        expect(r2.revision).toBeGreaterThan(r1.revision);
        expect((await store.get('k'))?.version).toBe(2);
      });

      it('writes nothing for a delete of a missing key', async () => {
        const r1 = await put(store, 'k', 'v');
        const r2 = await del(store, 'missing');
        expect(r2).toEqual({ succeeded: true, revision: r1.revision });
        const r3 = await store.txn([], [{ type: 'deletePrefix', prefix: 'nothing/' }]);
        expect(r3.revision).toBe(r1.revision);
        expect(await store.currentRevision()).toBe(r1.revision);
      });
    });

    describe('get and range', () => {
      beforeEach(async () => {
        for (const k of ['a/2', 'a0', 'a/1', 'b/1', 'a', 'a/b/3']) await put(store, k, `v-${k}`);
      });

      it('gets a key or undefined', async () => {
        expect((await store.get('a/1'))?.value).toBe('v-a/1');
        expect(await store.get('a/')).toBeUndefined();
        expect(await store.get('zzz')).toBeUndefined();
      });

      it('ranges a prefix in key order, and "a/" does not match "a0"', async () => {
        expect(keysOf((await store.range('a/')).kvs)).toEqual(['a/1', 'a/2', 'a/b/3']);
        expect(keysOf((await store.range('a')).kvs)).toEqual(['a', 'a/1', 'a/2', 'a/b/3', 'a0']);
        expect(keysOf((await store.range('')).kvs)).toEqual(['a', 'a/1', 'a/2', 'a/b/3', 'a0', 'b/1']);
        expect((await store.range('c/')).kvs).toEqual([]);
        expect((await store.range('a/1')).kvs.map((kv) => kv.value)).toEqual(['v-a/1']);
      });

      it('reports the revision it read at', async () => {
        const r = await store.range('a/');
        expect(r.revision).toBe(await store.currentRevision());
        expect(r.continue).toBeUndefined();
      });

      it('orders keys by code point (UTF-8 bytes), as etcd does', async () => {
        const keys = ['u/😀', 'u/\uFFFD', 'u/é', 'u/z', 'u/\uFFFF', 'u/\uFFFFx', 'u/\uFFFF😀'];
        for (const k of keys) await put(store, k, k);
        expect(keysOf((await store.range('u/')).kvs)).toEqual([...keys].sort(byteOrder));
        expect(keysOf((await store.range('u/\uFFFF')).kvs)).toEqual(['u/\uFFFF', 'u/\uFFFFx', 'u/\uFFFF😀']);
        expect(keysOf((await store.range('u/😀')).kvs)).toEqual(['u/😀']);
        const paged: string[] = [];
        let cont: string | undefined;
        do {
          const page = await store.range('u/', { limit: 2, continue: cont });
          paged.push(...keysOf(page.kvs));
          cont = page.continue;
        } while (cont);
        expect(paged).toEqual([...keys].sort(byteOrder));
      });

      it('rejects keys that are empty or not well-formed UTF-16, applying nothing', async () => {
        const rev = await store.currentRevision();
        for (const key of ['', 'bad\uD800', '\uDC00bad']) {
          const err = await store.txn([], [{ type: 'put', key: 'fine', value: '1' }, { type: 'put', key, value: 'x' }]).catch((e) => e);
          expect(err).toBeInstanceOf(StoreError);
          expect(err.code).toBe('invalid_key');
        }
        expect(await store.currentRevision()).toBe(rev);
        expect(await store.get('fine')).toBeUndefined();
      });
    });

    describe('pagination', () => {
      it('pages with limit/continue at a fixed revision while writes happen between pages', async () => {
        const keys = Array.from({ length: 10 }, (_, i) => `k/${String(i).padStart(2, '0')}`);
        for (const k of keys) await put(store, k, `v${k}`);
        await put(store, 'k0', 'outside');
        const snapshot = (await store.range('k/')).kvs;
        const first = await store.range('k/', { limit: 3 });
        expect(keysOf(first.kvs)).toEqual(keys.slice(0, 3));
        expect(first.continue).toEqual(expect.any(String));
        const at = first.revision;

        const seen = [...first.kvs];
        let cont = first.continue;
        let i = 0;
        while (cont) {
          // Writes in front of, inside and behind the cursor must not show up in this listing.
          await store.txn([], [
            { type: 'put', key: `k/0${i}5`, value: 'new' },
            { type: 'put', key: 'k/06', value: `changed${i}` },
            { type: 'delete', key: `k/0${9 - i}` },
          ]);
          const page = await store.range('k/', { limit: 3, continue: cont, atRevision: at });
          expect(page.revision).toBe(at);
          expect(page.kvs.length).toBeLessThanOrEqual(3);
          seen.push(...page.kvs);
          cont = page.continue;
          i++;
        }
        expect(seen).toEqual(snapshot);
        expect(i).toBe(3);
        expect(await store.currentRevision()).toBeGreaterThan(at);
      });

      it('gives no continue when the page holds exactly the remaining keys', async () => {
        for (let i = 0; i < 4; i++) await put(store, `p/${i}`, 'v');
        const p1 = await store.range('p/', { limit: 2 });
        expect(keysOf(p1.kvs)).toEqual(['p/0', 'p/1']);
        const p2 = await store.range('p/', { limit: 2, continue: p1.continue, atRevision: p1.revision });
        expect(keysOf(p2.kvs)).toEqual(['p/2', 'p/3']);
        expect(p2.continue).toBeUndefined();
        const all = await store.range('p/', { limit: 10 });
        expect(all.kvs).toHaveLength(4);
        expect(all.continue).toBeUndefined();
      });
    });

    describe('atRevision', () => {
      it('reads old values and keys deleted since', async () => {
        const r1 = await put(store, 'k', 'v1');
        const r2 = await put(store, 'k', 'v2');
        const r3 = await del(store, 'k');
        const r4 = await put(store, 'other', 'x');
        expect((await store.range('k', { atRevision: r1.revision })).kvs).toEqual([
          { key: 'k', value: 'v1', createRevision: r1.revision, modRevision: r1.revision, version: 1, lease: 0 },
        ]);
        const at2 = await store.range('k', { atRevision: r2.revision });
        expect(at2.revision).toBe(r2.revision);
        expect(at2.kvs.map((kv) => [kv.value, kv.version])).toEqual([['v2', 2]]);
        expect((await store.range('k', { atRevision: r3.revision })).kvs).toEqual([]);
        expect(keysOf((await store.range('', { atRevision: r4.revision })).kvs)).toEqual(['other']);
        expect(await store.get('k')).toBeUndefined();
      });

      it('fails for a future revision with StoreFutureRevisionError', async () => {
        const r = await put(store, 'k', 'v');
        await expect(store.range('', { atRevision: r.revision + 1 })).rejects.toBeInstanceOf(StoreFutureRevisionError);
      });
    });

    describe('txn compares', () => {
      const holds = async (c: Omit<Compare, 'key'>, key = 'k') => (await store.txn([{ key, ...c }], [])).succeeded;

      it('treats an absent key as mod/create/version 0, and fails every value compare on it', async () => {
        expect(await holds({ target: 'create', op: '=', value: 0 }, 'absent')).toBe(true);
        expect(await holds({ target: 'mod', op: '=', value: 0 }, 'absent')).toBe(true);
        expect(await holds({ target: 'version', op: '=', value: 0 }, 'absent')).toBe(true);
        expect(await holds({ target: 'version', op: '>', value: 0 }, 'absent')).toBe(false);
        expect(await holds({ target: 'mod', op: '!=', value: 0 }, 'absent')).toBe(false);
        expect(await holds({ target: 'value', op: '=', value: '' }, 'absent')).toBe(false);
        expect(await holds({ target: 'value', op: '!=', value: 'x' }, 'absent')).toBe(false);
      });

      it('compares mod, create, version and value of a present key', async () => {
        const r1 = await put(store, 'k', 'v');
        const r2 = await put(store, 'k', 'w');
        const cases: [Omit<Compare, 'key'>, boolean][] = [
          [{ target: 'mod', op: '=', value: r2.revision }, true],
          [{ target: 'mod', op: '=', value: r1.revision }, false],
          [{ target: 'mod', op: '!=', value: r1.revision }, true],
          [{ target: 'mod', op: '<', value: r2.revision + 1 }, true],
          [{ target: 'mod', op: '<', value: r2.revision }, false],
          [{ target: 'mod', op: '>', value: r1.revision }, true],
          [{ target: 'mod', op: '>', value: r2.revision }, false],
          [{ target: 'create', op: '=', value: r1.revision }, true],
          [{ target: 'create', op: '=', value: 0 }, false],
          [{ target: 'create', op: '<', value: r2.revision }, true],
          [{ target: 'version', op: '=', value: 2 }, true],
          [{ target: 'version', op: '>', value: 1 }, true],
          [{ target: 'version', op: '<', value: 2 }, false],
          [{ target: 'version', op: '!=', value: 2 }, false],
          [{ target: 'value', op: '=', value: 'w' }, true],
          [{ target: 'value', op: '=', value: 'v' }, false],
          [{ target: 'value', op: '!=', value: 'w' }, false],
          [{ target: 'value', op: '!=', value: 'v' }, true],
          [{ target: 'value', op: '>', value: 'v' }, true],
          [{ target: 'value', op: '<', value: 'v' }, false],
        ];
        for (const [c, want] of cases) expect([c, await holds(c)]).toEqual([c, want]);
        expect(await store.currentRevision()).toBe(r2.revision);
      });

      it('applies success ops when every compare holds, else the failure ops', async () => {
        const r1 = await put(store, 'k', 'v');
        const ok = await store.txn(
          [{ key: 'k', target: 'value', op: '=', value: 'v' }, { key: 'k', target: 'mod', op: '=', value: r1.revision }],
          [{ type: 'put', key: 'yes', value: '1' }],
          [{ type: 'put', key: 'no', value: '1' }],
        );
        expect(ok.succeeded).toBe(true);
        expect(ok.revision).toBeGreaterThan(r1.revision);
        expect(await store.get('yes')).toBeDefined();
        expect(await store.get('no')).toBeUndefined();

        const bad = await store.txn(
          [{ key: 'k', target: 'value', op: '=', value: 'v' }, { key: 'k', target: 'mod', op: '=', value: r1.revision - 1 }],
          [{ type: 'put', key: 'yes2', value: '1' }],
          [{ type: 'put', key: 'no', value: '2' }, { type: 'delete', key: 'yes' }],
        );
        expect(bad.succeeded).toBe(false);
        expect(bad.revision).toBeGreaterThan(ok.revision);
        expect(await store.get('yes2')).toBeUndefined();
        expect(await store.get('yes')).toBeUndefined();
        expect((await store.get('no'))?.modRevision).toBe(bad.revision);

        const none = await store.txn([{ key: 'k', target: 'version', op: '=', value: 9 }], [{ type: 'put', key: 'x', value: '1' }]);
        expect(none).toEqual({ succeeded: false, revision: bad.revision });
      });

      it('lets exactly one of two updates from the same modRevision win', async () => {
        const r = await put(store, 'k', 'base');
        const update = (value: string) => store.txn([{ key: 'k', target: 'mod', op: '=', value: r.revision }], [{ type: 'put', key: 'k', value }]);
        const results = await Promise.all([update('first'), update('second')]);
        expect(results.filter((x) => x.succeeded)).toHaveLength(1);
        const winner = results[0]!.succeeded ? 'first' : 'second';
        expect((await store.get('k'))?.value).toBe(winner);
        expect((await store.get('k'))?.version).toBe(2);

        const create = (value: string) => store.txn([{ key: 'new', target: 'create', op: '=', value: 0 }], [{ type: 'put', key: 'new', value }]);
        const creates = await Promise.all([create('a'), create('b'), create('c')]);
        expect(creates.filter((x) => x.succeeded)).toHaveLength(1);
      });

      it('runs txns issued together one after another, each at its own revision, in the order issued', async () => {
        const start = await store.currentRevision();
        // Each txn expects the version the previous one left: they all hold only if they ran in issue order.
        const chain = Array.from({ length: 50 }, (_, i) =>
          store.txn([{ key: 'seq', target: 'version', op: '=', value: i }], [{ type: 'put', key: 'seq', value: String(i) }, { type: 'put', key: `k${i}`, value: 'x' }]),
        );
        const results = await Promise.all(chain);
        expect(results.map((r) => r.succeeded)).toEqual(results.map(() => true));
        expect(results.map((r) => r.revision)).toEqual(results.map((_, i) => start + 1 + i));
        expect((await store.get('seq'))?.value).toBe('49');
      });

      it('refuses one failing txn of many issued together on its own, and watchers hear the rest in order', async () => {
        const w = record(store, 'g/', 0);
        const ok1 = put(store, 'g/a', '1');
        const bad = store.txn([], [{ type: 'put', key: 'g/b', value: '2' }, { type: 'put', key: 'g/c', value: '3', lease: 987654 }]);
        const ok2 = put(store, 'g/d', '4');
        await expect(bad).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
        const [r1, r2] = await Promise.all([ok1, ok2]);
        expect(r2.revision).toBe(r1.revision + 1);
        expect(await store.get('g/b')).toBeUndefined();
        await settle();
        expect(w.events().map((e) => [e.kv.key, e.kv.modRevision])).toEqual([
          ['g/a', r1.revision],
          ['g/d', r2.revision],
        ]);
        w.close();
      });
    });

    describe('txn limits and validation', () => {
      const puts = (n: number, p = 'x/') => Array.from({ length: n }, (_, i): Op => ({ type: 'put', key: `${p}${i}`, value: 'v' }));

      it(`accepts ${MAX_TXN_OPS} ops and rejects more, applying nothing`, async () => {
        const r = await store.txn([], puts(MAX_TXN_OPS));
        expect((await store.range('x/')).kvs).toHaveLength(MAX_TXN_OPS);
        for (const args of [
          [[], puts(MAX_TXN_OPS + 1, 'y/')],
          [[], puts(100, 'y/'), puts(MAX_TXN_OPS - 99, 'z/')],
          [Array.from({ length: MAX_TXN_OPS + 1 }, (): Compare => ({ key: 'k', target: 'version', op: '=', value: 0 })), puts(1, 'y/')],
        ] as [Compare[], Op[], Op[]?][]) {
          await expect(store.txn(...args)).rejects.toBeInstanceOf(StoreTooManyOpsError);
        }
        expect(await store.currentRevision()).toBe(r.revision);
        expect((await store.range('y/')).kvs).toEqual([]);
        expect((await store.range('z/')).kvs).toEqual([]);
      });

      it('rejects a txn that writes one key twice, as etcd does', async () => {
        await put(store, 'd/1', 'v');
        const rev = await store.currentRevision();
        for (const ops of [
          [{ type: 'put', key: 'd/2', value: '1' }, { type: 'put', key: 'd/2', value: '2' }],
          [{ type: 'put', key: 'd/1', value: '1' }, { type: 'delete', key: 'd/1' }],
          [{ type: 'deletePrefix', prefix: 'd/' }, { type: 'put', key: 'd/3', value: '1' }],
        ] as Op[][]) {
          const err = await store.txn([], ops).catch((e) => e);
          expect(err).toBeInstanceOf(StoreError);
          expect(err.code).toBe('duplicate_key');
          // The failure branch is checked too, whichever branch would run.
          const err2 = await store.txn([], [], ops).catch((e) => e);
          expect(err2.code).toBe('duplicate_key');
        }
        expect(await store.currentRevision()).toBe(rev);
        // Overlapping deletes are fine: the key is deleted once.
        const w = record(store, '', rev);
        await store.txn([], [{ type: 'delete', key: 'd/1' }, { type: 'deletePrefix', prefix: 'd/' }, { type: 'delete', key: 'd/1' }]);
        await settle();
        expect(summary(w.events())).toEqual([['delete', 'd/1', rev + 1, 'v']]);
      });

      it('deletePrefix deletes every key under the prefix in one revision', async () => {
        for (const k of ['a/1', 'a/2', 'a/b/3', 'a0', 'a']) await put(store, k, `v-${k}`);
        const before = await store.currentRevision();
        const w = record(store, '', before);
        const r = await store.txn([], [{ type: 'deletePrefix', prefix: 'a/' }, { type: 'put', key: 'z', value: 'after' }]);
        expect(keysOf((await store.range('')).kvs)).toEqual(['a', 'a0', 'z']);
        await settle();
        expect(w.batches).toHaveLength(1);
        expect(summary(w.events())).toEqual([
          ['delete', 'a/1', r.revision, 'v-a/1'],
          ['delete', 'a/2', r.revision, 'v-a/2'],
          ['delete', 'a/b/3', r.revision, 'v-a/b/3'],
          ['put', 'z', r.revision, undefined],
        ]);
        const all = await store.txn([], [{ type: 'deletePrefix', prefix: '' }]);
        expect(all.revision).toBe(r.revision + 1);
        expect((await store.range('')).kvs).toEqual([]);
      });
    });

    describe('watch', () => {
      /** history writes a fixed sequence and returns its revisions. */
      async function history() {
        const r1 = (await put(store, 'a/1', 'one')).revision;
        const r2 = (await put(store, 'a/2', 'two')).revision;
        const r3 = (await store.txn([], [{ type: 'put', key: 'a/1', value: 'uno' }, { type: 'delete', key: 'a/2' }])).revision;
        const r4 = (await put(store, 'b/1', 'bee')).revision;
        const r5 = (await del(store, 'a/1')).revision;
        return [r1, r2, r3, r4, r5] as const;
      }

      it('from 0 replays every change exactly once, in order, with prevKv, then goes live', async () => {
        const [r1, r2, r3, r4, r5] = await history();
        const w = record(store, '', 0);
        await settle();
        expect(summary(w.events())).toEqual([
          ['put', 'a/1', r1, undefined],
          ['put', 'a/2', r2, undefined],
          ['put', 'a/1', r3, 'one'],
          ['delete', 'a/2', r3, 'two'],
          ['put', 'b/1', r4, undefined],
          ['delete', 'a/1', r5, 'uno'],
        ]);
        const del5 = w.events()[5]!;
        expect(del5.kv).toMatchObject({ key: 'a/1', modRevision: r5 });
        expect(del5.prevKv).toEqual({ key: 'a/1', value: 'uno', createRevision: r1, modRevision: r3, version: 2, lease: 0 });
        expect(w.batches.every((b) => !b.progress)).toBe(true);
        expect(w.batches[w.batches.length - 1]!.revision).toBe(r5);

        const r6 = (await put(store, 'c', 'live')).revision;
        await settle();
        expect(summary(w.events()).slice(6)).toEqual([['put', 'c', r6, undefined]]);
        const revs = w.batches.map((b) => b.revision);
        expect(revs).toEqual([...revs].sort((a, b) => a - b));
        expect(new Set(revs).size).toBe(revs.length);
        expect(w.errors).toEqual([]);
        w.close();
      });

      it('from a mid revision delivers only later changes', async () => {
        const [, , r3, r4, r5] = await history();
        const w = record(store, '', r3);
        await settle();
        expect(summary(w.events())).toEqual([
          ['put', 'b/1', r4, undefined],
          ['delete', 'a/1', r5, 'uno'],
        ]);
        const current = record(store, '', r5);
        await settle();
        expect(current.batches).toEqual([]);
      });

      it('filters by prefix: "a/" does not see "a0" or "b/"', async () => {
        const w = record(store, 'a/', 0);
        await put(store, 'a0', 'x');
        await put(store, 'b/1', 'x');
        const r = await put(store, 'a/x', 'x');
        await store.txn([], [{ type: 'put', key: 'a/y', value: '1' }, { type: 'put', key: 'b/2', value: '1' }]);
        await settle();
        expect(summary(w.events())).toEqual([
          ['put', 'a/x', r.revision, undefined],
          ['put', 'a/y', r.revision + 1, undefined],
        ]);
        expect(w.batches.map((b) => b.revision)).toEqual([r.revision, r.revision + 1]);
      });

      it('keeps op order within a txn', async () => {
        const w = record(store, '', 0);
        await store.txn([], [{ type: 'put', key: 'b', value: '1' }, { type: 'put', key: 'a', value: '1' }, { type: 'put', key: 'c', value: '1' }]);
        await settle();
        expect(w.events().map((e) => e.kv.key)).toEqual(['b', 'a', 'c']);
        const replay = record(store, '', 0);
        await settle();
        expect(replay.events().map((e) => e.kv.key)).toEqual(['b', 'a', 'c']);
      });

      it('misses nothing and repeats nothing when writes race the watch start', async () => {
        await put(store, 'k', '0');
        const writes: Promise<unknown>[] = [];
        for (let i = 1; i <= 5; i++) writes.push(put(store, 'k', String(i)));
        const w = record(store, 'k', 1); // registered while the writes above are in flight
        for (let i = 6; i <= 10; i++) writes.push(put(store, 'k', String(i)));
        await Promise.all(writes);
        await settle();
        expect(w.events().map((e) => e.kv.value)).toEqual(Array.from({ length: 10 }, (_, i) => String(i + 1)));
      });

      it('from a future revision delivers only changes after it', async () => {
        const r1 = (await put(store, 'k', '1')).revision;
        const w = record(store, '', r1 + 1);
        await put(store, 'k', '2');
        const r3 = (await put(store, 'k', '3')).revision;
        await settle();
        expect(summary(w.events())).toEqual([['put', 'k', r3, '2']]);
      });

      it('stops delivering after close()', async () => {
        const w = record(store, '', 0);
        await put(store, 'a', '1');
        await settle();
        w.close();
        await put(store, 'a', '2');
        clock.advance(60_000);
        await settle();
        expect(w.events()).toHaveLength(1);
        expect(w.errors).toEqual([]);
      });

      it('ends a watch whose handler throws, with onError(thrown)', async () => {
        const boom = new Error('boom');
        const w = record(store, '', 0, () => {
          throw boom;
        });
        await put(store, 'a', '1');
        await put(store, 'a', '2');
        await settle();
        expect(w.batches).toHaveLength(1);
        expect(w.errors).toEqual([boom]);
        await put(store, 'a', '3');
        clock.advance(10_000);
        await settle();
        expect(w.batches).toHaveLength(1);
        expect(w.errors).toHaveLength(1);
      });

      it('lets a handler write to the store without losing order', async () => {
        let reacted = false;
        const w = record(store, '', 0, (b) => {
          if (!reacted && b.events.some((e) => e.kv.key === 'trigger')) {
            reacted = true;
            void store.txn([], [{ type: 'put', key: 'reaction', value: '1' }]);
          }
        });
        const r = await put(store, 'trigger', '1');
        await settle();
        await put(store, 'later', '1');
        await settle();
        expect(summary(w.events())).toEqual([
          ['put', 'trigger', r.revision, undefined],
          ['put', 'reaction', r.revision + 1, undefined],
          ['put', 'later', r.revision + 2, undefined],
        ]);
        expect(w.errors).toEqual([]);
      });

      it('answers a progress request after the changes already due, at the current revision', async () => {
        const w = record(store, 'p/', 0);
        const mine = await put(store, 'p/a', '1');
        const other = await put(store, 'q/b', '2');
        w.requestProgress();
        await settle();
        expect(w.batches).toEqual([
          { events: [expect.objectContaining({ type: 'put', kv: expect.objectContaining({ key: 'p/a', modRevision: mine.revision }) })], revision: mine.revision },
          { events: [], revision: other.revision, progress: true },
        ]);
        w.close();
        w.requestProgress();
        await settle();
        expect(w.batches).toHaveLength(2);
      });

      it('sends progress notifications to a quiet filtered watcher, carrying it past compaction', async () => {
        const start = (await put(store, 'quiet/x', '1')).revision;
        const w = record(store, 'quiet/', start);
        for (let i = 0; i < 5; i++) await put(store, 'noisy/k', String(i));
        const current = await store.currentRevision();
        await store.compact(current);
        await settle();
        expect(w.batches).toEqual([]);

        clock.advance(5_000);
        await settle();
        expect(w.batches).toEqual([{ events: [], revision: current, progress: true }]);
        expect(w.batches[0]!.revision).toBeGreaterThanOrEqual(await store.compactRevision());

        // A re-watch from the progress revision works; from the watch's start it is compacted.
        const resumed = record(store, 'quiet/', w.batches[0]!.revision);
        const stale = record(store, 'quiet/', start);
        const r = await put(store, 'quiet/y', '2');
        await settle();
        expect(resumed.errors).toEqual([]);
        expect(summary(resumed.events())).toEqual([['put', 'quiet/y', r.revision, undefined]]);
        expect(stale.errors).toHaveLength(1);
        expect(stale.errors[0]).toBeInstanceOf(StoreCompactedError);
        expect(stale.batches).toEqual([]);

        clock.advance(5_000);
        await settle();
        expect(w.batches.filter((b) => b.progress).map((b) => b.revision)).toEqual([current, r.revision]);
        expect(w.events().map((e) => e.kv.key)).toEqual(['quiet/y']);
      });
    });

    describe('compaction', () => {
      it('keeps current values readable and rejects reads and watches below the compact revision', async () => {
        await put(store, 'k', 'v1');
        await put(store, 'k', 'v2');
        await put(store, 'gone', 'x');
        const r4 = (await del(store, 'gone')).revision;
        const r5 = (await put(store, 'other', 'o')).revision;
        await store.compact(r4);
        expect(await store.compactRevision()).toBe(r4);
        expect((await store.get('k'))?.value).toBe('v2');
        expect((await store.get('k'))?.version).toBe(2);
        expect(keysOf((await store.range('')).kvs)).toEqual(['k', 'other']);
        expect(keysOf((await store.range('', { atRevision: r4 })).kvs)).toEqual(['k']);

        const err = await store.range('', { atRevision: r4 - 1 }).catch((e) => e);
        expect(err).toBeInstanceOf(StoreCompactedError);
        expect(err).toMatchObject({ requested: r4 - 1, compactRevision: r4 });

        const w = record(store, '', r4 - 1);
        await settle();
        expect(w.batches).toEqual([]);
        expect(w.errors).toHaveLength(1);
        expect(w.errors[0]).toBeInstanceOf(StoreCompactedError);
        await put(store, 'k', 'v3');
        await settle();
        expect(w.batches).toEqual([]);

        const ok = record(store, '', r4);
        await settle();
        expect(ok.errors).toEqual([]);
        expect(summary(ok.events())).toEqual([
          ['put', 'other', r5, undefined],
          ['put', 'k', r5 + 1, 'v2'],
        ]);
      });

      it('keeps each key as of the compact revision for later reads', async () => {
        const r1 = (await put(store, 'k1', 'a')).revision;
        const r2 = (await put(store, 'k1', 'b')).revision;
        const r3 = (await put(store, 'k2', 'c')).revision;
        const r4 = (await del(store, 'k2')).revision;
        const r5 = (await put(store, 'k1', 'd')).revision;
        await store.compact(r3);
        expect((await store.range('', { atRevision: r3 })).kvs.map((kv) => [kv.key, kv.value, kv.modRevision])).toEqual([
          ['k1', 'b', r2],
          ['k2', 'c', r3],
        ]);
        expect((await store.range('', { atRevision: r4 })).kvs.map((kv) => kv.value)).toEqual(['b']);
        expect((await store.range('', { atRevision: r5 })).kvs.map((kv) => [kv.value, kv.createRevision, kv.version])).toEqual([['d', r1, 3]]);
        const w = record(store, '', r3);
        await settle();
        expect(summary(w.events())).toEqual([
          ['delete', 'k2', r4, 'c'],
          ['put', 'k1', r5, 'b'],
        ]);
        await store.compact(r5);
        expect((await store.range('')).kvs.map((kv) => [kv.key, kv.value, kv.version])).toEqual([['k1', 'd', 3]]);
        const r6 = (await put(store, 'k2', 'again')).revision;
        expect(await store.get('k2')).toMatchObject({ createRevision: r6, version: 1 });
      });

      it('rejects compacting the future or below the compact revision; the same revision is a no-op', async () => {
        const r = (await put(store, 'k', 'v')).revision;
        await put(store, 'k', 'w');
        await expect(store.compact(r + 5)).rejects.toBeInstanceOf(StoreFutureRevisionError);
        await store.compact(r + 1);
        await store.compact(r + 1);
        await expect(store.compact(r)).rejects.toBeInstanceOf(StoreCompactedError);
        expect(await store.compactRevision()).toBe(r + 1);
      });
    });

    describe('leases', () => {
      it('attaches keys, keeps alive without a revision, and expires them in one revision', async () => {
        const lease = await store.leaseGrant(10);
        expect(lease.ttlSeconds).toBe(10);
        await put(store, 'node/1', 'a', lease.id);
        await put(store, 'node/2', 'b', lease.id);
        await put(store, 'plain', 'c');
        expect((await store.get('node/1'))?.lease).toBe(lease.id);
        const before = await store.currentRevision();
        const w = record(store, '', before);

        clock.advance(8_000);
        await store.leaseKeepAlive(lease.id);
        expect(await store.currentRevision()).toBe(before);
        clock.advance(8_000); // 16s after grant, 8s after the keep-alive
        expect(await store.get('node/1')).toBeDefined();
        expect(await store.currentRevision()).toBe(before);

        clock.advance(3_000); // past the renewed TTL
        await settle();
        expect(await store.get('node/1')).toBeUndefined();
        expect(await store.get('node/2')).toBeUndefined();
        expect((await store.get('plain'))?.value).toBe('c');
        expect(await store.currentRevision()).toBe(before + 1);
        const deletes = w.events().filter((e) => e.type === 'delete');
        expect(deletes.map((e) => [e.kv.key, e.kv.modRevision, e.prevKv?.lease]).sort()).toEqual([
          ['node/1', before + 1, lease.id],
          ['node/2', before + 1, lease.id],
        ]);
        await expect(store.leaseKeepAlive(lease.id)).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
        clock.advance(60_000);
        expect(await store.currentRevision()).toBe(before + 1);
      });

      it('does not write a revision when a lease without keys expires', async () => {
        await put(store, 'k', 'v');
        const rev = await store.currentRevision();
        const lease = await store.leaseGrant(1);
        clock.advance(5_000);
        expect(await store.currentRevision()).toBe(rev);
        await expect(store.leaseKeepAlive(lease.id)).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
      });

      it('treats a lease past its TTL as gone even before the expiry sweep runs', async () => {
        clock.advance(500); // sweeps run on whole seconds from the start; this lease ends between two
        const lease = await store.leaseGrant(1);
        await put(store, 'k', 'v', lease.id);
        clock.advance(1_200);
        await expect(store.txn([], [{ type: 'put', key: 'j', value: '1', lease: lease.id }])).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
        await expect(store.leaseKeepAlive(lease.id)).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
        expect(await store.get('j')).toBeUndefined();
        clock.advance(1_000);
        expect(await store.get('k')).toBeUndefined();
      });

      it('revokes: deletes the attached keys in one revision', async () => {
        const lease = await store.leaseGrant(60);
        await store.txn([], [
          { type: 'put', key: 'l/1', value: '1', lease: lease.id },
          { type: 'put', key: 'l/2', value: '2', lease: lease.id },
          { type: 'put', key: 'l/3', value: '3', lease: lease.id },
        ]);
        await put(store, 'l/3', 'detached'); // a put without lease detaches the key
        const before = await store.currentRevision();
        await store.leaseRevoke(lease.id);
        expect(await store.currentRevision()).toBe(before + 1);
        expect(keysOf((await store.range('l/')).kvs)).toEqual(['l/3']);
        expect((await store.get('l/3'))?.lease).toBe(0);
        await expect(store.leaseRevoke(lease.id)).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
        await expect(store.leaseKeepAlive(lease.id)).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
      });

      it('rejects a put with an unknown lease, applying nothing', async () => {
        const rev = await store.currentRevision();
        const err = await store.txn([], [{ type: 'put', key: 'ok', value: '1' }, { type: 'put', key: 'x', value: '1', lease: 424242 }]).catch((e) => e);
        expect(err).toBeInstanceOf(StoreLeaseNotFoundError);
        expect(await store.currentRevision()).toBe(rev);
        expect(await store.get('ok')).toBeUndefined();
        await expect(store.leaseGrant(0)).rejects.toBeInstanceOf(StoreError);
      });

      it('gives distinct lease ids', async () => {
        const ids = new Set<number>();
        for (let i = 0; i < 5; i++) ids.add((await store.leaseGrant(5)).id);
        expect(ids.size).toBe(5);
        for (const id of ids) expect(id).toBeGreaterThan(0);
      });
    });

    describe('close', () => {
      it('ends open watches with StoreClosedError and rejects every later call', async () => {
        const w = record(store, '', 0);
        await put(store, 'a', '1');
        await store.close();
        await settle();
        expect(w.events()).toHaveLength(1);
        expect(w.errors).toHaveLength(1);
        expect(w.errors[0]).toBeInstanceOf(StoreClosedError);
        await expect(store.get('a')).rejects.toBeInstanceOf(StoreClosedError);
        await expect(store.range('')).rejects.toBeInstanceOf(StoreClosedError);
        await expect(put(store, 'a', '2')).rejects.toBeInstanceOf(StoreClosedError);
        await expect(store.compact(1)).rejects.toBeInstanceOf(StoreClosedError);
        await expect(store.currentRevision()).rejects.toBeInstanceOf(StoreClosedError);
        await expect(store.leaseGrant(5)).rejects.toBeInstanceOf(StoreClosedError);
        expect(() => store.watch('', 0, { onBatch: () => {}, onError: () => {} })).toThrow(StoreClosedError);
        clock.advance(60_000); // no timer may fire into a closed store
        await store.close(); // idempotent
      });
    });

    it('matches a Map model under random puts, deletes and txns (property)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 30 }), async (commands) => {
          const s = await factory({ clock: new FakeClock() });
          try {
            await checkAgainstModel(s, commands);
          } finally {
            await s.close();
          }
        }),
        { numRuns: 60 },
      );
    });
  });
}

const KEYS = ['a', 'a/1', 'a/2', 'a/b/1', 'a0', 'b', 'b/1', 'é', '😀', '\uFFFD'];
const PREFIXES = ['', 'a', 'a/', 'b/', 'z'];
const keyArb = fc.constantFrom(...KEYS);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant('put' as const), key: keyArb, value: fc.string({ maxLength: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('delete' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('deletePrefix' as const), prefix: fc.constantFrom(...PREFIXES) }) },
);
const compareArb: fc.Arbitrary<Compare> = fc.oneof(
  fc.record({ key: keyArb, target: fc.constantFrom('mod' as const, 'create' as const, 'version' as const), op: fc.constantFrom('=' as const, '!=' as const, '<' as const, '>' as const), value: fc.nat(12) }),
  fc.record({ key: keyArb, target: fc.constant('value' as const), op: fc.constantFrom('=' as const, '!=' as const, '<' as const, '>' as const), value: fc.string({ maxLength: 2 }) }),
);
type Command =
  | { kind: 'txn'; compares: Compare[]; success: Op[]; failure: Op[] }
  | { kind: 'compact'; fraction: number };
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('txn' as const), compares: fc.array(compareArb, { maxLength: 2 }), success: fc.array(opArb, { minLength: 1, maxLength: 4 }), failure: fc.array(opArb, { maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }) },
);

/** invalidBranch mirrors etcd's rule: no key put twice, and none both put and deleted. */
function invalidBranch(ops: Op[]): boolean {
  const puts = ops.filter((o) => o.type === 'put').map((o) => o.key);
  if (new Set(puts).size !== puts.length) return true;
  return ops.some((o) => (o.type === 'delete' ? puts.includes(o.key) : o.type === 'deletePrefix' && puts.some((k) => k.startsWith(o.prefix))));
}

const sortedValues = (m: Map<string, KeyValue>, prefix = '') =>
  [...m.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) => byteOrder(a.key, b.key));

/** checkAgainstModel applies commands to the store and to a Map, and checks they agree throughout. */
async function checkAgainstModel(s: Store, commands: Command[]): Promise<void> {
  const model = new Map<string, KeyValue>();
  /** The model's state after each revision. */
  const states = new Map<number, Map<string, KeyValue>>([[0, new Map()]]);
  let rev = 0;
  let compacted = 0;
  for (const cmd of commands) {
    if (cmd.kind === 'compact') {
      const target = compacted + Math.floor(cmd.fraction * (rev - compacted));
      if (target > compacted) {
        await s.compact(target);
        compacted = target;
      }
      continue;
    }
    if (invalidBranch(cmd.success) || invalidBranch(cmd.failure)) {
      await expect(s.txn(cmd.compares, cmd.success, cmd.failure)).rejects.toMatchObject({ code: 'duplicate_key' });
      continue;
    }
    const result = await s.txn(cmd.compares, cmd.success, cmd.failure);
    const succeeded = cmd.compares.every((c) => compareHolds(c, model.get(c.key)));
    expect(result.succeeded).toBe(succeeded);
    const next = new Map(model);
    let changed = false;
    for (const op of succeeded ? cmd.success : cmd.failure) {
      if (op.type === 'put') {
        const prev = next.get(op.key);
        next.set(op.key, {
          key: op.key,
          value: op.value,
          createRevision: prev?.createRevision ?? result.revision,
          modRevision: result.revision,
          version: (prev?.version ?? 0) + 1,
          lease: 0,
        });
        changed = true;
      } else {
        for (const key of [...next.keys()]) {
          if (op.type === 'delete' ? key === op.key : key.startsWith(op.prefix)) changed = next.delete(key) || changed;
        }
      }
    }
    if (changed) {
      expect(result.revision).toBeGreaterThan(rev);
      rev = result.revision;
      model.clear();
      for (const [k, v] of next) model.set(k, v);
      states.set(rev, next);
    } else {
      expect(result.revision).toBe(rev);
    }
  }

  expect(await s.currentRevision()).toBe(rev);
  for (const key of KEYS) expect(await s.get(key)).toEqual(model.get(key));
  for (const prefix of PREFIXES) expect((await s.range(prefix)).kvs).toEqual(sortedValues(model, prefix));

  // Every retained revision reads as the model did then.
  for (const [r, state] of states) {
    if (r === 0) continue; // atRevision 0 means "current", as in etcd
    if (r < compacted) {
      await expect(s.range('', { atRevision: r })).rejects.toBeInstanceOf(StoreCompactedError);
      continue;
    }
    const paged: KeyValue[] = [];
    let cont: string | undefined;
    do {
      const page = await s.range('', { atRevision: r, limit: 2, continue: cont });
      expect(page.revision).toBe(r);
      paged.push(...page.kvs);
      cont = page.continue;
    } while (cont);
    expect(paged).toEqual(sortedValues(state));
  }

  // A watch from the compact revision, applied to the state there, replays to the final state.
  const base = [...states.entries()].filter(([r]) => r <= compacted).pop()![1];
  const replayed = new Map(base);
  const batches: WatchBatch[] = [];
  const errors: Error[] = [];
  const w = s.watch('', compacted, { onBatch: (b) => batches.push(b), onError: (e) => errors.push(e) });
  await settle();
  w.close();
  expect(errors).toEqual([]);
  let last = compacted;
  for (const b of batches) {
    expect(b.revision).toBeGreaterThan(last);
    for (const e of b.events) {
      expect(e.kv.modRevision).toBeGreaterThan(compacted);
      expect(e.kv.modRevision).toBeLessThanOrEqual(b.revision);
      if (e.prevKv) expect(e.prevKv).toEqual(replayed.get(e.kv.key));
      if (e.type === 'put') replayed.set(e.kv.key, e.kv);
      else {
        expect(replayed.has(e.kv.key)).toBe(true);
        replayed.delete(e.kv.key);
      }
    }
    last = b.revision;
  }
  expect(sortedValues(replayed)).toEqual(sortedValues(model));
}
