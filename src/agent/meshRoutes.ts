/**
 * The routing mesh's tables and the pure rules over them: a service's route
 * (its Endpoints, the balancing state, counters), where an endpoint is
 * dialled, which endpoint a new connection or UDP session goes to, and
 * which ports the kernel path can take. The Mesh (mesh.ts) owns the live
 * tables; the TCP proxy (meshProxy.ts) and the UDP relays use these.
 */
import { isIPv4 } from 'node:net';
import type { EndpointAddress, EndpointsSpec } from '../api/types.js';
import type { KernelRoute } from './nft.js';

/** Counters of one endpoint, or of a whole service. */
export interface RouteCounters {
  connections: number;
  active: number;
  bytesIn: number;
  bytesOut: number;
  /** Connects that failed (refused, timed out). */
  errors: number;
  /** Connections dropped: no endpoint within hold_timeout, or the retry failed too. */
  dropped: number;
  retries: number;
  /** Connections that waited for an endpoint. */
  held: number;
  connectMsSum: number;
  connectMsMax: number;
}

/** addCounters adds `b` into `a` (the maximum of the connect times). */
export function addCounters(a: RouteCounters, b: RouteCounters): void {
  for (const k of Object.keys(b) as (keyof RouteCounters)[]) a[k] = k === 'connectMsMax' ? Math.max(a[k], b[k]) : a[k] + b[k];
}

export const zero = (): RouteCounters => ({ connections: 0, active: 0, bytesIn: 0, bytesOut: 0, errors: 0, dropped: 0, retries: 0, held: 0, connectMsSum: 0, connectMsMax: 0 });

export interface Route {
  spec: EndpointsSpec;
  next: number;
  /** Open connections per endpoint (task name), for least_conn. */
  open: Map<string, number>;
  waiters: Set<() => void>;
  total: RouteCounters;
  byTask: Map<string, RouteCounters>;
}

/**
 * hostPortOf is the host port that endpoint `e` serves container port
 * `target` on, when its address is an IPv4 address and the port a port
 * number: Endpoints carry what agents reported, and nothing received goes
 * into a ruleset or a connect unchecked.
 */
export function hostPortOf(e: EndpointAddress, target: number): number | undefined {
  const p = e.ports[String(target)];
  return isIPv4(e.address) && Number.isInteger(p) && p! >= 1 && p! <= 65535 ? p : undefined;
}

/**
 * dialOf is where the mesh connects for endpoint `e`'s container port
 * `target`: a task in a namespace of its own answers on its own address
 * and its container port (reached through its node's task range, which
 * every node routes); a task on its node's network, at the node's address
 * and the host port it was given. Undefined when neither is usable.
 */
export function dialOf(e: EndpointAddress, target: number): { host: string; port: number } | undefined {
  if (e.taskIP !== undefined) return isIPv4(e.taskIP) && Number.isInteger(target) && target >= 1 && target <= 65535 ? { host: e.taskIP, port: target } : undefined;
  const p = hostPortOf(e, target);
  return p === undefined ? undefined : { host: e.address, port: p };
}

/** defaultVipRange gives each node its own /24 for VIPs, from its address: 127.0.b.c → 127.(64 + b % 64).c.0/24. */
export function defaultVipRange(address: string): string {
  const m = /^127\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  const b = m ? Number(m[2]) : 0;
  const c = m ? Number(m[3]) : 1;
  return `127.${64 + (b % 64)}.${c}.0/24`;
}

/** vipPool lists the addresses of a range, skipping network and broadcast-like ends. */
export function vipPool(range: string): string[] {
  const m = /^127\.(\d+)\.(\d+)\.0\/(16|24)$/.exec(range);
  if (!m) throw new Error(`VIP range ${range} must be 127.X.Y.0/24 or 127.X.0.0/16`);
  const [x, y, bits] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const out: string[] = [];
  const thirds = bits === 24 ? [y] : Array.from({ length: 256 }, (_, i) => i);
  for (const t of thirds) for (let d = 1; d < 255; d++) out.push(`127.${x}.${t}.${d}`);
  return out;
}

export function pickEndpoint(r: Route, target: number, avoid?: string): EndpointAddress | undefined {
  const eps = r.spec.endpoints.filter((e) => dialOf(e, target) !== undefined && e.task !== avoid);
  if (eps.length === 0) return undefined;
  if (r.spec.lb.algorithm === 'least_conn') {
    let best = eps[0]!;
    let bestOpen = Infinity;
    // Ties go round the ring, so equal loads still rotate.
    for (let k = 0; k < eps.length; k++) {
      const e = eps[(r.next + k) % eps.length]!;
      const n = r.open.get(e.task) ?? 0;
      if (n < bestOpen) {
        best = e;
        bestOpen = n;
      }
    }
    r.next = (r.next + 1) % eps.length;
    return best;
  }
  const e = eps[r.next % eps.length]!;
  r.next = (r.next + 1) % Math.max(1, eps.length);
  return e;
}

/** countersOf is an endpoint's counters in its route, made on first use. */
export function countersOf(r: Route, task: string): RouteCounters {
  let c = r.byTask.get(task);
  if (!c) r.byTask.set(task, (c = zero()));
  return c;
}

/** kernelOnly: a service's port needs nothing the kernel cannot do (round robin; for TCP, no PROXY protocol header either). */
export function kernelOnly(spec: EndpointsSpec, protocol: 'udp' | undefined): boolean {
  return spec.lb.algorithm === 'round_robin' && (protocol === 'udp' || spec.lb.proxyProtocol === 'off');
}

/** kernelEndpoints: where the kernel's rules send a service's container port `target`. */
export function kernelEndpoints(spec: EndpointsSpec, target: number): KernelRoute['endpoints'] {
  return spec.endpoints.flatMap((e) => {
    const d = dialOf(e, target);
    return d ? [{ task: e.task, address: d.host, port: d.port }] : [];
  });
}
