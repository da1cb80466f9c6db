/**
 * ClusterNames is the node resolver's table of cluster names (dns.ts
 * answers from it): which names a task may resolve, and to what.
 *
 * - A task sees a service only when they share a network, as on Swarm;
 *   a service it cannot see is absent, not refused, so that a name of
 *   another stack gives nothing away.
 * - `<service>` (the short name) resolves within the client's own stack,
 *   `<stack>_<service>` (the full name) from any stack on a shared network,
 *   a Compose alias only on the network that carries it (Docker's rule).
 * - A name resolves to the service's VIP, which the mesh balances over
 *   ready endpoints (Swarm's VIP mode, Kubernetes' ClusterIP); a service
 *   without one to its ready tasks (Swarm's `endpoint_mode: dnsrr`, a
 *   Kubernetes headless service). `tasks.<name>` is always its ready tasks.
 * - `<service>.<stack>.svc.<domain>` is the Kubernetes form of the name.
 * - A name that exists but has no address (no ready task yet) answers no
 *   address rather than NXDOMAIN, so a resolver does not take the name for
 *   gone.
 * - Names that can only be cluster names (under the cluster domain, single
 *   labels, `tasks.<label>`) are never forwarded: a task's name must not
 *   leave the node, and an upstream must not answer for it.
 *
 * Every query of every task on the node lands here, so update() builds
 * maps and lookup() is a map read plus a check of each entry found (a name
 * rarely has more than one).
 */
import { isIPv4 } from 'node:net';

export interface ServiceRecord {
  /** `<stack>_<service>`, or the service's name outside a stack. */
  fullName: string;
  /** '' for a service outside a stack. */
  stack: string;
  shortName: string;
  /** The service's virtual IP; none for a DNS round-robin service. */
  vip?: string;
  /** Addresses of its ready tasks. */
  taskIPs: string[];
  networks: { name: string; aliases: string[] }[];
  /** A StatefulSet's ready pods by name (`web-0`): each answers as `<name>.<service or alias>` too. */
  ordinals?: { name: string; address: string }[];
}

export interface DnsClient {
  stack: string;
  networks: string[];
}

export type LookupResult = { kind: 'answer'; addresses: string[] } | { kind: 'nxdomain' } | { kind: 'forward' };

export interface ClusterNamesOptions {
  /** The cluster domain (default `cluster.local`). */
  domain?: string;
}

/**
 * Rank decides between entries a client sees under one name: its own
 * stack's service first, then a full name, then an alias; entries of the
 * best rank are merged (two services sharing an alias answer both, as
 * Docker's resolver does).
 */
const Rank = { OwnStack: 0, Full: 1, Alias: 2 } as const;
type Rank = (typeof Rank)[keyof typeof Rank];

interface Entry {
  rank: Rank;
  /** Networks on which the name is visible. */
  networks: ReadonlySet<string>;
  /** The client's stack must be this one (short names). */
  stack?: string;
  addresses: readonly string[];
}

const NXDOMAIN: LookupResult = { kind: 'nxdomain' };
const FORWARD: LookupResult = { kind: 'forward' };

export class ClusterNames {
  private readonly suffix: string;
  private names = new Map<string, Entry[]>();

  constructor(opts: ClusterNamesOptions = {}) {
    const domain = normalize(opts.domain ?? 'cluster.local');
    if (!/^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(domain)) throw new Error(`the cluster domain must be a DNS name, got ${JSON.stringify(opts.domain)}`);
    this.suffix = `.${domain}`;
  }

  /** update replaces the whole table (the caller hands every service of the cluster each time). */
  update(services: readonly ServiceRecord[]): void {
    const names = new Map<string, Entry[]>();
    const add = (name: string, e: Entry): void => {
      const key = normalize(name);
      if (key === '') return;
      const list = names.get(key);
      if (list) list.push(e);
      else names.set(key, [e]);
    };
    for (const s of services) {
      // Only IPv4 addresses become A records; anything else never reaches the wire.
      const tasks = s.taskIPs.filter((a) => isIPv4(a));
      const service = s.vip !== undefined && isIPv4(s.vip) ? [s.vip] : tasks;
      const networks = new Set(s.networks.map((n) => n.name));
      if (networks.size === 0) continue;
      add(s.fullName, { rank: Rank.Full, networks, addresses: service });
      add(`tasks.${s.fullName}`, { rank: Rank.Full, networks, addresses: tasks });
      add(s.shortName, { rank: Rank.OwnStack, networks, stack: s.stack, addresses: service });
      add(`tasks.${s.shortName}`, { rank: Rank.OwnStack, networks, stack: s.stack, addresses: tasks });
      if (s.stack !== '') add(`${s.shortName}.${s.stack}.svc${this.suffix}`, { rank: Rank.Full, networks, addresses: service });
      for (const n of s.networks) {
        const on = new Set([n.name]);
        for (const alias of n.aliases) {
          add(alias, { rank: Rank.Alias, networks: on, addresses: service });
          // An alias is a name of the service in its stack (a Kubernetes Service's name): its Kubernetes form too.
          if (s.stack !== '') add(`${alias}.${s.stack}.svc${this.suffix}`, { rank: Rank.Full, networks: on, addresses: service });
        }
      }
      // A StatefulSet's pods: `web-0.<service>` in its stack, and `web-0.<service>.<stack>.svc.<domain>`, under its name and each alias.
      for (const o of s.ordinals ?? []) {
        const parents = [s.shortName, ...new Set(s.networks.flatMap((n) => n.aliases))];
        for (const parent of parents) {
          add(`${o.name}.${parent}`, { rank: Rank.OwnStack, networks, stack: s.stack, addresses: [o.address] });
          if (s.stack !== '') add(`${o.name}.${parent}.${s.stack}.svc${this.suffix}`, { rank: Rank.Full, networks, addresses: [o.address] });
        }
      }
    }
    this.names = names;
  }

  /** lookup answers one query name for one client; see the module comment for the rules. */
  lookup(qname: string, client: DnsClient): LookupResult {
    const name = normalize(qname);
    const entries = this.names.get(name);
    if (entries) {
      let best: Entry[] | undefined;
      for (const e of entries) {
        if (!visible(e, client)) continue;
        if (!best || e.rank < best[0]!.rank) best = [e];
        else if (e.rank === best[0]!.rank) best.push(e);
      }
      if (best) return { kind: 'answer', addresses: best.length === 1 ? [...best[0]!.addresses] : merge(best) };
    }
    return this.isClusterName(name) ? NXDOMAIN : FORWARD;
  }

  /** isClusterName: names that only the cluster can answer, found or not. */
  private isClusterName(name: string): boolean {
    if (name === '') return false; // the root: an upstream's
    if (name === this.suffix.slice(1) || name.endsWith(this.suffix)) return true;
    const dot = name.indexOf('.');
    if (dot < 0) return true;
    return name.startsWith('tasks.') && name.indexOf('.', 6) < 0 && name.length > 6;
  }
}

function normalize(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function visible(e: Entry, client: DnsClient): boolean {
  if (e.stack !== undefined && e.stack !== client.stack) return false;
  for (const n of client.networks) if (e.networks.has(n)) return true;
  return false;
}

function merge(entries: Entry[]): string[] {
  const all = new Set<string>();
  for (const e of entries) for (const a of e.addresses) all.add(a);
  return [...all];
}
