/**
 * Copies of the state between stores (transfer.ts): what a copy takes and
 * leaves, the portable snapshot file, and the store epoch a server hands
 * out with lists and checks on watches. Memory and SQLite stores here; the
 * etcd side runs end to end in test/e2e/migrate.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { SqliteStore } from '../src/store/sqlite/sqliteStore.js';
import { SqliteEventStore } from '../src/store/sqlite/sqliteEventStore.js';
import { copyState, exportSnapshot, openSnapshot, STORE_EPOCH_KEY, storeEpoch } from '../src/store/transfer.js';
import { serviceKind } from '../src/api/kinds.js';
import { isBatonError } from '../src/base/errors.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';

async function seeded(): Promise<{ store: MemoryStore; events: MemoryEventStore }> {
  const store = new MemoryStore();
  const events = new MemoryEventStore();
  await storeEpoch(store);
  for (let i = 0; i < 300; i++) await store.txn([], [{ type: 'put', key: `/baton/objects/o${String(i).padStart(3, '0')}`, value: JSON.stringify({ i }) }]);
  await store.txn([], [{ type: 'put', key: '/baton/objects/o000', value: '{"i":"again"}' }, { type: 'delete', key: '/baton/objects/o001' }]);
  const lease = await store.leaseGrant(60);
  await store.txn([], [{ type: 'put', key: '/baton/leader/holder', value: 'someone', lease: lease.id }]);
  events.record({ type: 'Warning', reason: 'Failed', message: 'it broke', kind: 'Task', name: 't1', source: 'agent/n1', time: 1_700_000_000_000 });
  events.record({ type: 'Normal', reason: 'Started', message: 'it runs', kind: 'Task', name: 't2', source: 'agent/n1' });
  return { store, events };
}

describe('copying the state between stores', () => {
  it('copies every live key as of one revision, leaves out leased keys, and gives the copy a new epoch', async () => {
    const from = await seeded();
    const to = { store: new MemoryStore(), events: new MemoryEventStore() };
    const r = await copyState(from, to);
    expect(r.keys).toBe(299);
    expect(r.events).toBe(2);
    const got = await to.store.range('/baton/objects/');
    expect(got.kvs.length).toBe(299);
    expect(got.kvs[0]!.value).toBe('{"i":"again"}');
    expect(await to.store.get('/baton/objects/o001')).toBeUndefined();
    expect(await to.store.get('/baton/leader/holder')).toBeUndefined();
    const epoch = (await to.store.get(STORE_EPOCH_KEY))!.value;
    expect(epoch).toBe(r.epoch);
    expect(epoch).not.toBe((await from.store.get(STORE_EPOCH_KEY))!.value);
    expect(to.events.list().map((e) => [e.reason, e.message])).toEqual([['Failed', 'it broke'], ['Started', 'it runs']]);
    expect(to.events.list()[0]!.time).toBe(1_700_000_000_000);
  });

  it('refuses a target that holds anything, and writes nothing to it', async () => {
    const from = await seeded();
    const to = new MemoryStore();
    await to.txn([], [{ type: 'put', key: '/baton/x', value: '1' }]);
    const rev = await to.currentRevision();
    await expect(copyState(from, { store: to })).rejects.toThrow(/not empty/);
    expect(await to.currentRevision()).toBe(rev);
  });

  it('writes any backend as a SQLite snapshot file (0600) that opens as a store with the same keys and events', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-transfer-'));
    try {
      const from = await seeded();
      const file = join(dir, 'snap.db');
      const r = await exportSnapshot(from, file);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const snap = await openSnapshot(file);
      try {
        expect((await snap.store.range('/baton/objects/')).kvs.length).toBe(299);
        expect((await snap.store.get(STORE_EPOCH_KEY))!.value).toBe(r.epoch);
        expect(snap.events.list().length).toBe(2);
        // Into SQLite as a target as well: the copy a migration makes, the other way round.
        const sqlite = SqliteStore.open(join(dir, 'state.db'));
        try {
          const back = await copyState(snap, { store: sqlite, events: new SqliteEventStore(sqlite) });
          expect(back.keys).toBe(299);
          expect(back.epoch).not.toBe(r.epoch);
        } finally {
          await sqlite.close();
        }
      } finally {
        await snap.close();
      }
      await expect(openSnapshot(join(dir, 'nothing.db'))).rejects.toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the store epoch on the API', () => {
  let s: MemoryServer;
  beforeAll(async () => {
    s = await memoryServer('baton-epoch-', { bookmarkIntervalMs: 200 });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('lists carry the epoch; a watch from another epoch is 410 Gone, from this one it streams', async () => {
    const info = await s.api.info();
    expect(info.storeEpoch).toMatch(/^[0-9a-f-]{36}$/);
    const list = await s.api.list(serviceKind);
    expect(list.metadata.storeEpoch).toBe(info.storeEpoch);
    const err = await (async () => {
      for await (const _ of s.api.watch(serviceKind, { resourceVersion: list.metadata.resourceVersion, storeEpoch: 'another-epoch' })) return undefined;
      return undefined;
    })().catch((e: unknown) => e);
    expect(isBatonError(err) && err.code).toBe('BATON_ERR_GONE');
    expect(String((err as Error).message)).toMatch(/store epoch another-epoch/);
    const ac = new AbortController();
    const it = s.api.watch(serviceKind, { resourceVersion: list.metadata.resourceVersion, storeEpoch: info.storeEpoch, signal: ac.signal });
    const first = await it.next().catch((e: unknown) => e);
    // A quiet kind sends a bookmark first; either way the stream is open.
    expect(first).not.toBeInstanceOf(Error);
    ac.abort();
  });
});
