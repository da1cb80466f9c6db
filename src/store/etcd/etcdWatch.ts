/**
 * EtcdWatch: one Store watch on one etcd watch stream.
 *
 * Revisions are etcd's: a batch is one revision's events (a watch response
 * may hold several; one etcd split into fragments is put back together
 * first), and its revision is theirs. Not the response header's: for a
 * watcher catching up, etcd stamps every response with its current revision
 * even when the rest of the catch-up is still to come.
 *
 * Progress. Each stream asks for etcd's periodic progress notifications
 * (`--experimental-watch-progress-notify-interval` on the members: 10 min
 * by default, so run etcd with a few seconds at most, as Kubernetes does).
 * On etcd 3.4 these are sent only to a watcher that has caught up, through
 * the same channel as its events, so one never overtakes an event. etcd's
 * RequestProgress is not used: before 3.4.25 its answer is sent with the
 * current revision ahead of events still queued for the stream (etcd#15220),
 * and the fix before 3.4.31 never answers a watch that gets no event
 * (etcd#17507). requestProgress() instead reads the current revision and
 * delivers a progress batch once the watch has passed it, through its own
 * events or a periodic notification. A notification below the watch's
 * position (3.4 sends a watch started in the future the current revision)
 * is raised to it.
 *
 * Compaction. etcd lets a watch start at its compact revision itself, from
 * which the tombstones are gone, where the Store says that start is
 * compacted. So after each (re)creation the start is checked with a read
 * just below it, and events wait until the check passes; a compacted start
 * ends the watch with StoreCompactedError and delivers nothing.
 *
 * A watch is set up after watch() returns: until etcd has caught it up to
 * the present (its sync loop runs every 100 ms), a compaction past its start
 * ends it with StoreCompactedError, as etcd does. A cache that lists, then
 * watches from the list's revision, and compacts only revisions older than
 * a retention window never meets this.
 *
 * A stream that breaks (its member died, stopped answering pings, or lost
 * its leader) is opened again on the next member from the last revision
 * delivered, so the watcher sees nothing of it.
 */
import type { Etcd3, IDuplexStream, IEvent, IWatchRequest, IWatchResponse } from 'etcd3';
import { WatchDelivery } from '../common.js';
import { StoreCompactedError, type Watch, type WatchBatch, type WatchEvent, type WatchHandlers } from '../store.js';
import type { KeySpace } from './keySpace.js';
import type { EtcdMembers } from './members.js';

/** What a watch asks of its store. */
export interface WatchHost {
  readonly members: EtcdMembers;
  readonly keys: KeySpace;
  currentRevision(): Promise<number>;
  /** compactedBelow returns the compact revision when `rev` is below it (a watch after `rev` would miss events), else undefined. */
  compactedBelow(rev: number): Promise<number | undefined>;
}

/** Reconnection backoff of a broken stream: from MIN to MAX, doubling. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2_000;

export class EtcdWatch implements Watch {
  private readonly delivery: WatchDelivery;
  /** Highest revision queued for delivery (held ones included): the watch resumes after it. */
  private cursor: number;
  /** A revision requestProgress() read; a progress batch goes out once the cursor reaches it. */
  private progressWanted = 0;
  private stream?: IDuplexStream<IWatchRequest, IWatchResponse>;
  private client?: Etcd3;
  private fragments: IEvent[] = [];
  /** Batches waiting for the compaction checks in flight (`checks`). */
  private held: WatchBatch[] = [];
  private checks = 0;
  private retryMs = RETRY_MIN_MS;
  private retryTimer?: NodeJS.Timeout;
  private checkTimer?: NodeJS.Timeout;

  constructor(
    private readonly host: WatchHost,
    private readonly prefix: string,
    afterRevision: number,
    handlers: WatchHandlers,
    onEnd: () => void,
  ) {
    this.cursor = afterRevision;
    this.delivery = new WatchDelivery(handlers, () => {
      this.stop();
      onEnd();
    });
    this.connect();
  }

  close(): void {
    this.delivery.close();
  }

  requestProgress(): void {
    if (this.delivery.closed) return;
    this.host.currentRevision().then(
      (rev) => {
        if (this.delivery.closed) return;
        if (this.cursor >= rev) this.emit({ events: [], revision: this.cursor, progress: true });
        else this.progressWanted = Math.max(this.progressWanted, rev);
      },
      // Unavailable: no answer now; whoever asked waits for the next notification or gives up.
      () => {},
    );
  }

  /** end stops the watch with `err` (the store closed), after what is already queued. */
  end(err: Error): void {
    this.stop();
    this.delivery.push(err);
  }

  private connect(): void {
    if (this.delivery.closed) return;
    let client: Etcd3;
    try {
      client = this.host.members.current();
    } catch (err) {
      this.end(err as Error);
      return;
    }
    client.watchClient.watch().then(
      (stream) => {
        if (this.delivery.closed) {
          stream.end();
          return;
        }
        this.stream = stream;
        this.client = client;
        this.fragments = [];
        stream.on('data', (r) => this.onResponse(stream, r));
        stream.on('error', (err) => this.onBroken(stream, err));
        stream.on('end', () => this.onBroken(stream, new Error('watch stream ended')));
        const start = this.cursor + 1;
        stream.write({
          create_request: { ...this.host.keys.range(this.prefix), start_revision: start, prev_kv: true, progress_notify: true, fragment: true },
        });
        this.checkStart(start);
      },
      (err) => this.onBroken(undefined, err),
    );
  }

  private onResponse(stream: IDuplexStream<IWatchRequest, IWatchResponse>, r: IWatchResponse): void {
    if (stream !== this.stream || this.delivery.closed) return;
    if (r.canceled) {
      const compacted = Number(r.compact_revision);
      if (compacted > 0) this.fail(new StoreCompactedError(this.cursor, compacted));
      else this.onBroken(stream, new Error(`watch canceled: ${r.cancel_reason || 'no reason given'}`));
      return;
    }
    if (r.created) {
      this.retryMs = RETRY_MIN_MS;
      return;
    }
    if (r.events.length > 0) {
      this.fragments.push(...r.events);
      if (r.fragment) return;
      const events = this.fragments;
      this.fragments = [];
      this.onEvents(events);
      return;
    }
    // No events: a periodic progress notification, at the member's revision.
    const rev = Math.max(this.cursor, Number(r.header.revision));
    this.cursor = rev;
    this.emit({ events: [], revision: rev, progress: true });
    if (this.progressWanted <= rev) this.progressWanted = 0;
  }

  private onEvents(raw: IEvent[]): void {
    const keys = this.host.keys;
    const events: WatchEvent[] = [];
    for (const e of raw) {
      const kv = keys.kv(e.kv);
      if (kv.modRevision <= this.cursor) continue; // already delivered before a reconnect
      const prevKv = e.prev_kv ? keys.kv(e.prev_kv) : undefined;
      const type = String(e.type).toLowerCase() === 'delete' ? 'delete' : 'put';
      events.push(Object.freeze(prevKv ? { type, kv, prevKv } : { type, kv }));
    }
    if (events.length === 0) return;
    // One batch per revision, as a live watch on the other backends gets one per txn.
    let from = 0;
    for (let i = 1; i <= events.length; i++) {
      if (i < events.length && events[i]!.kv.modRevision === events[from]!.kv.modRevision) continue;
      this.cursor = events[from]!.kv.modRevision;
      this.emit({ events: events.slice(from, i), revision: this.cursor });
      from = i;
    }
    if (this.progressWanted && this.cursor >= this.progressWanted) {
      this.progressWanted = 0;
      this.emit({ events: [], revision: this.cursor, progress: true });
    }
  }

  private emit(batch: WatchBatch): void {
    if (this.checks > 0) this.held.push(batch);
    else this.delivery.push(batch);
  }

  /** checkStart holds deliveries until a read shows that `start` - 1 is not below the compact revision. */
  private checkStart(start: number): void {
    if (start <= 1) return;
    this.checks++;
    const attempt = () => {
      this.host.compactedBelow(start - 1).then(
        (compacted) => {
          if (this.delivery.closed) return;
          if (compacted !== undefined) {
            this.fail(new StoreCompactedError(start - 1, compacted));
            return;
          }
          if (--this.checks > 0) return;
          const held = this.held;
          this.held = [];
          for (const b of held) this.delivery.push(b);
        },
        () => {
          // Unavailable: ask again; the events stay held meanwhile.
          if (!this.delivery.closed) this.checkTimer = setTimeout(attempt, RETRY_MAX_MS).unref();
        },
      );
    };
    attempt();
  }

  private onBroken(stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined, _err: unknown): void {
    if (stream && stream !== this.stream) return;
    if (this.delivery.closed) return;
    this.stream = undefined;
    stream?.end();
    if (this.client) this.host.members.failed(this.client);
    this.client = undefined;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), this.nextRetry()).unref();
  }

  private nextRetry(): number {
    const ms = this.retryMs;
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
    return ms;
  }

  /** fail ends the watch with err, delivering nothing held. */
  private fail(err: Error): void {
    this.held = [];
    this.end(err);
  }

  private stop(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.checkTimer);
    const stream = this.stream;
    this.stream = undefined;
    // end(), not cancel(): a cancelled call counts as a failure of its member in etcd3, which then drops every connection to it.
    stream?.end();
  }
}
