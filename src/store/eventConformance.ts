/**
 * The EventStore conformance suite: both event stores (memory, SQLite) run the
 * same checks. Imported only by tests (it defines vitest suites).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../base/clock.js';
import type { EventStore, NewEvent } from './events.js';

/** EventStoreFactory makes an empty event store with the given clock, TTL and cap. */
export type EventStoreFactory = (opts: { clock: FakeClock; ttlMs: number; maxEvents: number }) => EventStore | Promise<EventStore>;

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

    beforeEach(async () => {
      clock = new FakeClock();
      events = await factory({ clock, ttlMs: TTL, maxEvents: 50 });
    });
    afterEach(async () => {
      await cleanup?.();
    });

    it('records with increasing ids and the clock time unless one is given', () => {
      const a = events.record(ev({ uid: 'u1', node: 'n1', service: 'web' }));
      clock.advance(10);
      const b = events.record(ev({ time: 123 }));
      expect(a).toEqual({ ...ev({ uid: 'u1', node: 'n1', service: 'web' }), id: a.id, time: clock.now() - 10 });
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

    it('keeps at most maxEvents, dropping the oldest', () => {
      const all = Array.from({ length: 120 }, (_, i) => events.record(ev({ name: `t${i}` })));
      const kept = events.list();
      expect(kept).toHaveLength(50);
      expect(kept).toEqual(all.slice(70));
    });
  });
}
