/**
 * The embedded Store backend: one SQLite file, kine-style.
 *
 * Why this layout: an append-only `log` of key versions makes revisions,
 * past-revision reads, watch replay and compaction plain SQL over two
 * indexes, and one file in WAL mode is the whole control-plane state (backed
 * up online with SQLite's backup API). All of a txn's rows carry the txn's
 * revision in `revision`; `id` is only the row id (its order within a
 * revision is the op order).
 */
import { chmod, rename, rm, writeFile } from 'node:fs/promises';
import Database from 'better-sqlite3';
import { systemClock } from '../../base/clock.js';
import { BaseStore, deletedKv, rangeEnd, type KvBackend, type LeaseRecord, type StoreOptions } from '../common.js';
import { StoreError, type KeyValue, type WatchEvent } from '../store.js';
import { Checkpointer } from './checkpointer.js';

type Db = Database.Database;

/**
 * MIGRATIONS upgrade the schema one step each; the database's `user_version`
 * is how many have run. Append only: a released migration never changes.
 */
const MIGRATIONS: readonly ((db: Db) => void)[] = [
  (db) =>
    db.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO meta (key, value) VALUES ('revision', 0), ('compact_revision', 0);

      CREATE TABLE log (
        id INTEGER PRIMARY KEY,
        revision INTEGER NOT NULL,
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        create_revision INTEGER NOT NULL,
        prev_revision INTEGER NOT NULL,
        version INTEGER NOT NULL,
        lease INTEGER NOT NULL,
        value TEXT NOT NULL
      );
      CREATE UNIQUE INDEX log_name_revision ON log (name, revision);
      -- CAS backstop: two writes can never both follow the same version of a key.
      CREATE UNIQUE INDEX log_name_prev ON log (name, prev_revision);
      CREATE INDEX log_revision ON log (revision);
      CREATE INDEX log_lease ON log (lease) WHERE lease != 0;

      CREATE TABLE leases (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ttl INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      );
      CREATE INDEX leases_expires ON leases (expires_at);

      CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        type TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        uid TEXT,
        source TEXT NOT NULL,
        node TEXT,
        service TEXT
      );
      CREATE INDEX events_time ON events (time);
      CREATE INDEX events_object ON events (kind COLLATE NOCASE, name);
      CREATE INDEX events_service ON events (service) WHERE service IS NOT NULL;
      CREATE INDEX events_node ON events (node) WHERE node IS NOT NULL;
    `),
  // Event series: a repeat adds to an event's count and moves its last time; the TTL counts from the last time.
  (db) =>
    db.exec(`
      ALTER TABLE events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
      ALTER TABLE events ADD COLUMN last_time INTEGER NOT NULL DEFAULT 0;
      UPDATE events SET last_time = time;
      DROP INDEX events_time;
      CREATE INDEX events_last_time ON events (last_time);
    `),
];

/** SQLITE_SCHEMA_VERSION is the `user_version` this build writes and reads. */
export const SQLITE_SCHEMA_VERSION = MIGRATIONS.length;

function userVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

/**
 * migrateSqlite brings db's schema (store and event tables) to
 * SQLITE_SCHEMA_VERSION in one transaction, and refuses a database written by
 * a newer Baton. Idempotent; SqliteEventStore calls it for a bare Database.
 */
export function migrateSqlite(db: Db): void {
  db.transaction(() => {
    const from = userVersion(db);
    if (from > SQLITE_SCHEMA_VERSION) {
      throw new StoreError(`database schema version ${from} is newer than this Baton supports (${SQLITE_SCHEMA_VERSION})`, 'schema_too_new');
    }
    for (let v = from; v < SQLITE_SCHEMA_VERSION; v++) {
      MIGRATIONS[v]!(db);
      db.pragma(`user_version = ${v + 1}`);
    }
  }).immediate();
}

interface KvRow {
  name: string;
  value: string;
  create_revision: number;
  revision: number;
  version: number;
  lease: number;
}

interface HistoryRow extends KvRow {
  deleted: number;
  p_revision: number | null;
  p_deleted: number | null;
  p_value: string | null;
  p_create_revision: number | null;
  p_version: number | null;
  p_lease: number | null;
}

function toKv(r: KvRow): KeyValue {
  return { key: r.name, value: r.value, createRevision: r.create_revision, modRevision: r.revision, version: r.version, lease: r.lease };
}

function toEvent(r: HistoryRow): WatchEvent {
  const prevKv =
    r.p_revision !== null && r.p_deleted === 0
      ? { key: r.name, value: r.p_value!, createRevision: r.p_create_revision!, modRevision: r.p_revision, version: r.p_version!, lease: r.p_lease! }
      : undefined;
  const kv = r.deleted ? deletedKv(r.name, r.revision) : toKv(r);
  const type = r.deleted ? 'delete' : 'put';
  return prevKv ? { type, kv, prevKv } : { type, kv };
}

/**
 * rangeSql builds a latest-version-per-key scan over a name interval, with or
 * without an upper bound. It walks (name, revision) in name order, so a LIMIT
 * stops the scan early instead of sorting the whole prefix first.
 */
function rangeSql(bounded: boolean): string {
  return `
    SELECT l.name, l.value, l.create_revision, l.revision, l.version, l.lease
    FROM log l INDEXED BY log_name_revision
    WHERE l.name >= @start ${bounded ? 'AND l.name < @end' : ''} AND l.revision <= @rev
      AND l.revision = (SELECT MAX(m.revision) FROM log m WHERE m.name = l.name AND m.revision <= @rev)
      AND l.deleted = 0
    ORDER BY l.name
    LIMIT @limit`;
}

function historySql(bounded: boolean): string {
  return `
    SELECT l.revision, l.name, l.deleted, l.value, l.create_revision, l.version, l.lease,
           p.revision AS p_revision, p.deleted AS p_deleted, p.value AS p_value,
           p.create_revision AS p_create_revision, p.version AS p_version, p.lease AS p_lease
    FROM log l LEFT JOIN log p ON p.name = l.name AND p.revision = l.prev_revision
    WHERE l.revision > @after ${bounded ? 'AND l.name >= @prefix AND l.name < @end' : ''}
    ORDER BY l.revision, l.id`;
}

/** prepareStatements compiles every statement SqliteKv runs, once per connection. */
function prepareStatements(db: Db) {
  const p = (sql: string) => db.prepare(sql);
  return {
    meta: p('SELECT value FROM meta WHERE key = ?').pluck(),
    setMeta: p('UPDATE meta SET value = ? WHERE key = ?'),
    get: p('SELECT name, value, create_revision, revision, version, lease, deleted FROM log WHERE name = ? ORDER BY revision DESC LIMIT 1'),
    rangeBounded: p(rangeSql(true)),
    rangeAll: p(rangeSql(false)),
    historyBounded: p(historySql(true)),
    historyAll: p(historySql(false)),
    insert: p(`
      INSERT INTO log (revision, name, created, deleted, create_revision, prev_revision, version, lease, value)
      VALUES (@revision, @name, @created, @deleted, @createRevision,
              COALESCE((SELECT MAX(revision) FROM log WHERE name = @name), 0), @version, @lease, @value)`),
    // Compaction only looks at keys written since the last compaction: older rows were settled then.
    compactSuperseded: p(`
      DELETE FROM log
      WHERE name IN (SELECT name FROM log WHERE revision > @from AND revision <= @rev)
        AND revision < (SELECT MAX(m.revision) FROM log m WHERE m.name = log.name AND m.revision <= @rev)`),
    compactTombstones: p('DELETE FROM log WHERE revision > @from AND revision <= @rev AND deleted = 1'),
    keysWithLease: p(`
      SELECT l.name FROM log l
      WHERE l.lease = ? AND l.lease != 0 AND l.deleted = 0
        AND l.revision = (SELECT MAX(m.revision) FROM log m WHERE m.name = l.name)`).pluck(),
    leaseInsert: p('INSERT INTO leases (ttl, expires_at) VALUES (?, ?)'),
    leaseGet: p('SELECT id, ttl, expires_at FROM leases WHERE id = ?'),
    leaseSetExpiry: p('UPDATE leases SET expires_at = ? WHERE id = ?'),
    leaseDelete: p('DELETE FROM leases WHERE id = ?'),
    leasesExpired: p('SELECT id FROM leases WHERE expires_at <= ? ORDER BY id').pluck(),
  };
}

/** SqliteKv is the KvBackend over one better-sqlite3 connection. */
class SqliteKv implements KvBackend {
  private readonly tx: Database.Transaction<(fn: () => unknown) => unknown>;
  private readonly s: ReturnType<typeof prepareStatements>;

  constructor(readonly db: Db) {
    this.tx = db.transaction((fn: () => unknown) => fn());
    this.s = prepareStatements(db);
  }

  revision(): number {
    return this.s.meta.get('revision') as number;
  }

  compactRevision(): number {
    return this.s.meta.get('compact_revision') as number;
  }

  get(key: string): KeyValue | undefined {
    const r = this.s.get.get(key) as (KvRow & { deleted: number }) | undefined;
    return r && !r.deleted ? toKv(r) : undefined;
  }

  range(prefix: string, start: string, rev: number, limit: number): KeyValue[] {
    const end = rangeEnd(prefix);
    const lim = limit || -1;
    const rows = (end === undefined ? this.s.rangeAll.all({ start, rev, limit: lim }) : this.s.rangeBounded.all({ start, end, rev, limit: lim })) as KvRow[];
    return rows.map(toKv);
  }

  history(prefix: string, afterRevision: number): WatchEvent[] {
    const end = rangeEnd(prefix);
    const rows = (
      end === undefined ? this.s.historyAll.all({ after: afterRevision }) : this.s.historyBounded.all({ after: afterRevision, prefix, end })
    ) as HistoryRow[];
    return rows.map(toEvent);
  }

  atomically<T>(fn: () => T): T {
    return this.tx.immediate(fn) as T;
  }

  snapshot<T>(fn: () => T): T {
    return this.tx.deferred(fn) as T;
  }

  write(revision: number, events: readonly WatchEvent[]): void {
    for (const e of events) {
      this.s.insert.run({
        revision,
        name: e.kv.key,
        created: e.type === 'put' && e.kv.version === 1 ? 1 : 0,
        deleted: e.type === 'delete' ? 1 : 0,
        createRevision: e.kv.createRevision,
        version: e.kv.version,
        lease: e.kv.lease,
        value: e.kv.value,
      });
    }
    this.s.setMeta.run(revision, 'revision');
  }

  compact(revision: number): void {
    const params = { from: this.compactRevision(), rev: revision };
    this.s.compactSuperseded.run(params);
    this.s.compactTombstones.run(params);
    this.s.setMeta.run(revision, 'compact_revision');
  }

  keysWithLease(id: number): string[] {
    return this.s.keysWithLease.all(id) as string[];
  }

  leaseCreate(ttlSeconds: number, expiresAt: number): number {
    return Number(this.s.leaseInsert.run(ttlSeconds, expiresAt).lastInsertRowid);
  }

  lease(id: number): LeaseRecord | undefined {
    const r = this.s.leaseGet.get(id) as { id: number; ttl: number; expires_at: number } | undefined;
    return r && { id: r.id, ttlSeconds: r.ttl, expiresAt: r.expires_at };
  }

  leaseSetExpiry(id: number, expiresAt: number): void {
    this.s.leaseSetExpiry.run(expiresAt, id);
  }

  leaseDelete(id: number): void {
    this.s.leaseDelete.run(id);
  }

  expiredLeases(now: number): number[] {
    return this.s.leasesExpired.all(now) as number[];
  }

  /** Runs WAL checkpoints beside this connection (a file database only). */
  checkpointer: Checkpointer | undefined;
  /** Called before the connection closes (the event store writes what it buffered). */
  readonly beforeClose: (() => void)[] = [];

  async close(): Promise<void> {
    for (const fn of this.beforeClose) fn();
    // The worker's connection closes first, so this one is the last: it checkpoints and removes the WAL.
    await this.checkpointer?.stop();
    this.db.close();
  }
}

/** SqliteStoreOptions: the common store options, and where WAL checkpoints run. */
export interface SqliteStoreOptions extends StoreOptions {
  /** Checkpoint the WAL on a worker thread (see Checkpointer); default true for a file, ignored for ':memory:'. */
  backgroundCheckpoints?: boolean;
  /** How often the worker checkpoints; default 100 ms. */
  checkpointIntervalMs?: number;
}

/**
 * SqliteStore is the Store backend "sqlite": Baton's embedded, single-server
 * state in one SQLite file (WAL, synchronous=NORMAL). Watches are served
 * in-process from the commit path, so only writes made through this object
 * reach its watchers. Open with `SqliteStore.open(path)`; ':memory:' works.
 */
export class SqliteStore extends BaseStore {
  private constructor(private readonly sqlite: SqliteKv, opts: SqliteStoreOptions) {
    super('sqlite', sqlite, opts);
  }

  /**
   * open opens (creating and migrating if needed) the store at path. Leases
   * are given a fresh TTL on open, as etcd does after a leader change, so a
   * restart does not expire every node at once.
   */
  static open(path: string, opts: SqliteStoreOptions = {}): SqliteStore {
    const db = new Database(path);
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      migrateSqlite(db);
      const now = (opts.clock ?? systemClock).now();
      db.prepare('UPDATE leases SET expires_at = MAX(expires_at, ? + ttl * 1000)').run(now);
    } catch (err) {
      db.close();
      throw err;
    }
    const kv = new SqliteKv(db);
    if (!db.memory && opts.backgroundCheckpoints !== false) kv.checkpointer = new Checkpointer(db, db.name, opts.checkpointIntervalMs);
    return new SqliteStore(kv, opts);
  }

  /** onClose registers fn to run just before the connection closes (after the store's last commit). */
  onClose(fn: () => void): void {
    this.sqlite.beforeClose.push(fn);
  }

  /** checkpointer is the WAL checkpoint worker, when one runs. */
  get checkpointer(): Checkpointer | undefined {
    return this.sqlite.checkpointer;
  }

  /** db is the underlying connection, for SqliteEventStore and maintenance; it closes with the store. */
  get db(): Db {
    return this.sqlite.db;
  }

  /**
   * backup writes a consistent online copy of the database to destPath: a
   * single self-contained file (rollback-journal mode, so opening it never
   * leaves -wal/-shm files beside it), written to a temporary file and renamed
   * into place so destPath is never half written. The copy holds the whole
   * cluster state (token hashes, the CA's key): it is created 0600 and stays
   * so (an empty file is a valid empty database for SQLite to copy into).
   */
  async backup(destPath: string): Promise<void> {
    await this.currentRevision(); // throws StoreClosedError when closed
    const tmp = `${destPath}.tmp-${process.pid}`;
    try {
      await rm(tmp, { force: true });
      await writeFile(tmp, '', { mode: 0o600, flag: 'wx' });
      await this.sqlite.db.backup(tmp);
      await chmod(tmp, 0o600);
      const copy = new Database(tmp);
      copy.pragma('journal_mode = DELETE');
      copy.close();
      await rename(tmp, destPath);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * restore validates the snapshot at srcPath (a Baton schema this build can
   * read, integrity_check ok) and copies it to destPath, removing destPath's
   * stale -wal/-shm files. Nothing may have destPath open.
   */
  static async restore(srcPath: string, destPath: string): Promise<void> {
    const tmp = `${destPath}.restore-${process.pid}`;
    const src = new Database(srcPath, { readonly: true, fileMustExist: true });
    try {
      const version = userVersion(src);
      if (version < 1 || version > SQLITE_SCHEMA_VERSION) {
        throw new StoreError(`${srcPath} is not a Baton snapshot this version can read (schema version ${version})`, 'invalid_snapshot');
      }
      const integrity = src.pragma('integrity_check', { simple: true });
      if (integrity !== 'ok') throw new StoreError(`${srcPath} failed integrity_check: ${String(integrity)}`, 'invalid_snapshot');
      await rm(tmp, { force: true });
      await writeFile(tmp, '', { mode: 0o600, flag: 'wx' });
      await src.backup(tmp);
      await chmod(tmp, 0o600);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    } finally {
      src.close();
    }
    for (const suffix of ['-wal', '-shm']) await rm(destPath + suffix, { force: true });
    await rename(tmp, destPath);
  }
}
