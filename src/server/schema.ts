/**
 * The stored schema and its migrations, for upgrades one server at a time.
 *
 * Every object carries its API version (`apiVersion: baton/v1`); the store
 * as a whole carries a schema number (`/baton/meta/schema`). A build knows
 * the migrations up to SCHEMA_VERSION; the leader runs the ones the store
 * has not had, in order, before its controllers start, and each one's
 * completion is a compare-and-swap on the schema key (through the leader's
 * fence, when servers share the store): however many servers upgrade, each
 * migration runs once. A store without the key was written by 0.1, which
 * is schema 1.
 *
 * The skew rule that makes a rolling upgrade safe: a migration leaves data
 * the previous minor version still reads (it adds or moves, it does not
 * change a meaning), because servers of both versions run side by side
 * until the last one is upgraded. A server older than the store's schema
 * serves it as it is and runs nothing.
 */
import type { Logger } from 'pino';
import { VERSION } from '../base/version.js';
import type { Store } from '../store/store.js';

export const SCHEMA_KEY = '/baton/meta/schema';

export interface Migration {
  /** The schema number this migration brings the store to. */
  to: number;
  /** What it changes, for the log and the event. */
  what: string;
  /** Does it; must be harmless to run again (a leader may be deposed in the middle). */
  run(store: Store): Promise<void>;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    to: 2,
    what: "events of 0.1 servers on etcd were kept inside the objects' key space (e/…, writers); they now have a prefix of their own: the old ones go",
    run: async (store) => {
      await store.txn([], [{ type: 'deletePrefix', prefix: 'e/' }, { type: 'delete', key: 'writers' }]);
    },
  },
];

/** SCHEMA_VERSION: the schema this build writes. */
export const SCHEMA_VERSION = MIGRATIONS.reduce((n, m) => Math.max(n, m.to), 1);

export interface SchemaRecord {
  version: number;
  /** The Baton version that wrote it. */
  by: string;
  at: string;
}

/** readSchema: the store's schema number (1 when it has no record: 0.1 wrote it, or nothing has). */
export async function readSchema(store: Store): Promise<{ version: number; modRevision: number }> {
  const kv = await store.get(SCHEMA_KEY);
  if (!kv) return { version: 1, modRevision: 0 };
  const v = Number((JSON.parse(kv.value) as Partial<SchemaRecord>).version);
  return { version: Number.isInteger(v) && v >= 1 ? v : 1, modRevision: kv.modRevision };
}

/**
 * migrateSchema brings the store to SCHEMA_VERSION: each migration the store
 * has not had, then the schema key, compared on its revision so that a
 * second leader's run (or a second server's, on SQLite never) changes
 * nothing twice. Returns the migrations it ran.
 */
export async function migrateSchema(store: Store, log: Logger, now: () => number): Promise<Migration[]> {
  const ran: Migration[] = [];
  let { version, modRevision } = await readSchema(store);
  if (version > SCHEMA_VERSION) {
    log.warn({ stored: version, known: SCHEMA_VERSION }, 'the store has a newer schema than this build knows (a newer server wrote it): served as it is');
    return ran;
  }
  for (const m of MIGRATIONS) {
    if (m.to <= version) continue;
    await m.run(store);
    const record: SchemaRecord = { version: m.to, by: VERSION, at: new Date(now()).toISOString() };
    const r = await store.txn([{ key: SCHEMA_KEY, target: 'mod', op: '=', value: modRevision }], [{ type: 'put', key: SCHEMA_KEY, value: JSON.stringify(record) }]);
    if (!r.succeeded) return ran; // another leader moved it on: it runs the rest
    version = m.to;
    modRevision = r.revision;
    ran.push(m);
    log.info({ schema: m.to, what: m.what }, 'migrated the stored schema');
  }
  return ran;
}
