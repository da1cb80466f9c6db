/**
 * IPv4 ranges (CIDR blocks) as numbers, shared by the server, which hands
 * each node a range of the cluster's (server/ipam.ts), and the agent, which
 * plumbs its tasks into its node's range (agent/net/plumbing.ts). They live
 * here because the agent and the server never import each other.
 *
 * An address is its 32-bit value as an unsigned number; a range is its
 * network address and prefix length. IPv4 only: an IPv6 range is refused
 * by name, not taken for a typo.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Cidr is an IPv4 range, parsed: the network address as a number and the prefix length. */
export interface Cidr {
  base: number;
  prefix: number;
}

/** maskOf is the netmask of a prefix length as a number (0 for /0, which a 32-bit shift cannot give). */
function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
}

/**
 * parseCidr reads `a.b.c.d/N` (N from 0 to 32). Host bits are cleared, as
 * Go's net.ParseCIDR does: 10.1.2.3/24 is 10.1.2.0/24 (a caller that wants
 * them refused compares formatCidr of the result with its text).
 */
export function parseCidr(text: string): Cidr {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (m && isIPv6(m[1]!)) throw new Error(`${text} is an IPv6 range; only IPv4 ranges are supported for now`);
  if (!m || !isIPv4(m[1]!) || Number(m[2]) > 32) throw new Error(`${text} is not an IPv4 range a.b.c.d/N (N from 0 to 32)`);
  const prefix = Number(m[2]);
  return { base: (ipToInt(m[1]!) & maskOf(prefix)) >>> 0, prefix };
}

export function ipToInt(ip: string): number {
  if (!isIPv4(ip)) throw new Error(`not an IPv4 address: ${ip}`);
  return ip.split('.').reduce((n, o) => ((n << 8) | Number(o)) >>> 0, 0);
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

export function formatCidr(c: Cidr): string {
  return `${intToIp(c.base)}/${c.prefix}`;
}

/** contains: ip lies inside c. */
export function contains(c: Cidr, ip: string): boolean {
  return ((ipToInt(ip) & maskOf(c.prefix)) >>> 0) === c.base;
}

/** sizeOf is how many addresses a range holds. */
export function sizeOf(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

/** overlaps: a and b share an address (one holds the other, ranges being aligned). */
export function overlaps(a: Cidr, b: Cidr): boolean {
  const shorter = Math.min(a.prefix, b.prefix);
  return ((a.base & maskOf(shorter)) >>> 0) === ((b.base & maskOf(shorter)) >>> 0);
}

/** subnetCount is how many ranges of prefix length `prefix` c holds (0 when `prefix` is shorter than c's). */
export function subnetCount(c: Cidr, prefix: number): number {
  return prefix < c.prefix ? 0 : 2 ** (prefix - c.prefix);
}

/** nthSubnet is the n-th range (from 0) of prefix length `prefix` inside c, in address order. */
export function nthSubnet(c: Cidr, prefix: number, n: number): Cidr {
  if (!Number.isInteger(n) || n < 0 || n >= subnetCount(c, prefix)) throw new Error(`${formatCidr(c)} has no subnet /${prefix} number ${n}`);
  return { base: c.base + n * 2 ** (32 - prefix), prefix };
}
