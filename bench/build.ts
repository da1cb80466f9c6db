/**
 * bench:build — time to the first running task of a service built from a
 * Compose `build:`, Baton beside `docker build` + `docker run` by hand on
 * the same engine.
 *
 *   npm run bench:build -- [--runs 3] [--files 200] [--file-kib 8] [--deadline-s 300]
 *
 * The context: --files files of --file-kib KiB each under app/ and a
 * Dockerfile `FROM baton-test/busybox:latest`, `COPY app /app`, a RUN step
 * that reads every file, and a CMD that sleeps. Before each run one file
 * changes, so neither side finds the COPY layer or the image ready (both
 * keep the engine's layer cache for the base image, as in daily use).
 *
 * Timed per run, by the wall clock:
 *   - by hand: `docker build -t <tag> <dir>` (the docker CLI packs and sends
 *     the context) then `docker run -d`, until `docker run` returned (the
 *     container has started);
 *   - Baton: `baton apply -f compose.yaml` (the CLI packs the context,
 *     uploads it, applies; the node fetches it and builds; apply follows the
 *     build) until a poll (every 50 ms) of the API finds the task running;
 *     also when apply returned.
 * Baton runs as `baton server` and one `baton agent` on 127.0.0.2 (the
 * context goes through the server, as it would between machines). Only
 * 127.0.0.0/8 is contacted. Every container is removed at the end, and the
 * images both sides built, also on failure or Ctrl-C. Progress goes to
 * stderr, the summary to stdout.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Task } from '../src/api/types.js';
import { BATON_BIN, benchArgs, BenchCluster, cleanUpOnSignals, docker, dockerOk, exec, intFlag, log, machineInfo, median, now, onCleanup, ratio, removeByLabel, reportHeader, requireImage, runMain, secs, sleep } from './lib.js';

const IMAGE = 'baton-test/busybox:latest';
const LABEL = 'baton.bench=build';
const STACK = 'benchbuild';
const HAND_REPO = 'baton-bench-build';

const args = benchArgs('npm run bench:build -- [--runs 3] [--files 200] [--file-kib 8] [--deadline-s 300]', { runs: '3', files: '200', 'file-kib': '8', 'deadline-s': '300' });
const runs = intFlag('--runs', args.runs, 1, 20);
const files = intFlag('--files', args.files, 1, 5000);
const fileKiB = intFlag('--file-kib', args['file-kib'], 1, 1024);
const deadlineMs = intFlag('--deadline-s', args['deadline-s'], 10) * 1000;

/** context writes the build context under dir, with run's mark in one file so each run is a new image. */
function context(dir: string, run: number): void {
  mkdirSync(join(dir, 'app'), { recursive: true });
  for (let i = 0; i < files; i++) writeFileSync(join(dir, 'app', `f${i}.txt`), randomBytes((fileKiB * 1024 * 3) / 4).toString('base64'));
  writeFileSync(join(dir, 'app', 'run.txt'), `run ${run} ${Date.now()}\n`);
  writeFileSync(join(dir, 'Dockerfile'), `FROM ${IMAGE}\nCOPY app /app\nRUN cat /app/* | wc -c > /size.txt\nLABEL ${LABEL}\nCMD ["sleep", "3600"]\n`);
}

async function handRun(dir: string, run: number): Promise<number> {
  context(dir, run);
  const tag = `${HAND_REPO}:run${run}`;
  const t0 = now();
  const b = await exec('/usr/bin/docker', ['build', '-q', '-t', tag, dir], { timeoutMs: deadlineMs, env: { DOCKER_BUILDKIT: '0' } });
  if (b.code !== 0) throw new Error(`docker build: ${b.stderr}`);
  await dockerOk(['run', '-d', '--label', LABEL, '--network', 'none', tag]);
  return now() - t0;
}

async function batonRun(cluster: BenchCluster, env: Record<string, string>, dir: string, run: number): Promise<{ applyMs: number; runningMs: number; createdMs: number; startedMs: number }> {
  context(dir, run);
  writeFileSync(join(dir, 'compose.yaml'), `name: ${STACK}\nservices:\n  web:\n    build: .\n    network_mode: none\n`);
  const api = cluster.server!.api;
  const t0 = now();
  const wall0 = Date.now();
  const r = await exec(process.execPath, [BATON_BIN, 'apply', '-f', join(dir, 'compose.yaml'), '--timeout', String(deadlineMs / 1000)], { timeoutMs: deadlineMs, env });
  const applyMs = now() - t0;
  if (r.code !== 0) throw new Error(`baton apply: ${r.stderr}`);
  const image = /built (\S+)/.exec(r.stdout)?.[1];
  if (!image) throw new Error(`baton apply did not say what it built: ${r.stdout}`);
  for (;;) {
    const tasks = (await api.tasks({ fieldSelector: { 'spec.serviceName': `${STACK}_web` } })).items as Task[];
    const t = tasks.find((x) => x.spec.container.image === image && x.status.state === 'running');
    // When the apply made the task (the server's clock) and when its container started (the engine's): where the time goes.
    if (t) return { applyMs, runningMs: now() - t0, createdMs: Date.parse(t.metadata.creationTimestamp) - wall0, startedMs: Date.parse(t.status.startedAt ?? '') - wall0 };
    if (now() - t0 > deadlineMs) throw new Error(`no task of ${image} running after ${secs(deadlineMs)}`);
    await sleep(50);
  }
}

async function removeImages(filter: string): Promise<void> {
  const ids = (await docker(['images', '-q', '--filter', filter])).stdout.split('\n').filter(Boolean);
  if (ids.length) await docker(['rmi', '-f', ...new Set(ids)]);
}

async function main(): Promise<number> {
  const started = now();
  await requireImage(IMAGE);
  cleanUpOnSignals([LABEL]);
  const undoImages = onCleanup('built images', () => removeImages(`label=${LABEL}`));
  const cluster = new BenchCluster('baton-bench-build-');
  let ok = false;
  const hand: number[] = [];
  const apply: number[] = [];
  const running: number[] = [];
  const created: number[] = [];
  const startedAt: number[] = [];
  try {
    await cluster.startServer();
    cluster.startAgent({ name: 'node2', address: '127.0.0.2', portRange: '28600-28699' });
    await cluster.waitReady();
    const s = cluster.server!;
    const env = { BATON_HOME: cluster.dir, BATON_SERVER: s.url, BATON_TOKEN: readFileSync(join(cluster.dir, 'server', 'server', 'admin.token'), 'utf8').trim(), BATON_CA: join(cluster.dir, 'server', 'server', 'ca.crt') };
    for (let run = 1; run <= runs; run++) {
      const h = await handRun(join(cluster.dir, `hand${run}`), run);
      hand.push(h);
      log(`run ${run}: by hand ${secs(h)}`);
      const b = await batonRun(cluster, env, join(cluster.dir, 'ctx'), run);
      apply.push(b.applyMs);
      running.push(b.runningMs);
      created.push(b.createdMs);
      startedAt.push(b.startedMs);
      log(`run ${run}: baton apply returned ${secs(b.applyMs)}, task running ${secs(b.runningMs)}`);
    }
    ok = true;
  } finally {
    await cluster.stop(ok);
    await removeByLabel([LABEL]).catch(() => 0);
    await removeImages(`label=${LABEL}`).catch(() => undefined);
    await removeImages(`reference=${HAND_REPO}`).catch(() => undefined);
    undoImages();
  }
  const lines = [
    ...reportHeader('build', `files=${files} file-kib=${fileKiB} runs=${runs}`, await machineInfo(), now() - started),
    `context: ${files} files × ${fileKiB} KiB (${((files * fileKiB) / 1024).toFixed(1)} MiB), FROM ${IMAGE}, one RUN step`,
    `by hand (docker build + docker run -d): median ${secs(median(hand))}  runs ${hand.map(secs).join(' ')}`,
    `baton apply until the task runs:        median ${secs(median(running))}  runs ${running.map(secs).join(' ')}`,
    `  baton: task made by the apply at +${secs(median(created))} (CLI start, pack, upload, apply), container started at +${secs(median(startedAt))} (fetch, build, create, start), apply returned at +${secs(median(apply))} (it follows the build)`,
    `ratio baton/by hand: ${ratio(median(running), median(hand))}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

runMain(main, [LABEL]);
