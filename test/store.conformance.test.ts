import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { runStoreConformance } from '../src/store/conformance.js';
import { EtcdStore } from '../src/store/etcd/etcdStore.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { SqliteStore } from '../src/store/sqlite/sqliteStore.js';
import { EtcdCluster } from './helpers/etcd.js';

const dir = mkdtempSync(join(tmpdir(), 'baton-store-'));
let n = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

runStoreConformance('memory', async ({ clock }) => new MemoryStore({ clock }));
runStoreConformance('sqlite :memory:', async ({ clock }) => SqliteStore.open(':memory:', { clock }));
runStoreConformance('sqlite file', async ({ clock }) => SqliteStore.open(join(dir, `store-${n++}.db`), { clock }));

describe('etcd', () => {
  // Every case shares this cluster, each under a key prefix of its own.
  const etcd = new EtcdCluster({ basePort: 31379, progressNotifyMs: 200 });
  beforeAll(() => etcd.start());
  afterAll(() => etcd.cleanup());
  runStoreConformance('etcd (3 members)', async ({ prefix }) => EtcdStore.connect({ endpoints: etcd.endpoints, prefix: `/${prefix}`, requestTimeoutMs: 2_000 }), {
    time: { kind: 'real', leaseTtlSeconds: 2, leaseSlackMs: 1_000, progressIntervalMs: etcd.progressNotifyMs },
  });
});
