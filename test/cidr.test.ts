/**
 * IPv4 ranges (base/cidr.ts): parsing and its refusals, containment,
 * overlap and the n-th subnet, at the edges of the address space.
 */
import { describe, expect, it } from 'vitest';
import { contains, formatCidr, intToIp, ipToInt, nthSubnet, overlaps, parseCidr, sizeOf, subnetCount } from '../src/base/cidr.js';

describe('IPv4 ranges', () => {
  it('parses a.b.c.d/N, clearing host bits, and formats it back', () => {
    expect(parseCidr('10.42.0.0/16')).toEqual({ base: 0x0a2a0000, prefix: 16 });
    expect(formatCidr(parseCidr('10.42.7.9/16'))).toBe('10.42.0.0/16');
    expect(formatCidr(parseCidr('0.0.0.0/0'))).toBe('0.0.0.0/0');
    expect(formatCidr(parseCidr('255.255.255.255/32'))).toBe('255.255.255.255/32');
    expect(ipToInt('255.255.255.255')).toBe(2 ** 32 - 1);
    expect(intToIp(2 ** 32 - 1)).toBe('255.255.255.255');
  });

  it('refuses what is not an IPv4 range, naming IPv6 as not supported yet', () => {
    expect(() => parseCidr('fd00::/64')).toThrow('fd00::/64 is an IPv6 range; only IPv4 ranges are supported for now');
    for (const bad of ['10.42.0.0', '10.42.0.0/33', '10.42.0/16', '10.42.0.256/24', '10.42.0.0/-1', 'ten/8', '10.42.0.0/16 ']) {
      expect(() => parseCidr(bad), bad).toThrow(`${bad} is not an IPv4 range a.b.c.d/N (N from 0 to 32)`);
    }
  });

  it('tells containment and overlap', () => {
    const c = parseCidr('10.42.0.0/16');
    expect(contains(c, '10.42.255.255')).toBe(true);
    expect(contains(c, '10.43.0.0')).toBe(false);
    expect(contains(parseCidr('0.0.0.0/0'), '203.0.113.7')).toBe(true);
    expect(overlaps(c, parseCidr('10.42.3.0/24'))).toBe(true);
    expect(overlaps(parseCidr('10.42.3.0/24'), c)).toBe(true);
    expect(overlaps(parseCidr('10.42.3.0/24'), parseCidr('10.42.4.0/24'))).toBe(false);
    expect(overlaps(parseCidr('10.42.0.0/23'), parseCidr('10.42.1.128/26'))).toBe(true);
  });

  it('counts and numbers subnets in address order', () => {
    const c = parseCidr('10.42.0.0/16');
    expect(sizeOf(c)).toBe(65536);
    expect(subnetCount(c, 24)).toBe(256);
    expect(subnetCount(c, 8)).toBe(0);
    expect(formatCidr(nthSubnet(c, 24, 0))).toBe('10.42.0.0/24');
    expect(formatCidr(nthSubnet(c, 24, 255))).toBe('10.42.255.0/24');
    expect(formatCidr(nthSubnet(parseCidr('128.0.0.0/1'), 28, 2 ** 27 - 1))).toBe('255.255.255.240/28');
    expect(() => nthSubnet(c, 24, 256)).toThrow('10.42.0.0/16 has no subnet /24 number 256');
  });
});
