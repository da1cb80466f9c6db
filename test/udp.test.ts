/**
 * UDP in the routing mesh, against the real kernel and real sockets: the
 * kernel path DNATs UDP flows round robin (each client port is a flow that
 * keeps its endpoint), conntrack-tools deletes the flows of an endpoint that
 * left (so a client that keeps sending moves on), and the userspace relay
 * keeps a session per client, answers from its own address, balances new
 * sessions, moves a session whose endpoint left, drops what it cannot send
 * anywhere and ends idle sessions. The argument vector given to conntrack
 * holds nothing but checked addresses and ports.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NftPath, rulesetText, tableName, type KernelRoute } from '../src/agent/nft.js';
import { conntrackAvailable, deleteFlows, flowArgs } from '../src/agent/net/conntrack.js';
import { UdpRelay, type UdpTarget } from '../src/agent/net/udpRelay.js';
import { eventually } from './helpers/proc.js';

const execFileP = promisify(execFile);

/** echo: a UDP server on host:port answering `<host>|<datagram>`. */
async function echo(host: string, port = 0): Promise<Socket> {
  const s = createSocket('udp4');
  s.on('message', (m, from) => s.send(Buffer.concat([Buffer.from(`${host}|`), m]), from.port, from.address));
  await new Promise<void>((r) => s.bind(port, host, r));
  return s;
}

/** ask sends one datagram from `client` (a bound socket) and waits for one answer (or undefined after ms). */
function ask(client: Socket, host: string, port: number, text: string, ms = 1000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      client.off('message', on);
      resolve(undefined);
    }, ms);
    const on = (m: Buffer) => {
      clearTimeout(t);
      client.off('message', on);
      resolve(m.toString());
    };
    client.on('message', on);
    client.send(text, port, host);
  });
}

async function client(host = '127.0.0.1'): Promise<Socket> {
  const c = createSocket('udp4');
  await new Promise<void>((r) => c.bind(0, host, r));
  return c;
}

const sockets: Socket[] = [];
const keep = <T extends Socket | Promise<Socket>>(s: T): T => {
  void Promise.resolve(s).then((x) => sockets.push(x));
  return s;
};
afterAll(() => {
  for (const s of sockets) s.close();
});

describe('the kernel path for UDP', () => {
  const node = `udp-${process.pid}`;
  afterAll(async () => {
    await execFileP('/usr/sbin/nft', ['delete', 'table', 'ip', tableName(node, 'cafe0456-test')]).catch(() => {});
  });

  it('renders udp matches and refuses any other protocol', () => {
    const route: KernelRoute = { service: 'dns', address: '127.0.0.9', port: 53, protocol: 'udp', endpoints: [{ task: 't1', address: '127.0.0.3', port: 5353 }] };
    const { text } = rulesetText('baton_x', [route]);
    expect(text).toMatch(/ip daddr 127\.0\.0\.9 udp dport 53 goto route_0/);
    expect(text).toMatch(/meta l4proto udp counter dnat to 127\.0\.0\.3:5353/);
    expect(text).toMatch(/meta l4proto udp ct original ip daddr 127\.0\.0\.9 ct original proto-dst 53 masquerade/);
    expect(() => rulesetText('baton_x', [{ ...route, protocol: 'udp; flush ruleset' as 'udp' }])).toThrow(/protocol "udp; flush ruleset" is not tcp or udp/);
  });

  it('refuses to give conntrack anything but addresses and ports', () => {
    expect(flowArgs({ address: '127.0.0.9', port: 53, to: '10.42.0.5' })).toEqual(['-D', '-p', 'udp', '--orig-dst', '127.0.0.9', '--orig-port-dst', '53', '--dst-nat', '10.42.0.5']);
    expect(() => flowArgs({ address: '127.0.0.9 -F', port: 53, to: '10.42.0.5' })).toThrow(/is not an IPv4 address/);
    expect(() => flowArgs({ address: '127.0.0.9', port: 0, to: '10.42.0.5' })).toThrow(/port 0/);
  });

  it('DNATs each flow to one endpoint, round robin, and deleting an endpoint\'s flows moves its clients on', async () => {
    expect(conntrackAvailable()).toBe(true);
    const port = 29500 + (process.pid % 400);
    keep(await echo('127.0.0.31', port));
    keep(await echo('127.0.0.32', port));
    const k = await NftPath.open(node, 'cafe0456-test');
    expect(k).toBeInstanceOf(NftPath);
    const path = k as NftPath;
    const route: KernelRoute = { service: 'dns', address: '127.0.0.39', port: 18953, protocol: 'udp', endpoints: [{ task: 'a', address: '127.0.0.31', port }, { task: 'b', address: '127.0.0.32', port }] };
    expect(await path.sync([route])).toBeUndefined();
    // Four clients (four flows): two on each endpoint; each keeps its endpoint for every later datagram.
    const clients = await Promise.all([0, 1, 2, 3].map(() => keep(client())));
    const first = await Promise.all(clients.map((c, i) => ask(c, '127.0.0.39', 18953, `q${i}`)));
    expect(first.map((a) => a?.split('|')[0]).sort()).toEqual(['127.0.0.31', '127.0.0.31', '127.0.0.32', '127.0.0.32']);
    for (const [i, c] of clients.entries()) expect(await ask(c, '127.0.0.39', 18953, `again${i}`)).toBe(`${first[i]!.split('|')[0]}|again${i}`);
    // Endpoint a leaves: the rules say so, but a's flows still go to a until they are deleted.
    expect(await path.sync([{ ...route, endpoints: [route.endpoints[1]!] }])).toBeUndefined();
    const onA = clients.filter((_, i) => first[i]!.startsWith('127.0.0.31'));
    expect(await ask(onA[0]!, '127.0.0.39', 18953, 'stale')).toBe('127.0.0.31|stale');
    expect(await deleteFlows([{ address: '127.0.0.39', port: 18953, to: '127.0.0.31' }])).toEqual([]);
    for (const c of onA) expect(await ask(c, '127.0.0.39', 18953, 'moved')).toBe('127.0.0.32|moved');
    // Deleting flows that are not there is not an error.
    expect(await deleteFlows([{ address: '127.0.0.39', port: 18953, to: '127.0.0.31' }])).toEqual([]);
    const counts = await path.counts();
    expect(counts.get('dns')?.total).toBe(6);
    await path.close();
  });
});

describe('the UDP relay', () => {
  it('keeps a session per client, balances new ones, moves those whose endpoint left, drops without one, ends idle ones', async () => {
    const port = 29900 + (process.pid % 90);
    keep(await echo('127.0.0.33', port));
    keep(await echo('127.0.0.34', port));
    let endpoints: UdpTarget[] = [
      { task: 'a', host: '127.0.0.33', port },
      { task: 'b', host: '127.0.0.34', port },
    ];
    let next = 0;
    let dropped = 0;
    const sessions: string[] = [];
    const relay = new UdpRelay({
      host: '127.0.0.35',
      port: 0,
      idleMs: 300,
      pick: () => (endpoints.length ? endpoints[next++ % endpoints.length] : undefined),
      stillThere: (task) => endpoints.some((e) => e.task === task),
      admit: (c) => c !== '127.0.0.36',
      onNoEndpoint: () => dropped++,
      onSession: (task, open) => sessions.push(`${open ? '+' : '-'}${task}`),
      onError: (e) => {
        throw e;
      },
    });
    const rport = await relay.listen();
    try {
      const [c1, c2] = await Promise.all([keep(client()), keep(client())]);
      expect(await ask(c1, '127.0.0.35', rport, 'x')).toBe('127.0.0.33|x');
      expect(await ask(c2, '127.0.0.35', rport, 'y')).toBe('127.0.0.34|y');
      expect(await ask(c1, '127.0.0.35', rport, 'x2')).toBe('127.0.0.33|x2');
      expect(relay.sessionCount).toBe(2);
      // A client the relay does not admit gets nothing.
      const outsider = await keep(client('127.0.0.36'));
      expect(await ask(outsider, '127.0.0.35', rport, 'no', 300)).toBeUndefined();
      // a leaves: c1's next datagram starts a session with b.
      endpoints = [endpoints[1]!];
      expect(await ask(c1, '127.0.0.35', rport, 'x3')).toBe('127.0.0.34|x3');
      // No endpoint: dropped, and said so.
      endpoints = [];
      const c3 = await keep(client());
      expect(await ask(c3, '127.0.0.35', rport, 'z', 300)).toBeUndefined();
      expect(dropped).toBe(1);
      // Idle sessions end.
      await eventually(async () => expect(relay.sessionCount).toBe(0), 5000);
      expect(sessions.sort()).toEqual(['+a', '+b', '+b', '-a', '-b', '-b']);
    } finally {
      relay.close();
    }
  });
});
