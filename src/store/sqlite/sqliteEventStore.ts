/** The SQLite EventStore: Events in their own table of the store's database file. */
import type Database from 'better-sqlite3';
import { systemClock, type Clock } from '../../base/clock.js';
import { DEFAULT_EVENT_SERIES_WINDOW_MS, DEFAULT_EVENT_TTL_MS, DEFAULT_MAX_EVENTS, EventSeries, EventSubscribers, repeat, toStoredEvent, type EventStoreOptions } from '../common.js';
import type { EventQuery, EventStore, NewEvent, StoredEvent } from '../events.js';
import { SqliteStore, migrateSqlite } from './sqliteStore.js';

interface EventRow {
  id: number;
  time: number;
  last_time: number;
  count: number;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  kind: string;
  name: string;
  uid: string | null;
  source: string;
  node: string | null;
  service: string | null;
}

function toEvent(r: EventRow): StoredEvent {
  return { ...toStoredEvent({ ...r, uid: r.uid ?? undefined, node: r.node ?? undefined, service: r.service ?? undefined }, r.id, r.time), lastTime: r.last_time, count: r.count };
}

/** FILTERS maps each EventQuery filter to its SQL condition (same semantics as matchesEventQuery). */
const FILTERS = {
  kind: 'kind = @kind COLLATE NOCASE',
  name: 'name = @name',
  service: 'service = @service',
  node: 'node = @node',
  type: '(type = @type COLLATE NOCASE OR reason = @type COLLATE NOCASE)',
  afterId: 'id > @afterId',
} as const;

/**
 * SqliteEventStore keeps Events in the `events` table of the store's file,
 * outside the revision log: recording one never takes a revision. Bounded to
 * `maxEvents` rows (oldest dropped) and pruned by TTL via prune().
 *
 * Group commit: record() assigns the id and tells subscribers at once, and
 * the rows recorded in one turn of the event loop are written in one
 * transaction just after it (a commit costs far more than a row: a thousand
 * agents each posting their task events would otherwise be a thousand
 * commits a second). Every read flushes first, so a reader never misses an
 * event already recorded; flush() writes them now (before the connection
 * closes). Give it the SqliteStore (or its Database); it lives as long as
 * that connection.
 *
 * A repeat (see EventSeries) changes the event it repeats in memory: if that
 * row is not written yet it is written with the new count, else an UPDATE
 * joins the next group commit. The series of the last window are read back
 * at open, so a restart does not split one.
 */
export class SqliteEventStore implements EventStore {
  readonly ttlMs: number;
  private readonly maxEvents: number;
  private readonly clock: Clock;
  private readonly db: Database.Database;
  private readonly subscribers = new EventSubscribers();
  private readonly listStatements = new Map<string, Database.Statement>();
  private readonly insert: Database.Statement;
  private readonly update: Database.Statement;
  private readonly trim: Database.Statement;
  private readonly pruneOld: Database.Statement;
  private readonly writePending: () => void;
  /** Recorded, not yet written, in id order. */
  private pending: StoredEvent[] = [];
  /** Repeated since the last write: each row's new count and last time. */
  private repeated = new Map<number, StoredEvent>();
  private readonly series: EventSeries;
  private nextId: number;

  constructor(source: SqliteStore | Database.Database, opts: EventStoreOptions = {}) {
    this.db = source instanceof SqliteStore ? source.db : source;
    // With the store, what is buffered is written before the connection closes; with a bare Database, the owner calls flush().
    if (source instanceof SqliteStore) source.onClose(() => this.flush());
    if (!(source instanceof SqliteStore)) migrateSqlite(this.db);
    this.ttlMs = opts.ttlMs ?? DEFAULT_EVENT_TTL_MS;
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    this.clock = opts.clock ?? systemClock;
    this.series = new EventSeries(opts.seriesWindowMs ?? DEFAULT_EVENT_SERIES_WINDOW_MS, this.maxEvents);
    this.insert = this.db.prepare(`
      INSERT INTO events (id, time, last_time, count, type, reason, message, kind, name, uid, source, node, service)
      VALUES (@id, @time, @lastTime, @count, @type, @reason, @message, @kind, @name, @uid, @source, @node, @service)`);
    this.update = this.db.prepare('UPDATE events SET count = @count, last_time = @lastTime WHERE id = @id');
    // AUTOINCREMENT's high-water mark: an id is never used twice, even after the newest rows were trimmed.
    const seq = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'events'").pluck().get() as number | undefined;
    this.nextId = (seq ?? 0) + 1;
    this.trim = this.db.prepare('DELETE FROM events WHERE id <= ?');
    this.pruneOld = this.db.prepare('DELETE FROM events WHERE last_time < ?');
    this.writePending = this.db.transaction(() => {
      const batch = this.pending;
      const repeated = this.repeated;
      this.pending = [];
      this.repeated = new Map();
      for (const e of batch) this.insert.run({ uid: null, node: null, service: null, ...e });
      // A row inserted just above already has its count; the update is then a no-op.
      for (const e of repeated.values()) this.update.run({ id: e.id, count: e.count, lastTime: e.lastTime });
      const last = batch.at(-1)?.id;
      if (last !== undefined && last > this.maxEvents) this.trim.run(last - this.maxEvents);
    });
    const since = this.clock.now() - (opts.seriesWindowMs ?? DEFAULT_EVENT_SERIES_WINDOW_MS);
    const open = this.db.prepare('SELECT * FROM events WHERE last_time >= ? ORDER BY last_time LIMIT ?').all(since, this.maxEvents) as EventRow[];
    for (const r of open) this.series.seen(toEvent(r));
  }

  record(e: NewEvent): StoredEvent {
    const time = e.time ?? this.clock.now();
    // Trimming deletes ids up to the newest minus maxEvents, so the series' row is still there above that.
    let stored = this.series.repeatOf(e, time, (s) => s.id > this.nextId - 1 - this.maxEvents);
    if (stored) {
      repeat(stored, time);
      this.repeated.set(stored.id, stored);
    } else {
      stored = toStoredEvent(e, this.nextId++, time);
      this.pending.push(stored);
    }
    this.series.seen(stored);
    if (this.pending.length + this.repeated.size === 1) setImmediate(() => this.flush());
    this.subscribers.emit({ ...stored });
    return { ...stored };
  }

  flush(): void {
    if ((this.pending.length === 0 && this.repeated.size === 0) || !this.db.open) return;
    this.writePending();
  }

  list(q: EventQuery = {}): StoredEvent[] {
    this.flush();
    const used = (Object.keys(FILTERS) as (keyof typeof FILTERS)[]).filter((k) => q[k] !== undefined && q[k] !== '');
    const params: Record<string, unknown> = {};
    for (const k of used) params[k] = q[k];
    const where = used.length ? `WHERE ${used.map((k) => FILTERS[k]).join(' AND ')}` : '';
    // Newest first with a limit, then reversed: "the newest N, oldest first".
    const sql = q.limit
      ? `SELECT * FROM events ${where} ORDER BY id DESC LIMIT @limit`
      : `SELECT * FROM events ${where} ORDER BY id`;
    if (q.limit) params.limit = q.limit;
    let stmt = this.listStatements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.listStatements.set(sql, stmt);
    }
    const rows = (stmt.all(params) as EventRow[]).map(toEvent);
    return q.limit ? rows.reverse() : rows;
  }

  subscribe(fn: (e: StoredEvent) => void): () => void {
    return this.subscribers.add(fn);
  }

  prune(now: number): number {
    this.flush();
    this.series.forgetBefore(now - this.ttlMs);
    return this.pruneOld.run(now - this.ttlMs).changes;
  }
}
