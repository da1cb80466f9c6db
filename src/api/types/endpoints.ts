/**
 * Endpoints: a service's routing settings and the task addresses the mesh
 * sends its traffic to.
 * Part of the API types: api/types.ts re-exports every part.
 */
import type { Resource } from './meta.js';
import type { ServiceNetwork, VipPort } from './service.js';

/** LbSpec is a service's routing settings (x-baton.lb). */
export interface LbSpec {
  algorithm: 'round_robin' | 'least_conn';
  /** Send the client's address to the backend in a PROXY protocol header. */
  proxyProtocol: 'off' | 'v1' | 'v2';
  /** With no ready endpoint, hold a new connection this long waiting for one. */
  holdTimeoutMs: number;
}

export const DEFAULT_LB: LbSpec = { algorithm: 'round_robin', proxyProtocol: 'off', holdTimeoutMs: 30_000 };

/** EndpointAddress is one ready task: where its container ports answer. */
export interface EndpointAddress {
  task: string;
  node: string;
  address: string;
  /**
   * Container port → the port that answers it: a host port at `address`, or,
   * for a task with a `taskIP`, the container port itself (every target of
   * the service, dialled at taskIP:target).
   */
  ports: Record<string, number>;
  /** The task's own address, when it has a namespace of its own: where its container ports answer, for whoever can route to its node's task range. */
  taskIP?: string;
}

/**
 * EndpointsSpec is what every node needs about one service, written by the
 * server's endpoints controller (Kubernetes' Endpoints): for the routing
 * mesh, the ports to publish, the container ports reachable by name, the
 * service's VIP and the routing settings; for DNS and isolation, its
 * networks; and the ready tasks. Nodes watch these, never tasks or services.
 * A service has one when it has a port to route or its tasks run in
 * namespaces of their own (bridge), whose addresses DNS answers with.
 */
export interface EndpointsSpec {
  serviceName: string;
  stack: string;
  shortName: string;
  /**
   * The service's virtual IP, from the server's --service-cidr: unique in
   * the cluster and kept for the service's life (Swarm's VIP, Kubernetes'
   * ClusterIP); `<service>` resolves to it and the mesh balances it over
   * the endpoints. Absent when the range was full when the service needed
   * one (a Warning event says so): it is then reachable by `tasks.` names
   * only, until a VIP frees up.
   */
  vip?: string;
  /** The networks the service's tasks are on, with the aliases it answers to on each (serviceNetworks: its stack's default one when it names none). */
  networks: ServiceNetwork[];
  /** Ports the mesh publishes on every node's address (mode ingress), or where their hostIP says (api/hostIp.ts); protocol absent for TCP. */
  published: { published: number; target: number; protocol?: 'udp'; hostIP?: string }[];
  /** Container TCP ports the mesh serves on the service's VIP (ports and expose); empty for a bridge service without ports. */
  targets: number[];
  /** Container UDP ports the mesh serves on the service's VIP (its UDP ports); absent when none. */
  udpTargets?: number[];
  /** More VIP ports, each reaching one of the targets (ServiceSpec.vipPorts); absent when none. */
  vipPorts?: VipPort[];
  /** A StatefulSet's service: each ready task is also named after its ordinal (`<shortName>-<ordinal>.<service name>`). */
  stateful?: true;
  lb: LbSpec;
  /** Ready tasks, by task name. */
  endpoints: EndpointAddress[];
}

export type Endpoints = Resource<'Endpoints', EndpointsSpec, Record<string, never>>;

/**
 * EndpointsApplied answers `GET /endpoints/-/applied?revision=R`: whether
 * the routing mesh of every Ready node has applied Endpoints revision R
 * (`pending`: the nodes that had not when the answer was given).
 */
export interface EndpointsApplied {
  revision: string;
  applied: boolean;
  pending: string[];
}
