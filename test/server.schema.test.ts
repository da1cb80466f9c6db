/**
 * The stored schema (schema.ts): the leader's migrations run once, in
 * order, leave other keys alone, and leave a newer store as it is; a server
 * migrates its store at start and says so in an event.
 */
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { migrateSchema, readSchema, SCHEMA_KEY, SCHEMA_VERSION } from '../src/server/schema.js';
import { memoryServer } from './helpers/memoryServer.js';

const log = pino({ level: 'silent' });
const now = () => Date.parse('2026-12-03T00:00:00Z');

/** A store as 0.1 servers on etcd left it: events and their writer counter among the objects. */
async function storeOf01(): Promise<MemoryStore> {
  const s = new MemoryStore();
  await s.txn([], [
    { type: 'put', key: '/baton/services/web', value: '{"kind":"Service"}' },
    { type: 'put', key: 'e/0001772000000001', value: '{"reason":"Started"}' },
    { type: 'put', key: 'e/0001772000000002', value: '{"reason":"Killing"}' },
    { type: 'put', key: 'writers', value: '3' },
  ]);
  return s;
}

describe('the stored schema', () => {
  it('brings a 0.1 store to this build\'s schema once: the old event keys go, the objects stay', async () => {
    const s = await storeOf01();
    expect(await readSchema(s)).toMatchObject({ version: 1 });
    const ran = await migrateSchema(s, log, now);
    expect(ran.map((m) => m.to)).toEqual([2]);
    expect((await s.range('e/')).kvs).toEqual([]);
    expect(await s.get('writers')).toBeUndefined();
    expect((await s.get('/baton/services/web'))?.value).toBe('{"kind":"Service"}');
    expect(JSON.parse((await s.get(SCHEMA_KEY))!.value)).toMatchObject({ version: SCHEMA_VERSION, at: '2026-12-03T00:00:00.000Z' });
    const rev = await s.currentRevision();
    expect(await migrateSchema(s, log, now)).toEqual([]);
    expect(await s.currentRevision()).toBe(rev);
  });

  it('runs each migration once when two leaders try at the same moment', async () => {
    const s = await storeOf01();
    const [a, b] = await Promise.all([migrateSchema(s, log, now), migrateSchema(s, log, now)]);
    expect(a.length + b.length).toBe(1);
    expect((await readSchema(s)).version).toBe(SCHEMA_VERSION);
  });

  it('leaves a store of a newer schema as it is', async () => {
    const s = await storeOf01();
    await s.txn([], [{ type: 'put', key: SCHEMA_KEY, value: JSON.stringify({ version: SCHEMA_VERSION + 1, by: '9.9.9', at: 'x' }) }]);
    const rev = await s.currentRevision();
    expect(await migrateSchema(s, log, now)).toEqual([]);
    expect(await s.currentRevision()).toBe(rev);
    expect(await s.get('writers')).toBeDefined();
  });

  it('is migrated by a server at start, with an event', async () => {
    const m = await memoryServer('baton-schema-', {});
    try {
      const events = await m.api.events({ type: 'SchemaMigrated' });
      expect(events.items.map((e: { message: string }) => e.message)).toEqual([expect.stringMatching(/^stored schema 2: /)]);
    } finally {
      await m.stop();
    }
  });
});
