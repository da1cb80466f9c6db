/**
 * The long-running commands: `baton server`, `baton agent` and `baton up`
 * (server and agent in one process), plus `up -d` / `down` with a PID file.
 * Each process locks its data directory; stopping leaves containers running,
 * to be adopted by the next start.
 */
import { withServerFlags } from '../base/nodeFlags.js';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from '../agent/agent.js';
import { DockerDriver } from '../agent/docker/dockerDriver.js';
import { parsePortRange } from '../agent/ports.js';
import { sleep } from '../base/clock.js';
import { BatonError } from '../base/errors.js';
import { parseBytes, parseDurationMs } from '../manifest/units.js';
import type { BatonServer } from '../server/server.js';
import { ClusterKey } from '../server/clusterKey.js';
import { describeNetwork, taskNetwork } from '../server/ipam.js';
import type { Timings } from '../server/controllers/context.js';
import { batonHome, readContexts, saveContext } from './context.js';
import { parseUpstream } from '../agent/net/dns.js';

export interface AgentFlags {
  /** none: /metrics is open; token: it wants the bearer token of metricsTokenFile. */
  metricsAuth?: string;
  metricsTokenFile?: string;
  /** The server to join (https://HOST:7400). */
  server?: string;
  /** The join token. */
  token?: string;
  heartbeat?: string;
  name?: string;
  address: string;
  dataDir: string;
  cpus?: string;
  memory?: string;
  label?: string[];
  portRange: string;
  vipRange?: string;
  meshKernel?: string;
  meshUserspace?: string;
  meshProxyDrain?: string;
  meshSweep?: string;
  egress?: string;
  dnsUpstream?: string;
  clusterDomain?: string;
  pull: string;
  dockerSocket?: string;
  engineTimeout?: string;
  buildTimeout?: string;
  logLevel?: string;
  statusFlush?: string;
  resync?: string;
  listenPort?: string;
  logMaxSize?: string;
  logMaxAge?: string;
  statsInterval?: string;
  deregisterTimeout?: string;
}

function parseLabels(list: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of list) {
    const i = l.indexOf('=');
    if (i <= 0) throw new BatonError('BATON_ERR_BAD_REQUEST', `--label ${l}: must look like key=value`);
    out[l.slice(0, i)] = l.slice(i + 1);
  }
  return out;
}

function durationFlag(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const r = parseDurationMs(/^\d+$/.test(v) ? `${v}ms` : v, flag);
  if (!r.ok || !(r.value > 0)) throw new BatonError('BATON_ERR_BAD_REQUEST', `${flag} must be a positive duration such as 2s or 500ms, got "${v}"`);
  return r.value;
}

/** dnsUpstreamFlag: `none`, or nameservers as ip or ip:port, comma-separated. */
function dnsUpstreamFlag(v: string): string[] | 'none' {
  if (v === 'none') return 'none';
  const list = v.split(',').map((x) => x.trim()).filter(Boolean);
  for (const x of list) {
    try {
      parseUpstream(x);
    } catch (e) {
      throw new BatonError('BATON_ERR_BAD_REQUEST', `--dns-upstream ${x}: ${(e as Error).message}`);
    }
  }
  if (list.length === 0) throw new BatonError('BATON_ERR_BAD_REQUEST', '--dns-upstream must be none or nameservers (ip or ip:port, comma-separated)');
  return list;
}

function clusterDomainFlag(v: string): string {
  const d = v.toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(d)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--cluster-domain must be a DNS name such as cluster.local, got "${v}"`);
  return d;
}

export function agentOptions(f: AgentFlags, server: string | undefined, joinToken: string | undefined) {
  if (!['never', 'missing', 'always'].includes(f.pull)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--pull must be never, missing or always, got "${f.pull}"`);
  let memoryBytes: number | undefined;
  if (f.memory !== undefined) {
    const r = parseBytes(f.memory, '--memory');
    if (!r.ok) throw new BatonError('BATON_ERR_BAD_REQUEST', `--memory: ${r.error.message}`);
    memoryBytes = r.value;
  }
  const cpus = f.cpus !== undefined ? Number(f.cpus) : undefined;
  if (cpus !== undefined && !(cpus > 0)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--cpus must be a positive number, got "${f.cpus}"`);
  let logMaxBytes: number | undefined;
  if (f.logMaxSize !== undefined) {
    const r = parseBytes(f.logMaxSize, '--log-max-size');
    if (!r.ok || !(r.value > 0)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--log-max-size must be a size such as 100m, got "${f.logMaxSize}"`);
    logMaxBytes = r.value;
  }
  const listenPort = f.listenPort !== undefined ? Number(f.listenPort) : undefined;
  if (listenPort !== undefined && !(Number.isInteger(listenPort) && listenPort >= 0 && listenPort <= 65535)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--listen-port must be a port number (0 picks a free one), got "${f.listenPort}"`);
  let metricsToken: string | undefined;
  if (f.metricsAuth === 'token') {
    if (!f.metricsTokenFile) throw new BatonError('BATON_ERR_BAD_REQUEST', '--metrics-auth token needs --metrics-token-file FILE (the bearer token a scraper sends)');
    try {
      metricsToken = readFileSync(f.metricsTokenFile, 'utf8').trim();
    } catch (e) {
      throw new BatonError('BATON_ERR_BAD_REQUEST', `--metrics-token-file ${f.metricsTokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (metricsToken.length < 16 || /\s/.test(metricsToken)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--metrics-token-file ${f.metricsTokenFile}: the token must be at least 16 characters, without spaces`);
  } else if (f.metricsTokenFile) throw new BatonError('BATON_ERR_BAD_REQUEST', '--metrics-token-file is read with --metrics-auth token');
  let portRange: [number, number];
  try {
    portRange = parsePortRange(f.portRange);
  } catch (e) {
    throw new BatonError('BATON_ERR_BAD_REQUEST', (e as Error).message);
  }
  return {
    server,
    joinToken,
    heartbeatMs: durationFlag(f.heartbeat, '--heartbeat'),
    listenPort,
    ...(metricsToken ? { metricsToken } : {}),
    logMaxBytes,
    logMaxAgeMs: durationFlag(f.logMaxAge, '--log-max-age'),
    statsIntervalMs: durationFlag(f.statsInterval, '--stats-interval'),
    deregisterMs: durationFlag(f.deregisterTimeout, '--deregister-timeout'),
    buildTimeoutMs: durationFlag(f.buildTimeout, '--build-timeout'),
    name: f.name,
    address: f.address,
    dataDir: resolve(f.dataDir),
    driver: new DockerDriver({ socketPath: f.dockerSocket, requestTimeoutMs: durationFlag(f.engineTimeout, '--engine-timeout') }),
    cpus,
    memoryBytes,
    labels: parseLabels(f.label),
    portRange,
    ...(f.vipRange ? { vipRange: f.vipRange } : {}),
    meshKernel: f.meshKernel !== 'off',
    meshUserspace: (f.meshUserspace === 'node' ? 'node' : 'haproxy') as 'node' | 'haproxy',
    meshProxyDrainMs: durationFlag(f.meshProxyDrain, '--mesh-proxy-drain'),
    tableSweepMs: durationFlag(f.meshSweep, '--mesh-sweep'),
    egress: f.egress !== 'none',
    ...(f.dnsUpstream !== undefined ? { dnsUpstream: dnsUpstreamFlag(f.dnsUpstream) } : {}),
    ...(f.clusterDomain !== undefined ? { clusterDomain: clusterDomainFlag(f.clusterDomain) } : {}),
    pull: f.pull as 'never' | 'missing' | 'always',
    logLevel: f.logLevel,
    statusFlushMs: f.statusFlush ? Number(f.statusFlush) : undefined,
    resyncIntervalMs: f.resync ? Number(f.resync) : undefined,
  };
}

/** timingsFromEnv lets tests shorten every duration without new flags (BATON_TIMINGS='{"heartbeatIntervalMs":200}'). */
export function timingsFromEnv(): Partial<Timings> {
  const s = process.env.BATON_TIMINGS;
  if (!s) return {};
  try {
    return JSON.parse(s);
  } catch {
    throw new BatonError('BATON_ERR_BAD_REQUEST', 'BATON_TIMINGS must be a JSON object of durations in ms');
  }
}

function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = () => {
    if (stopping) return;
    stopping = true;
    stop().finally(() => process.exit(0));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** The server's address flags (`baton server`, `baton up`): task ranges and service VIPs. */
export interface NetworkFlags {
  clusterCidr?: string;
  nodeCidrSize?: string;
  serviceCidr?: string;
}

/** networkOptions reads the flags as ServerOptions; the server checks the ranges themselves at start. */
function networkOptions(f: NetworkFlags): { clusterCidr?: string; nodeCidrSize?: number; serviceCidr?: string } {
  if (f.nodeCidrSize !== undefined && !/^\d{1,2}$/.test(f.nodeCidrSize)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--node-cidr-size must be a prefix length such as 24, got "${f.nodeCidrSize}"`);
  return { clusterCidr: f.clusterCidr, nodeCidrSize: f.nodeCidrSize === undefined ? undefined : Number(f.nodeCidrSize), serviceCidr: f.serviceCidr };
}

export interface StoreFlags {
  store?: string;
  etcdEndpoints?: string;
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
  clusterKey?: string;
  initClusterKey?: boolean;
  name?: string;
  leaderTtl?: string;
}

export async function runServer(f: { dataDir: string; listen: string; logLevel?: string; tlsSan?: string[] } & NetworkFlags & StoreFlags): Promise<void> {
  const shared = await sharedStore(f);
  // The server's code is loaded only by the commands that run one: an agent process never holds it.
  const { BatonServer } = await import('../server/server.js');
  let server: BatonServer;
  try {
    server = await BatonServer.start({ dataDir: resolve(f.dataDir), listen: f.listen, logLevel: f.logLevel, timings: timingsFromEnv(), tlsSans: f.tlsSan, ...networkOptions(f), ...(shared?.options ?? {}) });
  } catch (e) {
    await shared?.close();
    throw e;
  }
  const dir = join(resolve(f.dataDir), 'server');
  process.stdout.write(
    `baton server listening on ${server.url}\ncluster ${server.clusterId}\n` +
      (shared ? `store: etcd at ${f.etcdEndpoints}; leader election as "${shared.options.election.identity}"\n` : '') +
      `CA certificate: ${join(dir, 'ca.crt')}; admin token: ${join(dir, 'admin.token')}\n` +
      `join token: ${server.joinToken}\n` +
      `addresses: tasks in ${describeNetwork(server.network)}\n` +
      `to add a node: baton agent --join ${server.url} --token ${server.joinToken} --address ADDRESS --data-dir DIR\n`,
  );
  onSignals(async () => {
    await server.stop();
    await shared?.close();
  });
}

/**
 * sharedStore reads the flags of a server that shares its store (--store
 * etcd): the store and event store on etcd, the cluster key, and the
 * election. Undefined for SQLite (the server opens it in its data dir).
 */
async function sharedStore(f: StoreFlags & { listen: string }) {
  const backend = f.store ?? 'sqlite';
  if (backend === 'sqlite') {
    for (const flag of ['etcdEndpoints', 'etcdCa', 'etcdCert', 'etcdKey', 'clusterKey'] as const) {
      if (f[flag] !== undefined) throw new BatonError('BATON_ERR_BAD_REQUEST', `--${flag.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} needs --store etcd`);
    }
    return undefined;
  }
  if (backend !== 'etcd') throw new BatonError('BATON_ERR_BAD_REQUEST', `--store must be sqlite or etcd, got "${backend}"`);
  const ttlMs = durationFlag(f.leaderTtl ?? '3s', '--leader-ttl')!;
  const etcd = await openEtcd(f, '--store etcd');
  return {
    options: { store: etcd.store, events: etcd.events, clusterKeyFile: etcd.keyFile, election: { identity: f.name ?? f.listen, ttlSeconds: Math.max(1, Math.round(ttlMs / 1000)) } },
    close: etcd.close,
  };
}

/**
 * openEtcd reads the etcd flags (endpoints, TLS files, the cluster key) and
 * connects: the store and its event store, and the cluster key's file (made
 * first with --init-cluster-key). `what` names the command in errors.
 */
export async function openEtcd(f: StoreFlags, what: string) {
  const endpoints = (f.etcdEndpoints ?? '').split(',').map((e) => e.trim()).filter(Boolean);
  if (endpoints.length === 0) throw new BatonError('BATON_ERR_BAD_REQUEST', `${what} needs --etcd-endpoints URL[,URL...]`);
  for (const e of endpoints) if (!/^https?:\/\/[^/\s]+$/.test(e)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--etcd-endpoints: "${e}" is not http(s)://host:port`);
  if (!f.clusterKey) throw new BatonError('BATON_ERR_BAD_REQUEST', `${what} needs --cluster-key FILE (every server the same; the first server of a new cluster makes it with --init-cluster-key)`);
  const keyFile = resolve(f.clusterKey);
  if (f.initClusterKey && !existsSync(keyFile)) ClusterKey.create(keyFile);
  const read = (file: string | undefined, flag: string) => {
    if (file === undefined) return undefined;
    if (!existsSync(file)) throw new BatonError('BATON_ERR_BAD_REQUEST', `${flag}: ${file} does not exist`);
    return readFileSync(file);
  };
  const tls = { ca: read(f.etcdCa, '--etcd-ca'), cert: read(f.etcdCert, '--etcd-cert'), key: read(f.etcdKey, '--etcd-key') };
  const { EtcdStore } = await import('../store/etcd/etcdStore.js');
  const { EtcdEventStore, EVENTS_ETCD_PREFIX } = await import('../store/etcd/etcdEventStore.js');
  const store = await EtcdStore.open({ endpoints, ...(tls.ca || tls.cert ? { tls } : {}) }).catch((e: Error) => {
    throw new BatonError('BATON_ERR_STORE_UNAVAILABLE', `cannot reach etcd at ${endpoints.join(',')}: ${e.message}`);
  });
  const timings = timingsFromEnv();
  // Events in a view of their own: no range or copy of the objects' keys meets them.
  const eventsView = store.view(EVENTS_ETCD_PREFIX);
  const events = await EtcdEventStore.open(eventsView, { ...(timings?.eventTtlMs ? { ttlMs: timings.eventTtlMs } : {}) });
  return {
    store,
    eventsView,
    events,
    keyFile,
    endpoints,
    close: async () => {
      await events.close?.();
      await store.close();
    },
  };
}

export async function runAgent(f: AgentFlags): Promise<void> {
  let agent: Agent | undefined;
  const opts = {
    ...agentOptions(f, f.server, f.token),
    onFatal: (err: Error) => {
      process.stderr.write(`error: ${err.message}\n`);
      void (agent?.stop() ?? Promise.resolve()).finally(() => process.exit(1));
    },
  };
  agent = new Agent(opts);
  await agent.start();
  onSignals(() => agent!.stop());
}

export interface UpFlags extends AgentFlags, NetworkFlags {
  listen: string;
  tlsSan?: string[];
  detach?: boolean;
  context: string;
}

function pidFile(dataDir: string): string {
  return join(resolve(dataDir), 'baton.pid');
}

export async function runUp(f: UpFlags, argv: string[]): Promise<void> {
  const dataDir = resolve(f.dataDir);
  const network = networkOptions(f);
  // Checked here too, so that `up -d` says what is wrong instead of pointing at the background process's log.
  taskNetwork(network.clusterCidr, network.nodeCidrSize, network.serviceCidr);
  if (f.detach) return detach(dataDir, argv, f);
  const { BatonServer } = await import('../server/server.js');
  const server = await BatonServer.start({ dataDir, listen: f.listen, logLevel: f.logLevel, timings: timingsFromEnv(), tlsSans: f.tlsSan, ...network });
  let agent: Agent | undefined;
  try {
    // The local agent joins exactly as a remote one does: token, CSR, mutual TLS. It runs a server, so its node is a
    // manager: the server, handed the agent it runs, grants the role that the agent's registration claims.
    agent = new Agent({ ...agentOptions({ ...f, dataDir: join(dataDir, 'agent') }, server.url, server.joinToken), manager: true });
    server.hostsAgent(agent.name);
    await agent.start();
  } catch (e) {
    await server.stop();
    throw e;
  }
  saveContext(f.context, { server: server.url, token: server.adminToken, ca: server.caPem, dataDir }, true);
  writeFileSync(pidFile(dataDir), `${process.pid}\n`);
  process.stdout.write(`baton is up: server ${server.url}, node ${agent.name}\ncontext "${f.context}" saved in ${join(batonHome(), 'contexts.yaml')}\n`);
  onSignals(async () => {
    await agent!.stop();
    await server.stop();
    rmSync(pidFile(dataDir), { force: true });
  });
}

async function detach(dataDir: string, argv: string[], f: UpFlags): Promise<void> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const running = readPid(dataDir);
  if (running) throw new BatonError('BATON_ERR_CONFLICT', `baton is already running (pid ${running}, data dir ${dataDir}); baton down stops it`);
  const log = join(dataDir, 'baton.log');
  const out = openSync(log, 'a');
  const bin = fileURLToPath(new URL('../../../bin/baton.js', import.meta.url));
  const args = argv.filter((a) => a !== '-d' && a !== '--detach');
  // The server's V8 flags (base/nodeFlags.ts) through NODE_OPTIONS: V8 reads them only at start.
  const child = spawn(process.execPath, [bin, ...args], { detached: true, stdio: ['ignore', out, out], env: withServerFlags(process.env) });
  child.unref();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    await sleep(200);
    if (child.exitCode !== null) break;
    if (readPid(dataDir) === child.pid) {
      process.stdout.write(`baton is up in the background (pid ${child.pid}); logs: ${log}\n`);
      return;
    }
  }
  const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n') : '';
  throw new BatonError('BATON_ERR_UNAVAILABLE', `baton did not come up (see ${log})${tail ? `:\n${tail}` : ''}`);
}

function readPid(dataDir: string): number | undefined {
  const p = pidFile(dataDir);
  if (!existsSync(p)) return undefined;
  const pid = Number(readFileSync(p, 'utf8').trim());
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

export async function runDown(f: { dataDir?: string; context?: string }): Promise<void> {
  // The cluster to stop: --data-dir, else the one the current context (or --context) was written by, else BATON_HOME's.
  const contexts = readContexts();
  const name = f.context || process.env.BATON_CONTEXT || contexts.current;
  if (f.context && !contexts.contexts[f.context]) throw new BatonError('BATON_ERR_NOT_FOUND', `context "${f.context}" not found; see baton context ls`);
  const dataDir = resolve(f.dataDir ?? (name ? contexts.contexts[name]?.dataDir : undefined) ?? batonHome());
  const pid = readPid(dataDir);
  if (!pid) {
    process.stdout.write(`baton is not running (no live pid in ${pidFile(dataDir)})\n`);
    return;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      process.stdout.write(`baton stopped (pid ${pid}); containers keep running and are adopted by the next baton up\n`);
      return;
    }
    await sleep(100);
  }
  throw new BatonError('BATON_ERR_UNAVAILABLE', `baton (pid ${pid}) did not stop within 30 s`);
}
