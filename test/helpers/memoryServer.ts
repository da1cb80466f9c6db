/**
 * memoryServer starts an in-process server on the memory stores, over real
 * TLS, with an admin client; `transport` makes more clients (from another
 * local address, with a node certificate), and stop() closes all of them,
 * the server and its data directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatonServer } from '../../src/server/server.js';
import { MemoryStore } from '../../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../../src/store/memory/memoryEventStore.js';
import { ApiClient } from '../../src/api/client.js';
import { tlsTransport, withTransport, type TlsIdentity, type Transport } from '../../src/api/tls.js';
import type { Timings } from '../../src/server/controllers/context.js';

export interface MemoryServer {
  server: BatonServer;
  /** A client with the admin token. */
  api: ApiClient;
  transport(id?: Partial<TlsIdentity>): Transport;
  stop(): Promise<void>;
}

export async function memoryServer(prefix: string, timings: Partial<Timings>): Promise<MemoryServer> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const server = await BatonServer.start({ dataDir: dir, listen: '127.0.0.1:0', store: new MemoryStore(), events: new MemoryEventStore(), logLevel: 'silent', timings });
  const transports: Transport[] = [];
  const transport = (id: Partial<TlsIdentity> = {}) => {
    const t = tlsTransport({ caPem: server.caPem, ...id });
    transports.push(t);
    return t;
  };
  const api = new ApiClient(withTransport({ server: server.url, token: server.adminToken }, transport()));
  return {
    server,
    api,
    transport,
    stop: async () => {
      await Promise.all(transports.map((t) => t.close()));
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
