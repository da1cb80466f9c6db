/**
 * EventStore keeps cluster Events outside the revision log, with a TTL.
 *
 * Why a separate table: Kubernetes stored Events in etcd and paid for it with
 * write amplification and compaction churn. Events are an audit trail for
 * people ("why is my task pending?"), not desired state, so they never take a
 * revision and never wake a controller.
 *
 * A repeat is not a new row: an event identical to one recorded within the
 * store's series window of that one's last occurrence (same type, reason,
 * object, source, node, service and message) adds to its `count` and moves
 * its `lastTime`, keeping its id, as Kubernetes' event series do; a failing
 * join retried a thousand times is one event "(x1000)". Subscribers hear
 * the updated event again (the watch sends it as MODIFIED).
 */
export interface StoredEvent {
  /** Monotonic id within this store (not a store revision). */
  id: number;
  /** Milliseconds since the epoch: the first occurrence. */
  time: number;
  /** The last occurrence (equal to time for an event seen once). */
  lastTime: number;
  /** How many times it occurred within the series window. */
  count: number;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  kind: string;
  name: string;
  uid?: string;
  /** Component that reported it: "server", "agent/<node>", "controller/service" … */
  source: string;
  /** Node involved, when there is one. */
  node?: string;
  /** Service involved, when there is one (for `baton service ps` style filters). */
  service?: string;
}

export type NewEvent = Omit<StoredEvent, 'id' | 'time' | 'lastTime' | 'count'> & { time?: number };

export interface EventQuery {
  kind?: string;
  name?: string;
  service?: string;
  node?: string;
  /** Only events of this type (Normal, Warning) or reason, case-insensitive. */
  type?: string;
  /** Only events with id greater than this. */
  afterId?: number;
  /** Newest N (returned oldest first). */
  limit?: number;
}

export interface EventStore {
  record(e: NewEvent): StoredEvent;
  /** flush makes what record() accepted durable now (a backend may write a turn's events together just after it). */
  flush(): void;
  list(q?: EventQuery): StoredEvent[];
  /** Calls fn for every event recorded from now on; returns an unsubscribe function. */
  subscribe(fn: (e: StoredEvent) => void): () => void;
  /** Removes events last seen before now - ttlMs; returns how many were removed. */
  prune(now: number): number;
  readonly ttlMs: number;
}

/** matchesEventQuery is the one filter both backends and live subscriptions use. */
export function matchesEventQuery(e: StoredEvent, q: EventQuery): boolean {
  if (q.kind && e.kind.toLowerCase() !== q.kind.toLowerCase()) return false;
  if (q.name && e.name !== q.name) return false;
  if (q.service && e.service !== q.service) return false;
  if (q.node && e.node !== q.node) return false;
  if (q.type && e.type.toLowerCase() !== q.type.toLowerCase() && e.reason.toLowerCase() !== q.type.toLowerCase()) return false;
  if (q.afterId !== undefined && e.id <= q.afterId) return false;
  return true;
}
