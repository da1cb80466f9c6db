/**
 * bench:scheduler — the pure scheduler's placement rate (no I/O): one pass
 * places `--tasks` pending tasks from services that mix constraints, spread
 * preferences and reservations onto clusters of 100, 1,000, 5,000 and
 * 10,000 nodes, and prints placements per second against the issue's goal
 * (20,000/s at 5,000 nodes) and kube-scheduler's and Nomad's published
 * anchors.
 *
 * The end-to-end half runs a real `baton server` (SQLite store) and `baton
 * sim` processes hosting `--e2e-nodes` simulated nodes (real agents: join,
 * mutual TLS, heartbeats, watches, status reports), applies services totalling
 * `--e2e-replicas` replicas through the API, and prints the time until all
 * run, where that time went (API and service controller creating tasks, the
 * scheduler assigning them, agents starting them), CPU seconds per process,
 * the API requests served, the server's event-loop delay and its peak RSS.
 * It runs first: the pure passes leave this process a large heap to collect.
 *
 *   npm run bench:scheduler -- [--tasks 100000] [--nodes 100,1000,5000,10000]
 *                              [--e2e-nodes 5000] [--e2e-replicas 100000] [--e2e-sims 2]
 *                              [--e2e-store sqlite|etcd|both] [--no-e2e] [--no-pure]
 *
 * With --e2e-store etcd the server keeps its state in a 3-member etcd the
 * bench starts on this machine (Debian's etcd 3.4); `both` runs SQLite, then
 * etcd, and prints them side by side.
 *
 * The default end-to-end size is the issue's: 100,000 replicas on 5,000
 * simulated nodes (about 2 minutes to join them, 1 to deploy; the whole
 * bench within 5 minutes).
 */
import { parseArgs } from 'node:util';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { ApiClient } from '../src/api/client.js';
import { tlsTransport, withTransport } from '../src/api/tls.js';
import { EtcdCluster } from '../test/helpers/etcd.js';
import { cpuMs, LARGE_CLUSTER_ARGS, log, median, now, rssSplitKiB, Sampler, sleep, spawnBaton } from './lib.js';
import { defaultContainerSpec, type Node, type Task } from '../src/api/types.js';
import { SpreadPlacer } from '../src/scheduler/placement.js';
import { newTaskSpec, specHash, taskIdentity } from '../src/server/controllers/serviceReconciler.js';
import type { Service } from '../src/api/types.js';
import { SERVER_NODE_FLAGS } from '../src/base/nodeFlags.js';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '100000' },
    nodes: { type: 'string', default: '100,1000,5000,10000' },
    // The issue's size: 100,000 replicas on 5,000 simulated nodes.
    'e2e-nodes': { type: 'string', default: '5000' },
    'e2e-replicas': { type: 'string', default: '100000' },
    'e2e-sims': { type: 'string', default: '2' },
    // sqlite, etcd (a 3-member etcd of the bench's own, one server on it), or both in one run (etcd beside SQLite).
    'e2e-store': { type: 'string', default: 'sqlite' },
    'no-e2e': { type: 'boolean', default: false },
    'no-pure': { type: 'boolean', default: false },
  },
});
const TASKS = Number(values.tasks);
const SIZES = values.nodes!.split(',').map(Number);
if (!(TASKS > 0) || SIZES.some((n) => !(n > 0))) throw new Error('--tasks and --nodes must be positive');

const ZONES = ['a', 'b', 'c', 'd'];
/** Ports of the bench's own for its etcd (clients 31779, 31789, 31799; bench:ha uses them too, never at the same time). */
const ETCD_BASE = 31779;
const nowIso = new Date().toISOString();

/** socketCount: how many sockets a process holds open (its file descriptors that are sockets). */
function socketCount(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

function mkNode(i: number): Node {
  return {
    apiVersion: 'baton/v1',
    kind: 'Node',
    metadata: { name: `n${i}`, uid: `uid-${i}`, resourceVersion: '1', generation: 1, labels: { zone: ZONES[i % ZONES.length]!, disk: i % 3 === 0 ? 'ssd' : 'hdd' }, ownerRefs: [], creationTimestamp: nowIso },
    spec: { availability: 'active' },
    status: {
      state: 'ready', message: '', address: '127.0.0.1', hostname: `n${i}`, capacity: { cpus: 64, memoryBytes: 256 * 1024 ** 3 }, allocated: { cpus: 0, memoryBytes: 0 },
      taskCount: 0, agentVersion: '0.1.0', engineVersion: 'sim', portRange: [20000, 29999], timestamp: nowIso,
    },
  };
}

/** Ten services: a third with a zone spread preference, a third with a constraint, all with small reservations. */
function services(): Service[] {
  return Array.from({ length: 10 }, (_, i) => ({
    apiVersion: 'baton/v1',
    kind: 'Service',
    metadata: { name: `bench_s${i}`, uid: `svc-${i}`, resourceVersion: '1', generation: 1, labels: {}, ownerRefs: [], creationTimestamp: nowIso },
    spec: {
      stack: 'bench', shortName: `s${i}`, mode: 'replicated', replicas: 0,
      container: defaultContainerSpec('demo:1'), ports: [], expose: [],
      resources: { reservations: { cpus: 0.05, memoryBytes: 64 * 1024 ** 2 }, limits: { cpus: 0, memoryBytes: 0 } },
      restartPolicy: { condition: 'any', delayMs: 1000, maxDelayMs: 60_000, maxAttempts: 0, windowMs: 0 },
      placement: { constraints: i % 3 === 1 ? ['node.labels.disk == ssd'] : [], ...(i % 3 === 0 ? { preferences: ['node.labels.zone'] } : {}) },
      x: {},
    },
    status: { observedGeneration: 1, desired: 0, ready: 0, running: 0 },
  }));
}

function pendingTasks(n: number): Task[] {
  const svcs = services();
  return Array.from({ length: n }, (_, i) => {
    const svc = svcs[i % svcs.length]!;
    const slot = Math.floor(i / svcs.length) + 1;
    const hash = specHash(svc);
    const id = taskIdentity(svc.metadata.name, svc.metadata.uid, slot, hash, 1);
    return {
      apiVersion: 'baton/v1',
      kind: 'Task',
      metadata: { ...id, resourceVersion: '1', generation: 1, labels: {}, ownerRefs: [], creationTimestamp: nowIso },
      spec: newTaskSpec(svc, slot, hash),
      status: { state: 'pending', message: '', ports: [], restartCount: 0, timestamp: nowIso },
    } as Task;
  });
}

// End to end first: the pure passes leave this process a large heap to collect, which would compete for the
// machine's two cores with the server and the simulated nodes being measured.
const STORES = values['e2e-store'] === 'both' ? ['sqlite', 'etcd'] : [values['e2e-store']!];
if (STORES.some((x) => x !== 'sqlite' && x !== 'etcd')) throw new Error('--e2e-store must be sqlite, etcd or both');
const e2eRuns: string[] = [];
if (!values['no-e2e']) for (const store of STORES) e2eRuns.push(await endToEnd(Number(values['e2e-nodes']), Number(values['e2e-replicas']), Number(values['e2e-sims']), store as 'sqlite' | 'etcd'));
if (e2eRuns.length > 1) process.stdout.write(`\n# bench:scheduler, end to end, side by side\n${e2eRuns.join('\n')}\n`);

const rows: string[][] = [['nodes', 'tasks placed', 'pending', 'seconds', 'placements/s', 'goal']];
for (const size of values['no-pure'] ? [] : SIZES) {
  const nodes = Array.from({ length: size }, (_, i) => mkNode(i));
  const all = pendingTasks(TASKS);
  // One pass over every pending task against one snapshot: what the scheduler controller does after an apply.
  const t0 = performance.now();
  const plan = new SpreadPlacer().place(all, nodes, all);
  const secs = (performance.now() - t0) / 1000;
  const rate = plan.placed.length / secs;
  rows.push([String(size), String(plan.placed.length), String(plan.unplaced.length), secs.toFixed(2), rate.toFixed(0), size === 5000 ? `>= 20000/s: ${rate >= 20_000 ? 'PASS' : 'FAIL'}` : '-']);
  process.stderr.write(`bench:scheduler ${size} nodes: ${plan.placed.length} placements in ${secs.toFixed(2)} s\n`);
}
const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
process.stdout.write(`\n# bench:scheduler, pure placer: one pass places ${TASKS} pending tasks from 10 services (constraints, zone spread, reservations)\n`);
if (!values['no-pure']) {
  for (const r of rows) process.stdout.write(r.map((cell, c) => cell.padEnd(w[c]!)).join('  ') + '\n');
  process.stdout.write('anchors: kube-scheduler SchedulingBasic 270 pods/s at 5,000 nodes; Nomad C1M 3,750/s (5 servers), C2M ~1,500/s\n');
}

// ---------------------------------------------------------------- end to end

/** endToEnd runs one deployment on a real server (on `store`) and simulated nodes; returns its one-line summary. */
async function endToEnd(nodeCount: number, replicas: number, sims: number, store: 'sqlite' | 'etcd'): Promise<string> {
  if (!(nodeCount > 0 && replicas > 0 && sims > 0)) throw new Error('--e2e-nodes, --e2e-replicas and --e2e-sims must be positive');
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-sched-'));
  const children: ChildProcess[] = [];
  // Thousands of agents hold thousands of connections: raise the open-file limit of the processes we start (prlimit, by their PID).
  const serverNodeArgs = [
    ...(process.env.BENCH_SERVER_NODE_ARGS !== undefined ? process.env.BENCH_SERVER_NODE_ARGS.split(' ').filter(Boolean) : SERVER_NODE_FLAGS),
    ...(process.env.BENCH_HEAP_SNAPSHOT ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dirname(resolve(process.env.BENCH_HEAP_SNAPSHOT))}`] : []),
  ];
  process.stdout.write(`server node flags: ${serverNodeArgs.join(' ') || "(Node's defaults)"}${process.env.BENCH_SERVER_NODE_ARGS !== undefined ? ' (BENCH_SERVER_NODE_ARGS)' : ' (as baton up -d launches it)'}\n`);
  const nofile = (pid: number | undefined) => pid && spawnSync('prlimit', [`--nofile=200000:200000`, `--pid=${pid}`]);
  let etcd: EtcdCluster | undefined;
  // Ctrl-C or SIGTERM mid-run: stop the server, the sim processes and etcd this run started (by PID), remove its dir.
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping the server, the simulated nodes and the store this run started`);
    void (async () => {
      for (const c of [...children].reverse()) await stopChild(c);
      await etcd?.cleanup();
      rmSync(dir, { recursive: true, force: true });
    })().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    let storeArgs: string[] = [];
    if (store === 'etcd') {
      etcd = new EtcdCluster({ basePort: ETCD_BASE, progressNotifyMs: 1000, dataRoot: dir });
      await etcd.start();
      storeArgs = ['--store', 'etcd', '--etcd-endpoints', etcd.endpoints.join(','), '--cluster-key', join(dir, 'cluster.key'), '--init-cluster-key', '--name', 's0'];
    }
    const server = await spawnBaton(['server', '--data-dir', join(dir, 'server'), '--listen', '127.0.0.1:0', '--log-level', 'warn', ...storeArgs, ...clusterArgs(nodeCount)], {
      env: { BATON_HOME: dir },
      ready: [/baton server listening on (https:\/\/\S+)/, /join token: (BATON-\S+)/],
      what: 'baton server',
      // The server's flags as `baton up -d` launches it (base/nodeFlags.ts); BENCH_SERVER_NODE_ARGS replaces them
      // ("" for Node's defaults, "--cpu-prof --cpu-prof-dir /tmp/prof" to profile the server).
      nodeArgs: serverNodeArgs,
      spawned: (c) => children.push(c),
    });
    nofile(server.child.pid);
    const alone = rssSplitKiB(server.child.pid!);
    const [url, token] = server.matches as [string, string];
    const tls = tlsTransport({ caPem: readFileSync(join(dir, 'server', 'server', 'ca.crt'), 'utf8') });
    const api = new ApiClient(withTransport({ server: url, token: readFileSync(join(dir, 'server', 'server', 'admin.token'), 'utf8').trim() }, tls));

    // Simulated nodes: `sims` processes, each its own zone, 64 cpus and 256 GiB per node.
    const per = Math.ceil(nodeCount / sims);
    const tJoin = now();
    // The sim processes join at the same time.
    await Promise.all(Array.from({ length: sims }, async (_, z) => {
      const n = Math.min(per, nodeCount - z * per);
      const sim = await spawnBaton(
        ['sim', '--join', url, '--token', token, '--nodes', String(n), '--cpus', '64', '--memory', '256g', '--label', `zone=${ZONES[z % ZONES.length]}`, '--start-latency', '200ms', '--name-prefix', `${ZONES[z % ZONES.length]}${z}-`, '--data-dir', join(dir, `sim${z}`), '--concurrency', '64'],
        { env: { BATON_HOME: dir }, ready: [/sim: (\d+)\/\d+ simulated nodes up/], what: `baton sim (${n} nodes)`, timeoutMs: 600_000, nodeArgs: (process.env.BENCH_SIM_NODE_ARGS ?? '').split(' ').filter(Boolean), spawned: (c) => children.push(c) },
      );
      nofile(sim.child.pid);
    }));
    await until('every node Ready', 600_000, async () => (await api.nodes()).items.filter((x) => x.status.state === 'ready').length >= nodeCount);
    const joinS = (now() - tJoin) / 1000;
    log(`${nodeCount} simulated nodes Ready in ${joinS.toFixed(1)} s`);
    // The server with every node joined and no task yet: most of its own memory is then the nodes' connections (bench:conns).
    const joined = rssSplitKiB(server.child.pid!);
    const sockets = socketCount(server.child.pid!);

    const serverSampler = new Sampler(server.child.pid!, 500);
    serverSampler.start();
    const cpu0 = children.map((c) => cpuMs(c.pid!) ?? 0);
    // Simulated nodes carry a zone label only: the constrained services ask for a zone instead of a disk.
    const svcs = services().map((svc, i) => ({
      name: svc.metadata.name,
      labels: {},
      spec: { ...svc.spec, replicas: Math.floor(replicas / 10) + (i < replicas % 10 ? 1 : 0), placement: { ...svc.spec.placement, constraints: svc.spec.placement.constraints.length ? ['node.labels.zone != z'] : [] } },
    }));
    const m0 = await metricsText(api);
    const requests0 = requestCounts(m0);
    const latency0 = requestCounts(m0, 'baton_api_request_duration_seconds_sum');
    // API latency while the deploy runs, as a client sees it: a read (GET /api/v1/services) and a small write
    // (PUT of a config no task uses: the Kubernetes SLO's mutating call), one of each every 200 ms.
    await api.call('POST', '/api/v1/configs', { name: 'bench-probe', data: Buffer.from('0').toString('base64') });
    const probe = { reads: [] as number[], writes: [] as number[], stop: false };
    const probing = (async () => {
      for (let i = 1; !probe.stop; i++) {
        let t = now();
        await api.services();
        probe.reads.push(now() - t);
        t = now();
        await api.call('PUT', '/api/v1/configs/bench-probe', { data: Buffer.from(String(i)).toString('base64') });
        probe.writes.push(now() - t);
        await sleep(200);
      }
    })();
    const t0 = now();
    await api.apply('bench', { services: svcs, prune: false, dryRun: false });
    const applyMs = now() - t0;
    let last = -1;
    let tLast = now();
    let tLogged = 0;
    const deadline = Number(process.env.BENCH_E2E_DEADLINE_S ?? 1800) * 1000;
    await until(`${replicas} replicas running`, deadline, async () => {
      const asked = now();
      const running = (await api.services()).items.filter((x) => x.spec.stack === 'bench').reduce((n, x) => n + (x.status.running ?? 0), 0);
      if (now() - asked > 2000) log(`  (the API took ${((now() - asked) / 1000).toFixed(1)} s to list services)`);
      if (running !== last) {
        // Polled every 250 ms (the finish is known to a quarter second); progress is logged about once a second.
        if (now() - tLogged >= 1000 || running >= replicas) {
          tLogged = now();
          log(`  ${running}/${replicas} running after ${((now() - t0) / 1000).toFixed(1)} s`);
        }
        last = running;
        tLast = now();
      }
      if (now() - tLast > 120_000) throw new Error(`stuck at ${running}/${replicas} running for 2 minutes`);
      return running >= replicas;
    }, 250);
    const totalS = (now() - t0) / 1000;
    probe.stop = true;
    await probing;
    serverSampler.stop();
    // Nodes that turned NotReady (or worse) during the deploy: a node's status timestamp moves when its state does.
    const nodesAfter = (await api.nodes()).items;
    const notReadyAtEnd = nodesAfter.filter((x) => x.status.state !== 'ready').length;
    // The apply call's start on the wall clock: every timestamp below is taken against it.
    const wall0 = Date.now() - (now() - t0);
    const changedState = nodesAfter.filter((x) => Date.parse(x.status.timestamp) >= wall0).length;
    const m1 = await metricsText(api);
    const requests1 = requestCounts(m1);
    const latency1 = requestCounts(m1, 'baton_api_request_duration_seconds_sum');
    const cpu = children.map((c, i) => ((cpuMs(c.pid!) ?? 0) - cpu0[i]!) / 1000);

    // Where the time went, from every task's timestamps, relative to the start of the apply call.
    const sample: Task[] = [];
    for (const svc of svcs) sample.push(...(await api.tasks({ fieldSelector: { 'spec.serviceName': svc.name } })).items);
    if (process.env.BENCH_DUMP_TASK) log(`sample task (${JSON.stringify(sample[0]).length} bytes): ${JSON.stringify(sample[0])}`);
    const at = (iso: string | undefined) => (iso ? Date.parse(iso) : NaN);
    const pct = (xs: number[], p: number) => {
      const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
      return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
    };
    const f = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    const row = (what: string, xs: number[]) => process.stdout.write(`  ${what.padEnd(52)} p50 ${f(pct(xs, 50)).padStart(8)}  p90 ${f(pct(xs, 90)).padStart(8)}  last ${f(pct(xs, 100)).padStart(8)}\n`);
    const rate = replicas / totalS;
    process.stdout.write(`\n# bench:scheduler, end to end: ${replicas} replicas of 10 services on ${nodeCount} simulated nodes (${sims} baton sim processes), ${store === 'etcd' ? 'etcd store (3 members on this machine)' : 'SQLite store'}\n`);
    process.stdout.write(`nodes joined and Ready: ${joinS.toFixed(1)} s\n`);
    if (joined && alone) {
      process.stdout.write(
        `server once joined, before the deploy: RSS ${((joined.anon + joined.file) / 1024).toFixed(0)} MiB, its own ${(alone.anon / 1024).toFixed(0)} → ${(joined.anon / 1024).toFixed(0)} MiB since it started: ` +
          `${((joined.anon - alone.anon) / nodeCount).toFixed(0)} KiB per node joined (${sockets} sockets open; bench:conns measures one connection alone)\n`,
      );
    }
    process.stdout.write(`nodes during the deploy: ${changedState} of ${nodeCount} changed state (NotReady and back, or worse), ${notReadyAtEnd} not Ready at the end\n`);
    process.stdout.write(`apply → all running: ${totalS.toFixed(1)} s = ${rate.toFixed(0)} tasks/s (goal >= 1500/s: ${rate >= 1500 ? 'PASS' : 'FAIL'}; stretch 3750/s: ${rate >= 3750 ? 'PASS' : 'no'})\n`);
    process.stdout.write(`where the time went (${sample.length} tasks; times since the apply call began; the API call itself took ${f(applyMs)}):\n`);
    row('created (service controller → store)', sample.map((t) => at(t.metadata.creationTimestamp) - wall0));
    row('assigned (scheduler → store)', sample.map((t) => at(t.status.scheduling?.at) - wall0));
    row('started (watch → agent → sim start 200 ms)', sample.map((t) => at(t.status.startedAt) - wall0));
    row('per task: created → assigned', sample.map((t) => at(t.status.scheduling?.at) - at(t.metadata.creationTimestamp)));
    row('per task: assigned → started', sample.map((t) => at(t.status.startedAt) - at(t.status.scheduling?.at)));
    process.stdout.write(`  (after the last start: agents' status reports and the service controller's count: ${f(totalS * 1000 - pct(sample.map((t) => at(t.status.startedAt) - wall0), 100))})\n`);
    process.stdout.write(`  CPU seconds during the run: server ${cpu[0]!.toFixed(1)}, sim processes ${cpu.slice(1).map((c) => c.toFixed(1)).join(' + ')} (of ${(2 * totalS).toFixed(0)} on 2 cores)\n`);
    const served = [...requests1].map(([k, n]) => [k, n - (requests0.get(k) ?? 0)] as const).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    const q = (xs: number[], p: number) => pct(xs, p).toFixed(0);
    process.stdout.write(`  API latency during the deploy (a probe every 200 ms): GET /api/v1/services p50 ${q(probe.reads, 50)} ms, p99 ${q(probe.reads, 99)} ms, max ${q(probe.reads, 100)} ms (${probe.reads.length}); PUT /api/v1/configs/:name (a write) p50 ${q(probe.writes, 50)} ms, p99 ${q(probe.writes, 99)} ms, max ${q(probe.writes, 100)} ms (${probe.writes.length})\n`);
    process.stdout.write(`  API requests served during the run: ${served.reduce((n, [, c]) => n + c, 0)} (${served.slice(0, 5).map(([k, c]) => `${k} ${c}, mean ${((((latency1.get(k) ?? 0) - (latency0.get(k) ?? 0)) / c) * 1000).toFixed(0)} ms`).join('; ')})\n`);
    // prom-client's event-loop delay histogram covers the time since the previous scrape: the whole run.
    const lag = (q: string) => Number(new RegExp(`^baton_server_nodejs_eventloop_lag_${q}_seconds (\\S+)`, 'm').exec(m1)?.[1] ?? NaN) * 1000;
    process.stdout.write(`  server event-loop delay during the run: p50 ${lag('p50').toFixed(0)} ms, p90 ${lag('p90').toFixed(0)} ms, p99 ${lag('p99').toFixed(0)} ms, max ${lag('max').toFixed(0)} ms\n`);
    process.stdout.write(`server peak RSS during the run: ${(serverSampler.peakKiB / 1024).toFixed(0)} MiB\n`);
    // Where the server's memory is at the end (prom-client's process and V8 figures): the JS heap is often the smaller part.
    const gauge = (name: string, label?: string) => {
      let sum = 0;
      for (const mm of m1.matchAll(new RegExp(`^baton_server_${name}${label ? `\\{[^}]*${label}[^}]*\\}` : '(?:\\{[^}]*\\})?'} (\\S+)`, 'gm'))) sum += Number(mm[1]);
      return sum / 1048576;
    };
    // BENCH_HEAP_SNAPSHOT=<file>: a heap snapshot of the server now (all tasks running), after the full GC V8 makes for one.
    if (process.env.BENCH_HEAP_SNAPSHOT) await heapSnapshot(server.child, process.env.BENCH_HEAP_SNAPSHOT);
    process.stdout.write(`server memory at the end: RSS ${gauge('process_resident_memory_bytes').toFixed(0)} MiB; V8 heap used ${gauge('nodejs_heap_size_used_bytes').toFixed(0)} of ${gauge('nodejs_heap_size_total_bytes').toFixed(0)} MiB (old space ${gauge('nodejs_heap_space_size_used_bytes', 'space="old"').toFixed(0)}/${gauge('nodejs_heap_space_size_total_bytes', 'space="old"').toFixed(0)}, new space ${gauge('nodejs_heap_space_size_total_bytes', 'space="new"').toFixed(0)}); external ${gauge('nodejs_external_memory_bytes').toFixed(0)} MiB\n`);
    process.stdout.write('anchors: Nomad C1M 3,750/s with 5 servers, C2M ~1,500/s; kube-scheduler 270 pods/s at 5,000 nodes\n');
    await tls.close();
    return `${store.padEnd(6)}: ${replicas} replicas on ${nodeCount} nodes, apply → all running ${totalS.toFixed(1)} s = ${rate.toFixed(0)} tasks/s; server CPU ${cpu[0]!.toFixed(1)} s, peak RSS ${(serverSampler.peakKiB / 1024).toFixed(0)} MiB, event-loop p99 ${lag('p99').toFixed(0)} ms`;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const c of children.reverse()) await stopChild(c);
    await etcd?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * clusterArgs: the address ranges for `nodes` simulated nodes. LARGE_CLUSTER_ARGS (10.42.0.0/15 in /28s) hold
 * 8,192 nodes, and a registration past them is refused; more take 10.40.0.0/14 (16,384 /28s), beside the
 * service CIDR 10.44.0.0/16 as before. Simulated nodes plumb nothing: the ranges are only the server's to give.
 */
function clusterArgs(nodes: number): string[] {
  return nodes <= 8192 ? LARGE_CLUSTER_ARGS : ['--cluster-cidr', '10.40.0.0/14', '--node-cidr-size', '28', '--service-cidr', '10.44.0.0/16'];
}

/** metricsText reads the server's Prometheus text. */
async function metricsText(api: ApiClient): Promise<string> {
  const res = await api.raw('GET', '/metrics');
  let text = '';
  for await (const chunk of res.body ?? []) text += Buffer.from(chunk).toString('utf8');
  return text;
}

/** requestCounts sums a counter (baton_api_requests_total by default) by method and route. */
function requestCounts(text: string, metric = 'baton_api_requests_total'): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`^${metric}\\{([^}]*)\\} ([\\d.e+-]+)`, 'gm'))) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    const k = `${labels.method} ${labels.route}`;
    out.set(k, (out.get(k) ?? 0) + Number(m[2]));
  }
  return out;
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>, everyMs = 2000): Promise<void> {
  const deadline = now() + timeoutMs;
  while (!(await check())) {
    if (now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(everyMs);
  }
}

/** stopChild stops a process this bench started, by its PID: SIGTERM, then SIGKILL after 30 s. */
async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  process.kill(c.pid, 'SIGTERM');
  const t = setTimeout(() => c.pid && c.exitCode === null && process.kill(c.pid, 'SIGKILL'), 30_000);
  await exited;
  clearTimeout(t);
}

/** heapSnapshot has the server (started with --heapsnapshot-signal=SIGUSR2) write a heap snapshot, waits until it is whole, and names it `file`. */
async function heapSnapshot(server: ChildProcess, file: string): Promise<void> {
  const dir = dirname(resolve(file));
  const before = new Set(readdirSync(dir));
  server.kill('SIGUSR2');
  log(`heap snapshot of the server (pid ${server.pid}) asked for; waiting until it is written`);
  let last = -1;
  for (let waited = 0; waited < 600_000; waited += 1000) {
    await sleep(1000);
    const f = readdirSync(dir).find((n) => n.endsWith('.heapsnapshot') && !before.has(n));
    if (!f) continue;
    const size = statSync(join(dir, f)).size;
    if (size > 0 && size === last) {
      renameSync(join(dir, f), resolve(file));
      log(`heap snapshot: ${resolve(file)} (${(size / 1048576).toFixed(0)} MiB)`);
      return;
    }
    last = size;
  }
  throw new Error('the server wrote no heap snapshot within 10 minutes');
}
