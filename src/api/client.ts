/**
 * ApiClient is the typed client used by the CLI, the agent and (later) the
 * dashboard. With an undici Dispatcher (mutual TLS, see tls.ts) it calls
 * `dispatcher.request` directly: no WHATWG streams, abort signals or
 * Request objects per call, which is most of fetch's cost when one process
 * hosts thousands of simulated agents. Without one it uses `fetch` (tests,
 * browsers).
 * Every non-2xx answer becomes a BatonError with the server's code, message
 * and details, so callers print one clear line.
 */
import { BatonError, ERROR_CODES, type ErrorCode } from '../base/errors.js';
import type { Dispatcher } from 'undici';
import type { KindInfo } from './kinds.js';
import { nodeKind, serviceKind, taskKind } from './kinds.js';
import { parseLogLine, type ApplyResponse, type AutoscaleView, type ClusterInfo, type FileInput, type List, type LogLine, type LogQuery, type Node, type Service, type ServiceSpec, type ServiceStats, type Task, type TopResponse, type WireWatchEvent } from './types.js';

export interface ClientOptions {
  /**
   * The server's URL, or several separated by commas (servers sharing one
   * store): a request that gets no answer from one (refused, reset, or no
   * answer within timeoutMs: a paused server still accepts connections)
   * goes to the next, and the client stays with the one that answered.
   * A request that got no answer may still have been carried out by the
   * silent server: Baton's writes are declarative (an apply, a scale to N,
   * a status batch with whole statuses, a heartbeat), so sending one again
   * changes nothing.
   */
  server: string;
  token?: string;
  /** Custom fetch (tests, browsers). */
  fetch?: typeof fetch;
  /** Extra fetch init merged into every fetch request. */
  init?: Record<string, unknown>;
  /** An undici dispatcher (mutual TLS): when given, requests go through it and fetch is not used. */
  dispatcher?: Dispatcher;
  /** Per-request timeout for non-streaming calls. */
  timeoutMs?: number;
}

export interface WatchOptions {
  resourceVersion?: string;
  /** The store epoch of resourceVersion (a list's metadata.storeEpoch): a server on another epoch answers 410. */
  storeEpoch?: string;
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

/** An event as an agent reports it: POST /api/v1/events, or along with a status batch. */
export interface NewEventBody {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  kind: string;
  name: string;
  uid?: string;
  node?: string;
  service?: string;
  source: string;
}

/** ApiResponse is the part of an HTTP answer the client reads, whichever way it was fetched. */
export interface ApiResponse {
  status: number;
  ok: boolean;
  json(): Promise<unknown>;
  /** The body as byte chunks, for streams (watches, snapshots). */
  body: AsyncIterable<Uint8Array> | null;
}

/** unreachable explains why a request got no answer, for either transport's error shape. */
function unreachable(server: string, e: unknown, timeout: number): Error {
  const err = e as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err.name === 'AbortError') return e as Error;
  const code = err.cause?.code ?? err.code;
  if (err.name === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new BatonError('BATON_ERR_UNAVAILABLE', `server ${server} did not answer within ${timeout} ms`);
  }
  if (code && TLS_TRUST_CODES.has(code)) {
    return new BatonError('BATON_ERR_TLS', `the server at ${server} is not trusted (${code}): its certificate is not from this context's cluster CA, or not for this address; check --server and the context's CA`);
  }
  if ((code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') && server.startsWith('http://')) {
    return new BatonError('BATON_ERR_UNAVAILABLE', `cannot reach the server at ${server} (ECONNRESET); Baton serves HTTPS: use https://`);
  }
  const why = code && !code.startsWith('UND_ERR') ? code : (err.cause?.message ?? err.message);
  return new BatonError('BATON_ERR_UNAVAILABLE', `cannot reach the server at ${server} (${why}); is it running? (baton up)`);
}

/** A server's URL, with its origin and path prefix read once. */
interface Endpoint {
  url: string;
  origin: string;
  basePath: string;
}

function endpoint(raw: string): Endpoint {
  const url = raw.trim().replace(/\/+$/, '');
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    u = undefined;
  }
  return { url, origin: u ? u.origin : url, basePath: u ? u.pathname.replace(/\/+$/, '') : '' };
}

export class ApiClient {
  private f: typeof fetch;
  private init: Record<string, unknown>;
  private dispatcher: Dispatcher | undefined;
  private endpoints: Endpoint[];
  /** The server requests go to: the last one that answered. */
  private current = 0;

  constructor(private readonly opts: ClientOptions) {
    this.f = opts.fetch ?? fetch;
    this.init = opts.init ?? {};
    this.dispatcher = opts.dispatcher;
    const list = opts.server.split(',').filter((x) => x.trim() !== '');
    this.endpoints = (list.length ? list : [opts.server]).map(endpoint);
  }

  /** The server requests go to now. */
  get server(): string {
    return this.endpoints[this.current]!.url;
  }

  /** Every server this client knows, in order. */
  get servers(): string[] {
    return this.endpoints.map((e) => e.url);
  }

  /**
   * setServers replaces the servers this client knows (servers were added or
   * removed); requests keep going to the current one while it is listed.
   */
  setServers(urls: string[]): void {
    if (urls.length === 0) return;
    const now = this.server;
    this.endpoints = urls.map(endpoint);
    this.moveTo(Math.max(0, this.endpoints.findIndex((e) => e.url === now)), now);
  }

  private readonly serverListeners = new Set<(server: string) => void>();

  /**
   * onDidChangeServer: fn runs when requests move to another server (the
   * current one gave no answer). A stream held on the old one may hang (a
   * stopped server keeps its connections open): its owner opens it again.
   */
  onDidChangeServer(fn: (server: string) => void): () => void {
    this.serverListeners.add(fn);
    return () => this.serverListeners.delete(fn);
  }

  private moveTo(index: number, from: string): void {
    this.current = index;
    if (this.server !== from) for (const fn of this.serverListeners) fn(this.server);
  }

  /** setTimeout sets the deadline of every later call that is not a stream (with several servers, shorter than a heartbeat). */
  setTimeout(ms: number): void {
    this.opts.timeoutMs = ms;
  }

  /** setTransport swaps the transport (a renewed certificate) for every later request. */
  setTransport(t: { fetch: typeof fetch; init: Record<string, unknown>; dispatcher?: Dispatcher }): void {
    this.f = t.fetch;
    this.init = t.init;
    this.dispatcher = t.dispatcher;
  }

  private headers(body: string | Uint8Array | undefined): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.opts.token) h.authorization = `Bearer ${this.opts.token}`;
    if (body !== undefined) h['content-type'] = typeof body === 'string' ? 'application/json' : 'application/octet-stream';
    return h;
  }

  /**
   * raw sends one request and returns the answer, or throws a BatonError for
   * a non-2xx answer (the server's code, message and details) or no answer.
   * Without a signal the call times out after the client's timeout; with
   * one (streams) it runs until the signal aborts. Bytes (a Uint8Array)
   * go as they are (application/octet-stream); anything else as JSON.
   */
  async raw(method: string, path: string, body?: unknown, signal?: AbortSignal, timeoutMs?: number): Promise<ApiResponse> {
    const timeout = timeoutMs ?? this.opts.timeoutMs ?? 30_000;
    const payload = body === undefined ? undefined : body instanceof Uint8Array ? body : JSON.stringify(body);
    let res: ApiResponse | undefined;
    // Each server once, starting with the current one; a stream (signal given) tries one, and its caller's retry goes to the next.
    const tries = signal ? 1 : this.endpoints.length;
    for (let i = 0; res === undefined; i++) {
      const ep = this.endpoints[this.current]!;
      try {
        res = this.dispatcher ? await this.viaDispatcher(this.dispatcher, ep, method, path, payload, signal, timeout) : await this.viaFetch(ep, method, path, payload, signal, timeout);
      } catch (e) {
        const err = unreachable(ep.url, e, timeout);
        const noAnswer = err instanceof BatonError && err.code === 'BATON_ERR_UNAVAILABLE';
        if (noAnswer && this.endpoints.length > 1 && this.endpoints[this.current] === ep) this.moveTo((this.current + 1) % this.endpoints.length, ep.url);
        if (!noAnswer || i + 1 >= tries) throw err;
      }
    }
    if (!res.ok) {
      let answer: any;
      try {
        answer = await res.json();
      } catch {
        answer = undefined;
      }
      const err = answer?.error;
      const code: ErrorCode = err?.code && err.code in ERROR_CODES ? err.code : res.status === 401 ? 'BATON_ERR_UNAUTHORIZED' : 'BATON_ERR_INTERNAL';
      throw new BatonError(code, err?.message ?? `${method} ${path}: HTTP ${res.status}`, err?.details ?? []);
    }
    return res;
  }

  private async viaDispatcher(d: Dispatcher, ep: Endpoint, method: string, path: string, payload: string | Uint8Array | undefined, signal: AbortSignal | undefined, timeout: number): Promise<ApiResponse> {
    const r = await d.request({
      origin: ep.origin,
      path: ep.basePath + path,
      method: method as Dispatcher.HttpMethod,
      headers: this.headers(payload),
      body: payload,
      // Undici's own timers instead of an AbortSignal per call; a stream (signal given) may stay quiet for long.
      headersTimeout: timeout,
      bodyTimeout: signal ? 0 : timeout,
      ...(signal ? { signal } : {}),
    });
    return { status: r.statusCode, ok: r.statusCode >= 200 && r.statusCode < 300, json: () => r.body.json(), body: r.body };
  }

  private async viaFetch(ep: Endpoint, method: string, path: string, payload: string | Uint8Array | undefined, signal: AbortSignal | undefined, timeout: number): Promise<ApiResponse> {
    const r = await this.f(ep.url + path, {
      method,
      headers: this.headers(payload),
      body: payload,
      signal: signal ?? AbortSignal.timeout(timeout),
      ...this.init,
    } as RequestInit);
    return { status: r.status, ok: r.ok, json: () => r.json(), body: r.body as unknown as AsyncIterable<Uint8Array> | null };
  }

  /** call sends one request and parses its JSON answer; `timeoutMs` overrides the client's for this call. */
  async call<T>(method: string, path: string, body?: unknown, o: { timeoutMs?: number } = {}): Promise<T> {
    const res = await this.raw(method, path, body, undefined, o.timeoutMs);
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

  /** updateStatus writes statuses in one batch; an agent's task events ride along (recorded once the statuses are written). */
  updateStatus(kind: KindInfo, items: { name: string; uid?: string; status: unknown }[], events: NewEventBody[] = []) {
    return this.call<{ items: { name: string; ok: boolean; error?: { code: string; message: string } }[] }>('POST', `/api/v1/${kind.plural}/-/status`, events.length ? { items, events } : { items });
  }

  /**
   * watch yields watch events as they arrive (NDJSON). It ends when the
   * server closes the stream or the signal aborts; an ERROR event with code
   * 410 means "list again".
   */
  async *watch<T>(kind: KindInfo, o: WatchOptions = {}): AsyncGenerator<WireWatchEvent<T>> {
    const res = await this.raw(
      'GET',
      `/api/v1/${kind.plural}${qs({ watch: 'true', resourceVersion: o.resourceVersion, storeEpoch: o.storeEpoch, fieldSelector: selector(o.fieldSelector), labelSelector: selector(o.labelSelector), ...(o.ignoreStatusUpdates ? { ignoreStatusUpdates: 'true' } : {}) })}`,
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
  apply(stack: string, body: { services: { name: string; spec: ServiceSpec; labels: Record<string, string> }[]; prune: boolean; dryRun: boolean; secrets?: FileInput[]; configs?: FileInput[] }): Promise<ApplyResponse> {
    return this.call('POST', `/api/v1/stacks/${encodeURIComponent(stack)}/apply`, body);
  }
  /** blobStat: a blob's size when a server has it; a BATON_ERR_NOT_FOUND error when none has. */
  blobStat(digest: string): Promise<{ digest: string; size: number }> {
    return this.call('GET', `/api/v1/blobs/${digest}/stat`);
  }
  /** putBlob uploads a blob (a build context) by its digest; the server checks the bytes against it. */
  putBlob(digest: string, data: Uint8Array, timeoutMs = 600_000): Promise<{ digest: string; size: number }> {
    return this.call('PUT', `/api/v1/blobs/${digest}`, data, { timeoutMs });
  }
  /** blob reads a blob's bytes as a stream, until the signal aborts. */
  async blob(digest: string, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const res = await this.raw('GET', `/api/v1/blobs/${digest}`, undefined, signal);
    return res.body ?? (async function* () {})();
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
  postEvents(items: NewEventBody[]): Promise<unknown> {
    return this.call('POST', '/api/v1/events', { items });
  }

  /**
   * logStream returns the raw text stream of a service's or task's logs (one
   * line per record, see LogLine); logs parses it. With follow the stream
   * runs until the signal aborts.
   */
  async logStream(target: { service: string } | { task: string }, q: LogQuery = {}, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const path = 'service' in target ? `/api/v1/services/${encodeURIComponent(target.service)}/logs` : `/api/v1/tasks/${encodeURIComponent(target.task)}/logs`;
    const res = await this.raw('GET', path + qs({ follow: q.follow ? 'true' : undefined, tail: q.tail, since: q.since, grep: q.grep, container: q.container, merge: q.merge === false ? 'false' : undefined }), undefined, signal ?? new AbortController().signal);
    return res.body ?? (async function* () {})();
  }
  async *logs(target: { service: string } | { task: string }, q: LogQuery = {}, signal?: AbortSignal): AsyncGenerator<LogLine> {
    for await (const line of lines(await this.logStream(target, q, signal))) {
      const l = parseLogLine(line);
      if (l) yield l;
    }
  }
  autoscale(): Promise<{ items: AutoscaleView[] }> {
    return this.call('GET', '/api/v1/autoscale');
  }
  top(): Promise<TopResponse> {
    return this.call('GET', '/api/v1/top');
  }
  serviceStats(service: string): Promise<ServiceStats> {
    return this.call('GET', `/api/v1/services/${encodeURIComponent(service)}/stats`);
  }
}

/** lines splits a byte stream into text lines (without their newline). */
export async function* lines(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let start = 0;
    let i: number;
    while ((i = buf.indexOf('\n', start)) >= 0) {
      yield buf.slice(start, i);
      start = i + 1;
    }
    buf = buf.slice(start);
  }
  if (buf) yield buf;
}

async function* ndjson<T>(res: ApiResponse): AsyncGenerator<T> {
  if (!res.body) return;
  for await (const line of lines(res.body)) {
    const t = line.trim();
    if (t) yield JSON.parse(t) as T;
  }
}
