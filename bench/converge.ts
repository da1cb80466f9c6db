/**
 * bench:converge — how long until N replicas of `sleep 3600` run on the
 * local engine, for Baton, Docker Swarm and plain `docker run`.
 *
 *   npm run bench:converge -- --replicas 100 [--runs 3] [--concurrency 8] [--skip-swarm]
 *                             [--raw bridge,pair,host] [--baton-network bridge|host]
 *
 * Baton's tasks run each in a network namespace of its own (network mode
 * bridge, the default): a pause container holds the namespace and the agent
 * plumbs a veth into the node's bridge, so a task is two containers. The
 * peers, at --concurrency docker CLI calls in flight:
 *
 *   raw-bridge  `docker run -d --network <net>`: a user-defined bridge network
 *               the bench makes (`docker network create --internal`, a subnet
 *               of its own), the engine making each container's namespace and
 *               veth. The goal's peer: Baton within 1.25× of its time.
 *   raw-pair    per replica, Baton's two containers made by hand: a holder of
 *               Baton's own pause image on that network, then the workload
 *               joining its namespace (`--network container:<holder>`), one
 *               pair after the other in each of the --concurrency slots.
 *   raw-host    `docker run -d --network host`: no namespace (the peer before
 *               tasks had namespaces of their own).
 *
 * The raw peers and Baton take turns run by run, in an order that rotates,
 * so that load that comes and goes on the machine falls on each alike;
 * Swarm's runs come after them (it puts the engine in swarm mode).
 *
 * Both tasks and containers are counted: Baton's pause containers count as
 * containers (2 per task; 1 with --baton-network host), and so do raw-pair's
 * holders.
 *
 * Every container it creates carries `baton.bench=<bench id>` and
 * `baton.bench.run=<run id>`, its network `baton.bench=<bench id>`;
 * everything is removed at the end, also on failure or Ctrl-C, with the Baton
 * node's bridge and nftables tables. Baton runs as `baton up` on 127.0.6.1
 * with the bench's own ranges (tasks from 10.146.0.0/17, VIPs from
 * 10.146.240.0/20, host ports 46000-46999) and without egress; the Docker
 * network takes the first free /24 from 10.146.201.0/24. Progress goes to
 * stderr, results to stdout.
 *
 * Those 10.146/16 addresses exist only on this machine: Baton gives them to
 * tasks in namespaces it makes (--egress none: no default route, no NAT,
 * and its forward chain drops what they send outside the cluster's ranges),
 * and the Docker network is `--internal` on an engine with --iptables=false
 * (no NAT; its containers do get a default route through the bridge, so
 * benchNetwork's own nftables guard drops whatever the host would forward
 * from its subnet off it). The bench sends nothing to any of them: its
 * containers only sleep; it reads the engine's timings.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../src/api/client.js';
import { tlsTransport, withTransport } from '../src/api/tls.js';
import type { Task } from '../src/api/types.js';
import { readCompose } from '../src/manifest/compose/index.js';
import Docker from 'dockerode';
import { ensurePauseImage } from '../src/agent/docker/sandbox.js';
import { PAUSE_IMAGE, PAUSE_LABEL } from '../src/agent/net/pauseImage.js';
import { benchArgs, benchNetwork, benchSubnets, checkInterrupted, cleanUpOnSignals, CONFINED_AGENT_ARGS, containerIds, containerTimes, cpuMs, docker, dockerOk, dropAgentTables, initSwarm, intFlag, keyValues, log, machineInfo, median, now, onCleanup, oneLine, pidOfComm, pool, ratio, removeByLabel, removeContainers, removeNetworksByLabel, removeNodeNetworks, reportHeader, requireImage, runCleanups, runMain, Sampler, secs, sleep, spawnBaton, swarmState, waitContainersGone, waitFor, wasInterrupted, type BenchNetwork, type OwnSwarm } from './lib.js';

// ---------------------------------------------------------------- options

const IMAGE = 'baton-test/busybox:latest';
const CMD = ['sleep', '3600'];
const STACK = 'bench';
const SERVICE = `${STACK}_sleep`;
const LABEL = 'baton.bench';
const RUN_LABEL = 'baton.bench.run';
const TERMINAL = new Set(['complete', 'failed', 'shutdown', 'rejected', 'orphaned']);
/** The Baton node's own name and address, and the bench's ranges (its share of this machine's). */
const BATON_NODE = 'convergebench-node';
const BATON_ADDRESS = '127.0.6.1';
const BATON_PORTS = '46000-46999';
const CLUSTER_CIDR = '10.146.0.0/17';
const SERVICE_CIDR = '10.146.240.0/20';
/** The raw peers' network takes the first free /24 of these (see benchNetwork). */
const RAW_SUBNETS = benchSubnets('10.146.201.0', 8);

type RawKind = 'bridge' | 'pair' | 'host';
const RAW_KINDS: RawKind[] = ['bridge', 'pair', 'host'];
type SystemName = 'baton' | 'swarm' | `raw-${RawKind}`;

interface Opts {
  replicas: number;
  runs: number;
  concurrency: number;
  skipSwarm: boolean;
  skipBaton: boolean;
  skipRaw: boolean;
  /** The raw peers to measure, in this order. */
  raw: RawKind[];
  /** Baton's network mode: bridge (the default: a namespace per task) or host. */
  batonNetwork: 'bridge' | 'host';
  timeoutMs: number;
  pollMs: number;
}

const USAGE = 'usage: npm run bench:converge -- --replicas N [--runs 3] [--concurrency 8] [--skip-swarm] [--skip-baton] [--skip-raw] [--raw bridge,pair,host] [--baton-network bridge|host] [--timeout-s 600] [--poll-ms 100]\n';

function parseOpts(): Opts {
  const values = benchArgs(USAGE, { replicas: '100', runs: '3', concurrency: '8', 'skip-swarm': false, 'skip-baton': false, 'skip-raw': false, raw: RAW_KINDS.join(','), 'baton-network': 'bridge', 'timeout-s': '600', 'poll-ms': '100' });
  const raw = values.raw.split(',').map((x) => x.trim()).filter(Boolean);
  for (const k of raw) if (!RAW_KINDS.includes(k as RawKind)) throw new Error(`--raw: unknown peer "${k}" (known: ${RAW_KINDS.join(', ')})`);
  if (values['baton-network'] !== 'bridge' && values['baton-network'] !== 'host') throw new Error(`--baton-network must be bridge or host, got "${values['baton-network']}"`);
  return {
    replicas: intFlag('replicas', values.replicas, 1),
    runs: intFlag('runs', values.runs, 1),
    concurrency: intFlag('concurrency', values.concurrency, 1),
    skipSwarm: values['skip-swarm'],
    skipBaton: values['skip-baton'],
    skipRaw: values['skip-raw'],
    raw: RAW_KINDS.filter((k) => raw.includes(k)),
    batonNetwork: values['baton-network'],
    timeoutMs: intFlag('timeout-s', values['timeout-s'], 1) * 1000,
    pollMs: intFlag('poll-ms', values['poll-ms'], 10),
  };
}

// ---------------------------------------------------------------- results

interface RunResult {
  ms: number;
  /** Extra per-run figures, printed as key=value (ms unless the key says otherwise). */
  extra: Record<string, number>;
  warnings: string[];
}

interface SystemResult {
  name: SystemName;
  /** Containers per replica: 2 for a task with its pause container, or a raw pair. */
  perReplica: number;
  runs: RunResult[];
  /** Set when the system could not be measured at all (not a failure for swarm). */
  unavailable?: string;
  failed?: string;
  notes: string[];
}

/**
 * Runner is one system under measurement: opened once (a Baton cluster, a
 * network, a swarm; `open` may find it unavailable), measured run by run
 * (each run leaves the engine as it found it; a throw fails the system),
 * closed at the end.
 */
interface Runner {
  res: SystemResult;
  open(): Promise<void>;
  run(i: number): Promise<void>;
  close(): Promise<void>;
}

const benchId = `converge-${Date.now().toString(36)}-${process.pid}`;

cleanUpOnSignals([`${LABEL}=${benchId}`]);

// ---------------------------------------------------------------- shared bits

/** engineCpuMs sums CPU time of dockerd and containerd, to show where the engine's work goes. */
function engineCpuMs(): number {
  let sum = 0;
  for (const name of ['dockerd', 'containerd']) {
    const pid = pidOfComm(name);
    const c = pid ? cpuMs(pid) : undefined;
    if (c !== undefined) sum += c;
  }
  return sum;
}

/** phaseFromContainers adds created/started spreads (ms after t0) from docker inspect, each key starting with `prefix`. */
async function phaseFromContainers(ids: string[], wall0: number, extra: Record<string, number>, prefix = 'ctr'): Promise<void> {
  const t = await containerTimes(ids);
  if (!t.length) return;
  const created = t.map((x) => x.created - wall0).filter(Number.isFinite);
  const started = t.map((x) => x.started - wall0).filter(Number.isFinite);
  extra[`${prefix}_first_created_ms`] = Math.min(...created);
  extra[`${prefix}_last_created_ms`] = Math.max(...created);
  extra[`${prefix}_first_started_ms`] = Math.min(...started);
  extra[`${prefix}_last_started_ms`] = Math.max(...started);
  extra[`${prefix}_create_to_start_median_ms`] = median(t.map((x) => x.started - x.created));
}

async function runningCount(labels: string[]): Promise<number> {
  return (await containerIds(labels, false)).length;
}

// ---------------------------------------------------------------- raw docker run

/** The raw peers' docker network (raw-bridge, raw-pair), made once per bench. */
let rawNet: BenchNetwork | undefined;

/**
 * rawReplica starts one replica of a raw peer with the docker CLI and returns
 * its container ids: one container, or raw-pair's holder (Baton's pause
 * image, created as Baton creates it: SIGKILL to stop, read-only, no
 * capabilities) and the workload in its namespace. A `docker run` the engine
 * fails (exit 125, e.g. "cannot start a stopped process" on a loaded
 * machine) is tried once more, as Baton's agent retries a failed start; the
 * container it left is removed with its run. `errors` counts those.
 */
async function rawReplica(kind: RawKind, labels: string[], o: Opts, errors: { n: number; last: string }): Promise<string[]> {
  const run = async (args: string[]) => {
    const argv = ['run', '-d', ...labels.flatMap((l) => ['--label', l]), ...args];
    let r = await docker(argv, { timeoutMs: o.timeoutMs });
    if (r.code === 125 && /Error response from daemon/.test(r.stderr)) {
      errors.n++;
      errors.last = oneLine(r.stderr);
      log(`warning: docker run failed (${errors.last}); once more`);
      r = await docker(argv, { timeoutMs: o.timeoutMs });
    }
    if (r.code !== 0) throw new Error(`docker ${argv.join(' ')}: exit ${r.code}: ${oneLine(r.stderr || r.stdout)}`);
    return r.stdout.trim();
  };
  if (kind === 'host') return [await run(['--init', '--network', 'host', IMAGE, ...CMD])];
  if (kind === 'bridge') return [await run(['--init', '--network', rawNet!.name, IMAGE, ...CMD])];
  const holder = await run(['--network', rawNet!.name, '--stop-signal', 'SIGKILL', '--read-only', '--cap-drop', 'ALL', '--memory', '8m', '--pids-limit', '4', PAUSE_IMAGE]);
  try {
    return [holder, await run(['--init', '--network', `container:${holder}`, IMAGE, ...CMD])];
  } catch (e) {
    // Say how the holder ended, if it did (it is removed with its run).
    const st = await docker(['inspect', '--format', 'status={{.State.Status}} exit={{.State.ExitCode}} oomKilled={{.State.OOMKilled}} error={{.State.Error}}', holder]);
    throw new Error(`${(e as Error).message}; the holder ${holder.slice(0, 12)}: ${oneLine(st.stdout || st.stderr)}`);
  }
}

/** rawRunner: a raw peer; its docker network (raw-bridge, raw-pair) is made once, by whichever opens first. */
function rawRunner(o: Opts, kind: RawKind): Runner {
  const name: SystemName = `raw-${kind}`;
  const perReplica = kind === 'pair' ? 2 : 1;
  const res: SystemResult = { name, perReplica, runs: [], notes: [] };
  let what = '';
  return {
    res,
    open: async () => {
      if (kind !== 'host' && !rawNet) rawNet = await benchNetwork(`baton-bench-${benchId}`, RAW_SUBNETS, `${LABEL}=${benchId}`);
      if (kind !== 'host') res.notes.push(`docker network ${rawNet!.name}: bridge, internal, ${rawNet!.subnet}`);
      what = kind === 'pair' ? `pairs (${PAUSE_IMAGE} on ${rawNet!.name} + workload in its namespace)` : `x docker run -d --network ${kind === 'host' ? 'host' : rawNet!.name}`;
    },
    run: async (i) => {
      const runId = `${benchId}-${name}-${i}`;
      // Containers on the bench's network leave one by one (see removeContainers: parallel removals can deadlock the engine).
      const oneByOne = kind !== 'host';
      const undo = onCleanup(`${name} run ${i}`, async () => void (await removeByLabel([`${RUN_LABEL}=${runId}`], { oneByOne })));
      const errors = { n: 0, last: '' };
      try {
        log(`${name} run ${i}/${o.runs}: ${o.replicas} ${what} at concurrency ${o.concurrency}`);
        const cpu0 = engineCpuMs();
        const wall0 = Date.now();
        const t0 = now();
        let done = 0;
        const ids = await pool(Array.from({ length: o.replicas }), o.concurrency, async () => {
          const r = await rawReplica(kind, [`${LABEL}=${benchId}`, `${RUN_LABEL}=${runId}`], o, errors);
          if (++done % 20 === 0) log(`${name} run ${i}: ${done}/${o.replicas} started`);
          return r;
        });
        const ms = now() - t0;
        const engineCpu = engineCpuMs() - cpu0;
        const warnings: string[] = [];
        const running = await runningCount([`${RUN_LABEL}=${runId}`]);
        if (running !== o.replicas * perReplica) warnings.push(`docker ps shows ${running}/${o.replicas * perReplica} containers running`);
        const extra: Record<string, number> = { engine_cpu_ms: engineCpu, docker_running: running, engine_errors: errors.n };
        if (errors.n) warnings.push(`${errors.n} docker run(s) failed once and were tried again (last: ${errors.last})`);
        await phaseFromContainers(ids.map((x) => x[x.length - 1]!), wall0, extra);
        if (kind === 'pair') await phaseFromContainers(ids.map((x) => x[0]!), wall0, extra, 'holder');
        log(`${name} run ${i}: ${secs(ms)} s (${running} containers running)`);
        res.runs.push({ ms, extra, warnings });
        const t1 = now();
        await removeContainers(await containerIds([`${RUN_LABEL}=${runId}`]), { oneByOne });
        log(`${name} run ${i}: removed in ${secs(now() - t1)} s`);
      } finally {
        await removeByLabel([`${RUN_LABEL}=${runId}`], { oneByOne });
        undo();
      }
    },
    close: async () => undefined,
  };
}

// ---------------------------------------------------------------- Baton

interface BatonProc {
  child: ChildProcess;
  url: string;
  token: string;
  caPem: string;
  clusterId: string;
  home: string;
  stderrTail: () => string;
}

async function startBaton(home: string): Promise<BatonProc> {
  const dataDir = join(home, 'data');
  const { child, matches, stderrTail } = await spawnBaton(
    ['up', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--name', BATON_NODE, '--address', BATON_ADDRESS, '--port-range', BATON_PORTS, '--cluster-cidr', CLUSTER_CIDR, '--service-cidr', SERVICE_CIDR, ...CONFINED_AGENT_ARGS, '--pull', 'never', '--log-level', 'warn'],
    {
    env: { BATON_HOME: home },
      ready: [/baton is up: server (\S+?),/],
      what: 'baton up',
    },
  );
  const url = matches[0]!;
  const token = readFileSync(join(dataDir, 'server', 'admin.token'), 'utf8').trim();
  const caPem = readFileSync(join(dataDir, 'server', 'ca.crt'), 'utf8');
  const clusterId = JSON.parse(readFileSync(join(dataDir, 'server', 'cluster.json'), 'utf8')).clusterId as string;
  log(`baton is up at ${url} (pid ${child.pid}, cluster ${clusterId})`);
  return { child, url, token, caPem, clusterId, home, stderrTail };
}

async function stopBaton(p: BatonProc): Promise<void> {
  const { child } = p;
  if (child.exitCode === null && child.signalCode === null) {
    log(`stopping baton (SIGTERM pid ${child.pid})`);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const ok = await Promise.race([exited.then(() => true), sleep(30_000).then(() => false)]);
    if (!ok) {
      log(`baton pid ${child.pid} did not exit within 30 s; SIGKILL`);
      child.kill('SIGKILL');
      await Promise.race([exited, sleep(5_000)]);
    }
  }
  await dropAgentTables([BATON_NODE], p.clusterId);
  const n = await removeByLabel([`baton.cluster=${p.clusterId}`]);
  if (n) log(`removed ${n} leftover container(s) of baton cluster ${p.clusterId}`);
  // The agent leaves its task network up when it stops (its tasks run on); the bench takes it down.
  await removeNodeNetworks([BATON_NODE], p.clusterId);
}

function composeText(o: Opts, runId: string): string {
  return [
    `name: ${STACK}`,
    'services:',
    '  sleep:',
    `    image: ${IMAGE}`,
    `    command: ${JSON.stringify(CMD)}`,
    '    init: true',
    ...(o.batonNetwork === 'host' ? ['    network_mode: host'] : []),
    '    labels:',
    `      ${LABEL}: "${benchId}"`,
    `      ${RUN_LABEL}: "${runId}"`,
    '    deploy:',
    `      replicas: ${o.replicas}`,
    '',
  ].join('\n');
}

function parseCompose(file: string, baseDir: string) {
  const r = readCompose(readFileSync(file, 'utf8'), { fileName: file, baseDir, env: {}, stack: STACK });
  if (r.errors.length) throw new Error(`compose file ${file}: ${r.errors.map((e) => JSON.stringify(e)).join('; ')}`);
  return r;
}

function batonRunner(o: Opts): Runner {
  const res: SystemResult = { name: 'baton', perReplica: o.batonNetwork === 'bridge' ? 2 : 1, runs: [], notes: [] };
  const home = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  let proc: BatonProc | undefined;
  let api: ApiClient | undefined;
  let svcLabels: string[] = [];
  let overallPeakKiB = 0;
  let ok = true;
  const undo = onCleanup('baton', async () => {
    if (proc) await stopBaton(proc);
  });
  return {
    res,
    open: async () => {
      ok = false; // until it is up
      proc = await startBaton(home);
      ok = true;
      // Scoped to our cluster, so another Baton cluster on this engine (e.g. a Quick-start one) is never counted or touched.
      svcLabels = [`baton.cluster=${proc.clusterId}`, `baton.service=${SERVICE}`];
      api = new ApiClient(withTransport({ server: proc.url, token: proc.token, timeoutMs: 60_000 }, tlsTransport({ caPem: proc.caPem })));
      // Warm the bench process's compose reader (schema compile) so run 1 measures Baton, not the bench.
      const f = join(home, 'warmup.yaml');
      writeFileSync(f, composeText(o, 'warmup'));
      parseCompose(f, home);
    },
    run: async (i) => {
      const pid = proc!.child.pid!;
      try {
        const runId = `${benchId}-baton-${i}`;
        const file = join(home, `compose-${i}.yaml`);
        writeFileSync(file, composeText(o, runId));
        log(`baton run ${i}/${o.runs}: apply ${o.replicas} replicas`);
        const sampler = new Sampler(pid, 200);
        sampler.start();
        const eng0 = engineCpuMs();
        const extra: Record<string, number> = {};
        const warnings: string[] = [];

        const wall0 = Date.now();
        const t0 = now();
        const r = parseCompose(file, home);
        extra.parse_ms = now() - t0;
        await api!.apply(STACK, { services: r.services.map((s) => ({ name: s.name, spec: s.spec, labels: s.labels })), prune: false, dryRun: false });
        extra.apply_ms = now() - t0;

        let lastLog = 0;
        let tasks: Task[] = [];
        let polls = 0;
        const failedSeen = new Set<string>();
        for (;;) {
          checkInterrupted();
          tasks = (await api!.tasks({ fieldSelector: { 'spec.serviceName': SERVICE } })).items;
          polls++;
          const t = now() - t0;
          const live = tasks.filter((x) => x.spec.desiredState === 'running');
          const running = live.filter((x) => x.status.state === 'running').length;
          if (tasks.length > 0) extra.first_task_seen_ms ??= t;
          if (live.length >= o.replicas) extra.all_tasks_seen_ms ??= t;
          if (running > 0) extra.first_running_seen_ms ??= t;
          for (const x of tasks)
            if ((x.status.state === 'failed' || x.status.state === 'rejected') && !failedSeen.has(x.metadata.name)) {
              failedSeen.add(x.metadata.name);
              log(`baton run ${i}: task ${x.metadata.name} ${x.status.state}: ${x.status.error ?? x.status.message}`);
            }
          if (running >= o.replicas) break;
          if (t - lastLog > 2000) {
            lastLog = t;
            const byState: Record<string, number> = {};
            for (const x of tasks) byState[x.status.state] = (byState[x.status.state] ?? 0) + 1;
            log(`baton run ${i}: ${secs(t)} s: ${running}/${o.replicas} running (${Object.entries(byState).map(([k, v]) => `${k}=${v}`).join(' ') || 'no tasks'})`);
          }
          if (t > o.timeoutMs) throw new Error(`baton run ${i}: only ${running}/${o.replicas} running after ${secs(t)} s`);
          await sleep(o.pollMs);
        }
        const ms = now() - t0;
        sampler.stop();
        extra.polls = polls;
        extra.engine_cpu_ms = engineCpuMs() - eng0;
        extra.baton_cpu_ms = sampler.cpuUsedMs;
        extra.baton_peak_rss_kib = sampler.peakKiB;
        overallPeakKiB = Math.max(overallPeakKiB, sampler.peakKiB);

        // Server-side timestamps: when the tasks were created and when the agent saw them running.
        const created = tasks.map((x) => Date.parse(x.metadata.creationTimestamp) - wall0).filter(Number.isFinite);
        const runningAt = tasks
          .filter((x) => x.status.state === 'running')
          .map((x) => Date.parse(x.status.startedAt ?? x.status.timestamp) - wall0)
          .filter(Number.isFinite);
        if (created.length) {
          extra.task_first_created_ms = Math.min(...created);
          extra.task_last_created_ms = Math.max(...created);
        }
        if (runningAt.length) {
          extra.task_first_running_ms = Math.min(...runningAt);
          extra.task_last_running_ms = Math.max(...runningAt);
        }

        // A task's pause container carries its labels and baton.pause: both are counted, apart.
        const dockerRunning = await runningCount(svcLabels);
        const pauseIds = await containerIds([...svcLabels, PAUSE_LABEL]);
        extra.docker_running = dockerRunning;
        extra.pause_running = await runningCount([...svcLabels, PAUSE_LABEL]);
        if (dockerRunning !== o.replicas * res.perReplica) warnings.push(`docker ps shows ${dockerRunning}/${o.replicas * res.perReplica} containers with baton.service=${SERVICE}`);
        const pause = new Set(pauseIds);
        await phaseFromContainers((await containerIds(svcLabels)).filter((id) => !pause.has(id)), wall0, extra);
        if (pauseIds.length) await phaseFromContainers(pauseIds, wall0, extra, 'pause');
        log(`baton run ${i}: ${secs(ms)} s (${dockerRunning} containers running in docker, ${extra.pause_running} of them pause containers; peak RSS ${(sampler.peakKiB / 1024).toFixed(1)} MiB)`);
        res.runs.push({ ms, extra, warnings });

        // Tear down before the next run.
        const t1 = now();
        await api!.removeStack(STACK);
        await waitFor(
          'baton containers to go away and tasks to be gone or terminal',
          async () => {
            const left = await containerIds(svcLabels);
            const t = (await api!.tasks({ fieldSelector: { 'spec.serviceName': SERVICE } })).items;
            return left.length === 0 && t.every((x) => TERMINAL.has(x.status.state)) ? true : undefined;
          },
          { timeoutMs: o.timeoutMs, everyMs: 250 },
        ).catch(async (e) => {
          warnings.push(`teardown: ${(e as Error).message}`);
          log(`warning: ${(e as Error).message}; force-removing`);
          await removeByLabel(svcLabels);
        });
        extra.teardown_ms = now() - t1;
        log(`baton run ${i}: stack removed in ${secs(extra.teardown_ms)} s`);
  
      } catch (e) {
        // Nothing of this run stays on the engine while the others measure.
        ok = false;
        await api!.removeStack(STACK).catch(() => undefined);
        await removeByLabel(svcLabels);
        throw e;
      }
    },
    close: async () => {
      if (res.runs.length) res.notes.push(`baton server peak RSS ${(overallPeakKiB / 1024).toFixed(1)} MiB (VmRSS sampled every 200 ms)`);
      if (proc) {
        if (!ok) log(`baton stderr tail:\n${proc.stderrTail()}`);
        await stopBaton(proc).catch((e) => log(`stopping baton: ${(e as Error).message}`));
      }
      undo();
      await removeByLabel([`${LABEL}=${benchId}`, 'baton.service']).catch(() => undefined);
      if (ok) rmSync(home, { recursive: true, force: true });
      else log(`kept baton home ${home} for inspection`);
    },
  };
}

// ---------------------------------------------------------------- Swarm

function swarmRunner(o: Opts): Runner {
  const res: SystemResult = { name: 'swarm', perReplica: 1, runs: [], notes: [] };
  // Unlike the other benches, this one measures in a swarm the engine is already in (and never leaves that one).
  let own: OwnSwarm | undefined;
  return {
    res,
    open: async () => {
      const state = await swarmState();
      if (state === 'active') res.notes.push('engine was already in a swarm; used it and left it in place');
      else if (state === 'inactive') {
        own = await initSwarm();
        if (own.error) res.unavailable = own.error;
      } else res.unavailable = `engine swarm state is "${state}"`;
    },
    run: async (i) => {
      const runId = `${benchId}-swarm-${i}`;
      const name = `baton-bench-${runId}`;
      const undo = onCleanup(`swarm run ${i}`, async () => {
        await docker(['service', 'rm', name]);
        await waitContainersGone('swarm containers', [`${RUN_LABEL}=${runId}`]);
      });
      try {
        log(`swarm run ${i}/${o.runs}: docker service create --replicas ${o.replicas}`);
        const eng0 = engineCpuMs();
        const wall0 = Date.now();
        const t0 = now();
        const cr = await docker(
          [
            'service',
            'create',
            '--detach',
            '--name',
            name,
            '--replicas',
            String(o.replicas),
            '--init',
            '--network',
            'host',
            '--container-label',
            `${LABEL}=${benchId}`,
            '--container-label',
            `${RUN_LABEL}=${runId}`,
            '--label',
            `${LABEL}=${benchId}`,
            IMAGE,
            ...CMD,
          ],
          { timeoutMs: o.timeoutMs },
        );
        if (cr.code !== 0) {
          const why = (cr.stderr.trim() || cr.stdout.trim()).replace(/\s+/g, ' ');
          log(`swarm: docker service create failed: ${why}`);
          res.unavailable = `docker service create failed: ${why}`;
          return;
        }
        const extra: Record<string, number> = { create_returned_ms: now() - t0 };
        let lastLog = 0;
        let lastReplicas = '';
        for (;;) {
          checkInterrupted();
          const s = (await dockerOk(['service', 'ls', '--filter', `name=${name}`, '--format', '{{.Name}} {{.Replicas}}'])).trim();
          const line = s.split('\n').find((l) => l.startsWith(`${name} `)) ?? '';
          lastReplicas = line.slice(name.length + 1);
          const m = /^(\d+)\/(\d+)/.exec(lastReplicas);
          const t = now() - t0;
          if (m && Number(m[1]) > 0) extra.first_running_seen_ms ??= t;
          if (m && Number(m[1]) === o.replicas && Number(m[2]) === o.replicas) break;
          if (t - lastLog > 2000) {
            lastLog = t;
            log(`swarm run ${i}: ${secs(t)} s: replicas ${lastReplicas || '?'}`);
          }
          if (t > o.timeoutMs) throw new Error(`swarm run ${i}: replicas ${lastReplicas} after ${secs(t)} s`);
          await sleep(250);
        }
        const ms = now() - t0;
        extra.engine_cpu_ms = engineCpuMs() - eng0;
        const warnings: string[] = [];
        const running = await runningCount([`${RUN_LABEL}=${runId}`]);
        extra.docker_running = running;
        if (running !== o.replicas) warnings.push(`docker ps shows ${running}/${o.replicas} running`);
        await phaseFromContainers(await containerIds([`${RUN_LABEL}=${runId}`]), wall0, extra);
        log(`swarm run ${i}: ${secs(ms)} s (${running} running in docker)`);
        res.runs.push({ ms, extra, warnings });

        const t1 = now();
        const rm = await docker(['service', 'rm', name], { timeoutMs: 120_000 });
        if (rm.code !== 0) log(`warning: docker service rm ${name}: ${rm.stderr.trim()}`);
        extra.teardown_ms = await waitContainersGone('swarm containers to go away', [`${RUN_LABEL}=${runId}`], { timeoutMs: o.timeoutMs });
        log(`swarm run ${i}: service removed in ${secs(now() - t1)} s`);
      } finally {
        await docker(['service', 'rm', name]); // no-op when already gone
        await removeByLabel([`${RUN_LABEL}=${runId}`]);
        undo();
      }
        },
    close: async () => {
      // Remove any bench service still around, then leave the swarm if it is ours.
      if ((await swarmState().catch(() => 'unknown')) === 'active') {
        const left = (await docker(['service', 'ls', '-q', '--filter', `label=${LABEL}=${benchId}`])).stdout.split('\n').filter(Boolean);
        if (left.length) await docker(['service', 'rm', ...left]);
      }
      await removeByLabel([`${LABEL}=${benchId}`]);
      await own?.leave();
    },
  };
}

// ---------------------------------------------------------------- report

const GOAL = 1.25;

function report(o: Opts, machine: Record<string, string>, results: SystemResult[]): void {
  const by = (n: SystemName) => results.find((r) => r.name === n);
  // A system that failed part-way keeps the runs it finished (its status says it failed).
  const med = (r?: SystemResult) => (r && !r.unavailable && r.runs.length ? median(r.runs.map((x) => x.ms)) : NaN);
  const baton = med(by('baton'));
  const rawBridge = med(by('raw-bridge'));
  const rawPair = med(by('raw-pair'));
  const rawHost = med(by('raw-host'));
  const swarm = med(by('swarm'));
  const perReplica = (n: SystemName) => by(n)?.perReplica ?? NaN;

  const out: string[] = [];
  out.push(...reportHeader('converge', benchId, machine));
  out.push(`workload replicas=${o.replicas} runs=${o.runs} concurrency=${o.concurrency} image=${IMAGE} cmd="${CMD.join(' ')}" init=true`);
  out.push(`baton: network_mode ${o.batonNetwork}${o.batonNetwork === 'bridge' ? ' (the default: a namespace per task, held by a pause container, veth plumbed by the agent)' : ''}; swarm: --network host`);
  out.push('');
  const runCols = Array.from({ length: o.runs }, (_, i) => `run${i + 1}_s`.padStart(9));
  out.push(`${'system'.padEnd(10)} ${'tasks'.padStart(5)} ${'ctrs'.padStart(5)} ${runCols.join(' ')} ${'median_s'.padStart(9)} ${'ctrs/s'.padStart(7)}  status`);
  const order: SystemName[] = ['baton', ...RAW_KINDS.map((k) => `raw-${k}` as const), 'swarm'];
  for (const name of order) {
    const r = by(name);
    if (!r) {
      out.push(`${name.padEnd(10)} ${'-'.padStart(5)} ${'-'.padStart(5)} ${runCols.map(() => '-'.padStart(9)).join(' ')} ${'-'.padStart(9)} ${'-'.padStart(7)}  skipped`);
      continue;
    }
    const cells = Array.from({ length: o.runs }, (_, i) => (r.runs[i] ? secs(r.runs[i]!.ms) : '-').padStart(9));
    const status = r.unavailable ? `unavailable: ${r.unavailable}` : r.failed ? `FAILED: ${r.failed}` : 'ok';
    const m = med(r);
    const rate = Number.isFinite(m) ? ((o.replicas * r.perReplica) / (m / 1000)).toFixed(1) : 'n/a';
    out.push(`${name.padEnd(10)} ${String(o.replicas).padStart(5)} ${String(o.replicas * r.perReplica).padStart(5)} ${cells.join(' ')} ${secs(m).padStart(9)} ${rate.padStart(7)}  ${status}`);
  }
  out.push('');
  for (const r of results)
    r.runs.forEach((run, i) => {
      const kv = Object.entries(run.extra).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(1)}`);
      out.push(`run system=${r.name} run=${i + 1} total_ms=${run.ms.toFixed(1)} ${kv.join(' ')}`);
      for (const w of run.warnings) out.push(`warning system=${r.name} run=${i + 1} ${w}`);
    });
  for (const r of results) for (const n of r.notes) out.push(`note system=${r.name} ${n}`);
  const b = by('baton');
  if (b && b.runs.length) {
    const m = (k: string) => median(b.runs.map((x) => x.extra[k]).filter((v): v is number => v !== undefined));
    out.push(
      `baton_phases_median_s apply=${secs(m('apply_ms'))} first_task_created=${secs(m('task_first_created_ms'))} last_task_created=${secs(m('task_last_created_ms'))} ` +
        (b.perReplica === 2 ? `first_pause_created=${secs(m('pause_first_created_ms'))} last_pause_started=${secs(m('pause_last_started_ms'))} ` : '') +
        `first_container_created=${secs(m('ctr_first_created_ms'))} last_container_created=${secs(m('ctr_last_created_ms'))} ` +
        `first_running=${secs(m('task_first_running_ms'))} last_container_started=${secs(m('ctr_last_started_ms'))} last_task_running=${secs(m('task_last_running_ms'))} all_running_seen=${secs(baton)}`,
    );
    out.push(`baton_server peak_rss_mib=${(Math.max(...b.runs.map((x) => x.extra.baton_peak_rss_kib ?? 0)) / 1024).toFixed(1)} cpu_s_per_run_median=${secs(m('baton_cpu_ms'))} engine_cpu_s_per_run_median=${secs(m('engine_cpu_ms'))}`);
  }
  out.push('');
  // Per container: time per container made, over the peer's (lower is better for Baton).
  const perCtr = (a: number, an: SystemName, c: number, cn: SystemName) => ratio(a / perReplica(an), c / perReplica(cn));
  out.push(
    `converge replicas=${o.replicas} runs=${o.runs} baton_median_s=${secs(baton)} raw_bridge_median_s=${secs(rawBridge)} raw_pair_median_s=${secs(rawPair)} raw_host_median_s=${secs(rawHost)} swarm_median_s=${secs(swarm)}`,
  );
  out.push(
    `ratios (time to all replicas running) baton/raw-bridge=${ratio(baton, rawBridge)} baton/raw-pair=${ratio(baton, rawPair)} baton/raw-host=${ratio(baton, rawHost)} baton/swarm=${ratio(baton, swarm)}; ` +
      `per container made baton/raw-bridge=${perCtr(baton, 'baton', rawBridge, 'raw-bridge')} baton/raw-pair=${perCtr(baton, 'baton', rawPair, 'raw-pair')}`,
  );
  const pass = Number.isFinite(baton) && Number.isFinite(rawBridge) ? (baton / rawBridge <= GOAL ? 'PASS' : 'FAIL') : 'n/a';
  out.push(
    `Goal: ${o.replicas} Baton tasks (${o.replicas * perReplica('baton')} containers) within ${GOAL}x of ${o.replicas} raw \`docker run -d --network <bridge network>\` (${o.replicas} containers): ${pass} (baton/raw-bridge=${ratio(baton, rawBridge)})`,
  );
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOpts();
  const machine = await machineInfo();
  log(`bench id ${benchId}; replicas=${o.replicas} runs=${o.runs} concurrency=${o.concurrency}; ${keyValues(machine)}`);
  await requireImage(IMAGE);

  const results: SystemResult[] = [];
  let failed = false;
  try {
    // One throw-away container so the image and engine are warm for whoever goes first.
    await dockerOk(['run', '--rm', '--init', '--network', 'host', '--label', `${LABEL}=${benchId}`, IMAGE, 'true']);
    // raw-pair's holders run Baton's pause image, which an agent builds on its engine the first time.
    if (!o.skipRaw && o.raw.includes('pair')) await ensurePauseImage(new Docker());

    // Raw peers and Baton take turns run by run, the order rotating, so that a load on the machine that comes and goes
    // (other work on its two cores) falls on each alike; Swarm puts the engine in swarm mode, so its runs come after.
    const turns: Runner[] = [...(o.skipRaw ? [] : o.raw.map((k) => rawRunner(o, k))), ...(o.skipBaton ? [] : [batonRunner(o)])];
    const late: Runner[] = o.skipSwarm ? [] : [swarmRunner(o)];
    const fail = (r: Runner, what: string, e: unknown) => {
      if (wasInterrupted()) throw e;
      failed = true;
      log(`${r.res.name} ${what} failed: ${(e as Error).stack ?? e}`);
      r.res.failed = `${what}: ${oneLine((e as Error).message).slice(0, 300)}`;
    };
    const measure = async (group: Runner[]) => {
      const live = () => group.filter((r) => !r.res.failed && !r.res.unavailable);
      try {
        for (const r of group) {
          results.push(r.res);
          checkInterrupted();
          await r.open().catch((e) => fail(r, 'setting up', e));
        }
        for (let i = 1; i <= o.runs; i++) {
          const measured = live();
          for (const r of measured.map((_, k) => measured[(k + i - 1) % measured.length]!)) {
            checkInterrupted();
            await r.run(i).catch((e) => fail(r, `run ${i}`, e));
          }
        }
      } finally {
        for (const r of [...group].reverse()) await r.close().catch((e) => log(`closing ${r.res.name}: ${(e as Error).message}`));
      }
    };
    await measure(turns);
    await measure(late);
  } finally {
    await runCleanups();
    const left = await containerIds([`${LABEL}=${benchId}`]).catch(() => []);
    if (left.length) {
      log(`removing ${left.length} leftover bench container(s)`);
      await removeContainers(left, { oneByOne: true });
    }
    await removeNetworksByLabel(`${LABEL}=${benchId}`).catch(() => undefined);
  }
  report(o, machine, results);
  return failed ? 1 : 0;
}

runMain(main, [`${LABEL}=${benchId}`]);
