/**
 * bench:exec — `baton exec` beside `docker exec`, on the same engine, the
 * same container, in one run:
 *
 *   1. Round trip, keystroke to echo: a session runs `cat` in the task's
 *      container with standard input attached (`baton exec -i TASK -- cat`,
 *      `docker exec -i CONTAINER cat`); the bench writes one byte to the
 *      CLI's stdin and times its return on the CLI's stdout, --samples times
 *      one after another after --warmup; p50, p99 (nearest rank) and max.
 *      Baton's path: CLI → server (WebSocket) → agent listener (WebSocket,
 *      mutual TLS) → the engine's exec stream, and back; Docker's: CLI →
 *      engine socket → exec stream.
 *   2. Session start: from spawning the CLI to the first echo (process
 *      start, connection, exec create and start), the median of --starts.
 *
 *   npm run bench:exec -- [--samples 1000] [--warmup 50] [--starts 5]
 *
 * A server and one agent (127.0.0.2) with Baton's default settings; one task
 * of `sleep 3600` on the test image, in its own network namespace. Both
 * peers use pipes, not a TTY (no pty library here): a TTY adds the kernel's
 * line discipline on both alike. Only 127.0.0.0/8 is contacted; everything
 * is removed at the end, also on failure or Ctrl-C. Progress to stderr,
 * results to stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import type { Task } from '../src/api/types.js';
import { BATON_BIN, benchArgs, BenchCluster, cleanUpOnSignals, DOCKER, intFlag, log, machineInfo, median, now, percentile, ratio, reportHeader, requireImage, runMain, secs, stackServices, waitFor } from './lib.js';

const IMAGE = 'baton-test/busybox:latest';
const LABEL = 'baton.bench';
const BENCH_LABEL = `${LABEL}=exec`;
const STACK = 'benchexec';

const USAGE = `usage: npm run bench:exec -- [options]
  --samples N   round trips timed per peer (default 1000)
  --warmup N    round trips before timing (default 50)
  --starts N    sessions started per peer, for the start time (default 5)
  -h, --help    this text
`;

/** A CLI session running cat: write a byte, time its echo. */
class Session {
  private waiting?: () => void;
  private buffered = 0;
  readonly child: ChildProcess;
  private stderr = '';

  constructor(argv: string[], env: Record<string, string>) {
    this.child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.buffered += d.length;
      this.waiting?.();
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-2000)));
  }

  /** roundTrip writes one byte and resolves with the ms until a byte came back. */
  roundTrip(timeoutMs = 10_000): Promise<number> {
    const t0 = now();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no echo within ${timeoutMs} ms; stderr: ${this.stderr}`)), timeoutMs);
      this.waiting = () => {
        if (this.buffered < 1) return;
        this.buffered -= 1;
        clearTimeout(timer);
        this.waiting = undefined;
        resolve(now() - t0);
      };
      this.child.stdin!.write('x');
    });
  }

  async close(): Promise<void> {
    this.child.stdin!.end();
    await new Promise<void>((r) => {
      if (this.child.exitCode !== null) return r();
      const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      this.child.once('exit', () => {
        clearTimeout(t);
        r();
      });
    });
  }
}

interface PeerResult {
  name: string;
  rtt: number[];
  starts: number[];
}

async function measure(name: string, argv: string[], env: Record<string, string>, o: { samples: number; warmup: number; starts: number }): Promise<PeerResult> {
  const starts: number[] = [];
  for (let i = 0; i < o.starts; i++) {
    const t0 = now();
    const s = new Session(argv, env);
    await s.roundTrip(30_000);
    starts.push(now() - t0);
    await s.close();
  }
  const s = new Session(argv, env);
  try {
    for (let i = 0; i < o.warmup; i++) await s.roundTrip();
    const rtt: number[] = [];
    for (let i = 0; i < o.samples; i++) rtt.push(await s.roundTrip());
    log(`${name}: ${o.samples} round trips, p50 ${median(rtt).toFixed(2)} ms`);
    return { name, rtt, starts };
  } finally {
    await s.close();
  }
}

async function main(): Promise<number> {
  const v = benchArgs(USAGE, { samples: '1000', warmup: '50', starts: '5' });
  const o = { samples: intFlag('samples', v.samples, 10), warmup: intFlag('warmup', v.warmup, 0), starts: intFlag('starts', v.starts, 1, 100) };
  const began = Date.now();
  const machine = await machineInfo();
  await requireImage(IMAGE);
  cleanUpOnSignals([BENCH_LABEL]);
  const cluster = new BenchCluster('baton-bench-exec-');
  let ok = false;
  try {
    const { api, url } = await cluster.startServer();
    cluster.startAgent({ name: 'node2', address: '127.0.0.2', portRange: '28900-28999', args: ['--listen-port', '0'] });
    await cluster.waitReady({ agentPort: true });
    const text = [`name: ${STACK}`, 'services:', '  sh:', `    image: ${IMAGE}`, '    command: ["sleep", "3600"]', '    labels:', `      ${LABEL}: exec`, ''].join('\n');
    await api.apply(STACK, { services: stackServices(text, STACK, cluster.dir), prune: false, dryRun: false });
    const task = await waitFor(
      'the task running',
      async () => (await api.tasks({ fieldSelector: { 'spec.serviceName': `${STACK}_sh` } })).items.find((t: Task) => t.status.state === 'running' && t.status.containerId),
      { timeoutMs: 60_000, everyMs: 200 },
    );
    const serverDir = join(cluster.dir, 'server', 'server');
    const env = { BATON_HOME: cluster.dir, BATON_SERVER: url, BATON_TOKEN: readFileSync(join(serverDir, 'admin.token'), 'utf8').trim(), BATON_CA: join(serverDir, 'ca.crt') };
    const peers = [
      await measure('baton exec', [process.execPath, BATON_BIN, 'exec', '-i', task.metadata.name, '--', 'cat'], env, o),
      await measure('docker exec', [DOCKER, 'exec', '-i', task.status.containerId!, 'cat'], {}, o),
    ];
    const [b, d] = peers as [PeerResult, PeerResult];
    const out = reportHeader('exec', `exec-${process.pid}`, machine, Date.now() - began);
    out.push(`workload: \`cat\` in one task's container (${IMAGE}); ${o.samples} one-byte round trips after ${o.warmup}, one session; ${o.starts} session starts; pipes, no TTY`);
    out.push('');
    out.push('peer          rtt_p50_ms  rtt_p99_ms  rtt_max_ms  start_median_s');
    for (const p of peers) out.push(`${p.name.padEnd(12)} ${median(p.rtt).toFixed(2).padStart(11)} ${percentile(p.rtt, 99).toFixed(2).padStart(11)} ${Math.max(...p.rtt).toFixed(2).padStart(11)} ${secs(median(p.starts)).padStart(15)}`);
    out.push('');
    out.push(`baton/docker: rtt p50 ${ratio(median(b.rtt), median(d.rtt))}, p99 ${ratio(percentile(b.rtt, 99), percentile(d.rtt, 99))}, start ${ratio(median(b.starts), median(d.starts))}`);
    process.stdout.write(out.join('\n') + '\n');
    ok = true;
    return 0;
  } finally {
    await cluster.stop(ok);
  }
}

runMain(main, [BENCH_LABEL]);
