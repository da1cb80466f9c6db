/**
 * Peer routes: how a packet for a task on another node gets there, as
 * flannel's host-gw backend does it. Every node with a task network routes
 * each other node's task range via that node's address, when that address
 * is on a link this node is directly connected to:
 *
 *     ip route replace 10.42.1.0/24 via 192.168.1.12 proto 157
 *
 * so a connection that this node's mesh DNATs (or dials) to a task on node
 * B leaves over the link to B, and B's own bridge delivers it. There is no
 * encapsulation and no overlay: it needs the nodes on one layer-2 network
 * (as host-gw does). A node elsewhere (its address reached through a
 * gateway), a loopback address (the one-kernel test harness, where every
 * bridge is in the same namespace anyway) and this node's own address get
 * no route; a range that this machine already routes elsewhere is never
 * taken over.
 *
 * Routes carry protocol 157 (unassigned in rtnetlink.h) so that they can be
 * told from everyone else's; the ranges this agent routed are kept in its
 * data directory, so that a restarted agent removes the routes of nodes
 * removed while it was away, and never those another agent made.
 *
 * Everything written into an `ip` argument is built from parsed values
 * (ranges through parseCidr and back, addresses checked as IPv4), and `ip`
 * is spawned with an argument vector.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ApiClient } from '../../api/client.js';
import { Informer } from '../../api/informer.js';
import { nodeKind } from '../../api/kinds.js';
import type { Node } from '../../api/types.js';
import { contains, formatCidr, overlaps, parseCidr, type Cidr } from '../../base/cidr.js';
import { must, routesInto, run } from './plumbing.js';

const IP = '/usr/sbin/ip';

/** PEER_ROUTE_PROTO marks the routes this module makes (any value above RTPROT_STATIC is a daemon's; this one is assigned to none). */
export const PEER_ROUTE_PROTO = 157;

const LOOPBACK = parseCidr('127.0.0.0/8');

/** A node as peer routing sees it: its name, its address and its task range, as its Node object says. */
export interface PeerNode {
  name: string;
  address?: string;
  taskRange?: string;
}

/** An address this machine holds on an interface, with the prefix of the link it is on. */
export interface LocalAddress {
  dev: string;
  address: string;
  link: Cidr;
}

export interface PeerRoute {
  node: string;
  range: Cidr;
  via: string;
}

/** A node that gets no route, and why (only what an operator may need to hear of). */
export interface Unrouted {
  node: string;
  why: string;
}

/** canonicalRange parses a range that must be written as a.b.c.d/N with no host bits; undefined when it is not. */
function canonicalRange(text: string): Cidr | undefined {
  try {
    const c = parseCidr(text);
    return formatCidr(c) === text ? c : undefined;
  } catch {
    return undefined;
  }
}

/**
 * peerRoutes is the routes this node wants (pure): one per other node whose
 * range is well formed and clashes with none before it (by name), and whose
 * address is on one of this machine's directly connected links (not
 * loopback, not an address of this machine). Nodes without an address or a
 * range yet, this node, and loopback or local addresses are left out
 * silently: they never take a route.
 */
export function peerRoutes(nodes: Iterable<PeerNode>, self: { name: string; range: Cidr }, local: readonly LocalAddress[]): { routes: PeerRoute[]; unrouted: Unrouted[] } {
  const routes: PeerRoute[] = [];
  const unrouted: Unrouted[] = [];
  const sorted = [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const n of sorted) {
    if (n.name === self.name || !n.address || !n.taskRange) continue;
    const range = canonicalRange(n.taskRange);
    if (!range) {
      unrouted.push({ node: n.name, why: `its task range ${JSON.stringify(n.taskRange)} is not a range a.b.c.d/N` });
      continue;
    }
    if (!isIPv4(n.address)) {
      unrouted.push({ node: n.name, why: `its address ${JSON.stringify(n.address)} is not an IPv4 address` });
      continue;
    }
    if (contains(LOOPBACK, n.address) || local.some((l) => l.address === n.address)) continue;
    if (overlaps(range, self.range)) {
      unrouted.push({ node: n.name, why: `its task range ${n.taskRange} overlaps this node's ${formatCidr(self.range)}` });
      continue;
    }
    const clash = routes.find((r) => overlaps(r.range, range));
    if (clash) {
      unrouted.push({ node: n.name, why: `its task range ${n.taskRange} overlaps node ${clash.node}'s ${formatCidr(clash.range)}` });
      continue;
    }
    if (!local.some((l) => l.dev !== 'lo' && contains(l.link, n.address!) && !contains(self.range, n.address!))) {
      unrouted.push({ node: n.name, why: `its address ${n.address} is on no link this node is directly connected to` });
      continue;
    }
    routes.push({ node: n.name, range, via: n.address });
  }
  return { routes, unrouted };
}

/** parseLocalAddresses reads `ip -4 -o addr show`: each IPv4 address, its device and its link's prefix. */
export function parseLocalAddresses(text: string): LocalAddress[] {
  const out: LocalAddress[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+([^\s@]+)(?:@\S+)?\s+inet\s+(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})\s/.exec(line);
    if (!m || !isIPv4(m[2]!)) continue;
    const link = canonicalRange(formatCidr(parseCidr(`${m[2]}/${m[3]}`)));
    if (link) out.push({ dev: m[1]!, address: m[2]!, link });
  }
  return out;
}

/** parseOwnRoutes reads `ip -4 -o route show proto 157`: the range and gateway of each peer route in place. */
export function parseOwnRoutes(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(\d{1,3}(?:\.\d{1,3}){3}\/\d{1,2}) via (\d{1,3}(?:\.\d{1,3}){3}) /.exec(line.trim() + ' ');
    if (m && canonicalRange(m[1]!) && isIPv4(m[2]!)) out.set(m[1]!, m[2]!);
  }
  return out;
}

/** routeKey: what of a Node its route depends on. */
function routeKey(n: Node): string {
  return `${n.status?.address ?? ''} ${n.status?.taskRange ?? ''}`;
}

const ip = (args: readonly string[]) => run(IP, args);
const ipOut = (args: readonly string[]) => must(IP, args);

export interface PeerRoutesOptions {
  node: string;
  /** This node's task range. */
  range: string;
  /** Where the ranges this agent routed are kept across restarts. */
  dataDir: string;
  /** How often the routes are checked again without a Node change (links come and go; someone may delete a route). */
  checkMs: number;
  log: Logger;
}

/**
 * PeerRoutes keeps this node's peer routes in line with every Node's
 * address and task range: a Node informer, and one sync at a time (changes
 * meanwhile fold into the next), again every checkMs.
 */
export class PeerRoutes {
  private readonly self: { name: string; range: Cidr };
  private informer?: Informer;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private dirty = false;
  private stopped = false;
  /** Each node's address and range as last seen: a change of anything else needs no sync. */
  private readonly keys = new Map<string, string>();
  /** What the last sync said about nodes left without a route, so each is logged once. */
  private told = new Map<string, string>();
  /** Ranges routed by this agent (here or in an earlier run), as saved. */
  private readonly made: Set<string>;

  constructor(
    private readonly client: ApiClient,
    private readonly opts: PeerRoutesOptions,
  ) {
    this.self = { name: opts.node, range: parseCidr(opts.range) };
    this.made = new Set(this.load());
  }

  start(): void {
    this.informer = new Informer(this.client, nodeKind, {
      onSync: (objs: Map<string, Node>) => {
        this.keys.clear();
        for (const [name, n] of objs) this.keys.set(name, routeKey(n));
        this.kick();
      },
      onEvent: (type, n: Node) => {
        const name = n.metadata.name;
        const key = type === 'DELETED' ? undefined : routeKey(n);
        // Only an address or a range moves a route; a node's status changes far more often (its allocation, its state).
        if (key === this.keys.get(name)) return;
        if (key === undefined) this.keys.delete(name);
        else this.keys.set(name, key);
        this.kick();
      },
      onError: (err) => this.opts.log.debug({ err: err.message }, 'node watch interrupted; reconnecting'),
    });
    this.informer.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.informer?.stop();
    await this.running;
  }

  /** kick asks for a sync: now if none runs, else once the running one ends. */
  private kick(): void {
    if (this.stopped) return;
    this.dirty = true;
    if (this.running) return;
    clearTimeout(this.timer);
    this.running = (async () => {
      while (this.dirty && !this.stopped) {
        this.dirty = false;
        try {
          await this.sync();
        } catch (e) {
          this.opts.log.warn({ err: (e as Error).message }, 'could not update the routes to other nodes\' tasks; will try again');
        }
      }
      this.running = undefined;
      if (this.stopped) return;
      this.timer = setTimeout(() => this.kick(), this.opts.checkMs);
      this.timer.unref();
    })();
  }

  /** sync brings the kernel's peer routes in line with the nodes the informer holds. */
  private async sync(): Promise<void> {
    if (!this.informer?.synced) return;
    const nodes: PeerNode[] = [...this.informer.objects.values()].map((n: Node) => ({ name: n.metadata.name, address: n.status?.address, taskRange: n.status?.taskRange }));
    const local = parseLocalAddresses(await ipOut(['-4', '-o', 'addr', 'show']));
    const { routes, unrouted } = peerRoutes(nodes, this.self, local);
    const inPlace = parseOwnRoutes(await ipOut(['-4', '-o', 'route', 'show', 'table', 'main', 'proto', String(PEER_ROUTE_PROTO)]));
    const all = await ipOut(['-4', 'route', 'show', 'table', 'main']);
    const ours = new RegExp(`\\bproto ${PEER_ROUTE_PROTO}\\b`);
    const wanted = new Map<string, PeerRoute>();
    for (const r of routes) {
      // Someone else's network there is never taken over (nor its traffic sent to a node).
      const taken = routesInto(all, r.range).filter((l) => !ours.test(l));
      if (taken.length) unrouted.push({ node: r.node, why: `this machine already routes into its task range ${formatCidr(r.range)} (${taken.join('; ')})` });
      else wanted.set(formatCidr(r.range), r);
    }
    this.tell(unrouted);
    for (const [range, r] of wanted) {
      // Saved before it is made: an agent that dies in between still knows the route is its own.
      if (!this.made.has(range)) {
        this.made.add(range);
        this.save();
      }
      if (inPlace.get(range) === r.via) continue;
      await ipOut(['route', 'replace', range, 'via', r.via, 'proto', String(PEER_ROUTE_PROTO)]);
      this.opts.log.info({ node: r.node, range, via: r.via }, 'routing a node\'s task range over the link to it');
    }
    for (const range of [...this.made]) {
      if (wanted.has(range)) continue;
      // Only a route of ours: a range another agent routes now (or nobody) is not deleted.
      if (inPlace.has(range)) await ip(['route', 'del', range, 'proto', String(PEER_ROUTE_PROTO)]);
      this.made.delete(range);
      this.save();
    }
  }

  /** tell logs each node left without a route once per reason. */
  private tell(unrouted: Unrouted[]): void {
    for (const node of [...this.told.keys()]) if (!unrouted.some((u) => u.node === node)) this.told.delete(node);
    for (const u of unrouted) {
      if (this.told.get(u.node) === u.why) continue;
      this.told.set(u.node, u.why);
      this.opts.log.warn({ node: u.node }, `no route to node ${u.node}'s tasks from here: ${u.why}`);
    }
  }

  private file(): string {
    return join(this.opts.dataDir, 'peer-routes.json');
  }

  private load(): string[] {
    try {
      const saved = JSON.parse(readFileSync(this.file(), 'utf8')) as unknown;
      return Array.isArray(saved) ? saved.filter((r): r is string => typeof r === 'string' && canonicalRange(r) !== undefined) : [];
    } catch {
      return [];
    }
  }

  private save(): void {
    const tmp = `${this.file()}.tmp`;
    writeFileSync(tmp, JSON.stringify([...this.made].sort()) + '\n', { mode: 0o600 });
    renameSync(tmp, this.file());
  }
}
