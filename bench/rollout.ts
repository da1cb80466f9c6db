/**
 * bench:rollout — a rolling update of a replicated service on the local
 * engine, Baton beside Docker Swarm with the same update settings:
 * parallelism 2, order start-first, monitor 5 s, delay 0 s.
 *
 *   npm run bench:rollout -- [--replicas 20] [--runs 1] [--parallelism 2]
 *                            [--monitor-s 5] [--order start-first] [--min-ready-s 0]
 *                            [--deadline-s 300] [--skip-baton] [--skip-swarm]
 *
 * The workload is `sh -c 'echo vN > /tmp/x; exec sleep 3600'` on
 * baton-test/busybox:latest with an init (Baton's default; `--init` for Swarm)
 * so the old containers stop at once on SIGTERM, host networking, no ports.
 * Every container carries `baton.bench=rollout` and `baton.bench.version=vN`;
 * an update changes both the command (vN → vN+1) and that label, so the
 * containers of each version can be told apart in `docker ps` and `docker
 * events`. Each run is one update vN → vN+1 of the same service (run 1 is
 * v1 → v2); before it the service is steady: every replica running the
 * current version, no other container of it running, the rollout complete.
 *
 * Timed per run, from the wall clock just before the update is handed over
 * (Baton: POST /api/v1/stacks/<stack>/apply of the changed Compose file;
 * Swarm: `docker service update --detach ...`):
 *   - total: until a poll (every --poll-ms) finds the rollout completed
 *     (Baton: service status.rollout.state of the new spec hash; Swarm:
 *     `docker service inspect` UpdateStatus.State), exactly --replicas live
 *     tasks all of the new spec (Baton: API tasks with desiredState and state
 *     running; Swarm: `docker service ps`), and `docker ps` showing
 *     --replicas running containers of the new version and none of an older
 *     one; the time is taken after that `docker ps` returned.
 *   - status done: the system's own completion time stamp (Baton:
 *     status.rollout.finishedAt; Swarm: UpdateStatus.CompletedAt), no poll
 *     granularity.
 *   - first / last new container start and last old container stop, from
 *     dockerd's own clock (timeNano of `docker events` start and die events,
 *     read after the run with --since/--until).
 *   - batches: the new containers' start times in order, cut into groups of
 *     --parallelism; the offset of each group's first start, and the median
 *     interval between groups.
 *
 * Baton: `baton server` and two `baton agent` processes on 127.0.0.2 and
 * 127.0.0.3 (own --data-dir, --port-range, --listen-port 0), BATON_HOME in a
 * temp dir. Swarm: a throw-away single-node swarm (`docker swarm init
 * --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377`), skipped with a
 * reason when the engine is already in one, and left at the end only when
 * this bench created it. Only 127.0.0.0/8 is contacted; every container is
 * removed at the end, also on failure or Ctrl-C. Progress goes to stderr,
 * the summary to stdout.
 */
import { serviceKind } from '../src/api/kinds.js';
import type { Service, Task } from '../src/api/types.js';
import { benchArgs, BenchCluster, checkInterrupted, cleanUpAll, cleanUpOnSignals, docker, dockerOk, failure, ignoreBatonTimings, intFlag, keyValues, log, machineInfo, median, now, oneLine, ratio, removeByLabel, reportHeader, requireImage, runMain, secs, sleep, stackServices, throwAwaySwarm, waitFor } from './lib.js';

// ---------------------------------------------------------------- options

const IMAGE = 'baton-test/busybox:latest';
const LABEL = 'baton.bench';
const LABEL_VALUE = 'rollout';
const BENCH_LABEL = `${LABEL}=${LABEL_VALUE}`;
const VERSION_LABEL = 'baton.bench.version';
const STACK = 'benchroll';
const BATON_SVC = `${STACK}_web`;
const SWARM_SVC = 'baton-bench-rollout';
const AGENTS = [
  { name: 'node2', address: '127.0.0.2', portRange: '27800-27899' },
  { name: 'node3', address: '127.0.0.3', portRange: '27900-27999' },
];

const script = (v: number) => `echo v${v} > /tmp/x; exec sleep 3600`;
const cmd = (v: number) => ['sh', '-c', script(v)];

interface Opts {
  replicas: number;
  runs: number;
  parallelism: number;
  monitorS: number;
  /** Baton only: x-baton.min_ready (Kubernetes' minReadySeconds); 0: none. */
  minReadyS: number;
  order: 'start-first' | 'stop-first';
  deadlineMs: number;
  pollMs: number;
  skipBaton: boolean;
  skipSwarm: boolean;
}

const USAGE = `usage: npm run bench:rollout -- [options]
  --replicas N       replicas of the service (default 20)
  --runs N           rolling updates per system, vN -> vN+1 each (default 1)
  --parallelism N    update parallelism (default 2)
  --monitor-s N      update monitor in seconds (default 5)
  --order O          start-first | stop-first (default start-first)
  --min-ready-s N    Baton: x-baton.min_ready, each batch waits for its new tasks to stay ready N s (default 0: none)
  --deadline-s N     give up on one rollout after N seconds (default 300)
  --poll-ms N        status poll interval (default 200)
  --skip-baton       measure only Swarm
  --skip-swarm       measure only Baton
  -h, --help         this text
`;

function parseOpts(): Opts {
  const values = benchArgs(USAGE, { replicas: '20', runs: '1', parallelism: '2', 'monitor-s': '5', 'min-ready-s': '0', order: 'start-first', 'deadline-s': '300', 'poll-ms': '200', 'skip-baton': false, 'skip-swarm': false });
  const order = values.order;
  if (order !== 'start-first' && order !== 'stop-first') throw new Error(`--order must be start-first or stop-first, got "${order}"`);
  return {
    replicas: intFlag('replicas', values.replicas, 1),
    runs: intFlag('runs', values.runs, 1),
    parallelism: intFlag('parallelism', values.parallelism, 1),
    monitorS: intFlag('monitor-s', values['monitor-s'], 0),
    minReadyS: intFlag('min-ready-s', values['min-ready-s'], 0),
    order,
    deadlineMs: intFlag('deadline-s', values['deadline-s'], 1) * 1000,
    pollMs: intFlag('poll-ms', values['poll-ms'], 20),
    skipBaton: values['skip-baton'],
    skipSwarm: values['skip-swarm'],
  };
}

const benchId = `rollout-${Date.now().toString(36)}-${process.pid}`;

cleanUpOnSignals([BENCH_LABEL]);

// ---------------------------------------------------------------- results

interface RunResult {
  run: number;
  from: number;
  to: number;
  /** Update handed over → rollout completed, all replicas live on the new spec, no old container running (poll). */
  totalMs: number;
  /** Update handed over → the system's own completion time stamp. */
  statusDoneMs: number;
  /** Update handed over → the first poll that saw the rollout completed. */
  statusSeenMs: number;
  /** From docker events (dockerd's clock), offsets from the hand-over. */
  newStarts: number[];
  oldDies: number[];
  /** Baton: status.rollout.updated as it grew ("2@6.1"); Swarm: UpdateStatus.Message changes. */
  progress: string[];
  /** Tasks per node at the end (Baton). */
  perNode?: Record<string, number>;
  failed?: string;
  dump: string[];
}

interface SystemResult {
  /** Deploy of v1 → all replicas running (and, Baton, rollout completed). */
  deployMs: number;
  runs: RunResult[];
  settings: string;
  unavailable?: string;
  failed?: string;
}

const emptyRun = (run: number, from: number, to: number): RunResult => ({ run, from, to, totalMs: NaN, statusDoneMs: NaN, statusSeenMs: NaN, newStarts: [], oldDies: [], progress: [], dump: [] });

/** batchStarts cuts the sorted new-container starts into groups of p: each group's first start. */
function batchStarts(starts: number[], p: number): number[] {
  const s = [...starts].sort((a, b) => a - b);
  const out: number[] = [];
  for (let i = 0; i < s.length; i += p) out.push(s[i]!);
  return out;
}

function batchIntervalMs(starts: number[], p: number): number {
  const b = batchStarts(starts, p);
  const d: number[] = [];
  for (let i = 1; i < b.length; i++) d.push(b[i]! - b[i - 1]!);
  return median(d);
}

// ---------------------------------------------------------------- docker helpers (both systems)

/** runningVersions counts running containers with the labels by their version label. */
async function runningVersions(labels: string[]): Promise<Map<string, number>> {
  const args = ['ps', '--filter', 'status=running', '--format', `{{.Label "${VERSION_LABEL}"}}`];
  for (const l of labels) args.push('--filter', `label=${l}`);
  const out = await dockerOk(args);
  const m = new Map<string, number>();
  for (const v of out.split('\n').map((s) => s.trim()).filter(Boolean)) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
}

/** allOn: exactly `replicas` running containers of version v and none of another version. */
function allOn(m: Map<string, number>, v: number, replicas: number): boolean {
  let other = 0;
  for (const [k, n] of m) if (k !== `v${v}`) other += n;
  return other === 0 && (m.get(`v${v}`) ?? 0) === replicas;
}

const fmtVersions = (m: Map<string, number>) => [...m].map(([k, n]) => `${k || '?'}=${n}`).join(' ') || 'none';

/**
 * containerEvents reads the start and die events of the containers with the
 * labels between sinceMs and untilMs (a past window, so `docker events` ends
 * by itself), and returns their offsets from t0 by new/old version.
 */
async function containerEvents(labels: string[], t0: number, untilMs: number, v: number): Promise<{ newStarts: number[]; oldDies: number[] }> {
  const args = ['events', '--format', '{{json .}}', '--since', ((t0 - 2000) / 1000).toFixed(3), '--until', (untilMs / 1000).toFixed(3), '--filter', 'type=container', '--filter', 'event=start', '--filter', 'event=die'];
  for (const l of labels) args.push('--filter', `label=${l}`);
  const out = await dockerOk(args, { timeoutMs: 60_000 });
  const newStarts: number[] = [];
  const oldDies: number[] = [];
  for (const line of out.split('\n')) {
    if (!line.trim()) continue;
    let j: { Action?: string; status?: string; Actor?: { Attributes?: Record<string, string> }; time?: number; timeNano?: number };
    try {
      j = JSON.parse(line);
    } catch {
      continue;
    }
    const at = (j.timeNano !== undefined ? j.timeNano / 1e6 : (j.time ?? 0) * 1000) - t0;
    const ver = j.Actor?.Attributes?.[VERSION_LABEL];
    const action = j.Action ?? j.status;
    if (action === 'start' && ver === `v${v}` && at >= 0) newStarts.push(at);
    if (action === 'die' && ver !== `v${v}` && at >= 0) oldDies.push(at);
  }
  return { newStarts: newStarts.sort((a, b) => a - b), oldDies: oldDies.sort((a, b) => a - b) };
}

// ---------------------------------------------------------------- Baton

function composeText(o: Opts, v: number): string {
  return [
    `name: ${STACK}`,
    'services:',
    '  web:',
    `    image: ${IMAGE}`,
    `    command: ${JSON.stringify(cmd(v))}`,
    // As Swarm's (--network host): the same work per task on both sides (no sandbox, no veth).
    '    network_mode: host',
    '    labels:',
    `      ${LABEL}: "${LABEL_VALUE}"`,
    `      ${VERSION_LABEL}: "v${v}"`,
    '    deploy:',
    `      replicas: ${o.replicas}`,
    `      update_config: {parallelism: ${o.parallelism}, order: ${o.order}, monitor: ${o.monitorS}s, delay: 0s}`,
    ...(o.minReadyS > 0 ? ['    x-baton:', `      min_ready: ${o.minReadyS}s`] : []),
    '',
  ].join('\n');
}

const composeServices = (o: Opts, v: number, dir: string) => stackServices(composeText(o, v), STACK, dir);

const liveTasks = (ts: Task[]) => ts.filter((t) => t.spec.desiredState === 'running' && t.status.state === 'running');

function dumpBaton(svc: Service | undefined, tasks: Task[]): string[] {
  const out: string[] = [];
  out.push(`service ${BATON_SVC}: status ${JSON.stringify(svc?.status ?? null)}`);
  out.push(`tasks (${tasks.length}):`);
  const rows = [...tasks].sort((a, b) => a.spec.slot - b.spec.slot || a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp));
  for (const x of rows)
    out.push(
      `  slot ${String(x.spec.slot).padStart(2)} ${x.metadata.name.padEnd(44)} hash=${x.spec.specHash.slice(0, 10)} node=${(x.spec.nodeName || '-').padEnd(6)} desired=${x.spec.desiredState.padEnd(8)} state=${x.status.state.padEnd(9)} readyAt=${x.status.readyAt ?? '-'} ${oneLine(x.status.pendingReason ?? x.status.error ?? x.status.message ?? '')}`,
    );
  return out;
}

async function benchBaton(o: Opts): Promise<SystemResult> {
  const res: SystemResult = { deployMs: NaN, runs: [], settings: '' };
  const cluster = new BenchCluster('baton-bench-rollout-');
  const dir = cluster.dir;
  let ok = false;
  try {
    const { api, clusterId } = await cluster.startServer();
    for (const a of AGENTS) cluster.startAgent({ ...a, args: ['--listen-port', '0'] });
    const agentsAlive = () => cluster.agentsAlive();
    await cluster.waitReady();

    const labels = [`baton.cluster=${clusterId}`, `baton.service=${BATON_SVC}`];
    const tasksOf = async () => (await api.tasks({ fieldSelector: { 'spec.serviceName': BATON_SVC } })).items;
    const getSvc = () => api.get<Service>(serviceKind, BATON_SVC);

    /** steady: the rollout completed, exactly `replicas` live tasks of its spec, docker shows only version v. */
    const steady = async (v: number): Promise<string | undefined> => {
      const [svc, tasks] = await Promise.all([getSvc(), tasksOf()]);
      const ro = svc.status?.rollout;
      if (!ro || ro.state !== 'completed') return undefined;
      const desired = tasks.filter((t) => t.spec.desiredState === 'running');
      const live = liveTasks(tasks);
      if (desired.length !== o.replicas || live.length !== o.replicas || !live.every((t) => t.spec.specHash === ro.hash)) return undefined;
      return allOn(await runningVersions(labels), v, o.replicas) ? ro.hash : undefined;
    };

    // ------------------------------------------------ deploy v1
    log(`baton: apply ${STACK} v1 with ${o.replicas} replicas`);
    const services = composeServices(o, 1, dir);
    const up = services[0]!.spec.update;
    res.settings = up ? `update parallelism=${up.parallelism} order=${up.order} monitor=${up.monitorMs / 1000}s${up.minReadyMs ? ` min_ready=${up.minReadyMs / 1000}s` : ''} delay=${up.delayMs / 1000}s failure_action=${up.failureAction}; init=${services[0]!.spec.container.init}` : 'update: default';
    const d0 = now();
    await api.apply(STACK, { services, prune: false, dryRun: false });
    let hash = await waitFor(`${BATON_SVC} v1 ${o.replicas}/${o.replicas} running, rollout completed`, async () => (agentsAlive(), steady(1)), { timeoutMs: 180_000, everyMs: 200 });
    res.deployMs = now() - d0;
    log(`baton: v1 is up (${o.replicas} running, rollout completed) after ${secs(res.deployMs)} s; spec hash ${hash}`);

    // ------------------------------------------------ the rolling updates
    for (let run = 1; run <= o.runs; run++) {
      checkInterrupted();
      const from = run;
      const to = run + 1;
      const r = emptyRun(run, from, to);
      res.runs.push(r);
      const next = composeServices(o, to, dir);
      log(`baton run ${run}/${o.runs}: apply v${to} (from v${from})`);
      const t0 = Date.now();
      await api.apply(STACK, { services: next, prune: false, dryRun: false });
      let lastUpdated = -1;
      let lastLog = 0;
      let last: { svc?: Service; tasks: Task[] } = { tasks: [] };
      let newHash: string | undefined;
      for (;;) {
        checkInterrupted();
        agentsAlive();
        const t = Date.now() - t0;
        if (t > o.deadlineMs) break;
        try {
          const [svc, tasks] = await Promise.all([getSvc(), tasksOf()]);
          const at = Date.now() - t0;
          last = { svc, tasks };
          const ro = svc.status?.rollout;
          if (ro && ro.hash !== hash) {
            newHash = ro.hash;
            if (ro.updated !== lastUpdated) {
              lastUpdated = ro.updated;
              r.progress.push(`${ro.updated}@${secs(at)}`);
            }
            if (ro.state === 'completed' && !Number.isFinite(r.statusSeenMs)) {
              r.statusSeenMs = at;
              const started = Date.parse(ro.startedAt ?? '');
              const fin = Date.parse(ro.finishedAt ?? '');
              r.statusDoneMs = Number.isFinite(fin) ? fin - t0 : NaN;
              log(`baton run ${run}: status.rollout completed (seen after ${secs(at)} s; finishedAt +${secs(r.statusDoneMs)} s, startedAt +${secs(started - t0)} s)`);
            }
            if (ro.state === 'completed') {
              const desired = tasks.filter((x) => x.spec.desiredState === 'running');
              const live = liveTasks(tasks);
              if (desired.length === o.replicas && live.length === o.replicas && live.every((x) => x.spec.specHash === ro.hash)) {
                const vers = await runningVersions(labels);
                if (allOn(vers, to, o.replicas)) {
                  r.totalMs = Date.now() - t0;
                  break;
                }
              }
            }
          }
          if (t - lastLog > 5000) {
            lastLog = t;
            const byState: Record<string, number> = {};
            for (const x of tasks) {
              const k = `${x.spec.specHash === newHash ? 'new' : 'old'}:${x.spec.desiredState}/${x.status.state}`;
              byState[k] = (byState[k] ?? 0) + 1;
            }
            log(`baton run ${run}: ${secs(t)} s: rollout ${ro ? `${ro.state} ${ro.updated}/${ro.total} failed=${ro.failed}${ro.hash === hash ? ' (old hash)' : ''}` : 'none'}; tasks ${Object.entries(byState).map(([k, v]) => `${k}=${v}`).join(' ')}`);
          }
        } catch (e) {
          log(`baton run ${run}: poll failed: ${(e as Error).message}`);
        }
        await sleep(o.pollMs);
      }
      const ev = await containerEvents([...labels, BENCH_LABEL], t0, Date.now(), to);
      r.newStarts = ev.newStarts;
      r.oldDies = ev.oldDies;
      r.perNode = {};
      for (const x of liveTasks(last.tasks)) r.perNode[x.spec.nodeName] = (r.perNode[x.spec.nodeName] ?? 0) + 1;
      if (!Number.isFinite(r.totalMs)) {
        const vers = await runningVersions(labels).catch(() => new Map<string, number>());
        r.failed = `rollout v${from}→v${to} not done within ${o.deadlineMs / 1000} s (rollout ${JSON.stringify(last.svc?.status?.rollout ?? null)}; running containers ${fmtVersions(vers)})`;
        r.dump = dumpBaton(last.svc, last.tasks);
        log(`baton run ${run}: ${r.failed}\n${r.dump.join('\n')}`);
        res.failed = r.failed;
        break;
      }
      log(`baton run ${run}: v${to} everywhere after ${secs(r.totalMs)} s (first new container start +${secs(r.newStarts[0] ?? NaN)} s; ${r.newStarts.length} new starts, ${r.oldDies.length} old stops)`);
      hash = newHash!;
      // The next run starts from a steady service.
      if (run < o.runs) await waitFor(`${BATON_SVC} steady on v${to}`, () => steady(to), { timeoutMs: 60_000, everyMs: 200 });
    }
    ok = true;
    return res;
  } catch (e) {
    res.failed ??= failure('baton', e);
    return res;
  } finally {
    log(`baton: removing stack ${STACK} and the cluster`);
    await cluster.stop(ok);
  }
}

// ---------------------------------------------------------------- Swarm

interface SwarmUpdateStatus {
  State?: string;
  StartedAt?: string;
  CompletedAt?: string;
  Message?: string;
}

async function swarmUpdateStatus(): Promise<SwarmUpdateStatus | null> {
  const out = (await dockerOk(['service', 'inspect', '--format', '{{json .UpdateStatus}}', SWARM_SVC])).trim();
  return out && out !== 'null' ? (JSON.parse(out) as SwarmUpdateStatus) : null;
}

/** swarmTasks lists the service's tasks desired running: their current state and container label version. */
async function swarmLiveTasks(): Promise<{ running: number; desired: number }> {
  const out = await dockerOk(['service', 'ps', '--no-trunc', '--filter', 'desired-state=running', '--format', '{{.CurrentState}}', SWARM_SVC]);
  const lines = out.split('\n').map((s) => s.trim()).filter(Boolean);
  return { desired: lines.length, running: lines.filter((l) => l.startsWith('Running')).length };
}

function updateFlags(o: Opts): string[] {
  return ['--update-parallelism', String(o.parallelism), '--update-order', o.order, '--update-monitor', `${o.monitorS}s`, '--update-delay', '0s'];
}

async function benchSwarm(o: Opts): Promise<SystemResult> {
  const res: SystemResult = { deployMs: NaN, runs: [], settings: '' };
  const swarm = await throwAwaySwarm({ label: BENCH_LABEL, services: [SWARM_SVC], alreadyInSwarm: 'skipped (engine already in a swarm; this bench only uses a swarm it creates)' });
  const labels = [BENCH_LABEL, `com.docker.swarm.service.name=${SWARM_SVC}`];
  try {
    if (swarm.unavailable) {
      res.unavailable = swarm.unavailable;
      return res;
    }

    /** steady: no update in progress, exactly `replicas` running tasks, docker shows only version v. */
    const steady = async (v: number): Promise<true | undefined> => {
      const us = await swarmUpdateStatus();
      if (us && us.State !== 'completed') return undefined;
      const lt = await swarmLiveTasks();
      if (lt.desired !== o.replicas || lt.running !== o.replicas) return undefined;
      return allOn(await runningVersions(labels), v, o.replicas) ? true : undefined;
    };

    // ------------------------------------------------ deploy v1
    const args = [
      'service', 'create', '--detach', '--name', SWARM_SVC, '--replicas', String(o.replicas), '--init', '--network', 'host', '--no-resolve-image',
      ...updateFlags(o),
      '--label', BENCH_LABEL, '--container-label', BENCH_LABEL, '--container-label', `${VERSION_LABEL}=v1`, '--container-label', `baton.bench.run=${benchId}`,
      IMAGE, ...cmd(1),
    ];
    log(`docker ${args.join(' ')}`);
    const d0 = now();
    const cr = await docker(args, { timeoutMs: 120_000 });
    if (cr.code !== 0) {
      res.failed = `docker service create failed: ${oneLine(cr.stderr || cr.stdout)}`;
      log(`swarm: ${res.failed}`);
      return res;
    }
    await waitFor(`${SWARM_SVC} v1 ${o.replicas}/${o.replicas} running`, () => steady(1), { timeoutMs: 180_000, everyMs: 200 });
    res.deployMs = now() - d0;
    const uc = await docker(['service', 'inspect', '--format', '{{json .Spec.UpdateConfig}} init={{json .Spec.TaskTemplate.ContainerSpec.Init}}', SWARM_SVC]);
    res.settings = oneLine(uc.stdout || uc.stderr);
    log(`swarm: v1 is up (${o.replicas} running) after ${secs(res.deployMs)} s; ${res.settings}`);

    // ------------------------------------------------ the rolling updates
    for (let run = 1; run <= o.runs; run++) {
      checkInterrupted();
      const from = run;
      const to = run + 1;
      const r = emptyRun(run, from, to);
      res.runs.push(r);
      // --args replaces the task's arguments (the image has no entrypoint: they are the command); the label marks the version.
      const upArgs = ['service', 'update', '--detach', '--no-resolve-image', ...updateFlags(o), '--args', `sh -c '${script(to)}'`, '--container-label-add', `${VERSION_LABEL}=v${to}`, SWARM_SVC];
      log(`swarm run ${run}/${o.runs}: docker ${upArgs.join(' ')}`);
      const t0 = Date.now();
      const ur = await docker(upArgs, { timeoutMs: 120_000 });
      if (ur.code !== 0) {
        r.failed = `docker service update failed: ${oneLine(ur.stderr || ur.stdout)}`;
        res.failed = r.failed;
        break;
      }
      let lastMsg = '';
      let lastLog = 0;
      let lastStatus: SwarmUpdateStatus | null = null;
      for (;;) {
        checkInterrupted();
        const t = Date.now() - t0;
        if (t > o.deadlineMs) break;
        try {
          const us = await swarmUpdateStatus();
          const at = Date.now() - t0;
          lastStatus = us;
          // An UpdateStatus from before this update does not count.
          const started = Date.parse(us?.StartedAt ?? '');
          const current = us && Number.isFinite(started) && started >= t0 - 1000;
          if (current) {
            const msg = `${us.State}${us.Message ? `: ${us.Message}` : ''}`;
            if (msg !== lastMsg) {
              lastMsg = msg;
              r.progress.push(`${msg}@${secs(at)}`);
            }
            if (us.State === 'completed') {
              if (!Number.isFinite(r.statusSeenMs)) {
                r.statusSeenMs = at;
                const fin = Date.parse(us.CompletedAt ?? '');
                r.statusDoneMs = Number.isFinite(fin) ? fin - t0 : NaN;
                log(`swarm run ${run}: UpdateStatus completed (seen after ${secs(at)} s; CompletedAt +${secs(r.statusDoneMs)} s, StartedAt +${secs(started - t0)} s)`);
              }
              const lt = await swarmLiveTasks();
              if (lt.desired === o.replicas && lt.running === o.replicas && allOn(await runningVersions(labels), to, o.replicas)) {
                r.totalMs = Date.now() - t0;
                break;
              }
            } else if (us.State === 'paused' || us.State?.startsWith('rollback')) {
              log(`swarm run ${run}: update ${us.State}: ${us.Message ?? ''}`);
            }
          }
          if (t - lastLog > 5000) {
            lastLog = t;
            log(`swarm run ${run}: ${secs(t)} s: UpdateStatus ${us ? `${us.State} (${us.Message ?? ''})` : 'none'}${current ? '' : ' (not this update yet)'}; running containers ${fmtVersions(await runningVersions(labels))}`);
          }
        } catch (e) {
          log(`swarm run ${run}: poll failed: ${(e as Error).message}`);
        }
        await sleep(o.pollMs);
      }
      const ev = await containerEvents(labels, t0, Date.now(), to);
      r.newStarts = ev.newStarts;
      r.oldDies = ev.oldDies;
      if (!Number.isFinite(r.totalMs)) {
        const vers = await runningVersions(labels).catch(() => new Map<string, number>());
        const ps = await docker(['service', 'ps', '--no-trunc', '--format', '{{.Name}} {{.DesiredState}} {{.CurrentState}} {{.Error}}', SWARM_SVC]);
        r.failed = `update v${from}→v${to} not done within ${o.deadlineMs / 1000} s (UpdateStatus ${JSON.stringify(lastStatus)}; running containers ${fmtVersions(vers)})`;
        r.dump = ps.stdout.split('\n').filter(Boolean).map((l) => `  ${l}`);
        log(`swarm run ${run}: ${r.failed}\n${r.dump.join('\n')}`);
        res.failed = r.failed;
        break;
      }
      log(`swarm run ${run}: v${to} everywhere after ${secs(r.totalMs)} s (first new container start +${secs(r.newStarts[0] ?? NaN)} s; ${r.newStarts.length} new starts, ${r.oldDies.length} old stops)`);
      if (run < o.runs) await waitFor(`${SWARM_SVC} steady on v${to}`, () => steady(to), { timeoutMs: 60_000, everyMs: 200 });
    }
    return res;
  } catch (e) {
    res.failed ??= failure('swarm', e);
    return res;
  } finally {
    await swarm.close();
  }
}

// ---------------------------------------------------------------- report

interface Figures {
  n: number;
  total: number;
  statusDone: number;
  statusSeen: number;
  firstNew: number;
  lastNew: number;
  lastOld: number;
  batch: number;
}

function figures(o: Opts, r: SystemResult | undefined): Figures {
  const ok = r ? r.runs.filter((x) => Number.isFinite(x.totalMs)) : [];
  const m = (f: (x: RunResult) => number) => median(ok.map(f).filter(Number.isFinite));
  return {
    n: ok.length,
    total: m((x) => x.totalMs),
    statusDone: m((x) => x.statusDoneMs),
    statusSeen: m((x) => x.statusSeenMs),
    firstNew: m((x) => x.newStarts[0] ?? NaN),
    lastNew: m((x) => x.newStarts.at(-1) ?? NaN),
    lastOld: m((x) => x.oldDies.at(-1) ?? NaN),
    batch: m((x) => batchIntervalMs(x.newStarts, o.parallelism)),
  };
}

function report(o: Opts, machine: Record<string, string>, baton: SystemResult | undefined, swarm: SystemResult | undefined, tookMs: number): void {
  const out: string[] = [];
  const b = figures(o, baton);
  const s = figures(o, swarm);
  const f = (ms: number, w = 9) => secs(ms).padStart(w);
  const status = (name: string, r: SystemResult | undefined) => (!r ? `skipped (--skip-${name})` : r.unavailable ? r.unavailable : r.failed ? `FAILED: ${r.failed}` : 'ok');
  out.push(...reportHeader('rollout', benchId, machine, tookMs));
  out.push(`workload image=${IMAGE} cmd="sh -c 'echo vN > /tmp/x; exec sleep 3600'" init network=host replicas=${o.replicas}`);
  out.push(`update   parallelism=${o.parallelism} order=${o.order} monitor=${o.monitorS}s delay=0s, failure action the default (pause); ${o.runs} run(s) per system, each vN → vN+1`);
  out.push(`baton    server + ${AGENTS.length} agents (${AGENTS.map((a) => a.address).join(', ')}); ${baton?.settings || '-'}`);
  out.push(`swarm    single-node throw-away swarm on the same engine; ${swarm?.settings || '-'}`);
  out.push('');
  out.push(`## rolling update of ${o.replicas} replicas: medians over the runs (seconds after the update was handed over)`);
  out.push(`${'system'.padEnd(7)} ${'runs'.padStart(4)} ${'total'.padStart(9)} ${'status_done'.padStart(11)} ${'first_new'.padStart(9)} ${'last_new'.padStart(9)} ${'last_old'.padStart(9)} ${'batch_int'.padStart(9)} ${'deploy_v1'.padStart(9)}  status`);
  const row = (name: string, r: SystemResult | undefined, x: Figures) =>
    out.push(`${name.padEnd(7)} ${String(x.n).padStart(4)} ${f(x.total)} ${f(x.statusDone, 11)} ${f(x.firstNew)} ${f(x.lastNew)} ${f(x.lastOld)} ${f(x.batch)} ${f(r?.deployMs ?? NaN)}  ${status(name, r)}`);
  row('baton', baton, b);
  row('swarm', swarm, s);
  out.push(`ratio baton/swarm: total ${ratio(b.total, s.total)}  status_done ${ratio(b.statusDone, s.statusDone)}  first_new ${ratio(b.firstNew, s.firstNew)}  last_new ${ratio(b.lastNew, s.lastNew)}  batch_int ${ratio(b.batch, s.batch)}  deploy_v1 ${ratio(baton?.deployMs ?? NaN, swarm?.deployMs ?? NaN)}`);
  out.push('columns: total = until completed + all replicas live on the new spec + no old container running (poll, every ' + `${o.pollMs} ms); status_done = the`);
  out.push('  system\'s own completion time stamp (Baton status.rollout.finishedAt, Swarm UpdateStatus.CompletedAt); first_new / last_new = first / last');
  out.push('  start of a new container, last_old = last die of an old one (dockerd\'s event clock); batch_int = median interval between the first');
  out.push(`  starts of successive groups of ${o.parallelism} new containers; deploy_v1 = create/apply of v1 until all replicas run (not a rollout, for scale).`);
  out.push('');
  out.push('## per run');
  for (const [name, r] of [['baton', baton], ['swarm', swarm]] as const) {
    if (!r) continue;
    for (const x of r.runs) {
      out.push(`${name} run ${x.run} v${x.from}→v${x.to}: total ${secs(x.totalMs)} s, status seen completed ${secs(x.statusSeenMs)} s, status time stamp ${secs(x.statusDoneMs)} s, ${x.newStarts.length} new starts, ${x.oldDies.length} old stops${x.failed ? `; FAILED: ${x.failed}` : ''}`);
      const bs = batchStarts(x.newStarts, o.parallelism);
      if (bs.length) out.push(`  batch starts (every ${o.parallelism} new containers): ${bs.map((v) => secs(v)).join(' ')}`);
      if (x.oldDies.length) out.push(`  old container stops: ${x.oldDies.map((v) => secs(v)).join(' ')}`);
      if (x.progress.length) out.push(`  ${name === 'baton' ? 'status.rollout.updated@s' : 'UpdateStatus@s'}: ${x.progress.join('  ')}`);
      if (x.perNode) out.push(`  live tasks per node at the end: ${Object.entries(x.perNode).sort().map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}`);
      for (const l of x.dump) out.push(`  ${l}`);
    }
  }
  out.push('');
  out.push('## notes');
  out.push('- Swarm\'s updater (swarmkit manager/orchestrator/update) runs `parallelism` workers; each moves to its next slot as soon as the');
  out.push('  new task is RUNNING (start-first: then stops the old one), and `monitor` is waited once after the last slot before it');
  out.push('  marks the update completed. Baton does the same (its next batch starts once the new tasks run, each task\'s monitor');
  out.push('  window runs in the background, the rollout completes once the last one closed): both take about');
  out.push('  replicas/parallelism × (a batch\'s start) + monitor. With --min-ready-s R Baton also waits R after each batch (Kubernetes\'');
  out.push('  minReadySeconds): about replicas/parallelism × (start + R) + monitor.');
  out.push('- Both systems run the same image, command and settings on the same engine; Baton spreads over 2 agents on one engine,');
  out.push('  Swarm has one node. t0 is the wall clock just before the apply / `docker service update --detach`; docker events times are');
  out.push('  dockerd\'s timeNano (same host clock).');
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOpts();
  ignoreBatonTimings();
  const machine = await machineInfo();
  log(`bench id ${benchId}; replicas=${o.replicas} runs=${o.runs} parallelism=${o.parallelism} order=${o.order} monitor=${o.monitorS}s; ${keyValues(machine)}`);
  await requireImage(IMAGE);
  const stale = await removeByLabel([BENCH_LABEL]);
  if (stale) log(`removed ${stale} container(s) labelled ${BENCH_LABEL} left by an earlier run`);

  let baton: SystemResult | undefined;
  let swarm: SystemResult | undefined;
  const t0 = now();
  try {
    if (!o.skipBaton) baton = await benchBaton(o);
    checkInterrupted();
    if (!o.skipSwarm) swarm = await benchSwarm(o);
  } finally {
    await cleanUpAll([BENCH_LABEL]);
  }
  const took = now() - t0;
  log(`bench took ${secs(took)} s`);
  report(o, machine, baton, swarm, took);
  return baton?.failed || swarm?.failed ? 1 : 0;
}

runMain(main, [BENCH_LABEL]);
