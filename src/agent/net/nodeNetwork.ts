/**
 * NodeNetwork is a node's task network (`--task-network bridge`): its bridge
 * with the range the server allocated the node, an address per task kept in
 * the data directory (so a task keeps its address across an agent restart
 * and an engine restart), the plumbing of each task's namespace, and the
 * node's port mappings into tasks (netTable.ts).
 */
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { attach, deleteBridge, detach, ensureBridge, gatewayOf, ifName, intToIp, ipToInt, parseCidr, type BridgeOptions, type Cidr } from './plumbing.js';
import { NetTable, netTableName, type PortMapping } from './netTable.js';
import { publishedAddress } from '../../api/hostIp.js';

export interface NodeNetworkOptions {
  node: string;
  cluster: string;
  /** The node's task range, allocated by the server. */
  range: string;
  /** The node's address (port mappings answer there). */
  address: string;
  dataDir: string;
  /** Ranges a task reaches through its gateway (the cluster's task range); a default route only with egress. */
  routes: string[];
  egress: boolean;
  log: Logger;
}

export class NodeNetwork {
  readonly bridge: BridgeOptions;
  private readonly routes: Cidr[];
  /** Task name → address, as saved. */
  private readonly addresses = new Map<string, string>();
  private readonly table: NetTable;
  private readonly mappings = new Map<string, PortMapping[]>();
  private isolation?: { scope: Cidr[]; networks: string[][] };
  private syncing: Promise<void> = Promise.resolve();
  /** The last address given (as an integer), where the next search starts. */
  private lastGiven?: number;

  constructor(private readonly opts: NodeNetworkOptions) {
    this.bridge = { name: ifName('bt', `${opts.cluster}/${opts.node}`), range: parseCidr(opts.range), owner: { cluster: opts.cluster, node: opts.node } };
    this.routes = opts.routes.map(parseCidr);
    this.table = new NetTable(netTableName(opts.node, opts.cluster));
    try {
      const saved = JSON.parse(readFileSync(this.file(), 'utf8')) as Record<string, string>;
      for (const [task, ip] of Object.entries(saved)) if (this.inRange(ip)) this.addresses.set(task, ip);
      for (const ip of this.addresses.values()) this.lastGiven = Math.max(this.lastGiven ?? 0, ipToInt(ip));
    } catch {
      /* no file yet, or a damaged one: addresses are handed out afresh */
    }
  }

  private file(): string {
    return join(this.opts.dataDir, 'task-addresses.json');
  }

  private save(): void {
    const tmp = `${this.file()}.tmp`;
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.addresses)) + '\n', { mode: 0o600 });
    renameSync(tmp, this.file());
  }

  private inRange(ip: string): boolean {
    try {
      const n = ipToInt(ip);
      const size = 2 ** (32 - this.bridge.range.prefix);
      return n > this.bridge.range.base + 1 && n < this.bridge.range.base + size - 1;
    } catch {
      return false;
    }
  }

  /** start makes the bridge and the (empty) mapping table. */
  async start(): Promise<void> {
    await ensureBridge(this.bridge);
    await this.sync();
  }

  /** gateway: the bridge's own address. */
  get gateway(): string {
    return gatewayOf(this.bridge.range);
  }

  /** known: the address a task has, if any (without giving one). */
  known(task: string): string | undefined {
    return this.addresses.get(task);
  }

  /** tasks: the tasks holding an address. */
  tasks(): string[] {
    return [...this.addresses.keys()];
  }

  /**
   * addressOf gives a task its address, or the one it had: the next free one
   * after the last given (not the lowest free: an address just given back
   * may still be in a neighbour's ARP cache or a peer's conntrack entry, so
   * it is reused last, as Docker's IPAM does).
   */
  addressOf(task: string): string {
    const had = this.addresses.get(task);
    if (had) return had;
    const used = new Set(this.addresses.values());
    const first = this.bridge.range.base + 2;
    const count = 2 ** (32 - this.bridge.range.prefix) - 3;
    const start = this.lastGiven === undefined ? 0 : (this.lastGiven - first + 1) % count;
    for (let k = 0; k < count; k++) {
      const n = first + ((start + k) % count);
      const ip = intToIp(n);
      if (used.has(ip)) continue;
      this.addresses.set(task, ip);
      this.lastGiven = n;
      this.save();
      return ip;
    }
    throw new Error(`no address left in this node's task range ${this.opts.range}`);
  }

  /** plumb joins a task's namespace (held by process pid) to the bridge, at its address. */
  async plumb(task: string, uid: string, pid: number): Promise<string> {
    const address = this.addressOf(task);
    await attach({ bridge: this.bridge, hostIf: ifName('vb', uid), pid, address, routes: this.routes, egress: this.opts.egress });
    return address;
  }

  /**
   * setMappings maps node ports into a task (replacing what it had) and
   * loads the table: on the node's address, or on the loopback address a
   * port's host IP names (api/hostIp.ts; an IPv4 table, so an IPv6 one, or
   * an address this node does not have, maps nothing).
   */
  async setMappings(task: string, ports: readonly { hostPort: number; target: number; protocol?: 'tcp' | 'udp'; hostIP?: string }[]): Promise<void> {
    const to = this.addresses.get(task);
    if (!to) return;
    if (ports.length === 0 && !this.mappings.has(task)) return;
    this.mappings.set(
      task,
      ports.flatMap((p) => {
        const address = publishedAddress(p.hostIP, this.opts.address);
        return address !== undefined && isIPv4(address) ? [{ address, port: p.hostPort, protocol: p.protocol ?? 'tcp', to, toPort: p.target }] : [];
      }),
    );
    await this.sync();
  }

  /** release forgets a task: its mappings, its address and its veth. */
  async release(task: string, uid: string | undefined): Promise<void> {
    const had = this.mappings.delete(task);
    if (this.addresses.delete(task)) this.save();
    if (uid) await detach(ifName('vb', uid));
    if (had) await this.sync();
  }

  /** setIsolation replaces the isolation rules: the addresses on each network (TaskNetworkView.members), dropping the rest of `scope`. */
  async setIsolation(scope: string[], networks: string[][]): Promise<void> {
    this.isolation = { scope: scope.map(parseCidr), networks };
    await this.sync();
  }

  private tableSpec() {
    return { bridges: [this.bridge], mappings: [...this.mappings.values()].flat(), internal: [this.bridge.range, ...this.routes], egress: this.opts.egress, ...(this.isolation ? { isolation: this.isolation } : {}) };
  }

  /** sync loads the table, one load at a time, each with what is wanted when it starts. */
  private sync(): Promise<void> {
    const next = this.syncing.catch(() => {}).then(() => this.table.sync(this.tableSpec()));
    this.syncing = next;
    return next;
  }

  async close(): Promise<void> {
    await this.table.close();
  }

  /** destroy takes the node's task network down: its table and its bridge (the node left the cluster). */
  async destroy(): Promise<void> {
    await this.syncing.catch(() => {});
    await this.table.close();
    await deleteBridge(this.bridge.name);
  }
}
