/**
 * HaproxyPath: the routing mesh's userspace data path for the services the
 * kernel cannot balance alone (least connections, the PROXY protocol), run
 * by HAProxy from the host's package and driven by the agent.
 *
 * The mesh's own listener keeps each published port; the agent's nftables
 * table DNATs the port's connections to a frontend of HAProxy on the same
 * address (nft.ts, a route whose one endpoint is HAProxy) while the service
 * has endpoints, and stops doing so when it has none: those connections
 * reach the Node proxy again, which holds them until an endpoint comes (or
 * hold_timeout). A DNAT keeps the client's address, so HAProxy's PROXY
 * protocol header carries it.
 *
 * The process: `haproxy -W -db` (master-worker, in the foreground) with a
 * master CLI socket in the agent's data dir, started through
 * `setpriv --pdeathsig KILL` so that it dies with the agent even when the
 * agent is killed with -9 (its workers follow their master); a pid file
 * lets the next agent remove one that outlived it anyway.
 *
 * Changes, as ingress controllers make them to keep reloads rare:
 * - an endpoint that comes is added to the running worker (`add server`),
 *   one that leaves is put in maintenance (its open connections run on)
 *   and deleted once it has none: the worker keeps its connections and its
 *   least_conn counts;
 * - a frontend that comes or goes, or a change of balancing or PROXY
 *   protocol, is a new configuration (net/haproxyConfig.ts), checked with
 *   `haproxy -c`, then a reload on the master CLI: a new worker takes the
 *   listeners, and the old one serves its open connections until they end
 *   (or the drain time passes). HAProxy cannot add a listener at run time.
 * Additions come before the kernel sends anything there (`prepare`),
 * removals after it stopped (`finish`): meshPaths.ts orders them.
 *
 * Counters: the current worker's `show stat`, plus what the workers that
 * reloads replaced had counted (read from the old worker just after the
 * reload, when it accepts no more connections; its open connections' later
 * bytes are not counted) and what deleted servers had counted.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { checkAddress } from '../nft.js';
import { addCounts, parseProc, parseStats, renderConfig, serverOptions, settled, statsCounts, type ConfigIndex, type ProcList, type ProxyCounts, type ProxyFrontend } from './haproxyConfig.js';

export type { ProxyFrontend, ProxyCounts } from './haproxyConfig.js';

const CANDIDATES = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy', '/usr/bin/haproxy'];
const SETPRIV = '/usr/bin/setpriv';

export interface HaproxyOptions {
  /** The agent's data dir: HAProxy's configuration, pid file and master socket live in `<dataDir>/haproxy`. */
  dataDir: string;
  log: Logger;
  connectTimeoutMs: number;
  /** How long a worker replaced by a reload may serve its open connections (default 30 min). */
  drainMs?: number;
  /** How long a start or a reload may take before it counts as failed (default 10 s). */
  readyTimeoutMs?: number;
  /** Called once if HAProxy exits on its own (not through close). */
  onExit?: () => void;
}

/** findHaproxy is the path of the host's haproxy binary, or undefined. */
export function findHaproxy(): string | undefined {
  return CANDIDATES.find((p) => existsSync(p));
}

/** A frontend that HAProxy listens on: where the kernel may send its connections. */
export interface Live {
  address: string;
  port: number;
}

/** One server of a backend as the current worker has it. */
interface ServerState {
  task: string;
  address: string;
  port: number;
  /** Set to maintenance: no new connection; its open ones run on until they end, then it is deleted. */
  draining: boolean;
}

/** One frontend and its backend in the current worker. */
interface BackendState {
  name: string;
  frontend: ProxyFrontend;
  servers: Map<string, ServerState>;
  next: number;
}

/** A frontend as the mesh wants it: its port is HAProxy's business. */
export type WantedFrontend = Omit<ProxyFrontend, 'port'>;

const sameEndpoint = (s: ServerState, e: ProxyFrontend['endpoints'][number]) => s.task === e.task && s.address === e.address && s.port === e.port;

export class HaproxyPath {
  private child?: ChildProcess;
  private exited = false;
  private closing = false;
  /** The current worker's PID, its configuration and its backends by frontend key. */
  private worker?: number;
  private text = '';
  private backends = new Map<string, BackendState>();
  /** A runtime command failed: the next change reloads the whole configuration. */
  private stale = false;
  /** Ports given to frontends, by key: kept while the frontend is, so a reload rebinds the same port. */
  private readonly ports = new Map<string, number>();
  /** What replaced workers and deleted servers counted. */
  private readonly carried: ProxyCounts = new Map();
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly bin: string,
    private readonly dir: string,
    private readonly socket: string,
    private readonly o: HaproxyOptions,
  ) {}

  private get cfg(): string {
    return join(this.dir, 'haproxy.cfg');
  }
  private get pidFile(): string {
    return join(this.dir, 'haproxy.pid');
  }

  /** open starts HAProxy with no frontend; a string says why it cannot run here. */
  static async open(o: HaproxyOptions): Promise<HaproxyPath | string> {
    const bin = findHaproxy();
    if (!bin) return 'haproxy is not installed (Debian package haproxy)';
    const dir = join(o.dataDir, 'haproxy');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // A Unix socket path holds at most 107 bytes; a deep data dir gets one in the temp dir, named after it.
    let socket = join(dir, 'master.sock');
    if (socket.length > 100) socket = join(tmpdir(), `baton-haproxy-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}.sock`);
    const h = new HaproxyPath(bin, dir, socket, o);
    h.removeLeftover();
    const err = await h.start();
    if (err) {
      await h.close();
      return err;
    }
    return h;
  }

  /** removeLeftover stops an HAProxy master that an earlier agent on this data dir left running (its pid file names it, and it runs our configuration). */
  private removeLeftover(): void {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8').trim());
    } catch {
      return;
    }
    if (!Number.isSafeInteger(pid) || pid <= 1) return;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (!cmd.some((a) => a.endsWith('haproxy')) || !cmd.includes(this.cfg)) return;
      process.kill(pid, 'SIGKILL');
      this.o.log.info({ pid }, 'routing mesh: stopped the HAProxy an earlier agent on this data dir left running');
    } catch {
      /* gone already */
    }
  }

  private async start(): Promise<string | undefined> {
    const { text } = renderConfig([], this.configOptions());
    writeFileSync(this.cfg, text, { mode: 0o600 });
    rmSync(this.socket, { force: true });
    const args = ['-W', '-db', '-f', this.cfg, '-S', `${this.socket},mode,600`, '-p', this.pidFile];
    const [cmd, argv] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', this.bin, ...args]] : [this.bin, args];
    const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
      for (const line of d.split('\n')) if (/\[(ALERT|WARNING)\]/.test(line)) this.o.log.warn({ haproxy: line.trim() }, 'routing mesh: HAProxy says');
    });
    child.on('error', (e) => {
      stderr += e.message;
      this.exited = true;
    });
    child.on('exit', (code, signal) => {
      this.exited = true;
      if (this.closing) return;
      this.o.log.warn({ code, signal }, 'routing mesh: HAProxy exited; the services it carried go through the Node proxy until it is back');
      this.o.onExit?.();
    });
    const up = await this.waitFor((p) => p.current.length > 0);
    if (!up) return `HAProxy did not start: ${stderr.trim().split('\n').slice(-3).join(' ') || 'no worker within the deadline'}`;
    this.text = text;
    this.worker = up.current[0];
    return undefined;
  }

  private configOptions() {
    return { connectTimeoutMs: this.o.connectTimeoutMs, drainMs: this.o.drainMs ?? 30 * 60_000, idleSocket: join(this.dir, 'idle.sock') };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * prepare makes HAProxy ready for `wanted` without taking anything away:
   * new frontends (a reload: HAProxy cannot add a listener at run time; the
   * frontends that are going stay until `finish`) and new endpoints (added
   * to the running worker, which keeps its connections and its least_conn
   * counts). It returns where each wanted frontend with an endpoint listens,
   * for the kernel to send its connections there; on a failure it says why
   * and returns what still holds.
   */
  prepare(wanted: readonly WantedFrontend[]): Promise<{ live: Map<string, Live>; err?: string }> {
    return this.serial(async () => {
      if (this.exited) return { live: new Map(), err: 'HAProxy is not running' };
      let err: string | undefined;
      const staying = [...this.backends.values()].filter((b) => !wanted.some((w) => w.key === b.frontend.key)).map((b) => ({ ...b.frontend, endpoints: ready(b) }));
      const full = await this.withPorts(wanted);
      const all = [...full, ...staying];
      if (this.stale || !sameShapes(all, [...this.backends.values()].map((b) => b.frontend))) err = await this.load(all);
      else err = await this.addServers(full);
      const live = new Map<string, Live>();
      for (const f of wanted) {
        const b = this.backends.get(f.key);
        if (b && [...b.servers.values()].some((s) => !s.draining)) live.set(f.key, { address: b.frontend.address, port: b.frontend.port });
      }
      return { live, err };
    });
  }

  /**
   * finish takes away what `wanted` no longer has, once the kernel stopped
   * sending there: endpoints that left go to maintenance (their open
   * connections run on; a server with none left is deleted, its counts
   * kept), and frontends that left go with a reload.
   */
  finish(wanted: readonly WantedFrontend[]): Promise<string | undefined> {
    return this.serial(async () => {
      if (this.exited) return 'HAProxy is not running';
      const errors: string[] = [];
      for (const f of wanted) {
        const b = this.backends.get(f.key);
        if (!b) continue;
        for (const [name, s] of b.servers) {
          if (s.draining || f.endpoints.some((e) => sameEndpoint(s, e))) continue;
          const r = await this.command(`set server ${b.name}/${name} state maint`);
          if (r) errors.push(r);
          else s.draining = true;
        }
      }
      if ([...this.backends.keys()].some((k) => !wanted.some((w) => w.key === k))) {
        const full = await this.withPorts(wanted);
        const err = await this.load(full);
        if (err) errors.push(err);
      }
      const gc = await this.deleteDrained();
      if (gc) errors.push(gc);
      for (const key of [...this.ports.keys()]) if (!this.backends.has(key)) this.ports.delete(key);
      if (errors.length) this.stale = true;
      return errors.length ? errors.join('; ') : undefined;
    });
  }

  /** withPorts gives each frontend its port (a new one: one the kernel says is free on its address now). */
  private async withPorts(wanted: readonly WantedFrontend[]): Promise<ProxyFrontend[]> {
    const out: ProxyFrontend[] = [];
    for (const f of wanted) {
      let port = this.ports.get(f.key);
      if (port === undefined) this.ports.set(f.key, (port = await freePort(f.address)));
      out.push({ ...f, port });
    }
    return out;
  }

  /** addServers adds to the running worker the endpoints it lacks (or takes back one it was draining). */
  private async addServers(frontends: readonly ProxyFrontend[]): Promise<string | undefined> {
    for (const f of frontends) {
      const b = this.backends.get(f.key);
      if (!b) continue;
      for (const e of f.endpoints) {
        if ([...b.servers.values()].some((s) => !s.draining && sameEndpoint(s, e))) continue;
        const back = [...b.servers].find(([, s]) => s.draining && sameEndpoint(s, e));
        if (back) {
          const err = await this.command(`set server ${b.name}/${back[0]} state ready`);
          if (err) return this.fail(err);
          back[1].draining = false;
          continue;
        }
        try {
          checkAddress(`HAProxy server of service ${JSON.stringify(f.service)}, endpoint ${JSON.stringify(e.task)}`, e.address, e.port);
        } catch (x) {
          return (x as Error).message;
        }
        const name = `s${b.next++}`;
        // A server added at run time starts in maintenance.
        const err = (await this.command(`add server ${b.name}/${name} ${e.address}:${e.port}${serverOptions(f.proxyProtocol)}`, 'New server registered')) ?? (await this.command(`set server ${b.name}/${name} state ready`));
        if (err) return this.fail(err);
        b.servers.set(name, { task: e.task, address: e.address, port: e.port, draining: false });
      }
    }
    return undefined;
  }

  private fail(err: string): string {
    this.stale = true;
    return err;
  }

  /** deleteDrained deletes the draining servers with no connection left, keeping what they counted. */
  private async deleteDrained(): Promise<string | undefined> {
    if (![...this.backends.values()].some((b) => [...b.servers.values()].some((s) => s.draining))) return undefined;
    const rows = await this.workerStats(this.worker).catch(() => undefined);
    if (!rows) return undefined;
    for (const b of this.backends.values()) {
      for (const [name, s] of b.servers) {
        if (!s.draining) continue;
        const row = rows.find((r) => r.pxname === b.name && r.svname === name);
        if (!row || Number(row.scur) !== 0) continue;
        const err = await this.command(`del server ${b.name}/${name}`, 'Server deleted');
        if (err) return err;
        addCounts(this.carried, settled(statsCounts([row], this.indexOf())));
        b.servers.delete(name);
      }
    }
    return undefined;
  }

  /** indexOf: which service and task each backend and server of the current worker stands for. */
  private indexOf(): ConfigIndex {
    const index: ConfigIndex = { backends: new Map() };
    for (const b of this.backends.values()) index.backends.set(b.name, { service: b.frontend.service, servers: new Map([...b.servers].map(([n, s]) => [n, s.task])) });
    return index;
  }

  /**
   * load writes `frontends` as the whole configuration, checks it, reloads
   * and waits for the new worker; the replaced worker's counts are kept. A
   * port taken since it was picked fails the reload: then once more, with
   * new ports for every frontend new in this load (HAProxy does not say
   * which one failed to bind).
   */
  private async load(frontends: ProxyFrontend[]): Promise<string | undefined> {
    let err: string | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      let rendered: { text: string; index: ConfigIndex };
      try {
        rendered = renderConfig(frontends, this.configOptions());
      } catch (e) {
        return (e as Error).message;
      }
      err = await this.reload(rendered.text);
      if (!err) {
        this.backends = new Map(
          frontends.map((f, i) => {
            const servers = new Map<string, ServerState>(f.endpoints.map((e, k) => [`s${k}`, { ...e, draining: false }]));
            return [f.key, { name: `b${i}`, frontend: f, servers, next: f.endpoints.length }];
          }),
        );
        this.stale = false;
        return undefined;
      }
      const fresh = frontends.filter((f) => !this.backends.has(f.key));
      if (fresh.length === 0) break;
      for (const f of fresh) {
        this.ports.delete(f.key);
        f.port = await freePort(f.address);
        this.ports.set(f.key, f.port);
      }
    }
    return err;
  }

  /** reload checks `text`, loads it on the master CLI and waits for the new worker; the old worker's counts are kept. */
  private async reload(text: string): Promise<string | undefined> {
    const next = `${this.cfg}.next`;
    writeFileSync(next, text, { mode: 0o600 });
    const check = await new Promise<string | undefined>((resolve) =>
      execFile(this.bin, ['-c', '-q', '-f', next], { timeout: 10_000 }, (e, _out, stderr) => resolve(e ? `HAProxy refused the configuration: ${String(stderr).trim().split('\n').slice(-2).join(' ') || e.message}` : undefined)),
    );
    if (check) return check;
    const before = parseProc(await this.cli('show proc').catch(() => ''));
    if (!before) return "HAProxy's master CLI does not answer";
    const oldIndex = this.indexOf();
    const snapshot = await this.workerStats(before.current[0]).catch(() => undefined);
    renameSync(next, this.cfg);
    await this.cli('reload').catch(() => '');
    const after = await this.waitFor((p) => p.failed > before.failed || (p.current.length > 0 && !p.current.some((pid) => before.current.includes(pid))));
    if (!after || after.failed > before.failed || after.current.length === 0) {
      // The master keeps the old worker serving; put back the configuration it runs, for the next reload to start from.
      writeFileSync(this.cfg, this.text, { mode: 0o600 });
      return after ? 'HAProxy could not load the new configuration (a port taken meanwhile?)' : 'HAProxy did not take the new configuration within the deadline';
    }
    // The replaced worker accepts nothing more: what it counted now is final but for its open connections' bytes.
    const final = (await Promise.all(before.current.map((pid) => this.workerStats(pid).catch(() => undefined)))).filter((s) => s !== undefined);
    // Its connections still open are no longer counted as open (only the current worker is read from now on).
    addCounts(this.carried, settled(statsCounts(final.length ? final.flat() : (snapshot ?? []), oldIndex)));
    this.text = text;
    this.worker = after.current[0];
    return undefined;
  }

  private async workerStats(pid: number | undefined): Promise<Record<string, string>[]> {
    if (pid === undefined) return [];
    const out = await this.cli(`@!${pid} show stat`);
    if (!out.startsWith('# ')) throw new Error('no statistics');
    return parseStats(out);
  }

  /** command runs one runtime command on the current worker; it fails unless the answer is empty or starts with `ok`. */
  private async command(cmd: string, ok = ''): Promise<string | undefined> {
    const out = (await this.cli(`@!${this.worker} ${cmd}`).catch((e: Error) => `(${e.message})`)).trim();
    return out === '' || (ok !== '' && out.startsWith(ok)) ? undefined : `HAProxy refused "${cmd.split(' ').slice(0, 2).join(' ')}": ${out.split('\n')[0]}`;
  }

  /** carriedCounts: what replaced workers and deleted servers counted (what stays known if HAProxy dies). */
  carriedCounts(): ProxyCounts {
    const out: ProxyCounts = new Map();
    addCounts(out, this.carried);
    return out;
  }

  /** counts: connections, bytes, errors and retries per service and task through HAProxy since the agent started it. */
  counts(): Promise<ProxyCounts> {
    return this.serial(async () => {
      const out: ProxyCounts = new Map();
      addCounts(out, this.carried);
      if (this.exited) return out;
      const rows = await this.workerStats(this.worker).catch(() => []);
      addCounts(out, statsCounts(rows, this.indexOf()));
      return out;
    });
  }

  /** close stops HAProxy at once (its connections end with the agent's, as the Node proxy's would). */
  async close(): Promise<void> {
    this.closing = true;
    const child = this.child;
    if (!child || this.exited) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(timer);
    rmSync(this.socket, { force: true });
    rmSync(this.pidFile, { force: true });
  }

  /** waitFor polls `show proc` until `ok` holds (undefined at the deadline or if HAProxy exits). */
  private async waitFor(ok: (p: ProcList) => boolean): Promise<ProcList | undefined> {
    const deadline = Date.now() + (this.o.readyTimeoutMs ?? 10_000);
    while (Date.now() < deadline && !this.exited) {
      const p = parseProc(await this.cli('show proc').catch(() => ''));
      if (p && ok(p)) return p;
      await new Promise((r) => setTimeout(r, 20));
    }
    return undefined;
  }

  /** cli sends one command to the master CLI and returns the whole answer. */
  private cli(command: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const c = connect(this.socket);
      let out = '';
      c.setEncoding('utf8');
      c.setTimeout(5000, () => c.destroy(new Error(`HAProxy's master CLI did not answer ${command.split(' ')[0]}`)));
      c.on('data', (d: string) => (out += d));
      c.on('error', reject);
      c.on('close', (hadError) => {
        if (!hadError) resolve(out);
      });
      c.end(command + '\n');
    });
  }
}

/** ready: a backend's servers that take new connections, as endpoints. */
function ready(b: BackendState): ProxyFrontend['endpoints'] {
  return [...b.servers.values()].filter((s) => !s.draining).map((s) => ({ task: s.task, address: s.address, port: s.port }));
}

/** sameShapes: the same frontends (key, address, port, balancing, PROXY protocol), whatever their endpoints. */
function sameShapes(a: readonly ProxyFrontend[], b: readonly ProxyFrontend[]): boolean {
  const shape = (f: ProxyFrontend) => `${f.key} ${f.address}:${f.port} ${f.algorithm} ${f.proxyProtocol}`;
  const sa = a.map(shape).sort();
  const sb = b.map(shape).sort();
  return sa.length === sb.length && sa.every((x, i) => x === sb[i]);
}

/** freePort is a TCP port free on `address` just now (the kernel's pick). */
function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host: address, port: 0, exclusive: true }, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
