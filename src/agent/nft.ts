/**
 * NftPath is the routing mesh's kernel fast path, as kube-proxy's nftables
 * mode: one nftables table that this agent owns (named after its node, so
 * agents sharing a host never touch each other's), created at start, replaced
 * whole and atomically on every change, deleted at exit. A service that needs
 * nothing but round robin over endpoints it has is DNATed by the kernel; one
 * that needs holding, least_conn or the PROXY protocol (or has no endpoint)
 * has no rule, so its connections reach the userspace proxy listening on the
 * same address and port.
 *
 * Only the first packet of a connection traverses a nat chain, so the packet
 * counter of each endpoint's rule counts connections: the kernel path feeds
 * the mesh's connection counters (not bytes) from `nft -j list table`.
 *
 * A connection DNATed to an endpoint on another node is masqueraded to this
 * node's address on the way out (kube-proxy's masquerade for remote
 * endpoints): the endpoint's node must send the reply back here, where the
 * DNAT is undone, not straight to the client, who would drop a reply from
 * an address it never dialed. A client that is a task of this node, and an
 * endpoint in this node's own task range or reached over loopback, keep
 * their addresses.
 *
 * The table's comment names the agent that owns it (net/owner.ts), so that
 * the table of an agent killed with -9 is removed by another agent of its
 * cluster on the host (net/tables.ts). Every address and port is checked
 * before it is written into the ruleset.
 */
import { spawn } from 'node:child_process';
import { isIPv4 } from 'node:net';
import { ownerComment, selfOwner, type TableOwner } from './net/owner.js';
import { formatCidr, parseCidr, type Cidr } from '../base/cidr.js';

/** One DNAT rule: connections to address:port go round robin to the endpoints. */
export interface KernelRoute {
  service: string;
  address: string;
  port: number;
  /**
   * Only packets arriving on this interface (a node's task bridge): a
   * service VIP is routed for this node's tasks, in prerouting. Endpoints
   * whose task is '' are this node's userspace proxy (not counted: it counts
   * its own connections).
   */
  iif?: string;
  /** Absent for TCP. For UDP, a "connection" is a conntrack flow: datagrams between one client address and port and the route, until they stop for the kernel's UDP timeout. */
  protocol?: 'udp';
  endpoints: { task: string; address: string; port: number }[];
}

/** KernelCounts: connections per service, and per service and task. */
export type KernelCounts = Map<string, { total: number; byTask: Map<string, number> }>;

const NFT = '/usr/sbin/nft';

/** run runs nft with these arguments (never through a shell), feeding it `input` on stdin. */
export function run(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(NFT, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d) => (stdout += d));
    p.stderr!.on('data', (d) => (stderr += d));
    p.on('error', (e) => resolve({ code: -1, stdout, stderr: e.message }));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    if (p.stdin) {
      // nft may exit before reading everything (a syntax error): its exit code says why, not EPIPE.
      p.stdin.on('error', () => {});
      p.stdin.end(input);
    }
  });
}

/**
 * tableName is the node's table: `baton_`, the first 8 characters of the
 * cluster id and the node name, anything but [a-zA-Z0-9_] made `_`; two
 * clusters on one host whose nodes share a name never share a table.
 */
export function tableName(node: string, cluster: string): string {
  return `baton_${cluster.slice(0, 8)}_${node}`.replace(/[^a-zA-Z0-9_]/g, '_').slice(0, 120);
}

/** NatOptions: what the masquerade for remote endpoints needs to know of this node. */
export interface NatOptions {
  /** This node's task range: connections from its tasks, and to them, are not masqueraded. */
  taskRange?: Cidr;
}

/** checkAddress refuses what is not an IPv4 address and a port (an integer in 1..65535): only those are written into a ruleset (or HAProxy's configuration, net/haproxyConfig.ts). */
export function checkAddress(what: string, address: unknown, port: unknown): void {
  if (typeof address !== 'string' || !isIPv4(address)) throw new Error(`${what}: address ${JSON.stringify(address)} is not an IPv4 address`);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${what}: port ${JSON.stringify(port)} is not an integer in 1..65535`);
}

/** checkRoutes refuses, naming the route, what is not an IPv4 address, an integer port, a task bridge, a protocol. */
function checkRoutes(table: string, routes: readonly KernelRoute[]): void {
  if (!/^[a-zA-Z0-9_]{1,120}$/.test(table)) throw new Error(`nftables table name ${JSON.stringify(table)} is not one tableName() makes`);
  for (const r of routes) {
    const what = `kernel route of service ${JSON.stringify(r.service)}`;
    checkAddress(what, r.address, r.port);
    if (r.iif !== undefined && !/^bt[0-9a-f]{12}$/.test(r.iif)) throw new Error(`${what}: interface ${JSON.stringify(r.iif)} is not a task bridge`);
    if (r.protocol !== undefined && r.protocol !== 'udp') throw new Error(`${what}: protocol ${JSON.stringify(r.protocol)} is not tcp or udp`);
    for (const e of r.endpoints) checkAddress(`${what}, endpoint ${JSON.stringify(e.task)}`, e.address, e.port);
  }
}

/** Endpoint chain → whose connections its counter counts. */
type ChainOwners = Map<string, { service: string; task: string }>;

/** The routes' part of a table: one generation's route and endpoint chains, and the rules of `services` and `remote` that lead into them. */
interface RoutesPart {
  /** The generation's chains, route chains first (the order they can be deleted in). */
  generation: string[];
  chainLines: string[];
  services: string[];
  remote: string[];
  chains: ChainOwners;
}

function routesPart(routes: readonly KernelRoute[], gen: number): RoutesPart {
  const part: RoutesPart = { generation: [], chainLines: [], services: [], remote: [], chains: new Map() };
  const endpointChains: string[] = [];
  routes.forEach((r, i) => {
    if (r.endpoints.length === 0) return;
    const proto = r.protocol ?? 'tcp';
    const route = `route_${gen}_${i}`;
    part.services.push(`    ${r.iif ? `iifname "${r.iif}" ` : ''}ip daddr ${r.address} ${proto} dport ${r.port} goto ${route}`);
    // Only connections this table DNATed (to one of its listeners), never someone else's.
    part.remote.push(`    meta l4proto ${proto} ct original ip daddr ${r.address} ct original proto-dst ${r.port} masquerade`);
    const map = r.endpoints.map((_, k) => `${k} : goto ep_${gen}_${i}_${k}`).join(', ');
    part.generation.push(route);
    part.chainLines.push(`  chain ${route} {`, `    numgen inc mod ${r.endpoints.length} vmap { ${map} }`, '  }');
    r.endpoints.forEach((e, k) => {
      const ep = `ep_${gen}_${i}_${k}`;
      endpointChains.push(ep);
      if (e.task !== '') part.chains.set(ep, { service: r.service, task: e.task });
      part.chainLines.push(`  chain ${ep} {`, `    meta l4proto ${proto} counter dnat to ${e.address}:${e.port}`, '  }');
    });
  });
  part.generation.push(...endpointChains);
  return part;
}

/** routesLines: the generation's chains, then `services` and `remote` leading into them. */
function routesLines(part: RoutesPart): string[] {
  return [...part.chainLines, '  chain services {', ...part.services, '  }', '  chain remote {', ...part.remote, '  }'];
}

/**
 * rulesetText renders the whole table for the routes: what `nft -f` loads in
 * one transaction, with the owner in its comment. Its route and endpoint
 * chains carry the generation `gen` in their names (swapText replaces them
 * by the next generation's). It throws, naming the route, on an address
 * that is not IPv4 or a port that is not an integer in 1..65535 (the server
 * checks what agents report too; this is the last word before the kernel).
 */
export function rulesetText(table: string, routes: readonly KernelRoute[], owner?: TableOwner, nat: NatOptions = {}, gen = 0): { text: string; chains: ChainOwners; generation: string[] } {
  checkRoutes(table, routes);
  const part = routesPart(routes, gen);
  const lines = [
    `table ip ${table} {`,
    ...(owner ? [`  comment "${ownerComment(owner)}"`] : []),
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    '    jump services',
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    '    jump services',
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    // Leaving for another node (not over loopback, not into this node's range), from anyone but this node's tasks.
    `    ct status dnat oifname != "lo"${nat.taskRange ? ` ip saddr != ${formatCidr(nat.taskRange)} ip daddr != ${formatCidr(nat.taskRange)}` : ''} goto remote`,
    '  }',
    ...routesLines(part),
    '}',
  ];
  return { text: lines.join('\n') + '\n', chains: part.chains, generation: part.generation };
}

/**
 * swapText replaces, in one transaction, the routes of a table that
 * rulesetText made: generation `gen`'s chains are added, and `services` and
 * `remote` are refilled to lead into them. The previous generation's chains
 * stay, unreachable: no connection enters them after the swap, so their
 * counters are final and are read before they are deleted (a table replaced
 * whole would lose the connections counted between the last read and the
 * replacement).
 */
export function swapText(table: string, routes: readonly KernelRoute[], gen: number): { text: string; chains: ChainOwners; generation: string[] } {
  checkRoutes(table, routes);
  const part = routesPart(routes, gen);
  const lines = [
    `flush chain ip ${table} services`,
    `flush chain ip ${table} remote`,
    `table ip ${table} {`,
    ...routesLines(part),
    '}',
  ];
  return { text: lines.join('\n') + '\n', chains: part.chains, generation: part.generation };
}

/** add adds the counts of `b` into `a`. */
function add(a: KernelCounts, b: KernelCounts): void {
  for (const [svc, c] of b) {
    let o = a.get(svc);
    if (!o) a.set(svc, (o = { total: 0, byTask: new Map() }));
    o.total += c.total;
    for (const [t, n] of c.byTask) o.byTask.set(t, (o.byTask.get(t) ?? 0) + n);
  }
}

export class NftPath {
  private chains: ChainOwners = new Map();
  private readonly carried: KernelCounts = new Map();
  private applied = '';
  private loaded = false;
  /** The generation of the routes' chains in the table now. */
  private gen = 0;
  /** The chains of the generation in the table now; those swapped out whose deletion failed. */
  private generation: string[] = [];
  private stale: string[] = [];
  /** One change or read at a time: a read between a swap and the carry of the old counts would go backwards. */
  private lock: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly table: string,
    private readonly owner: TableOwner,
    private readonly nat: NatOptions,
  ) {}

  /**
   * open makes the node's table (replacing a stale one left by a killed
   * agent), or says why the kernel path is unavailable. taskRange is the
   * node's task range, when it has a task network.
   */
  static async open(node: string, cluster: string, taskRange?: string): Promise<NftPath | string> {
    const t = new NftPath(tableName(node, cluster), selfOwner(), { taskRange: taskRange === undefined ? undefined : parseCidr(taskRange) });
    const err = await t.load([]);
    return err ?? t;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => undefined);
    return next;
  }

  /**
   * sync replaces the table's routes with these; the same routes again cost
   * nothing. Returns an error text, or undefined. Routes it refuses leave no
   * route: their connections go through the userspace proxy rather than by
   * rules made for endpoints that have changed since.
   */
  async sync(routes: readonly KernelRoute[]): Promise<string | undefined> {
    const key = JSON.stringify(routes);
    if (key === this.applied) return undefined;
    try {
      checkRoutes(this.table, routes);
    } catch (e) {
      return (await this.load([])) ?? (e as Error).message;
    }
    return this.load(routes, key);
  }

  private load(routes: readonly KernelRoute[], key = JSON.stringify(routes)): Promise<string | undefined> {
    return this.serial(async () => {
      const gen = ++this.gen;
      if (!this.loaded) {
        const { text, chains, generation } = rulesetText(this.table, routes, this.owner, this.nat, gen);
        // Create-if-missing, delete, and add anew in one transaction: never a moment without rules for a live route.
        const r = await run(['-f', '-'], `table ip ${this.table}\ndelete table ip ${this.table}\n${text}`);
        if (r.code !== 0) return `nft: ${r.stderr.trim() || `exit ${r.code}`}`;
        this.chains = chains;
        this.generation = generation;
        this.applied = key;
        this.loaded = true;
        return undefined;
      }
      const { text, chains, generation } = swapText(this.table, routes, gen);
      const r = await run(['-f', '-'], text);
      if (r.code !== 0) return `nft: ${r.stderr.trim() || `exit ${r.code}`}`;
      // The old generation counts nothing more: its counts are final. Read them, then delete it.
      const old = this.chains;
      const doomed = [...this.stale, ...this.generation];
      this.chains = chains;
      this.generation = generation;
      this.applied = key;
      add(this.carried, await this.read(old));
      this.stale = [];
      if (doomed.length) {
        const d = await run(['-f', '-'], doomed.map((c) => `delete chain ip ${this.table} ${c}`).join('\n') + '\n');
        // Left for the next swap: an unreachable chain costs nothing meanwhile.
        if (d.code !== 0) this.stale = doomed.length > 10_000 ? [] : doomed;
      }
      return undefined;
    });
  }

  /** counts: connections the kernel routed, per service and task, since the agent started. */
  counts(): Promise<KernelCounts> {
    return this.serial(async () => {
      const out: KernelCounts = new Map();
      add(out, this.carried);
      add(out, await this.read(this.chains));
      return out;
    });
  }

  async close(): Promise<void> {
    if (!this.loaded) return;
    this.loaded = false;
    await run(['delete', 'table', 'ip', this.table]);
  }

  /** read sums the counters of the endpoint chains in `chains`, by service and task. */
  private async read(chains: Map<string, { service: string; task: string }>): Promise<KernelCounts> {
    const out: KernelCounts = new Map();
    if (!this.loaded || chains.size === 0) return out;
    const r = await run(['-j', 'list', 'table', 'ip', this.table]);
    if (r.code !== 0) return out;
    let doc: { nftables?: { rule?: { chain: string; expr: { counter?: { packets: number } }[] } }[] };
    try {
      doc = JSON.parse(r.stdout);
    } catch {
      return out;
    }
    for (const item of doc.nftables ?? []) {
      const rule = item.rule;
      const owner = rule && chains.get(rule.chain);
      if (!owner) continue;
      const packets = rule.expr.find((e) => e.counter)?.counter?.packets ?? 0;
      let o = out.get(owner.service);
      if (!o) out.set(owner.service, (o = { total: 0, byTask: new Map() }));
      o.total += packets;
      o.byTask.set(owner.task, (o.byTask.get(owner.task) ?? 0) + packets);
    }
    return out;
  }
}
