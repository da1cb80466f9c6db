/**
 * Several servers on one store (here one MemoryStore shared in a process;
 * the HA tests do it with etcd and real processes): one cluster id and one
 * CA for all, the CA's key sealed with the cluster key in the store and
 * never in clear; a server given no key, or another one, does not start and
 * says why; one leader at a time, another taking over when it stops; a join
 * secret rotated through one server holds on the other at once.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BatonServer } from '../src/server/server.js';
import { ClusterKey } from '../src/server/clusterKey.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { eventually } from './helpers/proc.js';
import { serviceSpec } from './fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'baton-shared-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('servers sharing a store', () => {
  it('share one cluster and CA, sealed in the store; elect one leader; follow each other', async () => {
    const keyFile = join(dir, 'cluster.key');
    ClusterKey.create(keyFile);
    expect(() => ClusterKey.create(keyFile)).toThrow(/exists already/);
    const store = new MemoryStore();
    const events = new MemoryEventStore();
    const start = (name: string, key = keyFile) =>
      BatonServer.start({ dataDir: join(dir, name), listen: '127.0.0.1:0', store, events, logLevel: 'silent', clusterKeyFile: key, election: { identity: name, ttlSeconds: 1 }, timings: { heartbeatIntervalMs: 200, tokenRecheckMs: 500 } });
    const a = await start('a');
    const b = await start('b');
    try {
      expect(b.clusterId).toBe(a.clusterId);
      expect(b.caPem).toBe(a.caPem);
      // The CA's private key is in the store only sealed.
      const ca = JSON.parse((await store.get('/baton/pki/ca'))!.value) as { certPem: string; keySealed: string };
      expect(ca.keySealed).toMatch(/^v1:/);
      expect(JSON.stringify(await store.range('/baton/'))).not.toContain('PRIVATE KEY');
      // Each server has an admin token of its own, both valid.
      expect(a.adminToken).not.toBe(b.adminToken);
      // One leader.
      await eventually(async () => expect([a.leadership.leading, b.leadership.leading].filter(Boolean)).toHaveLength(1), 5000);
      // Every server says who leads.
      for (const s of [a, b]) {
        const info = (await s.inject({ method: 'GET', url: '/api/v1/info', headers: { authorization: `Bearer ${s.adminToken}` } })).json();
        expect(info.leader.identity).toBe(a.leadership.leading ? 'a' : 'b');
        expect(info.leading).toBe(s.leadership.leading);
      }
      // A token made through one server works on the other; revoked through it, the other refuses it within tokenRecheckMs.
      const made = (await a.inject({ method: 'POST', url: '/api/v1/tokens', headers: { authorization: `Bearer ${a.adminToken}` }, payload: { name: 'shared', role: 'viewer' } })).json() as { token: string };
      const viaB = () => b.inject({ method: 'GET', url: '/api/v1/services', headers: { authorization: `Bearer ${made.token}` } });
      expect((await viaB()).statusCode).toBe(200);
      expect((await a.inject({ method: 'DELETE', url: '/api/v1/tokens/shared', headers: { authorization: `Bearer ${a.adminToken}` } })).statusCode).toBe(200);
      await eventually(async () => expect((await viaB()).statusCode).toBe(401), 5 * 500);
      // A join secret rotated through one server is the other's at once.
      const token = await (a.leadership.leading ? b : a).pki.rotate();
      await eventually(async () => expect(a.joinToken).toBe(token), 5000);
      expect(b.joinToken).toBe(token);
      // No key, or another key: the server says so and does not start.
      const other = join(dir, 'other.key');
      ClusterKey.create(other);
      await expect(start('c', other)).rejects.toThrow(/does not open with this cluster key/);
      const open = join(dir, 'open.key');
      writeFileSync(open, readFileSync(keyFile), { mode: 0o644 });
      await expect(start('d', open)).rejects.toThrow(/readable by others/);
      await expect(start('e', join(dir, 'missing.key'))).rejects.toThrow(/does not exist/);
      // The leader stops (resigns): the other leads at once.
      const [leader, follower] = a.leadership.leading ? [a, b] : [b, a];
      await leader.stop();
      await eventually(async () => expect(follower.leadership.leading).toBe(true), 5000);
      // It loses the leadership (its lease goes) and wins it again: its controllers work again (their queues restarted).
      const term = follower.election!.term!;
      await store.leaseRevoke((await store.get('/baton/leader/holder'))!.lease);
      await eventually(async () => expect(follower.election!.term ?? 0).toBeGreaterThan(term), 5000);
      const spec = serviceSpec({ stack: 'again', shortName: 'web', replicas: 2 });
      const r = await follower.inject({ method: 'POST', url: '/api/v1/stacks/again/apply', headers: { authorization: `Bearer ${follower.adminToken}` }, payload: { services: [{ name: 'again_web', spec, labels: {} }], prune: false, dryRun: false } });
      expect(r.statusCode, r.body).toBe(200);
      await eventually(async () => expect((await store.range('/baton/tasks/')).kvs.filter((kv) => kv.key.includes('again_web'))).toHaveLength(2), 10_000);
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 60_000);
});
