/**
 * MeshPaths: where a node's routing mesh sends each listener's connections
 * besides its own Node proxy, kept in line with the mesh's listeners and
 * routes (mesh.ts), one sync at a time:
 *
 * - the kernel path (nft.ts): a TCP or UDP port of a service that needs
 *   nothing but round robin over endpoints it has is DNATed to them by the
 *   node's nftables table (`kernel`, the default);
 * - HAProxy (net/haproxy.ts): any other TCP port whose service has
 *   endpoints (least connections, the PROXY protocol; every port when
 *   `kernel` is off) is DNATed to a frontend of the node's HAProxy on the
 *   same address, when `userspace` is `haproxy` and HAProxy is installed
 *   (started with the first such port: a node without one runs none);
 * - the Node proxy (meshProxy.ts) takes the rest: a service with no
 *   endpoint (it holds), UDP ports the kernel does not route (a relay),
 *   ports bound to a host IP other than the node's, the service VIPs of
 *   this node's tasks for such services (network isolation is checked
 *   there), and everything on a node without nftables.
 *
 * A sync that succeeds puts the Endpoints revision its routes were read at
 * in effect (the mesh's appliedRevision); one that fails leaves the old
 * rules routing, so that revision is not applied.
 */
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import { NftPath, type KernelCounts, type KernelRoute } from './nft.js';
import { TableSweeper } from './net/tables.js';
import { findHaproxy, HaproxyPath, type Live, type ProxyCounts, type WantedFrontend } from './net/haproxy.js';
import { addCounts } from './net/haproxyConfig.js';
import { kernelEndpoints, kernelOnly, type Route } from './meshRoutes.js';
import { conntrackAvailable, deleteFlows, type StaleFlow } from './net/conntrack.js';

/** A listener of the mesh as the paths see it: `<address>:<port>`, the service and container port it serves. */
export interface ListenerView {
  key: string;
  service: string;
  target: number;
  protocol?: 'udp';
  /** Bound to a host IP other than the node's: the Node proxy's alone (see kernelRoutes). */
  userspace?: true;
}

/** A service VIP's proxy on the task network's gateway (for this node's tasks), with the port it listens on once bound. */
export interface VipProxyView {
  service: string;
  vipPort: number;
  target: number;
  port?: number;
  protocol?: 'udp';
}

export interface MeshSnapshot {
  listeners: ListenerView[];
  vipProxies: VipProxyView[];
  routes: ReadonlyMap<string, Route>;
  /** The Endpoints revision these were read at. */
  revision: number;
}

export interface PathsOptions {
  node: string;
  cluster: string;
  taskRange?: string;
  /** DNAT plain round-robin services to their endpoints in the kernel (default true). */
  kernel?: boolean;
  /** Which proxy takes the TCP ports the kernel does not route (default haproxy, when installed). */
  userspace?: 'haproxy' | 'node';
  tableSweepMs?: number;
  taskNetwork?: { bridge: string; gateway: string };
  dataDir: string;
  log: Logger;
  connectTimeoutMs: number;
  /** How long HAProxy's workers replaced by a reload may serve their open connections. */
  proxyDrainMs?: number;
}

export class MeshPaths {
  private kernel?: NftPath;
  private haproxy?: HaproxyPath;
  private sweeper?: TableSweeper;
  private running?: Promise<void>;
  private dirty = false;
  private closed = false;
  /** The UDP flows the kernel's rules send somewhere: `<address>:<port>` → the endpoint addresses, to delete the flows of those that leave. */
  private udpFlows = new Map<string, Set<string>>();
  private warnedConntrack = false;
  private warnedProxy = '';

  constructor(
    private readonly o: PathsOptions,
    private readonly snapshot: () => MeshSnapshot,
    private readonly applied: (revision: number) => void,
  ) {}

  /** active: the node has an nftables table, so a change is in effect only once a sync loaded it. */
  get active(): boolean {
    return this.kernel !== undefined;
  }

  /**
   * HAProxy's state: `off` (not asked for, not installed, or no nftables to
   * steer with), `idle` (started on the first frontend it gets: a node whose
   * services need none runs no HAProxy), `up`, `down` (it died or could not
   * start; the Node proxy carries its ports until a retry).
   */
  private proxyState: 'off' | 'idle' | 'up' | 'down' = 'off';
  private restartTimer?: NodeJS.Timeout;
  private restartDelayMs = 1000;
  /** What HAProxy processes that died had counted, up to their last reload or deleted server. */
  private readonly proxyCarried: ProxyCounts = new Map();

  async open(): Promise<void> {
    const wantProxy = (this.o.userspace ?? 'haproxy') === 'haproxy';
    if (this.o.kernel === false && !wantProxy) return;
    const k = await NftPath.open(this.o.node, this.o.cluster, this.o.taskRange).catch((e: Error) => e.message);
    if (typeof k === 'string') {
      this.o.log.info({ why: k }, 'routing mesh: no nftables; every connection goes through the Node proxy');
      return;
    }
    this.kernel = k;
    this.sweeper = new TableSweeper(this.o.cluster, k.table, this.o.tableSweepMs ?? 10_000, (removed, err) => {
      if (removed.length) this.o.log.info({ tables: removed }, 'routing mesh: removed the nftables tables of agents that are gone');
      if (err) this.o.log.debug({ err: err.message }, 'routing mesh: could not sweep the nftables tables of agents that are gone');
    });
    this.sweeper.start();
    if (!wantProxy) return;
    if (findHaproxy()) this.proxyState = 'idle';
    else this.o.log.info('routing mesh: haproxy is not installed (Debian package haproxy); the Node proxy takes what the kernel does not route');
  }

  /** startProxy starts HAProxy for the first frontend (or again after it died); on failure the Node proxy carries on and it is tried again later. */
  private async startProxy(): Promise<void> {
    let h: HaproxyPath | string | undefined;
    h = await HaproxyPath.open({ dataDir: this.o.dataDir, log: this.o.log, connectTimeoutMs: this.o.connectTimeoutMs, drainMs: this.o.proxyDrainMs, onExit: () => h !== undefined && this.proxyExited(h) });
    if (this.closed) {
      if (typeof h !== 'string') await h.close();
      return;
    }
    if (typeof h === 'string') {
      this.o.log.warn({ why: h, retryMs: this.restartDelayMs }, 'routing mesh: HAProxy could not be started; the Node proxy carries its ports meanwhile');
      return this.retryLater();
    }
    this.haproxy = h;
    this.proxyState = 'up';
    this.restartDelayMs = 1000;
  }

  /**
   * proxyExited: HAProxy died (killed, crashed). The kernel stops sending
   * there at once (the Node proxy takes those ports), and HAProxy is
   * started again after 1 s, then 2 s, 4 s… up to a minute between tries.
   */
  private proxyExited(h: HaproxyPath | string): void {
    if (typeof h === 'string' || this.haproxy !== h) return;
    addCounts(this.proxyCarried, h.carriedCounts());
    this.haproxy = undefined;
    this.retryLater();
    this.sync();
  }

  private retryLater(): void {
    this.proxyState = 'down';
    if (this.closed) return;
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.proxyState = 'idle';
      this.sync();
    }, this.restartDelayMs);
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, 60_000);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    await this.sweeper?.stop();
    await this.running;
    await this.kernel?.close();
    await this.haproxy?.close();
  }

  /** counts: connections the kernel routed (no bytes), and everything HAProxy counted, per service. */
  async counts(): Promise<{ kernel: KernelCounts; proxy: ProxyCounts }> {
    const [kernel, live] = await Promise.all([this.kernel?.counts() ?? new Map(), this.haproxy?.counts().catch(() => new Map()) ?? new Map()]);
    const proxy: ProxyCounts = new Map();
    addCounts(proxy, this.proxyCarried);
    addCounts(proxy, live as ProxyCounts);
    return { kernel: kernel as KernelCounts, proxy };
  }

  /**
   * sync brings HAProxy and the node's nftables table in line, one sync at a
   * time (changes meanwhile are folded into the next): HAProxy first, so a
   * port is DNATed to a frontend only once HAProxy listens there with the
   * endpoints the kernel rules are read with.
   */
  sync(): void {
    if (!this.kernel || this.closed) return;
    this.dirty = true;
    if (this.running) return;
    this.running = (async () => {
      // Everything delivered in this turn (a whole list) goes into the same sync.
      await null;
      while (this.dirty && !this.closed) {
        this.dirty = false;
        let snap = this.snapshot();
        let frontends = this.frontends(snap);
        if (frontends.length && this.proxyState === 'idle') {
          await this.startProxy();
          if (this.closed) break;
          snap = this.snapshot();
          frontends = this.frontends(snap);
        }
        const live = this.haproxy ? this.warnProxy(await this.haproxy.prepare(frontends)) : new Map<string, Live>();
        const routes = this.kernelRoutes(snap, live);
        const err = await this.kernel!.sync(routes);
        if (err) this.o.log.warn({ err }, 'routing mesh: the kernel fast path could not be updated; the userspace proxy carries on');
        else {
          // What HAProxy no longer serves goes once the kernel stopped sending it there.
          if (this.haproxy) this.warnProxy({ live, err: await this.haproxy.finish(frontends) });
          await this.flushUdpFlows(routes);
          this.applied(snap.revision);
        }
      }
      this.running = undefined;
    })();
  }

  /** proxied: the listener goes to HAProxy (when it runs and the service has an endpoint there). */
  private proxied(l: ListenerView, r: Route | undefined): boolean {
    if ((this.proxyState !== 'idle' && this.proxyState !== 'up') || l.protocol === 'udp' || l.userspace || !r) return false;
    return this.o.kernel === false || !kernelOnly(r.spec, undefined);
  }

  /** frontends: the listeners HAProxy takes, with their service's endpoints. */
  private frontends(snap: MeshSnapshot): WantedFrontend[] {
    const out: WantedFrontend[] = [];
    for (const l of snap.listeners) {
      const r = snap.routes.get(l.service);
      if (!r || !this.proxied(l, r)) continue;
      const i = l.key.lastIndexOf(':');
      const address = l.key.slice(0, i);
      if (!isIPv4(address)) continue;
      out.push({ key: l.key, service: l.service, address, algorithm: r.spec.lb.algorithm, proxyProtocol: r.spec.lb.proxyProtocol, endpoints: kernelEndpoints(r.spec, l.target) });
    }
    return out;
  }

  private warnProxy(r: { live: Map<string, Live>; err?: string }): Map<string, Live> {
    if (r.err && r.err !== this.warnedProxy) this.o.log.warn({ err: r.err }, 'routing mesh: HAProxy could not take the new routes; the Node proxy carries the ports it does not serve');
    this.warnedProxy = r.err ?? '';
    return r.live;
  }

  /** kernelRoutes: each listener's DNAT (to its endpoints, or to HAProxy), then the VIP routes of this node's tasks. */
  private kernelRoutes(snap: MeshSnapshot, live: Map<string, Live>): KernelRoute[] {
    const out: KernelRoute[] = [];
    for (const l of snap.listeners) {
      // A packet from 127.0.0.1 DNATed to another host's task leaves only with route_localnet on the node's interfaces (the door
      // CVE-2020-8558 opened); a port bound to a host IP other than the node's stays in userspace, which dials from the node.
      if (l.userspace) continue;
      const r = snap.routes.get(l.service);
      if (!r) continue;
      const endpoints = kernelEndpoints(r.spec, l.target);
      if (endpoints.length === 0) continue;
      const i = l.key.lastIndexOf(':');
      const route = { service: l.service, address: l.key.slice(0, i), port: Number(l.key.slice(i + 1)), ...(l.protocol ? { protocol: l.protocol } : {}) };
      if (this.proxied(l, r)) {
        // HAProxy counts these itself (task '').
        const at = live.get(l.key);
        if (at) out.push({ ...route, endpoints: [{ task: '', address: at.address, port: at.port }] });
      } else if (this.o.kernel !== false && kernelOnly(r.spec, l.protocol)) out.push({ ...route, endpoints });
    }
    out.push(...this.vipRoutes(snap));
    return out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
  }

  /**
   * vipRoutes: each service VIP's container ports, for packets from this
   * node's tasks (its bridge): round robin over the endpoints in the kernel
   * when that is all the service needs, else to the mesh's Node proxy on the
   * gateway (holding, least_conn, the PROXY protocol, network isolation).
   */
  private vipRoutes(snap: MeshSnapshot): KernelRoute[] {
    const net = this.o.taskNetwork;
    if (!net) return [];
    const out: KernelRoute[] = [];
    for (const p of snap.vipProxies) {
      const r = snap.routes.get(p.service);
      const vip = r?.spec.vip;
      if (!r || !vip || !isIPv4(vip)) continue;
      const endpoints = this.o.kernel !== false && kernelOnly(r.spec, p.protocol) ? kernelEndpoints(r.spec, p.target) : [];
      if (endpoints.length === 0) {
        if (p.port === undefined) continue;
        endpoints.push({ task: '', address: net.gateway, port: p.port });
      }
      out.push({ service: p.service, address: vip, port: p.vipPort, iif: net.bridge, endpoints, ...(p.protocol ? { protocol: p.protocol } : {}) });
    }
    return out;
  }

  /** flushUdpFlows deletes the conntrack flows that the kernel's rules no longer make: those DNATed to an endpoint that left. */
  private async flushUdpFlows(routes: readonly KernelRoute[]): Promise<void> {
    const now = new Map<string, Set<string>>();
    for (const r of routes) if (r.protocol === 'udp') now.set(`${r.address}:${r.port}`, new Set(r.endpoints.map((e) => e.address)));
    const stale: StaleFlow[] = [];
    for (const [key, was] of this.udpFlows) {
      const i = key.lastIndexOf(':');
      const still = now.get(key);
      for (const to of was) if (!still?.has(to)) stale.push({ address: key.slice(0, i), port: Number(key.slice(i + 1)), to });
    }
    this.udpFlows = now;
    if (stale.length === 0) return;
    if (!conntrackAvailable()) {
      if (!this.warnedConntrack) this.o.log.warn('routing mesh: conntrack (Debian package conntrack) is missing: a UDP client that keeps sending stays with an endpoint that left until it pauses for 30 s');
      this.warnedConntrack = true;
      return;
    }
    const errors = await deleteFlows(stale);
    if (errors.length) this.o.log.warn({ errors }, 'routing mesh: could not delete the UDP flows of endpoints that left');
  }
}
