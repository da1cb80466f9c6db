/**
 * bench:ha — the control plane on etcd, measured (issue 19):
 *
 * 1. Failover: three etcd members (Debian's etcd 3.4, on loopback ports of
 *    the bench's own) and three `baton server --store etcd` processes. Each
 *    round kills the leader with SIGKILL, asks a surviving server for a
 *    scale at once (work for the next leader), and times the kill until the
 *    new leader's first controller write: the first fenced write of another
 *    term in the store's record (LEADER_WRITES). The killed server is
 *    started again before the next round. p50 and max over the rounds.
 *    Goal: ≤ 5 s with the default lease TTL (Kubernetes' default lease is
 *    15 s).
 * 2. API writes: the same number of `scale` calls (alternating replica
 *    counts, some in flight at once) against a server on SQLite and against
 *    one of the servers on etcd, in the same run: calls/s and p99 latency;
 *    and the peer, etcd itself on the same cluster through the etcd3 client:
 *    puts one after another (what a Store that keeps its txns in issue order
 *    can reach at best) and all at once.
 *
 * Nothing runs containers: the services have no node to go to, so their
 * tasks stay pending, which is controller work all the same.
 *
 *   npm run bench:ha [-- --rounds 5 --ttl 5s --writes 2000 --concurrency 16]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../src/api/client.js';
import { tlsTransport, withTransport } from '../src/api/tls.js';
import { Etcd3 } from 'etcd3';
import { EtcdStore } from '../src/store/etcd/etcdStore.js';
import { serviceSpecFor } from './haSpec.js';
import { EtcdCluster } from '../test/helpers/etcd.js';
import { termsSince } from '../test/helpers/leaderWrites.js';
import { benchArgs, intFlag, log, median, now, onCleanup, percentile, ratio, runCleanups, spawnBaton, startBenchServer, type BatonChild } from './lib.js';

const args = benchArgs('npm run bench:ha [-- --rounds N --ttl DUR --writes N --concurrency N]', { rounds: '5', ttl: '3s', writes: '2000', concurrency: '16' });
const ROUNDS = intFlag('--rounds', args.rounds, 1, 50);
const WRITES = intFlag('--writes', args.writes, 10, 1_000_000);
const CONCURRENCY = intFlag('--concurrency', args.concurrency, 1, 256);
/** Ports of the bench's own: etcd clients 31779, 31789, 31799 (peers one above), servers 31810–31812. */
const ETCD_BASE = 31779;
const SERVER_PORT = 31810;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-ha-'));
  onCleanup('bench dir', async () => rmSync(dir, { recursive: true, force: true }));
  const etcd = new EtcdCluster({ basePort: ETCD_BASE, progressNotifyMs: 1000, dataRoot: dir });
  onCleanup('etcd', () => etcd.cleanup());
  await etcd.start();
  const store = await EtcdStore.open({ endpoints: etcd.endpoints });
  onCleanup('etcd client', () => store.close());

  // ---- three servers on etcd
  const keyFile = join(dir, 'cluster.key');
  const servers: BatonChild[] = [];
  const start = async (i: number) => {
    servers[i] = await spawnBaton(
      ['server', '--data-dir', join(dir, `s${i}`), '--listen', `127.0.0.1:${SERVER_PORT + i}`, '--name', `s${i}`, '--log-level', 'warn', '--store', 'etcd', '--etcd-endpoints', etcd.endpoints.join(','), '--cluster-key', keyFile, '--init-cluster-key', '--leader-ttl', args.ttl],
      { env: { BATON_HOME: dir }, ready: [/baton server listening on (https:\/\/\S+)/], what: `server s${i}` },
    );
  };
  for (let i = 0; i < 3; i++) await start(i);
  onCleanup('servers', async () => {
    for (const s of servers) s?.child.kill('SIGTERM');
  });
  const urls = [0, 1, 2].map((i) => `https://127.0.0.1:${SERVER_PORT + i}`);
  const tls = tlsTransport({ caPem: readFileSync(join(dir, 's0', 'server', 'ca.crt'), 'utf8') });
  const token = readFileSync(join(dir, 's0', 'server', 'admin.token'), 'utf8').trim();
  const client = (server: string) => new ApiClient(withTransport({ server, token, timeoutMs: 10_000 }, tls));
  const all = client(urls.join(','));
  await all.apply('ha', { services: [serviceSpecFor('ha', 'app', 5)], prune: false, dryRun: false });

  // ---- 1. failover
  const failovers: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const info = await all.info();
    const leader = Number(info.leader!.identity.slice(1));
    const before = await store.currentRevision();
    const killedAt = now();
    servers[leader]!.child.kill('SIGKILL');
    // Work for the next leader, through a server that is alive.
    await client(urls[(leader + 1) % 3]!).scale('ha_app', 6 + (round % 2));
    let ms = -1;
    for (const deadline = now() + 60_000; now() < deadline; ) {
      if ((await termsSince(store, before)).some((w) => w.term !== info.leader!.term)) {
        ms = now() - killedAt;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    if (ms < 0) throw new Error(`round ${round + 1}: no new leader wrote within 60 s`);
    failovers.push(ms);
    log(`round ${round + 1}: killed s${leader}; the new leader's first write ${Math.round(ms)} ms later`);
    await new Promise<void>((r) => (servers[leader]!.child.exitCode !== null || servers[leader]!.child.signalCode !== null ? r() : servers[leader]!.child.once('exit', () => r())));
    await start(leader);
  }

  // ---- 2. API writes: SQLite vs etcd, same calls
  const writeRate = async (api: ApiClient, what: string) => {
    const lat: number[] = [];
    let next = 0;
    const t0 = now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < WRITES) {
          const i = next++;
          const s = now();
          await api.scale('ha_app', 5 + (i % 3));
          lat.push(now() - s);
        }
      }),
    );
    const secs = (now() - t0) / 1000;
    const r = { rate: WRITES / secs, p50: median(lat), p99: percentile(lat, 99) };
    log(`${what}: ${WRITES} scale calls, ${CONCURRENCY} at a time: ${r.rate.toFixed(0)}/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms`);
    return r;
  };
  const sqlite = await startBenchServer(join(dir, 'sqlite'));
  onCleanup('sqlite server', async () => void sqlite.child.kill('SIGTERM'));
  await sqlite.api.apply('ha', { services: [serviceSpecFor('ha', 'app', 5)], prune: false, dryRun: false });
  const onSqlite = await writeRate(sqlite.api, 'SQLite (one server)');
  const onEtcd = await writeRate(client(urls[(Number((await all.info()).leader!.identity.slice(1)) + 1) % 3]!), 'etcd (3 members, through a follower)');

  // ---- the peer, same cluster, same run: etcd itself through the etcd3 client, puts one after another and all at once
  const raw = new Etcd3({ hosts: etcd.endpoints });
  onCleanup('etcd3 client', async () => raw.close());
  const rawPuts = async (concurrent: boolean) => {
    const t0 = now();
    if (concurrent) await Promise.all(Array.from({ length: WRITES }, (_, i) => raw.put(`/bench-raw/c${i}`).value('x')));
    else for (let i = 0; i < WRITES; i++) await raw.put(`/bench-raw/s${i}`).value('x');
    return WRITES / ((now() - t0) / 1000);
  };
  const rawSeq = await rawPuts(false);
  const rawAll = await rawPuts(true);
  log(`etcd alone (etcd3 client, same cluster): ${WRITES} puts one after another ${rawSeq.toFixed(0)}/s, all at once ${rawAll.toFixed(0)}/s`);

  const sorted = [...failovers].sort((a, b) => a - b);
  console.log('\nbench:ha');
  console.log(`failover (kill -9 of the leader → the new leader's first write), leader TTL ${args.ttl}, ${ROUNDS} rounds: p50 ${Math.round(median(sorted))} ms, max ${Math.round(sorted.at(-1)!)} ms (goal ≤ 5000 ms)`);
  console.log(`API writes (scale): SQLite ${onSqlite.rate.toFixed(0)}/s p99 ${onSqlite.p99.toFixed(1)} ms; etcd ${onEtcd.rate.toFixed(0)}/s p99 ${onEtcd.p99.toFixed(1)} ms; etcd/SQLite rate ${ratio(onEtcd.rate, onSqlite.rate)}`);
  console.log(`etcd alone on the same cluster: puts one after another ${rawSeq.toFixed(0)}/s, ${WRITES} at once ${rawAll.toFixed(0)}/s; Baton's scale calls on etcd / etcd's sequential puts ${ratio(onEtcd.rate, rawSeq)}`);
}

main()
  .catch((e) => {
    console.error(`bench:ha failed: ${(e as Error).stack ?? e}`);
    process.exitCode = 1;
  })
  .finally(() => runCleanups());
