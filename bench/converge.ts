/**
 * bench:converge — how long until N replicas of `sleep 3600` run on the
 * local engine, for Baton, Docker Swarm and plain `docker run`.
 *
 *   npm run bench:converge -- --replicas 100 [--runs 3] [--concurrency 8] [--skip-swarm]
 *
 * Every container it creates carries `baton.bench=<bench id>` and
 * `baton.bench.run=<run id>`; everything is removed at the end, also on
 * failure or Ctrl-C. Progress goes to stderr, results to stdout.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../src/api/client.js';
import { tlsTransport, withTransport } from '../src/api/tls.js';
import type { Task } from '../src/api/types.js';
import { readCompose } from '../src/manifest/compose.js';
import { benchArgs, checkInterrupted, cleanUpOnSignals, containerIds, containerTimes, cpuMs, docker, dockerOk, initSwarm, intFlag, keyValues, log, machineInfo, median, now, onCleanup, pidOfComm, pool, ratio, removeByLabel, removeContainers, reportHeader, requireImage, runCleanups, runMain, Sampler, secs, sleep, spawnBaton, swarmState, waitContainersGone, waitFor, wasInterrupted, type OwnSwarm } from './lib.js';

// ---------------------------------------------------------------- options

const IMAGE = 'baton-test/busybox:latest';
const CMD = ['sleep', '3600'];
const STACK = 'bench';
const SERVICE = `${STACK}_sleep`;
const LABEL = 'baton.bench';
const RUN_LABEL = 'baton.bench.run';
const TERMINAL = new Set(['complete', 'failed', 'shutdown', 'rejected', 'orphaned']);

interface Opts {
  replicas: number;
  runs: number;
  concurrency: number;
  skipSwarm: boolean;
  skipBaton: boolean;
  skipRaw: boolean;
  timeoutMs: number;
  pollMs: number;
}

const USAGE = 'usage: npm run bench:converge -- --replicas N [--runs 3] [--concurrency 8] [--skip-swarm] [--skip-baton] [--skip-raw] [--timeout-s 600] [--poll-ms 100]\n';

function parseOpts(): Opts {
  const values = benchArgs(USAGE, { replicas: '100', runs: '3', concurrency: '8', 'skip-swarm': false, 'skip-baton': false, 'skip-raw': false, 'timeout-s': '600', 'poll-ms': '100' });
  return {
    replicas: intFlag('replicas', values.replicas, 1),
    runs: intFlag('runs', values.runs, 1),
    concurrency: intFlag('concurrency', values.concurrency, 1),
    skipSwarm: values['skip-swarm'],
    skipBaton: values['skip-baton'],
    skipRaw: values['skip-raw'],
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
  name: 'baton' | 'swarm' | 'raw';
  runs: RunResult[];
  /** Set when the system could not be measured at all (not a failure for swarm). */
  unavailable?: string;
  failed?: string;
  notes: string[];
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

/** phaseFromContainers adds created/started spreads (ms after t0) from docker inspect. */
async function phaseFromContainers(ids: string[], wall0: number, extra: Record<string, number>): Promise<void> {
  const t = await containerTimes(ids);
  if (!t.length) return;
  const created = t.map((x) => x.created - wall0).filter(Number.isFinite);
  const started = t.map((x) => x.started - wall0).filter(Number.isFinite);
  extra.ctr_first_created_ms = Math.min(...created);
  extra.ctr_last_created_ms = Math.max(...created);
  extra.ctr_first_started_ms = Math.min(...started);
  extra.ctr_last_started_ms = Math.max(...started);
  extra.ctr_create_to_start_median_ms = median(t.map((x) => x.started - x.created));
}

async function runningCount(labels: string[]): Promise<number> {
  return (await containerIds(labels, false)).length;
}

// ---------------------------------------------------------------- raw docker run

async function benchRaw(o: Opts): Promise<SystemResult> {
  const res: SystemResult = { name: 'raw', runs: [], notes: [] };
  for (let i = 1; i <= o.runs; i++) {
    checkInterrupted();
    const runId = `${benchId}-raw-${i}`;
    const undo = onCleanup(`raw run ${i}`, async () => void (await removeByLabel([`${RUN_LABEL}=${runId}`])));
    try {
      log(`raw run ${i}/${o.runs}: ${o.replicas} x docker run -d at concurrency ${o.concurrency}`);
      const cpu0 = engineCpuMs();
      const wall0 = Date.now();
      const t0 = now();
      let done = 0;
      const ids = await pool(Array.from({ length: o.replicas }), o.concurrency, async () => {
        const id = (
          await dockerOk(
            ['run', '-d', '--init', '--network', 'host', '--label', `${LABEL}=${benchId}`, '--label', `${RUN_LABEL}=${runId}`, IMAGE, ...CMD],
            { timeoutMs: o.timeoutMs },
          )
        ).trim();
        if (++done % 20 === 0) log(`raw run ${i}: ${done}/${o.replicas} started`);
        return id;
      });
      const ms = now() - t0;
      const engineCpu = engineCpuMs() - cpu0;
      const warnings: string[] = [];
      const running = await runningCount([`${RUN_LABEL}=${runId}`]);
      if (running !== o.replicas) warnings.push(`docker ps shows ${running}/${o.replicas} running`);
      const extra: Record<string, number> = { engine_cpu_ms: engineCpu };
      await phaseFromContainers(ids, wall0, extra);
      log(`raw run ${i}: ${secs(ms)} s (${running} running)`);
      res.runs.push({ ms, extra, warnings });
      const t1 = now();
      await removeContainers(await containerIds([`${RUN_LABEL}=${runId}`]));
      log(`raw run ${i}: removed in ${secs(now() - t1)} s`);
    } finally {
      await removeByLabel([`${RUN_LABEL}=${runId}`]);
      undo();
    }
  }
  return res;
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
  const { child, matches, stderrTail } = await spawnBaton(['up', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--port-range', '26000-26999', '--pull', 'never', '--log-level', 'warn'], {
    env: { BATON_HOME: home },
    ready: [/baton is up: server (\S+?),/],
    what: 'baton up',
  });
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
  const n = await removeByLabel([`baton.cluster=${p.clusterId}`]);
  if (n) log(`removed ${n} leftover container(s) of baton cluster ${p.clusterId}`);
}

function composeText(o: Opts, runId: string): string {
  return [
    `name: ${STACK}`,
    'services:',
    '  sleep:',
    `    image: ${IMAGE}`,
    `    command: ${JSON.stringify(CMD)}`,
    '    init: true',
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

async function benchBaton(o: Opts): Promise<SystemResult> {
  const res: SystemResult = { name: 'baton', runs: [], notes: [] };
  const home = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  let proc: BatonProc | undefined;
  let ok = false;
  const undo = onCleanup('baton', async () => {
    if (proc) await stopBaton(proc);
  });
  try {
    proc = await startBaton(home);
    const pid = proc.child.pid!;
    // Scoped to our cluster, so another Baton cluster on this engine (e.g. a Quick-start one) is never counted or touched.
    const svcLabels = [`baton.cluster=${proc.clusterId}`, `baton.service=${SERVICE}`];
    const api = new ApiClient(withTransport({ server: proc.url, token: proc.token, timeoutMs: 60_000 }, tlsTransport({ caPem: proc.caPem })));
    let overallPeakKiB = 0;

    // Warm the bench process's compose reader (schema compile) so run 1 measures Baton, not the bench.
    {
      const f = join(home, 'warmup.yaml');
      writeFileSync(f, composeText(o, 'warmup'));
      parseCompose(f, home);
    }

    for (let i = 1; i <= o.runs; i++) {
      checkInterrupted();
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
      await api.apply(STACK, { services: r.services.map((s) => ({ name: s.name, spec: s.spec, labels: s.labels })), prune: false, dryRun: false });
      extra.apply_ms = now() - t0;

      let lastLog = 0;
      let tasks: Task[] = [];
      let polls = 0;
      const failedSeen = new Set<string>();
      for (;;) {
        checkInterrupted();
        tasks = (await api.tasks({ fieldSelector: { 'spec.serviceName': SERVICE } })).items;
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

      const dockerRunning = await runningCount(svcLabels);
      extra.docker_running = dockerRunning;
      if (dockerRunning !== o.replicas) warnings.push(`docker ps shows ${dockerRunning}/${o.replicas} containers with baton.service=${SERVICE}`);
      await phaseFromContainers(await containerIds(svcLabels), wall0, extra);
      log(`baton run ${i}: ${secs(ms)} s (${dockerRunning} running in docker, peak RSS ${(sampler.peakKiB / 1024).toFixed(1)} MiB)`);
      res.runs.push({ ms, extra, warnings });

      // Tear down before the next run.
      const t1 = now();
      await api.removeStack(STACK);
      await waitFor(
        'baton containers to go away and tasks to be gone or terminal',
        async () => {
          const left = await containerIds(svcLabels);
          const t = (await api.tasks({ fieldSelector: { 'spec.serviceName': SERVICE } })).items;
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
    }
    res.notes.push(`baton server peak RSS ${(overallPeakKiB / 1024).toFixed(1)} MiB (VmRSS sampled every 200 ms)`);
    ok = true;
  } finally {
    if (proc) {
      if (!ok) log(`baton stderr tail:\n${proc.stderrTail()}`);
      await stopBaton(proc).catch((e) => log(`stopping baton: ${(e as Error).message}`));
    }
    undo();
    await removeByLabel([`${LABEL}=${benchId}`, 'baton.service']).catch(() => undefined);
    if (ok) rmSync(home, { recursive: true, force: true });
    else log(`kept baton home ${home} for inspection`);
  }
  return res;
}

// ---------------------------------------------------------------- Swarm

async function benchSwarm(o: Opts): Promise<SystemResult> {
  const res: SystemResult = { name: 'swarm', runs: [], notes: [] };
  const state = await swarmState();
  // Unlike the other benches, this one measures in a swarm the engine is already in (and never leaves that one).
  let own: OwnSwarm | undefined;
  try {
    if (state === 'active') {
      res.notes.push('engine was already in a swarm; used it and left it in place');
    } else if (state === 'inactive') {
      own = await initSwarm();
      if (own.error) {
        res.unavailable = own.error;
        return res;
      }
    } else {
      res.unavailable = `engine swarm state is "${state}"`;
      return res;
    }

    for (let i = 1; i <= o.runs; i++) {
      checkInterrupted();
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
          break;
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
    }
  } finally {
    // Remove any bench service still around, then leave the swarm if it is ours.
    if ((await swarmState().catch(() => 'unknown')) === 'active') {
      const left = (await docker(['service', 'ls', '-q', '--filter', `label=${LABEL}=${benchId}`])).stdout.split('\n').filter(Boolean);
      if (left.length) await docker(['service', 'rm', ...left]);
    }
    await removeByLabel([`${LABEL}=${benchId}`]);
    await own?.leave();
  }
  return res;
}

// ---------------------------------------------------------------- report

function report(o: Opts, machine: Record<string, string>, results: SystemResult[]): void {
  const by = (n: SystemResult['name']) => results.find((r) => r.name === n);
  const med = (r?: SystemResult) => (r && !r.unavailable && !r.failed && r.runs.length ? median(r.runs.map((x) => x.ms)) : NaN);
  const baton = med(by('baton'));
  const raw = med(by('raw'));
  const swarm = med(by('swarm'));

  const out: string[] = [];
  out.push(...reportHeader('converge', benchId, machine));
  out.push(`workload replicas=${o.replicas} runs=${o.runs} concurrency=${o.concurrency} image=${IMAGE} cmd="${CMD.join(' ')}" init=true network=host`);
  out.push('');
  const runCols = Array.from({ length: o.runs }, (_, i) => `run${i + 1}_s`.padStart(9));
  out.push(`${'system'.padEnd(7)} ${runCols.join(' ')} ${'median_s'.padStart(9)}  status`);
  for (const name of ['baton', 'swarm', 'raw'] as const) {
    const r = by(name);
    if (!r) {
      out.push(`${name.padEnd(7)} ${runCols.map(() => '-'.padStart(9)).join(' ')} ${'-'.padStart(9)}  skipped`);
      continue;
    }
    const cells = Array.from({ length: o.runs }, (_, i) => (r.runs[i] ? secs(r.runs[i]!.ms) : '-').padStart(9));
    const status = r.unavailable ? `unavailable: ${r.unavailable}` : r.failed ? `FAILED: ${r.failed}` : 'ok';
    out.push(`${name.padEnd(7)} ${cells.join(' ')} ${secs(med(r)).padStart(9)}  ${status}`);
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
        `first_container_created=${secs(m('ctr_first_created_ms'))} last_container_created=${secs(m('ctr_last_created_ms'))} ` +
        `first_running=${secs(m('task_first_running_ms'))} last_container_started=${secs(m('ctr_last_started_ms'))} last_task_running=${secs(m('task_last_running_ms'))} all_running_seen=${secs(baton)}`,
    );
    out.push(`baton_server peak_rss_mib=${(Math.max(...b.runs.map((x) => x.extra.baton_peak_rss_kib ?? 0)) / 1024).toFixed(1)} cpu_s_per_run_median=${secs(m('baton_cpu_ms'))} engine_cpu_s_per_run_median=${secs(m('engine_cpu_ms'))}`);
  }
  out.push('');
  out.push(
    `converge replicas=${o.replicas} runs=${o.runs} baton_median_s=${secs(baton)} raw_median_s=${secs(raw)} swarm_median_s=${secs(swarm)} baton_over_raw=${ratio(baton, raw)} baton_over_swarm=${ratio(baton, swarm)}`,
  );
  const pass = Number.isFinite(baton) && Number.isFinite(raw) ? (baton / raw <= 1.25 ? 'PASS' : 'FAIL') : 'n/a';
  out.push(`Goal: Baton within 1.25x of raw: ${pass} (baton/raw=${ratio(baton, raw)})`);
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

    const systems: [SystemResult['name'], boolean, (o: Opts) => Promise<SystemResult>][] = [
      ['raw', o.skipRaw, benchRaw],
      ['baton', o.skipBaton, benchBaton],
      ['swarm', o.skipSwarm, benchSwarm],
    ];
    for (const [name, skip, fn] of systems) {
      if (skip) continue;
      checkInterrupted();
      try {
        results.push(await fn(o));
      } catch (e) {
        if (wasInterrupted()) throw e;
        failed = true;
        log(`${name} failed: ${(e as Error).stack ?? e}`);
        results.push({ name, runs: [], notes: [], failed: (e as Error).message.split('\n')[0]! });
      }
    }
  } finally {
    await runCleanups();
    const left = await containerIds([`${LABEL}=${benchId}`]).catch(() => []);
    if (left.length) {
      log(`removing ${left.length} leftover bench container(s)`);
      await removeContainers(left);
    }
  }
  report(o, machine, results);
  return failed ? 1 : 0;
}

runMain(main, [`${LABEL}=${benchId}`]);
