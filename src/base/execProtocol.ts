/**
 * The exec stream's protocol, on both of its hops (the CLI to the server,
 * the server to the node's agent): one WebSocket, binary messages, each
 * starting with a channel byte, as Kubernetes' v5.channel.k8s.io does
 * (Kubernetes moved `kubectl exec` from SPDY to WebSockets in 1.30: an
 * upgraded HTTP/1.1 request passes the proxies and load balancers that
 * understand HTTP, and the framing and flow control are the ws library's).
 *
 *   0 stdin    client → task   bytes
 *   1 stdout   task → client   bytes
 *   2 stderr   task → client   bytes (without a TTY; a TTY has one stream)
 *   3 status   task → client   JSON {exitCode} or {error}, the last message
 *   4 resize   client → task   JSON {cols, rows}
 *   255 close  client → task   the client's stdin ended (one byte: 0)
 *
 * What arrives is checked here before use: an unknown channel, a resize
 * that is not two integers in range, a status that is neither shape, is
 * dropped (parseFrame answers undefined).
 */
import { z } from 'zod';

export const CH_STDIN = 0;
export const CH_STDOUT = 1;
export const CH_STDERR = 2;
export const CH_STATUS = 3;
export const CH_RESIZE = 4;
export const CH_CLOSE = 255;

/** The subprotocol both hops name in Sec-WebSocket-Protocol. */
export const EXEC_SUBPROTOCOL = 'v1.exec.baton.dev';

const resizeSchema = z.object({ cols: z.number().int().min(1).max(10_000), rows: z.number().int().min(1).max(10_000) }).strict();
const statusSchema = z.union([z.object({ exitCode: z.number().int().min(-1).max(255) }).strict(), z.object({ error: z.string().max(4096) }).strict()]);

export type ExecStatus = z.infer<typeof statusSchema>;
export type Frame =
  | { channel: typeof CH_STDIN | typeof CH_STDOUT | typeof CH_STDERR; data: Buffer }
  | { channel: typeof CH_STATUS; status: ExecStatus }
  | { channel: typeof CH_RESIZE; cols: number; rows: number }
  | { channel: typeof CH_CLOSE };

export function frame(channel: number, data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  const out = Buffer.allocUnsafe(body.length + 1);
  out[0] = channel;
  body.copy(out, 1);
  return out;
}

export const statusFrame = (s: ExecStatus): Buffer => frame(CH_STATUS, JSON.stringify(s));
export const resizeFrame = (cols: number, rows: number): Buffer => frame(CH_RESIZE, JSON.stringify({ cols, rows }));
export const closeFrame = (): Buffer => frame(CH_CLOSE, Buffer.of(0));

function json(data: Buffer): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** parseFrame reads one message; undefined for anything this protocol does not say. */
export function parseFrame(msg: Buffer): Frame | undefined {
  if (msg.length === 0) return undefined;
  const channel = msg[0]!;
  const data = msg.subarray(1);
  switch (channel) {
    case CH_STDIN:
    case CH_STDOUT:
    case CH_STDERR:
      return { channel, data };
    case CH_STATUS: {
      if (data.length > 8192) return undefined;
      const s = statusSchema.safeParse(json(data));
      return s.success ? { channel, status: s.data } : undefined;
    }
    case CH_RESIZE: {
      if (data.length > 256) return undefined;
      const r = resizeSchema.safeParse(json(data));
      return r.success ? { channel, cols: r.data.cols, rows: r.data.rows } : undefined;
    }
    case CH_CLOSE:
      return { channel };
    default:
      return undefined;
  }
}

/** Exec output waits while this much is queued on the socket it goes to, in the agent and in the server alike. */
export const EXEC_HIGH_WATER_BYTES = 1 << 20;

/** Sources paused by holdWhileQueued, each until its socket drained. */
const held = new WeakSet<object>();

/**
 * holdWhileQueued pauses `source` while `socket` has more than
 * EXEC_HIGH_WATER_BYTES queued, and resumes it once under half of that, or
 * once `gone()` (the socket closed). Called after each send: a person's
 * slow terminal (or network) slows the command's output instead of growing
 * this process's memory. A source already held is left as it is.
 */
export function holdWhileQueued(socket: { readonly bufferedAmount: number }, source: { pause(): unknown; resume(): unknown }, gone: () => boolean): void {
  if (socket.bufferedAmount <= EXEC_HIGH_WATER_BYTES || held.has(source)) return;
  held.add(source);
  source.pause();
  const retry = setInterval(() => {
    if (!gone() && socket.bufferedAmount > EXEC_HIGH_WATER_BYTES / 2) return;
    clearInterval(retry);
    held.delete(source);
    source.resume();
  }, 10);
}

/** toBuffer: a ws message as one Buffer, whatever form the library handed it in. */
export function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** The command and options of one exec, as both hops' query strings carry them. */
export const execQuery = z
  .object({
    command: z.union([z.string().min(1).max(4096), z.array(z.string().max(4096)).min(1).max(256)]).transform((c) => (Array.isArray(c) ? c : [c])),
    tty: z.enum(['true', 'false', '1', '0']).optional().transform((v) => v === 'true' || v === '1'),
    stdin: z.enum(['true', 'false', '1', '0']).optional().transform((v) => v === 'true' || v === '1'),
    container: z.string().min(1).max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a container name (lower-case letters, digits and -)').optional(),
  })
  .strict()
  .refine((q) => q.command[0] !== '', { message: 'the command must not start with an empty word', path: ['command'] });

export type ExecQuery = z.infer<typeof execQuery>;

/** execSearch writes an exec's query string (command repeated, as Kubernetes does). */
export function execSearch(q: { command: string[]; tty?: boolean; stdin?: boolean; container?: string }, extra: Record<string, string> = {}): string {
  const p = new URLSearchParams(extra);
  for (const c of q.command) p.append('command', c);
  if (q.tty) p.set('tty', 'true');
  if (q.stdin) p.set('stdin', 'true');
  if (q.container) p.set('container', q.container);
  return p.toString();
}
