/**
 * Leader election and fencing over the Store contract, as Kubernetes'
 * leader election does over etcd (and etcd's own `concurrency.Election`):
 *
 * - A campaign is one txn: create LEADER_KEY if it is absent (create
 *   revision 0), attached to a lease of the campaigner's. The winner's
 *   **term** is that key's create revision: unique, and higher for every
 *   later leader. The others watch the key and campaign again when it goes
 *   (its leader resigned, or its lease expired: the leader stopped keeping
 *   it alive, paused, cut off or dead).
 * - The leader keeps its lease alive every third of its TTL. It steps down
 *   when a keep-alive says the lease is gone, and, without waiting to be
 *   told, once a full TTL has passed since the last keep-alive that
 *   succeeded (a leader that was paused, or could not reach the store, may
 *   already have been replaced).
 * - **Fencing.** Stepping down is not enough: a leader paused past its
 *   lease wakes up with writes in flight. Every write of the controllers
 *   goes through a FencedStore, which adds to each txn a compare of
 *   LEADER_KEY's create revision with the writer's term: once another
 *   server holds the key, none of the deposed leader's writes can land,
 *   whatever it believes. Each such txn also writes the term to
 *   LEADER_WRITES, so the store's history tells whose writes landed.
 *
 * On SQLite and memory (one server) the same code runs, against their
 * leases; `baton server` uses it only with `--store etcd`.
 */
import type { Logger } from 'pino';
import { BatonError } from '../base/errors.js';
import { MAX_TXN_OPS, StoreLeaseNotFoundError, type Compare, type KeyValue, type Lease, type Op, type RangeOptions, type RangeResult, type Store, type TxnResult, type Watch, type WatchHandlers } from '../store/store.js';

export const LEADER_KEY = '/baton/leader/holder';
/** Every fenced txn puts {term, identity} here: its history is the record of the leaders' writes. */
export const LEADER_WRITES = '/baton/leader/writes';
/** Ops and compares a txn of the controllers may hold: the fence takes one of each. */
export const FENCED_TXN_OPS = MAX_TXN_OPS - 1;

/** Leadership gates controllers: they run only while `leading`. */
export interface Leadership {
  onDidChange(fn: (leading: boolean) => void): () => void;
  readonly leading: boolean;
}

export const alwaysLeader: Leadership = {
  leading: true,
  onDidChange: (fn) => {
    fn(true);
    return () => {};
  },
};

export interface ElectionOptions {
  store: Store;
  /** Who campaigns (the server's name and URL): shown as the leader. */
  identity: string;
  /** The lease's TTL: how long a leader that stopped keeping it alive stays leader (default 3 s, so that a failover takes about that; Kubernetes' default is 15 s; etcd's shortest is 2 s with its default election timeout). */
  ttlSeconds?: number;
  /** How long to wait before campaigning again after a store error (default 500 ms). */
  retryMs?: number;
  log: Logger;
}

/** The leader as the store has it. */
export interface LeaderInfo {
  identity: string;
  term: number;
  since: string;
}

export class NotLeaderError extends BatonError {
  constructor(message = 'this server is not the leader (any more): the write was not made') {
    super('BATON_ERR_NOT_LEADER', message);
  }
}

export class Election implements Leadership {
  private current?: { lease: number; term: number };
  private readonly listeners = new Set<(leading: boolean) => void>();
  private stopped = false;
  private running?: Promise<void>;
  private wake?: () => void;
  private readonly ttl: number;

  constructor(private readonly opts: ElectionOptions) {
    this.ttl = opts.ttlSeconds ?? 3;
  }

  get leading(): boolean {
    return this.current !== undefined;
  }

  /** term: the leader key's create revision while this server leads. */
  get term(): number | undefined {
    return this.current?.term;
  }

  onDidChange(fn: (leading: boolean) => void): () => void {
    this.listeners.add(fn);
    fn(this.leading);
    return () => this.listeners.delete(fn);
  }

  start(): void {
    this.running ??= this.campaignLoop();
  }

  /** stop resigns (revokes the lease, so another server takes over at once) and stops campaigning. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    const held = this.current;
    this.stepDown('stopping');
    if (held) await this.opts.store.leaseRevoke(held.lease).catch(() => {});
    await this.running;
  }

  /** fence is the compare every write of the leader carries; undefined when this server does not lead. */
  fence(): Compare | undefined {
    return this.current ? { key: LEADER_KEY, target: 'create', op: '=', value: this.current.term } : undefined;
  }

  /** lost: a fenced write found another leader's key; stop acting at once. */
  lost(): void {
    if (this.current) this.stepDown('another server holds the leadership');
  }

  /** leader reads who leads now, from the store. */
  async leader(): Promise<LeaderInfo | undefined> {
    return parseLeader(await this.opts.store.get(LEADER_KEY));
  }

  private stepDown(why: string): void {
    if (!this.current) return;
    this.opts.log.warn({ term: this.current.term, why }, 'leadership lost');
    this.current = undefined;
    for (const fn of this.listeners) fn(false);
  }

  private async campaignLoop(): Promise<void> {
    const { store, log } = this.opts;
    while (!this.stopped) {
      try {
        const lease = await store.leaseGrant(this.ttl);
        const value = JSON.stringify({ identity: this.opts.identity, since: new Date().toISOString() });
        const r = await store.txn([{ key: LEADER_KEY, target: 'create', op: '=', value: 0 }], [{ type: 'put', key: LEADER_KEY, value, lease: lease.id }]);
        if (r.succeeded && !this.stopped) {
          await this.lead(lease, r.revision);
          continue;
        }
        await store.leaseRevoke(lease.id).catch(() => {});
        if (!this.stopped) await this.waitForVacancy(r.revision);
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'leader election: the store did not answer; campaigning again');
        await this.pause(this.opts.retryMs ?? 500);
      }
    }
  }

  /** lead keeps the lease alive until it is lost, the store stays away for a whole TTL, or the server stops. */
  private async lead(lease: Lease, term: number): Promise<void> {
    this.current = { lease: lease.id, term };
    this.opts.log.info({ term, identity: this.opts.identity }, 'leading');
    for (const fn of this.listeners) fn(true);
    let lastAlive = Date.now();
    while (!this.stopped && this.current?.term === term) {
      await this.pause((this.ttl * 1000) / 3);
      if (this.stopped || this.current?.term !== term) break;
      // Woken after a whole TTL without a keep-alive (paused, or the store away): the lease may be gone already.
      if (Date.now() - lastAlive >= this.ttl * 1000) {
        this.stepDown(`no keep-alive for ${Date.now() - lastAlive} ms (TTL ${this.ttl} s)`);
        break;
      }
      try {
        await this.opts.store.leaseKeepAlive(lease.id);
        lastAlive = Date.now();
      } catch (e) {
        if (e instanceof StoreLeaseNotFoundError) {
          this.stepDown('its lease expired');
          break;
        }
        this.opts.log.warn({ err: (e as Error).message }, 'leader election: keep-alive failed; trying again');
      }
    }
    await this.opts.store.leaseRevoke(lease.id).catch(() => {});
  }

  /** waitForVacancy returns when the leader key is deleted after `revision`, or after a TTL (to look again). */
  private waitForVacancy(revision: number): Promise<void> {
    return new Promise((resolve) => {
      let w: Watch | undefined;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        w?.close();
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(finish, this.ttl * 1000);
      this.wake = finish;
      try {
        w = this.opts.store.watch(LEADER_KEY, revision, {
          onBatch: (b) => {
            if (b.events.some((e) => e.type === 'delete' && e.kv.key === LEADER_KEY)) finish();
          },
          onError: () => finish(),
        });
      } catch {
        finish();
      }
    });
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
  }
}

export function parseLeader(kv: KeyValue | undefined): LeaderInfo | undefined {
  if (!kv) return undefined;
  try {
    const v = JSON.parse(kv.value) as { identity?: unknown; since?: unknown };
    return { identity: String(v.identity ?? ''), term: kv.createRevision, since: String(v.since ?? '') };
  } catch {
    return undefined;
  }
}

/**
 * FencedStore is the store as the leader's controllers write to it: every
 * txn carries the leadership fence and records the writer's term; a txn
 * made without leadership, or refused because another server holds it, is
 * a NotLeaderError (the election steps down at once). Reads and watches
 * pass through.
 */
export class FencedStore implements Store {
  constructor(
    private readonly inner: Store,
    private readonly election: Election,
  ) {}

  get backend(): string {
    return this.inner.backend;
  }

  async txn(compares: Compare[], success: Op[], failure?: Op[]): Promise<TxnResult> {
    // A failure branch would run exactly when the fence fails: a deposed leader's writes would land through it.
    if (failure?.length) throw new Error('a fenced txn has no failure branch');
    const fence = this.election.fence();
    if (!fence) throw new NotLeaderError();
    const record: Op = { type: 'put', key: LEADER_WRITES, value: JSON.stringify({ term: fence.value }) };
    const r = await this.inner.txn([...compares, fence], [...success, record]);
    if (!r.succeeded) {
      const holder = await this.inner.get(LEADER_KEY);
      if (holder?.createRevision !== fence.value) {
        this.election.lost();
        throw new NotLeaderError();
      }
    }
    return r;
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.inner.get(key);
  }
  range(prefix: string, opts?: RangeOptions): Promise<RangeResult> {
    return this.inner.range(prefix, opts);
  }
  watch(prefix: string, afterRevision: number, handlers: WatchHandlers): Watch {
    return this.inner.watch(prefix, afterRevision, handlers);
  }
  compact(revision: number): Promise<void> {
    return this.inner.compact(revision);
  }
  currentRevision(): Promise<number> {
    return this.inner.currentRevision();
  }
  compactRevision(): Promise<number> {
    return this.inner.compactRevision();
  }
  leaseGrant(ttlSeconds: number): Promise<Lease> {
    return this.inner.leaseGrant(ttlSeconds);
  }
  leaseKeepAlive(id: number): Promise<void> {
    return this.inner.leaseKeepAlive(id);
  }
  leaseRevoke(id: number): Promise<void> {
    return this.inner.leaseRevoke(id);
  }
  /** close is the server's, on the store itself: the fenced view closes nothing. */
  async close(): Promise<void> {}
}
