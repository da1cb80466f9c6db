/**
 * The PROXY protocol (HAProxy's, v1 text and v2 binary): the header the
 * routing mesh writes first on a connection to an endpoint, so the program
 * learns the client's address that the proxy hides.
 */
import { isIPv6, type Socket } from 'node:net';

/** proxyHeader is the PROXY protocol header (v1 text or v2 binary) for a client connection. */
export function proxyHeader(version: 'v1' | 'v2', sock: Socket): Buffer {
  const src = sock.remoteAddress ?? '127.0.0.1';
  const dst = sock.localAddress ?? '127.0.0.1';
  const sp = sock.remotePort ?? 0;
  const dp = sock.localPort ?? 0;
  const v6 = isIPv6(src) && !src.startsWith('::ffff:');
  const plain = (a: string) => (a.startsWith('::ffff:') ? a.slice(7) : a);
  if (version === 'v1') return Buffer.from(`PROXY ${v6 ? 'TCP6' : 'TCP4'} ${plain(src)} ${plain(dst)} ${sp} ${dp}\r\n`, 'latin1');
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addr = v6 ? Buffer.concat([ipv6Bytes(src), ipv6Bytes(dst)]) : Buffer.from([...plain(src).split('.').map(Number), ...plain(dst).split('.').map(Number)]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sp, 0);
  ports.writeUInt16BE(dp, 2);
  const head = Buffer.alloc(4);
  head[0] = 0x21; // version 2, PROXY command
  head[1] = v6 ? 0x21 : 0x11; // TCP over IPv6 / IPv4
  head.writeUInt16BE(addr.length + 4, 2);
  return Buffer.concat([sig, head, addr, ports]);
}

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return b;
}
