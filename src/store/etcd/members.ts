/**
 * EtcdMembers: the connections of one EtcdStore to the members of an etcd
 * cluster, which member a call goes to, its deadline, and what a failure
 * means.
 *
 * Why not the client's own pool: etcd3's default policy retries any call
 * that failed "recoverably" (a deadline passed, the member went away) on
 * another member, writes included, and a txn whose answer was lost may well
 * have been applied: retried, it would apply twice (two revisions for one
 * put). Here every member has a client of its own with no policy, and this
 * class decides: a read goes round the members within its deadline; a write
 * is sent again only when it provably never left (no connection to that
 * member), else it fails with StoreUnavailableError and the caller reads
 * before deciding, as etcd's Go client does. A read keeps going round the
 * members until its deadline: while the others elect a new leader (about
 * an election timeout), linearizable reads fail everywhere.
 *
 * Every call has a deadline (`requestTimeoutMs`): a SIGSTOPped member still
 * accepts TCP connections and would hold a call for ever. Streams (watches,
 * keep-alives) have no deadline of their own; gRPC keep-alive pings every
 * `keepaliveMs` close a connection whose member stopped answering, and the
 * stream's owner moves to the next member.
 */
import {
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  type IOptions,
} from 'etcd3';
import { StoreClosedError, StoreError, StoreUnavailableError } from '../store.js';

export interface EtcdConnectionOptions {
  /** Client URLs of the members: http://host:port, or https://host:port for TLS (all alike). */
  endpoints: string[];
  /** TLS material (file contents, PEM): the CA that signed the members' certificates, and a client certificate and key if the members ask for one. */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  /** Deadline of every call, retries included (default 5000 ms). */
  requestTimeoutMs?: number;
  /** gRPC keep-alive ping interval on each connection (default 10000 ms; etcd refuses pings closer than its --grpc-keepalive-min-time, 5 s by default). */
  keepaliveMs?: number;
  /** How long a ping may go unanswered before the connection is given up (default 5000 ms). */
  keepaliveTimeoutMs?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
export const DEFAULT_KEEPALIVE_MS = 10_000;
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 5_000;
/** ROUND_PAUSE_MS: a read that found no member able to answer waits this long before asking them all again. */
const ROUND_PAUSE_MS = 50;

/** CallOptions is what each call gets: its gRPC deadline (ms since the epoch). */
export interface CallOptions {
  deadline: number;
}

/** Call is one request to one member. */
export type Call<T> = (client: Etcd3, options: CallOptions) => Promise<T>;

/** Failure classifies an error from etcd for the Store's error types. */
export type Failure = 'compacted' | 'future' | 'lease_not_found' | 'unavailable' | 'unsent' | 'other';

/** classify reads an etcd3 error: by its class where etcd3 types it, by etcd's message where it does not. */
export function classify(err: unknown): Failure {
  const msg = err instanceof Error ? err.message : String(err);
  if (msg.includes('required revision has been compacted')) return 'compacted';
  if (msg.includes('required revision is a future revision')) return 'future';
  if (err instanceof EtcdLeaseInvalidError || msg.includes('requested lease not found')) return 'lease_not_found';
  if (err instanceof GRPCUnavailableError && /No connection established|ECONNREFUSED|failed to connect|Connection refused/i.test(msg)) return 'unsent';
  if (
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    err instanceof GRPCCancelledError ||
    err instanceof GRPCResourceExhastedError ||
    // The member's own end of the deadline, which etcd answers as UNKNOWN.
    /context deadline exceeded|etcdserver: (request timed out|no leader|leader changed|not capable|too many requests|server stopped|mvcc: database space exceeded)/.test(msg)
  ) {
    return 'unavailable';
  }
  return 'other';
}

/** messageOf is an error's text without etcd3's "14 UNAVAILABLE:" style lead. */
export function messageOf(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/^\d+ [A-Z_]+: /, '');
}

/** backendError wraps what the Store contract has no name for, saying which call failed. */
export function backendError(err: unknown, what: string): StoreError {
  return err instanceof StoreError ? err : new StoreError(`etcd ${what} failed: ${messageOf(err)}`, 'backend');
}

/** A policy that runs the call as it is (etcd3's pool awaits what it returns): no retries, no circuit breaker. */
const PASS_THROUGH = {
  execute: async (fn: (ctx: { signal: AbortSignal; attempt: number }) => unknown) => fn({ signal: new AbortController().signal, attempt: 0 }),
} as unknown as NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

export class EtcdMembers {
  readonly requestTimeoutMs: number;
  private readonly clients: Etcd3[];
  private readonly urls: string[];
  private active = 0;
  private closed = false;

  constructor(opts: EtcdConnectionOptions) {
    const endpoints = parseEndpoints(opts.endpoints);
    this.requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.urls = endpoints.map((u) => u.href.replace(/\/$/, ''));
    const secure = endpoints[0]!.protocol === 'https:';
    const tls = opts.tls;
    this.clients = this.urls.map(
      (url) =>
        new Etcd3({
          hosts: url,
          ...(secure
            ? {
                credentials: {
                  rootCertificate: tls?.ca ? Buffer.from(tls.ca) : (undefined as unknown as Buffer),
                  ...(tls?.key ? { privateKey: Buffer.from(tls.key) } : {}),
                  ...(tls?.cert ? { certChain: Buffer.from(tls.cert) } : {}),
                },
              }
            : {}),
          faultHandling: { global: PASS_THROUGH, host: () => PASS_THROUGH },
          grpcOptions: {
            'grpc.keepalive_time_ms': opts.keepaliveMs ?? DEFAULT_KEEPALIVE_MS,
            'grpc.keepalive_timeout_ms': opts.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS,
            // A list or a watch catch-up can be large; the Store has no page size of its own.
            'grpc.max_receive_message_length': -1,
            // A member back from a restart is dialled again within a second, not after gRPC's default two minutes.
            'grpc.initial_reconnect_backoff_ms': 100,
            'grpc.max_reconnect_backoff_ms': 1_000,
          },
        }),
    );
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** current is the member calls and new streams go to (the last one that answered). */
  current(): Etcd3 {
    if (this.closed) throw new StoreClosedError();
    return this.clients[this.active]!;
  }

  /** currentEndpoint is the URL of the member calls go to now. */
  currentEndpoint(): string {
    return this.urls[this.active]!;
  }

  /** failed moves calls on from `client`, unless another call already did. */
  failed(client: Etcd3): void {
    if (this.clients[this.active] === client) this.active = (this.active + 1) % this.clients.length;
  }

  /**
   * call runs fn against the current member with a deadline. A read that finds
   * the member unavailable tries the next, each member left getting an equal
   * share of the time left; a write is tried again only when it was never sent.
   * Unavailability past that is StoreUnavailableError; every other error is
   * rethrown for the caller to map (compaction, leases …).
   */
  async call<T>(kind: 'read' | 'write', what: string, fn: Call<T>): Promise<T> {
    const n = this.clients.length;
    const deadline = Date.now() + this.requestTimeoutMs;
    for (let tried = 0; ; tried++) {
      const client = this.current();
      // A read gives each member it has yet to try an equal share of the time left; past one round, all of it.
      const left = deadline - Date.now();
      const share = kind === 'read' ? left / Math.max(1, n - tried) : left;
      try {
        return await fn(client, { deadline: Date.now() + Math.max(1, share) });
      } catch (err) {
        if (this.closed) throw new StoreClosedError();
        const f = classify(err);
        if (f !== 'unavailable' && f !== 'unsent') throw err;
        this.failed(client);
        // A read goes round the members until its deadline (an election takes a second or so); a write only past a member it never reached.
        const again = Date.now() < deadline && (kind === 'read' || (f === 'unsent' && tried + 1 < n));
        if (!again) {
          const unknown = kind === 'write' && f !== 'unsent' ? ' (it may or may not have been applied)' : '';
          throw new StoreUnavailableError(`etcd ${what} failed${unknown}: ${messageOf(err)}`);
        }
        if ((tried + 1) % n === 0) await new Promise((r) => setTimeout(r, Math.min(ROUND_PAUSE_MS, Math.max(0, deadline - Date.now()))));
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.clients) c.close();
  }
}

/** parseEndpoints checks the member URLs: http or https (not both), a host and a port, nothing else. */
export function parseEndpoints(endpoints: string[]): URL[] {
  if (endpoints.length === 0) throw new StoreError('etcd endpoints: at least one member URL is needed', 'invalid_config');
  const urls = endpoints.map((e, i) => {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      throw new StoreError(`etcd endpoints[${i}]: ${JSON.stringify(e)} is not a URL (http://host:port)`, 'invalid_config');
    }
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || !u.hostname || !u.port || (u.pathname !== '/' && u.pathname !== '') || u.search || u.username) {
      throw new StoreError(`etcd endpoints[${i}]: ${JSON.stringify(e)} must be http://host:port or https://host:port`, 'invalid_config');
    }
    return u;
  });
  if (new Set(urls.map((u) => u.protocol)).size > 1) throw new StoreError('etcd endpoints: all members must use http, or all https', 'invalid_config');
  return urls;
}
