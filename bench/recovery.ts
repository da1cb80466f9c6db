/**
 * bench:recovery — failure recovery on the local engine, for Baton and Docker
 * Swarm (both with their default settings):
 *
 *   (a) `docker kill` of a task's container → that task running again:
 *       a service of 20 replicas of `sleep 3600`; 4 rounds, each killing 5
 *       distinct running containers at once (20 distinct slots in all);
 *       p50, p95 and max over the 20 kills.
 *   (b) `kill -9` of an agent process → all of its tasks running on the
 *       other nodes: a Baton server and 3 agents (127.0.0.2-4), a service of
 *       12 replicas spread 4 per node. Swarm cannot run a second node on one
 *       engine here, so only its documented defaults are printed.
 *
 *   npm run bench:recovery -- [--replicas 20] [--rounds 4] [--kills 5]
 *                             [--node-replicas 12] [--deadline-s 120]
 *                             [--skip-swarm] [--skip-node-loss]
 *
 * How (a) is timed, the same way for both systems: a `docker events` child
 * process (filtered to the service's containers, start and die events,
 * started with --since so nothing between its start and the kill is missed)
 * timestamps container starts with dockerd's own clock (timeNano); the kill
 * time is the wall clock just before `docker kill ID...` runs. Baton restarts
 * the killed container in place, so a kill is paired with the next start of
 * the same container ID; Swarm starts a new container for the task's slot,
 * so a kill is paired with the next start of a container of the same slot
 * (from the Swarm task name `<service>.<slot>.<task id>`). Between rounds the
 * bench waits until the service is back to all replicas running (the API or
 * `docker service ls`, and `docker ps`).
 *
 * How (b) is timed: the wall clock just before SIGKILL of the agent (a
 * process this bench started, by its PID) until an API poll (every 100 ms)
 * shows every slot of the service with a task whose desiredState and state
 * are both running on one of the two other nodes.
 *
 * Baton processes run with BATON_HOME in a temp dir and without
 * BATON_TIMINGS (the defaults: heartbeat 2 s, NotReady after 3 missed beats,
 * Down 10 s after the last one). Every container carries `baton.bench=recovery`
 * (Baton's also `baton.cluster=<id>`); everything is removed at the end, also
 * on failure or Ctrl-C. Only 127.0.0.0/8 is contacted. Progress goes to
 * stderr, results to stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApiClient } from '../src/api/client.js';
import type { Node, Task } from '../src/api/types.js';
import { benchArgs, BenchCluster, checkInterrupted, cleanUpAll, cleanUpOnSignals, DOCKER, docker, dockerOk, failure, ignoreBatonTimings, intFlag, keyValues, log, machineInfo, median, now, oneLine, percentile, ratio, removeByLabel, reportHeader, requireImage, runMain, secs, sleep, stackServices, stopChild, throwAwaySwarm, waitContainersGone, waitFor, type BenchAgent } from './lib.js';

// ---------------------------------------------------------------- options

const IMAGE = 'baton-test/busybox:latest';
const CMD = ['sleep', '3600'];
const LABEL = 'baton.bench';
const LABEL_VALUE = 'recovery';
const BENCH_LABEL = `${LABEL}=${LABEL_VALUE}`;
const KILL_STACK = 'benchkill';
const KILL_SVC = `${KILL_STACK}_sleep`;
const NODE_STACK = 'benchnode';
const NODE_SVC = `${NODE_STACK}_sleep`;
const SWARM_SVC = 'baton-bench-recovery';
const AGENTS = [
  { name: 'node2', address: '127.0.0.2', portRange: '27200-27299' },
  { name: 'node3', address: '127.0.0.3', portRange: '27300-27399' },
  { name: 'node4', address: '127.0.0.4', portRange: '27400-27499' },
];
const GOAL_KILL_P50_MS = 1000;
const GOAL_NODE_LOSS_MS = 15_000;

interface Opts {
  replicas: number;
  rounds: number;
  kills: number;
  nodeReplicas: number;
  deadlineMs: number;
  skipSwarm: boolean;
  skipNodeLoss: boolean;
}

const USAGE = 'usage: npm run bench:recovery -- [--replicas 20] [--rounds 4] [--kills 5] [--node-replicas 12] [--deadline-s 120] [--skip-swarm] [--skip-node-loss]\n';

function parseOpts(): Opts {
  const values = benchArgs(USAGE, { replicas: '20', rounds: '4', kills: '5', 'node-replicas': '12', 'deadline-s': '120', 'skip-swarm': false, 'skip-node-loss': false });
  const o: Opts = {
    replicas: intFlag('replicas', values.replicas, 1),
    rounds: intFlag('rounds', values.rounds, 1),
    kills: intFlag('kills', values.kills, 1),
    nodeReplicas: intFlag('node-replicas', values['node-replicas'], 1),
    deadlineMs: intFlag('deadline-s', values['deadline-s'], 1) * 1000,
    skipSwarm: values['skip-swarm'],
    skipNodeLoss: values['skip-node-loss'],
  };
  // Every kill hits a slot not killed before, so no restart backoff grows between rounds.
  if (o.rounds * o.kills > o.replicas) throw new Error(`--rounds × --kills (${o.rounds * o.kills}) must not exceed --replicas (${o.replicas}): each kill takes a distinct slot`);
  return o;
}

const benchId = `recovery-${Date.now().toString(36)}-${process.pid}`;

cleanUpOnSignals([BENCH_LABEL]);

// ---------------------------------------------------------------- docker events

interface Ev {
  action: 'start' | 'die';
  id: string;
  name: string;
  attrs: Record<string, string>;
  /** dockerd's wall clock, epoch ms (from timeNano). */
  atMs: number;
}

/**
 * EventWatch runs `docker events` for container start/die events of the
 * containers carrying every given label, from `sinceMs` on (so events
 * between its start and the first kill are replayed, not lost).
 */
class EventWatch {
  readonly events: Ev[] = [];
  private readonly child: ChildProcess;
  private readonly waiters = new Set<{ pred: (e: Ev) => boolean; resolve: (e: Ev) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  private stopped = false;
  private stderr = '';

  constructor(labels: string[], sinceMs: number) {
    const args = ['events', '--format', '{{json .}}', '--since', (sinceMs / 1000).toFixed(3), '--filter', 'type=container', '--filter', 'event=start', '--filter', 'event=die'];
    for (const l of labels) args.push('--filter', `label=${l}`);
    this.child = spawn(DOCKER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    log(`docker events watcher pid ${this.child.pid}: docker ${args.join(' ')}`);
    let buf = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (s: string) => {
      buf += s;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line) this.add(line);
      }
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (s: string) => (this.stderr = (this.stderr + s).slice(-4000)));
    this.child.once('exit', (code, sig) => {
      if (this.stopped) return;
      const err = new Error(`docker events exited (${code ?? sig}): ${oneLine(this.stderr)}`);
      for (const w of this.waiters) {
        clearTimeout(w.timer);
        w.reject(err);
      }
      this.waiters.clear();
    });
  }

  private add(line: string): void {
    let j: { Action?: string; status?: string; id?: string; Actor?: { ID?: string; Attributes?: Record<string, string> }; time?: number; timeNano?: number };
    try {
      j = JSON.parse(line);
    } catch {
      return;
    }
    const action = j.Action ?? j.status;
    if (action !== 'start' && action !== 'die') return;
    const attrs = j.Actor?.Attributes ?? {};
    const e: Ev = { action, id: j.Actor?.ID ?? j.id ?? '', name: attrs.name ?? '', attrs, atMs: j.timeNano !== undefined ? j.timeNano / 1e6 : (j.time ?? 0) * 1000 };
    this.events.push(e);
    for (const w of this.waiters)
      if (w.pred(e)) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        w.resolve(e);
      }
  }

  /** wait resolves with the first event (seen or to come) matching pred, or rejects after timeoutMs. */
  wait(pred: (e: Ev) => boolean, timeoutMs: number, what: string): Promise<Ev> {
    const hit = this.events.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(new Error(`no ${what} within ${timeoutMs / 1000} s`));
        }, timeoutMs),
      };
      this.waiters.add(w);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new Error('event watch stopped'));
    }
    this.waiters.clear();
    await stopChild(this.child, 'docker events watcher', 15_000);
  }
}

// ---------------------------------------------------------------- (a) kill rounds, shared by both systems

interface Victim {
  id: string;
  slot: string;
}

interface KillSample {
  round: number;
  slot: string;
  /** Kill (wall clock before `docker kill`) → start of the task's container. */
  ms: number;
  /** Kill → die event of the killed container. */
  dieMs: number;
  /** The restarted container: the same ID (in place) or a new one. */
  sameContainer: boolean;
}

interface KillResult {
  samples: KillSample[];
  /** The restart policy the service ran with, as the system reports it. */
  policy: string;
  unavailable?: string;
  failed?: string;
  notes: string[];
}

interface KillTarget {
  what: string;
  /** Running containers of the service with their slot. */
  running: () => Promise<Victim[]>;
  /** Resolves when the service is back to all replicas running. */
  waitAllRunning: (timeoutMs: number) => Promise<void>;
  /** True when e is the start of the container that runs the killed one's task again. */
  restarted: (killed: Victim, e: Ev) => boolean;
}

async function runningContainers(labels: string[], slotOf: (id: string, name: string, slotLabel: string) => string, slotLabel: string): Promise<Victim[]> {
  const args = ['ps', '--no-trunc', '--filter', 'status=running', '--format', `{{.ID}}\t{{.Names}}\t{{.Label "${slotLabel}"}}`];
  for (const l of labels) args.push('--filter', `label=${l}`);
  const out = await dockerOk(args);
  return out
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      const [id, name, slot] = l.split('\t') as [string, string, string];
      return { id, slot: slotOf(id, name, slot ?? '') };
    });
}

async function killRounds(o: Opts, t: KillTarget, events: EventWatch): Promise<KillSample[]> {
  const samples: KillSample[] = [];
  const killedSlots = new Set<string>();
  for (let round = 1; round <= o.rounds; round++) {
    checkInterrupted();
    await t.waitAllRunning(120_000);
    const running = await t.running();
    const victims = running
      .filter((v) => v.slot && !killedSlots.has(v.slot))
      .sort((a, b) => Number(a.slot) - Number(b.slot))
      .slice(0, o.kills);
    if (victims.length < o.kills) throw new Error(`${t.what} round ${round}: only ${victims.length} running containers of slots not killed before (wanted ${o.kills}; running ${running.length})`);
    for (const v of victims) killedSlots.add(v.slot);
    const tKill = Date.now();
    await dockerOk(['kill', ...victims.map((v) => v.id)], { timeoutMs: 30_000 });
    const got = await Promise.all(
      victims.map(async (v) => {
        const start = await events.wait((e) => e.action === 'start' && e.atMs >= tKill && t.restarted(v, e), 90_000, `start event for slot ${v.slot} (${v.id.slice(0, 12)}) after the kill`);
        const die = events.events.find((e) => e.action === 'die' && e.id === v.id && e.atMs >= tKill);
        return { round, slot: v.slot, ms: start.atMs - tKill, dieMs: die ? die.atMs - tKill : NaN, sameContainer: start.id === v.id };
      }),
    );
    samples.push(...got);
    log(`${t.what} round ${round}/${o.rounds}: killed slots ${victims.map((v) => v.slot).join(',')}; running again after ${got.map((s) => secs(s.ms)).join(', ')} s`);
  }
  await t.waitAllRunning(120_000);
  return samples;
}

// ---------------------------------------------------------------- Baton

interface NodeLossResult {
  /** Kill → every slot running on another node; NaN when the deadline passed. */
  ms: number;
  victim: string;
  perNodeBefore: Record<string, number>;
  milestones: Record<string, number>;
  /** The victim's containers still running when the measurement ended (no agent is left to stop them). */
  victimContainersLeft: number;
  failed?: string;
  /** What the tasks and nodes looked like when the deadline passed. */
  dump: string[];
}

function composeText(stack: string, replicas: number): string {
  return [
    `name: ${stack}`,
    'services:',
    '  sleep:',
    `    image: ${IMAGE}`,
    `    command: ${JSON.stringify(CMD)}`,
    '    labels:',
    `      ${LABEL}: "${LABEL_VALUE}"`,
    '    deploy:',
    `      replicas: ${replicas}`,
    '',
  ].join('\n');
}

const composeServices = (stack: string, replicas: number, dir: string) => stackServices(composeText(stack, replicas), stack, dir);


async function benchBaton(o: Opts, out: { kill?: KillResult; node?: NodeLossResult }): Promise<void> {
  // The agent killed in (b) leaves its nftables table and containers: the cluster's teardown removes them.
  const cluster = new BenchCluster('baton-bench-recovery-');
  const dir = cluster.dir;
  let ok = false;
  try {
    const { api, clusterId } = await cluster.startServer();
    for (const a of AGENTS) cluster.startAgent(a);
    await cluster.waitReady();
    const agents = cluster.agents;

    const clusterLabel = `baton.cluster=${clusterId}`;
    const tasksOf = async (svc: string) => (await api.tasks({ fieldSelector: { 'spec.serviceName': svc } })).items;
    const runningTasks = (ts: Task[]) => ts.filter((x) => x.spec.desiredState === 'running' && x.status.state === 'running');

    // ------------------------------------------------ (a) docker kill
    try {
      const svcLabels = [clusterLabel, `baton.service=${KILL_SVC}`];
      log(`baton (a): apply ${KILL_SVC} with ${o.replicas} replicas`);
      await api.apply(KILL_STACK, { services: composeServices(KILL_STACK, o.replicas, dir), prune: false, dryRun: false });
      const target: KillTarget = {
        what: 'baton (a)',
        running: () => runningContainers(svcLabels, (_id, _name, slot) => slot, 'baton.slot'),
        waitAllRunning: async (timeoutMs) =>
          void await waitFor(
            `${KILL_SVC} back to ${o.replicas}/${o.replicas} running`,
            async () => {
              const apiRunning = runningTasks(await tasksOf(KILL_SVC)).length;
              const dockerRunning = (await target.running()).length;
              return apiRunning >= o.replicas && dockerRunning >= o.replicas ? true : undefined;
            },
            { timeoutMs, everyMs: 100 },
          ),
        // Baton restarts the killed container in place: the same container ID starts again.
        restarted: (killed, e) => e.id === killed.id,
      };
      await target.waitAllRunning(120_000);
      const verify = await runningContainers([...svcLabels, BENCH_LABEL], (_i, _n, s) => s, 'baton.slot');
      if (verify.length < o.replicas) log(`warning: only ${verify.length} of Baton's containers carry ${BENCH_LABEL}`);
      const t = (await tasksOf(KILL_SVC))[0];
      const rp = t?.spec.restartPolicy;
      const policy = rp ? `condition=${rp.condition} first restart at once, then ${rp.delayMs / 1000}s ×${rp.factor ?? 2} per crash up to ${rp.maxDelayMs / 1000}s (reset after 60 s ready) max_attempts=${rp.maxAttempts || 'unlimited'}` : 'unknown';
      const events = new EventWatch([clusterLabel, `baton.service=${KILL_SVC}`], Date.now() - 1000);
      try {
        const samples = await killRounds(o, target, events);
        out.kill = { samples, policy, notes: [] };
      } finally {
        await events.stop();
      }
    } catch (e) {
      out.kill = { samples: [], policy: '', notes: [], failed: failure('baton (a)', e) };
    }
    log(`baton (a): removing stack ${KILL_STACK}`);
    await api.removeStack(KILL_STACK).catch((e) => log(`warning: remove stack ${KILL_STACK}: ${(e as Error).message}`));
    await waitContainersGone('benchkill containers gone', [clusterLabel, `baton.service=${KILL_SVC}`], { runningOnly: true });
    await removeByLabel([clusterLabel, `baton.service=${KILL_SVC}`]);

    // ------------------------------------------------ (b) kill -9 of an agent
    if (!o.skipNodeLoss) out.node = await nodeLoss(o, api, agents, clusterLabel, tasksOf);
    ok = true;
  } finally {
    await cluster.stop(ok);
  }
}

async function nodeLoss(o: Opts, api: ApiClient, agents: BenchAgent[], clusterLabel: string, tasksOf: (svc: string) => Promise<Task[]>): Promise<NodeLossResult> {
  const res: NodeLossResult = { ms: NaN, victim: '', perNodeBefore: {}, milestones: {}, victimContainersLeft: 0, dump: [] };
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-recovery-compose-'));
  try {
    log(`baton (b): apply ${NODE_SVC} with ${o.nodeReplicas} replicas`);
    await api.apply(NODE_STACK, { services: composeServices(NODE_STACK, o.nodeReplicas, dir), prune: false, dryRun: false });
    const before = await waitFor(
      `${NODE_SVC} ${o.nodeReplicas}/${o.nodeReplicas} running`,
      async () => {
        const ts = (await tasksOf(NODE_SVC)).filter((x) => x.spec.desiredState === 'running');
        return ts.length >= o.nodeReplicas && ts.every((x) => x.status.state === 'running') ? ts : undefined;
      },
      { timeoutMs: 120_000, everyMs: 100 },
    );
    for (const a of agents) res.perNodeBefore[a.name] = 0;
    for (const x of before) res.perNodeBefore[x.spec.nodeName] = (res.perNodeBefore[x.spec.nodeName] ?? 0) + 1;
    log(`baton (b): tasks per node ${keyValues(res.perNodeBefore)}`);
    // The victim: the node with the most tasks (first by name on a tie).
    const victim = agents
      .map((a) => a.name)
      .sort((a, b) => (res.perNodeBefore[b] ?? 0) - (res.perNodeBefore[a] ?? 0) || a.localeCompare(b))[0]!;
    res.victim = victim;
    const agent = agents.find((a) => a.name === victim)!;
    const victimSlots = new Set(before.filter((x) => x.spec.nodeName === victim).map((x) => x.spec.slot));
    const initial = new Set(before.map((x) => x.metadata.name));

    // Let the first heartbeats after the apply settle, then kill.
    await sleep(1000);
    log(`baton (b): kill -9 of agent ${victim} (pid ${agent.child.pid}), which runs slots ${[...victimSlots].sort((a, b) => a - b).join(',')}`);
    const t0 = now();
    process.kill(agent.child.pid!, 'SIGKILL');
    let lastLog = 0;
    let last: { tasks: Task[]; nodes: Node[] } = { tasks: [], nodes: [] };
    const mark = (k: string, cond: boolean, t: number) => {
      if (cond && res.milestones[k] === undefined) {
        res.milestones[k] = t;
        log(`baton (b): ${k} after ${secs(t)} s`);
      }
    };
    for (;;) {
      checkInterrupted();
      const t = now() - t0;
      if (t > o.deadlineMs) break;
      try {
        const [tasks, nodes] = await Promise.all([tasksOf(NODE_SVC), api.nodes().then((r) => r.items)]);
        const at = now() - t0;
        last = { tasks, nodes };
        const vn = nodes.find((n) => n.metadata.name === victim);
        mark('node NotReady', vn?.status.state === 'notready' || vn?.status.state === 'down', at);
        mark('node Down', vn?.status.state === 'down', at);
        mark('old tasks no longer desired running', before.filter((x) => x.spec.nodeName === victim).every((x) => tasks.find((y) => y.metadata.name === x.metadata.name)?.spec.desiredState !== 'running'), at);
        const replacements = tasks.filter((x) => x.spec.desiredState === 'running' && !initial.has(x.metadata.name) && x.spec.nodeName !== victim && victimSlots.has(x.spec.slot));
        mark('first replacement task', replacements.length > 0, at);
        mark('first replacement running', replacements.some((x) => x.status.state === 'running'), at);
        const slotsElsewhere = new Set(tasks.filter((x) => x.spec.desiredState === 'running' && x.status.state === 'running' && x.spec.nodeName && x.spec.nodeName !== victim).map((x) => x.spec.slot));
        if (slotsElsewhere.size >= o.nodeReplicas) {
          res.ms = at;
          break;
        }
        if (t - lastLog > 5000) {
          lastLog = t;
          const byState: Record<string, number> = {};
          for (const x of tasks) byState[`${x.spec.nodeName || '-'}:${x.spec.desiredState}/${x.status.state}`] = (byState[`${x.spec.nodeName || '-'}:${x.spec.desiredState}/${x.status.state}`] ?? 0) + 1;
          log(`baton (b): ${secs(t)} s: ${slotsElsewhere.size}/${o.nodeReplicas} slots running on other nodes; ${victim} is ${vn?.status.state}; tasks ${Object.entries(byState).map(([k, v]) => `${k}=${v}`).join(' ')}`);
        }
      } catch (e) {
        log(`baton (b): API poll failed: ${(e as Error).message}`);
      }
      await sleep(100);
    }
    res.victimContainersLeft = (await runningContainers([clusterLabel, `baton.node.name=${victim}`], () => '', 'baton.slot')).length;
    if (Number.isFinite(res.ms)) {
      log(`baton (b): every slot running on the other nodes after ${secs(res.ms)} s`);
    } else {
      res.failed = `not every slot running on the other nodes within ${o.deadlineMs / 1000} s`;
      log(`baton (b): ${res.failed}`);
      res.dump.push(`nodes: ${last.nodes.map((n) => `${n.metadata.name}=${n.status.state}${n.status.message ? ` (${n.status.message})` : ''}`).join(', ')}`);
      res.dump.push(`tasks of ${NODE_SVC} (${last.tasks.length}):`);
      const rows = [...last.tasks].sort((a, b) => a.spec.slot - b.spec.slot || a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp));
      for (const x of rows)
        res.dump.push(
          `  slot ${String(x.spec.slot).padStart(2)}  ${x.metadata.name.padEnd(40)} node=${(x.spec.nodeName || '-').padEnd(6)} desired=${x.spec.desiredState.padEnd(8)} state=${x.status.state.padEnd(9)} ${oneLine(x.status.pendingReason ?? x.status.error ?? x.status.message ?? '')}`,
        );
    }
    // The killed node's containers: no agent is left to stop them.
    const n = await removeByLabel([`baton.node.name=${victim}`, clusterLabel]);
    if (n) log(`baton (b): removed ${n} container(s) of the killed node ${victim}`);
    return res;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- Swarm

async function benchSwarm(o: Opts): Promise<KillResult> {
  const res: KillResult = { samples: [], policy: '', notes: [] };
  const swarm = await throwAwaySwarm({ label: BENCH_LABEL, services: [SWARM_SVC] });
  try {
    if (swarm.unavailable) {
      res.unavailable = swarm.unavailable;
      return res;
    }

    const args = ['service', 'create', '--detach', '--name', SWARM_SVC, '--replicas', String(o.replicas), '--init', '--network', 'host', '--label', BENCH_LABEL, '--container-label', BENCH_LABEL, '--container-label', `baton.bench.run=${benchId}`, IMAGE, ...CMD];
    log(`docker ${args.join(' ')}`);
    const cr = await docker(args, { timeoutMs: 120_000 });
    if (cr.code !== 0) {
      res.unavailable = `docker service create failed: ${oneLine(cr.stderr || cr.stdout)}`;
      log(`swarm: ${res.unavailable}`);
      return res;
    }
    const rp = await docker(['service', 'inspect', '--format', '{{json .Spec.TaskTemplate.RestartPolicy}}', SWARM_SVC]);
    try {
      const p = JSON.parse(rp.stdout) as { Condition?: string; Delay?: number; MaxAttempts?: number; Window?: number };
      res.policy = `condition=${p.Condition ?? '?'} delay=${p.Delay !== undefined ? `${p.Delay / 1e9}s` : '?'} (fixed) max_attempts=${p.MaxAttempts || 'unlimited'}`;
    } catch {
      res.policy = oneLine(rp.stdout || rp.stderr);
    }
    const labels = [BENCH_LABEL, `com.docker.swarm.service.name=${SWARM_SVC}`];
    // The slot is the middle part of the Swarm task name: <service>.<slot>.<task id>.
    const slotOf = (taskName: string) => taskName.slice(SWARM_SVC.length + 1).split('.')[0] ?? '';
    const target: KillTarget = {
      what: 'swarm (a)',
      running: () => runningContainers(labels, (_id, name, taskName) => slotOf(taskName || name), 'com.docker.swarm.task.name'),
      waitAllRunning: async (timeoutMs) =>
        void await waitFor(
          `${SWARM_SVC} back to ${o.replicas}/${o.replicas}`,
          async () => {
            const ls = (await dockerOk(['service', 'ls', '--filter', `name=${SWARM_SVC}`, '--format', '{{.Name}} {{.Replicas}}'])).split('\n').find((l) => l.startsWith(`${SWARM_SVC} `)) ?? '';
            const m = /(\d+)\/(\d+)/.exec(ls);
            if (!m || Number(m[1]) < o.replicas) return undefined;
            return (await target.running()).length >= o.replicas ? true : undefined;
          },
          { timeoutMs, everyMs: 250 },
        ),
      // Swarm replaces the task: a new container of the same slot starts.
      restarted: (killed, e) => e.id !== killed.id && slotOf(e.attrs['com.docker.swarm.task.name'] ?? e.name) === killed.slot,
    };
    log(`swarm (a): waiting for ${o.replicas}/${o.replicas}`);
    await target.waitAllRunning(180_000);
    const events = new EventWatch(labels, Date.now() - 1000);
    try {
      res.samples = await killRounds(o, target, events);
    } finally {
      await events.stop();
    }
    return res;
  } catch (e) {
    res.failed = failure('swarm (a)', e);
    return res;
  } finally {
    await swarm.close();
  }
}

// ---------------------------------------------------------------- report

function report(o: Opts, machine: Record<string, string>, baton: { kill?: KillResult; node?: NodeLossResult; failed?: string }, swarm: KillResult | undefined): void {
  const out: string[] = [];
  const f = (ms: number) => secs(ms).padStart(8);
  const stats = (r?: KillResult) => {
    const xs = r && !r.failed && !r.unavailable ? r.samples.map((s) => s.ms) : [];
    const ok = r && !r.failed && !r.unavailable ? r.samples : [];
    return {
      n: xs.length,
      p50: percentile(xs, 50),
      p95: percentile(xs, 95),
      max: xs.length ? Math.max(...xs) : NaN,
      die: median(ok.map((s) => s.dieMs).filter(Number.isFinite)),
      dieToStart: median(ok.map((s) => s.ms - s.dieMs).filter(Number.isFinite)),
    };
  };
  const b = stats(baton.kill);
  const s = stats(swarm);
  out.push(...reportHeader('recovery', benchId, machine));
  out.push(`workload image=${IMAGE} cmd="${CMD.join(' ')}" init=true network=host; Baton and Swarm with their default settings (no BATON_TIMINGS)`);
  out.push('');
  out.push(`## (a) docker kill of a task's container → that task running again (${o.replicas} replicas; ${o.rounds} rounds × ${o.kills} distinct containers killed at once)`);
  out.push(`${'system'.padEnd(7)} ${'kills'.padStart(5)} ${'p50_s'.padStart(8)} ${'p95_s'.padStart(8)} ${'max_s'.padStart(8)} ${'kill→die_p50_s'.padStart(15)} ${'die→start_p50_s'.padStart(16)}  restart policy / status`);
  const row = (name: string, r: KillResult | undefined, st: ReturnType<typeof stats>, batonFailed?: string) => {
    const status = !r ? (batonFailed ? `FAILED: ${batonFailed}` : 'skipped') : r.unavailable ? r.unavailable : r.failed ? `FAILED: ${r.failed}` : r.policy;
    out.push(`${name.padEnd(7)} ${String(st.n).padStart(5)} ${f(st.p50)} ${f(st.p95)} ${f(st.max)} ${secs(st.die).padStart(15)} ${secs(st.dieToStart).padStart(16)}  ${status}`);
  };
  row('baton', baton.kill, b, baton.failed);
  if (!swarm) out.push(`${'swarm'.padEnd(7)} ${'-'.padStart(5)}  skipped (--skip-swarm)`);
  else if (swarm.unavailable) out.push(`Swarm: ${swarm.unavailable}`);
  else row('swarm', swarm, s);
  out.push(`ratio baton/swarm: p50 ${ratio(b.p50, s.p50)}  p95 ${ratio(b.p95, s.p95)}  max ${ratio(b.max, s.max)}`);
  for (const [name, r] of [['baton', baton.kill], ['swarm', swarm]] as const)
    if (r && r.samples.length) out.push(`samples ${name} (s, round:slot=time): ${r.samples.map((x) => `${x.round}:${x.slot}=${secs(x.ms)}${x.sameContainer ? '' : '*'}`).join(' ')}${name === 'swarm' ? '  (* a new container)' : ''}`);
  const goalA = Number.isFinite(b.p50) ? (b.p50 <= GOAL_KILL_P50_MS ? 'PASS' : 'FAIL') : 'FAIL (not measured)';
  out.push(`Goal (a) Baton p50 <= ${GOAL_KILL_P50_MS / 1000} s: ${goalA} (p50 ${secs(b.p50)} s, p95 ${secs(b.p95)} s)`);

  out.push('');
  const n = baton.node;
  out.push(`## (b) kill -9 of an agent process → all of its tasks running on the other nodes (server + ${AGENTS.length} agents, ${o.nodeReplicas} replicas by the default spread)`);
  if (o.skipNodeLoss) out.push('baton   skipped (--skip-node-loss)');
  else if (!n) out.push(`baton   FAILED: ${baton.failed ?? 'not measured'}`);
  else {
    out.push(`tasks per node before the kill: ${keyValues(n.perNodeBefore)}; killed agent: ${n.victim}`);
    out.push(`baton   ${Number.isFinite(n.ms) ? `${secs(n.ms)} s` : `not within ${o.deadlineMs / 1000} s`}`);
    const ms = Object.entries(n.milestones).map(([k, v]) => `${k} ${secs(v)} s`);
    out.push(`        seen in the API after the kill: ${ms.length ? ms.join('; ') : 'nothing changed'}`);
    out.push(`        the killed node's containers still running at the end of the measurement: ${n.victimContainersLeft} (no agent left to stop them; removed by the bench)`);
    for (const l of n.dump) out.push(`        ${l}`);
  }
  out.push('swarm   not measurable on one engine (a second Swarm node needs its own engine, e.g. a dind image, and no registry is reachable here)');
  out.push('        note, Swarm\'s defaults (from swarmkit\'s source, not measured): the dispatcher heartbeat period is 5 s (`docker swarm init');
  out.push('        --dispatcher-heartbeat`; each TTL ±0.5 s) and a node is marked Down after period × grace multiplier 3 = ~15 s without one');
  out.push('        (manager/dispatcher); the orchestrator then replaces its tasks on other nodes, and the restart delay (5 s) applies to those');
  out.push('        replacements unless the node is drained (manager/orchestrator/restart): roughly 15-20 s until the replacements run.');
  const goalB = o.skipNodeLoss ? 'n/a (skipped)' : n && Number.isFinite(n.ms) ? (n.ms <= GOAL_NODE_LOSS_MS ? 'PASS' : 'FAIL') : `FAIL (${n?.failed ?? baton.failed ?? 'not measured'})`;
  out.push(`ratio baton/swarm: n/a (Swarm not measured)`);
  out.push(`Goal (b) <= ${GOAL_NODE_LOSS_MS / 1000} s with Baton's default settings: ${goalB}${n && Number.isFinite(n.ms) ? ` (${secs(n.ms)} s)` : ''}`);

  out.push('');
  out.push('## How this was measured');
  out.push(`- (a) Each kill hits a distinct slot (${o.rounds * o.kills} of ${o.replicas}), so no restart backoff grows between kills. The kill time is the wall clock`);
  out.push('  just before `docker kill ID...` (5 IDs, one command); the restart time is dockerd\'s timeNano of the container start event, read from a');
  out.push('  `docker events --filter event=start --filter event=die --filter label=...` child process (with --since, so none is missed). Baton restarts');
  out.push('  the killed container in place: a kill pairs with the next start of the same container ID. Swarm replaces the task: a kill pairs');
  out.push('  with the next start of a container of the same slot (Swarm task name <service>.<slot>.<task id>). Between rounds the bench waits');
  out.push('  until the service is back to all replicas running (Baton: API tasks and docker ps; Swarm: docker service ls and docker ps).');
  out.push(`  p50 is the median of the samples, p95 the nearest rank (${Math.ceil(0.95 * o.rounds * o.kills)}th of ${o.rounds * o.kills}).`);
  out.push(`- (a) Baton: one server and ${AGENTS.length} agents; Swarm: a throw-away single-node swarm (docker swarm init --advertise-addr 127.0.0.1`);
  out.push(`  --listen-addr 127.0.0.1:2377; left at the end), docker service create --replicas ${o.replicas} --network host --init (the same workload as Baton's,`);
  out.push('  whose services run with init by default; init does not change how SIGKILL is handled), every other setting Swarm\'s default.');
  out.push(`- (b) Baton: \`baton server\` and ${AGENTS.length} \`baton agent\` processes on ${AGENTS.map((a) => a.address).join(', ')}, each with its own --data-dir and --port-range,`);
  out.push(`  no BATON_TIMINGS (heartbeat 2 s, NotReady after 3 missed beats, Down 10 s after the last). After the service of ${o.nodeReplicas} replicas runs,`);
  out.push('  the agent with the most tasks gets SIGKILL by its PID; the time runs from just before the kill until an API poll (every 100 ms) shows');
  out.push(`  every slot with a task of desiredState and state running on another node. Deadline ${o.deadlineMs / 1000} s.`);
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOpts();
  ignoreBatonTimings();
  const machine = await machineInfo();
  log(`bench id ${benchId}; replicas=${o.replicas} rounds=${o.rounds} kills=${o.kills} node-replicas=${o.nodeReplicas}; ${keyValues(machine)}`);
  await requireImage(IMAGE);

  const baton: { kill?: KillResult; node?: NodeLossResult; failed?: string } = {};
  let swarm: KillResult | undefined;
  let failed = false;
  const t0 = now();
  try {
    try {
      await benchBaton(o, baton);
    } catch (e) {
      baton.failed = failure('baton', e);
      failed = true;
    }
    checkInterrupted();
    if (!o.skipSwarm) swarm = await benchSwarm(o);
  } finally {
    await cleanUpAll([BENCH_LABEL]);
  }
  log(`bench took ${secs(now() - t0)} s`);
  report(o, machine, baton, swarm);
  return failed || baton.kill?.failed || swarm?.failed ? 1 : 0;
}

runMain(main, [BENCH_LABEL]);
