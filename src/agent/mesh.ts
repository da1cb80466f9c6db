/**
 * Mesh is a node's routing mesh (Swarm's ingress, kube-proxy's userspace
 * mode), fed by Endpoints objects only:
 *
 * - every published port (mode ingress) of every service listens on this
 *   node's address and forwards each connection to one of the service's
 *   ready endpoints, on any node;
 * - every service gets a VIP from the cluster's service range, routed for
 *   this node's tasks by its kernel table (to the endpoints, or to a proxy
 *   of this mesh on the task network's gateway); the node's resolver answers
 *   its names with it; host-networked tasks get a loopback VIP on this node
 *   instead, through their hosts entries (`hostsFor`);
 * - round robin (default) or least connections; the client's address in a
 *   PROXY protocol v1/v2 header when asked; a failed connect is retried twice
 *   (no byte has reached the client yet): on another endpoint at once, or on
 *   the same one after 100 ms and 200 ms when it is the only one; with no
 *   endpoint a connection is held up to hold_timeout, waiting for one;
 * - endpoints that leave get no new connections; their open connections run
 *   on until they close (drained by the task's stop grace period);
 * - counters per service and per endpoint: connections, active, bytes,
 *   errors, retries, held, connect latency;
 * - the Endpoints revision it has applied (routes and kernel rules both in
 *   effect), for the server to tell a stopping task when no node routes to
 *   it any more (deregistration.ts).
 *
 * A service that needs only round robin over endpoints it has takes the
 * kernel fast path (nft.ts: nftables DNAT in a table this agent owns) and its
 * connections never reach this process; the userspace listener stays for
 * the moments it has no endpoint (it holds) and for the other services.
 */
import { createServer, connect, isIPv4, isIPv6, type Server, type Socket } from 'node:net';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Informer } from '../api/informer.js';
import type { ApiClient } from '../api/client.js';
import { endpointsKind } from '../api/kinds.js';
import type { EndpointAddress, Endpoints, EndpointsSpec } from '../api/types.js';
import { NftPath, type KernelRoute } from './nft.js';
import { TableSweeper } from './net/tables.js';

export interface MeshOptions {
  /** This node's name and its cluster's id: they name the node's nftables table. */
  node: string;
  cluster: string;
  /** This node's address: published ports listen here. */
  address: string;
  /** This node's task range: the kernel path masquerades connections it sends elsewhere (to another node) unless they come from it. */
  taskRange?: string;
  /** Route plain round-robin services in the kernel (nftables DNAT) when it can (default true). */
  kernel?: boolean;
  /** How often the tables of this cluster's agents that are gone (killed) are removed from the host (default 10 s; also at once at start). */
  tableSweepMs?: number;
  /** Where this node's VIPs come from: a.b.c.0/24 or a.b.0.0/16 inside 127.0.0.0/8. */
  vipRange: string;
  /** VIP assignments are kept here so they survive an agent restart. */
  dataDir: string;
  log: Logger;
  /** How long a connect to an endpoint may take before it counts as failed (default 2 s). */
  connectTimeoutMs?: number;
  /**
   * This node's task network, when it has one: service VIPs are routed for
   * the tasks on its bridge (in the kernel), to the endpoints or to this
   * mesh's proxy listening on the gateway.
   */
  taskNetwork?: { bridge: string; gateway: string };
  /** Whether a client (by address) may reach a service through its VIP: a task only on a network it shares (default: anyone). */
  admit?: (client: string, service: EndpointsSpec) => boolean;
}

/** Counters of one endpoint, or of a whole service. */
export interface RouteCounters {
  connections: number;
  active: number;
  bytesIn: number;
  bytesOut: number;
  /** Connects that failed (refused, timed out). */
  errors: number;
  /** Connections dropped: no endpoint within hold_timeout, or the retry failed too. */
  dropped: number;
  retries: number;
  /** Connections that waited for an endpoint. */
  held: number;
  connectMsSum: number;
  connectMsMax: number;
}

const zero = (): RouteCounters => ({ connections: 0, active: 0, bytesIn: 0, bytesOut: 0, errors: 0, dropped: 0, retries: 0, held: 0, connectMsSum: 0, connectMsMax: 0 });

interface Route {
  spec: EndpointsSpec;
  next: number;
  /** Open connections per endpoint (task name), for least_conn. */
  open: Map<string, number>;
  waiters: Set<() => void>;
  total: RouteCounters;
  byTask: Map<string, RouteCounters>;
}

interface Listening {
  server: Server;
  service: string;
  target: number;
}

/** A service VIP's proxy for one container port: listening on the task network's gateway, at a port the kernel sends it to. */
interface VipProxy {
  server: Server;
  service: string;
  target: number;
  /** Known once it listens. */
  port?: number;
}

/** A connection's connects that may fail before it is dropped: the first try and this many more (no byte has reached the client yet). */
const CONNECT_RETRIES = 2;

/**
 * hostPortOf is the host port that endpoint `e` serves container port
 * `target` on, when its address is an IPv4 address and the port a port
 * number: Endpoints carry what agents reported, and nothing received goes
 * into a ruleset or a connect unchecked.
 */
export function hostPortOf(e: EndpointAddress, target: number): number | undefined {
  const p = e.ports[String(target)];
  return isIPv4(e.address) && Number.isInteger(p) && p! >= 1 && p! <= 65535 ? p : undefined;
}

/**
 * dialOf is where the mesh connects for endpoint `e`'s container port
 * `target`: a task in a namespace of its own answers on its own address
 * and its container port (reached through its node's task range, which
 * every node routes); a task on its node's network, at the node's address
 * and the host port it was given. Undefined when neither is usable.
 */
export function dialOf(e: EndpointAddress, target: number): { host: string; port: number } | undefined {
  if (e.taskIP !== undefined) return isIPv4(e.taskIP) && Number.isInteger(target) && target >= 1 && target <= 65535 ? { host: e.taskIP, port: target } : undefined;
  const p = hostPortOf(e, target);
  return p === undefined ? undefined : { host: e.address, port: p };
}

/** defaultVipRange gives each node its own /24 for VIPs, from its address: 127.0.b.c → 127.(64 + b % 64).c.0/24. */
export function defaultVipRange(address: string): string {
  const m = /^127\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  const b = m ? Number(m[2]) : 0;
  const c = m ? Number(m[3]) : 1;
  return `127.${64 + (b % 64)}.${c}.0/24`;
}

/** vipPool lists the addresses of a range, skipping network and broadcast-like ends. */
function vipPool(range: string): string[] {
  const m = /^127\.(\d+)\.(\d+)\.0\/(16|24)$/.exec(range);
  if (!m) throw new Error(`VIP range ${range} must be 127.X.Y.0/24 or 127.X.0.0/16`);
  const [x, y, bits] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const out: string[] = [];
  const thirds = bits === 24 ? [y] : Array.from({ length: 256 }, (_, i) => i);
  for (const t of thirds) for (let d = 1; d < 255; d++) out.push(`127.${x}.${t}.${d}`);
  return out;
}

/** proxyHeader is the PROXY protocol header (v1 text or v2 binary) for a client connection. */
export function proxyHeader(version: 'v1' | 'v2', sock: Socket): Buffer {
  const src = sock.remoteAddress ?? '127.0.0.1';
  const dst = sock.localAddress ?? '127.0.0.1';
  const sp = sock.remotePort ?? 0;
  const dp = sock.localPort ?? 0;
  const v6 = isIPv6(src) && !src.startsWith('::ffff:');
  const plain = (a: string) => (a.startsWith('::ffff:') ? a.slice(7) : a);
  if (version === 'v1') return Buffer.from(`PROXY ${v6 ? 'TCP6' : 'TCP4'} ${plain(src)} ${plain(dst)} ${sp} ${dp}\r\n`, 'latin1');
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addr = v6 ? Buffer.concat([ipv6Bytes(src), ipv6Bytes(dst)]) : Buffer.from([...plain(src).split('.').map(Number), ...plain(dst).split('.').map(Number)]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sp, 0);
  ports.writeUInt16BE(dp, 2);
  const head = Buffer.alloc(4);
  head[0] = 0x21; // version 2, PROXY command
  head[1] = v6 ? 0x21 : 0x11; // TCP over IPv6 / IPv4
  head.writeUInt16BE(addr.length + 4, 2);
  return Buffer.concat([sig, head, addr, ports]);
}

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return b;
}

export class Mesh {
  private readonly routes = new Map<string, Route>();
  private readonly listening = new Map<string, Listening>();
  /** Service VIP proxies, by `<service>:<target>`. */
  private readonly vipProxies = new Map<string, VipProxy>();
  private readonly vips = new Map<string, string>();
  private readonly pool: string[];
  private informer?: Informer;
  private closed = false;
  private kernel?: NftPath;
  private sweeper?: TableSweeper;
  private kernelSync?: Promise<void>;
  private kernelDirty = false;
  /** The store revision of the Endpoints this mesh's routes reflect (userspace), and of those in effect, kernel rules included. */
  private seen = 0;
  private applied = 0;
  /** The newest Endpoints change this mesh has seen: an object's modRevision or a deletion's revision. */
  private changed = 0;
  private readonly appliedListeners = new Set<(revision: number) => void>();
  private readonly changeListeners = new Set<() => void>();

  constructor(
    private readonly client: ApiClient,
    private readonly opts: MeshOptions,
  ) {
    this.pool = vipPool(opts.vipRange);
    const file = this.vipFile();
    if (existsSync(file)) {
      try {
        for (const [svc, vip] of Object.entries(JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>)) if (this.pool.includes(vip)) this.vips.set(svc, vip);
      } catch {
        /* a damaged file only costs new VIPs */
      }
    }
  }

  get synced(): boolean {
    return this.informer?.synced ?? false;
  }

  async start(): Promise<void> {
    if (this.opts.kernel !== false) {
      const k = await NftPath.open(this.opts.node, this.opts.cluster, this.opts.taskRange).catch((e: Error) => e.message);
      if (typeof k === 'string') this.opts.log.info({ why: k }, 'routing mesh: no kernel fast path; every connection goes through the userspace proxy');
      else {
        this.kernel = k;
        this.sweeper = new TableSweeper(this.opts.cluster, k.table, this.opts.tableSweepMs ?? 10_000, (removed, err) => {
          if (removed.length) this.opts.log.info({ tables: removed }, 'routing mesh: removed the nftables tables of agents that are gone');
          if (err) this.opts.log.debug({ err: err.message }, 'routing mesh: could not sweep the nftables tables of agents that are gone');
        });
        this.sweeper.start();
      }
    }
    this.informer = new Informer(this.client, endpointsKind, {
      onSync: (objs) => {
        let newest = 0;
        for (const o of objs.values()) {
          this.apply(o as Endpoints);
          newest = Math.max(newest, Number((o as Endpoints).metadata.resourceVersion) || 0);
        }
        this.commit(newest);
      },
      onEvent: (type, o: Endpoints) => {
        if (type === 'DELETED') this.remove(o.metadata.name);
        else this.apply(o);
        // A deletion happened at the informer's revision: the event's, or the list's that revealed it (at or before it).
        this.commit(type === 'DELETED' ? this.informerRevision() : Number(o.metadata.resourceVersion) || 0);
      },
      onError: (err) => this.opts.log.debug({ err: err.message }, 'endpoints watch interrupted; reconnecting'),
    });
    this.informer.start();
  }

  /** stop closes every listener; open connections run on until they end. */
  async stop(): Promise<void> {
    this.closed = true;
    await this.informer?.stop();
    for (const l of this.listening.values()) l.server.close();
    this.listening.clear();
    for (const p of this.vipProxies.values()) p.server.close();
    this.vipProxies.clear();
    for (const r of this.routes.values()) for (const w of r.waiters) w();
    await this.sweeper?.stop();
    await this.kernelSync;
    await this.kernel?.close();
  }

  /** hostsFor is the hosts entries a task of `stack` gets: its stack's services by short name, every service by full name. */
  hostsFor(stack: string): string[] {
    const out: string[] = [];
    for (const [name, r] of this.routes) {
      const vip = this.vips.get(name);
      if (!vip) continue;
      out.push(`${name}:${vip}`);
      if (stack && r.spec.stack === stack && r.spec.shortName !== name) out.push(`${r.spec.shortName}:${vip}`);
    }
    return out.sort();
  }

  /** hostsWhenSynced is hostsFor once the first list of Endpoints is in (at most 3 s), so a task started at once still finds its siblings. */
  async hostsWhenSynced(stack: string): Promise<string[]> {
    for (let waited = 0; !this.synced && !this.closed && waited < 3000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    return this.hostsFor(stack);
  }

  /**
   * appliedRevision: every Endpoints change up to this store revision is in
   * effect on this node, in the userspace proxy and in the kernel's rules.
   */
  get appliedRevision(): number {
    return this.applied;
  }

  /**
   * changeRevision: the revision of the newest Endpoints change this mesh has
   * seen. A task that this mesh no longer routes to left its endpoints at or
   * before it, so a node whose appliedRevision reached it routes there no
   * more either (every mesh sees every Endpoints change, in order).
   */
  get changeRevision(): number {
    return this.changed;
  }

  /** onDidApply calls fn with appliedRevision each time it grows; returns an unsubscribe. */
  onDidApply(fn: (revision: number) => void): () => void {
    this.appliedListeners.add(fn);
    return () => this.appliedListeners.delete(fn);
  }

  /** specs: every service's Endpoints as this mesh has them. */
  *specs(): Iterable<EndpointsSpec> {
    for (const r of this.routes.values()) yield r.spec;
  }

  /** spec: one service's Endpoints as this mesh has them. */
  spec(service: string): EndpointsSpec | undefined {
    return this.routes.get(service)?.spec;
  }

  /** onDidChange calls fn after each change of any service's Endpoints (a list, an event); returns an unsubscribe. */
  onDidChange(fn: () => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  /** routesTo: this node's mesh may still send new connections of `service` to `task`. */
  routesTo(service: string, task: string): boolean {
    return this.routes.get(service)?.spec.endpoints.some((e) => e.task === task) ?? false;
  }

  vipOf(service: string): string | undefined {
    return this.vips.get(service);
  }

  /** counters: per service, its totals and each endpoint's; connections the kernel routed are counted too (their bytes are not). */
  async counters(): Promise<Record<string, { total: RouteCounters; endpoints: Record<string, RouteCounters> }>> {
    const out: Record<string, { total: RouteCounters; endpoints: Record<string, RouteCounters> }> = {};
    for (const [name, r] of this.routes) out[name] = { total: { ...r.total }, endpoints: Object.fromEntries([...r.byTask].map(([t, c]) => [t, { ...c }])) };
    for (const [svc, k] of (await this.kernel?.counts()) ?? []) {
      const o = (out[svc] ??= { total: zero(), endpoints: {} });
      o.total.connections += k.total;
      for (const [task, n] of k.byTask) (o.endpoints[task] ??= zero()).connections += n;
    }
    return out;
  }

  /** kernelRoutes: the listeners whose service needs nothing but round robin, with the endpoints to spread over. */
  private kernelRoutes(): KernelRoute[] {
    const out: KernelRoute[] = [];
    for (const [key, l] of this.listening) {
      const r = this.routes.get(l.service);
      if (!r || r.spec.lb.algorithm !== 'round_robin' || r.spec.lb.proxyProtocol !== 'off') continue;
      const endpoints = r.spec.endpoints.flatMap((e) => {
        const d = dialOf(e, l.target);
        return d ? [{ task: e.task, address: d.host, port: d.port }] : [];
      });
      if (endpoints.length === 0) continue;
      const i = key.lastIndexOf(':');
      out.push({ service: l.service, address: key.slice(0, i), port: Number(key.slice(i + 1)), endpoints });
    }
    out.push(...this.vipRoutes());
    return out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
  }

  /**
   * vipRoutes: each service VIP's container ports, for packets from this
   * node's tasks (its bridge): round robin over the endpoints in the kernel
   * when that is all the service needs, else to this mesh's proxy on the
   * gateway (holding, least_conn, the PROXY protocol).
   */
  private vipRoutes(): KernelRoute[] {
    const net = this.opts.taskNetwork;
    if (!net) return [];
    const out: KernelRoute[] = [];
    for (const p of this.vipProxies.values()) {
      const r = this.routes.get(p.service);
      const vip = r?.spec.vip;
      if (!r || !vip || !isIPv4(vip)) continue;
      const kernel = r.spec.lb.algorithm === 'round_robin' && r.spec.lb.proxyProtocol === 'off';
      const endpoints = kernel
        ? r.spec.endpoints.flatMap((e) => {
            const d = dialOf(e, p.target);
            return d ? [{ task: e.task, address: d.host, port: d.port }] : [];
          })
        : [];
      if (endpoints.length === 0) {
        if (p.port === undefined) continue;
        endpoints.push({ task: '', address: net.gateway, port: p.port });
      }
      out.push({ service: p.service, address: vip, port: p.target, iif: net.bridge, endpoints });
    }
    return out;
  }

  private informerRevision(): number {
    return Number(this.informer?.revision ?? 0) || 0;
  }

  /**
   * commit records what the informer just delivered (a list, or one event,
   * whose newest change is at `changed`) and puts it in effect: at once in
   * userspace, then in the kernel, after which it counts as applied.
   */
  private commit(changed: number): void {
    if (changed > this.changed) this.changed = changed;
    this.seen = Math.max(this.seen, this.informerRevision());
    for (const fn of this.changeListeners) fn();
    if (this.kernel) this.syncKernel();
    else this.markApplied(this.seen);
  }

  private markApplied(revision: number): void {
    if (revision <= this.applied) return;
    this.applied = revision;
    for (const fn of this.appliedListeners) fn(revision);
  }

  /**
   * syncKernel brings the node's nftables table in line, one load at a time
   * (changes meanwhile are folded into the next); a load that succeeds puts
   * the revision its routes were read at in effect. One that fails leaves
   * the old rules routing, so that revision is not applied.
   */
  private syncKernel(): void {
    if (!this.kernel || this.closed) return;
    this.kernelDirty = true;
    if (this.kernelSync) return;
    this.kernelSync = (async () => {
      // Everything delivered in this turn (a whole list) goes into the same load.
      await null;
      while (this.kernelDirty && !this.closed) {
        this.kernelDirty = false;
        const revision = this.seen;
        const err = await this.kernel!.sync(this.kernelRoutes());
        if (err) this.opts.log.warn({ err }, 'routing mesh: the kernel fast path could not be updated; the userspace proxy carries on');
        else this.markApplied(revision);
      }
      this.kernelSync = undefined;
    })();
  }

  // ------------------------------------------------------------ following endpoints

  private apply(e: Endpoints): void {
    if (this.closed) return;
    const name = e.metadata.name;
    let r = this.routes.get(name);
    if (!r) this.routes.set(name, (r = { spec: e.spec, next: 0, open: new Map(), waiters: new Set(), total: zero(), byTask: new Map() }));
    r.spec = e.spec;
    const vip = this.vipFor(name);
    const want = new Map<string, number>();
    for (const p of e.spec.published) want.set(`${this.opts.address}:${p.published}`, p.target);
    if (vip) for (const t of e.spec.targets) want.set(`${vip}:${t}`, t);
    for (const [key, l] of this.listening) {
      if (l.service === name && want.get(key) !== l.target) {
        l.server.close();
        this.listening.delete(key);
      }
    }
    for (const [key, target] of want) if (!this.listening.has(key)) this.listen(key, name, target);
    const vipTargets = new Set(this.opts.taskNetwork && e.spec.vip ? e.spec.targets : []);
    for (const [key, p] of this.vipProxies) {
      if (p.service === name && !vipTargets.has(p.target)) {
        p.server.close();
        this.vipProxies.delete(key);
      }
    }
    for (const t of vipTargets) if (!this.vipProxies.has(`${name}:${t}`)) this.listenVip(name, t);
    // Held connections go as soon as there is somewhere to go.
    if (e.spec.endpoints.length) for (const w of [...r.waiters]) w();
    // Counters of endpoints long gone (and idle) are dropped.
    const present = new Set(e.spec.endpoints.map((x) => x.task));
    for (const [task, c] of r.byTask) if (!present.has(task) && c.active === 0) r.byTask.delete(task);
    for (const [task, n] of r.open) if (!present.has(task) && n <= 0) r.open.delete(task);
  }

  private remove(name: string): void {
    for (const [key, l] of this.listening) {
      if (l.service !== name) continue;
      l.server.close();
      this.listening.delete(key);
    }
    for (const [key, p] of this.vipProxies) {
      if (p.service !== name) continue;
      p.server.close();
      this.vipProxies.delete(key);
    }
    const r = this.routes.get(name);
    this.routes.delete(name);
    if (r) for (const w of r.waiters) w();
    if (this.vips.delete(name)) this.saveVips();
  }

  private vipFor(service: string): string | undefined {
    let vip = this.vips.get(service);
    if (vip) return vip;
    const used = new Set(this.vips.values());
    vip = this.pool.find((a) => !used.has(a));
    if (!vip) {
      this.opts.log.warn({ service, range: this.opts.vipRange }, 'no VIP left in this node\'s range; the service is not reachable by name here');
      return undefined;
    }
    this.vips.set(service, vip);
    this.saveVips();
    return vip;
  }

  private vipFile(): string {
    return join(this.opts.dataDir, 'vips.json');
  }

  private saveVips(): void {
    try {
      writeFileSync(this.vipFile(), JSON.stringify(Object.fromEntries(this.vips)) + '\n');
    } catch (e) {
      this.opts.log.warn({ err: String(e) }, 'could not save VIP assignments');
    }
  }

  private listen(key: string, service: string, target: number): void {
    const i = key.lastIndexOf(':');
    const host = key.slice(0, i);
    const port = Number(key.slice(i + 1));
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (sock) => this.accept(sock, service, target));
    server.on('error', (err: Error & { code?: string }) => {
      this.opts.log.warn({ service, listen: key, err: err.code ?? err.message }, 'routing mesh cannot listen; the port stays unpublished on this node');
      if (this.listening.get(key)?.server === server) this.listening.delete(key);
    });
    server.listen({ host, port, backlog: 1024 });
    this.listening.set(key, { server, service, target });
  }

  /** listenVip starts a VIP's proxy for one container port on the gateway; once it listens, the kernel rules send there. */
  private listenVip(service: string, target: number): void {
    const key = `${service}:${target}`;
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
      // The kernel path checks the networks at the task a connection reaches (netTable.ts); this path, at the proxy.
      const spec = this.routes.get(service)?.spec;
      if (spec && this.opts.admit && !this.opts.admit(sock.remoteAddress ?? '', spec)) return void sock.destroy();
      this.accept(sock, service, target);
    });
    const proxy: VipProxy = { server, service, target };
    server.on('error', (err: Error & { code?: string }) => {
      this.opts.log.warn({ service, target, err: err.code ?? err.message }, 'routing mesh cannot serve a service VIP to this node\'s tasks');
      if (this.vipProxies.get(key) === proxy) this.vipProxies.delete(key);
    });
    server.listen({ host: this.opts.taskNetwork!.gateway, port: 0, backlog: 1024 }, () => {
      proxy.port = (server.address() as { port: number }).port;
      if (this.vipProxies.get(key) === proxy) this.syncKernel();
    });
    this.vipProxies.set(key, proxy);
  }

  // ------------------------------------------------------------ connections

  private pick(r: Route, target: number, avoid?: string): EndpointAddress | undefined {
    const eps = r.spec.endpoints.filter((e) => dialOf(e, target) !== undefined && e.task !== avoid);
    if (eps.length === 0) return undefined;
    if (r.spec.lb.algorithm === 'least_conn') {
      let best = eps[0]!;
      let bestOpen = Infinity;
      // Ties go round the ring, so equal loads still rotate.
      for (let k = 0; k < eps.length; k++) {
        const e = eps[(r.next + k) % eps.length]!;
        const n = r.open.get(e.task) ?? 0;
        if (n < bestOpen) {
          best = e;
          bestOpen = n;
        }
      }
      r.next = (r.next + 1) % eps.length;
      return best;
    }
    const e = eps[r.next % eps.length]!;
    r.next = (r.next + 1) % Math.max(1, eps.length);
    return e;
  }

  private accept(client: Socket, service: string, target: number): void {
    client.on('error', () => client.destroy());
    const r = this.routes.get(service);
    if (!r) return void client.destroy();
    r.total.connections++;
    r.total.active++;
    let counted: RouteCounters | undefined;
    client.once('close', () => {
      r.total.active--;
      r.total.bytesIn += client.bytesRead;
      r.total.bytesOut += client.bytesWritten;
      if (counted) {
        counted.bytesIn += client.bytesRead;
        counted.bytesOut += client.bytesWritten;
      }
    });
    const attempt = (avoid: string | undefined, tries: number) => {
      if (client.destroyed) return;
      // After a failed connect, another endpoint; when the failed one is all there is, it again (a task counts as
      // ready once it runs, which can be a moment before its program listens).
      const ep = this.pick(r, target, avoid) ?? (avoid !== undefined ? this.pick(r, target) : undefined);
      if (!ep) {
        if (avoid !== undefined) {
          r.total.dropped++;
          return void client.destroy();
        }
        return this.hold(r, client, () => attempt(undefined, tries));
      }
      const c = this.countersOf(r, ep.task);
      const started = performance.now();
      const upstream = connect({ ...dialOf(ep, target)!, allowHalfOpen: true, noDelay: true });
      upstream.setTimeout(this.opts.connectTimeoutMs ?? 2000);
      let connected = false;
      const fail = () => {
        if (connected) return;
        upstream.destroy();
        r.total.errors++;
        c.errors++;
        if (tries < CONNECT_RETRIES && !client.destroyed) {
          r.total.retries++;
          // At once to another endpoint; the same one only after a pause that doubles (100 ms, 200 ms).
          const again = this.pick(r, target, ep.task) ? 0 : 100 * 2 ** tries;
          if (again === 0) return attempt(ep.task, tries + 1);
          return void setTimeout(() => attempt(ep.task, tries + 1), again);
        }
        r.total.dropped++;
        client.destroy();
      };
      upstream.once('timeout', fail);
      upstream.once('error', () => (connected ? client.destroy() : fail()));
      upstream.once('connect', () => {
        connected = true;
        upstream.setTimeout(0);
        const ms = performance.now() - started;
        for (const k of [r.total, c]) {
          k.connectMsSum += ms;
          k.connectMsMax = Math.max(k.connectMsMax, ms);
        }
        c.connections++;
        c.active++;
        counted = c;
        r.open.set(ep.task, (r.open.get(ep.task) ?? 0) + 1);
        upstream.once('close', (hadError) => {
          c.active--;
          r.open.set(ep.task, (r.open.get(ep.task) ?? 1) - 1);
          // A clean close has already ended the client through the pipe, after what was still buffered for it;
          // destroying it here could drop the end of a response a slow client has not taken yet.
          if (hadError) client.destroy();
        });
        client.once('close', () => upstream.destroy());
        if (r.spec.lb.proxyProtocol !== 'off') upstream.write(proxyHeader(r.spec.lb.proxyProtocol, client));
        client.pipe(upstream);
        upstream.pipe(client);
      });
    };
    attempt(undefined, 0);
  }

  /** hold keeps a new connection waiting (unread) for an endpoint, up to the service's hold_timeout. */
  private hold(r: Route, client: Socket, go: () => void): void {
    r.total.held++;
    this.activate(r.spec.serviceName);
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      r.waiters.delete(done);
      clearTimeout(timer);
      client.off('close', done);
      if (client.destroyed) return;
      if (this.closed || !this.routes.has(r.spec.serviceName) || r.spec.endpoints.length === 0) {
        r.total.dropped++;
        client.destroy();
        return;
      }
      go();
    };
    r.waiters.add(done);
    client.once('close', done);
    timer = setTimeout(done, r.spec.lb.holdTimeoutMs);
  }

  private readonly activatedAt = new Map<string, number>();

  /**
   * activate tells the server a connection waits for a service with no
   * endpoint (at most once a second per service): an autoscaled service
   * at zero starts a task at once (Knative's activator, in every node's mesh).
   */
  private activate(service: string): void {
    const now = Date.now();
    if ((this.activatedAt.get(service) ?? 0) + 1000 > now) return;
    this.activatedAt.set(service, now);
    void this.client.call('POST', `/api/v1/services/${encodeURIComponent(service)}/activate`, {}).catch((e) => this.opts.log.debug({ service, err: String(e) }, 'activation call failed'));
  }

  private countersOf(r: Route, task: string): RouteCounters {
    let c = r.byTask.get(task);
    if (!c) r.byTask.set(task, (c = zero()));
    return c;
  }
}
