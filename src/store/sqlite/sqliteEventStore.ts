/** The SQLite EventStore: Events in their own table of the store's database file. */
import type Database from 'better-sqlite3';
import { systemClock, type Clock } from '../../base/clock.js';
import { DEFAULT_EVENT_TTL_MS, DEFAULT_MAX_EVENTS, EventSubscribers, toStoredEvent, type EventStoreOptions } from '../common.js';
import type { EventQuery, EventStore, NewEvent, StoredEvent } from '../events.js';
import { SqliteStore, migrateSqlite } from './sqliteStore.js';

interface EventRow {
  id: number;
  time: number;
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
  return toStoredEvent({ ...r, uid: r.uid ?? undefined, node: r.node ?? undefined, service: r.service ?? undefined }, r.id, r.time);
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
 * `maxEvents` rows (oldest dropped on insert) and pruned by TTL via prune().
 * Give it the SqliteStore (or its Database); it lives as long as that
 * connection.
 */
export class SqliteEventStore implements EventStore {
  readonly ttlMs: number;
  private readonly maxEvents: number;
  private readonly clock: Clock;
  private readonly db: Database.Database;
  private readonly subscribers = new EventSubscribers();
  private readonly listStatements = new Map<string, Database.Statement>();
  private readonly insert: Database.Statement;
  private readonly trim: Database.Statement;
  private readonly pruneOld: Database.Statement;

  constructor(source: SqliteStore | Database.Database, opts: EventStoreOptions = {}) {
    this.db = source instanceof SqliteStore ? source.db : source;
    if (!(source instanceof SqliteStore)) migrateSqlite(this.db);
    this.ttlMs = opts.ttlMs ?? DEFAULT_EVENT_TTL_MS;
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    this.clock = opts.clock ?? systemClock;
    this.insert = this.db.prepare(`
      INSERT INTO events (time, type, reason, message, kind, name, uid, source, node, service)
      VALUES (@time, @type, @reason, @message, @kind, @name, @uid, @source, @node, @service)`);
    this.trim = this.db.prepare('DELETE FROM events WHERE id <= ?');
    this.pruneOld = this.db.prepare('DELETE FROM events WHERE time < ?');
  }

  batch<T>(fn: () => T): T {
    return this.db.inTransaction ? fn() : this.db.transaction(fn)();
  }

  record(e: NewEvent): StoredEvent {
    const row = toStoredEvent(e, 0, this.clock.now()); // the table assigns the id
    const id = Number(this.insert.run({ uid: null, node: null, service: null, ...row }).lastInsertRowid);
    if (id > this.maxEvents) this.trim.run(id - this.maxEvents);
    const stored = { ...row, id };
    this.subscribers.emit({ ...stored });
    return stored;
  }

  list(q: EventQuery = {}): StoredEvent[] {
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
    return this.pruneOld.run(now - this.ttlMs).changes;
  }
}
