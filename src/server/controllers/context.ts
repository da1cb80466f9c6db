/**
 * ControllerContext is what every controller gets: the registry to write
 * through, the watch caches to read from (never mutated), the event store, the
 * clock and the timings. Controllers never talk to the store's watch directly:
 * the server holds one watch per kind.
 */
import type { Clock } from '../../base/clock.js';
import type { EventStore, NewEvent } from '../../store/events.js';
import type { Registry } from '../registry.js';
import type { WatchCache } from '../watchCache.js';
import type { Heartbeats } from '../heartbeats.js';
import type { Logger } from 'pino';
import type { Compare, Op } from '../../store/store.js';
import { FENCED_TXN_OPS } from '../election.js';
import type { WorkQueue, WorkQueueOptions } from '../../base/workqueue.js';
import type { BackoffOptions } from '../../base/backoff.js';
import type { TaskNetwork } from '../ipam.js';

/** What controllers report to the server's /metrics (absent in unit tests). */
export interface ControlPlaneMetrics {
  reconciled(controller: string, seconds: number, failed: boolean): void;
  /** Registers a controller's work queue, whose depth is read at each scrape. */
  queue(controller: string, q: WorkQueue): void;
  scheduled(result: 'placed' | 'unschedulable' | 'preempted', n: number): void;
  schedulerPass(seconds: number): void;
}

/** queueOptions: a controller's work queue settings, its failures logged and its runs measured, the same for every controller. */
export function queueOptions(ctx: ControllerContext, name: string, backoff: BackoffOptions, workers?: number): WorkQueueOptions {
  return {
    name,
    clock: ctx.clock,
    backoff,
    ...(workers ? { workers } : {}),
    onError: (key, err) => ctx.log.warn({ controller: name, key, err: String(err) }, 'reconcile failed; will retry'),
    onProcessed: (_key, ms, failed) => ctx.metrics?.reconciled(name, ms / 1000, failed),
  };
}

export interface Timings {
  /** How often agents heartbeat. */
  heartbeatIntervalMs: number;
  /** NotReady after this many missed heartbeats. */
  missedHeartbeats: number;
  /** Down after this long without a heartbeat. */
  nodeDownAfterMs: number;
  /** Events older than this are pruned. */
  eventTtlMs: number;
  /** Store history kept for watchers (revisions older than this window are compacted). */
  compactIntervalMs: number;
  compactRetainRevisions: number;
  /** A build context no service, revision or task names is deleted once it is this old (it covers an upload whose apply is still to come). */
  blobGraceMs: number;
  /** How often a held watch stream gets a BOOKMARK with the current revision. */
  bookmarkIntervalMs: number;
  /** Drain: replacements in flight per service at once. */
  drainParallel: number;
  /** Drain: tasks still on a draining node after this long are stopped even if their replacement is not ready. */
  drainDeadlineMs: number;
  /** The server accepts about this many heartbeats per second in all: the interval grows with the node count (Nomad's max_heartbeats_per_second). */
  maxHeartbeatsPerSecond: number;
  /** Lifetime of a node certificate; agents renew at two thirds of it. */
  nodeCertTtlMs: number;
  /** A join nonce is good for this long, once. */
  joinNonceTtlMs: number;
  /**
   * Counts that only report (a service's running/ready tasks, a node's
   * allocation) are refreshed at most this often: thousands of task starts
   * become a few status writes, not one each.
   */
  statusBatchMs: number;
  /** Status posts per second the server asks of all agents together (it stretches their flush interval); see statusFlushInterval. */
  maxStatusPostsPerSecond: number;
  /** Task changes are gathered this long into one Endpoints write per service. */
  endpointsBatchMs: number;
  /** One point of each service's usage history (CPU, memory, requests) is kept per this interval, 15 minutes in all. */
  usageBucketMs: number;
  /** How often the autoscaler decides (Kubernetes' HPA: 15 s). */
  autoscaleSyncMs: number;
  /**
   * A repeat of an event (same type, reason, object, source and message)
   * within this long of its last occurrence adds to that event's count
   * instead of a new event (Kubernetes' event series).
   */
  eventSeriesWindowMs: number;
  /** A token id the store does not know is remembered as unknown this long: one store read per id per window. */
  authMissTtlMs: number;
  /** At most this many unknown token ids are remembered (the least recently seen are forgotten first). */
  authMissCacheSize: number;
  /** A token found is trusted this long before it is read again: a token revoked through another server is refused here within it. */
  tokenRecheckMs: number;
  /** Audit entries older than this are deleted by the leader's housekeeping. */
  auditRetentionMs: number;
  /** Unused join nonces the server holds at most, in all and per source address (an IPv6 /64 is one address). */
  maxJoinNonces: number;
  maxJoinNoncesPerAddress: number;
  /**
   * Each source address may make `rateLimitBurst` requests at once without
   * credentials (join nonce, join) or with credentials that fail, refilled at
   * `rateLimitPerSecond`; beyond that it is answered 429 with Retry-After.
   */
  rateLimitBurst: number;
  rateLimitPerSecond: number;
  /** Source addresses the rate limit tracks at once (the least recently seen are forgotten first). */
  rateLimitAddresses: number;
}

export const DEFAULT_TIMINGS: Timings = {
  heartbeatIntervalMs: 2000,
  missedHeartbeats: 3,
  nodeDownAfterMs: 10_000,
  eventTtlMs: 60 * 60 * 1000,
  compactIntervalMs: 5 * 60 * 1000,
  blobGraceMs: 60 * 60 * 1000,
  compactRetainRevisions: 10_000,
  bookmarkIntervalMs: 30_000,
  drainParallel: 2,
  drainDeadlineMs: 60_000,
  maxHeartbeatsPerSecond: 50,
  nodeCertTtlMs: 90 * 24 * 3600 * 1000,
  joinNonceTtlMs: 60_000,
  statusBatchMs: 250,
  maxStatusPostsPerSecond: 1000,
  endpointsBatchMs: 100,
  usageBucketMs: 2000,
  autoscaleSyncMs: 2000,
  eventSeriesWindowMs: 10 * 60 * 1000,
  authMissTtlMs: 10_000,
  tokenRecheckMs: 5000,
  auditRetentionMs: 7 * 86_400_000,
  authMissCacheSize: 1024,
  maxJoinNonces: 10_000,
  maxJoinNoncesPerAddress: 16,
  rateLimitBurst: 100,
  rateLimitPerSecond: 10,
  rateLimitAddresses: 10_000,
};

/** heartbeatInterval is the interval the server asks of each agent: the base, stretched so that all nodes together send at most maxHeartbeatsPerSecond. */
export function heartbeatInterval(t: Timings, nodeCount: number, requestedMs?: number): number {
  const base = Math.max(t.heartbeatIntervalMs, requestedMs ?? 0);
  return Math.max(base, Math.ceil((nodeCount / t.maxHeartbeatsPerSecond) * 1000));
}

/**
 * statusFlushInterval is how often an agent sends its buffered task
 * statuses: 200 ms in a small cluster, stretched so that all agents together
 * send about `maxStatusPostsPerSecond` requests (each then carries more
 * statuses in one store txn), at most 2 s.
 */
export function statusFlushInterval(t: Timings, nodeCount: number): number {
  return Math.min(2000, Math.max(200, Math.ceil((nodeCount / t.maxStatusPostsPerSecond) * 1000)));
}

/** TASKS_BY_SERVICE and TASKS_BY_NODE index the task cache so a reconcile reads its own tasks, not all. */
export const TASKS_BY_SERVICE = 'byService';
export const TASKS_BY_NODE = 'byNode';

/** indexTasks registers the task indexes every controller relies on (idempotent). */
export function indexTasks(tasks: WatchCache): void {
  tasks.addIndex(TASKS_BY_SERVICE, (t) => (t.spec as { serviceName: string }).serviceName);
  tasks.addIndex(TASKS_BY_NODE, (t) => (t.spec as { nodeName: string }).nodeName || undefined);
}

/** DRAIN_STARTED_ANNOTATION records when a node's drain began, so the deadline survives restarts. */
export const DRAIN_STARTED_ANNOTATION = 'baton.drain.startedAt';

export interface ControllerContext {
  registry: Registry;
  nodes: WatchCache;
  services: WatchCache;
  tasks: WatchCache;
  endpoints: WatchCache;
  /** Services' revisions (absent in tests that need none). */
  revisions?: WatchCache;
  events: EventStore;
  heartbeats: Heartbeats;
  clock: Clock;
  timings: Timings;
  log: Logger;
  metrics?: ControlPlaneMetrics;
  /** The cluster's addresses: the range each node's share of task addresses comes from (--cluster-cidr, --node-cidr-size), and the one service VIPs come from (--service-cidr). */
  network: TaskNetwork;
}

/** Controller is a long-lived reconciler; start runs only while this server leads. */
export interface Controller {
  readonly name: string;
  start(): void;
  stop(): void;
}

/**
 * recordEvent stores one Event and logs it; the one way controllers and
 * routes report. A repeat (the store adds it to an earlier event's count) is
 * logged only at its 2nd, 4th, 8th… occurrence, so a client retrying a
 * refused call a million times writes some twenty lines, not a million.
 */
export function recordEvent(ctx: Pick<ControllerContext, 'events' | 'log'>, e: NewEvent): void {
  const { count } = ctx.events.record(e);
  if ((count & (count - 1)) !== 0) return;
  // A task's own Normal events (one per start) would flood the server's log: they are in `baton events`.
  ctx.log[e.type === 'Warning' ? 'warn' : e.kind === 'Task' ? 'debug' : 'info']({ event: e.reason, kind: e.kind, name: e.name, ...(count > 1 ? { count } : {}) }, count > 1 ? `${e.message} (x${count})` : e.message);
}

/** Writes per wave in writeInWaves: 16 txns of up to 128, issued together so they share one group commit. */
export const WAVE_TASKS = 2048;

/**
 * writeInWaves writes `count` guarded puts (`entry(i)` builds the i-th), 127
 * per txn (the leadership fence takes the 128th place), issuing each wave's txns together so they share one group commit
 * instead of each waiting a turn of a busy event loop. A txn whose guard
 * fails (a stale cache) is retried op by op, so the rest of it still lands.
 * `slice` runs between waves, so the API gets its turn. Returns the highest
 * revision written and whether any guard failed.
 */
export async function writeInWaves(
  ctx: ControllerContext,
  count: number,
  entry: (i: number) => { compare: Compare; op: Op },
  slice: () => Promise<void>,
): Promise<{ lastRev: number; refused: boolean }> {
  let lastRev = 0;
  let refused = false;
  for (let w = 0; w < count; w += WAVE_TASKS) {
    const wave: { compare: Compare; op: Op }[][] = [];
    for (let i = w; i < Math.min(count, w + WAVE_TASKS); i += FENCED_TXN_OPS) {
      const chunk: { compare: Compare; op: Op }[] = [];
      for (let j = i; j < Math.min(count, i + FENCED_TXN_OPS); j++) chunk.push(entry(j));
      wave.push(chunk);
    }
    const results = await Promise.all(wave.map((chunk) => ctx.registry.store.txn(chunk.map((e) => e.compare), chunk.map((e) => e.op))));
    for (let k = 0; k < wave.length; k++) {
      lastRev = Math.max(lastRev, results[k]!.revision);
      if (results[k]!.succeeded) continue;
      refused = true;
      if (wave[k]!.length === 1) continue;
      const singles = await Promise.all(wave[k]!.map((e) => ctx.registry.store.txn([e.compare], [e.op])));
      for (const one of singles) lastRev = Math.max(lastRev, one.revision);
    }
    await slice();
  }
  return { lastRev, refused };
}
