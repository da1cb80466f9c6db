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
  /** How often a held watch stream gets a BOOKMARK with the current revision. */
  bookmarkIntervalMs: number;
}

export const DEFAULT_TIMINGS: Timings = {
  heartbeatIntervalMs: 2000,
  missedHeartbeats: 3,
  nodeDownAfterMs: 10_000,
  eventTtlMs: 60 * 60 * 1000,
  compactIntervalMs: 5 * 60 * 1000,
  compactRetainRevisions: 10_000,
  bookmarkIntervalMs: 5000,
};

export interface ControllerContext {
  registry: Registry;
  nodes: WatchCache;
  services: WatchCache;
  tasks: WatchCache;
  events: EventStore;
  heartbeats: Heartbeats;
  clock: Clock;
  timings: Timings;
  log: Logger;
}

/** Controller is a long-lived reconciler; start runs only while this server leads. */
export interface Controller {
  readonly name: string;
  start(): void;
  stop(): void;
}

/** recordEvent logs and stores one Event; the one way controllers and routes report. */
export function recordEvent(ctx: Pick<ControllerContext, 'events' | 'log'>, e: NewEvent): void {
  const stored = ctx.events.record(e);
  ctx.log[e.type === 'Warning' ? 'warn' : 'info']({ event: e.reason, kind: e.kind, name: e.name }, e.message);
  void stored;
}
