/**
 * bench:dns — how many queries a second a node's resolver answers for a
 * service name asked from a task, and how fast (p50, p99), beside Docker's
 * embedded resolver (127.0.0.11 on a user-defined network) answering a
 * container name, on the same engine in the same run.
 *
 *   npm run bench:dns -- [--duration-s 10] [--runs 3] [--warmup-s 2]
 *                        [--outstanding 100] [--paced-qps 1000]
 *
 * The two resolvers:
 *
 *   baton   one `baton server` and one agent (dnsbench-node, 127.0.6.11);
 *           a stack `dnsb` of two services in namespaces of their own (the
 *           default network mode): `api` and `client`, both `sleep 3600`.
 *           The query is `api A` from the client task to the resolver its
 *           resolv.conf names (the node's gateway on its task network, served
 *           by the agent's process); the answer is api's VIP.
 *   docker  a user-defined bridge network the bench makes (internal, the
 *           first free /24 from 10.146.210.0/24) with two containers of the
 *           same image, `<p>-api` and `<p>-client`; the query is `<p>-api A` from the client to
 *           127.0.0.11, which the engine's rules in the container's namespace
 *           send to dockerd's resolver there. The test engine runs with
 *           --iptables=false, but that flag is about the host's tables: the
 *           engine still writes the resolver's DNAT rules into each
 *           container's own namespace (iptables-nft), and the bench checks
 *           that the name resolves before it loads anything. Nothing in the
 *           host's tables is read or changed.
 *
 *   Every address involved is this machine's own: the 10.146/16 ranges are
 *   assigned inside namespaces Baton (--egress none, --dns-upstream none:
 *   no default route, no NAT) or the bench (an --internal Docker network:
 *   no NAT, and a guard table that drops whatever the host would forward
 *   from its subnet off it, see benchNetwork) makes, and the queries go
 *   from a task's namespace to its own
 *   node's resolver, or to 127.0.0.11 in the container's own namespace. The
 *   query files name only the cluster's service and the bench's container,
 *   so neither resolver forwards anything off the machine.
 *
 * The load generator is dnsperf (Debian's package `dnsperf`; the bench
 * installs nothing and says so when it is missing), one process per run
 * sending many queries over one UDP socket, run in the client's network
 * namespace (`nsenter -t <pid of the client's container> -n dnsperf ...`):
 * its queries leave from the client's own address, as the task's would, and
 * a resolver that decides what to answer by the asking task sees that task.
 * The test image's busybox has only `nslookup`, a process per query, which
 * would measure process spawning, not DNS.
 *
 * Two loads, each bounded in time (`-l`), as the median of --runs runs, the
 * order of the two resolvers alternating from run to run, after a warm-up
 * per resolver:
 *
 *   max    `dnsperf -q <outstanding>`: as fast as the resolver answers with
 *          that many queries in flight (closed loop): queries/s, and latency
 *          that includes queueing;
 *   paced  the same with `-Q <paced-qps>`: a fixed rate below both maxima,
 *          so latency is the service time, not the queue.
 *
 * Latency percentiles come from dnsperf's verbose lines (one per answer,
 * with its latency); a query lost (no answer within 1 s) counts as slower
 * than every answer. Any answer other than NOERROR fails the run. CPU: the
 * resolver's process (the Baton agent; dockerd, from its PID file), dnsperf
 * (this bench's reaped children) and the whole machine.
 *
 * Everything the bench makes carries `baton.bench=dns` and is removed at the
 * end, also on failure or Ctrl-C: containers, the Docker network, the Baton
 * node's bridge and tables. Only processes it started are stopped, by PID.
 * Queries go only to the two resolvers on this machine, inside namespaces
 * the bench (or its Baton cluster) made; the agent runs with --dns-upstream
 * none, and both names are answered locally. Progress goes to stderr,
 * results to stdout.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { endpointsKind } from '../src/api/kinds.js';
import type { Endpoints } from '../src/api/types.js';
import { benchArgs, BenchCluster, benchNetwork, benchSubnets, checkInterrupted, cleanUpAll, cleanUpOnSignals, cpuMs, docker, dockerOk, exec, failure, intFlag, log, machineInfo, median, now, onCleanup, oneLine, percentile, ratio, removeByLabel, removeNetworksByLabel, reportHeader, requireImage, runMain, secs, sleep, stackServices, waitFor, wasInterrupted, type BenchNetwork } from './lib.js';
import { busyPct, childrenCpuMs, dockerdPid, findTools, machineTicks, sum } from './probes.js';

// ---------------------------------------------------------------- options

const IMAGE = 'baton-test/busybox:latest';
const LABEL = 'baton.bench';
const LABEL_VALUE = 'dns';
const BENCH_LABEL = `${LABEL}=${LABEL_VALUE}`;
const STACK = 'dnsb';
const NODE = { name: 'dnsbench-node', address: '127.0.6.11', portRange: '46100-46199' };
const SERVER_ARGS = ['--cluster-cidr', '10.146.0.0/17', '--service-cidr', '10.146.240.0/20'];
/** The Docker peer's network takes the first free /24 of these (see benchNetwork). */
const DOCKER_SUBNETS = benchSubnets('10.146.210.0', 8);
/** dnsperf's timeout per query (seconds): a lost query is counted as lost after this. */
const QUERY_TIMEOUT_S = 1;

type SystemName = 'baton' | 'docker';
type LoadName = 'max' | 'paced';
const SYSTEMS: SystemName[] = ['baton', 'docker'];
const LOADS: LoadName[] = ['max', 'paced'];

interface Opts {
  durationS: number;
  runs: number;
  warmupS: number;
  outstanding: number;
  pacedQps: number;
}

const USAGE = 'usage: npm run bench:dns -- [--duration-s 10] [--runs 3] [--warmup-s 2] [--outstanding 100] [--paced-qps 1000]\n';

function parseOpts(): Opts {
  const v = benchArgs(USAGE, { 'duration-s': '10', runs: '3', 'warmup-s': '2', outstanding: '100', 'paced-qps': '1000' });
  return {
    durationS: intFlag('duration-s', v['duration-s'], 1, 120),
    runs: intFlag('runs', v.runs, 1, 20),
    warmupS: intFlag('warmup-s', v['warmup-s'], 0, 60),
    outstanding: intFlag('outstanding', v.outstanding, 1, 10_000),
    pacedQps: intFlag('paced-qps', v['paced-qps'], 1, 1_000_000),
  };
}

const benchId = `dns-${Date.now().toString(36)}-${process.pid}`;

// ---------------------------------------------------------------- the clients

/** A resolver under load: where dnsperf runs (the client's namespace) and what it asks. */
interface Target {
  /** The client container's PID 1 on this host: the way into its network namespace. */
  clientPid: number;
  server: string;
  qname: string;
  /** The address the name resolved to, checked before the load. */
  answer: string;
  /** The process answering, for its CPU time. */
  resolverPid?: number;
  describe: string;
}

async function containerPid(id: string): Promise<number> {
  const pid = Number((await dockerOk(['inspect', '--format', '{{.State.Pid}}', id])).trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`container ${id} has no running process (pid ${pid})`);
  return pid;
}

/**
 * resolveIn asks `name` (as given, no search list: the question dnsperf
 * sends) from inside a container with busybox nslookup, at `server` or its
 * resolv.conf's, and returns the addresses answered.
 */
async function resolveIn(id: string, name: string, server?: string): Promise<string[]> {
  const r = await docker(['exec', id, 'nslookup', '-type=a', `${name}.`, ...(server ? [server] : [])], { timeoutMs: 15_000 });
  // Skip the "Server:/Address:" header (the resolver's own address).
  const body = r.stdout.split(/\n\s*\n/).slice(1).join('\n');
  const got = [...body.matchAll(/Address:\s*(\d+\.\d+\.\d+\.\d+)/g)].map((m) => m[1]!);
  if (r.code !== 0 && got.length === 0) throw new Error(`nslookup ${name}.${server ? ` ${server}` : ''} in ${id.slice(0, 12)}: exit ${r.code}: ${oneLine(r.stdout + r.stderr)}`);
  return got;
}

async function batonTarget(cluster: BenchCluster, dir: string): Promise<Target> {
  const { api } = cluster.server!;
  const text = [
    `name: ${STACK}`,
    'services:',
    ...['api', 'client'].flatMap((s) => [`  ${s}:`, `    image: ${IMAGE}`, '    command: ["sleep", "3600"]', '    init: true', '    labels:', `      ${LABEL}: "${LABEL_VALUE}"`]),
    '',
  ].join('\n');
  log(`apply stack ${STACK}: services api and client (sleep 3600, a namespace each, the default network mode)`);
  await api.apply(STACK, { services: stackServices(text, STACK, dir), prune: false, dryRun: false });
  const vip = await waitFor(
    `${STACK}_api's Endpoints with a VIP and its task`,
    async () => {
      cluster.agentsAlive();
      const e = (await api.get<Endpoints>(endpointsKind, `${STACK}_api`)).spec;
      return e.vip && e.endpoints.length === 1 ? e.vip : undefined;
    },
    { timeoutMs: 90_000, everyMs: 250 },
  );
  const client = await waitFor(
    `${STACK}_client running`,
    async () => {
      cluster.agentsAlive();
      const t = (await api.tasks({ fieldSelector: { 'spec.serviceName': `${STACK}_client` } })).items.find((x) => x.spec.desiredState === 'running' && x.status.state === 'running' && x.status.containerId && x.status.taskIP);
      return t;
    },
    { timeoutMs: 90_000, everyMs: 250 },
  );
  const id = client.status.containerId!;
  const resolv = await dockerOk(['exec', id, 'cat', '/etc/resolv.conf']);
  const server = /^nameserver\s+(\d+\.\d+\.\d+\.\d+)/m.exec(resolv)?.[1];
  if (!server) throw new Error(`the client task's resolv.conf names no IPv4 nameserver:\n${resolv}`);
  // The name resolves from the task, as an unmodified program would ask it (a service created moments ago resolves at once).
  await waitFor('api to resolve from the client task', async () => ((await resolveIn(id, 'api')).includes(vip) ? true : undefined), { timeoutMs: 10_000, everyMs: 200 });
  const agentPid = cluster.agents[0]!.child.pid;
  return { clientPid: await containerPid(id), server, qname: 'api', answer: vip, resolverPid: agentPid, describe: `the agent's resolver at ${server}:53 (the client task ${client.metadata.name} at ${client.status.taskIP}; resolv.conf's nameserver), "api A" → VIP ${vip}` };
}

async function dockerTarget(net: BenchNetwork): Promise<Target> {
  const prefix = `baton-bench-${benchId}`;
  const ids: Record<string, string> = {};
  for (const s of ['api', 'client'])
    ids[s] = (await dockerOk(['run', '-d', '--init', '--name', `${prefix}-${s}`, '--network', net.name, '--label', BENCH_LABEL, '--label', `${LABEL}.run=${benchId}`, IMAGE, 'sleep', '3600'])).trim();
  const apiIp = (await dockerOk(['inspect', '--format', `{{(index .NetworkSettings.Networks "${net.name}").IPAddress}}`, ids.api!])).trim();
  const qname = `${prefix}-api`;
  const got = await resolveIn(ids.client!, qname, '127.0.0.11');
  if (!got.includes(apiIp))
    throw new Error(`Docker's embedded resolver (127.0.0.11) in ${prefix}-client did not answer ${qname} with ${apiIp} (got ${got.join(', ') || 'nothing'}): it cannot be measured on this engine`);
  const pid = dockerdPid();
  return { clientPid: await containerPid(ids.client!), server: '127.0.0.11', qname, answer: apiIp, resolverPid: pid, describe: `dockerd's embedded resolver at 127.0.0.11:53 in ${prefix}-client on ${net.name}, "${qname} A" → ${apiIp}${pid ? '' : ' (dockerd\'s PID unknown: no CPU figure)'}` };
}

// ---------------------------------------------------------------- dnsperf

interface Sample {
  qps: number;
  sent: number;
  completed: number;
  lost: number;
  p50Ms: number;
  p99Ms: number;
  rcodes: Record<string, number>;
  resolverCpuMs: number;
  dnsperfCpuMs: number;
  busyPct: number;
  wallMs: number;
}

function parseDnsperf(out: string): Omit<Sample, 'resolverCpuMs' | 'dnsperfCpuMs' | 'busyPct' | 'wallMs'> {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const lat: number[] = [];
  const rcodes: Record<string, number> = {};
  for (const m of out.matchAll(/^> (\S+) \S+ \S+ (\d+\.\d+)$/gm)) {
    rcodes[m[1]!] = (rcodes[m[1]!] ?? 0) + 1;
    lat.push(Number(m[2]) * 1000);
  }
  const lost = num(/^\s*Queries lost:\s+(\d+)/m);
  // A lost query is slower than every answer.
  for (let i = 0; i < (Number.isFinite(lost) ? lost : 0); i++) lat.push(Infinity);
  return {
    qps: num(/^\s*Queries per second:\s+([\d.]+)/m),
    sent: num(/^\s*Queries sent:\s+(\d+)/m),
    completed: num(/^\s*Queries completed:\s+(\d+)/m),
    lost,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
    rcodes,
  };
}

async function runDnsperf(tools: { dnsperf: string; nsenter: string }, t: Target, qfile: string, o: Opts, load: LoadName, durationS: number): Promise<Sample> {
  const args = ['-t', String(t.clientPid), '-n', tools.dnsperf, '-s', t.server, '-d', qfile, '-l', String(durationS), '-q', String(o.outstanding), '-t', String(QUERY_TIMEOUT_S), '-c', '1', '-T', '1', '-v', ...(load === 'paced' ? ['-Q', String(o.pacedQps)] : [])];
  const cpu0 = t.resolverPid ? cpuMs(t.resolverPid) : undefined;
  const kids0 = childrenCpuMs();
  const m0 = machineTicks();
  const t0 = now();
  const r = await exec(tools.nsenter, args, { timeoutMs: (durationS + 30) * 1000 });
  const wallMs = now() - t0;
  const m1 = machineTicks();
  const cpu1 = t.resolverPid ? cpuMs(t.resolverPid) : undefined;
  const kids1 = childrenCpuMs();
  if (r.code !== 0) throw new Error(`nsenter ${args.join(' ')} exited ${r.code}: ${oneLine(r.stderr || r.stdout).slice(0, 400)}`);
  const p = parseDnsperf(r.stdout);
  if (!Number.isFinite(p.qps) || !Number.isFinite(p.completed)) throw new Error(`could not read dnsperf's output:\n${r.stdout.slice(-2000)}\n${r.stderr}`);
  const bad = Object.entries(p.rcodes).filter(([k]) => k !== 'NOERROR');
  if (bad.length) throw new Error(`answers other than NOERROR: ${bad.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  return { ...p, resolverCpuMs: cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : NaN, dnsperfCpuMs: kids1 - kids0, busyPct: busyPct(m0, m1), wallMs };
}

// ---------------------------------------------------------------- the bench

interface Results {
  machine: Record<string, string>;
  targets: Partial<Record<SystemName, Target>>;
  unavailable: Partial<Record<SystemName, string>>;
  samples: Record<LoadName, Record<SystemName, Sample[]>>;
  failures: string[];
}

async function bench(o: Opts, tools: { dnsperf: string; nsenter: string }, res: Results): Promise<void> {
  const cluster = new BenchCluster('baton-bench-dns-', 10_000, SERVER_ARGS);
  let ok = false;
  try {
    await cluster.startServer();
    cluster.startAgent(NODE);
    await cluster.waitReady();
    res.targets.baton = await batonTarget(cluster, cluster.dir);
    log(`baton: ${res.targets.baton.describe}`);
    try {
      const net = await benchNetwork(`baton-bench-${benchId}`, DOCKER_SUBNETS, BENCH_LABEL);
      // Registered after the network's removal, so it runs first: a network goes only once its containers are gone.
      onCleanup('the Docker peer\'s containers', async () => void (await removeByLabel([`${LABEL}.run=${benchId}`], { oneByOne: true })));
      res.targets.docker = await dockerTarget(net);
      log(`docker: ${res.targets.docker.describe}`);
    } catch (e) {
      res.unavailable.docker = failure('setting up the Docker peer', e);
    }
    const systems = SYSTEMS.filter((s) => res.targets[s]);
    const files: Partial<Record<SystemName, string>> = {};
    for (const s of systems) {
      files[s] = join(cluster.dir, `queries-${s}.txt`);
      writeFileSync(files[s]!, `${res.targets[s]!.qname} A\n`);
    }
    for (const load of LOADS) {
      if (o.warmupS > 0)
        for (const s of systems) {
          checkInterrupted();
          log(`${load} ${s}: warm-up ${o.warmupS} s`);
          await runDnsperf(tools, res.targets[s]!, files[s]!, o, load, o.warmupS).catch((e) => {
            if (wasInterrupted()) throw e;
            res.failures.push(`${load}/${s} warm-up: ${oneLine((e as Error).message).slice(0, 300)}`);
          });
        }
      for (let run = 0; run < o.runs; run++) {
        const order = systems.map((_, i) => systems[(i + run) % systems.length]!);
        for (const s of order) {
          checkInterrupted();
          cluster.agentsAlive();
          await sleep(500);
          try {
            const x = await runDnsperf(tools, res.targets[s]!, files[s]!, o, load, o.durationS);
            res.samples[load][s].push(x);
            log(`${load} ${s} run ${run + 1}/${o.runs}: ${x.qps.toFixed(0)} q/s, p50 ${x.p50Ms.toFixed(3)} ms, p99 ${x.p99Ms.toFixed(3)} ms, lost ${x.lost}, resolver CPU ${secs(x.resolverCpuMs)} s, machine ${x.busyPct.toFixed(0)}% busy`);
          } catch (e) {
            if (wasInterrupted()) throw e;
            log(`${load} ${s} run ${run + 1} failed: ${(e as Error).message}`);
            res.failures.push(`${load}/${s} run ${run + 1}: ${oneLine((e as Error).message).slice(0, 300)}`);
          }
        }
      }
    }
    ok = true;
  } finally {
    await cluster.stop(ok);
  }
}

// ---------------------------------------------------------------- report

interface Agg {
  n: number;
  qps: number;
  p50: number;
  p99: number;
  lost: number;
  wallMs: number;
  completed: number;
  resolverCpuMs: number;
  dnsperfCpuMs: number;
  machineCorePct: number;
}

function agg(xs: Sample[], nproc: number): Agg {
  const wallMs = xs.reduce((a, s) => a + s.wallMs, 0);
  return {
    n: xs.length,
    qps: median(xs.map((s) => s.qps)),
    p50: median(xs.map((s) => s.p50Ms)),
    p99: median(xs.map((s) => s.p99Ms)),
    lost: xs.reduce((a, s) => a + s.lost, 0),
    wallMs,
    completed: xs.reduce((a, s) => a + s.completed, 0),
    resolverCpuMs: sum(xs.map((s) => s.resolverCpuMs)),
    dnsperfCpuMs: sum(xs.map((s) => s.dnsperfCpuMs)),
    machineCorePct: wallMs > 0 ? xs.reduce((a, s) => a + s.busyPct * nproc * s.wallMs, 0) / wallMs : NaN,
  };
}

function report(o: Opts, res: Results): void {
  const out: string[] = [];
  const n = (x: number, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : x === Infinity ? 'inf' : 'n/a');
  const nproc = Number(res.machine.nproc) || 1;
  out.push(...reportHeader('dns', benchId, res.machine));
  for (const s of SYSTEMS) out.push(`${s.padEnd(6)} ${res.targets[s]?.describe ?? `n/a${res.unavailable[s] ? `: ${res.unavailable[s]}` : ''}`}`);
  const titles: Record<LoadName, string> = {
    max: `max: dnsperf -q ${o.outstanding} -l ${o.durationS} (closed loop, ${o.outstanding} queries in flight)`,
    paced: `paced: dnsperf -Q ${o.pacedQps} -q ${o.outstanding} -l ${o.durationS} (a fixed rate)`,
  };
  const aggs = {} as Record<LoadName, Record<SystemName, Agg>>;
  for (const load of LOADS) {
    const a = (aggs[load] = Object.fromEntries(SYSTEMS.map((s) => [s, agg(res.samples[load][s], nproc)])) as Record<SystemName, Agg>);
    out.push('');
    out.push(`## ${titles[load]}  (median of ${o.runs} run${o.runs > 1 ? 's' : ''})`);
    out.push(`${'system'.padEnd(7)} ${'runs'.padStart(4)} ${'q/s'.padStart(8)} ${'p50_ms'.padStart(7)} ${'p99_ms'.padStart(7)} ${'lost'.padStart(5)}  CPU % of one core: ${'resolver'.padStart(8)} ${'dnsperf'.padStart(7)} ${'machine'.padStart(7)}  ${'resolver_us/q'.padStart(13)}`);
    for (const s of SYSTEMS) {
      const x = a[s];
      const pct = (c: number) => (x.wallMs > 0 ? n((100 * c) / x.wallMs) : 'n/a');
      out.push(
        `${s.padEnd(7)} ${String(x.n).padStart(4)} ${n(x.qps).padStart(8)} ${n(x.p50, 3).padStart(7)} ${n(x.p99, 3).padStart(7)} ${String(x.lost).padStart(5)}  ${''.padStart(18)} ${pct(x.resolverCpuMs).padStart(8)} ${pct(x.dnsperfCpuMs).padStart(7)} ${n(x.machineCorePct).padStart(7)}  ${(x.completed > 0 ? n((1000 * x.resolverCpuMs) / x.completed, 1) : 'n/a').padStart(13)}`,
      );
    }
    out.push(`ratio baton/docker: q/s ${ratio(a.baton.qps, a.docker.qps)}  p50 ${ratio(a.baton.p50, a.docker.p50)}  p99 ${ratio(a.baton.p99, a.docker.p99)}`);
    out.push(`samples q/s: ${SYSTEMS.map((s) => `${s} ${res.samples[load][s].map((x) => x.qps.toFixed(0)).join(',') || '-'}`).join('; ')}`);
    out.push(`samples p99 ms: ${SYSTEMS.map((s) => `${s} ${res.samples[load][s].map((x) => n(x.p99Ms, 3)).join(',') || '-'}`).join('; ')}`);
    if (load === 'paced') for (const s of SYSTEMS) if (a[s].n && a[s].qps < 0.95 * o.pacedQps) out.push(`note: ${s} did not keep up with ${o.pacedQps} q/s (${n(a[s].qps)}): its paced latency includes queueing`);
  }
  out.push('');
  out.push('## Goals (issue 18): the node\'s resolver >= 1.0x the queries/s of Docker\'s embedded one, p99 <= its p99');
  const mx = aggs.max;
  const pc = aggs.paced;
  if (mx.baton.n && mx.docker.n) {
    out.push(`queries/s (max): ${mx.baton.qps >= mx.docker.qps ? 'PASS' : 'FAIL'} (${ratio(mx.baton.qps, mx.docker.qps)}x: ${n(mx.baton.qps)} vs ${n(mx.docker.qps)} q/s)`);
    out.push(`p99 (max): ${mx.baton.p99 <= mx.docker.p99 ? 'PASS' : 'FAIL'} (${n(mx.baton.p99, 3)} vs ${n(mx.docker.p99, 3)} ms)`);
  } else out.push(`max load: not measured for ${SYSTEMS.filter((s) => !mx[s].n).join(' and ')}${res.unavailable.docker ? ` (docker: ${res.unavailable.docker})` : ''}`);
  if (pc.baton.n && pc.docker.n) out.push(`p99 (paced, ${o.pacedQps} q/s): ${pc.baton.p99 <= pc.docker.p99 ? 'PASS' : 'FAIL'} (${n(pc.baton.p99, 3)} vs ${n(pc.docker.p99, 3)} ms)`);
  if (res.failures.length) {
    out.push('');
    out.push('## Failed runs');
    for (const f of res.failures) out.push(`- ${f}`);
  }
  out.push('');
  out.push('## How this was measured');
  out.push(`- dnsperf over UDP, one socket (-c 1 -T 1), a ${QUERY_TIMEOUT_S} s timeout per query, the one name of each resolver asked again and again,`);
  out.push('  run with nsenter in the client container\'s network namespace (the host\'s dnsperf binary; only the network namespace is the client\'s).');
  out.push('- p50/p99 over every answer of a run from dnsperf -v (a lost query counts as slower than any answer), the median over the runs;');
  out.push('  q/s is dnsperf\'s "Queries per second" (answers a second).');
  out.push(`- CPU summed over the runs over their wall time: resolver = the Baton agent's process or dockerd (/proc/<pid>/stat; dockerd does everything`);
  out.push('  else the engine does too, idle here); dnsperf = this bench\'s reaped children; machine = all cores not idle (/proc/stat).');
  out.push(`  dnsperf, both resolvers, the Baton server and dockerd share the machine's ${nproc} cores.`);
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseOpts();
  const tools = findTools('dns', { dnsperf: 'dnsperf', nsenter: 'util-linux' });
  if (tools.missing !== undefined) {
    process.stdout.write(tools.missing);
    return 1;
  }
  const { dnsperf, nsenter } = tools.found;
  cleanUpOnSignals([BENCH_LABEL]);
  const machine = await machineInfo();
  const v = await exec(dnsperf, ['-h']);
  machine.dnsperf = /Version (\S+)/.exec(v.stdout + v.stderr)?.[1] ?? 'unknown';
  log(`bench id ${benchId}; duration=${o.durationS}s runs=${o.runs} warmup=${o.warmupS}s outstanding=${o.outstanding} paced=${o.pacedQps} q/s; ${Object.entries(machine).map(([k, x]) => `${k}=${x}`).join(' ')}`);
  await requireImage(IMAGE);
  const empty = () => ({ baton: [] as Sample[], docker: [] as Sample[] });
  const res: Results = { machine, targets: {}, unavailable: {}, samples: { max: empty(), paced: empty() }, failures: [] };
  let failed: string | undefined;
  const t0 = now();
  try {
    await bench(o, { dnsperf, nsenter }, res);
  } catch (e) {
    failed = failure('bench', e, 600);
  } finally {
    await cleanUpAll([BENCH_LABEL]);
    await removeNetworksByLabel(BENCH_LABEL).catch(() => undefined);
  }
  log(`bench took ${secs(now() - t0)} s`);
  report(o, res);
  if (failed) process.stdout.write(`\nFAILED: ${failed}\n`);
  return failed || res.failures.length ? 1 : 0;
}

runMain(main, [BENCH_LABEL], { signalExits: true });
