/**
 * The task network's nftables table, one per node (apart from the mesh's):
 * port mappings from the node's address into task namespaces (Nomad's
 * bridge mode: a task's container port is reached from other nodes at
 * <node address>:<host port>), and what makes mappings safe and complete.
 *
 * - `mappings` DNATs <node address>:<host port> to <task address>:<port>,
 *   for packets arriving (prerouting) and for the node's own processes
 *   (output).
 * - Loopback clients. A node whose address is a loopback one (every test
 *   node, `baton up`) DNATs a connection from 127.x into a bridge, which the
 *   kernel refuses to route unless the bridge has `route_localnet`; the
 *   postrouting chain then masquerades such packets to the bridge's own
 *   address, so the task sees an ordinary source and its replies come back.
 * - route_localnet opens the door kube-proxy closed after CVE-2020-8558: a
 *   neighbour on the bridge could send packets to 127.0.0.1 and reach the
 *   node's loopback-only services. The guard chain drops every packet from
 *   a bridge to 127.0.0.0/8 that no mapping rewrote.
 * - Hairpin: a task reaching a mapping that lands on a task of the same
 *   bridge (itself included) is masqueraded too, so the reply goes back
 *   through the node.
 * - Without egress, a task routes nothing outside the cluster's ranges, so
 *   a connection into the bridge from any other address (another node's
 *   mesh, which masqueraded it to that node's address) is masqueraded to
 *   the bridge's address; the reply, its destination restored, is let
 *   through the forward chain's drop as part of a connection the task did
 *   not open.
 *
 * Rules are rendered only from typed, checked values (rulesetText refuses
 * anything else): addresses parsed as IPv4, ports integers in range,
 * interface names of the agent's own making.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { formatCidr, type Cidr } from './plumbing.js';
import { tableName } from '../nft.js';

export interface PortMapping {
  /** The node's address the mapping listens on. */
  address: string;
  port: number;
  protocol: 'tcp' | 'udp';
  /** The task's address and port inside its namespace. */
  to: string;
  toPort: number;
}

export interface NetTableSpec {
  /** The node's bridges (interface names from ifName('bt', …)). */
  bridges: { name: string; range: Cidr }[];
  mappings: PortMapping[];
  /** The cluster's own ranges (task and service ranges): tasks reach these, and the node, whatever egress says. */
  internal: Cidr[];
  /** Tasks reach the outside, masqueraded to the node's address; without it their packets to anything else are dropped. */
  egress: boolean;
  /**
   * Isolation: the addresses of each network's tasks (this node's, and the
   * cluster's ready ones). A task of this node reaches a task address only
   * when both are on one network; addresses in `scope` (the cluster's task
   * range) outside every shared network are dropped.
   */
  isolation?: { scope: Cidr[]; networks: string[][] };
}

const NFT = '/usr/sbin/nft';
const BRIDGE_NAME = /^bt[0-9a-f]{12}$/;

function checkPort(p: number, what: string): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`${what} must be a port from 1 to 65535, got ${JSON.stringify(p)}`);
  return p;
}

function checkIp(a: string, what: string): string {
  if (typeof a !== 'string' || !isIPv4(a)) throw new Error(`${what} must be an IPv4 address, got ${JSON.stringify(a)}`);
  return a;
}

function checkBridge(name: string): string {
  if (!BRIDGE_NAME.test(name)) throw new Error(`not a bridge of the agent's: ${JSON.stringify(name)}`);
  return name;
}

/** netTableName: the mesh's table name (nft.ts) with `baton_net_` for `baton_`, so the mesh's sweep of dead agents' tables never takes it. */
export function netTableName(node: string, cluster: string): string {
  return tableName(node, cluster).replace(/^baton_/, 'baton_net_').slice(0, 120);
}

/** rulesetText renders the whole table; it throws on any value that is not what its type says. */
export function rulesetText(table: string, spec: NetTableSpec): string {
  if (!/^[A-Za-z0-9_]{1,120}$/.test(table)) throw new Error(`not a table name: ${JSON.stringify(table)}`);
  const bridges = spec.bridges.map((b) => ({ name: checkBridge(b.name), range: formatCidr(b.range) }));
  const internal = spec.internal.map(formatCidr);
  const internalSet = internal.length ? `{ ${internal.join(', ')} }` : undefined;
  const isolation = spec.isolation && spec.isolation.scope.length ? spec.isolation : undefined;
  const sets = (isolation?.networks ?? []).map((members, i) => {
    const elements = [...new Set(members.map((a, k) => checkIp(a, `isolation.networks[${i}][${k}]`)))].sort();
    return [`  set net_${i} {`, '    type ipv4_addr;', ...(elements.length ? [`    elements = { ${elements.join(', ')} }`] : []), '  }'];
  });
  const mappings = spec.mappings.map((m, i) => {
    if (m.protocol !== 'tcp' && m.protocol !== 'udp') throw new Error(`mappings[${i}].protocol must be tcp or udp`);
    return `    ip daddr ${checkIp(m.address, `mappings[${i}].address`)} ${m.protocol} dport ${checkPort(m.port, `mappings[${i}].port`)} dnat to ${checkIp(m.to, `mappings[${i}].to`)}:${checkPort(m.toPort, `mappings[${i}].toPort`)}`;
  });
  const lines = [
    `table ip ${table} {`,
    ...sets.flat(),
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    '    jump mappings',
    '  }',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    '    jump mappings',
    '  }',
    '  chain mappings {',
    ...mappings,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    ...bridges.flatMap((b) => [
      // A loopback client DNATed into a task: the task answers the bridge's address instead.
      `    oifname "${b.name}" ip saddr 127.0.0.0/8 masquerade`,
      // Hairpin: a task of this bridge reaching a mapping that lands on this bridge.
      `    oifname "${b.name}" ip saddr ${b.range} ct status dnat masquerade`,
      // Egress: a task's packet leaving for anything outside the cluster's ranges goes out as the node.
      ...(spec.egress ? [`    iifname "${b.name}" oifname != "${b.name}" ip saddr ${b.range}${internalSet ? ` ip daddr != ${internalSet}` : ''} masquerade`] : []),
      // Without egress a task has no route off the cluster's ranges: a client from elsewhere (another node's mesh) is answered through its gateway.
      ...(spec.egress ? [] : [`    oifname "${b.name}" ip saddr != ${internalSet ?? b.range} masquerade`]),
    ]),
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    ...(isolation || !spec.egress ? ['    ct state established,related accept'] : []),
    ...(isolation
      ? [
          // A task reaches a task only on a network they share (a VIP's connection is checked after its DNAT, at the task it reached).
          ...bridges.flatMap((b) => isolation.networks.map((_, i) => `    iifname "${b.name}" ip saddr @net_${i} ip daddr @net_${i} accept`)),
          ...bridges.map((b) => `    iifname "${b.name}" ip daddr { ${isolation.scope.map(formatCidr).join(', ')} } drop`),
        ]
      : []),
    // Without egress, what a task sends is forwarded only within the cluster's ranges (the node itself is input, not forward);
    // its replies to connections made to it (masqueraded above, their destination restored) go wherever those came from.
    ...(spec.egress ? [] : bridges.map((b) => `    iifname "${b.name}"${internalSet ? ` ip daddr != ${internalSet}` : ''} drop`)),
    '  }',
    '  chain guard {',
    '    type filter hook prerouting priority raw; policy accept;',
    // CVE-2020-8558: nothing from a bridge reaches the node's loopback (route_localnet is on for the bridges).
    ...bridges.map((b) => `    iifname "${b.name}" ip daddr 127.0.0.0/8 drop`),
    '  }',
    '}',
  ];
  // Tasks of one node talk through its bridge without the node routing them: the bridge family's forward hook applies
  // the same rule to those frames (where br_netfilter is loaded, the ip family sees them as well; the verdicts agree).
  if (isolation)
    lines.push(
      `table bridge ${table} {`,
      ...sets.flat(),
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      // (Frames are told apart by their source range, this node's bridge's: not every kernel matches a bridge's name here.)
      ...bridges.flatMap((b) => isolation.networks.map((_, i) => `    ip saddr ${b.range} ip saddr @net_${i} ip daddr @net_${i} accept`)),
      ...bridges.map((b) => `    ip saddr ${b.range} ip daddr { ${isolation.scope.map(formatCidr).join(', ')} } drop`),
      '  }',
      '}',
    );
  return lines.join('\n') + '\n';
}

function run(args: string[], input?: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(NFT, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr!.on('data', (d) => (stderr += d));
    p.on('error', (e) => resolve({ code: -1, stderr: e.message }));
    p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
    if (p.stdin) {
      p.stdin.on('error', () => {});
      p.stdin.end(input);
    }
  });
}

/** NetTable loads the node's task-network table, whole and atomically, and removes it at exit. */
export class NetTable {
  private applied = '';

  constructor(readonly name: string) {}

  /** sync replaces the table with this spec (the same spec again costs nothing); it throws with nft's words on failure. */
  async sync(spec: NetTableSpec): Promise<void> {
    const text = rulesetText(this.name, spec);
    if (text === this.applied) return;
    // route_localnet on each bridge, so DNAT from a loopback client can route into it (guarded above).
    for (const b of spec.bridges) await writeFile(`/proc/sys/net/ipv4/conf/${checkBridge(b.name)}/route_localnet`, '1');
    // Both families' tables are replaced in one transaction (the bridge one exists only with isolation rules).
    const r = await run(['-f', '-'], `table ip ${this.name}\ndelete table ip ${this.name}\ntable bridge ${this.name}\ndelete table bridge ${this.name}\n${text}`);
    if (r.code !== 0) throw new Error(`nft: ${r.stderr.trim() || `exit ${r.code}`}`);
    this.applied = text;
  }

  async close(): Promise<void> {
    this.applied = '';
    await run(['delete', 'table', 'ip', this.name]);
    await run(['delete', 'table', 'bridge', this.name]);
  }
}
