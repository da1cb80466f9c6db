/**
 * Leader election and fencing over the Store contract (memory, SQLite and
 * a 3-member etcd here; three servers on etcd in the HA tests): one leader
 * at a time, a higher term for each new one, a follower that takes over
 * when the leader's lease goes, and a
 * deposed leader none of whose writes land, told so by the fence before it
 * noticed on its own. The history of LEADER_WRITES says whose writes landed.
 * And heartbeats received by one server, seen by the others.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { Election, FencedStore, LEADER_KEY, NotLeaderError } from '../src/server/election.js';
import { termsSince } from './helpers/leaderWrites.js';
import { HeartbeatExchange, Heartbeats } from '../src/server/heartbeats.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { SqliteStore } from '../src/store/sqlite/sqliteStore.js';
import { EtcdStore } from '../src/store/etcd/etcdStore.js';
import { EtcdCluster } from './helpers/etcd.js';
import type { Store } from '../src/store/store.js';
import { eventually } from './helpers/proc.js';

const log = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'baton-election-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A 3-member etcd of this file's own, started by the first case that needs it; each case gets a key prefix of its own. */
const etcd = new EtcdCluster({ basePort: 31579 });
let etcdUp: Promise<void> | undefined;
let etcdCase = 0;
afterAll(() => etcd.cleanup(), 60_000);

for (const [name, open] of [
  ['memory', async () => new MemoryStore()],
  ['sqlite', async () => SqliteStore.open(join(dir, `e-${Date.now()}.db`))],
  [
    'etcd (3 members)',
    async () => {
      await (etcdUp ??= etcd.start());
      return EtcdStore.open({ endpoints: etcd.endpoints, prefix: `/election-${etcdCase++}/` });
    },
  ],
] as [string, () => Promise<Store>][]) {
  describe(`leader election on ${name}`, () => {
    it('elects one leader; a deposed one is fenced off before it notices, and the history says whose writes landed', async () => {
      const store = await open();
      const a = new Election({ store, identity: 'a', ttlSeconds: 1, log });
      const b = new Election({ store, identity: 'b', ttlSeconds: 1, log });
      const seen: string[] = [];
      a.onDidChange((l) => seen.push(`a:${l}`));
      a.start();
      await eventually(async () => expect(a.leading).toBe(true), 5000);
      b.start();
      const t1 = a.term!;
      expect((await a.leader())?.identity).toBe('a');
      expect(b.leading).toBe(false);
      const fa = new FencedStore(store, a);
      const fb = new FencedStore(store, b);
      const start = await store.currentRevision();
      expect((await fa.txn([], [{ type: 'put', key: '/baton/x/1', value: 'by a' }])).succeeded).toBe(true);
      await expect(fb.txn([], [{ type: 'put', key: '/baton/x/2', value: 'by b' }])).rejects.toBeInstanceOf(NotLeaderError);
      // a's lease goes (as when a is paused past its TTL): b takes over with a higher term.
      const holder = await store.get(LEADER_KEY);
      await store.leaseRevoke(holder!.lease);
      await eventually(async () => expect(b.leading).toBe(true), 5000);
      expect(b.term!).toBeGreaterThan(t1);
      // a has not noticed yet (its next keep-alive is up to a third of its TTL away): the fence refuses its write, and a steps down.
      await expect(fa.txn([], [{ type: 'put', key: '/baton/x/3', value: 'by a, deposed' }])).rejects.toBeInstanceOf(NotLeaderError);
      expect(a.leading).toBe(false);
      expect(await store.get('/baton/x/3')).toBeUndefined();
      expect((await fb.txn([], [{ type: 'put', key: '/baton/x/4', value: 'by b' }])).succeeded).toBe(true);
      // The record: a's one write under t1, then b's under its term; nothing of a's after b took over.
      const terms = (await termsSince(store, start)).map((e) => e.term);
      expect(terms).toEqual([t1, b.term]);
      // b resigns: a (campaigning again) leads at once, with a new term.
      await b.stop();
      await eventually(async () => expect(a.leading).toBe(true), 5000);
      expect(a.term!).toBeGreaterThan(t1);
      expect(seen[0]).toBe('a:false');
      expect(seen.filter((s) => s === 'a:true')).toHaveLength(2);
      await a.stop();
      expect(await store.get(LEADER_KEY)).toBeUndefined();
      await store.close();
    }, 30_000);

    it('notices by its own keep-alive that its lease is gone, steps down, and wins a new term', async () => {
      const store = await open();
      const a = new Election({ store, identity: 'a', ttlSeconds: 1, log });
      const seen: boolean[] = [];
      a.onDidChange((l) => seen.push(l));
      a.start();
      await eventually(async () => expect(a.leading).toBe(true), 5000);
      const t1 = a.term!;
      // The lease goes with its key (as etcd does when a lease expires): the next keep-alive fails.
      await store.leaseRevoke((await store.get(LEADER_KEY))!.lease);
      await eventually(async () => expect(a.term ?? 0).toBeGreaterThan(t1), 5000);
      expect(seen).toEqual([false, true, false, true]);
      await a.stop();
      await store.close();
    }, 30_000);
  });
}

/** twoServers: the heartbeats of servers a and b, and their exchanges over `store`, started (every 100 ms). */
async function twoServers(store: Store) {
  const clock = { now: () => Date.now(), setTimeout: (fn: () => void, ms: number) => { const t = setTimeout(fn, ms); return () => clearTimeout(t); } };
  const ha = new Heartbeats(clock);
  const hb = new Heartbeats(clock);
  const a = new HeartbeatExchange(store, ha, 'a', 100, log);
  const b = new HeartbeatExchange(store, hb, 'b', 100, log);
  await a.start();
  await b.start();
  return { ha, hb, a, b };
}

describe('heartbeats shared between servers', () => {
  it('lets every server see the beats any server received, newest first, without publishing them again', async () => {
    const store = new MemoryStore();
    const { ha, hb, a, b } = await twoServers(store);
    try {
      const changed: string[] = [];
      hb.onDidChange((n) => changed.push(n));
      ha.beat('n1', { ok: true, version: '20.10' }, 1000);
      await eventually(async () => expect(hb.get('n1')?.engineVersion).toBe('20.10'), 5000);
      expect(changed).toEqual(['n1']);
      // b does not publish what it only relayed; a newer beat to b wins over a's older one.
      expect(hb.local()).toEqual({});
      await new Promise((r) => setTimeout(r, 5));
      hb.beat('n1', { ok: false, version: '20.10', error: 'engine down' }, 1000);
      await eventually(async () => expect(ha.get('n1')?.engineOk).toBe(false), 5000);
      await new Promise((r) => setTimeout(r, 300));
      expect(hb.get('n1')?.engineOk).toBe(false);
      // Malformed maps from the store are ignored, not merged.
      await store.txn([], [{ type: 'put', key: '/baton/heartbeats/evil', value: JSON.stringify({ n2: { at: 'soon' } }) }]);
      await new Promise((r) => setTimeout(r, 300));
      expect(ha.get('n2')).toBeUndefined();
    } finally {
      await a.stop();
      await b.stop();
      await store.close();
    }
  }, 30_000);

  it('starts every node\'s grace again while the store has no quorum, so no node is judged by beats this server could not see', async () => {
    await (etcdUp ??= etcd.start());
    const store = await EtcdStore.open({ endpoints: etcd.endpoints, prefix: `/election-${etcdCase++}/` });
    const { ha, hb, a, b } = await twoServers(store);
    try {
      ha.beat('n1', { ok: true, version: '20.10' }, 1000);
      await eventually(async () => expect(hb.get('n1')).toBeDefined(), 5000);
      const graceBefore = hb.startedAt;
      // Two members of three stopped: no quorum, no write lands.
      const away = Date.now();
      etcd.pause(1);
      etcd.pause(2);
      try {
        await eventually(async () => expect(hb.startedAt).toBeGreaterThan(away + 400), 10_000);
        expect(graceBefore).toBeLessThan(away);
      } finally {
        etcd.resume(1);
        etcd.resume(2);
      }
      // Back: a beat a received reaches b again, and b's grace stops moving.
      ha.beat('n1', { ok: false, version: '20.10', error: 'after the outage' }, 1000);
      await eventually(async () => expect(hb.get('n1')?.engineOk).toBe(false), 30_000);
      await eventually(async () => {
        const grace = hb.startedAt;
        await new Promise((r) => setTimeout(r, 600));
        expect(hb.startedAt).toBe(grace);
      }, 30_000);
    } finally {
      await a.stop();
      await b.stop();
      await store.close();
    }
  }, 90_000);
});
