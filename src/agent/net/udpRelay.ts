/**
 * UdpRelay is the routing mesh's userspace path for one UDP port (a
 * published port, or a service VIP's port served on the task network's
 * gateway), as kube-proxy's userspace mode relayed UDP: UDP has no
 * connection to hand over, so the relay keeps a session per client address
 * and port. A session's first datagram picks an endpoint (the mesh's
 * balancing); the session then sends the client's datagrams from a socket of
 * its own, connected to that endpoint, and returns the endpoint's answers to
 * the client from the relay's address, until it has been idle for
 * `idleMs` (the kernel's UDP conntrack timeout is 30 s; the relay's default
 * is the same).
 *
 * What it does not do, and why: it holds no datagram while the service has
 * no endpoint (a datagram is dropped, and the mesh's activation still tells
 * the server, so a service scaled to zero starts a task and the client's
 * retry goes through: DNS and most UDP protocols retry); and it sends no
 * PROXY protocol header (that protocol's v2 has a UDP form, but no backend
 * we know reads it on UDP). A session whose endpoint leaves moves to another
 * one with its next datagram, where the kernel's conntrack entry would keep
 * its endpoint until it expires (the mesh flushes those, see mesh.ts).
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';

export interface UdpTarget {
  /** The endpoint's task name, for counters and for noticing it left. */
  task: string;
  host: string;
  port: number;
}

export interface UdpRelayOptions {
  host: string;
  /** 0: any free port (the VIP proxies on the gateway); known once `listening`. */
  port: number;
  /** Picks an endpoint for a new session (undefined: none, the datagram is dropped). */
  pick(client: string): UdpTarget | undefined;
  /** Whether a session's endpoint is still one to send to. */
  stillThere(task: string): boolean;
  /** Whether a client address may use this relay at all (VIP network isolation). */
  admit?(client: string): boolean;
  /** A datagram came while there was no endpoint. */
  onNoEndpoint?(): void;
  /** A session started, or ended, with an endpoint (the mesh's counters). */
  onSession?(task: string, open: boolean): void;
  /** Bytes relayed: in (client → endpoint) and out (endpoint → client), per endpoint. */
  onBytes?(task: string, bytesIn: number, bytesOut: number): void;
  onError(err: Error & { code?: string }): void;
  /** Sessions idle this long end (default 30 s). */
  idleMs?: number;
  /** At most this many sessions at once; a new client beyond it is dropped (default 4096). */
  maxSessions?: number;
}

interface Session {
  target: UdpTarget;
  socket: Socket;
  last: number;
}

export class UdpRelay {
  private readonly socket: Socket;
  private readonly sessions = new Map<string, Session>();
  private readonly sweep: NodeJS.Timeout;
  private closed = false;
  /** The port it listens on, once bound. */
  port?: number;

  constructor(private readonly opts: UdpRelayOptions) {
    // A port bound to ::1 (host_ip) listens on IPv6; endpoints are IPv4 (the sessions below).
    this.socket = createSocket({ type: isIPv6(opts.host) ? 'udp6' : 'udp4', reuseAddr: false });
    this.socket.on('message', (msg, from) => this.fromClient(msg, from));
    this.socket.on('error', (err) => {
      this.opts.onError(err);
      this.close();
    });
    const idle = opts.idleMs ?? 30_000;
    this.sweep = setInterval(() => this.expire(idle), Math.max(50, Math.min(idle / 2, 5000)));
    this.sweep.unref();
  }

  /** listen binds the relay's socket; resolves with its port. */
  listen(): Promise<number> {
    return new Promise((resolve) => {
      this.socket.bind({ address: this.opts.host, port: this.opts.port, exclusive: true }, () => {
        this.port = this.socket.address().port;
        resolve(this.port);
      });
    });
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweep);
    for (const key of [...this.sessions.keys()]) this.end(key);
    try {
      this.socket.close();
    } catch {
      /* closed already, or never bound */
    }
  }

  private fromClient(msg: Buffer, from: RemoteInfo): void {
    if (this.closed) return;
    if (this.opts.admit && !this.opts.admit(from.address)) return;
    const key = `${from.address}:${from.port}`;
    let s = this.sessions.get(key);
    if (s && !this.opts.stillThere(s.target.task)) {
      this.end(key);
      s = undefined;
    }
    if (!s) {
      if (this.sessions.size >= (this.opts.maxSessions ?? 4096)) return;
      const target = this.opts.pick(from.address);
      if (!target) return void this.opts.onNoEndpoint?.();
      s = this.open(key, target, from);
    }
    s.last = Date.now();
    const task = s.target.task;
    s.socket.send(msg, s.target.port, s.target.host, (err) => {
      if (!err) this.opts.onBytes?.(task, msg.length, 0);
    });
  }

  private open(key: string, target: UdpTarget, client: RemoteInfo): Session {
    // Not connect()ed: a connected dgram socket cannot send until its connect completes (it would throw, not queue).
    const socket = createSocket('udp4');
    const s: Session = { target, socket, last: Date.now() };
    socket.on('message', (answer, src) => {
      // Only the endpoint's answers go back to the client.
      if (this.closed || src.address !== target.host || src.port !== target.port) return;
      s.last = Date.now();
      this.socket.send(answer, client.port, client.address, (err) => {
        if (!err) this.opts.onBytes?.(target.task, 0, answer.length);
      });
    });
    socket.on('error', () => {
      if (this.sessions.get(key) === s) this.end(key);
    });
    this.sessions.set(key, s);
    this.opts.onSession?.(target.task, true);
    return s;
  }

  private end(key: string): void {
    const s = this.sessions.get(key);
    if (!s) return;
    this.sessions.delete(key);
    this.opts.onSession?.(s.target.task, false);
    try {
      s.socket.close();
    } catch {
      /* closed already */
    }
  }

  private expire(idleMs: number): void {
    const cutoff = Date.now() - idleMs;
    for (const [key, s] of this.sessions) if (s.last < cutoff) this.end(key);
  }
}
