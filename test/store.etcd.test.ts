/**
 * What the etcd Store backend adds to the conformance suite: members that
 * die (kill -9), stop answering (SIGSTOP) or lose quorum, TLS with client
 * certificates, and how endpoints are checked. A 3-member cluster of this
 * file's own (ports 42479-42500), a TLS member on 42509-42510, and nothing
 * listening on 42469.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCA, createClientCert, createServingCert } from '../src/base/pki.js';
import { caughtUp, Time, put, record } from '../src/store/conformanceKit.js';
import { EtcdStore, type EtcdStoreOptions } from '../src/store/etcd/etcdStore.js';
import { FakeClock } from '../src/base/clock.js';
import { StoreError, StoreUnavailableError, type Store } from '../src/store/store.js';
import { EtcdCluster } from './helpers/etcd.js';

const etcd = new EtcdCluster({ basePort: 42479 });
beforeAll(() => etcd.start());
afterAll(() => etcd.cleanup());

/** REQUEST_MS: every call's deadline here; KEEPALIVE_MS: pings on a watch's connection, and how long one may go unanswered. */
const REQUEST_MS = 3_000;
const KEEPALIVE_MS = 500;

const time = new Time({ kind: 'real', leaseTtlSeconds: 2, leaseSlackMs: 1_000, progressIntervalMs: etcd.progressNotifyMs }, new FakeClock());
const opened: Store[] = [];
let cases = 0;
async function open(over: Partial<EtcdStoreOptions> = {}): Promise<EtcdStore> {
  const s = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: `/etcd-test/${++cases}/`, requestTimeoutMs: REQUEST_MS, keepaliveMs: KEEPALIVE_MS, keepaliveTimeoutMs: KEEPALIVE_MS, ...over });
  opened.push(s);
  return s;
}
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  // Whatever a case stopped or killed runs again for the next.
  for (let i = 0; i < etcd.endpoints.length; i++) {
    if (etcd.pid(i) === undefined) await etcd.restart(i);
  }
});

/** createOnce writes key once, whatever the failures: a create guarded by "absent", retried while the store is unavailable. */
async function createOnce(s: Store, key: string, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      await s.txn([{ key, target: 'create', op: '=', value: 0 }], [{ type: 'put', key, value: key }]);
      return; // written now, or (compare failed) by an attempt whose answer was lost
    } catch (err) {
      if (!(err instanceof StoreUnavailableError) || Date.now() > deadline) throw err;
    }
  }
}

describe('etcd members failing', () => {
  it('carries on through the other members when the one it talks to is killed (-9): reads, writes and a watch', async () => {
    const store = await open();
    const w = record(store, 'k/', await store.currentRevision());
    await put(store, 'k/0', 'before');
    const victim = etcd.endpoints.indexOf(store.members.currentEndpoint());
    await etcd.kill(victim);
    // A read goes to the next member by itself. A write caught by the dying connection has an unknown
    // outcome (StoreUnavailableError, as with etcd's own client): a create guarded by "absent" may be sent again.
    expect((await store.get('k/0'))?.value).toBe('before');
    for (let i = 1; i <= 5; i++) await createOnce(store, `k/${i}`, 5 * REQUEST_MS);
    expect((await store.range('k/')).kvs.map((kv) => kv.key)).toEqual(['k/0', 'k/1', 'k/2', 'k/3', 'k/4', 'k/5']);
    expect(store.members.currentEndpoint()).not.toBe(etcd.endpoints[victim]);
    await caughtUp(time, w, await store.currentRevision());
    expect(w.events().map((e) => e.kv.key)).toEqual(['k/0', 'k/1', 'k/2', 'k/3', 'k/4', 'k/5']);
    expect(w.errors).toEqual([]);
  });

  it('moves on from a member stopped with SIGSTOP within the deadline, and its watch resumes elsewhere missing nothing', async () => {
    const store = await open();
    const w = record(store, 'k/', await store.currentRevision());
    await put(store, 'k/0', 'before');
    await time.delivered('the first put', () => w.events().length === 1);
    const victim = etcd.endpoints.indexOf(store.members.currentEndpoint());
    etcd.pause(victim);
    try {
      // A read gives the stopped member its share of the deadline, then asks the next.
      const t0 = Date.now();
      expect((await store.get('k/0'))?.value).toBe('before');
      expect(Date.now() - t0).toBeLessThan(REQUEST_MS + 500);
      expect(store.members.currentEndpoint()).not.toBe(etcd.endpoints[victim]);
      // Writes go on (retried here only while the others elect a leader, if the stopped one led).
      for (let i = 1; i <= 5; i++) await createOnce(store, `k/${i}`, 5 * REQUEST_MS);
      // The watch's connection fails its pings and the watch reopens on another member.
      await caughtUp(time, w, await store.currentRevision());
      expect(w.events().map((e) => e.kv.key)).toEqual(['k/0', 'k/1', 'k/2', 'k/3', 'k/4', 'k/5']);
      expect(w.errors).toEqual([]);
    } finally {
      etcd.resume(victim);
    }
  });

  it('fails with StoreUnavailableError within the deadline when quorum is lost, and carries on with nothing lost when it is back', async () => {
    const deadline = 1_000;
    const store = await open({ requestTimeoutMs: deadline });
    const w = record(store, 'q/', await store.currentRevision());
    await put(store, 'q/before', '1');
    const others = [0, 1, 2].filter((i) => etcd.endpoints[i] !== store.members.currentEndpoint());
    for (const i of others) await etcd.kill(i);
    for (const call of [() => put(store, 'q/during', '1'), () => store.get('q/before'), () => store.currentRevision()]) {
      const t0 = Date.now();
      const err = await call().catch((e) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(err).toMatchObject({ code: 'unavailable' });
      expect(Date.now() - t0).toBeLessThan(deadline + 500);
    }
    for (const i of others) await etcd.restart(i);
    // The write whose outcome was unknown: it was not applied (no quorum), and new ones are.
    await createOnce(store, 'q/after', 10 * deadline);
    expect((await store.range('q/')).kvs.map((kv) => kv.key)).toEqual(['q/after', 'q/before']);
    await caughtUp(time, w, await store.currentRevision());
    expect(w.events().map((e) => e.kv.key)).toEqual(['q/before', 'q/after']);
    expect(w.errors).toEqual([]);
  });
});

describe('etcd connection options', () => {
  it('refuses endpoints that are not http(s)://host:port, or mix both', () => {
    for (const endpoints of [[], ['127.0.0.1:2379'], ['ftp://127.0.0.1:2379'], ['http://127.0.0.1'], ['http://127.0.0.1:2379/path'], ['http://127.0.0.1:2379', 'https://127.0.0.1:2380']]) {
      let err: unknown;
      try {
        EtcdStore.connect({ endpoints });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StoreError);
      expect(err).toMatchObject({ code: 'invalid_config' });
    }
  });

  it('says at open that no member answers', async () => {
    const err = await EtcdStore.open({ endpoints: ['http://127.0.0.1:42469'], requestTimeoutMs: 300 }).catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(String(err.message)).toMatch(/etcd revision failed/);
  });

  it('talks TLS with a client certificate, and is refused without one', async () => {
    const ca = await createCA('etcd-test-ca');
    const serving = await createServingCert(ca, { ips: ['127.0.0.1'], dns: ['localhost'] });
    const client = await createClientCert(ca, 'baton-server');
    const tlsEtcd = new EtcdCluster({ basePort: 42509, members: 1, tls: { ca: ca.certPem, cert: serving.certPem, key: serving.keyPem, client: { cert: client.certPem, key: client.keyPem } } });
    try {
      await tlsEtcd.start();
      const store = await open({ endpoints: tlsEtcd.endpoints, tls: { ca: ca.certPem, cert: client.certPem, key: client.keyPem } });
      const r = await put(store, 'tls', 'yes');
      expect(await store.get('tls')).toMatchObject({ value: 'yes', modRevision: r.revision });
      const refused = await open({ endpoints: tlsEtcd.endpoints, tls: { ca: ca.certPem } }).catch((e) => e);
      expect(refused).toBeInstanceOf(StoreError);
    } finally {
      await tlsEtcd.cleanup();
    }
  });
});

