/**
 * Task address ranges: the server gives each node a range of the cluster's
 * (`--cluster-cidr`, 10.42.0.0/16; `--node-cidr-size`, a /24 each), from
 * which its agent addresses its tasks, as kube-controller-manager's node
 * IPAM fills `podCIDR` and k3s does with the same defaults.
 *
 * A range is held by a key of its own, `/baton/ipam/ranges/<a.b.c.d-N>` →
 * the node's name, created with a compare "absent" in the same txn that
 * writes the node with `status.taskRange`, and deleted in the same txn that
 * deletes the node. Uniqueness is therefore the store's, not this process's:
 * several servers on one store (the HA control plane) may choose the same
 * range at once and only one txn commits; the loser tries the next. The node
 * cache only suggests which ranges are free (it is made consistent with the
 * store first, as a list is), and ranges being written by this server's own
 * registrations are skipped, so joins racing here do not all try one range.
 *
 * A range, once given, is kept for the node's life: a re-registration (an
 * agent restart) gets the same one, and a server restarted with another
 * cluster CIDR leaves nodes outside it where they are (their tasks keep
 * their addresses) and gives new nodes ranges that overlap none of them.
 *
 * The service CIDR (`--service-cidr`, 10.43.0.0/16, k3s' default too) is
 * checked here alike, and must not overlap the cluster CIDR: a VIP there
 * could be a task's address. Its addresses are given out by serviceVips.ts.
 */
import { BatonError } from '../base/errors.js';
import { contains, formatCidr, intToIp, nthSubnet, overlaps, parseCidr, sizeOf, subnetCount, type Cidr } from '../base/cidr.js';
import { nodeKind } from '../api/kinds.js';
import type { Node } from '../api/types.js';
import type { Compare, Op } from '../store/store.js';
import { recordEvent, type ControllerContext } from './controllers/context.js';
import type { AnyObject } from './registry.js';

export const DEFAULT_CLUSTER_CIDR = '10.42.0.0/16';
export const DEFAULT_NODE_CIDR_SIZE = 24;
export const DEFAULT_SERVICE_CIDR = '10.43.0.0/16';
/** A service CIDR holds at least one VIP besides its network and broadcast addresses. */
export const MAX_SERVICE_CIDR_SIZE = 30;
/** A node range holds at least 16 addresses: the network, the bridge's gateway, the broadcast and 13 tasks. */
export const MAX_NODE_CIDR_SIZE = 28;

export const TASK_RANGE_PREFIX = '/baton/ipam/ranges/';

/** Ranges a cluster CIDR may not touch: tasks there would be unreachable or hijack the host's own traffic. */
const RESERVED: { cidr: Cidr; what: string }[] = [
  { cidr: parseCidr('0.0.0.0/8'), what: '"this network" (0.0.0.0/8)' },
  { cidr: parseCidr('127.0.0.0/8'), what: 'loopback (127.0.0.0/8)' },
  { cidr: parseCidr('169.254.0.0/16'), what: 'link-local (169.254.0.0/16)' },
  { cidr: parseCidr('224.0.0.0/4'), what: 'multicast (224.0.0.0/4)' },
  { cidr: parseCidr('240.0.0.0/4'), what: 'reserved (240.0.0.0/4)' },
];

/** How long a registration waits for the node cache to catch up with the store before choosing a range (as a consistent list waits). */
const CACHE_WAIT_MS = 3000;

/**
 * TaskNetwork is the server's address plan: the cluster's range, the prefix
 * length of each node's share, and the range service VIPs come from.
 */
export interface TaskNetwork {
  cluster: Cidr;
  nodePrefix: number;
  service: Cidr;
}

/** checkRange reads one range flag: an IPv4 network address (no host bits), clear of loopback, link-local, multicast and reserved space. */
function checkRange(flag: string, text: string, example: string): Cidr {
  let c: Cidr;
  try {
    c = parseCidr(text);
  } catch (e) {
    throw new BatonError('BATON_ERR_BAD_REQUEST', `${flag}: ${(e as Error).message}`);
  }
  if (formatCidr(c) !== text) throw new BatonError('BATON_ERR_BAD_REQUEST', `${flag} ${text} has host bits set; its network is ${formatCidr(c)}`);
  const clash = RESERVED.find((r) => overlaps(r.cidr, c));
  if (clash) throw new BatonError('BATON_ERR_BAD_REQUEST', `${flag} ${text} overlaps ${clash.what}; use a private range such as ${example}`);
  return c;
}

/**
 * taskNetwork checks the server's flags, at start, and says what is wrong
 * with them: both ranges as checkRange says, a node size longer than the
 * cluster's prefix and at most /28, a service CIDR of /30 or shorter, and
 * the two ranges apart.
 */
export function taskNetwork(clusterCidr: string = DEFAULT_CLUSTER_CIDR, nodeCidrSize: number = DEFAULT_NODE_CIDR_SIZE, serviceCidr: string = DEFAULT_SERVICE_CIDR): TaskNetwork {
  const cluster = checkRange('--cluster-cidr', clusterCidr, DEFAULT_CLUSTER_CIDR);
  if (!Number.isInteger(nodeCidrSize) || nodeCidrSize <= cluster.prefix || nodeCidrSize > MAX_NODE_CIDR_SIZE) {
    throw new BatonError('BATON_ERR_BAD_REQUEST', `--node-cidr-size ${nodeCidrSize}: each node's range must be a prefix length longer than the cluster CIDR's /${cluster.prefix} and at most ${MAX_NODE_CIDR_SIZE} (${cluster.prefix < MAX_NODE_CIDR_SIZE ? `${cluster.prefix + 1} to ${MAX_NODE_CIDR_SIZE}` : `none fits: the cluster CIDR must be /${MAX_NODE_CIDR_SIZE - 1} or shorter`})`);
  }
  const service = checkRange('--service-cidr', serviceCidr, DEFAULT_SERVICE_CIDR);
  if (service.prefix > MAX_SERVICE_CIDR_SIZE) {
    throw new BatonError('BATON_ERR_BAD_REQUEST', `--service-cidr ${serviceCidr} holds no service address once its network and broadcast addresses are left out: it must be /${MAX_SERVICE_CIDR_SIZE} or shorter`);
  }
  if (overlaps(service, cluster)) {
    throw new BatonError('BATON_ERR_BAD_REQUEST', `--service-cidr ${serviceCidr} overlaps --cluster-cidr ${clusterCidr}: a service VIP could then be a task's address; give the two flags ranges apart, such as ${DEFAULT_SERVICE_CIDR} and ${DEFAULT_CLUSTER_CIDR}`);
  }
  return { cluster, nodePrefix: nodeCidrSize, service };
}

/** rangeCount is how many node ranges the cluster CIDR holds. */
export function rangeCount(net: TaskNetwork): number {
  return subnetCount(net.cluster, net.nodePrefix);
}

/** vipCount is how many service VIPs the service CIDR holds: all its addresses but the network and the broadcast. */
export function vipCount(net: TaskNetwork): number {
  return sizeOf(net.service) - 2;
}

/** describeNetwork says the plan in one line (the server prints it at start). */
export function describeNetwork(net: TaskNetwork): string {
  return `${formatCidr(net.cluster)}, a /${net.nodePrefix} per node (${rangeCount(net)} nodes at most); service VIPs from ${formatCidr(net.service)} (${vipCount(net)} services at most)`;
}

/** rangeKey is where the store records who holds range r. */
export function rangeKey(r: Cidr): string {
  return `${TASK_RANGE_PREFIX}${intToIp(r.base)}-${r.prefix}`;
}

function inside(outer: Cidr, r: Cidr): boolean {
  return r.prefix >= outer.prefix && contains(outer, intToIp(r.base));
}

type NodeObject = Node & AnyObject;

/**
 * WriteHolds is what one server is writing now of a numbered resource (a
 * range, a VIP), each with the write's end, so that its own writers racing
 * each other do not all choose the same one: the store decides who holds
 * what, this only keeps a server from losing races against itself.
 */
export class WriteHolds {
  private writing = new Map<number, Promise<void>>();

  /**
   * first holds the first of `free()` (candidates, lowest first, that the
   * caller's view says nobody holds) that no writer here holds, until the
   * returned release. When only held ones are left it waits for one of
   * those writes (it may fail) and asks `free()` again; undefined when none
   * is left.
   */
  async first(free: () => Iterable<number>): Promise<{ value: number; release: () => void } | undefined> {
    for (;;) {
      const waitFor: Promise<void>[] = [];
      for (const v of free()) {
        const w = this.writing.get(v);
        if (w) waitFor.push(w);
        else return { value: v, release: this.hold(v) };
      }
      if (waitFor.length === 0) return undefined;
      await Promise.race(waitFor);
    }
  }

  private hold(v: number): () => void {
    let done!: () => void;
    this.writing.set(v, new Promise<void>((r) => (done = r)));
    return () => {
      this.writing.delete(v);
      done();
    };
  }
}

/** TaskRanges writes nodes together with their ranges: registration, which gives one, and removal, which frees it. */
export class TaskRanges {
  /** Ranges this server's registrations are writing now: others skip them. */
  private readonly holds = new WriteHolds();

  constructor(private readonly ctx: Pick<ControllerContext, 'registry' | 'nodes' | 'network' | 'events' | 'log'>) {}

  /**
   * writeNode creates or updates node `name` (`next` builds the object from
   * the current one, or from nothing) and gives it the lowest free range if
   * it has none, in one txn. Returns the node as written.
   */
  async writeNode(name: string, next: (cur: NodeObject | undefined) => AnyObject): Promise<{ node: NodeObject; created: boolean }> {
    const { registry, network } = this.ctx;
    const lost = new Set<number>();
    for (let conflicts = 0; conflicts < 10; ) {
      const cur = await registry.get<NodeObject>(nodeKind, name);
      const obj = next(cur) as NodeObject;
      const kept = cur?.status.taskRange;
      if (kept && !inside(network.cluster, parseCidr(kept))) {
        this.ctx.log.warn({ node: name, taskRange: kept, clusterCidr: formatCidr(network.cluster) }, `node ${name} keeps its task range ${kept}, outside the cluster CIDR ${formatCidr(network.cluster)}: its tasks keep their addresses`);
      }
      const { range: chosen, release } = kept ? { range: undefined, release: () => {} } : await this.choose(name, lost);
      try {
        const written: NodeObject = { ...obj, status: { ...obj.status, taskRange: kept ?? formatCidr(chosen!) } };
        const { compare, op } = cur ? registry.updateOp(nodeKind, cur, written) : registry.createOp(nodeKind, written);
        const compares: Compare[] = [compare];
        const ops: Op[] = [op];
        if (chosen) {
          compares.push({ key: rangeKey(chosen), target: 'create', op: '=', value: 0 });
          ops.push({ type: 'put', key: rangeKey(chosen), value: name });
        }
        const r = await registry.store.txn(compares, ops);
        if (r.succeeded) {
          written.metadata.resourceVersion = String(r.revision);
          // Held until the cache shows it taken, so the next registration here does not try it.
          if (chosen) await this.ctx.nodes.caughtUp(r.revision, CACHE_WAIT_MS);
          return { node: written, created: !cur };
        }
        // Lost the range to another writer (another server, or a node the cache did not show yet): the next one. Else the node changed: again.
        if (chosen && (await registry.store.get(rangeKey(chosen)))) lost.add(chosen.base);
        else conflicts++;
      } finally {
        release();
      }
    }
    throw new BatonError('BATON_ERR_CONFLICT', `node "${name}" kept changing while it registered; gave up after 10 attempts`);
  }

  /**
   * deleteNode deletes node `name` and frees its range in one txn (the range
   * key only while it names this node). Returns the node as it was.
   */
  async deleteNode(name: string): Promise<NodeObject> {
    const { registry } = this.ctx;
    for (let i = 0; i < 10; i++) {
      const cur = await registry.mustGet<NodeObject>(nodeKind, name);
      const { compare, op } = registry.deleteOp(nodeKind, cur);
      const compares: Compare[] = [compare];
      const ops: Op[] = [op];
      const range = cur.status.taskRange;
      if (range) {
        const key = rangeKey(parseCidr(range));
        const held = await registry.store.get(key);
        if (held?.value === name) {
          compares.push({ key, target: 'value', op: '=', value: name });
          ops.push({ type: 'delete', key });
        } else this.ctx.log.warn({ node: name, taskRange: range, heldBy: held?.value }, `node ${name}'s task range ${range} is not recorded as its own; left as it is`);
      }
      if ((await registry.store.txn(compares, ops)).succeeded) return cur;
    }
    throw new BatonError('BATON_ERR_CONFLICT', `node "${name}" kept changing while it was removed; try again`);
  }

  /**
   * choose finds the lowest range of the cluster's that no node holds (by
   * the node cache, made consistent with the store first), that overlaps no
   * range of another size (kept from an earlier --node-cidr-size), and that
   * neither this server is writing nor `lost` names, and holds it (in the
   * same turn as the scan, so no other registration here takes it) until
   * `release`. When only ranges being written are left, it waits for those
   * writes: one may fail.
   */
  private async choose(name: string, lost: ReadonlySet<number>): Promise<{ range: Cidr; release: () => void }> {
    const { nodes, registry, network } = this.ctx;
    await nodes.syncedTo(await registry.store.currentRevision(), CACHE_WAIT_MS);
    const free = function* (): Iterable<number> {
      const held = new Set<number>();
      const others: Cidr[] = [];
      for (const n of nodes.objects.values()) {
        const r = (n as unknown as Node).status.taskRange;
        if (!r) continue;
        const c = parseCidr(r);
        if (c.prefix === network.nodePrefix) held.add(c.base);
        else others.push(c);
      }
      for (let i = 0; i < rangeCount(network); i++) {
        const c = nthSubnet(network.cluster, network.nodePrefix, i);
        if (!held.has(c.base) && !lost.has(c.base) && !others.some((o) => overlaps(o, c))) yield c.base;
      }
    };
    const got = await this.holds.first(free);
    if (got) return { range: { base: got.value, prefix: network.nodePrefix }, release: got.release };
    const count = rangeCount(network);
    const message = `no task range left for node ${name}: the cluster CIDR ${formatCidr(network.cluster)} holds ${count} range${count === 1 ? '' : 's'} of /${network.nodePrefix} and nodes hold all of them; remove a node (baton node rm), or restart the server with a larger --cluster-cidr or a longer --node-cidr-size`;
    recordEvent(this.ctx, { type: 'Warning', reason: 'TaskRangesExhausted', kind: 'Node', name, node: name, source: 'api', message });
    throw new BatonError('BATON_ERR_CONFLICT', message);
  }
}
