/**
 * Moving a cluster's state from one store to another: the portable snapshot
 * (every backend writes the same SQLite file), a restore into etcd, and the
 * move of a single SQLite server onto etcd (`baton migrate`, k3s's
 * `--cluster-init` move).
 *
 * A copy is the source's keys read at one revision, written to an empty
 * target in transactions of at most MAX_TXN_OPS puts. Revisions do not
 * survive a copy (each backend counts its own), so the target is given a
 * new store epoch: a client that watches with a revision of another epoch
 * is told 410 Gone and lists again, instead of waiting for a revision the
 * new store has not reached, or skipping what it wrote meanwhile.
 *
 * Keys held by a lease are not copied: they belong to live processes (the
 * leader's claim, the servers' heartbeat exchange) and end with them.
 * Events are copied with their first time; their count and last time start
 * again, as a series does after its window.
 */
import { randomUUID } from 'node:crypto';
import type { EventStore } from './events.js';
import { MAX_TXN_OPS, StoreError, getOrCreate, type Op, type Store } from './store.js';

/** The store epoch: a random id, made when a store is first used and again by each copy into it. */
export const STORE_EPOCH_KEY = '/baton/meta/epoch';

/** storeEpoch reads the store's epoch, or makes it (the first writer wins). */
export function storeEpoch(store: Store): Promise<string> {
  return getOrCreate(store, STORE_EPOCH_KEY, async () => randomUUID());
}

export interface CopyResult {
  /** Keys written to the target. */
  keys: number;
  /** Events written to the target's event store. */
  events: number;
  /** The source revision the copy read. */
  revision: number;
  /** The target's new epoch. */
  epoch: string;
}

const PAGE = 1000;

/** isEmpty says whether a store holds no key at all. */
export async function isEmpty(store: Store): Promise<boolean> {
  return (await store.range('', { limit: 1 })).kvs.length === 0;
}

/**
 * copyState copies every key of `from` (at one revision) and its events into
 * `to`, which must be empty, then gives `to` a new epoch. `extra` puts are
 * written with them (a migration adds what the source kept in files). The
 * source is only read; the caller keeps writers off it.
 */
export async function copyState(
  from: { store: Store; events?: EventStore },
  to: { store: Store; events?: EventStore },
  extra: Array<{ key: string; value: string }> = [],
  /** Rewrites a value on its way (a migration re-seals what the source sealed with a key of its own). */
  map: (key: string, value: string) => string = (_k, v) => v,
): Promise<CopyResult> {
  if (!(await isEmpty(to.store))) throw new StoreError('the target store is not empty', 'conflict');
  const revision = await from.store.currentRevision();
  let ops: Op[] = [];
  let keys = 0;
  const flush = async () => {
    if (!ops.length) return;
    await to.store.txn([], ops);
    keys += ops.length;
    ops = [];
  };
  const extraKeys = new Set(extra.map((e) => e.key));
  let cont: string | undefined;
  do {
    const page = await from.store.range('', { atRevision: revision, limit: PAGE, ...(cont !== undefined ? { continue: cont } : {}) });
    for (const kv of page.kvs) {
      if (kv.lease !== 0 || kv.key === STORE_EPOCH_KEY || extraKeys.has(kv.key)) continue;
      ops.push({ type: 'put', key: kv.key, value: map(kv.key, kv.value) });
      if (ops.length === MAX_TXN_OPS) await flush();
    }
    cont = page.continue;
  } while (cont !== undefined);
  for (const e of extra) {
    ops.push({ type: 'put', key: e.key, value: e.value });
    if (ops.length === MAX_TXN_OPS) await flush();
  }
  const epoch = randomUUID();
  ops.push({ type: 'put', key: STORE_EPOCH_KEY, value: epoch });
  await flush();
  keys--; // the epoch is not one of the source's keys

  let events = 0;
  if (from.events && to.events) {
    for (const e of from.events.list()) {
      const { id: _id, lastTime: _last, count: _count, ...rest } = e;
      to.events.record(rest);
      events++;
    }
    to.events.flush();
  }
  return { keys, events, revision, epoch };
}

/**
 * exportSnapshot writes the state of any backend as a snapshot file, the
 * same SQLite file a SQLite server's online backup is (0600): a snapshot of
 * an etcd-backed cluster restores into etcd or into a single server alike.
 * It is a read of every key at one revision, not etcd's own snapshot (which
 * holds the whole etcd, other tenants' keys and all, and restores only as a
 * new etcd cluster).
 */
export async function exportSnapshot(from: { store: Store; events?: EventStore }, destPath: string): Promise<CopyResult> {
  const { SqliteStore } = await import('./sqlite/sqliteStore.js');
  const { SqliteEventStore } = await import('./sqlite/sqliteEventStore.js');
  const copy = SqliteStore.open(':memory:', { backgroundCheckpoints: false });
  try {
    const events = new SqliteEventStore(copy, from.events ? { ttlMs: from.events.ttlMs } : {});
    const r = await copyState(from, { store: copy, events });
    events.flush();
    await copy.backup(destPath);
    return r;
  } finally {
    await copy.close();
  }
}

/** openSnapshot validates a snapshot file and opens a private copy of it (removed on close). */
export async function openSnapshot(path: string): Promise<{ store: Store; events: EventStore; close(): Promise<void> }> {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { SqliteStore } = await import('./sqlite/sqliteStore.js');
  const { SqliteEventStore } = await import('./sqlite/sqliteEventStore.js');
  const dir = await mkdtemp(join(tmpdir(), 'baton-restore-'));
  try {
    const file = join(dir, 'state.db');
    await SqliteStore.restore(path, file);
    const store = SqliteStore.open(file, { backgroundCheckpoints: false });
    return {
      store,
      events: new SqliteEventStore(store),
      close: async () => {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
