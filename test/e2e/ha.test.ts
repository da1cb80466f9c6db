/**
 * High availability on real parts: a 3-member etcd of the test's own
 * (Debian's etcd 3.4), three `baton server` processes on it sharing a
 * cluster key, three agents (127.0.0.2–4) that know every server, the
 * shared dockerd.
 *
 * - kill -9 of the leader in the middle of a scale from 10 to 50: exactly
 *   50 tasks and containers, one per slot; the time from the kill until the
 *   new leader's first write is printed (bench:ha measures it);
 * - SIGSTOP of the leader past its lease, then SIGCONT: another took over,
 *   none of the old leader's writes landed after that (the store's record of
 *   fenced writes says whose did), and it came back as a follower;
 * - no node turned NotReady or Down through any of it;
 * - one etcd member killed changes nothing; two make writes fail with the
 *   coded error while containers run on; back, the cluster carries on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeKind } from '../../src/api/kinds.js';
import type { ClusterInfo, Node } from '../../src/api/types.js';
import { isBatonError } from '../../src/base/errors.js';
import { termsSince as termsOf } from '../helpers/leaderWrites.js';
import { EtcdStore } from '../../src/store/etcd/etcdStore.js';
import { EtcdCluster } from '../helpers/etcd.js';
import { live, TestCluster } from '../helpers/cluster.js';
import { eventually, stopProc, TEST_IMAGE } from '../helpers/proc.js';

const NODES = ['n2', 'n3', 'n4'] as const;

describe('three servers on etcd', () => {
  const etcd = new EtcdCluster({ basePort: 31679, progressNotifyMs: 200 });
  let c: TestCluster;
  let store: EtcdStore;
  /** Every state any node was seen in, from a watch that runs through the whole file. */
  const nodeStates = new Map<string, Set<string>>();
  const watching = new AbortController();

  /** info asks server i directly. */
  const info = (i: number): Promise<ClusterInfo> => c.serverApi(i).info();
  /** leaderIndex: which server leads, as the store says. */
  const leaderIndex = async (): Promise<number> => {
    for (let i = 0; i < c.urls.length; i++) {
      const r = await info(i).catch(() => undefined);
      if (r?.leader) return Number(r.leader.identity.slice(1));
    }
    throw new Error('no server answers with a leader');
  };
  const termsSince = (after: number) => termsOf(store, after);

  beforeAll(async () => {
    await etcd.start();
    store = await EtcdStore.open({ endpoints: etcd.endpoints });
    c = new TestCluster('baton-ha-', { heartbeatIntervalMs: 1000, nodeDownAfterMs: 10_000, bookmarkIntervalMs: 1000 }, 44000, { ha: { servers: 3, etcd: etcd.endpoints, leaderTtl: '1s', serverPort: 31710 } });
    await c.start(NODES);
    // Node states for the whole file: none may turn NotReady or Down because a server went away.
    void (async () => {
      for (;;) {
        try {
          for await (const ev of c.api.watch<Node>(nodeKind, { signal: watching.signal })) {
            if ((ev.type !== 'ADDED' && ev.type !== 'MODIFIED') || !ev.object?.metadata?.name) continue;
            let set = nodeStates.get(ev.object.metadata.name);
            if (!set) nodeStates.set(ev.object.metadata.name, (set = new Set()));
            set.add(ev.object.status.state);
          }
        } catch {
          /* a server went away: watch through another */
        }
        if (watching.signal.aborted) return;
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
  }, 120_000);

  afterAll(async () => {
    watching.abort();
    for (const p of c?.servers ?? []) if (p.child.signalCode === null && p.child.exitCode === null) p.child.kill('SIGCONT');
    await c?.stop();
    await store?.close();
    await etcd.cleanup();
  }, 60_000);

  it('finishes a scale from 10 to 50 after kill -9 of the leader: exactly 50 tasks and containers, one per slot', async () => {
    await c.apply('ha', `services:
  app:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    network_mode: host
    deploy:
      replicas: 10
`);
    await eventually(async () => expect(live(await c.tasksOf('ha_app')).filter((t) => t.status.state === 'running')).toHaveLength(10), 60_000);
    const leader = await leaderIndex();
    const before = await store.currentRevision();
    const oldTerm = (await info(leader)).leader!.term;
    // The CLI, given every server, says which leads.
    expect((await c.baton(['info'])).stdout).toMatch(new RegExp(`leader s${leader} since \\S+ \\(term ${oldTerm}\\)`));
    expect((await c.baton(['service', 'scale', 'ha_app=50'])).code).toBe(0);
    await eventually(async () => expect((await c.tasksOf('ha_app')).length).toBeGreaterThan(12), 30_000, 20);
    const killedAt = Date.now();
    await stopProc(c.servers[leader]!, 'SIGKILL');
    // The new leader's first write: the first fenced write of another term.
    const firstWrite = await eventually(async () => {
      const w = (await termsSince(before)).find((x) => x.term !== oldTerm);
      expect(w).toBeDefined();
      return Date.now();
    }, 30_000, 50);
    console.log(`kill -9 of the leader s${leader}: the new leader's first write within ${firstWrite - killedAt} ms (leader TTL 1 s)`);
    await eventually(async () => {
      const tasks = live(await c.tasksOf('ha_app'));
      expect(tasks.filter((t) => t.status.state === 'running')).toHaveLength(50);
      expect(new Set(tasks.map((t) => t.spec.slot)).size).toBe(50);
      expect(await c.running('ha_app')).toHaveLength(50);
    }, 120_000, 500);
    // Its tasks' slots are 1..50, each once.
    expect(live(await c.tasksOf('ha_app')).map((t) => Number(t.spec.slot)).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    await c.startServer(leader);
  }, 240_000);

  it('fences a leader paused past its lease: none of its writes land after another took over, and it comes back a follower', async () => {
    const leader = await leaderIndex();
    const oldTerm = (await info(leader)).leader!.term;
    const before = await store.currentRevision();
    c.servers[leader]!.child.kill('SIGSTOP');
    try {
      // Another takes over, and acts: a scale, taken by any server that answers, is carried out by the new leader,
      // and its new tasks start while the old leader still sleeps: an agent whose watches it held (open and silent)
      // moved them to another server along with its heartbeats.
      expect((await c.baton(['service', 'scale', 'ha_app=55'])).code).toBe(0);
      await eventually(async () => expect((await termsSince(before)).some((x) => x.term !== oldTerm)).toBe(true), 30_000, 100);
      await eventually(async () => expect(live(await c.tasksOf('ha_app'))).toHaveLength(55), 60_000);
      await eventually(async () => expect(await c.running('ha_app')).toHaveLength(55), 60_000);
    } finally {
      c.servers[leader]!.child.kill('SIGCONT');
    }
    // Awake, it is a follower; nothing it may have tried to write as leader landed after the new term began.
    await eventually(async () => expect((await info(leader)).leading).toBe(false), 10_000);
    const terms = await termsSince(before);
    const firstNew = terms.findIndex((x) => x.term !== oldTerm);
    expect(firstNew).toBeGreaterThanOrEqual(0);
    expect(terms.slice(firstNew).filter((x) => x.term === oldTerm)).toEqual([]);
    await eventually(async () => expect(live(await c.tasksOf('ha_app'))).toHaveLength(55), 30_000);
  }, 180_000);

  it('carries on with one etcd member down; without quorum writes fail with the coded error and containers run on; then it carries on', async () => {
    await etcd.kill(2);
    expect((await c.baton(['service', 'scale', 'ha_app=40'])).code).toBe(0);
    await eventually(async () => expect(live(await c.tasksOf('ha_app')).filter((t) => t.status.state === 'running')).toHaveLength(40), 60_000);
    await etcd.kill(1);
    const err = await c.api.scale('ha_app', 30).catch((e) => e);
    expect(isBatonError(err) && err.code, String(err)).toBe('BATON_ERR_STORE_UNAVAILABLE');
    // The engine runs on regardless.
    expect(await c.running('ha_app')).toHaveLength(40);
    await etcd.restart(1);
    await etcd.restart(2);
    await eventually(async () => expect((await c.api.scale('ha_app', 30)).spec.replicas).toBe(30), 30_000, 500);
    await eventually(async () => {
      expect(live(await c.tasksOf('ha_app')).filter((t) => t.status.state === 'running')).toHaveLength(30);
      expect(await c.running('ha_app')).toHaveLength(30);
    }, 60_000).catch((e) => {
      for (const [i, p] of c.servers.entries()) console.error(`server s${i}:\n${p.output().slice(-3000)}`);
      throw e;
    });
  }, 180_000);

  it('never marked a node NotReady or Down', async () => {
    const why = JSON.stringify((await c.api.events({ type: 'NodeNotReady' })).items.map((e: { message: string; source: string; lastTimestamp?: string }) => e));
    expect([...nodeStates.keys()].sort(), JSON.stringify([...nodeStates].map(([n, st]) => [n, [...st]]))).toEqual([...NODES]);
    const logs = () =>
      [...c.servers.entries()].map(([i, p]) => `s${i}:\n${p.output().split('\n').filter((l) => /lead|lost|NotReady|NodeDown|campaign|heartbeat/i.test(l)).join('\n')}`).join('\n') +
      [...c.agents].map(([n, p]) => `\n${n}:\n${p.output().slice(-2000)}`).join('');
    for (const [n, states] of nodeStates) expect([...states], `${n}: ${why}\n${logs()}`).toEqual(['ready']);
  });
});
