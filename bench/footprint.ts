/**
 * bench:footprint — what an idle node costs: a `baton agent` running 20
 * tasks, beside the `baton server` it reports to and the engine under it
 * (dockerd, containerd), measured in one run on this machine.
 *
 *   npm run bench:footprint -- [--tasks 20] [--settle-s 15] [--idle-s 60]
 *                              [--network bridge|host]
 *
 * A server and one agent (127.0.0.2) with Baton's default settings (no
 * BATON_TIMINGS: heartbeats every 2 s, status reports, usage sampling,
 * the node's DNS resolver and routing mesh all running); a stack of one
 * service of --tasks replicas of `sleep 3600` on the test image (default:
 * each task in its own network namespace, Baton's default; `--network
 * host` for the node's network). Once every task runs the bench waits
 * --settle-s (start-up garbage collected, caches warm), then samples every
 * 200 ms for --idle-s: RSS (VmRSS from /proc) as its mean and peak, and
 * CPU time (utime + stime) over the window as a share of one core. The
 * anchor is k3s' agent, about 275 MB RSS (its published footprint; not a
 * same-run peer). It also prints each process's RSS split into its own
 * pages and pages mapped from files (shared), and the agent's CPU split
 * into its main thread and the rest. BENCH_AGENT_NODE_ARGS (node flags
 * before the script) or BENCH_AGENT_NODE_OPTIONS (its NODE_OPTIONS) run the
 * agent with other V8 settings, for an A/B. Only 127.0.0.0/8 is contacted;
 * everything is removed at the end, also on failure or Ctrl-C. Progress to
 * stderr, results to stdout.
 */
import { readdirSync } from 'node:fs';
import type { Task } from '../src/api/types.js';
import { benchArgs, BenchCluster, checkInterrupted, cleanUpOnSignals, cpuMs, intFlag, log, machineInfo, pidOfComm, reportHeader, requireImage, rssKiB, rssSplitKiB, runMain, secs, sleep, stackServices, waitFor } from './lib.js';

const IMAGE = 'baton-test/busybox:latest';
const LABEL = 'baton.bench';
const BENCH_LABEL = `${LABEL}=footprint`;
const STACK = 'benchfoot';

const USAGE = `usage: npm run bench:footprint -- [options]
  --tasks N          tasks the agent runs (default 20)
  --settle-s N       wait after every task runs, before sampling (default 15)
  --idle-s N         sampling window (default 60)
  --network M        bridge (own namespace per task, the default) | host
  -h, --help         this text
`;

interface Sample {
  what: string;
  pid: number;
  rss: number[];
  cpu0: number;
  cpuMs: number;
}

/** threadCpuMs: CPU time (ms) of each thread of a process, by thread id; the main thread's id is the pid. */
function threadCpuMs(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const ms = cpuMs(pid, Number(tid));
    if (ms !== undefined) out.set(Number(tid), ms); // else the thread ended
  }
  return out;
}

function sampleOf(what: string, pid: number | undefined): Sample | undefined {
  if (pid === undefined) return undefined;
  const c = cpuMs(pid);
  return c === undefined ? undefined : { what, pid, rss: [], cpu0: c, cpuMs: NaN };
}

async function main(): Promise<number> {
  const v = benchArgs(USAGE, { tasks: '20', 'settle-s': '15', 'idle-s': '60', network: 'bridge' });
  const tasks = intFlag('tasks', v.tasks, 1, 500);
  const settleMs = intFlag('settle-s', v['settle-s'], 0) * 1000;
  const idleMs = intFlag('idle-s', v['idle-s'], 5) * 1000;
  if (v.network !== 'bridge' && v.network !== 'host') throw new Error(`--network must be bridge or host, got "${v.network}"`);
  const began = Date.now();
  const machine = await machineInfo();
  await requireImage(IMAGE);
  cleanUpOnSignals([BENCH_LABEL]);
  const cluster = new BenchCluster('baton-bench-footprint-');
  let ok = false;
  try {
    const { api, child: server } = await cluster.startServer();
    const agent = cluster.startAgent({ name: 'node2', address: '127.0.0.2', portRange: '28800-28899', args: ['--listen-port', '0'] });
    await cluster.waitReady();
    const text = [
      `name: ${STACK}`,
      'services:',
      '  idle:',
      `    image: ${IMAGE}`,
      '    command: ["sleep", "3600"]',
      ...(v.network === 'host' ? ['    network_mode: host'] : []),
      '    labels:',
      `      ${LABEL}: footprint`,
      '    deploy:',
      `      replicas: ${tasks}`,
      '',
    ].join('\n');
    log(`apply ${STACK}: ${tasks} tasks (${v.network} network)`);
    await api.apply(STACK, { services: stackServices(text, STACK, cluster.dir), prune: false, dryRun: false });
    await waitFor(`${tasks} tasks running`, async () => {
      cluster.agentsAlive();
      const items = (await api.tasks({ fieldSelector: { 'spec.serviceName': `${STACK}_idle` } })).items as Task[];
      return items.filter((t) => t.spec.desiredState === 'running' && t.status.state === 'running').length === tasks ? true : undefined;
    }, { timeoutMs: 180_000, everyMs: 500 });
    log(`all ${tasks} tasks run; settling ${secs(settleMs)} s, then sampling ${secs(idleMs)} s`);
    await sleep(settleMs);
    checkInterrupted();
    const samples = [
      sampleOf('baton agent', agent.child.pid),
      sampleOf('baton server', server.pid),
      sampleOf('dockerd', pidOfComm('dockerd')),
      sampleOf('containerd', pidOfComm('containerd')),
    ].filter((s): s is Sample => s !== undefined);
    const threads0 = threadCpuMs(agent.child.pid!);
    const t0 = Date.now();
    while (Date.now() - t0 < idleMs) {
      checkInterrupted();
      for (const s of samples) {
        const r = rssKiB(s.pid);
        if (r !== undefined) s.rss.push(r);
      }
      await sleep(200);
    }
    const windowMs = Date.now() - t0;
    for (const s of samples) s.cpuMs = (cpuMs(s.pid) ?? NaN) - s.cpu0;
    const threads1 = threadCpuMs(agent.child.pid!);
    const mainThreadMs = (threads1.get(agent.child.pid!) ?? NaN) - (threads0.get(agent.child.pid!) ?? 0);
    const split = new Map(samples.map((x) => [x.what, rssSplitKiB(x.pid)]));
    cluster.agentsAlive();

    const mib = (k: number) => (k / 1024).toFixed(1);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const out = reportHeader('footprint', `footprint-${process.pid}`, machine, Date.now() - began);
    out.push(`workload ${tasks} tasks of \`sleep 3600\` (${IMAGE}), ${v.network} network; one agent, Baton's default settings; settle ${secs(settleMs)} s, window ${secs(windowMs)} s, RSS sampled every 200 ms`);
    out.push('');
    out.push('process          rss_mean_MiB  rss_peak_MiB  cpu_%_of_a_core  own_MiB  files_MiB');
    for (const s of samples) {
      const sp = split.get(s.what);
      out.push(`${s.what.padEnd(16)} ${mib(mean(s.rss)).padStart(12)}  ${mib(Math.max(...s.rss)).padStart(12)}  ${((s.cpuMs / windowMs) * 100).toFixed(2).padStart(15)}  ${mib(sp?.anon ?? NaN).padStart(7)}  ${mib(sp?.file ?? NaN).padStart(9)}`);
    }
    const a = samples.find((s) => s.what === 'baton agent')!;
    out.push('');
    out.push("own_MiB / files_MiB: RssAnon / RssFile at the window's end: memory of the process's own, and pages mapped from files (the node binary and libraries, shared with every process that maps them)");
    out.push(`agent's main thread: ${((mainThreadMs / windowMs) * 100).toFixed(2)}% of a core; its other ${threads1.size - 1} threads (V8's, libuv's): ${(((a.cpuMs - mainThreadMs) / windowMs) * 100).toFixed(2)}%`);
    out.push(`goal: agent RSS ≤ 80 MiB (k3s' agent: ~275 MB): ${mib(Math.max(...a.rss))} MiB peak, ${(Math.max(...a.rss) / 1024 / 275).toFixed(2)}× k3s' agent; CPU ≤ 1% of a core: ${((a.cpuMs / windowMs) * 100).toFixed(2)}%`);
    process.stdout.write(out.join('\n') + '\n');
    ok = true;
    return 0;
  } finally {
    await cluster.stop(ok);
  }
}

runMain(main, [BENCH_LABEL]);
