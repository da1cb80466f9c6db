/**
 * bench:autoscale — Baton's autoscaler on this machine, default timings
 * (usage buckets and autoscaler sync every 2 s):
 *
 *   (a) reaction: a CPU-bound httpd+CGI service (`x-baton.autoscale: {min: 1,
 *       max: 3, cpu: 50%, scale_down: {stabilization: 10s}}`, 0.1 CPU
 *       reserved) gets a load step (3 concurrent clients looping GET
 *       /cgi-bin/burn through the mesh, a new connection each); timed from
 *       the load start to the first increase of spec.replicas (decision) and
 *       to all 3 tasks live (desiredState and state running; API polled every
 *       100 ms). Then the load stops and the time until spec.replicas is back
 *       to 1 is timed (includes the 10 s stabilization window).
 *   (b) cold start: a service with `autoscale: {min: 0, max: 2, rps: 50,
 *       scale_down: {stabilization: 2s}}` at zero replicas and no container
 *       running; one HTTP GET on a new connection, timed to the first byte
 *       (the response's headers) and to the full body.
 *
 *   npm run bench:autoscale -- [--rounds 1] [--cold-rounds 3] [--deadline-s 120]
 *
 * A server and 2 agents (127.0.0.2, 127.0.0.3) with BATON_HOME in a temp dir.
 * Containers carry `baton.bench=autoscale`; everything is removed at the end,
 * also on failure or Ctrl-C. Only 127.0.0.0/8 is contacted. Progress goes to
 * stderr, results to stdout.
 */
import http from 'node:http';
import net from 'node:net';
import { serviceKind } from '../src/api/kinds.js';
import type { Service, Task } from '../src/api/types.js';
import type { ApiClient } from '../src/api/client.js';
import { benchArgs, BenchCluster, checkInterrupted, cleanUpAll, cleanUpOnSignals, containerIds, failure, ignoreBatonTimings, intFlag, keyValues, log, machineInfo, median, now, reportHeader, requireImage, runMain, secs, sleep, stackServices, waitFor } from './lib.js';

const IMAGE = 'baton-test/busybox:latest';
const LABEL = 'baton.bench';
const LABEL_VALUE = 'autoscale';
const BENCH_LABEL = `${LABEL}=${LABEL_VALUE}`;
const STACK_A = 'benchas';
const SVC_A = `${STACK_A}_api`;
const STACK_B = 'benchzero';
const SVC_B = `${STACK_B}_web`;
const AGENTS = [
  { name: 'node2', address: '127.0.0.2', portRange: '27600-27699' },
  { name: 'node3', address: '127.0.0.3', portRange: '27700-27799' },
];
const GOAL_REACTION_MS = 10_000;
const GOAL_COLD_MS = 1_500;
const MAX = 3;
const SCALE_DOWN_S = 10;

interface Opts {
  rounds: number;
  coldRounds: number;
  deadlineMs: number;
}

const USAGE = 'usage: npm run bench:autoscale -- [--rounds 1] [--cold-rounds 3] [--deadline-s 120]\n';

function parseOpts(): Opts {
  const v = benchArgs(USAGE, { rounds: '1', 'cold-rounds': '3', 'deadline-s': '120' });
  return { rounds: intFlag('rounds', v.rounds, 1), coldRounds: intFlag('cold-rounds', v['cold-rounds'], 1), deadlineMs: intFlag('deadline-s', v['deadline-s'], 10) * 1000 };
}

const benchId = `autoscale-${Date.now().toString(36)}-${process.pid}`;
cleanUpOnSignals([BENCH_LABEL]);

// ---------------------------------------------------------------- compose

const burner = (port: number) => `services:
  api:
    image: ${IMAGE}
    command: ["sh", "-c", "mkdir -p /tmp/w/cgi-bin; echo hi > /tmp/w/index.html; printf '#!/bin/sh\\\\ni=0; while [ $$i -lt 30000 ]; do i=$$((i+1)); done\\\\necho Content-Type: text/plain\\\\necho\\\\necho burnt\\\\n' > /tmp/w/cgi-bin/burn; chmod +x /tmp/w/cgi-bin/burn; exec httpd -f -p $$PORT -h /tmp/w"]
    ports: ["${port}:80"]
    labels:
      ${LABEL}: "${LABEL_VALUE}"
    deploy:
      replicas: 1
      resources: {reservations: {cpus: "0.1"}}
    x-baton:
      autoscale: {min: 1, max: ${MAX}, cpu: 50%, scale_down: {stabilization: ${SCALE_DOWN_S}s}}
`;

const zero = (port: number) => `services:
  web:
    image: ${IMAGE}
    command: ["sh", "-c", "echo awake > /tmp/index.html; exec httpd -f -p $$PORT -h /tmp"]
    ports: ["${port}:80"]
    labels:
      ${LABEL}: "${LABEL_VALUE}"
    x-baton:
      autoscale: {min: 0, max: 2, rps: 50, scale_down: {stabilization: 2s}}
`;

// ---------------------------------------------------------------- helpers

/** freePort asks the kernel for a port free on both agent addresses. */
async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const p = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.2', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const freeOn3 = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(p, '127.0.0.3', () => s.close(() => resolve(true)));
    });
    if (freeOn3 && (p < 27600 || p > 27799)) return p;
  }
  throw new Error('no free port found');
}

interface GetResult {
  status: number;
  body: string;
  firstByteMs: number;
  totalMs: number;
}

/** get does one GET on a new connection (busybox CGI sends LF-only headers: insecureHTTPParser). */
function get(url: string, timeoutMs: number): Promise<GetResult> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    let firstByteMs = NaN;
    const req = http.get(url, { agent: false, insecureHTTPParser: true, timeout: timeoutMs }, (res) => {
      firstByteMs = now() - t0;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, firstByteMs, totalMs: now() - t0 }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

const live = (ts: Task[]) => ts.filter((t) => t.spec.desiredState === 'running' && t.status.state === 'running');

function svcApi(api: ApiClient, name: string) {
  return {
    get: () => api.get<Service>(serviceKind, name),
    tasks: async () => (await api.tasks({ fieldSelector: { 'spec.serviceName': name } })).items,
    scaleEvents: async () => (await api.events({ service: name })).items.filter((e: { reason: string }) => e.reason === 'ScaledUp' || e.reason === 'ScaledDown').map((e: { reason: string; message: string }) => `${e.reason}: ${e.message}`),
  };
}

// ---------------------------------------------------------------- (a) reaction

interface ReactionRound {
  decisionMs: number;
  readyMs: number;
  scaleDownMs: number;
  requests: number;
  errors: number;
  steps: string[];
  events: string[];
  failed?: string;
}

async function reaction(api: ApiClient, clusterId: string, dir: string, o: Opts, rounds: ReactionRound[]): Promise<void> {
  const port = await freePort();
  const s = svcApi(api, SVC_A);
  log(`(a) apply ${STACK_A} (port ${port})`);
  await api.apply(STACK_A, { services: stackServices(burner(port), STACK_A, dir), prune: false, dryRun: false });
  const url = `http://127.0.0.2:${port}/cgi-bin/burn`;
  await waitFor(`${SVC_A} answers on ${url}`, async () => ((await get(url, 5000)).body === 'burnt\n' ? true : undefined), { timeoutMs: 60_000, everyMs: 250 });
  log(`(a) ${SVC_A} answers`);
  for (let r = 1; r <= o.rounds; r++) {
    checkInterrupted();
    const res: ReactionRound = { decisionMs: NaN, readyMs: NaN, scaleDownMs: NaN, requests: 0, errors: 0, steps: [], events: [] };
    rounds.push(res);
    try {
      // Start each round from 1 replica, 1 live task.
      await waitFor(`${SVC_A} at 1 replica`, async () => ((await s.get()).spec.replicas === 1 && live(await s.tasks()).length === 1 ? true : undefined), { timeoutMs: o.deadlineMs, everyMs: 250 });
      let stop = false;
      const t0 = now();
      const deadline = t0 + o.deadlineMs;
      const load = Array.from({ length: 3 }, async () => {
        while (!stop && now() < deadline) {
          try {
            await get(url, 20_000);
            res.requests++;
          } catch {
            res.errors++;
            await sleep(50);
          }
        }
      });
      log(`(a) round ${r}: load started (3 clients on ${url})`);
      try {
        let lastReplicas = 1;
        await waitFor(
          `${SVC_A} at ${MAX} live tasks`,
          async () => {
            const [svc, tasks] = await Promise.all([s.get(), s.tasks()]);
            const t = now() - t0;
            const n = live(tasks).length;
            if (svc.spec.replicas !== lastReplicas) {
              res.steps.push(`replicas ${lastReplicas}→${svc.spec.replicas} @${secs(t)}s`);
              if (svc.spec.replicas > 1 && !Number.isFinite(res.decisionMs)) res.decisionMs = t;
              lastReplicas = svc.spec.replicas;
            }
            if (n === MAX && svc.spec.replicas === MAX) {
              res.readyMs = t;
              return true;
            }
            return undefined;
          },
          { timeoutMs: o.deadlineMs, everyMs: 100 },
        );
        log(`(a) round ${r}: decision after ${secs(res.decisionMs)} s, ${MAX} live after ${secs(res.readyMs)} s`);
      } finally {
        stop = true;
        await Promise.all(load);
      }
      const t1 = now();
      log(`(a) round ${r}: load stopped (${res.requests} requests, ${res.errors} errors); waiting for scale-down to 1`);
      await waitFor(`${SVC_A} back to 1 replica`, async () => ((await s.get()).spec.replicas === 1 ? true : undefined), { timeoutMs: o.deadlineMs, everyMs: 100 });
      res.scaleDownMs = now() - t1;
      log(`(a) round ${r}: back to 1 replica ${secs(res.scaleDownMs)} s after the load stopped`);
      res.events = await s.scaleEvents().catch(() => []);
    } catch (e) {
      res.failed = failure(`(a) round ${r}`, e);
      res.events = await s.scaleEvents().catch(() => []);
      break;
    }
  }
  await api.removeStack(STACK_A).catch((e) => log(`warning: remove ${STACK_A}: ${(e as Error).message}`));
}

// ---------------------------------------------------------------- (b) cold start

interface ColdRound {
  firstByteMs: number;
  totalMs: number;
  zeroWaitMs: number;
  failed?: string;
}

async function coldStart(api: ApiClient, clusterId: string, dir: string, o: Opts, rounds: ColdRound[]): Promise<string[]> {
  const port = await freePort();
  const s = svcApi(api, SVC_B);
  log(`(b) apply ${STACK_B} (port ${port})`);
  await api.apply(STACK_B, { services: stackServices(zero(port), STACK_B, dir), prune: false, dryRun: false });
  const labels = [`baton.cluster=${clusterId}`, BENCH_LABEL, `baton.service=${SVC_B}`];
  const url = `http://127.0.0.3:${port}/`;
  for (let r = 1; r <= o.coldRounds; r++) {
    checkInterrupted();
    const res: ColdRound = { firstByteMs: NaN, totalMs: NaN, zeroWaitMs: NaN };
    rounds.push(res);
    try {
      const z0 = now();
      await waitFor(`${SVC_B} at zero (replicas 0, no container running)`, async () => ((await s.get()).spec.replicas === 0 && (await containerIds(labels, false)).length === 0 ? true : undefined), { timeoutMs: o.deadlineMs, everyMs: 250 });
      res.zeroWaitMs = now() - z0;
      await sleep(500);
      log(`(b) round ${r}: at zero (waited ${secs(res.zeroWaitMs)} s); GET ${url}`);
      const g = await get(url, 30_000);
      if (g.status !== 200 || g.body !== 'awake\n') throw new Error(`GET ${url}: ${g.status} ${JSON.stringify(g.body.slice(0, 200))}`);
      res.firstByteMs = g.firstByteMs;
      res.totalMs = g.totalMs;
      log(`(b) round ${r}: first byte ${secs(g.firstByteMs)} s, full body ${secs(g.totalMs)} s`);
    } catch (e) {
      res.failed = failure(`(b) round ${r}`, e);
      break;
    }
  }
  const events = await s.scaleEvents().catch(() => []);
  await api.removeStack(STACK_B).catch((e) => log(`warning: remove ${STACK_B}: ${(e as Error).message}`));
  return events;
}

// ---------------------------------------------------------------- report

function report(o: Opts, machine: Record<string, string>, a: ReactionRound[], aFailed: string | undefined, b: ColdRound[], bFailed: string | undefined, bEvents: string[], tookMs: number): void {
  const out: string[] = [];
  const okA = a.filter((x) => !x.failed && Number.isFinite(x.readyMs));
  const okB = b.filter((x) => !x.failed && Number.isFinite(x.firstByteMs));
  const max = (xs: number[]) => (xs.length ? Math.max(...xs) : NaN);
  const pf = (v: number, goal: number) => (Number.isFinite(v) ? (v <= goal ? 'PASS' : 'FAIL') : 'FAIL (no figure)');
  out.push(...reportHeader('autoscale', benchId, machine, tookMs));
  out.push(`baton    server + ${AGENTS.length} agents (${AGENTS.map((x) => x.address).join(', ')}), default timings (usage bucket 2 s, autoscaler sync 2 s)`);
  out.push('');
  out.push(`## (a) reaction to a load step: ${IMAGE} httpd + CPU-burning CGI, 0.1 CPU reserved, autoscale {min 1, max ${MAX}, cpu 50%, scale_down stabilization ${SCALE_DOWN_S}s}`);
  out.push(`   load: 3 concurrent clients looping GET /cgi-bin/burn via the mesh (127.0.0.2), new connection each; ${o.rounds} round(s)`);
  const dec = okA.map((x) => x.decisionMs).filter(Number.isFinite);
  const rdy = okA.map((x) => x.readyMs);
  const down = a.map((x) => x.scaleDownMs).filter(Number.isFinite);
  out.push(`   decision (load start → spec.replicas first increases):   p50 ${secs(median(dec))} s  max ${secs(max(dec))} s`);
  out.push(`   reaction (load start → all ${MAX} tasks running+ready):      p50 ${secs(median(rdy))} s  max ${secs(max(rdy))} s   goal ≤ ${secs(GOAL_REACTION_MS)} s: ${pf(max(rdy), GOAL_REACTION_MS)}`);
  out.push(`   scale-down (load stop → spec.replicas back to 1):        p50 ${secs(median(down))} s  max ${secs(max(down))} s   (configured stabilization window ${SCALE_DOWN_S} s)`);
  for (const [i, x] of a.entries()) {
    out.push(`   round ${i + 1}: decision ${secs(x.decisionMs)} s, ready ${secs(x.readyMs)} s, scale-down ${secs(x.scaleDownMs)} s; ${x.requests} requests, ${x.errors} errors; ${x.steps.join(', ') || 'no replica change seen'}${x.failed ? `; FAILED: ${x.failed}` : ''}`);
  }
  const lastEv = a.at(-1)?.events ?? [];
  if (lastEv.length) out.push(`   autoscaler events: ${lastEv.join(' | ')}`);
  if (aFailed) out.push(`   FAILED: ${aFailed}`);
  out.push('');
  out.push(`## (b) cold start: zero tasks → first byte served (autoscale {min 0, max 2, rps 50, scale_down stabilization 2s}); ${o.coldRounds} round(s)`);
  const fb = okB.map((x) => x.firstByteMs);
  const tot = okB.map((x) => x.totalMs);
  out.push(`   first byte (GET start → response headers):   p50 ${secs(median(fb))} s  max ${secs(max(fb))} s   goal ≤ ${secs(GOAL_COLD_MS)} s: ${pf(max(fb), GOAL_COLD_MS)}`);
  out.push(`   full body (GET start → end of body):         p50 ${secs(median(tot))} s  max ${secs(max(tot))} s`);
  for (const [i, x] of b.entries()) out.push(`   round ${i + 1}: first byte ${secs(x.firstByteMs)} s, body ${secs(x.totalMs)} s (waited ${secs(x.zeroWaitMs)} s for zero)${x.failed ? `; FAILED: ${x.failed}` : ''}`);
  if (bEvents.length) out.push(`   autoscaler events: ${bEvents.slice(-6).join(' | ')}`);
  if (bFailed) out.push(`   FAILED: ${bFailed}`);
  out.push('');
  out.push('## anchor');
  out.push('- Kubernetes\' HPA syncs every 15 s (--horizontal-pod-autoscaler-sync-period) with a 5-minute scale-down stabilization window:');
  out.push('  a reaction of at least one sync (up to 15 s) plus pod start, and 5 min before it scales back down.');
  out.push('- Goals on this machine: reaction ≤ 10 s, cold start (first byte) ≤ 1.5 s. PASS/FAIL uses the max over the rounds.');
  out.push('- The machine may be running other work (e.g. a test suite) at the same time; figures can be noisy.');
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOpts();
  ignoreBatonTimings();
  const machine = await machineInfo();
  log(`bench id ${benchId}; rounds=${o.rounds} cold-rounds=${o.coldRounds}; ${keyValues(machine)}`);
  await requireImage(IMAGE);
  const a: ReactionRound[] = [];
  const b: ColdRound[] = [];
  let aFailed: string | undefined;
  let bFailed: string | undefined;
  let bEvents: string[] = [];
  const t0 = now();
  const cluster = new BenchCluster('baton-bench-autoscale-');
  let ok = false;
  try {
    const { api, clusterId } = await cluster.startServer();
    for (const ag of AGENTS) cluster.startAgent({ ...ag, args: ['--listen-port', '0'] });
    await cluster.waitReady();
    try {
      await reaction(api, clusterId, cluster.dir, o, a);
    } catch (e) {
      aFailed = failure('(a) reaction', e);
    }
    checkInterrupted();
    try {
      bEvents = await coldStart(api, clusterId, cluster.dir, o, b);
    } catch (e) {
      bFailed = failure('(b) cold start', e);
    }
    ok = true;
  } finally {
    await cluster.stop(ok);
    await cleanUpAll([BENCH_LABEL]);
  }
  const took = now() - t0;
  report(o, machine, a, aFailed, b, bFailed, bEvents, took);
  return aFailed || bFailed || a.some((x) => x.failed) || b.some((x) => x.failed) ? 1 : 0;
}

runMain(main, [BENCH_LABEL]);
