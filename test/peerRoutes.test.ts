/**
 * Peer routes (agent/net/peerRoutes.ts): which nodes' task ranges this node
 * routes via their address, and reading what `ip` prints. The routes on a
 * real kernel, across real links, are in test/e2e/multihost.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { parseLocalAddresses, parseOwnRoutes, peerRoutes, type LocalAddress, type PeerNode } from '../src/agent/net/peerRoutes.js';
import { formatCidr, parseCidr } from '../src/base/cidr.js';

const ADDR_SHOW = `1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever
3: btd622c9b951b3    inet 10.42.0.1/24 scope global btd622c9b951b3\\       valid_lft forever preferred_lft forever
4: eth1@if9    inet 198.51.100.7/25 scope global eth1\\       valid_lft forever preferred_lft forever
`;

describe('peerRoutes', () => {
  const local: LocalAddress[] = parseLocalAddresses(ADDR_SHOW);
  const self = { name: 'a', range: parseCidr('10.42.0.0/24') };
  const plan = (nodes: PeerNode[]) => {
    const r = peerRoutes(nodes, self, local);
    return { routes: r.routes.map((x) => `${formatCidr(x.range)} via ${x.via} (${x.node})`), unrouted: r.unrouted.map((u) => `${u.node}: ${u.why}`) };
  };

  it('reads this machine\'s addresses with the prefix of their link', () => {
    expect(local.map((l) => `${l.dev} ${l.address} ${formatCidr(l.link)}`)).toEqual(['lo 127.0.0.1 127.0.0.0/8', 'eth0 192.0.2.2 192.0.2.0/24', 'btd622c9b951b3 10.42.0.1 10.42.0.0/24', 'eth1 198.51.100.7 198.51.100.0/25']);
  });

  it('routes each other node\'s range via its address on a directly connected link', () => {
    expect(plan([
      { name: 'a', address: '192.0.2.2', taskRange: '10.42.0.0/24' },
      { name: 'b', address: '192.0.2.3', taskRange: '10.42.1.0/24' },
      { name: 'c', address: '198.51.100.100', taskRange: '10.42.2.0/24' },
    ])).toEqual({ routes: ['10.42.1.0/24 via 192.0.2.3 (b)', '10.42.2.0/24 via 198.51.100.100 (c)'], unrouted: [] });
  });

  it('leaves out, silently, nodes not registered yet, loopback addresses (one kernel) and this machine\'s own', () => {
    expect(plan([
      { name: 'b' },
      { name: 'c', address: '192.0.2.4' },
      { name: 'd', address: '127.0.0.3', taskRange: '10.42.3.0/24' },
      { name: 'e', address: '192.0.2.2', taskRange: '10.42.4.0/24' },
    ])).toEqual({ routes: [], unrouted: [] });
  });

  it('says why a node gets no route: off-link, a range that clashes, or values that are not what they claim', () => {
    expect(plan([
      { name: 'b', address: '203.0.113.5', taskRange: '10.42.1.0/24' },
      { name: 'c', address: '192.0.2.3', taskRange: '10.42.0.128/25' },
      { name: 'd', address: '192.0.2.4', taskRange: '10.42.5.0/24' },
      { name: 'e', address: '192.0.2.5', taskRange: '10.42.5.0/25' },
      { name: 'f', address: '192.0.2.6', taskRange: '10.42.6.1/24' },
      { name: 'g', address: '192.0.2.7', taskRange: '10.42.7.0/24 via 1.2.3.4' },
      { name: 'h', address: '192.0.2.8; reboot', taskRange: '10.42.8.0/24' },
      { name: 'i', address: '10.42.0.9', taskRange: '10.42.9.0/24' },
    ])).toEqual({
      routes: ['10.42.5.0/24 via 192.0.2.4 (d)'],
      unrouted: [
        'b: its address 203.0.113.5 is on no link this node is directly connected to',
        'c: its task range 10.42.0.128/25 overlaps this node\'s 10.42.0.0/24',
        'e: its task range 10.42.5.0/25 overlaps node d\'s 10.42.5.0/24',
        'f: its task range "10.42.6.1/24" is not a range a.b.c.d/N',
        'g: its task range "10.42.7.0/24 via 1.2.3.4" is not a range a.b.c.d/N',
        'h: its address "192.0.2.8; reboot" is not an IPv4 address',
        // An address inside this node's own task range is a task's, never a link's.
        'i: its address 10.42.0.9 is on no link this node is directly connected to',
      ],
    });
  });

  it('reads back the peer routes in place, and nothing else', () => {
    const shown = `10.42.1.0/24 via 192.0.2.3 dev eth0 \n10.42.2.0/24 via 198.51.100.100 dev eth1 \n10.42.3.0/24 dev eth0 scope link \nweird line\n`;
    expect([...parseOwnRoutes(shown)]).toEqual([['10.42.1.0/24', '192.0.2.3'], ['10.42.2.0/24', '198.51.100.100']]);
  });
});
