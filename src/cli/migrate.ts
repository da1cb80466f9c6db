/**
 * Moving a cluster's state between stores, from the command line:
 *
 * - `baton migrate --data-dir DIR --etcd-endpoints ... --cluster-key FILE`
 *   moves a stopped single server's (or `baton up`'s) SQLite state into an
 *   empty etcd, with what that server kept in files (the CA, sealed with the
 *   cluster key; the cluster's id). The source is locked for the copy, so
 *   nothing writes it meanwhile, and is left as it was, marked moved so that
 *   it never starts again as a SQLite server beside the etcd ones. Containers
 *   keep running throughout: the agents reconnect to a server on etcd at the
 *   same address and adopt them.
 * - `baton snapshot restore FILE --store etcd ...` writes a snapshot into an
 *   empty etcd (or, with --replace, one whose servers are all stopped).
 *
 * Either way the target gets a new store epoch (transfer.ts).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { lockDir } from '../base/lock.js';
import { BatonError } from '../base/errors.js';
import { ClusterKey } from '../server/clusterKey.js';
import { CA_KEY, ClusterPki } from '../server/clusterPki.js';
import { LEADER_KEY } from '../server/election.js';
import { FILE_DATA_PREFIX } from '../server/files.js';
import { CLUSTER_ID_KEY, MOVED_FILE } from '../server/server.js';
import { copyState, isEmpty, openSnapshot, type CopyResult } from '../store/transfer.js';
import { openEtcd, type StoreFlags } from './daemon.js';

export interface MigrateFlags extends StoreFlags {
  dataDir: string;
}

/** migrateToEtcd moves the SQLite state of a stopped server's data directory into etcd. */
export async function migrateToEtcd(f: MigrateFlags): Promise<{ result: CopyResult; dir: string; endpoints: string[] }> {
  const dir = join(resolve(f.dataDir), 'server');
  const need = (file: string, what: string) => {
    if (!existsSync(join(dir, file))) throw new BatonError('BATON_ERR_BAD_REQUEST', `--data-dir: ${join(dir, file)} is missing (${what}); give the data directory of a server or of baton up`);
  };
  need('state.db', 'the store');
  need('ca.crt', "the cluster CA's certificate");
  need('ca.key', "the cluster CA's key");
  need('cluster.json', "the cluster's id");
  if (existsSync(join(dir, MOVED_FILE))) {
    const m = JSON.parse(readFileSync(join(dir, MOVED_FILE), 'utf8')) as { endpoints?: string[]; at?: string };
    throw new BatonError('BATON_ERR_CONFLICT', `${dir} was moved to etcd (${(m.endpoints ?? []).join(',')}) at ${m.at} already`);
  }
  // The server's own lock: a running server (or baton up) holds it, and the copy must see no write.
  const release = lockDir(dir, 'baton migrate');
  const etcd = await openEtcd(f, 'baton migrate').catch((e) => {
    release();
    throw e;
  });
  const { SqliteStore } = await import('../store/sqlite/sqliteStore.js');
  const { SqliteEventStore } = await import('../store/sqlite/sqliteEventStore.js');
  let source: import('../store/sqlite/sqliteStore.js').SqliteStore | undefined;
  try {
    if (!(await isEmpty(etcd.store))) {
      throw new BatonError('BATON_ERR_CONFLICT', `etcd at ${etcd.endpoints.join(',')} already holds a Baton cluster's state: migrate into an empty one`);
    }
    const key = ClusterKey.load(etcd.keyFile);
    const ca = { certPem: readFileSync(join(dir, 'ca.crt'), 'utf8'), keyPem: readFileSync(join(dir, 'ca.key'), 'utf8') };
    const { clusterId } = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as { clusterId: string };
    source = SqliteStore.open(join(dir, 'state.db'), { backgroundCheckpoints: false });
    // Secret and config contents were sealed with the single server's own key: they are sealed again with the cluster key.
    const ownKey = existsSync(join(dir, 'secrets.key')) ? ClusterKey.load(join(dir, 'secrets.key')) : undefined;
    const reseal = (k: string, v: string) => (k.startsWith(FILE_DATA_PREFIX) && ownKey ? key.seal(ownKey.open(v, k), k) : v);
    const result = await copyState(
      { store: source, events: new SqliteEventStore(source) },
      { store: etcd.store, events: etcd.events },
      [
        { key: CA_KEY, value: ClusterPki.sealedCa(ca, key) },
        { key: CLUSTER_ID_KEY, value: clusterId },
      ],
      reseal,
    );
    await etcd.events.flushed();
    writeFileSync(join(dir, MOVED_FILE), JSON.stringify({ endpoints: etcd.endpoints, at: new Date().toISOString(), epoch: result.epoch }) + '\n', { mode: 0o600 });
    return { result, dir, endpoints: etcd.endpoints };
  } finally {
    await source?.close();
    await etcd.close();
    release();
  }
}

/** restoreIntoEtcd writes a snapshot file into etcd: an empty one, or with `replace` one whose servers are all stopped. */
export async function restoreIntoEtcd(file: string, f: StoreFlags & { replace?: boolean }): Promise<CopyResult> {
  const snapshot = await openSnapshot(resolve(file)).catch((e: Error) => {
    throw new BatonError('BATON_ERR_BAD_REQUEST', `${file}: ${e.message}`);
  });
  try {
    if (!(await snapshot.store.get(CA_KEY))) {
      throw new BatonError(
        'BATON_ERR_BAD_REQUEST',
        `${file} is a single SQLite server's snapshot: its CA is in that server's data directory, not in the snapshot; restore it there (baton snapshot restore --data-dir DIR), then move it with baton migrate`,
      );
    }
    const etcd = await openEtcd(f, 'baton snapshot restore --store etcd');
    try {
      ClusterKey.load(etcd.keyFile); // a missing or malformed key is said before anything changes
      if (!(await isEmpty(etcd.store))) {
        if (!f.replace) throw new BatonError('BATON_ERR_CONFLICT', `etcd at ${etcd.endpoints.join(',')} already holds a Baton cluster's state: stop its servers and add --replace to overwrite it`);
        if (await etcd.store.get(LEADER_KEY)) throw new BatonError('BATON_ERR_CONFLICT', `a server still leads the cluster in etcd at ${etcd.endpoints.join(',')}: stop every server first`);
        await etcd.store.txn([], [{ type: 'deletePrefix', prefix: '' }]);
        await etcd.eventsView.txn([], [{ type: 'deletePrefix', prefix: 'e/' }]);
      }
      const result = await copyState(snapshot, { store: etcd.store, events: etcd.events });
      await etcd.events.flushed();
      return result;
    } finally {
      await etcd.close();
    }
  } finally {
    await snapshot.close();
  }
}
