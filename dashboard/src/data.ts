/**
 * The dashboard's data layer: the shared typed client (src/api), informers
 * (list + watch) turned into React state, polling, and the event and log
 * streams. Every stream ends when its component unmounts (its AbortSignal
 * closes the connection): a browser holds at most six HTTP/1.1 connections
 * to one server, so a page keeps at most five streams open (nodes and
 * services for the whole app, plus a page's tasks, events and log tail) and
 * leaves one for its polls and actions.
 */
import { createContext, useContext, useEffect, useMemo, useRef, useState } from 'react';
import { ApiClient, lines as textLines } from '../../src/api/client.ts';
import { Informer } from '../../src/api/informer.ts';
import type { KindInfo } from '../../src/api/kinds.ts';
import { parseLogLine, type LogLine } from '../../src/api/types.ts';
import { errorText } from './format.ts';

const TOKEN_KEY = 'baton.token';

export const session = {
  token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  save(token: string): void {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear(): void {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

export function makeClient(token: string): ApiClient {
  return new ApiClient({ server: location.origin, token, fetch: retryingFetch });
}

/**
 * retryingFetch sends a read once more when the browser failed it without an
 * answer: Chromium aborts requests in flight whenever any network interface
 * of the machine changes (ERR_NETWORK_CHANGED), and a node's interfaces
 * change each time a task starts or stops. Only GETs, which change nothing.
 */
function retryingFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  return window.fetch(input, init).catch(async (err: unknown) => {
    if ((init?.method ?? 'GET').toUpperCase() !== 'GET' || init?.signal?.aborted) throw err;
    await new Promise((r) => setTimeout(r, 200));
    return window.fetch(input, init);
  });
}

/**
 * The client reads response bodies with `for await`; browsers without async
 * iteration of ReadableStream (Safari) get it through a reader.
 */
export function polyfillStreamIteration(): void {
  const proto = ReadableStream.prototype as unknown as Record<symbol, unknown>;
  if (typeof proto[Symbol.asyncIterator] === 'function') return;
  proto[Symbol.asyncIterator] = async function* (this: ReadableStream<Uint8Array>) {
    const reader = this.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      reader.releaseLock();
    }
  };
}

export interface Session {
  api: ApiClient;
  /** Called when the server refuses the token mid-session: back to the login page. */
  expired(message: string): void;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside a session');
  return s;
}

function isUnauthorized(e: unknown): boolean {
  return (e as { code?: string })?.code === 'BATON_ERR_UNAUTHORIZED';
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** How long an error of a stream that recovered stays on screen. */
const ERROR_LINGER_MS = 8000;

// ---------------------------------------------------------------- informers

export interface InformerState<T> {
  items: T[];
  synced: boolean;
  error?: string;
}

/**
 * useInformer keeps a live list of one kind (filtered by field selector) in
 * React state. Bursts of watch events render once (80 ms batches).
 */
export function useInformer<T>(kind: KindInfo<T>, fieldSelector?: Record<string, string>): InformerState<T> {
  const { api, expired } = useSession();
  const key = fieldSelector ? JSON.stringify(fieldSelector) : '';
  const [state, setState] = useState<InformerState<T>>({ items: [], synced: false });
  useEffect(() => {
    let timer: number | undefined;
    let errorTimer: number | undefined;
    let error: string | undefined;
    const flush = () => {
      timer = undefined;
      setState({ items: [...inf.objects.values()] as T[], synced: inf.synced, error });
    };
    const schedule = () => {
      if (timer === undefined) timer = window.setTimeout(flush, 80);
    };
    const inf = new Informer(api, kind, {
      fieldSelector: key ? (JSON.parse(key) as Record<string, string>) : undefined,
      retry: { initialMs: 500, maxMs: 5000 },
      onSync: () => {
        error = undefined;
        schedule();
      },
      onEvent: () => {
        error = undefined;
        schedule();
      },
      onError: (e) => {
        if (isUnauthorized(e)) return expired(errorText(e));
        error = errorText(e);
        schedule();
        window.clearTimeout(errorTimer);
        errorTimer = window.setTimeout(() => {
          error = undefined;
          schedule();
        }, ERROR_LINGER_MS);
      },
    });
    setState({ items: [], synced: false });
    inf.start();
    return () => {
      window.clearTimeout(timer);
      window.clearTimeout(errorTimer);
      void inf.stop();
    };
  }, [api, kind, key, expired]);
  return state;
}

// ---------------------------------------------------------------- polling

export interface PollState<T> {
  data?: T;
  error?: string;
  /** When data last arrived (ms since the epoch). */
  at?: number;
}

/**
 * usePoll calls fn every intervalMs (after the previous call ended) while the
 * component is mounted, backing off to 30 s while calls fail. The last data
 * stays when a call fails; the error is shown beside it.
 */
export function usePoll<T>(fn: (signal: AbortSignal) => Promise<T>, intervalMs: number, deps: unknown[]): PollState<T> {
  const { expired } = useSession();
  const [state, setState] = useState<PollState<T>>({});
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => {
    const ac = new AbortController();
    setState({});
    (async () => {
      let failures = 0;
      while (!ac.signal.aborted) {
        try {
          const data = await fnRef.current(ac.signal);
          if (ac.signal.aborted) return;
          failures = 0;
          setState({ data, at: Date.now() });
        } catch (e) {
          if (ac.signal.aborted) return;
          if (isUnauthorized(e)) return expired(errorText(e));
          failures++;
          setState((s) => ({ ...s, error: errorText(e) }));
        }
        // A call that keeps failing (a server without this route, say) is retried less and less often.
        await sleep(Math.min(Math.max(intervalMs, 30_000), intervalMs * 2 ** Math.min(failures, 5)), ac.signal);
      }
    })();
    return () => ac.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [intervalMs, expired, ...deps]);
  return state;
}

/**
 * useHeartbeats: each node's last heartbeat. Nodes' watch events leave
 * heartbeats out (a beat is never written to the store), so a list, which
 * carries them from the server's memory, is polled.
 */
export function useHeartbeats(intervalMs = 3000): Map<string, string> {
  const { api } = useSession();
  const p = usePoll(() => api.nodes(), intervalMs, [api]);
  return useMemo(() => new Map((p.data?.items ?? []).flatMap((n) => (n.status.lastHeartbeat ? [[n.metadata.name, n.status.lastHeartbeat] as const] : []))), [p.data]);
}

// ---------------------------------------------------------------- events

export interface BatonEvent {
  id: number;
  /** The first occurrence; lastTime and count tell a repeated one (absent from servers before event series). */
  time: string;
  lastTime?: string;
  count?: number;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  kind: string;
  name: string;
  source: string;
  node?: string;
  service?: string;
}

export interface EventsState {
  /** Newest first. */
  items: BatonEvent[];
  connected: boolean;
  error?: string;
}

const MAX_EVENTS = 200;

/** useEvents follows the events matching a filter (service=, node=): the last 100, then each new one. */
export function useEvents(filter: { service?: string; node?: string }): EventsState {
  const { api, expired } = useSession();
  const key = JSON.stringify(filter);
  const [state, setState] = useState<EventsState>({ items: [], connected: false });
  useEffect(() => {
    const ac = new AbortController();
    const q = JSON.parse(key) as Record<string, string>;
    let items: BatonEvent[] = [];
    let lastId = 0;
    let timer: number | undefined;
    const flush = () => {
      timer = undefined;
      setState((s) => ({ ...s, items }));
    };
    setState({ items: [], connected: false });
    (async () => {
      let failures = 0;
      while (!ac.signal.aborted) {
        try {
          const stream = api.watchEvents(lastId ? { ...q, afterId: lastId } : { ...q, limit: 100 }, ac.signal);
          setState((s) => ({ ...s, connected: true, error: undefined }));
          for await (const ev of stream) {
            failures = 0;
            const e = ev.object as BatonEvent;
            if (typeof e?.id !== 'number') continue;
            // A repeat of a shown event (its count grew) replaces it and moves to the top, as the latest thing that happened.
            if (ev.type === 'MODIFIED') items = [e, ...items.filter((x) => x.id !== e.id)].slice(0, MAX_EVENTS);
            else if (e.id > lastId) items = [e, ...items].slice(0, MAX_EVENTS);
            else continue;
            lastId = Math.max(lastId, e.id);
            if (timer === undefined) timer = window.setTimeout(flush, 80);
          }
        } catch (e) {
          if (ac.signal.aborted) return;
          if (isUnauthorized(e)) return expired(errorText(e));
          failures++;
          setState((s) => ({ ...s, connected: false, error: errorText(e) }));
        }
        await sleep(Math.min(10_000, 1000 * 2 ** Math.min(failures, 4)), ac.signal);
      }
    })();
    return () => {
      ac.abort();
      window.clearTimeout(timer);
    };
  }, [api, key, expired]);
  return state;
}

// ---------------------------------------------------------------- logs

export interface ShownLogLine extends LogLine {
  seq: number;
}

export interface LogTailState {
  lines: ShownLogLine[];
  /** The stream is open. */
  following: boolean;
  error?: string;
}

const MAX_LOG_LINES = 1000;

/**
 * useLogTail shows a service's last `tail` lines, then follows. After a
 * broken stream it asks again from the last line's time and drops the lines
 * it already shows.
 */
export function useLogTail(service: string, tail = 100): LogTailState {
  const { api, expired } = useSession();
  const [state, setState] = useState<LogTailState>({ lines: [], following: false });
  useEffect(() => {
    const ac = new AbortController();
    let lines: ShownLogLine[] = [];
    let seen = new Set<string>();
    let seq = 0;
    let timer: number | undefined;
    const flush = () => {
      timer = undefined;
      setState((s) => ({ ...s, lines }));
    };
    setState({ lines: [], following: false });
    (async () => {
      let failures = 0;
      while (!ac.signal.aborted) {
        const last = lines[lines.length - 1];
        try {
          // The raw stream (rather than api.logs) tells when the server answered, before any line comes.
          const body = await api.logStream({ service }, last ? { follow: true, since: last.time } : { follow: true, tail }, ac.signal);
          failures = 0;
          setState((s) => ({ ...s, following: true, error: undefined }));
          for await (const text of textLines(body)) {
            const l = parseLogLine(text);
            if (!l) continue;
            const id = `${l.task} ${l.time} ${l.stream} ${l.text}`;
            if (seen.has(id)) continue;
            seen.add(id);
            // A new array each time: the one last rendered stays as it was.
            lines = [...lines, { ...l, seq: seq++ }];
            if (lines.length > MAX_LOG_LINES) {
              lines = lines.slice(-MAX_LOG_LINES);
              seen = new Set(lines.map((x) => `${x.task} ${x.time} ${x.stream} ${x.text}`));
            }
            if (timer === undefined) timer = window.setTimeout(flush, 50);
          }
          setState((s) => ({ ...s, following: false }));
        } catch (e) {
          if (ac.signal.aborted) return;
          if (isUnauthorized(e)) return expired(errorText(e));
          failures++;
          setState((s) => ({ ...s, following: false, error: errorText(e) }));
        }
        await sleep(Math.min(10_000, 1000 * 2 ** Math.min(failures, 4)), ac.signal);
      }
    })();
    return () => {
      ac.abort();
      window.clearTimeout(timer);
    };
  }, [api, service, tail, expired]);
  return state;
}
