/**
 * bench:chaos — random faults against a small Baton cluster, each followed
 * by waiting for the cluster to converge and checking that it converged to
 * the right state (issue goal: ≥ 100 faults, 0 violations).
 *
 *   npm run bench:chaos -- [--faults 100] [--seed N] [--pause-ms 1500]
 *                          [--deadline-s 120] [--kinds a,b,...]
 *                          [--write-chance 0.3] [--keep-logs]
 *
 * The cluster: one `baton server` (SQLite, 127.0.0.1 on a port chosen at
 * start and kept across its restarts; task and service ranges of its own,
 * --cluster-cidr 10.150.0.0/16 --service-cidr 10.151.0.0/16, which no other
 * bench or test takes, so that it can run beside them) and three
 * `baton agent` processes on
 * 127.0.0.2, 127.0.0.3 and 127.0.0.4 (own --data-dir, --port-range,
 * --listen-port 0, confined: --egress none --dns-upstream none), all with
 * BATON_HOME in a temp dir and short timings through BATON_TIMINGS
 * (heartbeat 500 ms, NotReady after 3 missed beats, Down 5 s after the last
 * beat). The agents' engine is a dockerd of the bench's own, never the
 * shared one: its own --data-root, --exec-root, --pidfile and unix socket
 * under the temp dir, `--bridge=none --iptables=false`, an empty daemon.json
 * (the approach of test/helpers/dockerd.ts); the test image
 * baton-test/busybox:latest is copied into it from the shared engine with
 * `docker save | docker load` (no registry). Two services, both labelled
 * baton.bench=chaos: chaos_sleep (`sleep 3600`, 6 replicas) and chaos_web
 * (busybox httpd, 3 replicas, an HTTP health check every second); both with
 * a restart backoff of at most 2 s (x-baton.restart) so that a slot killed
 * many times comes back within the deadline.
 *
 * Faults, one at a time, drawn from a PRNG (mulberry32) seeded with --seed
 * (printed; the same seed replays the same choices, though the cluster's
 * own timing varies): the kind by weight, then its target and durations.
 *   server-kill      kill -9 of the server, restarted on the same data dir
 *                    and port after 0–3 s
 *   agent-kill       kill -9 of one agent, restarted with the same command
 *                    line after 0–8 s (past 5 s its node goes Down and its
 *                    tasks are replaced elsewhere)
 *   agent-stop       SIGSTOP of one agent for 1–8 s, then SIGCONT
 *   container-kill   `docker kill` of 1–3 running task containers
 *   dockerd-restart  kill -9 of the private dockerd, started again on the
 *                    same directories after 0–3 s
 * Before a fault, with --write-chance, chaos_sleep is scaled to another
 * count in 4–8 (an acknowledged write: it must survive a server kill).
 *
 * How convergence is timed and what is checked: from the moment the fault
 * is injected (the kill), the bench polls every 500 ms (the API's services,
 * tasks and nodes, and `docker ps -a` on the private engine) and the
 * cluster counts as converged at the first poll of a run of clean polls
 * spanning 1.5 s. A poll is clean when every invariant holds:
 *   api              GET /api/v1/services, /tasks and /nodes answer
 *   nodes            the 3 nodes are Ready (and a restarted agent has
 *                    logged "agent started")
 *   lost-write       every service made or scaled before exists with the
 *                    same uid, generation and replicas as acknowledged
 *   replicas         each service has exactly its replicas of tasks with
 *                    desiredState running, one per slot 1..N; its status
 *                    counts desired/running/ready equal them
 *   duplicate-slot   no slot has two tasks running, nor two running
 *                    containers on the engine
 *   stuck-task       every task is running (and desired so) or terminal:
 *                    none left pending, assigned, preparing or starting, and
 *                    none still running when desired shutdown
 *   unhealthy        chaos_web's running tasks report healthy
 *   orphan           every container on the private engine with the
 *                    cluster's label belongs to a task in the API: a
 *                    running one to a task desired running whose reported
 *                    container it is; a pause container to a task desired
 *                    running. An exited container of a task that ended
 *                    (failed, rejected, orphaned) and is kept in its
 *                    service's task history (5 per slot, as Swarm) is
 *                    history, not an orphan: Baton removes it with the task;
 *                    such tasks are listed under "tasks that ended".
 *   missing          every task reported running has its container running
 *                    on the engine
 * A fault whose cluster is not clean within --deadline-s is a violation for
 * each invariant still broken, with what was seen; those problems (a leaked
 * container stays leaked) are then left out of later polls, so that each
 * later fault is judged on what it breaks, and the bench waits another
 * deadline before going on (it stops early when the cluster does not come
 * back at all; a dead process or an API or engine that does not answer is
 * never left out). During the pause between faults the bench keeps
 * polling: an invariant broken in two polls in a row with no fault is a
 * violation too (relapse). A Baton process or the engine that exits on its
 * own is a violation (process), and is started again.
 *
 * stdout: per fault kind the count, convergence time from the fault
 * (p50/max) and from its healing (restart, SIGCONT) (p50/max), and
 * violations; then every violation with the seed and the fault's index, and
 * a last line with the totals. Exit code 1 when there was a violation.
 * Progress goes to stderr. Everything the bench starts is stopped by PID at
 * the end, also on failure or Ctrl-C (a stopped agent gets SIGCONT first):
 * the Baton processes, the private dockerd with every container on it, the
 * containerd shims and container processes a killed dockerd left (found in
 * /proc by the temp dir in their command line), its mounts, the agents'
 * task bridges and nftables tables, and the temp dir. With violations (or
 * --keep-logs) the processes' logs are kept in /tmp/baton-chaos-logs-<id>
 * and the path is printed. Only 127.0.0.0/8 is contacted.
 *
 * This file holds the options, the run (faults, convergence, pauses) and
 * the report; the rest is in chaosCluster.ts (the cluster and what a poll
 * sees), chaosChecks.ts (the invariants, convergence), chaosFaults.ts (the
 * fault kinds, the PRNG, injection), chaosEngine.ts (the private dockerd)
 * and chaosProcs.ts (the Baton processes, started again after a kill).
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { accept, byInvariant, converge, POLL_MS, problems } from './chaosChecks.js';
import { AGENTS, BENCH_LABEL, Cluster, IMAGE, SLEEP_REPLICAS, SLEEP_SVC, TIMINGS, WEB_REPLICAS, WEB_SVC } from './chaosCluster.js';
import { inject, KINDS, Rng, WEIGHTS, type Kind } from './chaosFaults.js';
import { beginTeardown } from './chaosProcs.js';
import { benchArgs, checkInterrupted, cleanUpOnSignals, intFlag, keyValues, log, machineInfo, now, onCleanup, oneLine, percentile, reportHeader, requireImage, runCleanups, runMain, secs, sleep, wasInterrupted } from './lib.js';

// ---------------------------------------------------------------- options

interface Opts {
  faults: number;
  seed: number;
  pauseMs: number;
  deadlineMs: number;
  kinds: Kind[];
  writeChance: number;
  keepLogs: boolean;
}

const USAGE = 'usage: npm run bench:chaos -- [--faults 100] [--seed N] [--pause-ms 1500] [--deadline-s 120] [--kinds server-kill,agent-kill,agent-stop,container-kill,dockerd-restart] [--write-chance 0.3] [--keep-logs]\n';

function parseOpts(): Opts {
  const v = benchArgs(USAGE, { faults: '100', seed: '', 'pause-ms': '1500', 'deadline-s': '120', kinds: KINDS.join(','), 'write-chance': '0.3', 'keep-logs': false });
  const kinds = v.kinds.split(',').map((s) => s.trim()).filter(Boolean);
  for (const k of kinds) if (!(KINDS as readonly string[]).includes(k)) throw new Error(`--kinds: unknown kind "${k}" (kinds: ${KINDS.join(', ')})`);
  if (!kinds.length) throw new Error('--kinds names no kind');
  const writeChance = Number(v['write-chance']);
  if (!(writeChance >= 0 && writeChance <= 1)) throw new Error(`--write-chance must be a number in [0, 1], got "${v['write-chance']}"`);
  return {
    faults: intFlag('faults', v.faults, 1),
    seed: v.seed === '' ? randomInt(1, 2 ** 31) : intFlag('seed', v.seed, 0, 2 ** 32 - 1),
    pauseMs: intFlag('pause-ms', v['pause-ms'], 0),
    deadlineMs: intFlag('deadline-s', v['deadline-s'], 5) * 1000,
    kinds: kinds as Kind[],
    writeChance,
    keepLogs: v['keep-logs'],
  };
}

const benchId = `chaos-${Date.now().toString(36)}-${process.pid}`;

cleanUpOnSignals([BENCH_LABEL]);

// ---------------------------------------------------------------- what the run records

interface Violation {
  fault: number;
  kind: Kind | 'start' | 'relapse';
  inv: string;
  seen: string[];
}

interface FaultRecord {
  index: number;
  kind: Kind;
  detail: string;
  write?: string;
  /** Fault injected → converged (ms); undefined when not within the deadline. */
  convergedMs?: number;
  /** Healed (restart, SIGCONT; the kill itself for container-kill) → converged. */
  afterHealMs?: number;
  violations: number;
}

// ---------------------------------------------------------------- report

function report(o: Opts, machine: Record<string, string>, records: FaultRecord[], violations: Violation[], writes: { n: number }, tookMs: number, notes: string[], ended: Cluster['ended']): void {
  const out: string[] = [];
  out.push(...reportHeader('chaos', benchId, machine, tookMs));
  out.push(`seed ${o.seed}  faults ${o.faults}  pause ${o.pauseMs} ms  deadline ${o.deadlineMs / 1000} s  kinds ${o.kinds.join(',')}  write chance ${o.writeChance}`);
  out.push(`cluster: baton server (SQLite) + ${AGENTS.length} agents (${AGENTS.map((a) => a.address).join(', ')}) on a private dockerd (--bridge=none --iptables=false); BATON_TIMINGS=${JSON.stringify(TIMINGS)}`);
  out.push(`services: ${SLEEP_SVC} (sleep 3600, ${SLEEP_REPLICAS} replicas, scaled within 4–8 by the writes), ${WEB_SVC} (httpd, ${WEB_REPLICAS} replicas, HTTP health check every 1 s)`);
  out.push('');
  const f = (ms: number) => secs(ms).padStart(8);
  out.push(`${'kind'.padEnd(16)} ${'faults'.padStart(6)} ${'converged'.padStart(9)} ${'p50_s'.padStart(8)} ${'max_s'.padStart(8)} ${'heal→p50_s'.padStart(10)} ${'heal→max_s'.padStart(10)} ${'violations'.padStart(10)}`);
  const row = (name: string, rs: FaultRecord[], nViol: number) => {
    const conv = rs.filter((r) => r.convergedMs !== undefined);
    const xs = conv.map((r) => r.convergedMs!);
    const hs = conv.map((r) => r.afterHealMs!);
    out.push(`${name.padEnd(16)} ${String(rs.length).padStart(6)} ${String(conv.length).padStart(9)} ${f(percentile(xs, 50))} ${f(xs.length ? Math.max(...xs) : NaN)} ${secs(percentile(hs, 50)).padStart(10)} ${secs(hs.length ? Math.max(...hs) : NaN).padStart(10)} ${String(nViol).padStart(10)}`);
  };
  for (const k of KINDS) {
    const rs = records.filter((r) => r.kind === k);
    if (rs.length || o.kinds.includes(k)) row(k, rs, violations.filter((v) => records.find((r) => r.index === v.fault)?.kind === k).length);
  }
  row('all', records, violations.length);
  out.push(`writes: ${writes.n} scale calls of ${SLEEP_SVC} acknowledged just before a fault; each checked after it (lost-write)`);
  for (const n of notes) out.push(n);
  // Tasks that ended and were replaced: expected after a node loss (orphaned); anything else is worth a look.
  const byKind = new Map<string, number>();
  for (const e of ended.values()) byKind.set(e.state, (byKind.get(e.state) ?? 0) + 1);
  out.push(`tasks that ended and were replaced: ${byKind.size ? [...byKind].map(([k, n]) => `${k} ${n}`).join(', ') : 'none'}`);
  const odd = [...ended].filter(([, e]) => e.state !== 'orphaned');
  const whys = new Map<string, string[]>();
  for (const [name, e] of odd) whys.set(`${e.state}: ${e.why}`, [...(whys.get(`${e.state}: ${e.why}`) ?? []), `${name}@${e.node} (fault #${e.fault} ${records.find((r) => r.index === e.fault)?.kind ?? ''})`]);
  for (const [why, who] of whys) out.push(`  ${who.length} × ${why} — ${who.slice(0, 6).join(', ')}${who.length > 6 ? ', …' : ''}`);
  out.push('');
  if (violations.length) {
    out.push(`## violations (${violations.length}; replay with --seed ${o.seed}${o.kinds.length < KINDS.length ? ` --kinds ${o.kinds.join(',')}` : ''})`);
    for (const v of violations) {
      const r = records.find((x) => x.index === v.fault);
      out.push(`- seed ${o.seed} fault #${v.fault} ${v.kind}${r ? ` (${r.detail}${r.write ? `; ${r.write}` : ''})` : ''}: ${v.inv}`);
      for (const s of v.seen) out.push(`    ${s.split('\n').join('\n    ')}`);
    }
  } else out.push('## violations: none');
  out.push('');
  out.push(`total faults ${records.length}, violations ${violations.length} (seed ${o.seed})`);
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOpts();
  if (process.env.BATON_TIMINGS !== undefined) log(`ignoring BATON_TIMINGS=${process.env.BATON_TIMINGS}: this bench sets its own`);
  const machine = await machineInfo();
  log(`bench id ${benchId}; seed ${o.seed} (replay with --seed ${o.seed}); faults ${o.faults}, pause ${o.pauseMs} ms, deadline ${o.deadlineMs / 1000} s; ${keyValues(machine)}`);
  await requireImage(IMAGE);
  const rng = new Rng(o.seed);

  const root = mkdtempSync(join('/tmp', 'baton-chaos-'));
  const c = new Cluster(root);
  let keptLogs: string | undefined;
  const violations: Violation[] = [];
  const keepLogs = () => {
    if (!(o.keepLogs || violations.length) || keptLogs) return;
    keptLogs = `/tmp/baton-chaos-logs-${benchId}`;
    try {
      cpSync(c.logs, keptLogs, { recursive: true });
      cpSync(join(c.engine.dir, 'dockerd.log'), join(keptLogs, 'dockerd.log'));
      log(`kept the processes' logs in ${keptLogs}`);
    } catch (e) {
      log(`could not keep the logs: ${(e as Error).message}`);
    }
  };
  onCleanup('chaos cluster', async () => {
    beginTeardown();
    await c.stop();
    keepLogs();
    rmSync(root, { recursive: true, force: true });
  });

  const records: FaultRecord[] = [];
  const writes = { n: 0 };
  const notes: string[] = [];
  let current = 0;
  const t0 = now();
  try {
    await c.start();
    await c.deploy();
    log('waiting for the first convergence');
    const first = await converge(c, now(), o.deadlineMs, (what) => violations.push({ fault: 0, kind: 'start', inv: 'process', seen: [what] }));
    if (first.at === undefined) {
      for (const [inv, seen] of byInvariant(first.last)) violations.push({ fault: 0, kind: 'start', inv, seen });
      throw new Error(`the cluster did not converge after the first deploy: ${first.last.map((p) => `${p.inv}: ${p.msg}`).join('; ')}`);
    }
    log(`converged after the deploy in ${secs(first.at - t0)} s since the start`);
    let snap = first.snap!;
    let currentSleep = SLEEP_REPLICAS;

    for (let i = 1; i <= o.faults; i++) {
      current = i;
      c.fault = i;
      checkInterrupted();
      const kind = rng.weighted(o.kinds, WEIGHTS);
      let write: string | undefined;
      if (rng.float() < o.writeChance) {
        let n = rng.int(4, 7);
        if (n >= currentSleep) n++; // 4–8, never the current count
        const s = await c.scale(SLEEP_SVC, n);
        write = `scaled ${SLEEP_SVC} ${currentSleep} → ${n} (generation ${s.metadata.generation}) just before`;
        currentSleep = n;
        writes.n++;
      }
      const inj = await inject(c, kind, rng, snap);
      const rec: FaultRecord = { index: i, kind, detail: inj.detail, write, violations: 0 };
      records.push(rec);
      log(`fault ${i}/${o.faults} ${kind}: ${inj.detail}${write ? `; ${write}` : ''}`);
      const crashed = (what: string) => violations.push({ fault: i, kind, inv: 'process', seen: [what] });
      const r = await converge(c, inj.injectedAt, o.deadlineMs, crashed);
      if (r.at !== undefined) {
        rec.convergedMs = r.at - inj.injectedAt;
        rec.afterHealMs = Math.max(0, r.at - inj.healedAt);
        log(`  converged ${secs(rec.convergedMs)} s after the fault (${secs(rec.afterHealMs)} s after healing)`);
        snap = r.snap!;
      } else {
        for (const [inv, seen] of byInvariant(r.last)) violations.push({ fault: i, kind, inv, seen });
        rec.violations = violations.filter((v) => v.fault === i).length;
        log(`  VIOLATION: not converged within ${o.deadlineMs / 1000} s: ${r.last.map((p) => `${p.inv}: ${p.msg}`).join('; ')}`);
        const accepted = accept(c, r.last);
        const again = await converge(c, now(), o.deadlineMs, crashed);
        if (again.at === undefined) {
          notes.push(`stopped after fault #${i}: the cluster did not converge within another ${o.deadlineMs / 1000} s (${again.last.slice(0, 3).map((p) => `${p.inv}: ${p.msg}`).join('; ')})`);
          log(`  the cluster did not come back; stopping the run`);
          break;
        }
        notes.push(`fault #${i}: converged ${secs(again.at - inj.injectedAt)} s after the fault${accepted ? `, leaving out the ${accepted} problem(s) reported for it from then on` : ''}`);
        snap = again.snap!;
      }
      // The pause: nothing happens, so nothing may break.
      const pauseEnd = now() + o.pauseMs;
      let bad = 0;
      while (now() < pauseEnd) {
        checkInterrupted();
        await sleep(Math.min(POLL_MS, Math.max(0, pauseEnd - now())));
        const s2 = await c.observe();
        const ps = problems(c, s2);
        if (!ps.length) {
          bad = 0;
          snap = s2;
          continue;
        }
        if (++bad < 2) continue;
        for (const [inv, seen] of byInvariant(ps)) violations.push({ fault: i, kind: 'relapse', inv, seen: [`after fault #${i} converged, with no fault since:`, ...seen] });
        rec.violations = violations.filter((v) => v.fault === i).length;
        log(`  VIOLATION: relapse after convergence: ${ps.map((p) => `${p.inv}: ${p.msg}`).join('; ')}`);
        for (const s of await c.restartExited()) violations.push({ fault: i, kind: 'relapse', inv: 'process', seen: [s] });
        accept(c, ps);
        const again = await converge(c, now(), o.deadlineMs, crashed);
        if (again.at === undefined) {
          notes.push(`stopped after fault #${i}: the cluster relapsed and did not converge again within ${o.deadlineMs / 1000} s`);
          i = o.faults; // leaves the outer loop
        } else snap = again.snap!;
        break;
      }
    }
  } catch (e) {
    if (wasInterrupted()) throw e;
    log(`bench failed: ${(e as Error).stack ?? e}`);
    notes.push(`the run failed: ${oneLine((e as Error).message).slice(0, 600)}`);
    violations.push({ fault: current, kind: 'start', inv: 'bench', seen: [`the run failed${current ? ` during fault #${current}` : ''}: ${oneLine((e as Error).message).slice(0, 2000)}`] });
  } finally {
    await runCleanups();
  }
  if (keptLogs) notes.push(`the Baton processes' and dockerd's logs are kept in ${keptLogs}`);
  const took = now() - t0;
  log(`bench took ${secs(took)} s`);
  report(o, machine, records, violations, writes, took, notes, c.ended);
  return violations.length ? 1 : 0;
}

runMain(main, [BENCH_LABEL], { signalExits: true });
