/**
 * Ports (src/manifest/compose/ports.ts): `ports` in both syntaxes with
 * ranges, what is refused, `expose`, and host networking's fixed ports.
 */
import { describe, it, expect } from 'vitest';
import { read, service, errorsOf } from '../helpers/compose.js';

describe('readCompose: supported keys', () => {
  it.each([
    ['ports: [80]', [{ target: 80, protocol: 'tcp', mode: 'ingress' }]],
    ['ports: ["80"]', [{ target: 80, protocol: 'tcp', mode: 'ingress' }]],
    ['ports: ["8080:80"]', [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }]],
    ['ports: ["8080:80/tcp"]', [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }]],
    [
      'ports: ["8000-8001:80-81"]',
      [
        { target: 80, published: 8000, protocol: 'tcp', mode: 'ingress' },
        { target: 81, published: 8001, protocol: 'tcp', mode: 'ingress' },
      ],
    ],
    [
      'ports: ["3001-3002"]',
      [
        { target: 3001, protocol: 'tcp', mode: 'ingress' },
        { target: 3002, protocol: 'tcp', mode: 'ingress' },
      ],
    ],
    [
      'ports:\n  - target: 443\n    published: "8443"\n    protocol: tcp\n    mode: host\n    name: https\n    app_protocol: https',
      [{ target: 443, published: 8443, protocol: 'tcp', mode: 'host', name: 'https' }],
    ],
    ['ports:\n  - target: 80', [{ target: 80, protocol: 'tcp', mode: 'ingress' }]],
    ['ports: ["53:53/udp", "53:53"]', [{ target: 53, published: 53, protocol: 'udp', mode: 'ingress' }, { target: 53, published: 53, protocol: 'tcp', mode: 'ingress' }]],
    ['ports: ["7000-7001:7/UDP"]', 'error'],
    ['ports:\n  - {target: 5353, published: 5353, protocol: udp, mode: host}', [{ target: 5353, published: 5353, protocol: 'udp', mode: 'host' }]],
  ])('%s', (body, ports) => {
    if (ports === 'error') return void expect(errorsOf(body)).toHaveLength(1);
    expect(service(body).ports).toEqual(ports);
  });

  it.each([
    ['ports: ["5060:5060/sctp"]', '`services.web.ports[0]` (protocol sctp) is not supported by Baton yet: Baton publishes TCP and UDP ports'],
    ['ports: ["53:53/icmp"]', 'invalid protocol "icmp" in port "53:53/icmp": must be tcp or udp'],
    ['ports: ["53:53/udp"]\nnetwork_mode: host', "a UDP port needs the task's own network (network_mode: host has none to forward into); remove network_mode or the UDP port"],
    ['ports: ["localhost:8080:80"]', 'host_ip "localhost" is not an IP address'],
    ['ports: ["[fe80::1%eth0]:8080:80"]', 'host_ip "fe80::1%eth0": a zone index names an interface of one host; give the address alone'],
    ['ports: ["10.0.0.1;flush ruleset:8080:80"]', 'host_ip "10.0.0.1;flush ruleset" is not an IP address'],
    ['ports:\n  - {target: 80, published: 8080, host_ip: "127.0.0.1 "}', 'host_ip "127.0.0.1 " is not an IP address'],
    [
      'ports: ["8000-8010:80"]',
      '`services.web.ports[0]` (published range 8000-8010 for one target port) is not supported by Baton yet: a published range for one target port asks for any free port of it, chosen where the container starts; the routing mesh publishes one port, the same on every node, so name one (e.g. "8000:80")',
    ],
    [
      'ports:\n  - {target: 80, published: "8000-8010"}',
      '`services.web.ports[0].published` (range 8000-8010) is not supported by Baton yet: a published range for one target port asks for any free port of it, chosen where the container starts; the routing mesh publishes one port, the same on every node, so name one (e.g. "8000:80")',
    ],
    [
      'ports:\n  - {target: 80, published: 8080, host_ip: 10.0.0.5, mode: host}',
      'host_ip 10.0.0.5: a mode: host port is mapped on whichever node runs the task, so it may be bound to an IPv4 loopback address only; publish it through the routing mesh (mode: ingress), which publishes it only on the node that has this address',
    ],
    ['network_mode: host\nports: ["127.0.0.1:9100:9100"]', 'host_ip 127.0.0.1: a service with network_mode: host binds its ports itself, so Baton cannot choose their address; remove host_ip or network_mode'],
    ['ports: ["8000-8002:80-81"]', 'invalid port "8000-8002:80-81": the published range must be as long as the target range'],
    ['ports: ["99999"]', 'invalid port "99999": ports are 1-65535, ranges "low-high"'],
    ['ports: ["8080:80", "8080:81"]', 'published port 8080/tcp appears more than once'],
  ])('refuses %s', (body, message) => {
    expect(errorsOf(body).map((e) => e.slice(e.indexOf(': ') + 2))).toEqual([message]);
  });

  it('drops what it cannot honour under --ignore-unsupported, with a warning each', () => {
    const r = read('services:\n  web:\n    image: nginx\n    ports: ["127.0.0.1:8080:80", "5060:5060/sctp", "9000-9009:90"]\n', { ignoreUnsupported: true });
    expect(r.errors).toEqual([]);
    expect(r.services[0]!.spec.ports).toEqual([{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress', hostIP: '127.0.0.1' }]);
    expect(r.warnings.map((w) => w.path)).toEqual(['services.web.ports[1]', 'services.web.ports[2]']);
  });

  it.each([
    ['ports: ["127.0.0.1:8080:80"]', [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress', hostIP: '127.0.0.1' }]],
    ['ports: ["127.0.0.1::80"]', [{ target: 80, protocol: 'tcp', mode: 'ingress', hostIP: '127.0.0.1' }]],
    ['ports: ["[::1]:8080:80/udp"]', [{ target: 80, published: 8080, protocol: 'udp', mode: 'ingress', hostIP: '::1' }]],
    ['ports: ["::1:8080:80"]', [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress', hostIP: '::1' }]],
    // Every address is what no host_ip means.
    ['ports: ["0.0.0.0:8080:80"]', [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }]],
    ['ports: ["[::]:8080:80"]', [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }]],
    [
      'ports: ["192.168.1.10:8000-8001:80-81"]',
      [
        { target: 80, published: 8000, protocol: 'tcp', mode: 'ingress', hostIP: '192.168.1.10' },
        { target: 81, published: 8001, protocol: 'tcp', mode: 'ingress', hostIP: '192.168.1.10' },
      ],
    ],
    ['ports:\n  - {target: 80, published: 8080, host_ip: 10.0.0.5}', [{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress', hostIP: '10.0.0.5' }]],
    ['ports:\n  - {target: 80, published: 8080, host_ip: 127.0.0.1, mode: host}', [{ target: 80, published: 8080, protocol: 'tcp', mode: 'host', hostIP: '127.0.0.1' }]],
    ['ports:\n  - {target: 80, published: 8080, host_ip: "0.0.0.0", mode: host}', [{ target: 80, published: 8080, protocol: 'tcp', mode: 'host' }]],
  ])('binds %s to its host IP', (body, ports) => {
    expect(service(body).ports).toEqual(ports);
  });

  it('reads expose', () => {
    expect(service('expose: ["3000", 4000, "5000-5001", "6000/tcp"]').expose).toEqual([3000, 4000, 5000, 5001, 6000]);
    // A UDP port to expose is a port without a published one (the VIP serves it); SCTP is refused.
    const s = service('expose: ["53/udp", "53"]');
    expect(s.expose).toEqual([53]);
    expect(s.ports).toEqual([{ target: 53, protocol: 'udp', mode: 'ingress' }]);
    expect(errorsOf('expose: ["53/sctp"]')).toHaveLength(1);
  });

  it('makes the ports of a network_mode: host service fixed host ports, as host-mode publishing is', () => {
    expect(service('network_mode: host\nports: ["9100", "8080:80"]').ports).toEqual([
      { target: 9100, published: 9100, protocol: 'tcp', mode: 'host' },
      { target: 80, published: 8080, protocol: 'tcp', mode: 'host' },
    ]);
    expect(service('ports: ["9100"]').ports).toEqual([{ target: 9100, protocol: 'tcp', mode: 'ingress' }]);
  });
});
