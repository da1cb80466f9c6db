/**
 * Ports: a service's `ports` (the short syntax with its ranges, and the long
 * form) and `expose`, as Baton's PortSpecs. A port that two services publish
 * is found once the whole file is read (checkPublishedPorts in networks.ts),
 * so each translated port is kept in Ctx.publishedPorts with its path.
 */

import { isIP, isIPv4 } from 'node:net';
import { isLoopbackIP, isWildcardIP } from '../../api/hostIp.js';
import type { PortSpec } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { isObj, type Ctx, type Obj } from './issues.js';
import { text } from './values.js';

const PORT_RANGE = /^(\d+)(?:-(\d+))?$/;

/**
 * hostIp reads host_ip: an IP address (net.isIP) or nothing; `0.0.0.0` and
 * `::` mean every node's address, which is what no host_ip means, so they
 * give undefined too. Where the others are published: api/hostIp.ts.
 */
function hostIp(ctx: Ctx, raw: string, segs: PathSegment[]): { ip?: string } | undefined {
  if (raw === '' || (isIP(raw) !== 0 && isWildcardIP(raw))) return {};
  if (isIP(raw) === 0) {
    ctx.error(segs, `host_ip ${JSON.stringify(raw)} is not an IP address`);
    return undefined;
  }
  if (raw.includes('%')) {
    ctx.error(segs, `host_ip ${JSON.stringify(raw)}: a zone index names an interface of one host; give the address alone`);
    return undefined;
  }
  return { ip: raw };
}


function parseRange(s: string): [number, number] | undefined {
  const m = PORT_RANGE.exec(s.trim());
  if (!m) return undefined;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || hi > 65535 || hi < lo) return undefined;
  return [lo, hi];
}

export function translatePorts(ctx: Ctx, v: unknown, segs: PathSegment[]): PortSpec[] {
  const out: PortSpec[] = [];
  if (!Array.isArray(v)) return out;
  v.forEach((item, i) => {
    const s = [...segs, i];
    const from = out.length;
    if (typeof item === 'number') {
      if (!Number.isInteger(item) || item < 1 || item > 65535) return ctx.error(s, `invalid port ${item}: must be 1-65535`);
      out.push({ target: item, protocol: 'tcp', mode: 'ingress' });
    } else if (typeof item === 'string') out.push(...shortPort(ctx, item, s));
    else if (isObj(item)) {
      const p = longPort(ctx, item, s);
      if (p) out.push(p);
    }
    for (const port of out.slice(from)) ctx.publishedPorts.push({ segs: s, port });
  });
  const seen = new Set<string>();
  out.forEach((p) => {
    if (p.published === undefined) return;
    const key = `${p.published}/${p.protocol}`;
    if (seen.has(key)) ctx.error(segs, `published port ${key} appears more than once`);
    seen.add(key);
  });
  return out;
}

/** shortPort reads "[[host_ip:]published:]target[/protocol]" with ranges, e.g. "8000-8001:80-81" → two ports. */
function shortPort(ctx: Ctx, raw: string, segs: PathSegment[]): PortSpec[] {
  let rest = raw.trim();
  let protocol = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    protocol = rest.slice(slash + 1).toLowerCase();
    rest = rest.slice(0, slash);
  }
  let hostIP: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0 || rest[close + 1] !== ':') {
      ctx.error(segs, `invalid port ${JSON.stringify(raw)}: expected [host_ip:][published:]target[/protocol]`);
      return [];
    }
    hostIP = rest.slice(1, close);
    rest = rest.slice(close + 2);
  }
  let parts = rest.split(':');
  if (hostIP === undefined && parts.length > 2) {
    hostIP = parts.slice(0, -2).join(':');
    parts = parts.slice(-2);
  }
  if (parts.length > 2 || parts.some((p, i) => p === '' && i === parts.length - 1)) {
    ctx.error(segs, `invalid port ${JSON.stringify(raw)}: expected [host_ip:][published:]target[/protocol]`);
    return [];
  }
  if (protocol !== 'tcp' && protocol !== 'udp') {
    if (protocol === 'sctp') ctx.unsupported(segs, 'services.*.ports[]/sctp', `protocol ${protocol}`);
    else ctx.error(segs, `invalid protocol ${JSON.stringify(protocol)} in port ${JSON.stringify(raw)}: must be tcp or udp`);
    return [];
  }
  const bound = hostIp(ctx, hostIP ?? '', segs);
  if (!bound) return [];
  const target = parseRange(parts[parts.length - 1]!);
  const pubRaw = parts.length === 2 ? parts[0]! : '';
  const published = pubRaw === '' ? undefined : parseRange(pubRaw);
  if (!target || (pubRaw !== '' && !published)) {
    ctx.error(segs, `invalid port ${JSON.stringify(raw)}: ports are 1-65535, ranges "low-high"`);
    return [];
  }
  const count = target[1] - target[0] + 1;
  if (published && published[1] - published[0] + 1 !== count) {
    if (count === 1) {
      ctx.unsupported(segs, 'services.*.ports[].published=range', `published range ${pubRaw} for one target port`);
      return [];
    }
    ctx.error(segs, `invalid port ${JSON.stringify(raw)}: the published range must be as long as the target range`);
    return [];
  }
  const out: PortSpec[] = [];
  for (let k = 0; k < count; k++) {
    const p: PortSpec = { target: target[0] + k, protocol: protocol as PortSpec['protocol'], mode: 'ingress' };
    if (published) p.published = published[0] + k;
    if (bound.ip !== undefined) p.hostIP = bound.ip;
    out.push(p);
  }
  return out;
}

function longPort(ctx: Ctx, item: Obj, segs: PathSegment[]): PortSpec | undefined {
  ctx.checkKeys(item, segs, 'services.*.ports[]', ['target', 'published', 'protocol', 'mode', 'name', 'host_ip']);
  const at = (k: string): PathSegment[] => [...segs, k];
  const protocol = item.protocol === undefined ? 'tcp' : text(item.protocol).toLowerCase();
  if (protocol !== 'tcp' && protocol !== 'udp') {
    if (protocol === 'sctp') ctx.unsupported(at('protocol'), 'services.*.ports[]/sctp', `protocol ${protocol}`);
    else ctx.error(at('protocol'), `must be tcp or udp, got ${JSON.stringify(item.protocol)}`);
    return undefined;
  }
  const bound = item.host_ip === undefined || item.host_ip === null ? {} : hostIp(ctx, text(item.host_ip), at('host_ip'));
  if (!bound) return undefined;
  if (item.target === undefined) {
    ctx.error(segs, '`target` is required');
    return undefined;
  }
  const t = parseRange(text(item.target));
  if (!t || t[0] !== t[1]) {
    ctx.error(at('target'), `must be one port 1-65535, got ${JSON.stringify(item.target)}`);
    return undefined;
  }
  const p: PortSpec = { target: t[0], protocol: protocol as PortSpec['protocol'], mode: 'ingress' };
  if (item.published !== undefined && item.published !== null && item.published !== '') {
    const pub = parseRange(text(item.published));
    if (!pub) {
      ctx.error(at('published'), `must be a port 1-65535, got ${JSON.stringify(item.published)}`);
      return undefined;
    }
    if (pub[0] !== pub[1]) {
      ctx.unsupported(at('published'), 'services.*.ports[].published=range', `range ${text(item.published)}`);
      return undefined;
    }
    p.published = pub[0];
  }
  if (item.mode !== undefined) {
    if (item.mode === 'host' || item.mode === 'ingress') p.mode = item.mode;
    else ctx.error(at('mode'), `must be host or ingress, got ${JSON.stringify(item.mode)}`);
  }
  if (typeof item.name === 'string' && item.name !== '') p.name = item.name;
  if (bound.ip !== undefined) p.hostIP = bound.ip;
  return p;
}

/**
 * checkHostAddresses refuses a host_ip where no node could honour it: a
 * host-networked service's program binds its ports itself, wherever it
 * likes; a `mode: host` port is mapped on the node its task lands on, so
 * only a loopback address (every node has it) fits. Through the mesh
 * (mode ingress) any address works: only the node that owns it publishes.
 */
export function checkHostAddresses(ctx: Ctx, ports: readonly PortSpec[], networkMode: string): void {
  for (const { segs, port } of ctx.publishedPorts) {
    if (port.hostIP === undefined || !ports.includes(port)) continue;
    if (networkMode !== 'bridge') ctx.error(segs, `host_ip ${port.hostIP}: a service with network_mode: ${networkMode} binds its ports itself, so Baton cannot choose their address; remove host_ip or network_mode`);
    else if (port.mode === 'host' && !(isLoopbackIP(port.hostIP) && isIPv4(port.hostIP)))
      ctx.error(segs, `host_ip ${port.hostIP}: a mode: host port is mapped on whichever node runs the task, so it may be bound to an IPv4 loopback address only; publish it through the routing mesh (mode: ingress), which publishes it only on the node that has this address`);
  }
}

/**
 * translateExpose reads `expose`: TCP ports become the service's expose list;
 * a UDP port (`53/udp`) becomes a port without a published one in `ports`
 * (what the VIP serves), as Baton's service spec has no UDP expose list.
 */
export function translateExpose(ctx: Ctx, v: unknown, segs: PathSegment[], ports: PortSpec[]): number[] {
  const out: number[] = [];
  if (!Array.isArray(v)) return out;
  v.forEach((item, i) => {
    const s = [...segs, i];
    let raw = text(item).trim();
    let udp = false;
    const slash = raw.lastIndexOf('/');
    if (slash >= 0) {
      const proto = raw.slice(slash + 1).toLowerCase();
      raw = raw.slice(0, slash);
      if (proto === 'sctp') return ctx.unsupported(s, 'services.*.expose[]/sctp', `protocol ${proto}`);
      if (proto !== 'tcp' && proto !== 'udp') return ctx.error(s, `invalid protocol ${JSON.stringify(proto)}: must be tcp or udp`);
      udp = proto === 'udp';
    }
    const r = parseRange(raw);
    if (!r) return ctx.error(s, `invalid port ${JSON.stringify(item)}: ports are 1-65535, ranges "low-high"`);
    for (let p = r[0]; p <= r[1]; p++) {
      if (!udp) {
        if (!out.includes(p)) out.push(p);
      } else if (!ports.some((q) => q.protocol === 'udp' && q.target === p)) ports.push({ target: p, protocol: 'udp', mode: 'ingress' });
    }
  });
  return out;
}
