/**
 * The EventStore conformance suite: both event stores (memory, SQLite) run the
 * same checks. Imported only by tests (it defines vitest suites).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../base/clock.js';
import type { EventStore, NewEvent } from './events.js';

/** EventStoreFactory makes an empty event store with the given clock, TTL, cap and series window. */
export type EventStoreFactory = (opts: { clock: FakeClock; ttlMs: number; maxEvents: number; seriesWindowMs: number }) => EventStore | Promise<EventStore>;

const ev = (over: Partial<NewEvent> = {}): NewEvent => ({
  type: 'Normal',
  reason: 'Scheduled',
  message: 'task placed',
  kind: 'Task',
  name: 'web.1',
  source: 'controller/scheduler',
  ...over,
});

/** runEventStoreConformance defines the vitest suite every EventStore must pass; cleanup runs after each test. */
export function runEventStoreConformance(name: string, factory: EventStoreFactory, cleanup?: () => void | Promise<void>): void {
  describe(`EventStore conformance: ${name}`, () => {
    let clock: FakeClock;
    let events: EventStore;
    const TTL = 60_000;
    const WINDOW = 10_000;

    beforeEach(async () => {
      clock = new FakeClock();
      events = await factory({ clock, ttlMs: TTL, maxEvents: 50, seriesWindowMs: WINDOW });
    });
    afterEach(async () => {
      await cleanup?.();
    });

    it('records with increasing ids and the clock time unless one is given', () => {
      const a = events.record(ev({ uid: 'u1', node: 'n1', service: 'web' }));
      clock.advance(10);
      const b = events.record(ev({ time: 123 }));
      expect(a).toEqual({ ...ev({ uid: 'u1', node: 'n1', service: 'web' }), id: a.id, time: clock.now() - 10, lastTime: clock.now() - 10, count: 1 });
      expect(b.id).toBeGreaterThan(a.id);
      expect(b.time).toBe(123);
      expect(b).not.toHaveProperty('node');
      expect(events.ttlMs).toBe(TTL);
      expect(events.list()).toEqual([a, b]);
    });

    it('filters by kind (any case), name, service, node, type or reason (any case) and afterId', () => {
      const a = events.record(ev({ kind: 'Task', name: 't1', service: 'web', node: 'n1' }));
      const b = events.record(ev({ kind: 'Node', name: 'n1', node: 'n1', type: 'Warning', reason: 'NotReady' }));
      const c = events.record(ev({ kind: 'Task', name: 't2', service: 'db', node: 'n2' }));
      const ids = (q: Parameters<EventStore['list']>[0]) => events.list(q).map((e) => e.id);
      expect(ids({ kind: 'task' })).toEqual([a.id, c.id]);
      expect(ids({ kind: 'Task', name: 't2' })).toEqual([c.id]);
      expect(ids({ service: 'web' })).toEqual([a.id]);
      expect(ids({ node: 'n1' })).toEqual([a.id, b.id]);
      expect(ids({ afterId: a.id })).toEqual([b.id, c.id]);
      expect(ids({ afterId: c.id })).toEqual([]);
      expect(ids({ kind: 'Service' })).toEqual([]);
      expect(ids({ type: 'warning' })).toEqual([b.id]);
      expect(ids({ type: 'notready' })).toEqual([b.id]);
      expect(ids({ type: 'Scheduled', node: 'n2' })).toEqual([c.id]);
      expect(ids({})).toEqual([a.id, b.id, c.id]);
    });

    it('limit returns the newest N, oldest first', () => {
      const all = Array.from({ length: 6 }, (_, i) => events.record(ev({ name: `t${i}`, service: i % 2 ? 'odd' : 'even' })));
      expect(events.list({ limit: 2 })).toEqual(all.slice(4));
      expect(events.list({ limit: 2, service: 'even' }).map((e) => e.name)).toEqual(['t2', 't4']);
      expect(events.list({ limit: 100 })).toEqual(all);
    });

    it('calls subscribers for events recorded from now on, until unsubscribed', () => {
      events.record(ev({ name: 'before' }));
      const got: string[] = [];
      const unsubscribe = events.subscribe((e) => got.push(e.name));
      events.record(ev({ name: 'during' }));
      unsubscribe();
      events.record(ev({ name: 'after' }));
      expect(got).toEqual(['during']);
    });

    it('prunes events older than the TTL and reports how many', () => {
      const old = events.record(ev({ name: 'old' }));
      clock.advance(TTL / 2);
      const mid = events.record(ev({ name: 'mid' }));
      clock.advance(TTL / 2 + 1);
      const fresh = events.record(ev({ name: 'fresh' }));
      expect(events.prune(clock.now())).toBe(1);
      expect(events.list().map((e) => e.id)).toEqual([mid.id, fresh.id]);
      expect(events.prune(clock.now())).toBe(0);
      expect(events.prune(clock.now() + TTL + 1)).toBe(2);
      expect(events.list()).toEqual([]);
      // Ids keep rising after everything was pruned.
      expect(events.record(ev()).id).toBeGreaterThan(fresh.id);
      expect(old.id).toBeLessThan(mid.id);
    });

    it('adds a repeat within the window to the event it repeats: its count and last time, the same id, heard again by subscribers', () => {
      const heard: [number, number][] = [];
      events.subscribe((e) => heard.push([e.id, e.count]));
      const first = events.record(ev({ type: 'Warning', reason: 'JoinRefused', kind: 'Node', name: 'x1' }));
      let last = first;
      for (let i = 1; i < 50; i++) {
        clock.advance(100);
        last = events.record(ev({ type: 'Warning', reason: 'JoinRefused', kind: 'Node', name: 'x1' }));
      }
      expect(last).toEqual({ ...first, count: 50, lastTime: first.time + 49 * 100 });
      expect(events.list()).toEqual([last]);
      expect(heard).toHaveLength(50);
      expect(heard.at(-1)).toEqual([first.id, 50]);
      // Any field but the times makes another event.
      for (const other of [{ message: 'other' }, { uid: 'u2' }, { source: 'agent/n1' }, { node: 'n1' }, { service: 'web' }, { type: 'Normal' as const }, { reason: 'Other' }, { kind: 'Task' }, { name: 'x2' }]) {
        expect(events.record(ev({ type: 'Warning', reason: 'JoinRefused', kind: 'Node', name: 'x1', ...other })).count).toBe(1);
      }
      expect(events.list()).toHaveLength(10);
      expect(events.list({ type: 'JoinRefused', name: 'x1' })[0]).toEqual(last);
    });

    it('starts a new event when the repeat comes after the window, or after its event was pruned or dropped', () => {
      const a = events.record(ev());
      clock.advance(WINDOW);
      expect(events.record(ev())).toMatchObject({ id: a.id, count: 2 });
      clock.advance(WINDOW + 1);
      const b = events.record(ev());
      expect(b).toMatchObject({ count: 1, time: clock.now() });
      expect(b.id).toBeGreaterThan(a.id);
      // Pruned by its last occurrence: a series seen within the TTL stays, however old its first.
      const c = events.record(ev({ name: 'long' }));
      for (let i = 0; i < 12; i++) {
        clock.advance(WINDOW - 1);
        events.record(ev({ name: 'long' }));
      }
      events.prune(clock.now());
      expect(events.list({ name: 'long' })).toEqual([{ ...c, count: 13, lastTime: clock.now() }]);
      // A tiny TTL against the same window: once pruned, a repeat starts afresh.
      events.prune(clock.now() + TTL + 1);
      expect(events.list()).toEqual([]);
      expect(events.record(ev({ name: 'long' }))).toMatchObject({ count: 1 });
      // Dropped for the cap (50): the next repeat is a new event too.
      const d = events.record(ev({ name: 'capped' }));
      for (let i = 0; i < 60; i++) events.record(ev({ name: `filler${i}` }));
      const again = events.record(ev({ name: 'capped' }));
      expect(again.id).toBeGreaterThan(d.id);
      expect(again.count).toBe(1);
      expect(events.list({ name: 'capped' })).toEqual([again]);
    });

    it('keeps at most maxEvents, dropping the oldest', () => {
      const all = Array.from({ length: 120 }, (_, i) => events.record(ev({ name: `t${i}` })));
      const kept = events.list();
      expect(kept).toHaveLength(50);
      expect(kept).toEqual(all.slice(70));
    });
  });
}
