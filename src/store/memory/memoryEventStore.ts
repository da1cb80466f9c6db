/** The in-memory EventStore, for tests and the memory store backend. */
import { systemClock, type Clock } from '../../base/clock.js';
import { DEFAULT_EVENT_SERIES_WINDOW_MS, DEFAULT_EVENT_TTL_MS, DEFAULT_MAX_EVENTS, EventSeries, EventSubscribers, repeat, toStoredEvent, type EventStoreOptions } from '../common.js';
import { matchesEventQuery, type EventQuery, type EventStore, type NewEvent, type StoredEvent } from '../events.js';

/**
 * MemoryEventStore keeps Events in an array in id order, bounded to
 * `maxEvents` (default 10000; the oldest go first) so an event storm cannot
 * grow the heap, and pruned by TTL like the SQLite one. A repeat updates
 * its series' event in place.
 */
export class MemoryEventStore implements EventStore {
  readonly ttlMs: number;
  private readonly maxEvents: number;
  private readonly clock: Clock;
  private readonly events: StoredEvent[] = [];
  private readonly subscribers = new EventSubscribers();
  private readonly series: EventSeries;
  private nextId = 1;

  constructor(opts: EventStoreOptions = {}) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_EVENT_TTL_MS;
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    this.clock = opts.clock ?? systemClock;
    this.series = new EventSeries(opts.seriesWindowMs ?? DEFAULT_EVENT_SERIES_WINDOW_MS, this.maxEvents);
  }

  flush(): void {
    // Nothing buffered: every record is in the array at once.
  }

  record(e: NewEvent): StoredEvent {
    const time = e.time ?? this.clock.now();
    // Trimming drops the lowest ids, so the series' event is still here if its id is not below the first.
    let stored = this.series.repeatOf(e, time, (s) => s.id >= (this.events[0]?.id ?? Infinity));
    if (stored) repeat(stored, time);
    else {
      stored = toStoredEvent(e, this.nextId++, time);
      this.events.push(stored);
      if (this.events.length > this.maxEvents) this.events.splice(0, this.events.length - this.maxEvents);
    }
    this.series.seen(stored);
    this.subscribers.emit({ ...stored });
    return { ...stored };
  }

  list(q: EventQuery = {}): StoredEvent[] {
    // Ids ascend, so afterId is a binary search rather than a filter over everything.
    let lo = 0;
    let hi = this.events.length;
    const after = q.afterId ?? 0;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.events[mid]!.id <= after) lo = mid + 1;
      else hi = mid;
    }
    const out: StoredEvent[] = [];
    for (let i = this.events.length - 1; i >= lo; i--) {
      const e = this.events[i]!;
      if (!matchesEventQuery(e, q)) continue;
      out.push({ ...e });
      if (q.limit && out.length >= q.limit) break;
    }
    return out.reverse();
  }

  subscribe(fn: (e: StoredEvent) => void): () => void {
    return this.subscribers.add(fn);
  }

  prune(now: number): number {
    const cutoff = now - this.ttlMs;
    const before = this.events.length;
    let kept = 0;
    for (const e of this.events) if (e.lastTime >= cutoff) this.events[kept++] = e;
    this.events.length = kept;
    this.series.forgetBefore(cutoff);
    return before - kept;
  }
}
