/**
 * bench:logs — Baton's log path on the local engine, with `docker logs` (a
 * plain `docker run` container) and Docker Swarm's `docker service logs`
 * measured in the same run, on the same engine, image and command:
 *
 *   1. Throughput, container → CLI. One task writes --lines lines of about
 *      100 bytes (`line <i> <--pad x's>`, one busybox `echo` per line), then
 *      sleeps. Two reads per system:
 *        full    once the whole output is readable (Baton: `baton logs
 *                <svc> --tail 1` polled until it shows the last line, i.e. the
 *                agent has collected everything), the time of one full
 *                non-following read (`baton logs <svc>`, `docker logs <id>`,
 *                `docker service logs <svc>`), the CLI process's start to its
 *                exit; the median of --reads reads;
 *        follow  the follower (`baton logs -f`, `docker logs -f`, `docker
 *                service logs -f`) started right at deploy: lines/s from the
 *                first line received to the last, and lines / wall time from
 *                the deploy call to the last line received.
 *      Every line of every read is checked against the expected sequence
 *      (count, order and content, byte for byte after the `task@node | `
 *      prefix); a missing, repeated, reordered or altered line makes that read
 *      INVALID, printed with the first anomalies, and the bench exits 1. A
 *      read that gets no new line for --stall-s is stopped (and INVALID).
 *      Engine check (not a peer, no ratio): `docker logs -f` of the same flood
 *      in a plain container with the log options Baton's agent gave its own
 *      container (json-file max-size/max-file): the engine stream the agent
 *      copies from, so a Baton anomaly can be told from an engine one.
 *   2. Latency from a container's write to the follower's output: a task
 *      prints `tick <i>` every 20 ms (busybox usleep); the follower runs with
 *      timestamps and --tail 0 (`baton logs -f -t`, `docker logs -f -t`,
 *      `docker service logs -f -t`); each line's latency is the bench's wall
 *      clock when the line arrives on the follower's stdout minus the
 *      timestamp printed with it (the time the engine received the write,
 *      RFC 3339 with nanoseconds, the same host clock). After --latency-warmup
 *      lines, --latency-samples samples; p50 and p99 (nearest rank) and max;
 *      Baton's goal is p99 <= 1 s. Tick numbers are checked for gaps too.
 *
 *   npm run bench:logs -- [--lines 500000] [--pad 88] [--reads 3]
 *                         [--latency-samples 500] [--latency-warmup 10]
 *                         [--deadline-s 300] [--stall-s 20] [--skip-docker] [--skip-swarm]
 *                         [--skip-rotation-check]
 *
 * Baton runs as `baton server` and one `baton agent` (127.0.0.2, its own
 * --data-dir, --listen-port 0, default --log-max-size 100m) with BATON_HOME in
 * a temp dir; services are applied through the API as bench:recovery does;
 * the CLI is run as a child process (`node bin/baton.js logs ...`) with
 * BATON_SERVER/BATON_TOKEN/BATON_CA. The Docker peer: `docker create/start
 * --init --network host` (Baton's defaults), the engine's default json-file driver
 * (no rotation: a full `docker logs` must hold all lines; Baton's own
 * containers get json-file 64m × 3 (read from the agent's container) and the agent copies them as they are
 * written). Swarm: a throw-away single-node swarm (`docker swarm init
 * --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377`, left at the end
 * only if this bench created it; skipped when the engine already is in a
 * swarm), `docker service create --init --network host --no-resolve-image`.
 * The systems run one after the other, never at the same time.
 * Every container carries `baton.bench=logs` and is removed at the end, also
 * on failure or Ctrl-C; only processes this bench started are stopped, by
 * PID. Only 127.0.0.0/8 is contacted. Progress goes to stderr, results to
 * stdout.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { ApiClient } from '../src/api/client.js';
import { BATON_BIN, benchArgs, BenchCluster, checkInterrupted, cleanUpAll, cleanUpOnSignals, DOCKER, docker, dockerOk, exec, failure, intFlag, keyValues, log, machineInfo, median, now, onCleanup, oneLine, percentile, ratio, removeByLabel, reportHeader, requireImage, runMain, secs, sleep, stackServices, stopChild, throwAwaySwarm, waitContainersGone, waitFor } from './lib.js';

// ---------------------------------------------------------------- options

const IMAGE = 'baton-test/busybox:latest';
const LABEL = 'baton.bench';
const LABEL_VALUE = 'logs';
const BENCH_LABEL = `${LABEL}=${LABEL_VALUE}`;
const TP_STACK = 'benchlogs';
const TP_SVC = `${TP_STACK}_flood`;
const LAT_STACK = 'benchtick';
const LAT_SVC = `${LAT_STACK}_tick`;
const SWARM_TP_SVC = 'baton-bench-logs-flood';
const SWARM_LAT_SVC = 'baton-bench-logs-tick';
const AGENT = { name: 'logsbench-node2', address: '127.0.0.2', portRange: '27600-27699' };
const TICK_MS = 20;
const FOLLOW_GRACE_MS = 3000;
const GOAL_P99_MS = 1000;
const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface Opts {
  lines: number;
  pad: number;
  reads: number;
  latencySamples: number;
  latencyWarmup: number;
  deadlineMs: number;
  stallMs: number;
  skipRotationCheck: boolean;
  skipDocker: boolean;
  skipSwarm: boolean;
}

const USAGE = 'usage: npm run bench:logs -- [--lines 500000] [--pad 88] [--reads 3] [--latency-samples 500] [--latency-warmup 10] [--deadline-s 300] [--stall-s 20] [--skip-docker] [--skip-swarm] [--skip-rotation-check]\n';

function parseOpts(): Opts {
  const values = benchArgs(USAGE, { lines: '500000', pad: '88', reads: '3', 'latency-samples': '500', 'latency-warmup': '10', 'deadline-s': '300', 'stall-s': '20', 'skip-docker': false, 'skip-swarm': false, 'skip-rotation-check': false });
  return {
    lines: intFlag('lines', values.lines, 1, 10_000_000),
    pad: intFlag('pad', values.pad, 0, 4000),
    reads: intFlag('reads', values.reads, 1, 20),
    latencySamples: intFlag('latency-samples', values['latency-samples'], 1, 100_000),
    latencyWarmup: intFlag('latency-warmup', values['latency-warmup'], 0, 10_000),
    deadlineMs: intFlag('deadline-s', values['deadline-s'], 10, 3600) * 1000,
    stallMs: intFlag('stall-s', values['stall-s'], 1, 3600) * 1000,
    skipDocker: values['skip-docker'],
    skipSwarm: values['skip-swarm'],
    skipRotationCheck: values['skip-rotation-check'],
  };
}

const benchId = `logs-${Date.now().toString(36)}-${process.pid}`;

cleanUpOnSignals([BENCH_LABEL]);

/** The log readers running now (children of this bench), stopped by PID on Ctrl-C or failure. */
const readers = new Set<ChildProcess>();
function spawnReader(file: string, args: string[], env: Record<string, string>, stderr: 'pipe' | 'ignore'): ChildProcess {
  const child = spawn(file, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', stderr] });
  readers.add(child);
  child.once('exit', () => readers.delete(child));
  return child;
}
onCleanup('log readers', async () => {
  for (const c of [...readers]) await stopChild(c, `log reader pid ${c.pid}`, 3000);
});

// ---------------------------------------------------------------- workloads

/** The flood: --lines lines `line <i> <pad>`, then sleep (the container stays up, a follower never ends by itself). */
function floodScript(o: Opts): string {
  return `i=0; while [ $i -lt ${o.lines} ]; do echo "line $i ${'x'.repeat(o.pad)}"; i=$((i+1)); done; exec sleep 3600`;
}

function tickScript(sleepCmd: string): string {
  return `i=0; while true; do echo "tick $i"; i=$((i+1)); ${sleepCmd}; done`;
}

/** expectedBytes: the flood's output in bytes ("line " + i + " " + pad + "\n"). */
const expectedBytes = (o: Opts) => {
  let n = 0;
  for (let lo = 0, hi = 10, d = 1; lo < o.lines; lo = hi, hi *= 10, d++) n += (Math.min(o.lines, hi) - lo) * (7 + d + o.pad);
  return n;
};

// ---------------------------------------------------------------- small helpers

/** run runs a program (no shell) in the checkout with extra env, never throwing on a non-zero exit. */
const run = (file: string, args: string[], env: Record<string, string> = {}, timeoutMs = 60_000) => exec(file, args, { cwd: REPO, env, timeoutMs });

const TS_RE = /(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)/;

/** tsMs reads an RFC 3339 time (with up to 9 fraction digits) as epoch milliseconds with a fraction; NaN when there is none. */
function tsMs(s: string): number {
  const m = TS_RE.exec(s);
  if (!m) return NaN;
  return Date.parse(m[1]! + m[3]!) + (m[2] ? Number('0' + m[2]) * 1000 : 0);
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

// ---------------------------------------------------------------- reading and checking a log stream

/** Checker compares each line's text with the expected sequence `line <i> <pad>`. */
class Checker {
  next = 0;
  received = 0;
  bytes = 0;
  missing = 0;
  disorder = 0;
  corrupt = 0;
  extra = 0;
  readonly anomalies: string[] = [];
  readonly prefixes = new Set<string>();
  private readonly pad: string;
  constructor(private readonly total: number, pad: number) {
    this.pad = 'x'.repeat(pad);
  }

  private note(s: string): void {
    if (this.anomalies.length < 8) this.anomalies.push(s);
  }

  add(text: string): void {
    this.received++;
    this.bytes += text.length + 1;
    if (this.next < this.total && text === `line ${this.next} ${this.pad}`) {
      this.next++;
      return;
    }
    const m = /^line (\d+) (x*)$/.exec(text);
    if (!m || m[2] !== this.pad) {
      this.corrupt++;
      this.note(`line #${this.received} (expected line ${this.next}) is not a line of the sequence: ${JSON.stringify(text.slice(0, 120))}`);
      return;
    }
    const n = Number(m[1]);
    if (n >= this.total) {
      this.extra++;
      this.note(`line #${this.received}: line ${n} is beyond the ${this.total} written`);
    } else if (n > this.next) {
      this.missing += n - this.next;
      this.note(`line #${this.received}: got line ${n}, expected line ${this.next} (${n - this.next} missing)`);
      this.next = n + 1;
    } else {
      this.disorder++;
      this.note(`line #${this.received}: got line ${n} again / out of order (expected line ${this.next})`);
    }
  }

  ok(): boolean {
    return this.next === this.total && this.missing === 0 && this.disorder === 0 && this.corrupt === 0 && this.extra === 0 && this.received === this.total;
  }

  verdict(): string {
    if (this.ok()) return `ok (${this.received} lines in order, content exact)`;
    const parts = [`got ${this.received} lines, ${this.next}/${this.total} of the sequence reached`];
    if (this.missing) parts.push(`${this.missing} missing`);
    if (this.disorder) parts.push(`${this.disorder} repeated/out of order`);
    if (this.corrupt) parts.push(`${this.corrupt} altered`);
    if (this.extra) parts.push(`${this.extra} unexpected`);
    return `INVALID: ${parts.join(', ')}`;
  }
}

/** LineReader splits a child's stdout into lines and hands each (without its newline) to onLine, with the wall clock of its chunk. */
function readLines(child: ChildProcess, onLine: (line: string, atMs: number) => void): void {
  let carry = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (s: string) => {
    const at = now();
    const text = carry + s;
    let start = 0;
    let nl: number;
    while ((nl = text.indexOf('\n', start)) >= 0) {
      onLine(text.slice(start, nl), at);
      start = nl + 1;
    }
    carry = text.slice(start);
  });
}

/** textOf strips a `task@node    | ` prefix (Baton, docker service logs); `raw` lines are all text. */
function splitPrefix(line: string, prefixed: boolean): { prefix: string; text: string } {
  if (!prefixed) return { prefix: '', text: line };
  const i = line.indexOf('| ');
  if (i < 0) return { prefix: '?', text: line };
  return { prefix: line.slice(0, i).trimEnd(), text: line.slice(i + 2) };
}

interface ReadResult {
  what: string;
  check: Checker;
  /** Process start → exit (full reads) or → the last line received (followers). */
  spawnToEndMs: number;
  /** First → last line received. */
  firstToLastMs: number;
  /** Deploy → the last line received (followers). */
  deployToLastMs: number;
  /** now() of the first and the last line received. */
  firstAt: number;
  lastAt: number;
  /** Wall clock (epoch ms) when the first and the last line arrived. */
  firstWallMs: number;
  lastWallMs: number;
  /** The last line of the sequence arrived. */
  sawLast: boolean;
  /** Lines received up to the last line of the sequence (all when it never came): what the rates count. */
  linesTimed: number;
  code: number | null;
  stderr: string;
  failed?: string;
}

/**
 * readAll runs a log command to its end (follow=false) or until the last
 * line of the sequence arrived (follow=true, then the child is stopped by its
 * PID), checking every line; it gives up after --stall-s without a new line
 * (60 s at least before the first) or after --deadline-s in all.
 */
async function readAll(what: string, file: string, args: string[], o: { env?: Record<string, string>; prefixed: boolean; follow: boolean; opts: Opts; deployAt?: number }): Promise<ReadResult> {
  const check = new Checker(o.opts.lines, o.opts.pad);
  const t0 = now();
  const child = spawnReader(file, args, o.env ?? {}, 'pipe');
  log(`${what}: ${file === process.execPath ? 'node bin/baton.js' : file === DOCKER ? 'docker' : file} ${args.filter((a) => a !== BATON_BIN).join(' ')} (pid ${child.pid})`);
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
  const res: ReadResult = { what, check, spawnToEndMs: NaN, firstToLastMs: NaN, deployToLastMs: NaN, firstAt: NaN, lastAt: NaN, firstWallMs: NaN, lastWallMs: NaN, sawLast: false, linesTimed: 0, code: null, stderr: '' };
  let gotLast!: () => void;
  const lastSeen = new Promise<'last'>((r) => (gotLast = () => r('last')));
  const lastText = `line ${o.opts.lines - 1} ${'x'.repeat(o.opts.pad)}`;
  let firstPrefix: string | undefined;
  let lastActivity = NaN;
  readLines(child, (line, at) => {
    const { prefix, text } = splitPrefix(line, o.prefixed);
    if (firstPrefix === undefined) firstPrefix = prefix;
    if (prefix !== firstPrefix && check.prefixes.size < 5) check.prefixes.add(prefix);
    if (Number.isNaN(res.firstAt)) {
      res.firstAt = at;
      res.firstWallMs = Date.now();
    }
    lastActivity = at;
    // A follower's time ends at the last line of the sequence; what comes after it (repeats) is still checked.
    if (!res.sawLast) {
      res.lastAt = at;
      res.lastWallMs = Date.now();
    }
    check.add(text);
    if (!res.sawLast) res.linesTimed = check.received;
    if (text === lastText && !res.sawLast) {
      res.sawLast = true;
      gotLast();
    }
  });
  const exited = new Promise<'exit'>((r) => child.once('exit', (code) => ((res.code = code), r('exit'))));
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<'stall' | 'deadline'>((r) => {
    timer = setInterval(() => {
      const t = now();
      if (t - t0 > o.opts.deadlineMs) r('deadline');
      else if (Number.isNaN(lastActivity) ? t - t0 > Math.max(60_000, o.opts.stallMs) : t - lastActivity > o.opts.stallMs) r('stall');
    }, 250);
  });
  const outcome = await Promise.race([...(o.follow ? [lastSeen] : []), exited, stalled]);
  clearInterval(timer);
  // A follower keeps reading FOLLOW_GRACE_MS after the last line, so lines repeated right after it are counted too.
  if (outcome === 'last') await Promise.race([exited, sleep(FOLLOW_GRACE_MS)]);
  const end = now();
  if (outcome === 'deadline' || outcome === 'stall') {
    res.failed =
      outcome === 'deadline'
        ? `not done within ${o.opts.deadlineMs / 1000} s (${check.received} lines so far)`
        : `stalled: no new line for ${o.opts.stallMs / 1000} s after ${check.received} lines${res.sawLast ? '' : ` (line ${o.opts.lines - 1} never arrived)`}`;
    log(`${what}: ${res.failed}; stopping pid ${child.pid}`);
  }
  if (outcome !== 'exit') await stopChild(child, what, 5000);
  if (firstPrefix !== undefined) check.prefixes.add(firstPrefix);
  res.stderr = stderr.trim();
  res.spawnToEndMs = o.follow ? res.lastAt - t0 : end - t0;
  res.firstToLastMs = res.lastAt - res.firstAt;
  if (o.deployAt !== undefined) res.deployToLastMs = res.lastAt - o.deployAt;
  if (!o.follow && outcome === 'exit' && res.code !== 0) res.failed = `exit ${res.code}: ${oneLine(res.stderr).slice(0, 300)}`;
  if (o.follow && outcome === 'exit') res.failed = `the follower exited (${res.code}) before the last line: ${oneLine(res.stderr).slice(0, 300)}`;
  log(`${what}: ${check.received} lines, ${secs(o.follow ? res.firstToLastMs : res.spawnToEndMs)} s; ${check.verdict()}${res.stderr ? `; stderr: ${oneLine(res.stderr).slice(0, 200)}` : ''}`);
  for (const a of check.anomalies) log(`${what}:   ${a}`);
  return res;
}

interface LatencyResult {
  what: string;
  samples: number[];
  gaps: number;
  repeats: number;
  unparsed: number;
  firstTick: number;
  lastTick: number;
  failed?: string;
  stderr: string;
}

/** latency follows a tick stream with timestamps and measures arrival wall clock − printed timestamp per line. */
async function latency(what: string, file: string, args: string[], o: { env?: Record<string, string>; opts: Opts }): Promise<LatencyResult> {
  const res: LatencyResult = { what, samples: [], gaps: 0, repeats: 0, unparsed: 0, firstTick: NaN, lastTick: NaN, stderr: '' };
  const child = spawnReader(file, args, o.env ?? {}, 'pipe');
  log(`${what}: ${file === process.execPath ? 'node bin/baton.js' : 'docker'} ${args.filter((a) => a !== BATON_BIN).join(' ')} (pid ${child.pid}); ${o.opts.latencyWarmup} warm-up lines, then ${o.opts.latencySamples} samples`);
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
  let seen = 0;
  let done!: () => void;
  const enough = new Promise<void>((r) => (done = r));
  let prev = NaN;
  let carry = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (s: string) => {
    const wall = Date.now();
    const text = carry + s;
    const parts = text.split('\n');
    carry = parts.pop()!;
    for (const line of parts) {
      const t = tsMs(line);
      const m = /tick (\d+)\s*$/.exec(line);
      if (!m || !Number.isFinite(t)) {
        res.unparsed++;
        if (res.unparsed <= 3) log(`${what}: unparsed line ${JSON.stringify(line.slice(0, 160))}`);
        continue;
      }
      const n = Number(m[1]);
      if (Number.isNaN(res.firstTick)) res.firstTick = n;
      if (!Number.isNaN(prev) && n !== prev + 1) {
        if (n > prev) res.gaps += n - prev - 1;
        else res.repeats++;
      }
      prev = n;
      res.lastTick = n;
      seen++;
      if (seen <= o.opts.latencyWarmup) continue;
      if (res.samples.length < o.opts.latencySamples) {
        res.samples.push(wall - t);
        if (res.samples.length === o.opts.latencySamples) done();
      }
    }
  });
  const exited = new Promise<'exit'>((r) => child.once('exit', () => r('exit')));
  const limitMs = (o.opts.latencySamples + o.opts.latencyWarmup) * TICK_MS * 3 + 30_000;
  const outcome = await Promise.race([enough.then(() => 'enough' as const), exited, sleep(limitMs).then(() => 'deadline' as const)]);
  await stopChild(child, what, 5000);
  res.stderr = stderr.trim();
  if (outcome === 'exit') res.failed = `the follower exited after ${res.samples.length} samples: ${oneLine(res.stderr).slice(0, 300)}`;
  if (outcome === 'deadline') res.failed = `only ${res.samples.length} of ${o.opts.latencySamples} samples within ${limitMs / 1000} s`;
  log(`${what}: ${res.samples.length} samples p50 ${percentile(res.samples, 50).toFixed(1)} ms p99 ${percentile(res.samples, 99).toFixed(1)} ms max ${Math.max(...res.samples).toFixed(1)} ms; ticks ${res.firstTick}..${res.lastTick}, ${res.gaps} missing, ${res.repeats} repeated${res.failed ? `; ${res.failed}` : ''}`);
  return res;
}

// ---------------------------------------------------------------- per-system results

interface Writer {
  /** Container start → the engine's timestamp of the last line (epoch ms difference). */
  spanMs: number;
  lastTsMs: number;
  /** The engine's timestamp of the first line (epoch ms), from a `-t` read of the system's own CLI. */
  firstTsMs: number;
  /** The container's engine log driver and options. */
  logConfig: string;
  logOpts: Record<string, string>;
  logType: string;
}

interface SystemResult {
  name: string;
  full: ReadResult[];
  /** Baton: the same full reads with --no-merge (each node's lines as they come, grouped by task), beside the merged ones. */
  unmerged?: ReadResult[];
  follow?: ReadResult;
  writer?: Writer;
  /** The whole output was readable with a non-following `--tail 1` read before the full reads. */
  readable?: boolean;
  /** Baton: wall clock (epoch ms) of the agent's first append to its log store for the flood task. */
  firstAppendWallMs?: number;
  latency?: LatencyResult;
  /** Docker: `docker logs -f` of the same flood in a container with Baton's log options (the engine path Baton's agent follows). */
  rotationFollow?: ReadResult;
  rotationOpts?: string;
  unavailable?: string;
  failed?: string;
  notes: string[];
}

/** firstLineTs runs a `-t` log read until its first line and returns that line's timestamp (epoch ms), NaN if none within 30 s. */
async function firstLineTs(file: string, args: string[], env: Record<string, string> = {}): Promise<number> {
  const child = spawnReader(file, args, env, 'ignore');
  const first = await new Promise<string | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 30_000);
    readLines(child, (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
  await stopChild(child, `${args.join(' ')} (first line)`, 5000);
  return first === undefined ? NaN : tsMs(first);
}

/** writerTimes: the container's start, its last line's engine timestamp (docker logs), its first line's (firstTs, the system's own `-t` read). */
async function writerTimes(containerId: string, firstTs: () => Promise<number>): Promise<Writer | undefined> {
  const started = Date.parse((await dockerOk(['inspect', '--format', '{{.State.StartedAt}}', containerId])).trim());
  const r = await docker(['logs', '-t', '--tail', '1', containerId]);
  const t = tsMs(r.stdout);
  if (!Number.isFinite(started) || !Number.isFinite(t)) return undefined;
  let logConfig = '?';
  let logOpts: Record<string, string> = {};
  let logType = '';
  try {
    const lc = JSON.parse(await dockerOk(['inspect', '--format', '{{json .HostConfig.LogConfig}}', containerId])) as { Type?: string; Config?: Record<string, string> };
    logType = lc.Type ?? '';
    logOpts = lc.Config ?? {};
    logConfig = [lc.Type ?? '?', ...Object.entries(logOpts).map(([k, v]) => `${k}=${v}`)].join(' ');
  } catch {
    /* unknown */
  }
  return { spanMs: t - started, lastTsMs: t, firstTsMs: await firstTs().catch(() => NaN), logConfig, logOpts, logType };
}

async function tickSleep(): Promise<string> {
  const r = await docker(['run', '--rm', '--label', BENCH_LABEL, '--label', `baton.bench.run=${benchId}`, '--network', 'none', IMAGE, 'sh', '-c', 'command -v usleep'], { timeoutMs: 60_000 });
  if (r.code === 0 && r.stdout.trim()) return `usleep ${TICK_MS * 1000}`;
  log(`usleep is not in ${IMAGE}: the tick task uses sleep ${TICK_MS / 1000}`);
  return `sleep ${TICK_MS / 1000}`;
}

// ---------------------------------------------------------------- Baton

function composeText(stack: string, script: string): string {
  const esc = script.replace(/\$/g, () => '$$'); // Compose interpolation: $$ is a literal $
  return [`name: ${stack}`, 'services:', `  ${stack === TP_STACK ? 'flood' : 'tick'}:`, `    image: ${IMAGE}`, `    command: ${JSON.stringify(['sh', '-c', esc])}`, '    labels:', `      ${LABEL}: "${LABEL_VALUE}"`, `      baton.bench.run: "${benchId}"`, '    deploy:', '      replicas: 1', ''].join('\n');
}

function composeServices(stack: string, script: string, dir: string) {
  const text = composeText(stack, script);
  const services = stackServices(text, stack, dir);
  if (!JSON.stringify(services.map((s) => s.spec)).includes(JSON.stringify(script).slice(1, -1))) throw new Error(`compose for ${stack}: the command did not survive interpolation:\n${text}`);
  return services;
}

async function benchBaton(o: Opts, tick: string): Promise<SystemResult> {
  const res: SystemResult = { name: 'baton', full: [], notes: [] };
  const cluster = new BenchCluster('baton-bench-logs-');
  const dir = cluster.dir;
  let ok = false;
  try {
    const { url, clusterId, api } = await cluster.startServer();
    const serverDir = join(dir, 'server', 'server');
    const cliEnv = { BATON_HOME: dir, BATON_SERVER: url, BATON_TOKEN: readFileSync(join(serverDir, 'admin.token'), 'utf8').trim(), BATON_CA: join(serverDir, 'ca.crt') };
    cluster.startAgent({ ...AGENT, args: ['--listen-port', '0'] });
    const agentAlive = () => cluster.agentsAlive();
    await cluster.waitReady({ agentPort: true });
    const clusterLabel = `baton.cluster=${clusterId}`;
    const baton = (args: string[], timeoutMs = 60_000) => run(process.execPath, [BATON_BIN, ...args], cliEnv, timeoutMs);

    // ------------------------------------------------ 1. throughput
    {
      const services = composeServices(TP_STACK, floodScript(o), dir);
      log(`baton: apply ${TP_SVC} (${o.lines} lines) and follow it at once`);
      const deployAt = now();
      await api.apply(TP_STACK, { services, prune: false, dryRun: false });
      res.follow = await readAll('baton logs -f (from deploy)', process.execPath, [BATON_BIN, 'logs', '-f', TP_SVC], { env: cliEnv, prefixed: true, follow: true, opts: o, deployAt });
      agentAlive();
      // The whole output collected by the agent: its last line readable.
      const lastText = `line ${o.lines - 1} `;
      let lastShown = '';
      await waitFor(
        `baton logs ${TP_SVC} --tail 1 showing line ${o.lines - 1}`,
        async () => {
          agentAlive();
          const r = await baton(['logs', TP_SVC, '--tail', '1']);
          lastShown = oneLine(r.stdout || r.stderr).slice(0, 80);
          return r.code === 0 && r.stdout.includes(lastText) ? true : undefined;
        },
        { timeoutMs: o.stallMs, everyMs: 500 },
      ).then(
        () => (res.readable = true),
        (e) => {
          res.notes.push(`\`baton logs ${TP_SVC} --tail 1\` did not show line ${o.lines - 1} within ${o.stallMs / 1000} s after the follower ended (it showed "${lastShown}")`);
          log(`baton: ${(e as Error).message}; last shown: ${lastShown}; reading what the agent has anyway`);
        },
      );
      const ids = (await dockerOk(['ps', '-q', '--no-trunc', '--filter', `label=${clusterLabel}`, '--filter', `label=baton.service=${TP_SVC}`])).split('\n').filter(Boolean);
      if (ids.length === 1) res.writer = await writerTimes(ids[0]!, () => firstLineTs(process.execPath, [BATON_BIN, 'logs', '-t', TP_SVC], cliEnv));
      else res.notes.push(`expected one running container of ${TP_SVC}, found ${ids.length}`);
      // The agent's log store creates <data-dir>/logs/<task>/meta.json at the task's first append.
      try {
        const logs = join(dir, AGENT.name, 'logs');
        const t = readdirSync(logs).find((d) => d.startsWith(`${TP_SVC}.`));
        if (t) res.firstAppendWallMs = statSync(join(logs, t, 'meta.json')).mtimeMs;
      } catch (e) {
        log(`note: cannot stat the agent's log store: ${(e as Error).message}`);
      }
      const labelled = (await docker(['ps', '-q', '--filter', `label=${BENCH_LABEL}`, '--filter', `label=${clusterLabel}`])).stdout.trim();
      if (!labelled) log(`warning: Baton's container does not carry ${BENCH_LABEL}`);
      const store = (await api.tasks({ fieldSelector: { 'spec.serviceName': TP_SVC } })).items.map((t) => `${t.metadata.name}@${t.spec.nodeName} ${t.spec.desiredState}/${t.status.state}`);
      log(`baton: tasks ${store.join(', ')}`);
      for (let i = 0; i < o.reads; i++) {
        checkInterrupted();
        res.full.push(await readAll(`baton logs (full read ${i + 1}/${o.reads})`, process.execPath, [BATON_BIN, 'logs', TP_SVC], { env: cliEnv, prefixed: true, follow: false, opts: o }));
        (res.unmerged ??= []).push(await readAll(`baton logs --no-merge (full read ${i + 1}/${o.reads})`, process.execPath, [BATON_BIN, 'logs', '--no-merge', TP_SVC], { env: cliEnv, prefixed: true, follow: false, opts: o }));
      }
      log(`baton: removing stack ${TP_STACK}`);
      await api.removeStack(TP_STACK).catch((e) => log(`warning: remove stack ${TP_STACK}: ${(e as Error).message}`));
      await waitContainersGone(`${TP_SVC} containers gone`, [clusterLabel, `baton.service=${TP_SVC}`]);
    }

    // ------------------------------------------------ 2. latency
    checkInterrupted();
    res.latency = await batonLatency(o, api, tick, dir, cliEnv, baton, agentAlive);
    ok = true;
    return res;
  } catch (e) {
    res.failed = failure('baton', e);
    return res;
  } finally {
    await cluster.stop(ok);
  }
}

async function batonLatency(o: Opts, api: ApiClient, tick: string, dir: string, cliEnv: Record<string, string>, baton: (args: string[]) => Promise<{ code: number; stdout: string }>, agentAlive: () => void): Promise<LatencyResult> {
  log(`baton: apply ${LAT_SVC} (a line every ${TICK_MS} ms)`);
  await api.apply(LAT_STACK, { services: composeServices(LAT_STACK, tickScript(tick), dir), prune: false, dryRun: false });
  await waitFor(
    `${LAT_SVC} writing (baton logs --tail 1 shows a tick)`,
    async () => {
      agentAlive();
      const r = await baton(['logs', LAT_SVC, '--tail', '1']);
      return r.code === 0 && /tick \d+/.test(r.stdout) ? true : undefined;
    },
    { timeoutMs: 60_000, everyMs: 250 },
  );
  return latency('baton logs -f -t --tail 0', process.execPath, [BATON_BIN, 'logs', '-f', '-t', LAT_SVC, '--tail', '0'], { env: cliEnv, opts: o });
}

// ---------------------------------------------------------------- docker run + docker logs

async function benchDocker(o: Opts, tick: string, batonWriter: Writer | undefined): Promise<SystemResult> {
  const res: SystemResult = { name: 'docker', full: [], notes: [] };
  const labels = ['--label', BENCH_LABEL, '--label', `baton.bench.run=${benchId}`, '--label', 'baton.bench.peer=docker'];
  const runLabels = [BENCH_LABEL, `baton.bench.run=${benchId}`, 'baton.bench.peer=docker'];
  const undo = onCleanup('docker peer containers', async () => void (await removeByLabel(runLabels)));
  try {
    // 1. throughput: create and start, then follow (a follower reads from the first line on).
    const name = `baton-bench-logs-flood-${process.pid}`;
    const deployAt = now();
    const id = (await dockerOk(['create', '--name', name, '--init', '--network', 'host', ...labels, IMAGE, 'sh', '-c', floodScript(o)])).trim();
    await dockerOk(['start', id]);
    // `docker logs -f` of a container not yet started returns at once: follow right after the start (from its first line on).
    res.follow = await readAll('docker logs -f (from deploy)', DOCKER, ['logs', '-f', id], { prefixed: false, follow: true, opts: o, deployAt });
    const lastText = `line ${o.lines - 1} `;
    await waitFor(`docker logs --tail 1 showing line ${o.lines - 1}`, async () => ((await docker(['logs', '--tail', '1', id])).stdout.includes(lastText) ? true : undefined), { timeoutMs: o.stallMs, everyMs: 500 }).then(
      () => (res.readable = true),
      (e) => res.notes.push((e as Error).message),
    );
    res.writer = await writerTimes(id, () => firstLineTs(DOCKER, ['logs', '-t', id]));
    for (let i = 0; i < o.reads; i++) {
      checkInterrupted();
      res.full.push(await readAll(`docker logs (full read ${i + 1}/${o.reads})`, DOCKER, ['logs', id], { prefixed: false, follow: false, opts: o }));
    }
    await removeByLabel(runLabels);

    // 1b. The engine path Baton's agent takes: `docker logs -f` of a container with Baton's log options.
    if (batonWriter?.logType && Object.keys(batonWriter.logOpts).length && !o.skipRotationCheck) {
      checkInterrupted();
      res.rotationOpts = batonWriter.logConfig;
      const lo = Object.entries(batonWriter.logOpts).flatMap(([k, v]) => ['--log-opt', `${k}=${v}`]);
      const rid = (await dockerOk(['create', '--name', `baton-bench-logs-rot-${process.pid}`, '--init', '--network', 'host', '--log-driver', batonWriter.logType, ...lo, ...labels, IMAGE, 'sh', '-c', floodScript(o)])).trim();
      const rAt = now();
      await dockerOk(['start', rid]);
      res.rotationFollow = await readAll(`docker logs -f with Baton's log options (${batonWriter.logConfig})`, DOCKER, ['logs', '-f', rid], { prefixed: false, follow: true, opts: o, deployAt: rAt });
      await removeByLabel(runLabels);
    }

    // 2. latency
    checkInterrupted();
    const tid = (await dockerOk(['run', '-d', '--name', `baton-bench-logs-tick-${process.pid}`, '--init', '--network', 'host', ...labels, IMAGE, 'sh', '-c', tickScript(tick)])).trim();
    await waitFor('the docker tick container writing', async () => (/tick \d+/.test((await docker(['logs', '--tail', '1', tid])).stdout) ? true : undefined), { timeoutMs: 60_000, everyMs: 250 });
    res.latency = await latency('docker logs -f -t --tail 0', DOCKER, ['logs', '-f', '-t', '--tail', '0', tid], { opts: o });
    return res;
  } catch (e) {
    res.failed = failure('docker peer', e);
    return res;
  } finally {
    await removeByLabel(runLabels).catch(() => undefined);
    undo();
  }
}

// ---------------------------------------------------------------- Swarm

async function benchSwarm(o: Opts, tick: string): Promise<SystemResult> {
  const res: SystemResult = { name: 'swarm', full: [], notes: [] };
  const swarm = await throwAwaySwarm({ label: BENCH_LABEL, services: [SWARM_TP_SVC, SWARM_LAT_SVC] });
  const create = (svc: string, script: string) => ['service', 'create', '--detach', '--name', svc, '--replicas', '1', '--init', '--network', 'host', '--no-resolve-image', '--label', BENCH_LABEL, '--container-label', BENCH_LABEL, '--container-label', `baton.bench.run=${benchId}`, IMAGE, 'sh', '-c', script];
  const containerOf = async (svc: string) => (await dockerOk(['ps', '-q', '--no-trunc', '--filter', `label=${BENCH_LABEL}`, '--filter', `label=com.docker.swarm.service.name=${svc}`])).split('\n').filter(Boolean);
  try {
    if (swarm.unavailable) {
      res.unavailable = swarm.unavailable;
      return res;
    }

    // 1. throughput: create, then follow at once.
    const args = create(SWARM_TP_SVC, floodScript(o));
    log(`docker ${args.slice(0, -1).join(' ')} '<flood script>'`);
    const deployAt = now();
    const cr = await docker(args, { timeoutMs: 120_000 });
    if (cr.code !== 0) {
      res.unavailable = `docker service create failed: ${oneLine(cr.stderr || cr.stdout)}`;
      log(`swarm: ${res.unavailable}`);
      return res;
    }
    res.follow = await readAll('docker service logs -f (from deploy)', DOCKER, ['service', 'logs', '-f', SWARM_TP_SVC], { prefixed: true, follow: true, opts: o, deployAt });
    const lastText = `line ${o.lines - 1} `;
    await waitFor(`docker service logs --tail 1 showing line ${o.lines - 1}`, async () => ((await docker(['service', 'logs', '--tail', '1', SWARM_TP_SVC], { timeoutMs: 60_000 })).stdout.includes(lastText) ? true : undefined), {
      timeoutMs: o.stallMs,
      everyMs: 500,
    }).then(
      () => (res.readable = true),
      (e) => res.notes.push(`docker service logs --tail 1 never showed the last line: ${(e as Error).message}`),
    );
    const ids = await containerOf(SWARM_TP_SVC);
    if (ids.length === 1) res.writer = await writerTimes(ids[0]!, () => firstLineTs(DOCKER, ['service', 'logs', '-t', SWARM_TP_SVC]));
    else res.notes.push(`expected one running container of ${SWARM_TP_SVC}, found ${ids.length}`);
    for (let i = 0; i < o.reads; i++) {
      checkInterrupted();
      res.full.push(await readAll(`docker service logs (full read ${i + 1}/${o.reads})`, DOCKER, ['service', 'logs', SWARM_TP_SVC], { prefixed: true, follow: false, opts: o }));
    }
    await swarm.removeService(SWARM_TP_SVC);

    // 2. latency
    checkInterrupted();
    const lr = await docker(create(SWARM_LAT_SVC, tickScript(tick)), { timeoutMs: 120_000 });
    if (lr.code !== 0) throw new Error(`docker service create ${SWARM_LAT_SVC}: ${oneLine(lr.stderr || lr.stdout)}`);
    await waitFor(`${SWARM_LAT_SVC} writing`, async () => {
      const c = await containerOf(SWARM_LAT_SVC);
      return c.length === 1 && /tick \d+/.test((await docker(['logs', '--tail', '1', c[0]!])).stdout) ? true : undefined;
    }, { timeoutMs: 120_000, everyMs: 250 });
    res.latency = await latency('docker service logs -f -t --tail 0', DOCKER, ['service', 'logs', '-f', '-t', '--tail', '0', SWARM_LAT_SVC], { opts: o });
    return res;
  } catch (e) {
    res.failed = failure('swarm', e);
    return res;
  } finally {
    await swarm.close();
  }
}

// ---------------------------------------------------------------- report

/** A rate in lines/s and whether every read behind it was complete and in order. */
interface Rate {
  v: number;
  valid: boolean;
}

interface Figures {
  full: Rate;
  fullAll: Rate[];
  follow: Rate;
  followWall: Rate;
}

const readValid = (x: ReadResult) => !x.failed && x.check.ok();

/** figures: lines/s of each read; an INVALID read counts the lines it did receive (and is marked). */
function figures(r: SystemResult | undefined): Figures {
  const rate = (lines: number, ms: number) => (Number.isFinite(ms) && ms > 0 && lines > 0 ? lines / (ms / 1000) : NaN);
  const fullAll = (r?.full ?? []).map((x) => ({ v: rate(x.check.received, x.spawnToEndMs), valid: readValid(x) }));
  const f = r?.follow;
  const fv = f ? readValid(f) : false;
  return {
    full: { v: median(fullAll.map((x) => x.v).filter(Number.isFinite)), valid: fullAll.length > 0 && fullAll.every((x) => x.valid) },
    fullAll,
    follow: { v: rate(f?.linesTimed ?? 0, f?.firstToLastMs ?? NaN), valid: fv },
    followWall: { v: rate(f?.linesTimed ?? 0, f?.deployToLastMs ?? NaN), valid: fv },
  };
}

function invalidReads(r: SystemResult | undefined): ReadResult[] {
  return [...(r?.full ?? []), ...(r?.follow ? [r.follow] : [])].filter((x) => x.failed || !x.check.ok());
}

function report(o: Opts, machine: Record<string, string>, tick: string, sys: { baton: SystemResult; docker?: SystemResult; swarm?: SystemResult }, tookMs: number): string[] {
  const out: string[] = [];
  const n = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a');
  const bytes = expectedBytes(o);
  const rows: [string, SystemResult | undefined, string][] = [
    ['baton', sys.baton, ''],
    ['docker', sys.docker, o.skipDocker ? 'skipped (--skip-docker)' : ''],
    ['swarm', sys.swarm, o.skipSwarm ? 'skipped (--skip-swarm)' : ''],
  ];
  const fig = Object.fromEntries(rows.map(([k, r]) => [k, figures(r)])) as Record<string, Figures>;
  /** measured: whether system k has figures; if not (skipped by a flag, or unavailable), its row says why. */
  const measured = (k: string, r: SystemResult | undefined, skip: string): r is SystemResult => {
    if (r && !r.unavailable) return true;
    out.push(`${k.padEnd(7)} ${r ? r.unavailable : skip}`);
    return false;
  };
  const nr = (x: Rate) => (Number.isFinite(x.v) ? `${n(x.v)}${x.valid ? '' : '*'}` : 'n/a');
  const rr = (a: Rate, b: Rate) => `${ratio(a.v, b.v)}${Number.isFinite(a.v) && Number.isFinite(b.v) && (!a.valid || !b.valid) ? '*' : ''}`;
  out.push(...reportHeader('logs', benchId, machine, tookMs));
  out.push(`workload ${o.lines.toLocaleString('en-US')} lines "line <i> <${o.pad} x>" = ${mb(bytes)} MB of text, one busybox echo per line, then sleep; image ${IMAGE}; init, host network`);
  out.push('');
  out.push('## 1. Throughput, container → CLI (lines/s; every line checked for count, order and content)');
  const cmds: Record<string, [string, string]> = {
    baton: ['baton logs <svc>', 'baton logs -f <svc>'],
    docker: ['docker logs <id>', 'docker logs -f <id>'],
    swarm: ['docker service logs <svc>', 'docker service logs -f <svc>'],
  };
  out.push(`${'system'.padEnd(7)} ${'full read'.padStart(11)} ${'MB/s'.padStart(6)} ${'follow 1st→last'.padStart(16)} ${'follow from deploy'.padStart(19)} ${'writer_s'.padStart(9)}  check`);
  for (const [k, r, skip] of rows) {
    if (!measured(k, r, skip)) continue;
    const f = fig[k]!;
    const bad = invalidReads(r);
    const check = r.failed ? `FAILED: ${r.failed}` : bad.length ? `INVALID (${bad.length} of ${r.full.length + (r.follow ? 1 : 0)} reads; details below)` : `ok (${r.full.length} full reads + the follower, ${o.lines} lines each)`;
    const fullMBs = Number.isFinite(f.full.v) ? ((f.full.v * bytes) / o.lines / 1e6).toFixed(1) : 'n/a';
    out.push(`${k.padEnd(7)} ${nr(f.full).padStart(11)} ${fullMBs.padStart(6)} ${nr(f.follow).padStart(16)} ${nr(f.followWall).padStart(19)} ${secs(r.writer?.spanMs ?? NaN).padStart(9)}  ${check}`);
  }
  out.push('  commands: ' + rows.filter(([, r]) => r && !r.unavailable).map(([k]) => `${k}: \`${cmds[k]![0]}\` / \`${cmds[k]![1]}\``).join('; '));
  for (const [k, r] of rows) {
    if (!r || r.unavailable) continue;
    const parts: string[] = [];
    if (fig[k]!.fullAll.length > 1) parts.push(`full reads ${fig[k]!.fullAll.map(nr).join(', ')} lines/s (median above)`);
    if (r.full.length) parts.push(`full read ${secs(median(r.full.map((x) => x.spawnToEndMs)))} s (process start → exit)`);
    if (r.writer) parts.push(`engine log config ${r.writer.logConfig}`);
    if (r.follow && Number.isFinite(r.follow.lastAt)) {
      parts.push(`follower: first line ${secs(r.follow.firstAt - (r.follow.lastAt - r.follow.deployToLastMs))} s after the deploy call, last ${secs(r.follow.deployToLastMs)} s`);
      if (r.writer && r.firstAppendWallMs !== undefined) parts.push(`the agent's first append ${secs(r.firstAppendWallMs - r.writer.firstTsMs)} s after the engine got line 0`);
      if (r.writer) parts.push(`first line printed ${secs(r.follow.firstWallMs - r.writer.firstTsMs)} s${r.follow.sawLast ? ` and last line ${secs(r.follow.lastWallMs - r.writer.lastTsMs)} s` : ''} after the engine got it`);
    }
    // Each distinct verdict once (identical full reads of one store say the same), with its first anomalies.
    const seen = new Set<string>();
    for (const x of invalidReads(r)) {
      const v = `${x.failed ? `${x.failed}; ` : ''}${x.check.verdict()}`;
      const key = v + x.check.anomalies.slice(0, 3).join('|');
      if (seen.has(key)) {
        parts.push(`${x.what}: the same`);
        continue;
      }
      seen.add(key);
      parts.push(`${x.what}: ${v}; first anomalies: ${x.check.anomalies.slice(0, 3).join(' / ')}`);
    }
    for (const x of [...r.full, ...(r.follow ? [r.follow] : [])]) if (x.stderr) parts.push(`${x.what} stderr: ${oneLine(x.stderr).slice(0, 200)}`);
    for (const x of [...r.full, ...(r.follow ? [r.follow] : [])]) if (x.check.prefixes.size > 1) parts.push(`${x.what}: several prefixes: ${[...x.check.prefixes].join(', ')}`);
    parts.push(...r.notes);
    out.push(`  ${k}:`, ...parts.map((p) => `    ${p}`));
  }
  const b = fig.baton!;
  const um = (sys.baton.unmerged ?? []).map((x) => (x.spawnToEndMs > 0 ? x.check.received / (x.spawnToEndMs / 1000) : NaN));
  if (um.length) out.push(`baton logs merged in time order vs --no-merge (grouped, as before the merge): full read ${nr(b.full)} vs ${median(um).toFixed(0)} lines/s = ${(b.full.v / median(um)).toFixed(2)}× (goal ≥ 0.8×)${sys.baton.unmerged!.every(readValid) ? '' : ' (an unmerged read was INVALID)'}`);
  for (const peer of ['docker', 'swarm'] as const) {
    const p = fig[peer]!;
    const r = sys[peer];
    if (!r || r.unavailable) continue;
    out.push(`ratio baton/${peer} (lines/s, >1 = Baton faster): full read ${rr(b.full, p.full)}  follow 1st→last ${rr(b.follow, p.follow)}  follow from deploy ${rr(b.followWall, p.followWall)}`);
  }
  const rot = sys.docker?.rotationFollow;
  if (rot) {
    const rf = figures({ name: 'rot', full: [], follow: rot, notes: [] });
    out.push(`engine check: \`docker logs -f\` of the same flood in a plain container with Baton's log options (${sys.docker!.rotationOpts}): ${rot.failed ? `${rot.failed}; ` : ''}${rot.check.verdict()}, ${nr(rf.follow)} lines/s 1st→last`);
    for (const a of rot.check.anomalies.slice(0, 3)) out.push(`  ${a}`);
  }
  if (Object.values(fig).some((f) => [f.full, f.follow].some((x) => Number.isFinite(x.v) && !x.valid))) out.push('  * an INVALID read (lines lost, repeated or reordered, or it stalled): the rate of the lines it did receive; not a valid comparison.');
  out.push(`  writer_s: container start → the engine's timestamp of the last line (the producer's own pace; a follower cannot beat it).`);

  out.push('');
  out.push(`## 2. Latency, container write → follower output (\`-f -t --tail 0\`, a line every ${TICK_MS} ms via \`${tick}\`; ms; nearest rank)`);
  out.push(`${'system'.padEnd(7)} ${'samples'.padStart(7)} ${'p50_ms'.padStart(8)} ${'p99_ms'.padStart(8)} ${'max_ms'.padStart(8)} ${'lost'.padStart(5)}  status`);
  const lat: Record<string, { p50: number; p99: number; max: number }> = {};
  for (const [k, r, skip] of rows) {
    if (!measured(k, r, skip)) continue;
    const l = r.latency;
    const xs = l?.samples ?? [];
    const s = { p50: percentile(xs, 50), p99: percentile(xs, 99), max: xs.length ? Math.max(...xs) : NaN };
    lat[k] = s;
    const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1).replace(/^-0\.0$/, '0.0') : 'n/a').padStart(8);
    const status = !l ? `FAILED: ${r.failed ?? 'not measured'}` : l.failed ? `FAILED: ${l.failed}` : l.gaps || l.repeats ? `INVALID: ${l.gaps} ticks missing, ${l.repeats} repeated` : `ok (ticks ${l.firstTick}..${l.lastTick} in order)`;
    out.push(`${k.padEnd(7)} ${String(xs.length).padStart(7)} ${f1(s.p50)} ${f1(s.p99)} ${f1(s.max)} ${String(l ? l.gaps : '-').padStart(5)}  ${status}`);
  }
  for (const peer of ['docker', 'swarm'] as const) if (lat[peer] && lat.baton) out.push(`ratio baton/${peer} (latency, <1 = Baton faster): p50 ${ratio(lat.baton.p50, lat[peer].p50)}  p99 ${ratio(lat.baton.p99, lat[peer].p99)}`);
  const bl = sys.baton.latency;
  const goal = bl && !bl.failed && bl.samples.length ? (lat.baton!.p99 <= GOAL_P99_MS ? 'PASS' : 'FAIL') : 'FAIL (not measured)';
  out.push(`Goal Baton p99 <= ${GOAL_P99_MS / 1000} s: ${goal}${lat.baton && Number.isFinite(lat.baton.p99) ? ` (p99 ${lat.baton.p99.toFixed(1)} ms)` : ''}`);
  out.push('');
  out.push('## How this was measured');
  out.push(`- Baton: \`baton server\` + one \`baton agent\` (${AGENT.address}, default --log-max-size 100m), services applied through the API, the CLI run as`);
  out.push(`  \`node bin/baton.js logs ...\`. Docker: \`docker create/start --init --network host\` (engine-default json-file, no rotation). Swarm: a`);
  out.push('  throw-away single-node swarm, `docker service create --init --network host`. The systems run one after another.');
  out.push(`- Full read: the median of ${o.reads} non-following reads of the whole output, timed from the CLI process's start to its exit,`);
  out.push('  once a `--tail 1` read shows the last line. Follow: the follower starts right after the deploy call (Docker: after `docker');
  out.push('  start`, reading from the first line); "1st→last" is lines / (last − first line received), "from deploy" is lines / (last line −');
  out.push(`  the deploy call: apply, docker create, docker service create); a follower reads on ${FOLLOW_GRACE_MS / 1000} s after the last line so repeats right after it`);
  out.push('  are counted too. A read with no new line for --stall-s is stopped and INVALID.');
  out.push('- Every line read is compared with the expected `line <i> <pad>` in order (after the `task@node | ` prefix); any missing, repeated,');
  out.push('  reordered or altered line makes the read INVALID and the bench exit 1.');
  out.push("- Engine check: the Docker peer's flood again in a container with Baton's container log options, read with `docker logs -f`.");
  out.push(`- Latency: arrival wall clock on the follower's stdout − the timestamp printed with the line (the engine's receive time; the arrival`);
  out.push(`  clock is Date.now(), 1 ms resolution, so a few samples can be slightly negative); the first`);
  out.push(`  ${o.latencyWarmup} lines are not counted.`);
  return out;
}

// ---------------------------------------------------------------- main

/** The machine, and what a CLI costs before it reads anything. */
async function machineAndCli(): Promise<Record<string, string>> {
  const machine = await machineInfo();
  // What a CLI costs before it reads anything (part of every full read and of a follower's first line): the median of 3 starts.
  const startMs = async (file: string, args: string[]) => {
    const xs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = now();
      await run(file, args);
      xs.push(now() - t);
    }
    return median(xs);
  };
  const batonStart = await startMs(process.execPath, [BATON_BIN, '--version']);
  const dockerStart = await startMs(DOCKER, ['--version']);
  return { ...machine, 'cli_start_s(baton --version / docker --version)': `${secs(batonStart)}/${secs(dockerStart)}` };
}

async function main(): Promise<number> {
  const o = parseOpts();
  const machine = await machineAndCli();
  log(`bench id ${benchId}; lines=${o.lines} pad=${o.pad} (${mb(expectedBytes(o))} MB) reads=${o.reads} latency-samples=${o.latencySamples}; ${keyValues(machine)}`);
  await requireImage(IMAGE);
  const tick = await tickSleep();
  const t0 = now();
  const sys: { baton: SystemResult; docker?: SystemResult; swarm?: SystemResult } = { baton: { name: 'baton', full: [], notes: [] } };
  try {
    sys.baton = await benchBaton(o, tick);
    checkInterrupted();
    if (!o.skipDocker) sys.docker = await benchDocker(o, tick, sys.baton.writer);
    checkInterrupted();
    if (!o.skipSwarm) sys.swarm = await benchSwarm(o, tick);
  } finally {
    await cleanUpAll([BENCH_LABEL]);
  }
  const took = now() - t0;
  log(`bench took ${secs(took)} s`);
  process.stdout.write(report(o, machine, tick, sys, took).join('\n') + '\n');
  const all = [sys.baton, sys.docker, sys.swarm].filter((r): r is SystemResult => !!r && !r.unavailable);
  const bad = all.filter((r) => r.failed || invalidReads(r).length || r.latency?.failed || r.latency?.gaps || r.latency?.repeats);
  if (bad.length) log(`FAILED or INVALID: ${bad.map((r) => r.name).join(', ')} (see the summary)`);
  return bad.length ? 1 : 0;
}

runMain(main, [BENCH_LABEL]);
