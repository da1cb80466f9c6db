/**
 * Heartbeats keeps node liveness in server memory. A heartbeat is an API call,
 * never a store write: Kubernetes learned (the Efficient Node Heartbeat KEP)
 * that status writes from every node every few seconds load the store for
 * nothing. The node-lifecycle controller writes Node status only when the
 * state derived from these beats changes.
 */
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Clock } from '../base/clock.js';
import type { Op, Store, Watch } from '../store/store.js';

export interface Beat {
  at: number;
  engineOk: boolean;
  engineVersion: string;
  engineError?: string;
  /** The interval the agent says it beats at now: NotReady is judged against it. */
  intervalMs: number;
  /** Named volumes the node reports (sorted), when it reports them. */
  volumes?: string[];
  /** Received by another server (HeartbeatExchange): not this one's to publish. */
  relayed?: boolean;
}

export class Heartbeats {
  private beats = new Map<string, Beat>();
  private listeners = new Set<(node: string) => void>();
  /** Since when this server judges liveness (its start, or when it became the leader): every node gets that much grace. */
  startedAt: number;

  constructor(private readonly clock: Clock) {
    this.startedAt = clock.now();
  }

  /** restartGrace starts the grace period again (a new leader, as Nomad's gives every node a fresh TTL). */
  restartGrace(): void {
    this.startedAt = this.clock.now();
  }

  beat(node: string, engine: { ok: boolean; version: string; error?: string }, intervalMs: number, volumes?: string[]): void {
    const prev = this.beats.get(node);
    const vols = volumes ?? prev?.volumes;
    this.beats.set(node, { at: this.clock.now(), engineOk: engine.ok, engineVersion: engine.version, engineError: engine.error, intervalMs, ...(vols ? { volumes: vols } : {}) });
    // Wake the lifecycle controller only when something it derives could change.
    if (!prev || prev.engineOk !== engine.ok || String(prev.volumes) !== String(vols)) for (const l of this.listeners) l(node);
  }

  /** merge takes a beat another server received, when it is newer than what this one has. */
  merge(node: string, beat: Beat): void {
    const prev = this.beats.get(node);
    if (prev && prev.at >= beat.at) return;
    this.beats.set(node, { ...beat, relayed: true });
    if (!prev || prev.engineOk !== beat.engineOk || String(prev.volumes) !== String(beat.volumes)) for (const l of this.listeners) l(node);
  }

  /** local: the beats this server received itself, by node. */
  local(): Record<string, Beat> {
    const out: Record<string, Beat> = {};
    for (const [n, b] of this.beats) if (!b.relayed) out[n] = b;
    return out;
  }

  get size(): number {
    return this.beats.size;
  }

  get(node: string): Beat | undefined {
    return this.beats.get(node);
  }

  forget(node: string): void {
    this.beats.delete(node);
  }

  onDidChange(fn: (node: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

export const HEARTBEATS_PREFIX = '/baton/heartbeats/';
/** Where each live server says where it answers (on its heartbeat lease: the key goes when the server does). */
export const SERVERS_PREFIX = '/baton/servers/';

export interface ServerRecord {
  name: string;
  url: string;
}
const serverRecordSchema = z.object({ name: z.string().max(253), url: z.string().url().max(300) });

const beatSchema = z.object({
  at: z.number().finite(),
  engineOk: z.boolean(),
  engineVersion: z.string().max(200),
  engineError: z.string().max(2000).optional(),
  intervalMs: z.number().int().min(1).max(3_600_000),
  volumes: z.array(z.string().max(300)).max(10_000).optional(),
});
const publishedSchema = z.record(z.string().max(253), beatSchema);

/**
 * HeartbeatExchange shares liveness between servers on one store. Agents
 * beat to any server; each server publishes the beats it received, one key
 * per server (`/baton/heartbeats/<server>`) written every interval on a
 * lease of a few intervals (so a dead server's key goes), and merges every
 * other server's. The leader judges every node by the freshest beat any
 * server saw, and a follower that becomes leader already has them: no node
 * turns NotReady because the leader changed. One write per server per
 * interval, whatever the number of nodes (Kubernetes' node Leases cost one
 * write per node).
 *
 * While this server cannot write its beats to the store (the store away or
 * without quorum), other servers' beats cannot be reaching it either: the
 * grace of every node starts again, over and over, until it can again. So
 * a leader whose store was away judges no node by beats it could not see
 * (a CI run of the HA test saw a leader mark a healthy node NotReady the
 * moment etcd had quorum again, 4.6 s after the last beat it had merged).
 */
export class HeartbeatExchange {
  private timer?: NodeJS.Timeout;
  private watch?: Watch;
  private lease?: number;
  private stopped = false;
  /** This server's URL once it listens; written with the next publish (and again on each new lease). */
  private url?: string;
  private announced = false;
  private known?: { at: number; servers: ServerRecord[] };
  /** When this server last wrote its beats to the store, and the check of how long ago that is. */
  private lastPublished = Date.now();
  private staleCheck?: NodeJS.Timeout;

  constructor(
    private readonly store: Store,
    private readonly heartbeats: Heartbeats,
    private readonly identity: string,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const rev = await this.store.currentRevision();
    const { kvs } = await this.store.range(HEARTBEATS_PREFIX, { atRevision: rev });
    for (const kv of kvs) this.take(kv.key, kv.value);
    this.follow(rev);
    const tick = () => {
      void this.publish().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs);
      });
    };
    tick();
    this.staleCheck = setInterval(() => {
      if (this.stale()) this.heartbeats.restartGrace();
    }, this.intervalMs);
  }

  /** stale: no write of this server's beats has reached the store for four publish intervals. */
  private stale(): boolean {
    return Date.now() - this.lastPublished > 4 * this.intervalMs;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.staleCheck);
    this.watch?.close();
    if (this.lease !== undefined) await this.store.leaseRevoke(this.lease).catch(() => {});
  }

  private follow(after: number): void {
    this.watch = this.store.watch(HEARTBEATS_PREFIX, after, {
      onBatch: (b) => {
        for (const e of b.events) if (e.type === 'put') this.take(e.kv.key, e.kv.value);
        after = b.revision;
      },
      // Compacted or cut off: look again from now (a missed map is replaced by the next one anyway).
      onError: () => {
        if (this.stopped) return;
        setTimeout(() => void this.store.currentRevision().then((r) => !this.stopped && this.follow(r)).catch(() => !this.stopped && this.follow(after)), this.intervalMs);
      },
    });
  }

  private take(key: string, value: string): void {
    if (key === HEARTBEATS_PREFIX + this.identity) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      return;
    }
    const r = publishedSchema.safeParse(parsed);
    if (!r.success) return void this.log.warn({ key }, 'heartbeats published by another server are malformed; ignored');
    for (const [node, beat] of Object.entries(r.data)) this.heartbeats.merge(node, beat);
  }

  /** announce says where this server answers: agents and clients learn every live server's URL from the store. */
  announce(url: string): void {
    this.url = url;
    this.announced = false;
  }

  /**
   * servers lists the live servers (those whose lease holds), read from the
   * store at most once per interval: every heartbeat reply carries it.
   */
  async servers(): Promise<ServerRecord[]> {
    const now = performance.now();
    if (this.known && now - this.known.at < this.intervalMs) return this.known.servers;
    const { kvs } = await this.store.range(SERVERS_PREFIX);
    const servers: ServerRecord[] = [];
    for (const kv of kvs) {
      try {
        const r = serverRecordSchema.safeParse(JSON.parse(kv.value));
        if (r.success) servers.push(r.data);
      } catch {
        /* a damaged record is left out */
      }
    }
    this.known = { at: now, servers };
    return servers;
  }

  private async publish(): Promise<void> {
    try {
      if (this.lease === undefined) {
        this.lease = (await this.store.leaseGrant(Math.max(1, Math.ceil((this.intervalMs * 5) / 1000)))).id;
        this.announced = false;
      } else await this.store.leaseKeepAlive(this.lease);
      const ops: Op[] = [{ type: 'put', key: HEARTBEATS_PREFIX + this.identity, value: JSON.stringify(this.heartbeats.local()), lease: this.lease }];
      const announcing = this.url !== undefined && !this.announced;
      if (announcing) ops.push({ type: 'put', key: SERVERS_PREFIX + this.identity, value: JSON.stringify({ name: this.identity, url: this.url }), lease: this.lease });
      await this.store.txn([], ops);
      if (announcing) this.announced = true;
      // Back after the store was away: every node's grace starts from now, before the beats merged meanwhile are judged.
      if (this.stale()) this.heartbeats.restartGrace();
      this.lastPublished = Date.now();
    } catch (e) {
      this.lease = undefined;
      this.log.debug({ err: (e as Error).message }, 'could not publish heartbeats; trying again');
    }
  }
}
