/**
 * The Store conformance cases for watches, progress notifications,
 * compaction and close (see conformance.ts). Imported only by tests.
 */
import { describe, expect, it } from 'vitest';
import { byteOrder, caughtUp, checkOrder, del, keysOf, put, record, summary, type CaseContext, type Recorder } from './conformanceKit.js';
import { StoreClosedError, StoreCompactedError, StoreFutureRevisionError, type KeyValue } from './store.js';

/** lastProgress is the revision of w's latest progress batch, or undefined. */
const lastProgress = (w: Recorder) => w.progress().at(-1)?.revision;

export function watchCases(ctx: CaseContext): void {
  describe('watch', () => {
    /** history writes a fixed sequence and returns its revisions. */
    async function history() {
      const { store } = ctx;
      const r1 = (await put(store, 'a/1', 'one')).revision;
      const r2 = (await put(store, 'a/2', 'two')).revision;
      const r3 = (await store.txn([], [{ type: 'put', key: 'a/1', value: 'uno' }, { type: 'delete', key: 'a/2' }])).revision;
      const r4 = (await put(store, 'b/1', 'bee')).revision;
      const r5 = (await del(store, 'a/1')).revision;
      return [r1, r2, r3, r4, r5] as const;
    }

    it('from the start replays every change exactly once, in order, with prevKv, then goes live', async () => {
      const { store, time, base } = ctx;
      const [r1, r2, r3, r4, r5] = await history();
      const w = record(store, '', base);
      await time.delivered('the history', () => w.events().length >= 6);
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
      expect(w.eventBatches().at(-1)!.revision).toBe(r5);

      const r6 = (await put(store, 'c', 'live')).revision;
      await time.delivered('the live put', () => w.events().length >= 7);
      expect(summary(w.events()).slice(6)).toEqual([['put', 'c', r6, undefined]]);
      await caughtUp(time, w, r6);
      expect(w.events()).toHaveLength(7);
      checkOrder(w);
      expect(w.errors).toEqual([]);
      w.close();
    });

    it('from a mid revision delivers only later changes', async () => {
      const { store, time } = ctx;
      const [, , r3, r4, r5] = await history();
      const w = record(store, '', r3);
      await time.delivered('the later changes', () => w.events().length >= 2);
      expect(summary(w.events())).toEqual([
        ['put', 'b/1', r4, undefined],
        ['delete', 'a/1', r5, 'uno'],
      ]);
      const current = record(store, '', r5);
      await caughtUp(time, current, r5);
      expect(current.eventBatches()).toEqual([]);
      await caughtUp(time, w, r5);
      expect(w.events()).toHaveLength(2);
    });

    it('filters by prefix: "a/" does not see "a0" or "b/"', async () => {
      const { store, time, base } = ctx;
      const w = record(store, 'a/', base);
      await put(store, 'a0', 'x');
      await put(store, 'b/1', 'x');
      const r = await put(store, 'a/x', 'x');
      const last = await store.txn([], [{ type: 'put', key: 'a/y', value: '1' }, { type: 'put', key: 'b/2', value: '1' }]);
      await caughtUp(time, w, last.revision);
      expect(summary(w.events())).toEqual([
        ['put', 'a/x', r.revision, undefined],
        ['put', 'a/y', r.revision + 1, undefined],
      ]);
      expect(w.eventBatches().map((b) => b.revision)).toEqual([r.revision, r.revision + 1]);
      checkOrder(w);
    });

    it('keeps op order within a txn', async () => {
      const { store, time, base } = ctx;
      const w = record(store, '', base);
      await store.txn([], [{ type: 'put', key: 'b', value: '1' }, { type: 'put', key: 'a', value: '1' }, { type: 'put', key: 'c', value: '1' }]);
      await time.delivered('the txn', () => w.events().length >= 3);
      expect(w.events().map((e) => e.kv.key)).toEqual(['b', 'a', 'c']);
      const replay = record(store, '', base);
      await time.delivered('the replay', () => replay.events().length >= 3);
      expect(replay.events().map((e) => e.kv.key)).toEqual(['b', 'a', 'c']);
    });

    it('misses nothing and repeats nothing when writes race the watch start', async () => {
      const { store, time } = ctx;
      const r0 = await put(store, 'k', '0');
      const writes: Promise<unknown>[] = [];
      for (let i = 1; i <= 5; i++) writes.push(put(store, 'k', String(i)));
      const w = record(store, 'k', r0.revision); // registered while the writes above are in flight
      for (let i = 6; i <= 10; i++) writes.push(put(store, 'k', String(i)));
      await Promise.all(writes);
      await caughtUp(time, w, await store.currentRevision());
      expect(w.events().map((e) => e.kv.value)).toEqual(Array.from({ length: 10 }, (_, i) => String(i + 1)));
      checkOrder(w);
    });

    it('from a future revision delivers only changes after it', async () => {
      const { store, time } = ctx;
      const r1 = (await put(store, 'k', '1')).revision;
      const w = record(store, '', r1 + 1);
      await put(store, 'k', '2');
      const r3 = (await put(store, 'k', '3')).revision;
      await caughtUp(time, w, r3);
      expect(summary(w.events())).toEqual([['put', 'k', r3, '2']]);
      // Progress never claims less than the watch started after.
      expect(w.progress().every((b) => b.revision >= r1 + 1)).toBe(true);
      checkOrder(w);
    });

    it('stops delivering after close()', async () => {
      const { store, time, base } = ctx;
      const w = record(store, '', base);
      await put(store, 'a', '1');
      await time.delivered('the put', () => w.events().length === 1);
      w.close();
      const count = w.batches.length;
      await put(store, 'a', '2');
      await time.letTimersRun();
      expect(w.batches).toHaveLength(count);
      expect(w.events()).toHaveLength(1);
      expect(w.errors).toEqual([]);
    });

    it('ends a watch whose handler throws, with onError(thrown)', async () => {
      const { store, time, base } = ctx;
      const boom = new Error('boom');
      const w = record(store, '', base, () => {
        throw boom;
      });
      await put(store, 'a', '1');
      await put(store, 'a', '2');
      await time.delivered('the error', () => w.errors.length > 0);
      expect(w.batches).toHaveLength(1);
      expect(w.errors).toEqual([boom]);
      await put(store, 'a', '3');
      await time.letTimersRun();
      expect(w.batches).toHaveLength(1);
      expect(w.errors).toHaveLength(1);
    });

    it('lets a handler write to the store without losing order', async () => {
      const { store, time, base } = ctx;
      let reacted = false;
      const w = record(store, '', base, (b) => {
        if (!reacted && b.events.some((e) => e.kv.key === 'trigger')) {
          reacted = true;
          void store.txn([], [{ type: 'put', key: 'reaction', value: '1' }]);
        }
      });
      const r = await put(store, 'trigger', '1');
      await time.delivered('the reaction', () => w.events().length >= 2);
      const later = await put(store, 'later', '1');
      await caughtUp(time, w, later.revision);
      expect(summary(w.events())).toEqual([
        ['put', 'trigger', r.revision, undefined],
        ['put', 'reaction', r.revision + 1, undefined],
        ['put', 'later', r.revision + 2, undefined],
      ]);
      expect(w.errors).toEqual([]);
    });

    it('answers a progress request after the changes already due, at the current revision', async () => {
      const { store, time, base } = ctx;
      const w = record(store, 'p/', base);
      const mine = await put(store, 'p/a', '1');
      const other = await put(store, 'q/b', '2');
      w.requestProgress();
      await time.within(2 * time.progressMs, 'the answer', () => (lastProgress(w) ?? 0) >= other.revision);
      expect(w.eventBatches()).toEqual([{ events: [expect.objectContaining({ type: 'put', kv: expect.objectContaining({ key: 'p/a', modRevision: mine.revision }) })], revision: mine.revision }]);
      // Every progress batch (asked for, or periodic) is at a revision the store had then; checkOrder puts each after the events it covers.
      expect(w.progress().map((b) => b.revision).filter((r) => r !== mine.revision && r !== other.revision && r !== base)).toEqual([]);
      expect(lastProgress(w)).toBe(other.revision);
      checkOrder(w);
      w.close();
      const count = w.batches.length;
      w.requestProgress();
      await time.letTimersRun();
      expect(w.batches).toHaveLength(count);
    });

    it('never sends a progress batch ahead of the events it covers, under concurrent writes', async () => {
      const { store, time, base } = ctx;
      const w = record(store, 's/', base);
      for (let i = 0; i < 30; i++) {
        const key = i % 3 === 0 ? 'other/k' : `s/${i % 4}`;
        // Writes go in flight while progress is asked for; every third one elsewhere, some deletes.
        const write = i % 7 === 6 ? del(store, `s/${i % 4}`) : put(store, key, String(i));
        w.requestProgress();
        if (i % 2) await write;
      }
      await caughtUp(time, w, await store.currentRevision());
      checkOrder(w);
      // Replaying the events before each progress batch gives the prefix as it was at that batch's revision.
      const state = new Map<string, KeyValue>();
      let checked = 0;
      for (const b of w.batches) {
        for (const e of b.events) {
          if (e.type === 'put') state.set(e.kv.key, e.kv);
          else state.delete(e.kv.key);
        }
        if (!b.progress) continue;
        const at = b.revision === 0 ? [] : (await store.range('s/', { atRevision: b.revision })).kvs; // atRevision 0 would mean "current"
        expect([b.revision, [...state.values()].sort((x, y) => byteOrder(x.key, y.key))]).toEqual([b.revision, at]);
        checked++;
      }
      expect(checked).toBeGreaterThan(0);
    });

    it('sends progress notifications to a quiet filtered watcher, carrying it past compaction', async () => {
      const { store, time } = ctx;
      const start = (await put(store, 'quiet/x', '1')).revision;
      const w = record(store, 'quiet/', start);
      // Live before the compaction: an etcd watch still catching up when compaction passes its start is ended, as etcd does.
      await caughtUp(time, w, start);
      for (let i = 0; i < 5; i++) await put(store, 'noisy/k', String(i));
      const current = await store.currentRevision();
      await store.compact(current);
      await time.within(2 * time.progressMs, 'a progress notification', () => lastProgress(w) === current);
      expect(w.eventBatches()).toEqual([]);
      expect(w.progress().every((b) => b.revision >= start && b.revision <= current)).toBe(true);
      expect(lastProgress(w)).toBeGreaterThanOrEqual(await store.compactRevision());

      // A re-watch from the progress revision works; from the watch's start it is compacted.
      const resumed = record(store, 'quiet/', lastProgress(w)!);
      const stale = record(store, 'quiet/', start);
      const r = await put(store, 'quiet/y', '2');
      await time.delivered('the resumed watch’s put', () => resumed.events().length > 0);
      await time.delivered('the stale watch’s error', () => stale.errors.length > 0);
      expect(resumed.errors).toEqual([]);
      expect(summary(resumed.events())).toEqual([['put', 'quiet/y', r.revision, undefined]]);
      expect(stale.errors).toHaveLength(1);
      expect(stale.errors[0]).toBeInstanceOf(StoreCompactedError);
      expect(stale.batches).toEqual([]);

      await time.within(2 * time.progressMs, 'a progress notification after the put', () => lastProgress(w) === r.revision);
      // Between the two: notifications at the revisions the store had while the watch was quiet, none ahead of it.
      const revisions = w.progress().map((b) => b.revision);
      expect(revisions.filter((x) => x !== current && x !== r.revision).every((x) => x >= start && x < current)).toBe(true);
      expect(revisions).toContain(current);
      expect(w.events().map((e) => e.kv.key)).toEqual(['quiet/y']);
      checkOrder(w);
    });
  });

  describe('compaction', () => {
    it('keeps current values readable and rejects reads and watches below the compact revision', async () => {
      const { store, time } = ctx;
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
      await time.delivered('the compacted watch’s error', () => w.errors.length > 0);
      expect(w.batches).toEqual([]);
      expect(w.errors).toHaveLength(1);
      expect(w.errors[0]).toBeInstanceOf(StoreCompactedError);
      expect(w.errors[0]).toMatchObject({ requested: r4 - 1, compactRevision: r4 });
      await put(store, 'k', 'v3');
      await time.letTimersRun();
      expect(w.batches).toEqual([]);

      const ok = record(store, '', r4);
      await time.delivered('the watch from the compact revision', () => ok.events().length >= 2);
      expect(ok.errors).toEqual([]);
      expect(summary(ok.events())).toEqual([
        ['put', 'other', r5, undefined],
        ['put', 'k', r5 + 1, 'v2'],
      ]);
    });

    it('keeps each key as of the compact revision for later reads', async () => {
      const { store, time } = ctx;
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
      await time.delivered('the history after the compact revision', () => w.events().length >= 2);
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
      const { store } = ctx;
      const r = (await put(store, 'k', 'v')).revision;
      await put(store, 'k', 'w');
      await expect(store.compact(r + 5)).rejects.toBeInstanceOf(StoreFutureRevisionError);
      await store.compact(r + 1);
      await store.compact(r + 1);
      const err = await store.compact(r).catch((e) => e);
      expect(err).toBeInstanceOf(StoreCompactedError);
      expect(err).toMatchObject({ requested: r, compactRevision: r + 1 });
      expect(await store.compactRevision()).toBe(r + 1);
    });
  });

  describe('close', () => {
    it('ends open watches with StoreClosedError and rejects every later call', async () => {
      const { store, time, base } = ctx;
      const w = record(store, '', base);
      await put(store, 'a', '1');
      await time.delivered('the put', () => w.events().length === 1);
      await store.close();
      await time.delivered('the close', () => w.errors.length > 0);
      expect(w.events()).toHaveLength(1);
      expect(w.errors).toHaveLength(1);
      expect(w.errors[0]).toBeInstanceOf(StoreClosedError);
      await expect(store.get('a')).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.range('')).rejects.toBeInstanceOf(StoreClosedError);
      await expect(put(store, 'a', '2')).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.compact(1)).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.currentRevision()).rejects.toBeInstanceOf(StoreClosedError);
      await expect(store.leaseGrant(5)).rejects.toBeInstanceOf(StoreClosedError);
      expect(() => store.watch('', base, { onBatch: () => {}, onError: () => {} })).toThrow(StoreClosedError);
      const count = w.batches.length;
      await time.letTimersRun(); // no timer may fire into a closed store
      expect(w.batches).toHaveLength(count);
      await store.close(); // idempotent
    });
  });
}
