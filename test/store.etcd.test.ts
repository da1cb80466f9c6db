/**
 * What the etcd Store backend adds to the conformance suite: members that
 * die (kill -9), stop answering (SIGSTOP) or lose quorum, TLS with client
 * certificates, how endpoints are checked, and the etcd event store (its
 * conformance, and several servers sharing it). A 3-member cluster of this
 * file's own (ports 31479-31500), a TLS member on 31509-31510, and nothing
 * listening on 31469.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCA, createClientCert, createServingCert } from '../src/base/pki.js';
import { caughtUp, Time, put, record } from '../src/store/conformanceKit.js';
import { EtcdEventStore } from '../src/store/etcd/etcdEventStore.js';
import { EtcdStore, type EtcdStoreOptions } from '../src/store/etcd/etcdStore.js';
import { runEventStoreConformance } from '../src/store/eventConformance.js';
import type { NewEvent, StoredEvent } from '../src/store/events.js';
import { FakeClock } from '../src/base/clock.js';
import { StoreError, StoreUnavailableError, type Store } from '../src/store/store.js';
import { EtcdCluster } from './helpers/etcd.js';

const etcd = new EtcdCluster({ basePort: 31479 });
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
    const err = await EtcdStore.open({ endpoints: ['http://127.0.0.1:31469'], requestTimeoutMs: 300 }).catch((e) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(String(err.message)).toMatch(/etcd revision failed/);
  });

  it('talks TLS with a client certificate, and is refused without one', async () => {
    const ca = await createCA('etcd-test-ca');
    const serving = await createServingCert(ca, { ips: ['127.0.0.1'], dns: ['localhost'] });
    const client = await createClientCert(ca, 'baton-server');
    const tlsEtcd = new EtcdCluster({ basePort: 31509, members: 1, tls: { ca: ca.certPem, cert: serving.certPem, key: serving.keyPem, client: { cert: client.certPem, key: client.keyPem } } });
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

describe('etcd event store', () => {
  let current: { events: EtcdEventStore; store: EtcdStore } | undefined;
  runEventStoreConformance(
    'etcd',
    async ({ clock, ttlMs, maxEvents, seriesWindowMs }) => {
      const store = await open();
      const events = await EtcdEventStore.open(store.view(`/etcd-test/events-${cases}/`), { clock, ttlMs, maxEvents, seriesWindowMs });
      current = { events, store };
      return events;
    },
    async () => {
      // Everything recorded reaches etcd before the store closes: a write that fails would show here.
      await current?.events.flushed();
      await current?.events.close();
    },
  );

  const ev = (over: Partial<NewEvent> = {}): NewEvent => ({ type: 'Normal', reason: 'Scheduled', message: 'task placed', kind: 'Task', name: 'web.1', source: 'controller/scheduler', ...over });

  /** server opens one server's event store on a shared events prefix. */
  async function server(prefix: string, opts: Parameters<typeof EtcdEventStore.open>[1] = {}): Promise<EtcdEventStore> {
    const store = await open();
    return EtcdEventStore.open(store.view(prefix), { writeDelayMs: 10, ...opts });
  }

  it('shows every server the events every server recorded, repeats as the same event, and a restarted one lists them all', async () => {
    const prefix = `/etcd-test/shared-events-${++cases}/`;
    const a = await server(prefix);
    const b = await server(prefix);
    const heardByB: StoredEvent[] = [];
    b.subscribe((e) => heardByB.push(e));

    const fromA = a.record(ev({ name: 'a1' }));
    const fromB = b.record(ev({ name: 'b1', node: 'n1' }));
    expect(fromA.id).not.toBe(fromB.id);
    await time.delivered('A’s event on B', () => b.list({ name: 'a1' }).length === 1);
    await time.delivered('B’s event on A', () => a.list({ name: 'b1' }).length === 1);
    expect(b.list({ name: 'a1' })).toEqual([fromA]);
    expect(heardByB.map((e) => e.name)).toEqual(['b1', 'a1']);

    const again = a.record(ev({ name: 'a1' }));
    expect(again).toMatchObject({ id: fromA.id, count: 2 });
    await time.delivered('the repeat on B', () => b.list({ name: 'a1' })[0]?.count === 2);
    expect(heardByB.at(-1)).toEqual(again);
    expect(b.list().map((e) => e.id)).toEqual([...new Set([fromA.id, fromB.id])].sort((x, y) => x - y));

    await a.flushed();
    await b.flushed();
    const restarted = await server(prefix);
    expect(restarted.list()).toEqual(a.list());
    expect(restarted.list().map((e) => [e.name, e.count])).toEqual(b.list().map((e) => [e.name, e.count]));
    // A restarted server's ids rise above everything it found.
    expect(restarted.record(ev({ name: 'later' })).id).toBeGreaterThan(Math.max(fromA.id, fromB.id));
    for (const s of [a, b, restarted]) await s.close();
  });

  it('lets etcd delete a window’s events when their lease ends, and deletes what the cap drops', async () => {
    const prefix = `/etcd-test/expiring-events-${++cases}/`;
    const view = (await open()).view(prefix);
    // TTL 1 s plus a 1 s window: a 2 s lease.
    const a = await EtcdEventStore.open(view, { ttlMs: 1_000, leaseWindowMs: 1_000, writeDelayMs: 10 });
    const b = await server(prefix);
    a.record(ev({ name: 'short-lived' }));
    await a.flushed();
    expect((await view.range('e/')).kvs).toHaveLength(1);
    await time.delivered('the event on B', () => b.list().length === 1);
    await time.within(2_000 + 1_000, 'the lease’s expiry', async () => (await view.range('e/')).kvs.length === 0);
    await time.delivered('the deletion on B', () => b.list().length === 0);

    const capped = await server(prefix, { maxEvents: 3 });
    for (let i = 0; i < 5; i++) capped.record(ev({ name: `c${i}` }));
    await capped.flushed();
    expect((await view.range('e/')).kvs.map((kv) => JSON.parse(kv.value).name)).toEqual(['c2', 'c3', 'c4']);
    for (const s of [a, b, capped]) await s.close();
  });
});
