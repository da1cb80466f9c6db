/**
 * What the agent's parts share about this node and its tasks: who the node
 * is (name, uid, cluster), whether the engine answers, the tasks the server
 * assigned (the informer's cache), and what the agent holds for each task
 * (TaskLocal). Each part owns the fields it writes; this is where they meet.
 */
import type { Informer } from '../api/informer.js';
import type { Task, TaskPortBinding, TaskStatus } from '../api/types.js';
import type { TaskHandle } from './driver.js';
import type { PodLocal } from './pod.js';

export const LABEL_CLUSTER = 'baton.cluster';
export const LABEL_NODE = 'baton.node';
export const LABEL_NODE_NAME = 'baton.node.name';
export const LABEL_TASK = 'baton.task';
export const LABEL_TASK_UID = 'baton.task.uid';
export const LABEL_SERVICE = 'baton.service';
export const LABEL_SLOT = 'baton.slot';
export const LABEL_PORTS = 'baton.ports';
/** On a task's other containers (sidecars, init containers): their name in the task. */
export const LABEL_CONTAINER = 'baton.container';

/** TaskLocal is what the agent knows of one task beyond its object: its container, ports, crash history and last report. */
export interface TaskLocal {
  handle?: TaskHandle;
  ports?: TaskPortBinding[];
  /** Its address on this node's task network, when it runs in a namespace of its own (network mode bridge). */
  taskIP?: string;
  /** The task's uid (its veth is named after it), known once it has had a container or a sandbox here. */
  uid?: string;
  /** Consecutive crashes since the last long-enough run. */
  crashes: number;
  /** Restart times within the policy window. */
  restarts: number[];
  restartCount: number;
  restartAt?: number;
  startedAt?: number;
  /** Since when the task has been ready (running, its probes passing). */
  readySince?: number;
  /** Set when the agent stopped the task for failing its health check: why, for the restart's message. */
  unhealthy?: string;
  /** The last status we produced (reported or buffered). */
  status?: TaskStatus;
  /** Its other containers (sidecars, init containers), when it has any. */
  pod?: PodLocal;
}

export class AgentState {
  /** Every task this agent holds something for (a container, ports, a report), by name. */
  readonly locals = new Map<string, TaskLocal>();
  /** The node object's uid and the cluster's id, once registered (the cluster's from the credentials before). */
  nodeUid = '';
  clusterId = '';
  /** This node's task range, given by the server at registration ('' from a server that gives none). */
  taskRange = '';
  /** The engine's watch: the other parts read its last verdict through engineOk. */
  engine?: { readonly ok: boolean };
  /** Named volumes on this node's engine for this cluster (undefined until first listed): the scheduler sends tasks back to them. */
  volumes?: string[];
  /** This node's tasks as the server has them (a filtered watch). */
  informer?: Informer;

  constructor(readonly name: string) {}

  /** Whether the container engine answered its last probe. */
  get engineOk(): boolean {
    return this.engine?.ok ?? false;
  }

  task(name: string): Task | undefined {
    return this.informer?.objects.get(name) as Task | undefined;
  }

  /** taskNames: every task the server assigns here or the agent still holds. */
  taskNames(): Set<string> {
    return new Set([...(this.informer?.objects.keys() ?? []), ...this.locals.keys()]);
  }

  /**
   * labelsFilter scopes everything the agent touches on the engine to this
   * cluster and this node: another cluster's agent on the same host with the
   * same node name (a second `baton up`, a test cluster) never adopts, sweeps
   * or reacts to these containers, nor these agents to its.
   */
  labelsFilter(): Record<string, string> {
    return { [LABEL_CLUSTER]: this.clusterId, [LABEL_NODE_NAME]: this.name };
  }
}

export function parsePorts(s: string | undefined): TaskPortBinding[] {
  if (!s) return [];
  try {
    const v = JSON.parse(s);
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}
