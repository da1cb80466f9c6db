/**
 * `baton sim`: N simulated nodes in one process, for scale tests and demos.
 * Each is the real agent (it joins with the token, gets its own certificate,
 * heartbeats, watches its tasks, reports status, restarts by policy) on its
 * own loopback address, with the sim driver instead of Docker: tasks "run"
 * after a start latency and fail at a given rate, and no container exists.
 */
import { join, resolve } from 'node:path';
import pino from 'pino';
import { Agent } from '../agent/agent.js';
import { SimDriver, SimEngine } from '../agent/sim/simDriver.js';
import { BatonError } from '../base/errors.js';
import { parseBytes, parseDurationMs } from '../manifest/units.js';

export interface SimFlags {
  join?: string;
  token?: string;
  nodes: string;
  cpus: string;
  memory: string;
  label?: string[];
  startLatency: string;
  failureRate: string;
  dataDir: string;
  namePrefix: string;
  concurrency: string;
  logLevel?: string;
}

/** simAddress gives simulated node i its own loopback address, 127.1.0.2 upward, never .0, .1 or .255. */
export function simAddress(i: number): string {
  const perBlock = 250 * 250;
  const b = 1 + Math.floor(i / perBlock);
  const r = i % perBlock;
  return `127.${b}.${Math.floor(r / 250)}.${(r % 250) + 2}`;
}

function positive(v: string, flag: string, integer = false): number {
  const n = Number(v);
  if (!(n > 0) || (integer && !Number.isInteger(n))) throw new BatonError('BATON_ERR_BAD_REQUEST', `${flag} must be a positive ${integer ? 'whole ' : ''}number, got "${v}"`);
  return n;
}

export async function runSim(f: SimFlags): Promise<void> {
  if (!f.join || !f.token) throw new BatonError('BATON_ERR_BAD_REQUEST', 'baton sim needs --join https://SERVER:7400 and --token JOINTOKEN (baton join-token worker)');
  const nodes = positive(f.nodes, '--nodes', true);
  if (nodes > 60_000) throw new BatonError('BATON_ERR_BAD_REQUEST', `--nodes is at most 60000, got ${nodes}`);
  const cpus = positive(f.cpus, '--cpus');
  const mem = parseBytes(f.memory, '--memory');
  if (!mem.ok) throw new BatonError('BATON_ERR_BAD_REQUEST', `--memory: ${mem.error.message}`);
  const latency = parseDurationMs(/^\d+$/.test(f.startLatency) ? `${f.startLatency}ms` : f.startLatency, '--start-latency');
  if (!latency.ok) throw new BatonError('BATON_ERR_BAD_REQUEST', `--start-latency: ${latency.error.message}`);
  const failureRate = Number(f.failureRate);
  if (!(failureRate >= 0 && failureRate <= 1)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--failure-rate must be within 0 and 1, got "${f.failureRate}"`);
  const labels: Record<string, string> = {};
  for (const l of f.label ?? []) {
    const i = l.indexOf('=');
    if (i <= 0) throw new BatonError('BATON_ERR_BAD_REQUEST', `--label ${l}: must look like key=value`);
    labels[l.slice(0, i)] = l.slice(i + 1);
  }
  const concurrency = positive(f.concurrency, '--concurrency', true);

  const engine = new SimEngine();
  const log = pino({ level: f.logLevel ?? 'warn', base: { component: 'sim' } }, pino.destination(2));
  const agents: Agent[] = [];
  let stopping = false;
  const stop = async () => {
    stopping = true;
    await Promise.allSettled(agents.map((a) => a.stop()));
  };
  let handled = false;
  const onSignal = () => {
    if (handled) return;
    handled = true;
    void stop().finally(() => process.exit(0));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const started = Date.now();
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (!stopping && next < nodes) {
      const i = next++;
      const name = `${f.namePrefix}${i}`;
      const a = new Agent({
        server: f.join,
        joinToken: f.token,
        name,
        address: simAddress(i),
        dataDir: join(resolve(f.dataDir), name),
        driver: new SimDriver(engine, { startLatencyMs: latency.value, failureRate, cpus, memoryBytes: mem.value }),
        cpus,
        memoryBytes: mem.value,
        labels,
        portRange: [20000, 29999],
        // Simulated tasks serve nothing: no routing mesh (thousands of nodes would hold thousands of listeners).
        mesh: false,
        listenPort: null,
        pull: 'never',
        logger: log.child({ node: name }),
        startConcurrency: 4,
      });
      try {
        await a.start();
        agents.push(a);
      } catch (e) {
        failed++;
        process.stderr.write(`sim: node ${name} did not start: ${(e as Error).message}\n`);
        if (failed >= 10 && agents.length === 0) throw e;
      }
      if ((agents.length + failed) % 100 === 0) process.stdout.write(`sim: ${agents.length}/${nodes} nodes up\n`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, nodes) }, worker));
  process.stdout.write(`sim: ${agents.length}/${nodes} simulated nodes up in ${((Date.now() - started) / 1000).toFixed(1)} s${failed ? ` (${failed} failed)` : ''}; Ctrl-C stops them\n`);
}
