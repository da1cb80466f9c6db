/**
 * serverKit is what tests that start and restart whole servers share: data
 * directories, servers on the memory stores or on SQLite in their data
 * directory, and admin clients over real TLS. Everything it made is closed
 * and removed after the file's tests.
 */
import { afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatonServer, type ServerOptions } from '../../src/server/server.js';
import { MemoryStore } from '../../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../../src/store/memory/memoryEventStore.js';
import type { Store } from '../../src/store/store.js';
import { ApiClient } from '../../src/api/client.js';
import { tlsTransport, withTransport, type Transport } from '../../src/api/tls.js';

export interface ServerKit {
  /** A fresh data directory. */
  tmp(): string;
  /** A server on 127.0.0.1 with a free port; without `store`, on SQLite in its data directory. */
  start(o: Partial<ServerOptions> & { dataDir: string }): Promise<BatonServer>;
  /** Memory stores, for one server or several sharing them. */
  memory(): Pick<ServerOptions, 'store' | 'events'>;
  /** A client with the admin token. */
  admin(server: BatonServer): ApiClient;
  /** track closes transport t after the file's tests. */
  track(t: Transport): Transport;
}

export function serverKit(prefix: string, defaults: Partial<ServerOptions> = {}): ServerKit {
  const dirs: string[] = [];
  const transports: Transport[] = [];
  afterAll(async () => {
    await Promise.all(transports.map((t) => t.close()));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const track = (t: Transport) => {
    transports.push(t);
    return t;
  };
  return {
    tmp: () => {
      const d = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(d);
      return d;
    },
    start: (o) => BatonServer.start({ listen: '127.0.0.1:0', logLevel: 'silent', ...defaults, ...o }),
    memory: () => ({ store: new MemoryStore(), events: new MemoryEventStore() }),
    admin: (server) => new ApiClient(withTransport({ server: server.url, token: server.adminToken, timeoutMs: 10_000 }, track(tlsTransport({ caPem: server.caPem })))),
    track,
  };
}

/** keysUnder lists a store's keys under `prefix` as what follows it → value (the IPAM's ranges and VIPs). */
export async function keysUnder(store: Store, prefix: string): Promise<Record<string, string>> {
  const r = await store.range(prefix);
  return Object.fromEntries(r.kvs.map((kv) => [kv.key.slice(prefix.length), kv.value]));
}
