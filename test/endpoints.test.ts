/**
 * The endpoints rule (pure): which services have Endpoints, what they carry,
 * and where a task's ports answer; and the PROXY protocol header bytes,
 * including IPv6, against a real socket pair on loopback.
 */
import { describe, expect, it } from 'vitest';
import { createServer, connect, type Socket } from 'node:net';
import { endpointsSpec, listed, routesPorts } from '../src/server/controllers/endpointsController.js';
import { defaultVipRange } from '../src/agent/mesh.js';
import { proxyHeader } from '../src/agent/net/proxyProtocol.js';
import { service, task } from './fixtures.js';
import type { Task } from '../src/api/types.js';

const ready = (t: Task, hostIP: string, ports: [number, number][]): Task => ({ ...t, status: { ...t.status, hostIP, ports: ports.map(([target, hostPort]) => ({ target, hostPort })) } });

describe('endpointsSpec', () => {
  it('lists the ready tasks that should run, with their host ports, and the ports to publish and serve by name', () => {
    const svc = service({ ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }, { target: 443, published: 8443, protocol: 'tcp', mode: 'host' }], expose: [9000], x: { lb: { algorithm: 'least_conn', proxyProtocol: 'v2', holdTimeoutMs: 5000 } } });
    const a = ready(task(svc, 1, { node: 'n2' }), '127.0.0.2', [[80, 20001], [9000, 20002]]);
    const b = ready(task(svc, 2, { node: 'n3', state: 'starting' }), '127.0.0.3', [[80, 20001]]);
    const c = ready(task(svc, 3, { node: 'n3', desired: 'shutdown' }), '127.0.0.3', [[80, 20003]]);
    const unhealthy = ready(task(svc, 4, { node: 'n4' }), '127.0.0.4', [[80, 20004]]);
    unhealthy.status.healthy = false;
    expect(endpointsSpec(svc, [c, b, a, unhealthy])).toEqual({
      serviceName: svc.metadata.name,
      stack: svc.spec.stack,
      shortName: svc.spec.shortName,
      networks: [{ name: 'app_default', aliases: [] }],
      published: [{ published: 8080, target: 80 }],
      targets: [80, 443, 9000],
      lb: { algorithm: 'least_conn', proxyProtocol: 'v2', holdTimeoutMs: 5000 },
      endpoints: [{ task: a.metadata.name, node: 'n2', address: '127.0.0.2', ports: { '80': 20001, '9000': 20002 } }],
    });
  });

  it('carries a task\'s own address when it has a namespace of its own, reached there on every target of the service', () => {
    const svc = service({
      ports: [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }, { target: 443, published: 8443, protocol: 'tcp', mode: 'host' }],
      expose: [9000],
      container: { ...service().spec.container, networkMode: 'bridge' },
    });
    // Its status lists only its host-mode port (mapped on its node); the mesh dials taskIP:target for every target.
    const a = ready(task(svc, 1, { node: 'n2' }), '127.0.0.2', [[443, 8443]]);
    a.status.taskIP = '10.42.2.7';
    // A task on the host's network beside it keeps its host ports.
    const b = ready(task(svc, 2, { node: 'n3' }), '127.0.0.3', [[80, 20001], [443, 8443], [9000, 20002]]);
    expect(endpointsSpec(svc, [a, b])!.endpoints).toEqual([
      { task: a.metadata.name, node: 'n2', address: '127.0.0.2', ports: { '80': 80, '443': 443, '9000': 9000 }, taskIP: '10.42.2.7' },
      { task: b.metadata.name, node: 'n3', address: '127.0.0.3', ports: { '80': 20001, '443': 8443, '9000': 20002 } },
    ]);
  });

  it('gives a bridge service without ports Endpoints with no targets (DNS needs its tasks), carrying its networks and aliases', () => {
    const svc = service({ container: { ...service().spec.container, networkMode: 'bridge' }, networks: [{ name: 'app_front', aliases: ['www'] }, { name: 'shared', aliases: [] }] });
    const a = ready(task(svc, 1, { node: 'n2' }), '127.0.0.2', []);
    a.status.taskIP = '10.42.2.9';
    expect(endpointsSpec(svc, [a])).toEqual({
      serviceName: 'app_web',
      stack: 'app',
      shortName: 'web',
      networks: [{ name: 'app_front', aliases: ['www'] }, { name: 'shared', aliases: [] }],
      published: [],
      targets: [],
      lb: { algorithm: 'round_robin', proxyProtocol: 'off', holdTimeoutMs: 30_000 },
      endpoints: [{ task: a.metadata.name, node: 'n2', address: '127.0.0.2', ports: {}, taskIP: '10.42.2.9' }],
    });
  });

  it('lists a bridge service without ports only by the tasks that have addresses of their own (a simulated node\'s have none)', () => {
    const svc = service({});
    const sim = ready(task(svc, 1, { node: 'n2' }), '127.0.0.2', []);
    const own = ready(task(svc, 2, { node: 'n2' }), '127.0.0.2', []);
    own.status.taskIP = '10.42.0.5';
    expect(endpointsSpec(svc, [sim, own])!.endpoints.map((e) => e.task)).toEqual([own.metadata.name]);
  });

  it('says a task is listed exactly when endpointsSpec lists it (the controller reconciles a service only for such a task\'s change)', () => {
    const udp = service({ ports: [{ target: 53, published: 5353, protocol: 'udp', mode: 'ingress' }] });
    const exposed = service({ expose: [9000] });
    const bare = service({});
    for (const svc of [udp, exposed, bare]) {
      const variants: Task[] = [];
      for (const taskIP of [undefined, '10.42.0.5'])
        for (const hostIP of ['', '127.0.0.2'])
          for (const desired of ['running', 'shutdown'] as const)
            for (const state of ['running', 'starting'] as const)
              for (const node of ['', 'n2']) {
                const t = ready(task(svc, variants.length + 1, { node, desired, state }), hostIP, []);
                if (taskIP) t.status.taskIP = taskIP;
                variants.push(t);
              }
      const inSpec = new Set(endpointsSpec(svc, variants)!.endpoints.map((e) => e.task));
      expect(inSpec.size).toBeGreaterThan(0);
      for (const t of variants) expect(listed(t, routesPorts(svc.spec)), `${svc.metadata.name} ${JSON.stringify(t.status)}`).toBe(inSpec.has(t.metadata.name));
    }
  });

  it('gives a service on the host\'s network, or on none, without ports no endpoints object', () => {
    expect(endpointsSpec(service({ container: { ...service().spec.container, networkMode: 'host' } }), [])).toBeUndefined();
    expect(endpointsSpec(service({ container: { ...service().spec.container, networkMode: 'none' } }), [])).toBeUndefined();
  });
});

describe('PROXY protocol header', () => {
  const pair = async (host: string): Promise<[Socket, () => void]> => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, host, r));
    const accepted = new Promise<Socket>((r) => srv.once('connection', r));
    const cl = connect({ host, port: (srv.address() as { port: number }).port });
    const s = await accepted;
    return [s, () => { cl.destroy(); s.destroy(); srv.close(); }];
  };

  it('v1 and v2 over IPv4 name the client and the address it reached', async () => {
    const [s, done] = await pair('127.0.0.1');
    expect(proxyHeader('v1', s).toString()).toBe(`PROXY TCP4 127.0.0.1 127.0.0.1 ${s.remotePort} ${s.localPort}\r\n`);
    const v2 = proxyHeader('v2', s);
    expect(v2.subarray(12, 16)).toEqual(Buffer.from([0x21, 0x11, 0, 12]));
    expect([...v2.subarray(16, 24)]).toEqual([127, 0, 0, 1, 127, 0, 0, 1]);
    expect(v2.readUInt16BE(24)).toBe(s.remotePort);
    expect(v2.readUInt16BE(26)).toBe(s.localPort);
    done();
  });

  it('v1 and v2 over IPv6 (::1)', async () => {
    const [s, done] = await pair('::1');
    expect(proxyHeader('v1', s).toString()).toBe(`PROXY TCP6 ::1 ::1 ${s.remotePort} ${s.localPort}\r\n`);
    const v2 = proxyHeader('v2', s);
    expect(v2.subarray(12, 16)).toEqual(Buffer.from([0x21, 0x21, 0, 36]));
    expect([...v2.subarray(16, 48)]).toEqual([...Array(15).fill(0), 1, ...Array(15).fill(0), 1]);
    expect(v2.readUInt16BE(48)).toBe(s.remotePort);
    done();
  });

  it('gives each node its own VIP range from its address', () => {
    expect(defaultVipRange('127.0.0.2')).toBe('127.64.2.0/24');
    expect(defaultVipRange('127.0.1.3')).toBe('127.65.3.0/24');
  });
});
