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
import { joinCluster } from '../../src/agent/join.js';
import { VERSION } from '../../src/base/version.js';

export interface MemoryServer {
  server: BatonServer;
  /** A client with the admin token. */
  api: ApiClient;
  transport(id?: Partial<TlsIdentity>): Transport;
  /** node joins a node at `address` and registers it (2 CPUs, 1 GiB, a healthy engine); returns a client with its certificate. */
  node(name: string, address: string): Promise<ApiClient>;
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
  const node = async (name: string, address: string) => {
    const c = await joinCluster({ server: server.url, token: server.joinToken, name, address });
    const client = new ApiClient(withTransport({ server: server.url }, transport({ certPem: c.certPem, keyPem: c.keyPem })));
    await client.call('POST', '/api/v1/nodes/register', { name, address, hostname: name, agentVersion: VERSION, capacity: { cpus: 2, memoryBytes: 2 ** 30 }, portRange: [1, 2], engine: { ok: true, version: 'test' } });
    return client;
  };
  return {
    server,
    api,
    transport,
    node,
    stop: async () => {
      await Promise.all(transports.map((t) => t.close()));
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
