/**
 * The Docker driver's connection to one engine: the dockerode client on its
 * Unix socket, the bound on every call that is not a stream, the epoch that
 * interrupt() cuts short, and how the engine's failures become DriverErrors.
 * Every other part of the driver (containers, images, volumes, logs, events,
 * stats) makes its calls through this, so a dead or hung engine fails them
 * all the same way instead of holding a worker for good.
 */
import { StringDecoder } from 'node:string_decoder';
import Docker from 'dockerode';
import { DriverError, type EngineInfo } from '../driver.js';

const PING_TIMEOUT_MS = 10_000;
const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EPIPE', 'ENOTSOCK']);

/** DockerEngine is one engine's client with bounded, interruptible calls and the engine's errors mapped onto DriverErrors. */
export class DockerEngine {
  readonly docker: Docker;
  /** Aborted by interrupt(): every call in flight until then. */
  private epoch = new AbortController();

  constructor(
    readonly socketPath: string,
    private readonly requestTimeoutMs: number,
  ) {
    this.docker = new Docker({ socketPath });
  }

  async ping(): Promise<EngineInfo> {
    const signal = AbortSignal.timeout(PING_TIMEOUT_MS);
    try {
      // The typings omit the options argument that carries the abort signal.
      const d = this.docker as unknown as {
        version(o: object): Promise<{ Version: string }>;
        info(o: object): Promise<{ NCPU?: number; MemTotal?: number }>;
      };
      const [version, info] = await Promise.all([d.version({ abortSignal: signal }), d.info({ abortSignal: signal })]);
      return { ok: true, version: version.Version, cpus: info.NCPU, memoryBytes: info.MemTotal };
    } catch (err) {
      const e = signal.aborted ? new Error(`docker engine did not answer within ${PING_TIMEOUT_MS}ms`) : this.toDriverError(err);
      return { ok: false, version: '', error: e.message };
    }
  }

  /** interrupt cuts short every request in flight (the engine went away); later ones run as usual. */
  interrupt(): void {
    const e = this.epoch;
    this.epoch = new AbortController();
    e.abort();
  }

  /**
   * request runs one engine call that is not a stream within requestTimeoutMs
   * (plus extraMs), cut short by interrupt(); a call cut short fails as
   * engine_unavailable, any other failure is the engine's own error. The
   * call is told to abort too, but the caller never waits past the deadline
   * even if it does not.
   */
  async request<T>(what: string, call: (signal: AbortSignal) => Promise<T>, extraMs = 0): Promise<T> {
    const ms = this.requestTimeoutMs + extraMs;
    const interrupted = this.epoch.signal;
    const signal = AbortSignal.any([interrupted, AbortSignal.timeout(ms)]);
    let onAbort = () => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([call(signal), aborted]);
    } catch (err) {
      if (!signal.aborted) throw err;
      throw new DriverError(
        interrupted.aborted ? `docker ${what} at ${this.socketPath} cut short: the engine went away` : `docker engine at ${this.socketPath} did not answer ${what} within ${ms} ms`,
        'engine_unavailable',
      );
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  toDriverError(err: unknown): DriverError {
    if (err instanceof DriverError) return err;
    if (isConnectionError(err)) {
      const msg = err instanceof Error ? err.message : String(err);
      return new DriverError(`docker engine unavailable at ${this.socketPath}: ${msg}`, 'engine_unavailable');
    }
    if (statusOf(err) === 409) return new DriverError(engineMessage(err), 'conflict');
    return new DriverError(engineMessage(err), 'failed');
  }
}

export function statusOf(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = e?.code ?? e?.cause?.code;
  return typeof code === 'string' && CONNECTION_ERROR_CODES.has(code) && statusOf(err) === undefined;
}

/** engineMessage extracts the engine's own words ("No such image: foo:latest") from a dockerode error, without its HTTP prefix. */
export function engineMessage(err: unknown): string {
  const e = err as { json?: unknown; message?: unknown } | null;
  const fromJson = (v: unknown): string | undefined => {
    if (v && typeof v === 'object' && !Buffer.isBuffer(v)) {
      const m = (v as { message?: unknown }).message;
      return typeof m === 'string' && m.trim() ? m.trim() : undefined;
    }
    const text = Buffer.isBuffer(v) ? v.toString('utf8') : typeof v === 'string' ? v : undefined;
    if (!text?.trim()) return undefined;
    try {
      return fromJson(JSON.parse(text)) ?? text.trim();
    } catch {
      return text.trim();
    }
  };
  const j = fromJson(e?.json);
  if (j) return j;
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  return msg.replace(/^\(HTTP code \d+\)[^-]*- /, '').trim() || msg;
}

/** lineSplitter feeds complete lines of a newline-delimited stream to onLine; chunks may split lines and UTF-8 characters. */
export function lineSplitter(onLine: (line: string) => void): ((chunk: Buffer | string) => void) & { flush(): void } {
  const decoder = new StringDecoder('utf8');
  let buf = '';
  const emit = (line: string) => {
    const l = line.trim();
    if (l) onLine(l);
  };
  const push = (chunk: Buffer | string) => {
    buf += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      emit(line);
    }
  };
  return Object.assign(push, {
    flush() {
      buf += decoder.end();
      const rest = buf;
      buf = '';
      emit(rest);
    },
  });
}

/**
 * isStaleTask: the engine refused a start because containerd still holds
 * the container's task, or the container itself, from a start that died
 * with dockerd ("could not start task <id>: already exists", "id already
 * in use", or runc's "cannot start a stopped process" for a task whose
 * process died with the engine). Waiting does not clear it; the container
 * has to be replaced.
 */
export function isStaleTask(err: unknown): boolean {
  const m = engineMessage(err);
  return statusOf(err) === 500 && (/\btask [0-9a-f]{12,}.*already exists/i.test(m) || /\bid already in use\b/i.test(m) || /\bcannot start a stopped process\b/i.test(m));
}
