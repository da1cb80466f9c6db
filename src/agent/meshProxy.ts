/**
 * The routing mesh's userspace TCP proxy for one accepted connection: pick
 * an endpoint (round robin or least connections), connect with retries (no
 * byte has reached the client yet: on another endpoint at once, or on the
 * same one after 100 ms and 200 ms when it is the only one), hold the
 * connection unread while the service has no endpoint (up to hold_timeout,
 * telling the server so a service at zero starts a task), write the PROXY
 * protocol header when asked, then pipe both ways and count. And a UDP
 * port's relay (net/udpRelay.ts) wired to the same routes and counters.
 */
import { connect, type Socket } from 'node:net';
import { countersOf, dialOf, pickEndpoint, type Route, type RouteCounters } from './meshRoutes.js';
import { proxyHeader } from './net/proxyProtocol.js';
import { UdpRelay } from './net/udpRelay.js';
import type { EndpointsSpec } from '../api/types.js';

/** What the proxy needs of the mesh. */
export interface ProxyContext {
  route(service: string): Route | undefined;
  closed(): boolean;
  /** A connection waits for a service with no endpoint. */
  activate(service: string): void;
  connectTimeoutMs: number;
}

/** A connection's connects that may fail before it is dropped: the first try and this many more (no byte has reached the client yet). */
const CONNECT_RETRIES = 2;

export function proxyConnection(mesh: ProxyContext, client: Socket, service: string, target: number): void {
  client.on('error', () => client.destroy());
  const r = mesh.route(service);
  if (!r) return void client.destroy();
  r.total.connections++;
  r.total.active++;
  let counted: RouteCounters | undefined;
  client.once('close', () => {
    r.total.active--;
    r.total.bytesIn += client.bytesRead;
    r.total.bytesOut += client.bytesWritten;
    if (counted) {
      counted.bytesIn += client.bytesRead;
      counted.bytesOut += client.bytesWritten;
    }
  });
  const attempt = (avoid: string | undefined, tries: number) => {
    if (client.destroyed) return;
    // After a failed connect, another endpoint; when the failed one is all there is, it again (a task counts as
    // ready once it runs, which can be a moment before its program listens).
    const ep = pickEndpoint(r, target, avoid) ?? (avoid !== undefined ? pickEndpoint(r, target) : undefined);
    if (!ep) {
      if (avoid !== undefined) {
        r.total.dropped++;
        return void client.destroy();
      }
      return hold(mesh, r, client, () => attempt(undefined, tries));
    }
    const c = countersOf(r, ep.task);
    const started = performance.now();
    const upstream = connect({ ...dialOf(ep, target)!, allowHalfOpen: true, noDelay: true });
    upstream.setTimeout(mesh.connectTimeoutMs);
    let connected = false;
    const fail = () => {
      if (connected) return;
      upstream.destroy();
      r.total.errors++;
      c.errors++;
      if (tries < CONNECT_RETRIES && !client.destroyed) {
        r.total.retries++;
        // At once to another endpoint; the same one only after a pause that doubles (100 ms, 200 ms).
        const again = pickEndpoint(r, target, ep.task) ? 0 : 100 * 2 ** tries;
        if (again === 0) return attempt(ep.task, tries + 1);
        return void setTimeout(() => attempt(ep.task, tries + 1), again);
      }
      r.total.dropped++;
      client.destroy();
    };
    upstream.once('timeout', fail);
    upstream.once('error', () => (connected ? client.destroy() : fail()));
    upstream.once('connect', () => {
      connected = true;
      upstream.setTimeout(0);
      const ms = performance.now() - started;
      for (const k of [r.total, c]) {
        k.connectMsSum += ms;
        k.connectMsMax = Math.max(k.connectMsMax, ms);
      }
      c.connections++;
      c.active++;
      counted = c;
      r.open.set(ep.task, (r.open.get(ep.task) ?? 0) + 1);
      upstream.once('close', (hadError) => {
        c.active--;
        r.open.set(ep.task, (r.open.get(ep.task) ?? 1) - 1);
        // A clean close has already ended the client through the pipe, after what was still buffered for it;
        // destroying it here could drop the end of a response a slow client has not taken yet.
        if (hadError) client.destroy();
      });
      client.once('close', () => upstream.destroy());
      if (r.spec.lb.proxyProtocol !== 'off') upstream.write(proxyHeader(r.spec.lb.proxyProtocol, client));
      client.pipe(upstream);
      upstream.pipe(client);
    });
  };
  attempt(undefined, 0);
}

/** hold keeps a new connection waiting (unread) for an endpoint, up to the service's hold_timeout. */
function hold(mesh: ProxyContext, r: Route, client: Socket, go: () => void): void {
  r.total.held++;
  mesh.activate(r.spec.serviceName);
  let timer: NodeJS.Timeout | undefined;
  const done = () => {
    r.waiters.delete(done);
    clearTimeout(timer);
    client.off('close', done);
    if (client.destroyed) return;
    if (mesh.closed() || !mesh.route(r.spec.serviceName) || r.spec.endpoints.length === 0) {
      r.total.dropped++;
      client.destroy();
      return;
    }
    go();
  };
  r.waiters.add(done);
  client.once('close', done);
  timer = setTimeout(done, r.spec.lb.holdTimeoutMs);
}

/**
 * meshUdpRelay makes the relay of one UDP port of `service`: sessions go to
 * its endpoints as the route balances them; each session counts as a
 * connection (its datagrams' bytes too); a datagram with no endpoint to go
 * to is dropped and activates the service.
 */
export function meshUdpRelay(
  mesh: ProxyContext,
  o: { host: string; port: number; service: string; target: number; idleMs?: number; admit?: (client: string, spec: EndpointsSpec) => boolean },
  onError: (err: Error & { code?: string }) => void,
): UdpRelay {
  const { service, target } = o;
  const counters = (task: string) => {
    const r = mesh.route(service);
    return r ? { r, c: countersOf(r, task) } : undefined;
  };
  return new UdpRelay({
    host: o.host,
    port: o.port,
    idleMs: o.idleMs,
    pick: () => {
      const r = mesh.route(service);
      const ep = r && pickEndpoint(r, target);
      const d = ep && dialOf(ep, target);
      return ep && d ? { task: ep.task, host: d.host, port: d.port } : undefined;
    },
    stillThere: (task) => mesh.route(service)?.spec.endpoints.some((e) => e.task === task) ?? false,
    admit: o.admit
      ? (client) => {
          const spec = mesh.route(service)?.spec;
          return !spec || o.admit!(client, spec);
        }
      : undefined,
    onNoEndpoint: () => {
      const r = mesh.route(service);
      if (r) r.total.dropped++;
      mesh.activate(service);
    },
    onSession: (task, open) => {
      const k = counters(task);
      if (!k) return;
      const d = open ? 1 : -1;
      if (open) {
        k.r.total.connections++;
        k.c.connections++;
      }
      k.r.total.active += d;
      k.c.active += d;
      k.r.open.set(task, (k.r.open.get(task) ?? 0) + d);
    },
    onBytes: (task, bytesIn, bytesOut) => {
      const k = counters(task);
      if (!k) return;
      for (const x of [k.r.total, k.c]) {
        x.bytesIn += bytesIn;
        x.bytesOut += bytesOut;
      }
    },
    onError,
  });
}
