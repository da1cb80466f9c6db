/**
 * Where a published port is published, given the address it is bound to
 * (Compose's `host_ip`, PortSpec.hostIP). Docker binds the port on that one
 * address of the host; a Baton port is the cluster's, so the rule is read
 * per node (the reader, the server's schema, the routing mesh and the task
 * network's port mappings all follow it):
 *
 * - none, `0.0.0.0` or `::`: every node, at its address (what Baton does
 *   without host_ip);
 * - a loopback address (127.0.0.0/8, ::1): every node, at that address, so
 *   only the node itself reaches it, never another host;
 * - any other address: only the node whose address (`--address`) it is;
 *   the others do not publish it. Connections there still reach every
 *   ready task, on any node, as through any published port.
 *
 * Only values that parse as IP addresses ever reach a listener or a
 * ruleset; anything else publishes nowhere. The parsing is our own (no
 * node:net) because the dashboard's bundle takes the API's schemas.
 */

/** parseIP reads an IPv4 address (dotted quad) or an IPv6 address (with `::` and a trailing dotted quad) into its bytes; undefined for anything else (zones, prefixes, names). */
export function parseIP(text: string): number[] | undefined {
  const v4 = (s: string): number[] | undefined => {
    const parts = s.split('.');
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
    return parts.map(Number);
  };
  if (!text.includes(':')) return v4(text);
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  // A trailing dotted quad (::ffff:1.2.3.4) is the last two groups.
  let s = text;
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    const q = v4(s.slice(lastColon + 1));
    if (!q) return undefined;
    s = `${s.slice(0, lastColon + 1)}${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === '') return [];
    const g = h.split(':');
    return g.every((x) => /^[0-9a-fA-F]{1,4}$/.test(x)) ? g.map((x) => parseInt(x, 16)) : undefined;
  };
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !rest) return undefined;
  const known = head.length + rest.length;
  if (halves.length === 1 ? known !== 8 : known > 7) return undefined;
  const words = [...head, ...Array<number>(8 - known).fill(0), ...rest];
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

/** isLoopbackIP: an IP address of 127.0.0.0/8, or ::1 (in any of its spellings). */
export function isLoopbackIP(ip: string): boolean {
  const b = parseIP(ip);
  if (!b) return false;
  return b.length === 4 ? b[0] === 127 : b.every((x, i) => x === (i === 15 ? 1 : 0));
}

/** isWildcardIP: 0.0.0.0 or :: (in any of its spellings): every address. */
export function isWildcardIP(ip: string): boolean {
  return parseIP(ip)?.every((x) => x === 0) ?? false;
}

/** sameIP: two spellings of one IP address (::1 and 0:0:0:0:0:0:0:1 are one); false unless both parse. */
export function sameIP(a: string, b: string): boolean {
  const x = parseIP(a);
  const y = parseIP(b);
  return x !== undefined && y !== undefined && x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * publishedAddress is the address a node whose own address is
 * `nodeAddress` publishes a port bound to `hostIP` on, or undefined when
 * that node does not publish it (another node's address, or a value that
 * is not an IP address).
 */
export function publishedAddress(hostIP: string | undefined, nodeAddress: string): string | undefined {
  if (hostIP === undefined || hostIP === '') return nodeAddress;
  if (!parseIP(hostIP)) return undefined;
  if (isWildcardIP(hostIP) || sameIP(hostIP, nodeAddress)) return nodeAddress;
  return isLoopbackIP(hostIP) ? hostIP : undefined;
}
