/**
 * The Store conformance suite: every backend (memory, SQLite, etcd) runs
 * the same checks, so "implements Store" means the same thing for all.
 * Imported only by tests (it defines vitest suites). How a case stays
 * backend-neutral (relative revisions, a prefix per case, time as a
 * capability) is in conformanceKit.ts; the watch, compaction and close
 * cases are in conformanceWatch.ts, the model-based property in
 * conformanceModel.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../base/clock.js';
import { checkAgainstModelProperty } from './conformanceModel.js';
import { Time, byteOrder, del, keysOf, put, record, summary, type CaseContext, type ConformanceOptions, type StoreFactory } from './conformanceKit.js';
import { watchCases } from './conformanceWatch.js';
import {
  MAX_TXN_OPS,
  StoreError,
  StoreFutureRevisionError,
  StoreLeaseNotFoundError,
  StoreTooManyOpsError,
  type Compare,
  type Op,
  type Store,
} from './store.js';

export type { StoreFactory, StoreTime } from './conformanceKit.js';

let cases = 0;

/** runStoreConformance defines the vitest suite every Store backend must pass. */
export function runStoreConformance(name: string, factory: StoreFactory, opts: ConformanceOptions = {}): void {
  const spec = opts.time ?? { kind: 'fake' };
  describe(`Store conformance: ${name}`, () => {
    let clock: FakeClock;
    let store: Store;
    let time: Time;
    let base: number;
    const opened: Store[] = [];
    const open = async () => {
      const s = await factory({ clock, prefix: `conformance/${process.pid}/${++cases}/` });
      opened.push(s);
      return s;
    };
    const ctx: CaseContext = {
      get store() {
        return store;
      },
      get base() {
        return base;
      },
      get time() {
        return time;
      },
      open,
    };

    beforeEach(async () => {
      clock = new FakeClock();
      time = new Time(spec, clock);
      store = await open();
      base = await store.currentRevision();
      // A case's keys are its own, whatever else the backend holds.
      expect((await store.range('')).kvs).toEqual([]);
      expect(await store.compactRevision()).toBeLessThanOrEqual(base);
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    describe('revisions', () => {
      it('gives every write txn a strictly higher revision than the store started at', async () => {
        const r1 = await put(store, 'a', '1');
        const r2 = await put(store, 'b', '2');
        const r3 = await del(store, 'a');
        expect(r1).toEqual({ succeeded: true, revision: expect.any(Number) });
        expect(r1.revision).toBeGreaterThan(base);
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
        await time.delivered('the txn', () => w.events().length === 3);
        expect(w.events().map((e) => e.kv.modRevision)).toEqual([r.revision, r.revision, r.revision]);
        expect(w.eventBatches()).toHaveLength(1);
        expect(w.eventBatches()[0]!.revision).toBe(r.revision);
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
        const err = await store.range('', { atRevision: r.revision + 1 }).catch((e) => e);
        expect(err).toBeInstanceOf(StoreFutureRevisionError);
        expect(err).toMatchObject({ requested: r.revision + 1, current: r.revision });
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

      it('orders values by UTF-8 bytes in < and >, as etcd does', async () => {
        await put(store, 'k', '😀');
        // UTF-16 would put U+1F600 (a surrogate pair, D83D…) below U+FFFF; its UTF-8 bytes (F0…) are above EF BF BF.
        expect(await holds({ target: 'value', op: '>', value: '\uFFFF' })).toBe(true);
        expect(await holds({ target: 'value', op: '<', value: '\uFFFF' })).toBe(false);
        expect(await holds({ target: 'value', op: '<', value: '😁' })).toBe(true);
        expect(await holds({ target: 'value', op: '>', value: 'é' })).toBe(true);
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
        const w = record(store, 'g/', base);
        const ok1 = put(store, 'g/a', '1');
        const bad = store.txn([], [{ type: 'put', key: 'g/b', value: '2' }, { type: 'put', key: 'g/c', value: '3', lease: 987654 }]);
        const ok2 = put(store, 'g/d', '4');
        const err = await bad.catch((e) => e);
        expect(err).toBeInstanceOf(StoreLeaseNotFoundError);
        expect(err).toMatchObject({ leaseId: 987654 });
        const [r1, r2] = await Promise.all([ok1, ok2]);
        expect(r2.revision).toBe(r1.revision + 1);
        expect(await store.get('g/b')).toBeUndefined();
        await time.delivered('both puts', () => w.events().length >= 2);
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
        await time.delivered('the delete', () => w.events().length >= 1);
        expect(summary(w.events())).toEqual([['delete', 'd/1', rev + 1, 'v']]);
      });

      it('deletePrefix deletes every key under the prefix in one revision', async () => {
        for (const k of ['a/1', 'a/2', 'a/b/3', 'a0', 'a']) await put(store, k, `v-${k}`);
        const before = await store.currentRevision();
        const w = record(store, '', before);
        const r = await store.txn([], [{ type: 'deletePrefix', prefix: 'a/' }, { type: 'put', key: 'z', value: 'after' }]);
        expect(keysOf((await store.range('')).kvs)).toEqual(['a', 'a0', 'z']);
        await time.delivered('the txn', () => w.events().length >= 4);
        expect(w.eventBatches()).toHaveLength(1);
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

    watchCases(ctx);

    describe('leases', () => {
      it('attaches keys, keeps alive without a revision, and expires them in one revision', async () => {
        const T = time.ttl * 1000;
        const lease = await store.leaseGrant(time.ttl);
        expect(lease.ttlSeconds).toBe(time.ttl);
        await put(store, 'node/1', 'a', lease.id);
        await put(store, 'node/2', 'b', lease.id);
        await put(store, 'plain', 'c');
        expect((await store.get('node/1'))?.lease).toBe(lease.id);
        const before = await store.currentRevision();
        const w = record(store, '', before);

        await time.elapse(0.6 * T);
        await store.leaseKeepAlive(lease.id);
        expect(await store.currentRevision()).toBe(before);
        await time.elapse(0.6 * T); // 1.2 TTL after grant, 0.6 after the keep-alive
        expect(await store.get('node/1')).toBeDefined();
        expect(await store.currentRevision()).toBe(before);

        // Past the renewed TTL, within the backend's slack.
        await time.within(0.4 * T + time.leaseSlackMs, 'lease expiry', async () => (await store.get('node/1')) === undefined);
        expect(await store.get('node/2')).toBeUndefined();
        expect((await store.get('plain'))?.value).toBe('c');
        expect(await store.currentRevision()).toBe(before + 1);
        await time.delivered('the expiry', () => w.events().length >= 2);
        const deletes = w.events().filter((e) => e.type === 'delete');
        expect(deletes.map((e) => [e.kv.key, e.kv.modRevision, e.prevKv?.lease]).sort()).toEqual([
          ['node/1', before + 1, lease.id],
          ['node/2', before + 1, lease.id],
        ]);
        await expect(store.leaseKeepAlive(lease.id)).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
        await time.letTimersRun();
        expect(await store.currentRevision()).toBe(before + 1);
      });

      it('does not write a revision when a lease without keys expires', async () => {
        await put(store, 'k', 'v');
        const rev = await store.currentRevision();
        const lease = await store.leaseGrant(1);
        await time.elapse(1_000 + time.leaseSlackMs);
        expect(await store.currentRevision()).toBe(rev);
        await expect(store.leaseKeepAlive(lease.id)).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
        expect(await store.currentRevision()).toBe(rev);
      });

      it('treats a lease past its TTL as gone even before the expiry sweep runs', async () => {
        await time.elapse(500); // fake sweeps run on whole seconds from the start; this lease ends between two
        const lease = await store.leaseGrant(1);
        await put(store, 'k', 'v', lease.id);
        await time.elapse(1_200);
        await expect(store.txn([], [{ type: 'put', key: 'j', value: '1', lease: lease.id }])).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
        await expect(store.leaseKeepAlive(lease.id)).rejects.toBeInstanceOf(StoreLeaseNotFoundError);
        expect(await store.get('j')).toBeUndefined();
        await time.within(time.leaseSlackMs, 'the expired lease’s key', async () => (await store.get('k')) === undefined);
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

    it('matches a Map model under random puts, deletes and txns (property)', () => checkAgainstModelProperty(open, time));
  });
}
