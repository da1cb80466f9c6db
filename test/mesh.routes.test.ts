/**
 * What the routing mesh takes from an Endpoints object into a ruleset or a
 * connect: an endpoint's address must be an IPv4 address and its host port a
 * port number, whatever an agent reported.
 */
import { describe, expect, it } from 'vitest';
import { hostPortOf } from '../src/agent/mesh.js';

describe('hostPortOf', () => {
  const ep = (address: string, ports: Record<string, unknown>) => ({ task: 't', node: 'n', address, ports: ports as Record<string, number> });

  it('gives the host port of a well-formed endpoint', () => {
    expect(hostPortOf(ep('127.0.0.3', { '80': 20001 }), 80)).toBe(20001);
    expect(hostPortOf(ep('10.1.2.3', { '80': 1, '443': 65535 }), 443)).toBe(65535);
  });

  it('refuses an address that is not an IPv4 address, or a port that is not a port number', () => {
    for (const address of ['', 'localhost', '127.0.0.1; drop', '127.0.0.1 tcp dport 1', '127.0.0.256', '::1', '127.0.0.1:80']) expect(hostPortOf(ep(address, { '80': 20001 }), 80), address).toBeUndefined();
    for (const port of [0, 65536, -1, 1.5, '20001', '1 }', null, Number.NaN]) expect(hostPortOf(ep('127.0.0.3', { '80': port }), 80), String(port)).toBeUndefined();
    expect(hostPortOf(ep('127.0.0.3', { '81': 20001 }), 80)).toBeUndefined();
  });
});
