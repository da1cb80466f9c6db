/**
 * Where a port bound to a host IP is published (src/api/hostIp.ts), the
 * parser behind it (checked against node:net's), and the service schema's
 * rules for host IPs.
 */
import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { isLoopbackIP, isWildcardIP, parseIP, publishedAddress, sameIP } from '../src/api/hostIp.js';
import { serviceSpecSchema } from '../src/api/schemas.js';
import { serviceSpec } from './fixtures.js';

describe('parseIP', () => {
  const texts = [
    '127.0.0.1', '0.0.0.0', '255.255.255.255', '10.0.0.256', '01.2.3.4', '1.2.3', '1.2.3.4.5', ' 1.2.3.4', '1.2.3.4/8',
    '::', '::1', '0:0:0:0:0:0:0:1', 'fe80::1', '2001:db8::', '2001:db8:0:0:0:0:0:1:2', '1::2::3', ':::',
    '::ffff:127.0.0.1', '::127.0.0.1', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', 'g::1', '12345::', 'localhost', '', '1.2.3.4; drop',
  ];
  it.each(texts)('agrees with net.isIP on %j', (t) => {
    expect(parseIP(t) !== undefined).toBe(isIP(t) !== 0);
    if (isIP(t) === 4) expect(parseIP(t)).toHaveLength(4);
    if (isIP(t) === 6) expect(parseIP(t)).toHaveLength(16);
  });

  it('refuses a zone index, which names an interface of one host', () => {
    expect(isIP('fe80::1%eth0')).toBe(6);
    expect(parseIP('fe80::1%eth0')).toBeUndefined();
  });

  it('reads each spelling of one address alike', () => {
    expect(sameIP('::1', '0:0:0:0:0:0:0:1')).toBe(true);
    expect(sameIP('::ffff:7f00:1', '::ffff:127.0.0.1')).toBe(true);
    expect(sameIP('127.0.0.1', '127.0.0.2')).toBe(false);
    expect(sameIP('127.0.0.1', 'localhost')).toBe(false);
  });

  it('tells loopback and wildcard addresses', () => {
    expect(['127.0.0.1', '127.9.8.7', '::1', '0::1'].map(isLoopbackIP)).toEqual([true, true, true, true]);
    expect(['128.0.0.1', '10.0.0.1', '::2', '::', 'localhost'].map(isLoopbackIP)).toEqual([false, false, false, false, false]);
    expect(['0.0.0.0', '::', '0:0::0'].map(isWildcardIP)).toEqual([true, true, true]);
    expect(['0.0.0.1', '::1', ''].map(isWildcardIP)).toEqual([false, false, false]);
  });
});

describe('publishedAddress', () => {
  it.each([
    // [host IP, node address, where that node publishes]
    [undefined, '192.168.1.5', '192.168.1.5'],
    ['0.0.0.0', '192.168.1.5', '192.168.1.5'],
    ['::', '192.168.1.5', '192.168.1.5'],
    ['127.0.0.1', '192.168.1.5', '127.0.0.1'],
    ['::1', '192.168.1.5', '::1'],
    ['192.168.1.5', '192.168.1.5', '192.168.1.5'],
    ['192.168.1.6', '192.168.1.5', undefined],
    ['127.0.0.2', '127.0.0.2', '127.0.0.2'],
    ['not-an-ip', '192.168.1.5', undefined],
    ['1.2.3.4 } ; flush ruleset', '192.168.1.5', undefined],
  ])('a port bound to %s on node %s: %s', (hostIP, node, want) => {
    expect(publishedAddress(hostIP, node)).toBe(want);
  });
});

describe('serviceSpecSchema: host IPs', () => {
  const withPorts = (ports: unknown[], networkMode = 'bridge') => {
    const s = serviceSpec();
    return serviceSpecSchema.safeParse({ ...s, container: { ...s.container, networkMode }, ports });
  };
  const messages = (r: ReturnType<typeof withPorts>) => (r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));

  it('takes an IP address, and refuses anything else', () => {
    expect(messages(withPorts([{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress', hostIP: '10.0.0.5' }]))).toEqual([]);
    expect(messages(withPorts([{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress', hostIP: '::1' }]))).toEqual([]);
    expect(messages(withPorts([{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress', hostIP: '10.0.0.5; flush ruleset' }]))).toEqual(['ports.0.hostIP: must be an IPv4 or IPv6 address']);
  });

  it('binds a mode: host port to an IPv4 loopback address only, and a host-networked one to none', () => {
    expect(messages(withPorts([{ target: 80, published: 8080, protocol: 'tcp', mode: 'host', hostIP: '127.0.0.1' }]))).toEqual([]);
    expect(messages(withPorts([{ target: 80, published: 8080, protocol: 'tcp', mode: 'host', hostIP: '10.0.0.5' }]))).toHaveLength(1);
    expect(messages(withPorts([{ target: 80, published: 8080, protocol: 'tcp', mode: 'host', hostIP: '::1' }]))).toHaveLength(1);
    expect(messages(withPorts([{ target: 80, published: 8080, protocol: 'tcp', mode: 'host', hostIP: '127.0.0.1' }], 'host'))).toEqual([
      "ports.0.hostIP: a host address needs the task's own network namespace; networkMode is host",
    ]);
  });
});
