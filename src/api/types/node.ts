/**
 * Nodes: availability, taints and tolerations, spec and status.
 * Part of the API types: api/types.ts re-exports every part.
 */
import type { ResourceAmounts } from './container.js';
import type { Resource } from './meta.js';

export type NodeAvailability = 'active' | 'pause' | 'drain';
export type NodeState = 'unknown' | 'ready' | 'notready' | 'down';

export type TaintEffect = 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';

/** Taint keeps tasks off a node unless they tolerate it (Kubernetes' form: key=value:Effect). */
export interface Taint {
  key: string;
  value?: string;
  effect: TaintEffect;
}

/** Toleration lets a task onto a node with a matching taint; an empty effect matches every effect. */
export interface Toleration {
  key?: string;
  operator: 'Equal' | 'Exists';
  value?: string;
  effect?: TaintEffect;
}

export interface NodeSpec {
  availability: NodeAvailability;
  taints?: Taint[];
}

export interface NodeStatus {
  state: NodeState;
  message: string;
  address: string;
  hostname: string;
  capacity: ResourceAmounts;
  allocated: ResourceAmounts;
  taskCount: number;
  agentVersion: string;
  engineVersion: string;
  portRange: [number, number];
  /** The agent's HTTPS port on `address` (the server reads logs there); absent for simulated nodes. */
  agentPort?: number;
  /**
   * manager: the node runs a server (its agent runs in the server's own
   * process: `baton up`), which the server verified itself at registration
   * rather than taking the agent's word; absent: a worker. Swarm's
   * node.role.
   */
  role?: 'manager' | 'worker';
  /** The node's OS and CPU architecture, as Swarm's node.platform.os/arch (linux, x86_64). */
  platform?: { os: string; arch: string };
  /** Named volumes the node's engine holds for this cluster: a task mounting one goes back to this node. */
  volumes?: string[];
  /**
   * The IPv4 range (a.b.c.d/N) the node's tasks take their addresses from:
   * its share of the server's `--cluster-cidr`, given at its first
   * registration, unique in the cluster and kept for the node's life (a
   * later `--cluster-cidr` does not renumber it); freed by `node rm`.
   */
  taskRange?: string;
  /** ISO-8601 of the last heartbeat the server saw when it last wrote this status. */
  lastHeartbeat?: string;
  /** When state last changed. */
  timestamp: string;
}

export type Node = Resource<'Node', NodeSpec, NodeStatus>;
