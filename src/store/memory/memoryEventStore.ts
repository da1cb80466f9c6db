/** The in-memory EventStore, for tests and the memory store backend. */
import { systemClock, type Clock } from '../../base/clock.js';
import { DEFAULT_EVENT_SERIES_WINDOW_MS, DEFAULT_EVENT_TTL_MS, DEFAULT_MAX_EVENTS, EventSeries, EventSubscribers, listEvents, pruneEvents, repeat, toStoredEvent, type EventStoreOptions } from '../common.js';
import type { EventQuery, EventStore, NewEvent, StoredEvent } from '../events.js';

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
    return listEvents(this.events, q);
  }

  subscribe(fn: (e: StoredEvent) => void): () => void {
    return this.subscribers.add(fn);
  }

  prune(now: number): number {
    const cutoff = now - this.ttlMs;
    this.series.forgetBefore(cutoff);
    return pruneEvents(this.events, cutoff);
  }
}
