/**
 * Mesh is a node's routing mesh (Swarm's ingress, kube-proxy's userspace
 * mode), fed by Endpoints objects only:
 *
 * - every published port (mode ingress) of every service listens on this
 *   node's address (or where its host IP says: api/hostIp.ts) and forwards
 *   each connection to one of the service's ready endpoints, on any node;
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
 * - UDP ports too: the kernel path DNATs them (and deletes the conntrack
 *   flows of an endpoint that leaves, net/conntrack.ts); the userspace path
 *   is a relay with a session per client (net/udpRelay.ts), used where the
 *   kernel path is not (least_conn, no nftables, no endpoint yet);
 * - the Endpoints revision it has applied (routes and kernel rules both in
 *   effect), for the server to tell a stopping task when no node routes to
 *   it any more (deregistration.ts).
 *
 * A service that needs only round robin over endpoints it has takes the
 * kernel fast path (nft.ts: nftables DNAT in a table this agent owns) and its
 * connections never reach this process; the other TCP ports go to the
 * node's HAProxy while their service has endpoints (net/haproxy.ts); the
 * Node proxy's listener stays for the moments a service has no endpoint (it
 * holds) and for what neither takes (meshPaths.ts says which is which).
 */
import { createServer, connect, isIP, isIPv4, type Server, type Socket } from 'node:net';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Informer } from '../api/informer.js';
import type { ApiClient } from '../api/client.js';
import { endpointsKind } from '../api/kinds.js';
import type { EndpointAddress, Endpoints, EndpointsSpec } from '../api/types.js';
import { publishedAddress } from '../api/hostIp.js';
import { MeshPaths, type ListenerView, type MeshSnapshot, type VipProxyView } from './meshPaths.js';
import { addCounters, vipPool, zero, type Route, type RouteCounters } from './meshRoutes.js';
import { meshUdpRelay, proxyConnection, type ProxyContext } from './meshProxy.js';
import type { UdpRelay } from './net/udpRelay.js';

export { defaultVipRange, dialOf, hostPortOf, type RouteCounters } from './meshRoutes.js';

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
  /**
   * Which proxy takes the TCP ports the kernel does not route while their
   * service has endpoints: HAProxy when installed (the default), or the
   * Node proxy (meshProxy.ts), which always takes the rest (meshPaths.ts).
   */
  userspace?: 'haproxy' | 'node';
  /** How long HAProxy's workers replaced by a reload may serve their open connections (default 30 min). */
  proxyDrainMs?: number;
  /** How often the tables of this cluster's agents that are gone (killed) are removed from the host (default 10 s; also at once at start). */
  tableSweepMs?: number;
  /** Where this node's VIPs come from: a.b.c.0/24 or a.b.0.0/16 inside 127.0.0.0/8. */
  vipRange: string;
  /** VIP assignments are kept here so they survive an agent restart. */
  dataDir: string;
  log: Logger;
  /** How long a connect to an endpoint may take before it counts as failed (default 2 s). */
  connectTimeoutMs?: number;
  /** How long the UDP relay keeps an idle client's session (default 30 s, the kernel's UDP flow timeout). */
  udpIdleMs?: number;
  /**
   * This node's task network, when it has one: service VIPs are routed for
   * the tasks on its bridge (in the kernel), to the endpoints or to this
   * mesh's proxy listening on the gateway.
   */
  taskNetwork?: { bridge: string; gateway: string };
  /** Whether a client (by address) may reach a service through its VIP: a task only on a network it shares (default: anyone). */
  admit?: (client: string, service: EndpointsSpec) => boolean;
}

interface Listening {
  server: Server;
  service: string;
  target: number;
  /** A port bound to an address other than the node's (host_ip): the Node proxy's alone (meshPaths.ts). */
  userspace?: true;
}

/** A UDP port's relay: a published port, a loopback VIP's port, or (port known once bound) a service VIP's port on the gateway. */
interface UdpListening {
  relay: UdpRelay;
  service: string;
  target: number;
  userspace?: true;
}

/** A service VIP's proxy for one container port: listening on the task network's gateway, at a port the kernel sends it to. */
interface VipProxy {
  server: Server;
  service: string;
  /** The VIP's port, and the container port it reaches (the same unless the service maps it: vipPorts). */
  vipPort: number;
  target: number;
  /** Known once it listens. */
  port?: number;
}

/** vipPairs: every TCP port of a service's VIP with the container port it reaches. */
function vipPairs(e: { targets: number[]; vipPorts?: { port: number; target: number }[] }): [number, number][] {
  return [...e.targets.map((t) => [t, t] as [number, number]), ...(e.vipPorts ?? []).map((v) => [v.port, v.target] as [number, number])];
}

export class Mesh {
  private readonly routes = new Map<string, Route>();
  private readonly listening = new Map<string, Listening>();
  /** Service VIP proxies, by `<service>:<target>`. */
  private readonly vipProxies = new Map<string, VipProxy>();
  /** UDP relays by `<address>:<port>`, and the VIP relays on the gateway by `<service>:<target>`. */
  private readonly udpListening = new Map<string, UdpListening>();
  private readonly udpVipProxies = new Map<string, UdpListening>();
  private readonly vips = new Map<string, string>();
  private readonly pool: string[];
  private informer?: Informer;
  private closed = false;
  private readonly paths: MeshPaths;
  /** The store revision of the Endpoints this mesh's routes reflect (userspace), and of those in effect, kernel rules included. */
  private seen = 0;
  private applied = 0;
  /** The newest Endpoints change this mesh has seen: an object's modRevision or a deletion's revision. */
  private changed = 0;
  private readonly appliedListeners = new Set<(revision: number) => void>();
  private readonly proxyContext: ProxyContext;
  private readonly changeListeners = new Set<() => void>();

  constructor(
    private readonly client: ApiClient,
    private readonly opts: MeshOptions,
  ) {
    this.pool = vipPool(opts.vipRange);
    this.proxyContext = {
      route: (service) => this.routes.get(service),
      closed: () => this.closed,
      activate: (service) => this.activate(service),
      connectTimeoutMs: opts.connectTimeoutMs ?? 2000,
    };
    this.paths = new MeshPaths(
      { ...opts, connectTimeoutMs: this.proxyContext.connectTimeoutMs },
      () => this.snapshot(),
      (revision) => this.markApplied(revision),
    );
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
    await this.paths.open();
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
    for (const m of [this.udpListening, this.udpVipProxies]) {
      for (const u of m.values()) u.relay.close();
      m.clear();
    }
    for (const r of this.routes.values()) for (const w of r.waiters) w();
    await this.paths.close();
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

  /**
   * counters: per service, its totals and each endpoint's: the Node proxy's,
   * HAProxy's (bytes and errors too), and the connections the kernel routed
   * (their bytes are not counted).
   */
  async counters(): Promise<Record<string, { total: RouteCounters; endpoints: Record<string, RouteCounters> }>> {
    const out: Record<string, { total: RouteCounters; endpoints: Record<string, RouteCounters> }> = {};
    for (const [name, r] of this.routes) out[name] = { total: { ...r.total }, endpoints: Object.fromEntries([...r.byTask].map(([t, c]) => [t, { ...c }])) };
    const { kernel, proxy } = await this.paths.counts();
    for (const [svc, k] of kernel) {
      const o = (out[svc] ??= { total: zero(), endpoints: {} });
      o.total.connections += k.total;
      for (const [task, n] of k.byTask) (o.endpoints[task] ??= zero()).connections += n;
    }
    for (const [svc, p] of proxy) {
      const o = (out[svc] ??= { total: zero(), endpoints: {} });
      addCounters(o.total, p.total);
      for (const [task, c] of p.byTask) addCounters((o.endpoints[task] ??= zero()), c);
    }
    return out;
  }

  /** snapshot: the listeners, VIP proxies and routes as they are now, for the kernel and HAProxy (meshPaths.ts). */
  private snapshot(): MeshSnapshot {
    const listeners: ListenerView[] = [];
    for (const [key, l] of this.listening) listeners.push({ key, service: l.service, target: l.target, ...(l.userspace ? { userspace: true as const } : {}) });
    for (const [key, l] of this.udpListening) listeners.push({ key, service: l.service, target: l.target, protocol: 'udp', ...(l.userspace ? { userspace: true as const } : {}) });
    const vipProxies: VipProxyView[] = [
      ...[...this.vipProxies.values()].map((p) => ({ service: p.service, vipPort: p.vipPort, target: p.target, port: p.port })),
      ...[...this.udpVipProxies.values()].map((p) => ({ service: p.service, vipPort: p.target, target: p.target, port: p.relay.port, protocol: 'udp' as const })),
    ];
    return { listeners, vipProxies, routes: this.routes, revision: this.seen };
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
    if (this.paths.active) this.paths.sync();
    else this.markApplied(this.seen);
  }

  private markApplied(revision: number): void {
    if (revision <= this.applied) return;
    this.applied = revision;
    for (const fn of this.appliedListeners) fn(revision);
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
    const wantUdp = new Map<string, number>();
    // A port bound to a host IP is published where api/hostIp.ts says: that loopback address, or only the node that has it.
    const userspace = new Set<string>();
    for (const p of e.spec.published) {
      const at = publishedAddress(p.hostIP, this.opts.address);
      if (at === undefined || isIP(at) === 0) continue;
      const key = `${at}:${p.published}`;
      (p.protocol === 'udp' ? wantUdp : want).set(key, p.target);
      if (at !== this.opts.address) userspace.add(key);
    }
    if (vip) for (const [port, t] of vipPairs(e.spec)) want.set(`${vip}:${port}`, t);
    if (vip) for (const t of e.spec.udpTargets ?? []) wantUdp.set(`${vip}:${t}`, t);
    for (const [key, l] of this.listening) {
      if (l.service === name && want.get(key) !== l.target) {
        l.server.close();
        this.listening.delete(key);
      }
    }
    for (const [key, target] of want) if (!this.listening.has(key)) this.listen(key, name, target, userspace.has(key));
    for (const [key, l] of this.udpListening) {
      if (l.service === name && wantUdp.get(key) !== l.target) {
        l.relay.close();
        this.udpListening.delete(key);
      }
    }
    for (const [key, target] of wantUdp) {
      const i = key.lastIndexOf(':');
      if (!this.udpListening.has(key)) this.listenUdp(this.udpListening, key, key.slice(0, i), Number(key.slice(i + 1)), name, target, false, userspace.has(key));
    }
    const udpVip = new Set(this.opts.taskNetwork && e.spec.vip ? (e.spec.udpTargets ?? []) : []);
    for (const [key, u] of this.udpVipProxies) {
      if (u.service === name && !udpVip.has(u.target)) {
        u.relay.close();
        this.udpVipProxies.delete(key);
      }
    }
    for (const t of udpVip) if (!this.udpVipProxies.has(`${name}:${t}`)) this.listenUdp(this.udpVipProxies, `${name}:${t}`, this.opts.taskNetwork!.gateway, 0, name, t, true);
    const vipTargets = new Map(this.opts.taskNetwork && e.spec.vip ? vipPairs(e.spec) : []);
    for (const [key, p] of this.vipProxies) {
      if (p.service === name && vipTargets.get(p.vipPort) !== p.target) {
        p.server.close();
        this.vipProxies.delete(key);
      }
    }
    for (const [port, t] of vipTargets) if (!this.vipProxies.has(`${name}:${port}`)) this.listenVip(name, port, t);
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
    for (const m of [this.udpListening, this.udpVipProxies]) {
      for (const [key, u] of m) {
        if (u.service !== name) continue;
        u.relay.close();
        m.delete(key);
      }
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

  private listen(key: string, service: string, target: number, userspace: boolean): void {
    const i = key.lastIndexOf(':');
    const host = key.slice(0, i);
    const port = Number(key.slice(i + 1));
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (sock) => proxyConnection(this.proxyContext, sock, service, target));
    server.on('error', (err: Error & { code?: string }) => {
      this.opts.log.warn({ service, listen: key, err: err.code ?? err.message }, 'routing mesh cannot listen; the port stays unpublished on this node');
      if (this.listening.get(key)?.server === server) this.listening.delete(key);
    });
    server.listen({ host, port, backlog: 1024 });
    this.listening.set(key, { server, service, target, ...(userspace ? { userspace } : {}) });
  }

  /** listenVip starts a VIP's proxy for one of its ports (reaching container port target) on the gateway; once it listens, the kernel rules send there. */
  private listenVip(service: string, vipPort: number, target: number): void {
    const key = `${service}:${vipPort}`;
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
      // The kernel path checks the networks at the task a connection reaches (netTable.ts); this path, at the proxy.
      const spec = this.routes.get(service)?.spec;
      if (spec && this.opts.admit && !this.opts.admit(sock.remoteAddress ?? '', spec)) return void sock.destroy();
      proxyConnection(this.proxyContext, sock, service, target);
    });
    const proxy: VipProxy = { server, service, vipPort, target };
    server.on('error', (err: Error & { code?: string }) => {
      this.opts.log.warn({ service, target, err: err.code ?? err.message }, 'routing mesh cannot serve a service VIP to this node\'s tasks');
      if (this.vipProxies.get(key) === proxy) this.vipProxies.delete(key);
    });
    server.listen({ host: this.opts.taskNetwork!.gateway, port: 0, backlog: 1024 }, () => {
      proxy.port = (server.address() as { port: number }).port;
      if (this.vipProxies.get(key) === proxy) this.paths.sync();
    });
    this.vipProxies.set(key, proxy);
  }

  /**
   * listenUdp starts a UDP relay for one port of a service; `vip`: on the
   * gateway, for this node's tasks (network isolation applies), at a port
   * the kernel sends the VIP's datagrams to once it is bound.
   */
  private listenUdp(into: Map<string, UdpListening>, key: string, host: string, port: number, service: string, target: number, vip = false, userspace = false): void {
    const relay = meshUdpRelay(this.proxyContext, { host, port, service, target, idleMs: this.opts.udpIdleMs, admit: vip ? this.opts.admit : undefined }, (err) => {
      this.opts.log.warn({ service, listen: `${host}:${port}/udp`, err: err.code ?? err.message }, 'routing mesh cannot relay a UDP port');
      if (into.get(key)?.relay === relay) into.delete(key);
    });
    const entry: UdpListening = { relay, service, target, ...(userspace ? { userspace } : {}) };
    into.set(key, entry);
    void relay.listen().then(() => {
      if (vip && into.get(key) === entry) this.paths.sync();
    });
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
}

