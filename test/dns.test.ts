/**
 * The node's DNS resolver: the name table's rules (who sees which service
 * under which names, what is never forwarded), then the server over real
 * UDP and TCP sockets on 127.0.4.x with queries built by dns-packet, and an
 * upstream that is another real socket of this test. Nothing leaves
 * 127.0.4.0/24: upstream answers carry documentation addresses as data.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server } from 'node:net';
import pino from 'pino';
import dnsPacket, { type DecodedPacket, type Packet, type RecordType } from 'dns-packet';
import { ClusterNames, type DnsClient, type ServiceRecord } from '../src/agent/net/dnsNames.js';
import { parseUpstream, Resolver, upstreamsFromResolvConf } from '../src/agent/net/dns.js';

const silent = pino({ level: 'silent' });

const SERVICES: ServiceRecord[] = [
  { fullName: 'demo_api', stack: 'demo', shortName: 'api', vip: '10.96.0.10', taskIPs: ['10.42.0.2', '10.42.1.2'], networks: [{ name: 'demo_default', aliases: ['backend'] }, { name: 'shared', aliases: ['shared-api'] }] },
  { fullName: 'demo_web', stack: 'demo', shortName: 'web', taskIPs: ['10.42.0.3', '10.42.0.4'], networks: [{ name: 'demo_default', aliases: [] }] },
  { fullName: 'demo_db', stack: 'demo', shortName: 'db', vip: '10.96.0.11', taskIPs: [], networks: [{ name: 'demo_default', aliases: ['db.internal'] }] },
  { fullName: 'other_api', stack: 'other', shortName: 'api', vip: '10.96.0.20', taskIPs: ['10.42.2.2'], networks: [{ name: 'other_default', aliases: ['backend'] }] },
  { fullName: 'demo_pg', stack: 'demo', shortName: 'pg', taskIPs: ['10.42.0.7', '10.42.1.7'], networks: [{ name: 'demo_default', aliases: ['postgres'] }], ordinals: [{ name: 'pg-0', address: '10.42.0.7' }, { name: 'pg-1', address: '10.42.1.7' }] },
  { fullName: 'other_cache', stack: 'other', shortName: 'cache', vip: '10.96.0.21', taskIPs: ['10.42.2.3'], networks: [{ name: 'other_default', aliases: [] }, { name: 'shared', aliases: ['backend'] }] },
  { fullName: 'lone', stack: '', shortName: 'lone', vip: '10.96.0.30', taskIPs: ['10.42.3.2'], networks: [{ name: 'shared', aliases: [] }] },
];

const DEMO: DnsClient = { stack: 'demo', networks: ['demo_default'] };
const OTHER: DnsClient = { stack: 'other', networks: ['other_default'] };
const SHARED_DEMO: DnsClient = { stack: 'demo', networks: ['demo_default', 'shared'] };
const NOBODY: DnsClient = { stack: '', networks: [] };

describe('ClusterNames', () => {
  const names = new ClusterNames();
  names.update(SERVICES);
  const a = (...addresses: string[]) => ({ kind: 'answer', addresses });
  const NX = { kind: 'nxdomain' };
  const FWD = { kind: 'forward' };

  it.each<[string, DnsClient, unknown]>([
    // Short names within the client's own stack; full names from any stack on a shared network.
    ['api', DEMO, a('10.96.0.10')],
    ['api', OTHER, a('10.96.0.20')],
    ['demo_api', DEMO, a('10.96.0.10')],
    ['demo_api', OTHER, NX],
    ['other_cache', SHARED_DEMO, a('10.96.0.21')],
    ['cache', SHARED_DEMO, NX],
    ['lone', SHARED_DEMO, a('10.96.0.30')],
    ['lone', DEMO, NX],
    ['api', NOBODY, NX],
    // No VIP: the name is the ready tasks (DNS round robin); tasks.<name> always is.
    ['web', DEMO, a('10.42.0.3', '10.42.0.4')],
    ['tasks.api', DEMO, a('10.42.0.2', '10.42.1.2')],
    ['tasks.demo_api', DEMO, a('10.42.0.2', '10.42.1.2')],
    ['tasks.api', OTHER, a('10.42.2.2')],
    ['tasks.other_api', DEMO, NX],
    // A name with no ready task exists (NODATA), it is not NXDOMAIN.
    ['tasks.db', DEMO, a()],
    // Aliases on the network that carries them; two services sharing one answer both.
    ['backend', DEMO, a('10.96.0.10')],
    ['backend', OTHER, a('10.96.0.20')],
    ['backend', SHARED_DEMO, a('10.96.0.10', '10.96.0.21')],
    ['shared-api', DEMO, NX],
    ['shared-api', SHARED_DEMO, a('10.96.0.10')],
    ['db.internal', DEMO, a('10.96.0.11')],
    ['db.internal', OTHER, FWD],
    // The Kubernetes form, from any stack on a shared network.
    ['api.demo.svc.cluster.local', DEMO, a('10.96.0.10')],
    ['cache.other.svc.cluster.local', SHARED_DEMO, a('10.96.0.21')],
    ['api.demo.svc.cluster.local', OTHER, NX],
    ['web.demo.svc.cluster.local', DEMO, a('10.42.0.3', '10.42.0.4')],
    // An alias has the Kubernetes form too (a Kubernetes Service's name), on the network that carries it.
    ['backend.demo.svc.cluster.local', DEMO, a('10.96.0.10')],
    ['backend.other.svc.cluster.local', OTHER, a('10.96.0.20')],
    ['backend.demo.svc.cluster.local', OTHER, NX],
    // A StatefulSet's pods by ordinal, under its name and its governing Service's (an alias).
    ['pg-0.pg', DEMO, a('10.42.0.7')],
    ['pg-1.postgres', DEMO, a('10.42.1.7')],
    ['pg-1.postgres.demo.svc.cluster.local', DEMO, a('10.42.1.7')],
    ['pg-0.pg', OTHER, FWD],
    // Case and the trailing dot do not matter.
    ['API.', DEMO, a('10.96.0.10')],
    ['Tasks.Demo_API', DEMO, a('10.42.0.2', '10.42.1.2')],
    ['Api.Demo.Svc.Cluster.Local.', DEMO, a('10.96.0.10')],
    // Never forwarded: single labels, tasks.<label>, anything under the domain.
    ['nosuch', DEMO, NX],
    ['tasks.nosuch', DEMO, NX],
    ['x.y.svc.cluster.local', DEMO, NX],
    ['cluster.local', DEMO, NX],
    // Everything else goes upstream.
    ['example.com', DEMO, FWD],
    ['api.example.com', DEMO, FWD],
    ['tasks.api.example.com', DEMO, FWD],
    ['.', DEMO, FWD],
  ])('%s for %j', (qname, client, want) => {
    expect(names.lookup(qname, client)).toEqual(want);
  });

  it('takes a domain of its own and forwards cluster.local then', () => {
    const n = new ClusterNames({ domain: 'Baton.Internal.' });
    n.update(SERVICES);
    expect(n.lookup('api.demo.svc.baton.internal', DEMO)).toEqual(a('10.96.0.10'));
    expect(n.lookup('nosuch.baton.internal', DEMO)).toEqual(NX);
    expect(n.lookup('api.demo.svc.cluster.local', DEMO)).toEqual(FWD);
    expect(() => new ClusterNames({ domain: 'a b' })).toThrow(/cluster domain/);
  });

  it('replaces the whole table on update, and never answers an address that is not IPv4', () => {
    const n = new ClusterNames();
    n.update(SERVICES);
    n.update([{ ...SERVICES[1]!, taskIPs: ['10.42.0.9', 'fe80::1', 'nonsense'] }]);
    expect(n.lookup('web', DEMO)).toEqual(a('10.42.0.9'));
    expect(n.lookup('api', DEMO)).toEqual(NX);
    // A service on no network is seen by no one.
    n.update([{ ...SERVICES[0]!, networks: [] }]);
    expect(n.lookup('demo_api', DEMO)).toEqual(NX);
  });
});

describe('upstreamsFromResolvConf and parseUpstream', () => {
  it('reads nameserver lines, leaving out loopback servers a task cannot reach', () => {
    const text = [
      '# Generated by NetworkManager',
      'search example.test',
      'nameserver 127.0.0.53',
      'nameserver 192.0.2.53 # the office',
      'nameserver ::1',
      '  nameserver 2001:db8::53',
      'nameserver not-an-address',
      'options edns0 trust-ad',
      ';nameserver 198.51.100.1',
      'nameserver 192.0.2.53',
      'nameserver 198.51.100.7',
    ].join('\n');
    expect(upstreamsFromResolvConf(text)).toEqual(['192.0.2.53', '2001:db8::53', '198.51.100.7']);
    expect(upstreamsFromResolvConf('nameserver 127.0.0.53\noptions edns0\n')).toEqual([]);
    expect(upstreamsFromResolvConf('')).toEqual([]);
  });

  it('reads an address with an optional port, and says what is wrong otherwise', () => {
    expect(parseUpstream('192.0.2.1')).toEqual({ address: '192.0.2.1', port: 53 });
    expect(parseUpstream('192.0.2.1:5353')).toEqual({ address: '192.0.2.1', port: 5353 });
    expect(parseUpstream('2001:db8::1')).toEqual({ address: '2001:db8::1', port: 53 });
    expect(parseUpstream('[2001:db8::1]:5353')).toEqual({ address: '2001:db8::1', port: 5353 });
    for (const bad of ['', 'dns.example', '192.0.2.1:0', '192.0.2.1:70000', '192.0.2.1:', '[2001:db8::1]']) expect(() => parseUpstream(bad)).toThrow(/dns upstream .* must be/);
  });
});

// ---- the server, over real sockets ----

const HOST = '127.0.4.1';
const PORT = 41053;
const CLIENT_DEMO = '127.0.4.10';
const CLIENT_OTHER = '127.0.4.11';
const UPSTREAM = { host: '127.0.4.2', port: 41054 };
const SILENT = { host: '127.0.4.3', port: 41055 };
/** A reply arrives within milliseconds; this is the deadline for one. */
const REPLY_DEADLINE_MS = 3000;

let nextId = 1;
function query(name: string, type: RecordType = 'A', extra: Partial<Packet> = {}): Packet {
  return { type: 'query', id: nextId++, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }], ...extra };
}

/** udpExchange sends each message from one socket at `from` and returns the replies in order, until `count` came. */
async function udpExchange(messages: Buffer[], count: number, from = CLIENT_DEMO, to = { host: HOST, port: PORT }): Promise<DecodedPacket[]> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, from, r));
  try {
    return await new Promise<DecodedPacket[]>((resolve, reject) => {
      const got: DecodedPacket[] = [];
      const timer = setTimeout(() => reject(new Error(`${got.length} of ${count} replies within ${REPLY_DEADLINE_MS} ms`)), REPLY_DEADLINE_MS);
      sock.on('message', (m) => {
        got.push(dnsPacket.decode(m));
        if (got.length === count) {
          clearTimeout(timer);
          resolve(got);
        }
      });
      for (const m of messages) sock.send(m, to.port, to.host);
    });
  } finally {
    sock.close();
  }
}

const udpAsk = async (p: Packet, from = CLIENT_DEMO): Promise<DecodedPacket> => (await udpExchange([dnsPacket.encode(p)], 1, from))[0]!;

/** tcpExchange writes all frames at once on one connection (then shuts its side, when told, and waits for the server's end) and reads `count` framed replies. */
async function tcpExchange(packets: Packet[], count: number, opts: { halfClose?: boolean } = {}): Promise<DecodedPacket[]> {
  const conn = connect({ host: HOST, port: PORT, localAddress: CLIENT_DEMO, allowHalfOpen: true });
  try {
    return await new Promise<DecodedPacket[]>((resolve, reject) => {
      const got: DecodedPacket[] = [];
      let buf = Buffer.alloc(0);
      let ended = false;
      const timer = setTimeout(() => reject(new Error(`${got.length} of ${count} TCP replies${opts.halfClose ? ` (server ended: ${ended})` : ''} within ${REPLY_DEADLINE_MS} ms`)), REPLY_DEADLINE_MS);
      // A half-closing client also waits for the server to end its side once it answered everything.
      const done = () => {
        if (got.length !== count || (opts.halfClose && !ended)) return;
        clearTimeout(timer);
        resolve(got);
      };
      conn.on('error', reject);
      conn.on('end', () => {
        ended = true;
        done();
      });
      conn.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          got.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        done();
      });
      conn.write(Buffer.concat(packets.map((p) => dnsPacket.streamEncode(p))));
      if (opts.halfClose) conn.end();
    });
  } finally {
    conn.destroy();
  }
}

const RCODE = (p: DecodedPacket) => (p as DecodedPacket & { rcode: string }).rcode;
const addresses = (p: DecodedPacket) => (p.answers ?? []).map((a) => (a.type === 'A' ? a.data : a.type)).sort();

/** The upstream of these tests: answers every A question with 192.0.2.7 (data only), truncated over UDP for big.example.test, in full over TCP. */
function upstreamAnswer(msg: Buffer, transport: 'udp' | 'tcp'): Buffer {
  const q = dnsPacket.decode(msg);
  const name = q.questions![0]!.name;
  const big = name === 'big.example.test';
  const tc = big && transport === 'udp';
  const count = big ? 100 : 1;
  return dnsPacket.encode({
    type: 'response',
    id: q.id,
    flags: dnsPacket.RECURSION_AVAILABLE | (tc ? dnsPacket.TRUNCATED_RESPONSE : 0),
    questions: q.questions,
    answers: tc ? [] : Array.from({ length: count }, (_, i) => ({ type: 'A' as const, name, ttl: 60, data: `192.0.2.${i + 1}` })),
  });
}

describe('Resolver', () => {
  const names = new ClusterNames();
  names.update([
    ...SERVICES,
    { fullName: 'demo_big', stack: 'demo', shortName: 'big', taskIPs: Array.from({ length: 40 }, (_, i) => `10.42.9.${i + 1}`), networks: [{ name: 'demo_default', aliases: [] }] },
  ]);
  const clients: Record<string, DnsClient> = { [CLIENT_DEMO]: DEMO, [CLIENT_OTHER]: OTHER };
  const seen: string[] = [];
  const lookup = (qname: string, address: string) => {
    seen.push(address);
    if (qname === 'explode') throw new Error('the lookup failed');
    return names.lookup(qname, clients[address] ?? NOBODY);
  };
  const upstreamIds: number[] = [];
  let upstream: UdpSocket;
  let upstreamTcp: Server;
  let silentUpstream: UdpSocket;
  let resolver: Resolver | undefined;
  const start = async (opts: Partial<ConstructorParameters<typeof Resolver>[0]>) => {
    resolver = new Resolver({ lookup, upstream: 'none', log: silent, forwardTimeoutMs: 200, ...opts });
    await resolver.listen(HOST, PORT);
    return resolver;
  };

  beforeAll(async () => {
    upstream = createSocket('udp4');
    upstream.on('message', (m, peer) => {
      upstreamIds.push(m.readUInt16BE(0));
      upstream.send(upstreamAnswer(m, 'udp'), peer.port, peer.address);
    });
    await new Promise<void>((r) => upstream.bind(UPSTREAM.port, UPSTREAM.host, r));
    upstreamTcp = createServer((c) => {
      c.on('data', (d) => {
        const answer = upstreamAnswer(d.subarray(2, 2 + d.readUInt16BE(0)), 'tcp');
        c.end(dnsPacket.streamEncode(dnsPacket.decode(answer)));
      });
    });
    await new Promise<void>((r) => upstreamTcp.listen(UPSTREAM.port, UPSTREAM.host, r));
    // Bound, so no ICMP unreachable comes back: a query to it can only time out.
    silentUpstream = createSocket('udp4');
    await new Promise<void>((r) => silentUpstream.bind(SILENT.port, SILENT.host, r));
  });
  afterEach(async () => {
    await resolver?.close();
    resolver = undefined;
  });
  afterAll(async () => {
    upstream.close();
    silentUpstream.close();
    await new Promise((r) => upstreamTcp.close(r));
  });

  it('answers A for a cluster name, authoritative, to the client its address stands for', async () => {
    const r = await start({ ttlSeconds: 7 });
    seen.length = 0;
    const p = query('api');
    const demo = await udpAsk(p);
    expect(demo.id).toBe(p.id);
    expect(RCODE(demo)).toBe('NOERROR');
    expect(demo.flag_aa && demo.flag_ra && demo.flag_rd).toBe(true);
    expect(demo.questions).toEqual([{ name: 'api', type: 'A', class: 'IN' }]);
    expect(demo.answers).toEqual([{ name: 'api', type: 'A', class: 'IN', ttl: 7, flush: false, data: '10.96.0.10' }]);
    expect(addresses(await udpAsk(query('api'), CLIENT_OTHER))).toEqual(['10.96.0.20']);
    expect(addresses(await udpAsk(query('tasks.api')))).toEqual(['10.42.0.2', '10.42.1.2']);
    expect(seen).toEqual([CLIENT_DEMO, CLIENT_OTHER, CLIENT_DEMO]);
    expect(r.stats()).toEqual({ queries: 3, answered: 3, nxdomain: 0, forwarded: 0, errors: 0 });
  });

  it('answers AAAA and other types for an existing name with no records, and NXDOMAIN with the question for a missing one', async () => {
    const r = await start({});
    for (const type of ['AAAA', 'MX', 'TXT'] as const) {
      const reply = await udpAsk(query('api', type));
      expect([RCODE(reply), reply.flag_aa, reply.answers]).toEqual(['NOERROR', true, []]);
    }
    const nx = await udpAsk(query('nosuch'));
    expect([RCODE(nx), nx.flag_aa, nx.answers, nx.authorities]).toEqual(['NXDOMAIN', true, [], []]);
    expect(nx.questions).toEqual([{ name: 'nosuch', type: 'A', class: 'IN' }]);
    // Another stack's service is absent for this client.
    expect(RCODE(await udpAsk(query('other_api')))).toBe('NXDOMAIN');
    expect(r.stats()).toMatchObject({ queries: 5, answered: 3, nxdomain: 2 });
  });

  it('forwards other names to the upstream with a fresh id and hands back the answer under the client id', async () => {
    const r = await start({ upstream: [`${UPSTREAM.host}:${UPSTREAM.port}`] });
    upstreamIds.length = 0;
    const p = query('www.example.test');
    const reply = await udpAsk(p);
    expect(reply.id).toBe(p.id);
    expect([RCODE(reply), reply.flag_aa, addresses(reply)]).toEqual(['NOERROR', false, ['192.0.2.1']]);
    expect(upstreamIds).toHaveLength(1);
    // Cluster names never reach it, found or not.
    expect(RCODE(await udpAsk(query('nosuch')))).toBe('NXDOMAIN');
    expect(RCODE(await udpAsk(query('tasks.nosuch')))).toBe('NXDOMAIN');
    expect(upstreamIds).toHaveLength(1);
    expect(r.stats()).toMatchObject({ queries: 3, forwarded: 1, nxdomain: 2, errors: 0 });
  });

  it('tries the next upstream when one times out, and answers SERVFAIL when all do', async () => {
    const silent = `${SILENT.host}:${SILENT.port}`;
    let r = await start({ upstream: [silent, `${UPSTREAM.host}:${UPSTREAM.port}`], forwardTimeoutMs: 200 });
    const t0 = Date.now();
    expect(addresses(await udpAsk(query('www.example.test')))).toEqual(['192.0.2.1']);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    await r.close();
    r = await start({ upstream: [silent, silent], forwardTimeoutMs: 200 });
    const fail = await udpAsk(query('www.example.test'));
    expect([RCODE(fail), fail.answers]).toEqual(['SERVFAIL', []]);
    expect(r.stats()).toMatchObject({ forwarded: 1, errors: 1 });
  });

  it("answers NXDOMAIN, not authoritative, for every other name when the upstream is 'none'", async () => {
    const r = await start({ upstream: 'none' });
    const reply = await udpAsk(query('www.example.test'));
    expect([RCODE(reply), reply.flag_aa]).toEqual(['NXDOMAIN', false]);
    expect(r.stats()).toMatchObject({ forwarded: 0, nxdomain: 1 });
  });

  it('drops a malformed message, a response and a lookup error does not kill it: the next query on the same socket is answered', async () => {
    const r = await start({});
    const next = query('api');
    const asResponse = dnsPacket.encode({ ...query('api'), type: 'response' });
    const replies = await udpExchange([Buffer.from([1, 2, 3]), Buffer.alloc(0), Buffer.from('not dns at all, but longer than a header'), asResponse, dnsPacket.encode(query('explode')), dnsPacket.encode(next)], 2);
    expect(RCODE(replies[0]!)).toBe('SERVFAIL');
    expect(replies[1]!.id).toBe(next.id);
    expect(addresses(replies[1]!)).toEqual(['10.96.0.10']);
    expect(r.stats()).toMatchObject({ queries: 2, answered: 1, errors: 5 });
  });

  it('sets TC on a UDP answer larger than the client takes; over TCP the same question is answered in full', async () => {
    await start({});
    const udp = await udpAsk(query('tasks.big'));
    expect([udp.flag_tc, udp.answers, udp.questions?.[0]?.name]).toEqual([true, [], 'tasks.big']);
    const [tcp] = await tcpExchange([query('tasks.big')], 1);
    expect([tcp!.flag_tc, tcp!.answers?.length]).toEqual([false, 40]);
  });

  it('answers several queries on one TCP connection, and closes an idle one', async () => {
    await start({ tcpIdleTimeoutMs: 200, upstream: [`${UPSTREAM.host}:${UPSTREAM.port}`] });
    const a = query('api');
    const b = query('nosuch', 'A');
    const c = query('big.example.test');
    const replies = await tcpExchange([a, b, c], 3);
    const byId = new Map(replies.map((p) => [p.id, p]));
    expect(addresses(byId.get(a.id)!)).toEqual(['10.96.0.10']);
    expect(RCODE(byId.get(b.id)!)).toBe('NXDOMAIN');
    // Truncated by the upstream over UDP: asked again over TCP for this TCP client.
    expect(byId.get(c.id)!.answers).toHaveLength(100);
    const conn = connect({ host: HOST, port: PORT, localAddress: CLIENT_DEMO });
    const closedAfter = await new Promise<number>((resolve, reject) => {
      const t0 = Date.now();
      const timer = setTimeout(() => reject(new Error('the idle connection stayed open')), 200 * 10);
      conn.on('close', () => {
        clearTimeout(timer);
        resolve(Date.now() - t0);
      });
    });
    expect(closedAfter).toBeGreaterThanOrEqual(150);
  });

  it('answers a TCP client that shuts its side after its last query, then ends its own', async () => {
    await start({ tcpIdleTimeoutMs: 60_000, upstream: [`${UPSTREAM.host}:${UPSTREAM.port}`] });
    const [forwarded, local] = await tcpExchange([query('www.example.test'), query('api')], 2, { halfClose: true });
    expect([addresses(forwarded!), addresses(local!)].sort()).toEqual([['10.96.0.10'], ['192.0.2.1']]);
  });

  it('speaks EDNS back to a client that speaks it, and lets it take a larger answer over UDP', async () => {
    await start({});
    const opt = { type: 'OPT' as const, name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] };
    const reply = await udpAsk(query('tasks.big', 'A', { additionals: [opt] }));
    expect(reply.flag_tc).toBe(false);
    expect(reply.answers).toHaveLength(40);
    expect(reply.additionals).toMatchObject([{ type: 'OPT', udpPayloadSize: 1232 }]);
  });

  it('refuses to listen where it cannot, saying where', async () => {
    const r = await start({});
    await expect(r.listen(HOST, PORT)).rejects.toThrow(`dns: cannot listen on ${HOST}:${PORT}`);
  });
});
