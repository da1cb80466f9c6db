/**
 * Resolver is the node's embedded DNS server for its tasks, on UDP and TCP
 * (Docker's 127.0.0.11 plays this part on a user-defined network; here it
 * listens on the node's task network so a task reaches it from its own
 * namespace). Cluster names come from a lookup function (ClusterNames in
 * dnsNames.ts, behind the agent's map from a client address to its task),
 * everything else goes to the upstream resolvers.
 *
 * - Cluster answers are authoritative with a short TTL (`ttlSeconds`, 5),
 *   and an NXDOMAIN carries no SOA, so no resolver caches the absence: a
 *   service created after a task started resolves from it at once.
 * - A name that exists answers NOERROR to every type, with A records only
 *   for an A question (tasks are IPv4): a resolver asking AAAA first must
 *   not conclude the name is gone.
 * - Forwarding relays the client's message byte for byte over UDP, under a
 *   fresh random id from a fresh socket (a random port), trying the
 *   upstreams in order, each for `forwardTimeoutMs`; SERVFAIL when none
 *   answers. A TCP client whose answer came back truncated is asked again
 *   over TCP. The answer is not cached: the upstream's own cache does that.
 * - A message that does not decode, or is not a query, is dropped and
 *   counted; nothing a client sends can throw out of a socket handler.
 * - UDP answers larger than the client can take (512 bytes, or its EDNS
 *   size up to 1232, the DNS flag day's figure) are sent truncated (TC),
 *   question only, and the client asks again over TCP.
 *
 * The wire format is dns-packet's; the only bytes touched by hand are a
 * message's id (its first two, rewritten when relaying so that the
 * upstream's answer is passed on unchanged) and TCP's two-byte length
 * prefix (RFC 1035 4.2.2).
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { BlockList, connect, createServer, isIP, isIPv6, type Server, type Socket } from 'node:net';
import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import dnsPacket, { type Answer, type DecodedPacket } from 'dns-packet';
import type { LookupResult } from './dnsNames.js';

export interface ResolverOptions {
  /** Answers a query name for the client at this address (the UDP or TCP peer). */
  lookup: (qname: string, clientAddress: string) => LookupResult;
  /** 'ip' or 'ip:port' ('[ip6]:port'), tried in order; 'none' answers NXDOMAIN to every other name. */
  upstream: string[] | 'none';
  /** TTL of cluster answers (default 5). */
  ttlSeconds?: number;
  /** How long one upstream may take before the next is asked (default 2000). */
  forwardTimeoutMs?: number;
  /** A TCP connection with no traffic for this long is closed (default 10000). */
  tcpIdleTimeoutMs?: number;
  /** Forwards in flight at most; past it a query gets SERVFAIL (default 1024). */
  maxForwards?: number;
  log: Logger;
}

/** ResolverStats counts since start; `errors` are dropped messages, failed lookups and forwards no upstream answered. */
export interface ResolverStats {
  queries: number;
  answered: number;
  nxdomain: number;
  forwarded: number;
  errors: number;
}

interface Upstream {
  address: string;
  port: number;
}

// RFC 1035 4.1.1 response codes.
const NOERROR = 0;
const FORMERR = 1;
const SERVFAIL = 2;
const NXDOMAIN = 3;
const NOTIMP = 4;

/** UDP answer sizes: RFC 1035's limit without EDNS, the DNS flag day 2020's with it. */
const UDP_PLAIN = 512;
const UDP_EDNS = 1232;
/** Queries of one TCP connection answered at once; past it the connection is not read. */
const TCP_PIPELINE = 32;
const TCP_MAX_CONNECTIONS = 512;

type Transport = 'udp' | 'tcp';

/** Relayed: an upstream's answer as it came, and whether it was truncated. */
interface Relayed {
  answer: Buffer;
  truncated: boolean;
}

export class Resolver {
  private readonly upstreams: Upstream[] | 'none';
  private readonly ttl: number;
  private readonly forwardTimeoutMs: number;
  private readonly idleMs: number;
  private readonly maxForwards: number;
  private readonly udp: UdpSocket[] = [];
  private readonly tcp: Server[] = [];
  private readonly conns = new Set<Socket>();
  /** Forwards in flight, each ended (unanswered) by close(). */
  private readonly pending = new Set<() => void>();
  private closed = false;
  private readonly counts: ResolverStats = { queries: 0, answered: 0, nxdomain: 0, forwarded: 0, errors: 0 };

  constructor(private readonly opts: ResolverOptions) {
    this.upstreams = opts.upstream === 'none' ? 'none' : opts.upstream.map(parseUpstream);
    this.ttl = opts.ttlSeconds ?? 5;
    this.forwardTimeoutMs = opts.forwardTimeoutMs ?? 2000;
    this.idleMs = opts.tcpIdleTimeoutMs ?? 10_000;
    this.maxForwards = opts.maxForwards ?? 1024;
  }

  /** listen serves UDP and TCP on address:port; call it once per address. */
  async listen(address: string, port = 53): Promise<void> {
    if (this.closed) throw new Error('the resolver is closed');
    const udp = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4' });
    udp.on('message', (msg, peer) => {
      void this.handle(msg, peer.address, 'udp').then((reply) => {
        if (reply && !this.closed) udp.send(reply, peer.port, peer.address, (err) => err && this.opts.log.debug({ err: err.message }, 'dns: reply not sent'));
      });
    });
    // Half-open: a client may shut its side after its last query and still read the answers.
    const tcp = createServer({ allowHalfOpen: true }, (conn) => this.serveTcp(conn));
    tcp.maxConnections = TCP_MAX_CONNECTIONS;
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(port, address, () => resolve());
      });
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, address, () => resolve());
      });
    } catch (err) {
      try {
        udp.close();
      } catch {
        /* never bound */
      }
      tcp.close();
      throw new Error(`dns: cannot listen on ${address}:${port}: ${(err as Error).message}`);
    }
    udp.on('error', (err) => this.opts.log.warn({ err: err.message, address }, 'dns: UDP socket error'));
    tcp.on('error', (err) => this.opts.log.warn({ err: err.message, address }, 'dns: TCP server error'));
    this.udp.push(udp);
    this.tcp.push(tcp);
  }

  stats(): ResolverStats {
    return { ...this.counts };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const end of [...this.pending]) end();
    for (const c of this.conns) c.destroy();
    await Promise.all([
      ...this.udp.map((s) => new Promise<void>((r) => s.close(() => r()))),
      ...this.tcp.map((s) => new Promise<void>((r) => s.close(() => r()))),
    ]);
    this.udp.length = 0;
    this.tcp.length = 0;
  }

  private serveTcp(conn: Socket): void {
    const client = unmapped(conn.remoteAddress ?? '');
    this.conns.add(conn);
    conn.setTimeout(this.idleMs, () => conn.destroy());
    conn.on('error', () => {}); // a peer gone mid-answer: nothing to tell anyone
    conn.on('close', () => this.conns.delete(conn));
    let buf = Buffer.alloc(0);
    let inFlight = 0;
    let ended = false;
    conn.on('end', () => {
      ended = true;
      if (inFlight === 0) conn.end();
    });
    conn.on('data', (data) => {
      buf = buf.length === 0 ? data : Buffer.concat([buf, data]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        if (++inFlight >= TCP_PIPELINE) conn.pause();
        void this.handle(msg, client, 'tcp').then((reply) => {
          if (--inFlight < TCP_PIPELINE && !conn.destroyed) conn.resume();
          if (conn.destroyed) return;
          if (reply) conn.write(framed(reply));
          if (ended && inFlight === 0) conn.end();
        });
      }
    });
  }

  /** handle answers one message; undefined drops it. It never rejects. */
  private async handle(msg: Buffer, client: string, transport: Transport): Promise<Buffer | undefined> {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
      if (query.type !== 'query') throw new Error('not a query');
      for (const q of query.questions ?? []) if (q.name.split('.').some((label) => Buffer.byteLength(label) > 63)) throw new Error('label too long');
    } catch (err) {
      this.counts.errors++;
      this.opts.log.debug({ err: (err as Error).message, client }, 'dns: message dropped');
      return undefined;
    }
    this.counts.queries++;
    const limit = transport === 'tcp' ? 65535 : udpLimit(query);
    try {
      if ((query as { opcode?: string }).opcode !== 'QUERY') return this.reply(query, NOTIMP, false, [], limit);
      const q = query.questions?.length === 1 ? query.questions[0]! : undefined;
      if (!q) return this.reply(query, FORMERR, false, [], limit);
      const result: LookupResult = q.class === 'IN' ? this.opts.lookup(q.name, client) : { kind: 'forward' };
      if (result.kind === 'answer') {
        this.counts.answered++;
        const answers: Answer[] = q.type === 'A' ? result.addresses.map((data) => ({ type: 'A', class: 'IN', name: q.name, ttl: this.ttl, data })) : [];
        return this.reply(query, NOERROR, true, answers, limit);
      }
      if (result.kind === 'nxdomain' || this.upstreams === 'none') {
        this.counts.nxdomain++;
        return this.reply(query, NXDOMAIN, result.kind === 'nxdomain', [], limit);
      }
      this.counts.forwarded++;
      const relayed = await this.forward(msg, query.id ?? 0, q.name, transport);
      if (relayed) return relayed;
      this.counts.errors++;
      return this.reply(query, SERVFAIL, false, [], limit);
    } catch (err) {
      this.counts.errors++;
      this.opts.log.warn({ err: (err as Error).message, client }, 'dns: query failed');
      try {
        return this.reply(query, SERVFAIL, false, [], limit);
      } catch {
        return undefined;
      }
    }
  }

  private reply(query: DecodedPacket, rcode: number, authoritative: boolean, answers: Answer[], limit: number): Buffer {
    const flags =
      dnsPacket.RECURSION_AVAILABLE |
      (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0) |
      (query.flag_cd ? dnsPacket.CHECKING_DISABLED : 0) |
      (authoritative ? dnsPacket.AUTHORITATIVE_ANSWER : 0) |
      rcode;
    // A client that spoke EDNS hears it back (RFC 6891 7), with the size this server takes.
    const edns = (query.additionals ?? []).some((a) => a.type === 'OPT');
    const additionals: Answer[] = edns ? [{ type: 'OPT', name: '.', udpPayloadSize: UDP_EDNS, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] : [];
    const packet = { type: 'response' as const, id: query.id, flags, questions: query.questions, answers, additionals };
    const out = dnsPacket.encode(packet);
    if (out.length <= limit) return out;
    return dnsPacket.encode({ ...packet, flags: flags | dnsPacket.TRUNCATED_RESPONSE, answers: [] });
  }

  /** forward asks the upstreams in turn; the answer carries the client's id, or undefined when none answered. */
  private async forward(msg: Buffer, clientId: number, qname: string, transport: Transport): Promise<Buffer | undefined> {
    if (this.upstreams === 'none' || this.pending.size >= this.maxForwards) return undefined;
    for (const upstream of this.upstreams) {
      if (this.closed) return undefined;
      let got = await this.ask(upstream, msg, qname, 'udp');
      if (got?.truncated && transport === 'tcp') got = (await this.ask(upstream, msg, qname, 'tcp')) ?? got;
      if (got) {
        got.answer.writeUInt16BE(clientId, 0);
        return got.answer;
      }
    }
    return undefined;
  }

  /** ask sends one message to one upstream under a fresh id; undefined on timeout, error or an answer that is not to it. */
  private ask(upstream: Upstream, msg: Buffer, qname: string, transport: Transport): Promise<Relayed | undefined> {
    const id = randomInt(0, 65536);
    const out = Buffer.from(msg);
    out.writeUInt16BE(id, 0);
    return new Promise((resolve) => {
      let close = (): void => {};
      const end = (answer?: Relayed): void => {
        if (!this.pending.delete(end)) return;
        clearTimeout(timer);
        close();
        resolve(answer);
      };
      this.pending.add(end);
      const timer = setTimeout(() => end(), this.forwardTimeoutMs);
      const check = (answer: Buffer): void => {
        const truncated = answerTo(answer, id, qname);
        if (truncated !== undefined) end({ answer, truncated });
        else this.opts.log.debug({ upstream: upstream.address }, 'dns: an upstream answer that is not to the question, ignored');
      };
      if (transport === 'udp') {
        const sock = createSocket(isIPv6(upstream.address) ? 'udp6' : 'udp4');
        close = () => {
          try {
            sock.close();
          } catch {
            /* already closed */
          }
        };
        sock.on('error', () => end()); // ICMP unreachable on a connected socket: the next upstream, now
        sock.on('message', check);
        sock.connect(upstream.port, upstream.address, () => sock.send(out, (err) => err && end()));
      } else {
        const conn = connect({ host: upstream.address, port: upstream.port });
        close = () => conn.destroy();
        conn.on('error', () => end());
        let buf = Buffer.alloc(0);
        conn.on('data', (data) => {
          buf = Buffer.concat([buf, data]);
          if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) check(Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        });
        conn.write(framed(out));
      }
    });
  }
}

/** answerTo: whether the answer is truncated, or undefined when it is not an answer to this id and name (a late or forged one). */
function answerTo(answer: Buffer, id: number, qname: string): boolean | undefined {
  try {
    const p = dnsPacket.decode(answer);
    const ok = p.type === 'response' && p.id === id && p.questions?.length === 1 && p.questions[0]!.name.toLowerCase() === qname.toLowerCase();
    return ok ? p.flag_tc : undefined;
  } catch {
    return undefined;
  }
}

/** framed: a message behind TCP's two-byte length (RFC 1035 4.2.2). */
function framed(msg: Buffer): Buffer {
  const frame = Buffer.alloc(2 + msg.length);
  frame.writeUInt16BE(msg.length, 0);
  msg.copy(frame, 2);
  return frame;
}

/** udpLimit: the largest UDP answer this client takes. */
function udpLimit(query: DecodedPacket): number {
  const opt = (query.additionals ?? []).find((a) => a.type === 'OPT');
  if (!opt || opt.type !== 'OPT') return UDP_PLAIN;
  return Math.min(Math.max(opt.udpPayloadSize, UDP_PLAIN), UDP_EDNS);
}

/** unmapped: an IPv4 client of a dual-stack socket as its plain address. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** parseUpstream reads 'ip', 'ip:port' or '[ip6]:port'; it throws on anything else. */
export function parseUpstream(text: string): Upstream {
  const bad = (): Error => new Error(`dns upstream ${JSON.stringify(text)} must be an IP address, address:port or [IPv6 address]:port`);
  if (isIP(text)) return { address: text, port: 53 };
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:]+):(\d{1,5})$/.exec(text);
  if (!m || !isIP(m[1]!)) throw bad();
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw bad();
  return { address: m[1]!, port };
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * upstreamsFromResolvConf reads the `nameserver` lines of a resolv.conf.
 * Loopback servers are left out: systemd-resolved's 127.0.0.53 (or a
 * local dnsmasq) listens in the node's namespace, which a task cannot
 * reach from its own, so the result may be empty on such a node (the
 * caller decides what then: resolved's own upstreams are in
 * /run/systemd/resolve/resolv.conf).
 */
export function upstreamsFromResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const m = /^\s*nameserver\s+([^\s#;]+)/.exec(raw);
    if (!m) continue;
    const address = m[1]!;
    const family = isIP(address);
    if (family === 0) continue;
    if (LOOPBACK.check(address.replace(/%.*$/, ''), family === 4 ? 'ipv4' : 'ipv6')) continue;
    if (!out.includes(address)) out.push(address);
  }
  return out;
}
