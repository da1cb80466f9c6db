/**
 * bench:chaos — what a clean cluster is and how long it takes to get there:
 * problems() checks every invariant against a Snapshot (api, nodes,
 * lost-write, replicas, duplicate-slot, stuck-task, unhealthy, orphan,
 * missing, process, engine), accept() leaves problems already reported out
 * of later polls, and converge() polls until a run of clean polls spans
 * STABLE_MS or the deadline passes.
 */
import { AGENTS, WEB_SVC, type Cluster, type Snapshot } from './chaosCluster.js';
import { checkInterrupted, log, now, oneLine, secs, sleep } from './lib.js';

/** How often the bench polls the cluster (also through the pause between faults). */
export const POLL_MS = 500;
/** How long a run of clean polls must span for the cluster to count as converged. */
const STABLE_MS = 1500;

/** Problem: an invariant (inv) that does not hold, and what was seen. */
export interface Problem {
  inv: string;
  msg: string;
  /** What makes it the same problem when seen again (default: inv and msg); an orphan is its container. */
  key?: string;
}

const problemKey = (p: Problem) => p.key ?? `${p.inv}\0${p.msg}`;

/** problems: every invariant that does not hold in the snapshot (none: converged). */
export function problems(cluster: Cluster, s: Snapshot): Problem[] {
  const out: Problem[] = [];
  const add = (inv: string, msg: string, key?: string) => {
    const p: Problem = { inv, msg, ...(key ? { key } : {}) };
    if (!cluster.accepted.has(problemKey(p))) out.push(p);
  };
  for (const p of [cluster.server, ...cluster.agents]) if (!p.running) add('process', `${p.what} is not running`);
  if (!cluster.engine.running) add('process', 'the private dockerd is not running');
  if (s.apiError) add('api', `the API does not answer: ${s.apiError}`);
  if (s.engineError) add('engine', `the private dockerd does not answer: ${s.engineError}`);
  if (s.apiError) return out;
  for (const p of cluster.awaitingStart) add('nodes', `${p.what} has not logged "agent started" since its restart`);
  for (const a of AGENTS) {
    const n = s.nodes.find((x) => x.metadata.name === a.name);
    if (!n) add('nodes', `node ${a.name} is missing from the API`);
    else if (n.status.state !== 'ready') add('nodes', `node ${a.name} is ${n.status.state}${n.status.message ? ` (${n.status.message})` : ''}`);
  }
  for (const n of s.nodes) if (!AGENTS.some((a) => a.name === n.metadata.name)) add('nodes', `unexpected node ${n.metadata.name}`);
  const taskByName = new Map(s.tasks.map((t) => [t.metadata.name, t]));
  for (const [name, want] of cluster.expected) {
    const svc = s.services.find((x) => x.metadata.name === name);
    if (!svc) {
      add('lost-write', `service ${name} is gone`);
      continue;
    }
    if (svc.metadata.uid !== want.uid) add('lost-write', `service ${name} has uid ${svc.metadata.uid}, was ${want.uid}`);
    if (svc.metadata.generation !== want.generation || svc.spec.replicas !== want.replicas)
      add('lost-write', `service ${name} is at generation ${svc.metadata.generation} with ${svc.spec.replicas} replicas; the last acknowledged write made generation ${want.generation} with ${want.replicas}`);
    const replicas = svc.spec.replicas;
    const tasks = s.tasks.filter((t) => t.spec.serviceName === name);
    const live = tasks.filter((t) => t.spec.desiredState === 'running');
    if (live.length !== replicas) add('replicas', `${name}: ${live.length} tasks desired running, want ${replicas}`);
    for (let slot = 1; slot <= replicas; slot++) {
      const n = live.filter((t) => t.spec.slot === slot).length;
      if (n === 0) add('replicas', `${name}: no task desired running for slot ${slot}`);
      else if (n > 1) add('duplicate-slot', `${name}: ${n} tasks desired running for slot ${slot}`);
    }
    for (const t of live) if (t.spec.slot < 1 || t.spec.slot > replicas) add('replicas', `${name}: task ${t.metadata.name} desired running for slot ${t.spec.slot} (replicas ${replicas})`);
    const runningBySlot = new Map<number, string[]>();
    for (const t of tasks) if (t.status.state === 'running') runningBySlot.set(t.spec.slot, [...(runningBySlot.get(t.spec.slot) ?? []), `${t.metadata.name}@${t.spec.nodeName}`]);
    for (const [slot, ts] of runningBySlot) if (ts.length > 1) add('duplicate-slot', `${name}: slot ${slot} has ${ts.length} tasks running: ${ts.join(', ')}`);
    for (const t of tasks) {
      const st = t.status.state;
      if (t.spec.desiredState === 'running' && st !== 'running') add('stuck-task', `${t.metadata.name} (slot ${t.spec.slot}, node ${t.spec.nodeName || '-'}) is ${st}, desired running${t.status.message ? `: ${oneLine(t.status.message)}` : ''}${t.status.error ? ` (error: ${oneLine(t.status.error)})` : ''}${t.status.pendingReason ? ` (pending: ${oneLine(t.status.pendingReason)})` : ''}`);
      else if (t.spec.desiredState !== 'running' && !['complete', 'failed', 'shutdown', 'rejected', 'orphaned'].includes(st)) add('stuck-task', `${t.metadata.name} (slot ${t.spec.slot}, node ${t.spec.nodeName || '-'}) is ${st}, desired ${t.spec.desiredState}${t.status.message ? `: ${oneLine(t.status.message)}` : ''}`);
      if (name === WEB_SVC && t.spec.desiredState === 'running' && st === 'running' && t.status.healthy !== true) add('unhealthy', `${t.metadata.name} (node ${t.spec.nodeName}) is running but not healthy (healthy=${t.status.healthy})${t.status.message ? `: ${oneLine(t.status.message)}` : ''}`);
    }
    const st = svc.status;
    if (st.desired !== replicas || st.running !== replicas || st.ready !== replicas) add('replicas', `${name}: status says desired ${st.desired}, running ${st.running}, ready ${st.ready}; want ${replicas} each`);
  }
  for (const svc of s.services) if (!cluster.expected.has(svc.metadata.name)) add('lost-write', `unexpected service ${svc.metadata.name}`);
  if (s.engineError) return out;
  // The engine: every container of the cluster belongs to a task desired running.
  const runningCtrBySlot = new Map<string, string[]>();
  for (const c of s.containers) {
    const t = taskByName.get(c.task);
    const running = c.state === 'running';
    const where = `${c.name} (${c.state}, node ${c.node || '-'}; task ${c.task || '-'}: ${t ? `desired ${t.spec.desiredState}, ${t.status.state}` : 'not in the API'})`;
    if (c.pause) {
      if (!t || t.spec.desiredState !== 'running') add('orphan', `pause container ${where}`, `orphan:${c.id}`);
      else if (!running && t.status.state === 'running') add('orphan', `pause container ${where} is not running while its task runs`, `orphan:${c.id}`);
      continue;
    }
    if (running) {
      const key = `${c.service} slot ${c.slot}`;
      runningCtrBySlot.set(key, [...(runningCtrBySlot.get(key) ?? []), c.name]);
    }
    const current = !!t && !!t.status.containerId && (c.id.startsWith(t.status.containerId) || t.status.containerId.startsWith(c.id));
    if (!t) add('orphan', `container ${where}`, `orphan:${c.id}`);
    else if (t.spec.desiredState === 'running') {
      if (t.status.containerId && !current) add('orphan', `container ${where}, not the task's container (${t.status.containerId.slice(0, 12)})`, `orphan:${c.id}`);
      else if (!running && t.status.state === 'running') add('missing', `task ${t.metadata.name} is reported running but its container ${c.name} is ${c.state}`);
    } else if (running) add('orphan', `container ${where} still runs`, `orphan:${c.id}`);
    // An exited container of a task that ended (failed, rejected, orphaned, shutdown) and is kept in the service's task
    // history (5 per slot) is history, not an orphan: the agent removes it with its task (reconciler.ts, !task).
  }
  for (const [key, names] of runningCtrBySlot) if (names.length > 1) add('duplicate-slot', `${key} has ${names.length} containers running: ${names.join(', ')}`);
  for (const t of s.tasks) {
    if (t.spec.desiredState !== 'running' || t.status.state !== 'running') continue;
    const c = s.containers.find((x) => !x.pause && x.task === t.metadata.name && x.state === 'running');
    if (!c) add('missing', `task ${t.metadata.name} (node ${t.spec.nodeName}) is reported running but no container of it runs on the engine`);
  }
  return out;
}

/** accept leaves these problems (reported as violations) out of later polls, but never a dead process, the API or the engine not answering; returns how many. */
export function accept(cluster: Cluster, ps: Problem[]): number {
  let n = 0;
  for (const p of ps)
    if (!['process', 'api', 'engine'].includes(p.inv) && !cluster.accepted.has(problemKey(p))) {
      cluster.accepted.add(problemKey(p));
      n++;
    }
  return n;
}

/** byInvariant: problems grouped by invariant, each group's messages (at most 12). */
export function byInvariant(ps: Problem[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const p of ps) m.set(p.inv, [...(m.get(p.inv) ?? []), p.msg]);
  for (const [k, v] of m) if (v.length > 12) m.set(k, [...v.slice(0, 12), `… and ${v.length - 12} more`]);
  return m;
}

/**
 * converge polls until a run of clean polls spans STABLE_MS, or the
 * deadline (from `from`) passes. Returns when the run began, or the last
 * problems. A process that exited on its own is reported to onCrash and
 * started again.
 */
export async function converge(c: Cluster, from: number, deadlineMs: number, onCrash: (what: string) => void): Promise<{ at?: number; last: Problem[]; snap?: Snapshot }> {
  let cleanSince: number | undefined;
  let last: Problem[] = [];
  let lastLog = now();
  for (;;) {
    checkInterrupted();
    for (const what of await c.restartExited()) {
      log(`  VIOLATION: ${what.split('\n')[0]}; started it again`);
      onCrash(what);
      cleanSince = undefined;
    }
    c.noteStarted();
    const t = now();
    const snap = await c.observe();
    const ps = problems(c, snap);
    if (ps.length === 0) {
      cleanSince ??= t;
      if (now() - cleanSince >= STABLE_MS) return { at: cleanSince, last: [], snap };
    } else {
      cleanSince = undefined;
      last = ps;
    }
    if (now() - from > deadlineMs) return { last, snap };
    if (ps.length && now() - lastLog > 10_000) {
      lastLog = now();
      log(`  not converged after ${secs(now() - from)} s: ${ps.slice(0, 4).map((p) => `${p.inv}: ${p.msg}`).join('; ')}${ps.length > 4 ? ` (+${ps.length - 4})` : ''}`);
    }
    await sleep(Math.max(0, POLL_MS - (now() - t)));
  }
}
