/**
 * ApiClient is the typed client used by the CLI, the agent and (later) the
 * dashboard. It is plain `fetch` with a pluggable transport: pass an undici
 * Dispatcher for mutual TLS (clustering issue) or any fetch implementation.
 * Every non-2xx answer becomes a BatonError with the server's code, message
 * and details, so callers print one clear line.
 */
import { BatonError, ERROR_CODES, type ErrorCode } from '../base/errors.js';
import type { KindInfo } from './kinds.js';
import { nodeKind, serviceKind, taskKind } from './kinds.js';
import type { ApplyResponse, ClusterInfo, List, Node, Service, ServiceSpec, Task, WireWatchEvent } from './types.js';

export interface ClientOptions {
  server: string;
  token?: string;
  /** Custom fetch (tests, browsers). */
  fetch?: typeof fetch;
  /** Extra fetch init merged into every request, e.g. `{ dispatcher }` for undici mTLS. */
  init?: Record<string, unknown>;
  /** Per-request timeout for non-streaming calls. */
  timeoutMs?: number;
}

export interface WatchOptions {
  resourceVersion?: string;
  fieldSelector?: Record<string, string>;
  labelSelector?: Record<string, string>;
  /** Leave out changes of status alone (same generation and labels). */
  ignoreStatusUpdates?: boolean;
  signal?: AbortSignal;
}

function selector(s?: Record<string, string>): string | undefined {
  if (!s) return undefined;
  return Object.entries(s)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

function qs(params: Record<string, string | number | boolean | undefined>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}

/** Errors from the TLS stack that mean "this server is not the one we trust". */
const TLS_TRUST_CODES = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE']);

export class ApiClient {
  private f: typeof fetch;
  private init: Record<string, unknown>;
  readonly server: string;

  constructor(private readonly opts: ClientOptions) {
    this.f = opts.fetch ?? fetch;
    this.init = opts.init ?? {};
    this.server = opts.server.replace(/\/+$/, '');
  }

  /** setTransport swaps fetch and its init (a renewed certificate) for every later request. */
  setTransport(t: { fetch: typeof fetch; init: Record<string, unknown> }): void {
    this.f = t.fetch;
    this.init = t.init;
  }

  private headers(body: boolean): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.opts.token) h.authorization = `Bearer ${this.opts.token}`;
    if (body) h['content-type'] = 'application/json';
    return h;
  }

  async raw(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    const timeout = this.opts.timeoutMs ?? 30_000;
    const sig = signal ?? AbortSignal.timeout(timeout);
    let res: Response;
    try {
      res = await this.f(this.server + path, {
        method,
        headers: this.headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: sig,
        ...this.init,
      } as RequestInit);
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (e as Error).message;
      if ((e as Error).name === 'TimeoutError') throw new BatonError('BATON_ERR_UNAVAILABLE', `server ${this.server} did not answer within ${timeout} ms`);
      if ((e as Error).name === 'AbortError') throw e;
      if (cause?.code && TLS_TRUST_CODES.has(cause.code)) {
        throw new BatonError('BATON_ERR_TLS', `the server at ${this.server} is not trusted (${cause.code}): its certificate is not from this context's cluster CA, or not for this address; check --server and the context's CA`);
      }
      if (cause?.code === 'ECONNRESET' && this.server.startsWith('http://')) {
        throw new BatonError('BATON_ERR_UNAVAILABLE', `cannot reach the server at ${this.server} (ECONNRESET); Baton serves HTTPS: use https://`);
      }
      throw new BatonError('BATON_ERR_UNAVAILABLE', `cannot reach the server at ${this.server} (${why}); is it running? (baton up)`);
    }
    if (!res.ok) {
      let payload: any;
      try {
        payload = await res.json();
      } catch {
        payload = undefined;
      }
      const err = payload?.error;
      const code: ErrorCode = err?.code && err.code in ERROR_CODES ? err.code : res.status === 401 ? 'BATON_ERR_UNAUTHORIZED' : 'BATON_ERR_INTERNAL';
      throw new BatonError(code, err?.message ?? `${method} ${path}: HTTP ${res.status}`, err?.details ?? []);
    }
    return res;
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.raw(method, path, body);
    return (await res.json()) as T;
  }

  // ------------------------------------------------------------ generic kinds
  list<T>(kind: KindInfo, o: { fieldSelector?: Record<string, string>; labelSelector?: Record<string, string>; limit?: number; continue?: string } = {}): Promise<List<T>> {
    return this.call('GET', `/api/v1/${kind.plural}${qs({ fieldSelector: selector(o.fieldSelector), labelSelector: selector(o.labelSelector), limit: o.limit, continue: o.continue })}`);
  }

  get<T>(kind: KindInfo, name: string): Promise<T> {
    return this.call('GET', `/api/v1/${kind.plural}/${encodeURIComponent(name)}`);
  }

  delete<T>(kind: KindInfo, name: string): Promise<T> {
    return this.call('DELETE', `/api/v1/${kind.plural}/${encodeURIComponent(name)}`);
  }

  updateStatus(kind: KindInfo, items: { name: string; uid?: string; status: unknown }[]) {
    return this.call<{ items: { name: string; ok: boolean; error?: { code: string; message: string } }[] }>('POST', `/api/v1/${kind.plural}/-/status`, { items });
  }

  /**
   * watch yields watch events as they arrive (NDJSON). It ends when the
   * server closes the stream or the signal aborts; an ERROR event with code
   * 410 means "list again".
   */
  async *watch<T>(kind: KindInfo, o: WatchOptions = {}): AsyncGenerator<WireWatchEvent<T>> {
    const res = await this.raw(
      'GET',
      `/api/v1/${kind.plural}${qs({ watch: 'true', resourceVersion: o.resourceVersion, fieldSelector: selector(o.fieldSelector), labelSelector: selector(o.labelSelector), ...(o.ignoreStatusUpdates ? { ignoreStatusUpdates: 'true' } : {}) })}`,
      undefined,
      o.signal ?? new AbortController().signal,
    );
    yield* ndjson<WireWatchEvent<T>>(res);
  }

  // ------------------------------------------------------------ typed helpers
  info(): Promise<ClusterInfo> {
    return this.call('GET', '/api/v1/info');
  }
  services(): Promise<List<Service>> {
    return this.list<Service>(serviceKind);
  }
  tasks(o: { fieldSelector?: Record<string, string> } = {}): Promise<List<Task>> {
    return this.list<Task>(taskKind, o);
  }
  nodes(): Promise<List<Node>> {
    return this.list<Node>(nodeKind);
  }
  apply(stack: string, body: { services: { name: string; spec: ServiceSpec; labels: Record<string, string> }[]; prune: boolean; dryRun: boolean }): Promise<ApplyResponse> {
    return this.call('POST', `/api/v1/stacks/${encodeURIComponent(stack)}/apply`, body);
  }
  stacks(): Promise<{ items: { name: string; services: number; replicas: number; ready: number }[] }> {
    return this.call('GET', '/api/v1/stacks');
  }
  removeStack(stack: string): Promise<{ removed: string[] }> {
    return this.call('DELETE', `/api/v1/stacks/${encodeURIComponent(stack)}`);
  }
  scale(service: string, replicas: number): Promise<Service> {
    return this.call('POST', `/api/v1/services/${encodeURIComponent(service)}/scale`, { replicas });
  }
  events(q: Record<string, string | number | undefined> = {}): Promise<{ items: any[] }> {
    return this.call('GET', `/api/v1/events${qs(q)}`);
  }
  async *watchEvents(q: Record<string, string | number | undefined>, signal?: AbortSignal): AsyncGenerator<{ type: string; object: any }> {
    const res = await this.raw('GET', `/api/v1/events${qs({ ...q, watch: 'true' })}`, undefined, signal ?? new AbortController().signal);
    yield* ndjson(res);
  }
  postEvents(items: unknown[]): Promise<unknown> {
    return this.call('POST', '/api/v1/events', { items });
  }
}

async function* ndjson<T>(res: Response): AsyncGenerator<T> {
  if (!res.body) return;
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) yield JSON.parse(line) as T;
    }
  }
}
