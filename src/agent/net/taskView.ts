/**
 * TaskNetworkView answers, for this node's tasks in namespaces of their own,
 * which networks each is on (its service's, from its Endpoints; its stack's
 * default network until they arrive), and from that: who a DNS query comes
 * from (the resolver's client) and which addresses share a network (the
 * isolation rules of netTable.ts). One view, so names and packets agree on
 * who sees whom.
 */
import { serviceNetworks, type EndpointsSpec } from '../../api/types.js';
import type { AgentState } from '../state.js';
import type { DnsClient } from './dnsNames.js';

export interface EndpointsSource {
  spec(service: string): EndpointsSpec | undefined;
  specs(): Iterable<EndpointsSpec>;
}

export class TaskNetworkView {
  constructor(
    private readonly state: AgentState,
    private readonly endpoints: () => EndpointsSource | undefined,
  ) {}

  /** clientAt: the task of this node at an address, as the resolver's client; undefined for anything else. */
  clientAt(address: string): DnsClient | undefined {
    for (const [name, local] of this.state.locals) if (local.taskIP === address) return this.networksOf(name);
    return undefined;
  }

  /** networksOf: a task's stack and the names of its networks. */
  networksOf(taskName: string): DnsClient | undefined {
    const task = this.state.task(taskName);
    if (!task) return undefined;
    const stack = task.metadata.labels['baton.stack'] ?? '';
    const spec = this.endpoints()?.spec(task.spec.serviceName);
    return { stack: spec?.stack ?? stack, networks: (spec?.networks ?? serviceNetworks({ stack })).map((n) => n.name) };
  }

  /** mayReach: whether the task at `address` (if it is one of this node's) shares a network with a service; anything else may (published ports are everyone's). */
  mayReach(address: string, service: EndpointsSpec): boolean {
    const client = this.clientAt(address);
    if (!client) return true;
    const on = new Set((service.networks ?? serviceNetworks(service)).map((n) => n.name));
    return client.networks.some((n) => on.has(n));
  }

  /**
   * members: for each network one of this node's tasks is on, the addresses
   * on it: this node's tasks and the cluster's ready tasks (from Endpoints).
   * Networks without a task of this node make no rule here: none of its
   * packets start on this node.
   */
  members(): string[][] {
    const byNetwork = new Map<string, Set<string>>();
    for (const [name, local] of this.state.locals) {
      if (!local.taskIP) continue;
      for (const n of this.networksOf(name)?.networks ?? []) {
        let set = byNetwork.get(n);
        if (!set) byNetwork.set(n, (set = new Set()));
        set.add(local.taskIP);
      }
    }
    for (const spec of this.endpoints()?.specs() ?? []) {
      for (const n of spec.networks ?? serviceNetworks(spec)) {
        const set = byNetwork.get(n.name);
        if (set) for (const e of spec.endpoints) if (e.taskIP) set.add(e.taskIP);
      }
    }
    return [...byNetwork.keys()].sort().map((n) => [...byNetwork.get(n)!].sort());
  }
}
