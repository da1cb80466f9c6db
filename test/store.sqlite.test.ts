import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../src/base/clock.js';
import { runEventStoreConformance } from '../src/store/eventConformance.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { SqliteEventStore } from '../src/store/sqlite/sqliteEventStore.js';
import { SQLITE_SCHEMA_VERSION, SqliteStore } from '../src/store/sqlite/sqliteStore.js';
import { FALLBACK_PAGES } from '../src/store/sqlite/checkpointer.js';
import { StoreError } from '../src/store/store.js';

const dir = mkdtempSync(join(tmpdir(), 'baton-sqlite-'));
let n = 0;
const fresh = () => join(dir, `db-${n++}.db`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const open: SqliteStore[] = [];
function openStore(path: string, clock = new FakeClock()): SqliteStore {
  const s = SqliteStore.open(path, { clock });
  open.push(s);
  return s;
}
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

const put = (s: SqliteStore, key: string, value: string, lease?: number) =>
  s.txn([], [{ type: 'put', key, value, ...(lease ? { lease } : {}) }]);

describe('SqliteStore on disk', () => {
  it('sets the schema version, WAL and synchronous=NORMAL', () => {
    const s = openStore(fresh());
    expect(SQLITE_SCHEMA_VERSION).toBeGreaterThanOrEqual(1);
    expect(s.db.pragma('user_version', { simple: true })).toBe(SQLITE_SCHEMA_VERSION);
    expect(s.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.db.pragma('synchronous', { simple: true })).toBe(1);
    expect(s.backend).toBe('sqlite');
  });

  it('keeps data, revision, compact revision and leases across a reopen', async () => {
    const path = fresh();
    const clock = new FakeClock();
    const a = openStore(path, clock);
    const lease = await a.leaseGrant(30);
    await put(a, 'k/1', 'one');
    await put(a, 'k/2', 'two', lease.id);
    await put(a, 'k/1', 'uno');
    await a.compact(2);
    const rev = await a.currentRevision();
    await a.close();

    clock.advance(25_000);
    const b = openStore(path, clock);
    expect(await b.currentRevision()).toBe(rev);
    expect(await b.compactRevision()).toBe(2);
    expect((await b.range('k/')).kvs.map((kv) => [kv.key, kv.value, kv.version])).toEqual([
      ['k/1', 'uno', 2],
      ['k/2', 'two', 1],
    ]);
    // The lease got a fresh TTL on open: 25s + 20s is past the original deadline, not the renewed one.
    clock.advance(20_000);
    expect(await b.get('k/2')).toBeDefined();
    await b.leaseKeepAlive(lease.id);
    const next = await put(b, 'k/3', 'three');
    expect(next.revision).toBe(rev + 1);
    expect((await b.leaseGrant(5)).id).toBeGreaterThan(lease.id);
  });

  it('rolls back a whole group commit when a backend write fails, refusing every txn it ran; the txns after it commit in the next group', async () => {
    const s = openStore(fresh());
    await put(s, 'before', '1');
    const rev = await s.currentRevision();
    // A real SQLite failure in the middle of a group: a trigger aborts the insert of one key.
    s.db.exec(`CREATE TRIGGER boom BEFORE INSERT ON log WHEN NEW.name = 'boom' BEGIN SELECT RAISE(ABORT, 'disk says no'); END`);
    const group = [put(s, 'a', '1'), put(s, 'boom', '2'), put(s, 'b', '3')];
    const results = await Promise.allSettled(group);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/disk says no/);
    expect(await s.get('a')).toBeUndefined();
    // b never ran in the failed group: it commits on its own, at the next revision.
    expect((results[2] as PromiseFulfilledResult<{ revision: number }>).value.revision).toBe(rev + 1);
    expect((await s.get('b'))?.value).toBe('3');
    // The store goes on.
    expect((await put(s, 'after', '4')).revision).toBe(rev + 2);
  });

  it('ends a group commit at its time budget: the txns after it commit in a later turn, each still in order', async () => {
    const s = SqliteStore.open(fresh(), { groupCommitBudgetMs: 0 });
    open.push(s);
    const order: string[] = [];
    const issued = ['a', 'b', 'c'].map((k) => put(s, k, k).then((r) => order.push(`${k}@${r.revision}`)));
    // Queued after the store's own flush: with the whole queue in one group it would run after all three.
    setImmediate(() => order.push('between'));
    await Promise.all(issued);
    expect(order).toEqual(['a@1', 'between', 'b@2', 'c@3']);
    // The default budget commits a turn's txns together.
    const t = openStore(fresh());
    const order2: string[] = [];
    const issued2 = ['a', 'b', 'c'].map((k) => put(t, k, k).then(() => order2.push(k)));
    setImmediate(() => order2.push('between'));
    await Promise.all(issued2);
    await new Promise((r) => setImmediate(r));
    expect(order2).toEqual(['a', 'b', 'c', 'between']);
  });

  it('refuses a database from a newer schema', () => {
    const path = fresh();
    const raw = new Database(path);
    raw.pragma(`user_version = ${SQLITE_SCHEMA_VERSION + 1}`);
    raw.close();
    expect(() => SqliteStore.open(path)).toThrow(StoreError);
  });

  it('works with a second open of the same file', async () => {
    const path = fresh();
    const a = openStore(path);
    const b = openStore(path);
    await put(a, 'x', '1');
    expect((await b.get('x'))?.value).toBe('1');
    const r = await put(b, 'y', '2');
    expect(await a.currentRevision()).toBe(r.revision);
    expect((await a.range('')).kvs.map((kv) => kv.key)).toEqual(['x', 'y']);
  });

  it('backs up online and restores into place', async () => {
    const path = fresh();
    const snapshot = join(dir, `snap-${n++}.db`);
    const a = openStore(path);
    for (let i = 0; i < 50; i++) await put(a, `k/${i}`, `v${i}`);
    await a.backup(snapshot);
    const atBackup = await a.currentRevision();
    await put(a, 'k/after', 'later');
    await a.close();
    expect(existsSync(`${snapshot}.tmp-${process.pid}`)).toBe(false);
    // The copy holds the whole cluster state: only its owner may read it, whatever the umask.
    expect(statSync(snapshot).mode & 0o777).toBe(0o600);

    await SqliteStore.restore(snapshot, path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const b = openStore(path);
    expect(await b.currentRevision()).toBe(atBackup);
    expect(await b.get('k/after')).toBeUndefined();
    expect((await b.range('k/')).kvs).toHaveLength(50);
    expect(b.db.pragma('integrity_check', { simple: true })).toBe('ok');
    const r = await put(b, 'k/new', 'x');
    expect(r.revision).toBe(atBackup + 1);
  });

  it('backs up an in-memory store too', async () => {
    const s = openStore(':memory:');
    await put(s, 'a', '1');
    const snapshot = join(dir, `snap-${n++}.db`);
    await s.backup(snapshot);
    const target = fresh();
    await SqliteStore.restore(snapshot, target);
    const t = openStore(target);
    expect((await t.get('a'))?.value).toBe('1');
  });

  it('restore rejects what is not a valid Baton snapshot and leaves the target alone', async () => {
    const target = fresh();
    const s = openStore(target);
    await put(s, 'keep', 'me');
    await s.close();

    const foreign = join(dir, `foreign-${n++}.db`);
    const raw = new Database(foreign);
    raw.exec('CREATE TABLE t (x)');
    raw.close();
    await expect(SqliteStore.restore(foreign, target)).rejects.toMatchObject({ code: 'invalid_snapshot' });

    const garbage = join(dir, `garbage-${n++}.db`);
    writeFileSync(garbage, Buffer.alloc(8192, 7));
    await expect(SqliteStore.restore(garbage, target)).rejects.toThrow();
    await expect(SqliteStore.restore(join(dir, 'missing.db'), target)).rejects.toThrow();

    const again = openStore(target);
    expect((await again.get('keep'))?.value).toBe('me');
  });

  it('backup on a closed store throws', async () => {
    const s = openStore(':memory:');
    await s.close();
    await expect(s.backup(join(dir, 'never.db'))).rejects.toMatchObject({ code: 'closed' });
  });
});

describe('SqliteStore WAL checkpoints on a worker thread', () => {
  it('copies the WAL into the database off the writer, and a close leaves no WAL behind', async () => {
    const path = fresh();
    const s = openStore(path);
    expect(s.checkpointer?.running).toBe(true);
    // The writer's own auto-checkpoint waits for 64 MiB: only the worker can have copied these 8 MiB.
    expect(s.db.pragma('wal_autocheckpoint', { simple: true })).toBe(FALLBACK_PAGES);
    const value = 'x'.repeat(8 * 1024);
    for (let i = 0; i < 1024; i++) await put(s, `k/${i}`, value);
    const deadline = Date.now() + 5000;
    while (statSync(path).size < 8 * 1024 * 1024 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(statSync(path).size).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    expect(s.checkpointer?.lastError).toBeUndefined();
    await s.close();
    expect(existsSync(`${path}-wal`)).toBe(false);
    const b = openStore(path);
    expect((await b.range('k/')).kvs).toHaveLength(1024);
  });

  it('runs none for an in-memory store or when turned off', async () => {
    expect(openStore(':memory:').checkpointer).toBeUndefined();
    const s = SqliteStore.open(fresh(), { backgroundCheckpoints: false });
    open.push(s);
    expect(s.checkpointer).toBeUndefined();
    expect(s.db.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
  });
});

describe('SqliteEventStore with the store', () => {
  it('shares the file, never takes a revision and persists across reopen', async () => {
    const path = fresh();
    const a = openStore(path);
    const events = new SqliteEventStore(a);
    const rev = await a.currentRevision();
    const e = events.record({ type: 'Warning', reason: 'Failed', message: 'boom', kind: 'Task', name: 't', source: 'agent/n1', node: 'n1' });
    expect(await a.currentRevision()).toBe(rev);
    await a.close();
    const b = openStore(path);
    expect(new SqliteEventStore(b).list()).toEqual([e]);
  });

  it("writes a turn's events in one transaction, and never reuses an id after a trim and a reopen", async () => {
    const path = fresh();
    const a = openStore(path);
    const events = new SqliteEventStore(a, { maxEvents: 3 });
    const ids = Array.from({ length: 5 }, (_, i) => events.record({ type: 'Normal', reason: 'R', message: `m${i}`, kind: 'Task', name: 't', source: 's' }).id);
    expect(ids).toEqual([1, 2, 3, 4, 5]);
    // Not written yet (same turn), but every read sees them.
    expect(a.db.prepare('SELECT COUNT(*) FROM events').pluck().get()).toBe(0);
    expect(events.list().map((x) => x.message)).toEqual(['m2', 'm3', 'm4']);
    await new Promise((r) => setImmediate(r));
    events.record({ type: 'Normal', reason: 'R', message: 'm5', kind: 'Task', name: 't', source: 's' });
    await a.close();
    const b = openStore(path);
    const again = new SqliteEventStore(b, { maxEvents: 3 });
    expect(again.list().map((x) => x.id)).toEqual([4, 5, 6]);
    expect(again.record({ type: 'Normal', reason: 'R', message: 'm6', kind: 'Task', name: 't', source: 's' }).id).toBe(7);
  });
});

describe('SqliteEventStore event series', () => {
  const refused = { type: 'Warning' as const, reason: 'JoinRefused', message: 'join of x from 127.0.0.9 refused: wrong join token', kind: 'Node', name: 'x', source: 'api' };

  it('writes a repeat as an update of its row, in the same turn or a later one, and goes on with the series after a reopen', async () => {
    const path = fresh();
    const clock = new FakeClock();
    const a = openStore(path, clock);
    const events = new SqliteEventStore(a, { clock });
    const first = events.record(refused);
    clock.advance(1000);
    events.record(refused); // same turn: the row is written once, with count 2
    await new Promise((r) => setImmediate(r));
    expect(a.db.prepare('SELECT count, last_time FROM events').all()).toEqual([{ count: 2, last_time: first.time + 1000 }]);
    clock.advance(1000);
    events.record(refused); // a later turn: an UPDATE
    await a.close();

    const b = openStore(path, clock);
    const again = new SqliteEventStore(b, { clock });
    expect(again.list()).toEqual([{ ...first, count: 3, lastTime: first.time + 2000 }]);
    clock.advance(1000);
    expect(again.record(refused)).toEqual({ ...first, count: 4, lastTime: first.time + 3000 });
    expect(b.db.prepare('SELECT COUNT(*) FROM events').pluck().get()).toBe(1);
  });
});

runEventStoreConformance('memory', ({ clock, ttlMs, maxEvents, seriesWindowMs }) => new MemoryEventStore({ clock, ttlMs, maxEvents, seriesWindowMs }));

const eventStores: SqliteStore[] = [];
runEventStoreConformance(
  'sqlite (store)',
  ({ clock, ttlMs, maxEvents, seriesWindowMs }) => {
    const s = SqliteStore.open(':memory:', { clock });
    eventStores.push(s);
    return new SqliteEventStore(s, { clock, ttlMs, maxEvents, seriesWindowMs });
  },
  async () => {
    for (const s of eventStores.splice(0)) await s.close();
  },
);

const raws: Database.Database[] = [];
runEventStoreConformance(
  'sqlite (bare Database)',
  ({ clock, ttlMs, maxEvents, seriesWindowMs }) => {
    const db = new Database(':memory:');
    raws.push(db);
    return new SqliteEventStore(db, { clock, ttlMs, maxEvents, seriesWindowMs });
  },
  () => {
    for (const db of raws.splice(0)) db.close();
  },
);
