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

/** checkAddress refuses what is not an IPv4 address and a port (an integer in 1..65535): only those are written into a ruleset. */
function checkAddress(what: string, address: unknown, port: unknown): void {
  if (typeof address !== 'string' || !isIPv4(address)) throw new Error(`${what}: address ${JSON.stringify(address)} is not an IPv4 address`);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${what}: port ${JSON.stringify(port)} is not an integer in 1..65535`);
}

/**
 * rulesetText renders the whole table for the routes: what `nft -f` loads in
 * one transaction, with the owner in its comment. It throws, naming the
 * route, on an address that is not IPv4 or a port that is not an integer in
 * 1..65535 (the server checks what agents report too; this is the last word
 * before the kernel).
 */
export function rulesetText(table: string, routes: readonly KernelRoute[], owner?: TableOwner, nat: NatOptions = {}): { text: string; chains: Map<string, { service: string; task: string }> } {
  if (!/^[a-zA-Z0-9_]{1,120}$/.test(table)) throw new Error(`nftables table name ${JSON.stringify(table)} is not one tableName() makes`);
  for (const r of routes) {
    const what = `kernel route of service ${JSON.stringify(r.service)}`;
    checkAddress(what, r.address, r.port);
    if (r.iif !== undefined && !/^bt[0-9a-f]{12}$/.test(r.iif)) throw new Error(`${what}: interface ${JSON.stringify(r.iif)} is not a task bridge`);
    if (r.protocol !== undefined && r.protocol !== 'udp') throw new Error(`${what}: protocol ${JSON.stringify(r.protocol)} is not tcp or udp`);
    for (const e of r.endpoints) checkAddress(`${what}, endpoint ${JSON.stringify(e.task)}`, e.address, e.port);
  }
  const chains = new Map<string, { service: string; task: string }>();
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
  ];
  const services: string[] = [];
  const remote: string[] = [];
  routes.forEach((r, i) => {
    if (r.endpoints.length === 0) return;
    const proto = r.protocol ?? 'tcp';
    services.push(`    ${r.iif ? `iifname "${r.iif}" ` : ''}ip daddr ${r.address} ${proto} dport ${r.port} goto route_${i}`);
    // Only connections this table DNATed (to one of its listeners), never someone else's.
    remote.push(`    meta l4proto ${proto} ct original ip daddr ${r.address} ct original proto-dst ${r.port} masquerade`);
    const map = r.endpoints.map((_, k) => `${k} : goto ep_${i}_${k}`).join(', ');
    lines.push(`  chain route_${i} {`, `    numgen inc mod ${r.endpoints.length} vmap { ${map} }`, '  }');
    r.endpoints.forEach((e, k) => {
      if (e.task !== '') chains.set(`ep_${i}_${k}`, { service: r.service, task: e.task });
      lines.push(`  chain ep_${i}_${k} {`, `    meta l4proto ${proto} counter dnat to ${e.address}:${e.port}`, '  }');
    });
  });
  lines.push('  chain services {', ...services, '  }', '  chain remote {', ...remote, '  }', '}');
  return { text: lines.join('\n') + '\n', chains };
}

export class NftPath {
  private chains = new Map<string, { service: string; task: string }>();
  /** Connections counted by tables already replaced. */
  private readonly carried: KernelCounts = new Map();
  private applied = '';
  private loaded = false;

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

  /**
   * sync replaces the table with these routes; the same routes again cost
   * nothing. Returns an error text, or undefined. Routes it refuses leave an
   * empty table: their connections go through the userspace proxy rather
   * than by rules made for endpoints that have changed since.
   */
  async sync(routes: readonly KernelRoute[]): Promise<string | undefined> {
    const key = JSON.stringify(routes);
    if (key === this.applied) return undefined;
    try {
      rulesetText(this.table, routes, undefined, this.nat);
    } catch (e) {
      return (await this.load([])) ?? (e as Error).message;
    }
    return this.load(routes, key);
  }

  private async load(routes: readonly KernelRoute[], key = JSON.stringify(routes)): Promise<string | undefined> {
    if (this.loaded) await this.carry();
    const { text, chains } = rulesetText(this.table, routes, this.owner, this.nat);
    // Create-if-missing, delete, and add anew in one transaction: never a moment without rules for a live route.
    const r = await run(['-f', '-'], `table ip ${this.table}\ndelete table ip ${this.table}\n${text}`);
    if (r.code !== 0) return `nft: ${r.stderr.trim() || `exit ${r.code}`}`;
    this.chains = chains;
    this.applied = key;
    this.loaded = true;
    return undefined;
  }

  /** counts: connections the kernel routed, per service and task, since the agent started. */
  async counts(): Promise<KernelCounts> {
    const now = await this.read();
    const out: KernelCounts = new Map();
    for (const src of [this.carried, now]) {
      for (const [svc, c] of src) {
        let o = out.get(svc);
        if (!o) out.set(svc, (o = { total: 0, byTask: new Map() }));
        o.total += c.total;
        for (const [t, n] of c.byTask) o.byTask.set(t, (o.byTask.get(t) ?? 0) + n);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    if (!this.loaded) return;
    this.loaded = false;
    await run(['delete', 'table', 'ip', this.table]);
  }

  private async carry(): Promise<void> {
    for (const [svc, c] of await this.read()) {
      let o = this.carried.get(svc);
      if (!o) this.carried.set(svc, (o = { total: 0, byTask: new Map() }));
      o.total += c.total;
      for (const [t, n] of c.byTask) o.byTask.set(t, (o.byTask.get(t) ?? 0) + n);
    }
  }

  private async read(): Promise<KernelCounts> {
    const out: KernelCounts = new Map();
    if (!this.loaded) return out;
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
      const owner = rule && this.chains.get(rule.chain);
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
