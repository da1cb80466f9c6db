/**
 * What crosses the wire besides the resources: events, lists and watch
 * events, errors, cluster info, apply requests and answers, log lines and
 * resource usage.
 * Part of the API types: api/types.ts re-exports every part.
 */
import type { ResourceAmounts } from './container.js';
import type { NodeState } from './node.js';
import type { ServiceSpec } from './service.js';

export interface EventSpec {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  involvedObject: { kind: string; name: string; uid?: string };
  source: string;
  node?: string;
  service?: string;
  time: string;
}

// ---------------------------------------------------------------- misc wire types

export interface ListMeta {
  resourceVersion: string;
  /** The store epoch the revision counts in; give it back when watching from that revision. */
  storeEpoch?: string;
  continue?: string;
}

export interface List<T> {
  items: T[];
  metadata: ListMeta;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WireWatchEvent<T> {
  type: WatchEventType;
  object: T;
}

export interface ApiErrorBody {
  error: {
    code: string;
    message: string;
    details?: { path: string; message: string; line?: number }[];
  };
}

export interface ClusterInfo {
  clusterId: string;
  version: string;
  apiVersion: string;
  storeBackend: string;
  /** Revisions count within an epoch; a copy of the state into another store starts a new one. */
  storeEpoch: string;
  revision: string;
  /** Servers sharing a store: which leads (its name and term), and whether the one that answered does. */
  leader?: { identity: string; term: number; since: string };
  leading?: boolean;
  /** Servers sharing a store: every live one, by name and URL. */
  servers?: { name: string; url: string }[];
  /** The token that asked: its role, its name (or `token <id>`), and a deployer's stacks. */
  caller?: { role: 'admin' | 'deployer' | 'viewer'; name: string; stacks?: string[] };
}

export interface ApplyServiceResult {
  name: string;
  action: 'create' | 'update' | 'unchanged' | 'delete';
  diff?: string[];
}

export interface ApplyRequest {
  stack: string;
  services: { name: string; spec: ServiceSpec; labels: Record<string, string> }[];
  prune: boolean;
  dryRun: boolean;
  /** Secrets and configs the file defines (content as base64): created or given their new content in the same txn. */
  secrets?: FileInput[];
  configs?: FileInput[];
}

/** FileInput: a secret's or config's content as a client sends it. */
export interface FileInput {
  name: string;
  /** base64 */
  data: string;
  labels?: Record<string, string>;
}

export interface ApplyResponse {
  stack: string;
  revision: string;
  results: ApplyServiceResult[];
  /** Secrets and configs the apply created or gave a new content (never their content). */
  files?: { kind: 'secret' | 'config'; name: string; action: 'create' | 'update' }[];
  warnings: string[];
  /** With dryRun: where each created or updated service's tasks would land if placed now (node → count), and why any would stay pending. */
  placement?: Record<string, { nodes: Record<string, number>; pending: Record<string, number> }>;
}

// ---------------------------------------------------------------- logs and usage

/**
 * One log line on the wire (`GET /services/<s>/logs`, `GET /tasks/<t>/logs`):
 * the body is text, one line per record, `<task>@<node> <time> <o|e> <text>`,
 * where time is RFC 3339 with nanoseconds (as Docker prints it) and o/e is
 * the stream (stdout/stderr). parseLogLine reads one.
 */
export interface LogLine {
  task: string;
  node: string;
  time: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface LogQuery {
  follow?: boolean;
  /** Last N lines of each task. */
  tail?: number;
  /** Only lines at or after this: a duration ago (10m, 1h30m) or an RFC 3339 time. */
  since?: string;
  /** Only lines whose text matches this regular expression (JavaScript syntax). */
  grep?: string;
  /** A task's: one of its containers (a pod's sidecar or init container). */
  container?: string;
  /** false: each node's lines as they come, grouped by task; by default every line in time order. */
  merge?: boolean;
}

export function parseLogLine(line: string): LogLine | undefined {
  const a = line.indexOf(' ');
  const b = a < 0 ? -1 : line.indexOf(' ', a + 1);
  const c = b < 0 ? -1 : line.indexOf(' ', b + 1);
  if (c < 0) return undefined;
  const who = line.slice(0, a);
  const at = who.lastIndexOf('@');
  return {
    task: at < 0 ? who : who.slice(0, at),
    node: at < 0 ? '' : who.slice(at + 1),
    time: line.slice(a + 1, b),
    stream: line.slice(b + 1, c) === 'e' ? 'stderr' : 'stdout',
    text: line.slice(c + 1),
  };
}

/** Resource use of one task, as its agent last sampled it from the container's cgroup. */
export interface TaskUsage {
  task: string;
  service: string;
  node: string;
  /** CPU in use, in cores (0.5 = half a core), averaged over the last sample interval. */
  cpu: number;
  memoryBytes: number;
  /** The container's memory limit, when it has one. */
  memoryLimitBytes?: number;
  /** When the agent sampled it (ISO-8601). */
  time: string;
}

/** `GET /api/v1/top`: the latest usage of every node and running task. */
export interface TopResponse {
  time: string;
  nodes: { name: string; state: NodeState; cpu: number; memoryBytes: number; capacity: ResourceAmounts; tasks: number }[];
  tasks: TaskUsage[];
}

/** `GET /api/v1/services/<name>/stats`: the service's recent history, one point per agent report interval, oldest first. */
export interface ServiceStats {
  service: string;
  points: { time: string; cpu: number; memoryBytes: number; tasks: number; requestsPerSecond: number }[];
}
