/**
 * ServiceDiscovery is a node's DNS for its tasks: the resolver (dns.ts)
 * listening on the node's task-network gateway, the address every task's
 * resolv.conf names, answering from a name table (dnsNames.ts) that follows
 * the cluster's Endpoints as the routing mesh sees them. A service created
 * after a task started resolves from it at once: nothing is written into
 * the task's files but the resolver's address.
 *
 * Who asks decides what it sees: the query's source address is a task of
 * this node (a task's namespace reaches only its own node's gateway), whose
 * stack and networks come from its service's Endpoints. An address that is
 * no task of this node sees no cluster name.
 */
import type { Logger } from 'pino';
import { serviceNetworks, statefulOrdinal, type EndpointsSpec } from '../../api/types.js';
import { ClusterNames, type DnsClient, type ServiceRecord } from './dnsNames.js';
import { Resolver } from './dns.js';

export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

export interface DiscoveryOptions {
  /** The cluster domain (`<service>.<stack>.svc.<domain>`). */
  domain?: string;
  /** Where names outside the cluster go ('ip' or 'ip:port'), or 'none' (NXDOMAIN). */
  upstream: string[] | 'none';
  /** The task at a source address, as a DNS client; undefined for anything else. */
  clientOf: (address: string) => DnsClient | undefined;
  log: Logger;
}

/** recordOf: what the name table needs of one service's Endpoints. */
export function recordOf(spec: EndpointsSpec): ServiceRecord {
  return {
    fullName: spec.serviceName,
    stack: spec.stack,
    shortName: spec.shortName,
    ...(spec.vip ? { vip: spec.vip } : {}),
    taskIPs: spec.endpoints.flatMap((e) => (e.taskIP ? [e.taskIP] : [])),
    networks: spec.networks ?? serviceNetworks({ stack: spec.stack }),
    // A StatefulSet's pods by ordinal: a task's name is `<service>.<slot>.<id>`, and ordinal = slot − 1.
    ...(spec.stateful
      ? {
          ordinals: spec.endpoints.flatMap((e) => {
            const slot = Number(e.task.slice(spec.serviceName.length + 1).split('.')[0]);
            return e.taskIP && e.task.startsWith(`${spec.serviceName}.`) && Number.isInteger(slot) && slot >= 1 ? [{ name: `${spec.shortName}-${statefulOrdinal(slot)}`, address: e.taskIP }] : [];
          }),
        }
      : {}),
  };
}

const NOBODY: DnsClient = { stack: '\u0000', networks: [] };

export class ServiceDiscovery {
  private readonly names: ClusterNames;
  private readonly resolver: Resolver;
  private pending?: Iterable<EndpointsSpec>;

  constructor(opts: DiscoveryOptions) {
    this.names = new ClusterNames({ domain: opts.domain ?? DEFAULT_CLUSTER_DOMAIN });
    this.resolver = new Resolver({
      upstream: opts.upstream,
      log: opts.log,
      lookup: (qname, address) => this.names.lookup(qname, opts.clientOf(address) ?? NOBODY),
    });
  }

  /** listen answers on this address (the node's gateway), UDP and TCP port 53. */
  listen(address: string, port = 53): Promise<void> {
    return this.resolver.listen(address, port);
  }

  /**
   * update takes every service's Endpoints; changes arriving in one turn (a
   * whole list, a batch of events) rebuild the table once.
   */
  update(specs: Iterable<EndpointsSpec>): void {
    const first = this.pending === undefined;
    this.pending = specs;
    if (!first) return;
    queueMicrotask(() => {
      const all = this.pending!;
      this.pending = undefined;
      this.names.update([...all].map(recordOf));
    });
  }

  stats(): ReturnType<Resolver['stats']> {
    return this.resolver.stats();
  }

  close(): Promise<void> {
    return this.resolver.close();
  }
}
