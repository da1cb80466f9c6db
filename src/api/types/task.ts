/**
 * Tasks: one run of a service slot on a node, its spec and its status.
 * Part of the API types: api/types.ts re-exports every part.
 */
import type { ContainerSpec, HealthcheckSpec, PlacementSpec, PortSpec, ResourceSpec, RestartPolicy } from './container.js';
import type { Resource } from './meta.js';
import type { PodContainer } from './service.js';

export type TaskState =
  | 'pending'
  | 'assigned'
  | 'preparing'
  | 'starting'
  | 'running'
  | 'complete'
  | 'failed'
  | 'shutdown'
  | 'rejected'
  | 'orphaned';

export const TERMINAL_TASK_STATES: readonly TaskState[] = ['complete', 'failed', 'shutdown', 'rejected', 'orphaned'];

export function isTerminal(state: TaskState): boolean {
  return TERMINAL_TASK_STATES.includes(state);
}

export type DesiredState = 'running' | 'shutdown' | 'complete';

export interface TaskSpec {
  serviceName: string;
  serviceUid: string;
  slot: number;
  /** Hash of the parts of the service spec that shape a container; a change makes new tasks. */
  specHash: string;
  /** Set by placement; "" while pending. */
  nodeName: string;
  desiredState: DesiredState;
  container: ContainerSpec;
  ports: PortSpec[];
  expose: number[];
  resources: ResourceSpec;
  restartPolicy: RestartPolicy;
  placement: PlacementSpec;
  /** Nodes where earlier attempts of this slot failed past their restart policy: the scheduler ranks them last (Nomad's reschedule penalty). */
  avoidNodes?: string[];
  /** The service's containerName, sidecars and initContainers (a pod). */
  containerName?: string;
  sidecars?: PodContainer[];
  initContainers?: PodContainer[];
}

/** ContainerStatus is one container of a task that runs several (a pod), as its agent last saw it. */
export interface ContainerStatus {
  name: string;
  role: 'init' | 'main' | 'sidecar';
  /** waiting: not started yet (or between restarts); exited: an init container that completed, or one that stopped. */
  state: 'waiting' | 'running' | 'exited';
  exitCode?: number;
  restartCount: number;
  /** Its probes' verdict; undefined when it has none. */
  ready?: boolean;
  /** Why it waits or what it last did ("exited with code 1; restarting in 2s"). */
  message?: string;
}

export interface TaskPortBinding {
  target: number;
  hostPort: number;
  published?: number;
  /** Absent for TCP. */
  protocol?: 'udp';
}

/** SchedulingDecision is what the scheduler saw when it placed (or could not place) a task, after Nomad's AllocMetric. */
export interface SchedulingDecision {
  /** Nodes considered. */
  evaluated: number;
  /** How many nodes each reason ruled out. */
  filtered: Record<string, number>;
  /** Nodes that passed every filter. */
  feasible: number;
  /** The best feasible nodes, best first, with the keys that ranked them (at most 5). */
  ranked: { node: string; keys: Record<string, number> }[];
  /** Nodes ruled out per class of identical nodes ("zone=a,disk=ssd"), as Nomad's ClassFiltered; at most 10 classes. */
  classFiltered?: Record<string, number>;
}

export interface TaskStatus {
  state: TaskState;
  /** Short human message ("started", "restarting in 2s"). */
  message: string;
  /** Why the task failed or was rejected (engine's words). */
  error?: string;
  exitCode?: number;
  containerId?: string;
  /** Opaque, versioned driver handle (JSON) so a restarted agent re-attaches. */
  handle?: string;
  /** The node's address: each port's hostPort answers there. */
  hostIP?: string;
  /** The task's own address, in its node's task range, when it runs in a network namespace of its own (its container ports answer there). */
  taskIP?: string;
  ports: TaskPortBinding[];
  restartCount: number;
  /** Last health check outcome; undefined when the task has no health check (or none has finished yet). */
  healthy?: boolean;
  /** Last readiness probe outcome; undefined when the task has no readiness probe. */
  ready?: boolean;
  /** When the agent will restart the task again (a crash backoff is running). */
  nextRestartAt?: string;
  /** Since when the task has been ready without a break (a rollout's monitor counts from here). */
  readyAt?: string;
  startedAt?: string;
  finishedAt?: string;
  /** When the state last changed (ISO-8601). */
  timestamp: string;
  /** Each container of a task that runs several (sidecars, init containers). */
  containers?: ContainerStatus[];
  /** Why the task is pending, when placement could not place it. */
  pendingReason?: string;
  /** The scheduler's last decision for this task (`baton explain`). */
  scheduling?: SchedulingDecision & { at: string };
}

export type Task = Resource<'Task', TaskSpec, TaskStatus>;

/** hasProbe: a health check that runs (not `NONE`). */
export function hasProbe(h: HealthcheckSpec | undefined): h is HealthcheckSpec {
  return h !== undefined && !(h.test[0] === 'NONE' && !h.http && !h.tcp);
}

/** isTaskReady: running, its health check (if any) passed, and its readiness probe (if any) passed. Only ready tasks get traffic. */
export function isTaskReady(t: Task): boolean {
  const c = t.spec.container;
  // A sidecar's probes count too: its agent reports `ready` for the whole task.
  const sidecarProbes = t.spec.sidecars?.some((s) => hasProbe(s.container.healthcheck) || hasProbe(s.container.readiness)) ?? false;
  return (
    t.status.state === 'running' &&
    t.status.healthy !== false &&
    (!hasProbe(c.healthcheck) || t.status.healthy === true) &&
    ((!hasProbe(c.readiness) && !sidecarProbes) || t.status.ready === true)
  );
}
