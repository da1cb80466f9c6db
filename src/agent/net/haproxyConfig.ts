/**
 * The pure half of the mesh's HAProxy data path (net/haproxy.ts): the
 * configuration an agent hands HAProxy for the frontends it steers there,
 * and the reading of HAProxy's statistics back into the mesh's counters.
 *
 * Nothing received is written into the configuration as text: frontends,
 * backends and servers are named by their index (`f3`, `b3`, `s0`), and
 * every address and port is checked (an IPv4 address, an integer in
 * 1..65535) before it is written; a service's or a task's name never is.
 * The index tables that come back with the text map HAProxy's names to the
 * mesh's again.
 */
import { addCounters, zero, type RouteCounters } from '../meshRoutes.js';
import { checkAddress } from '../nft.js';

/** One frontend: a published port (or loopback VIP port) whose connections the kernel steers to HAProxy. */
export interface ProxyFrontend {
  /** The mesh listener's `<address>:<port>`: the frontend's identity from one sync to the next. */
  key: string;
  service: string;
  /** Where HAProxy listens: the listener's own address, at a port of HAProxy's own (assigned by the caller). */
  address: string;
  port: number;
  algorithm: 'round_robin' | 'least_conn';
  proxyProtocol: 'off' | 'v1' | 'v2';
  endpoints: { task: string; address: string; port: number }[];
}

export interface ConfigOptions {
  /** How long a connect to an endpoint may take before HAProxy retries (ms). */
  connectTimeoutMs: number;
  /** How long a worker replaced by a reload may keep serving its open connections (ms). */
  drainMs: number;
  /** A Unix socket path that the configuration always listens on (a configuration without a listener does not start). */
  idleSocket: string;
}

/** Which service and task a backend and server of a rendered configuration stand for. */
export interface ConfigIndex {
  backends: Map<string, { service: string; servers: Map<string, string> }>;
}

const ms = (n: number, what: string): string => {
  if (!Number.isInteger(n) || n < 1 || n > 2 ** 31 - 1) throw new Error(`${what} ${n} is not a whole number of milliseconds`);
  return `${n}ms`;
};

/**
 * renderConfig is the whole configuration for `frontends`. Each frontend
 * balances over its endpoints as the service asks (round robin, least
 * connections), writes the PROXY protocol header when asked, and retries a
 * failed connect twice on another endpoint (`option redispatch`), as the
 * Node proxy does. No idle timeout cuts a connection (the Node proxy has
 * none either); no health check runs (Endpoints lists ready tasks only); no log is
 * written.
 * It throws, naming the frontend, on an address or port it would not write.
 */
export function renderConfig(frontends: readonly ProxyFrontend[], o: ConfigOptions): { text: string; index: ConfigIndex } {
  if (!/^\/[A-Za-z0-9._/-]{1,200}$/.test(o.idleSocket)) throw new Error(`idle socket path ${JSON.stringify(o.idleSocket)} is not a plain absolute path`);
  const index: ConfigIndex = { backends: new Map() };
  const lines = [
    'global',
    `  hard-stop-after ${ms(o.drainMs, 'drain')}`,
    'defaults',
    '  mode tcp',
    `  timeout connect ${ms(o.connectTimeoutMs, 'connect timeout')}`,
    // No idle timeout to speak of: a connection lasts as long as its ends keep it, as through the Node proxy
    // (24 days is HAProxy's longest; 0 would mean none, which it warns about).
    '  timeout client 24d',
    '  timeout server 24d',
    '  retries 2',
    '  option redispatch 1',
    'frontend idle',
    `  bind unix@${o.idleSocket}`,
    '  tcp-request connection reject',
  ];
  frontends.forEach((f, i) => {
    const what = `HAProxy frontend of service ${JSON.stringify(f.service)} (${f.key})`;
    checkAddress(what, f.address, f.port);
    const servers = new Map<string, string>();
    index.backends.set(`b${i}`, { service: f.service, servers });
    lines.push(`frontend f${i}`, `  bind ${f.address}:${f.port}`, `  default_backend b${i}`);
    lines.push(`backend b${i}`, `  balance ${f.algorithm === 'least_conn' ? 'leastconn' : 'roundrobin'}`);
    const proxy = serverOptions(f.proxyProtocol);
    f.endpoints.forEach((e, k) => {
      checkAddress(`${what}, endpoint ${JSON.stringify(e.task)}`, e.address, e.port);
      servers.set(`s${k}`, e.task);
      lines.push(`  server s${k} ${e.address}:${e.port}${proxy}`);
    });
  });
  return { text: lines.join('\n') + '\n', index };
}

/** serverOptions: what a server line (or an `add server` command) of a backend with this PROXY protocol setting ends with. */
export function serverOptions(proxyProtocol: ProxyFrontend['proxyProtocol']): string {
  return proxyProtocol === 'v1' ? ' send-proxy' : proxyProtocol === 'v2' ? ' send-proxy-v2' : '';
}

/** Counters of one service through HAProxy: its totals and each endpoint's. */
export type ProxyCounts = Map<string, { total: RouteCounters; byTask: Map<string, RouteCounters> }>;

/** parseStats reads `show stat`'s CSV into rows of named fields. */
export function parseStats(csv: string): Record<string, string>[] {
  const lines = csv.split('\n').filter((l) => l.trim() !== '');
  const head = lines.shift();
  if (!head?.startsWith('# ')) return [];
  const names = head.slice(2).split(',');
  return lines.map((l) => {
    const cells = l.split(',');
    return Object.fromEntries(names.map((n, i) => [n, cells[i] ?? '']));
  });
}

const num = (v: string | undefined): number => {
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : 0;
};

/**
 * statsCounts turns the rows of one worker's `show stat` into counters per
 * service and task, through the index of the configuration that worker
 * runs. A server's connections are the sessions it kept (sessions given to
 * it, less those redispatched elsewhere after its connect failed); its
 * errors are its failed connects; a backend's retries are its retries and
 * redispatches; dropped, the sessions whose last connect failed
 * too (the backend's connection errors). Connect time: HAProxy
 * keeps an average over the last 1,024 connections and a maximum, so the
 * sum is that average times the connections.
 */
export function statsCounts(rows: readonly Record<string, string>[], index: ConfigIndex): ProxyCounts {
  const out: ProxyCounts = new Map();
  const of = (service: string) => {
    let o = out.get(service);
    if (!o) out.set(service, (o = { total: zero(), byTask: new Map() }));
    return o;
  };
  for (const row of rows) {
    const b = index.backends.get(row.pxname ?? '');
    if (!b) continue;
    const o = of(b.service);
    if (row.svname === 'BACKEND') {
      o.total.connections += num(row.stot);
      o.total.active += num(row.scur);
      o.total.bytesIn += num(row.bin);
      o.total.bytesOut += num(row.bout);
      o.total.retries += num(row.wretr) + num(row.wredis);
      o.total.dropped += num(row.econ);
      continue;
    }
    const task = b.servers.get(row.svname ?? '');
    if (task === undefined) continue;
    const c = zero();
    c.connections = Math.max(0, num(row.stot) - num(row.wredis));
    c.active = num(row.scur);
    c.bytesIn = num(row.bin);
    c.bytesOut = num(row.bout);
    c.errors = num(row.econ) + num(row.wretr) + num(row.wredis);
    c.connectMsSum = num(row.ctime) * c.connections;
    c.connectMsMax = num(row.ctime_max);
    o.total.errors += c.errors;
    o.total.connectMsSum += c.connectMsSum;
    o.total.connectMsMax = Math.max(o.total.connectMsMax, c.connectMsMax);
    addTo(o.byTask, task, c);
  }
  return out;
}

/** addTo adds a task's counters into `byTask` (a copy when the task is new there). */
function addTo(byTask: Map<string, RouteCounters>, task: string, c: RouteCounters): void {
  const was = byTask.get(task);
  if (was) addCounters(was, c);
  else byTask.set(task, { ...c });
}

/** settled: `c` as kept once its worker or server is gone from view: what it counted, with no connection counted as open. */
export function settled(c: ProxyCounts): ProxyCounts {
  for (const o of c.values()) {
    o.total.active = 0;
    for (const t of o.byTask.values()) t.active = 0;
  }
  return c;
}

/** addCounts adds `b` into `a`. */
export function addCounts(a: ProxyCounts, b: ProxyCounts): void {
  for (const [svc, o] of b) {
    let t = a.get(svc);
    if (!t) a.set(svc, (t = { total: zero(), byTask: new Map() }));
    addCounters(t.total, o.total);
    for (const [task, c] of o.byTask) addTo(t.byTask, task, c);
  }
}

/** Workers as the master CLI's `show proc` lists them. */
export interface ProcList {
  reloads: number;
  failed: number;
  current: number[];
  old: number[];
}

/** parseProc reads `show proc`: the master's reload and failure counts, the current workers' and the old workers' PIDs. */
export function parseProc(text: string): ProcList | undefined {
  const out: ProcList = { reloads: 0, failed: 0, current: [], old: [] };
  let section: 'master' | 'current' | 'old' | 'other' = 'master';
  let sawMaster = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('# workers')) section = 'current';
    else if (line.startsWith('# old workers')) section = 'old';
    else if (line.startsWith('#')) section = line.startsWith('#<PID>') ? 'master' : 'other';
    else {
      const m = /^(\d+)\s+(master|worker)\s+(\d+)(?:\s+\[failed: (\d+)\])?/.exec(line);
      if (!m) continue;
      if (m[2] === 'master') {
        sawMaster = true;
        out.reloads = Number(m[3]);
        out.failed = Number(m[4] ?? 0);
      } else if (section === 'current') out.current.push(Number(m[1]));
      else if (section === 'old') out.old.push(Number(m[1]));
    }
  }
  return sawMaster ? out : undefined;
}
