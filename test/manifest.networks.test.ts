/**
 * The Compose reader's networking (src/manifest/compose/networks.ts): the
 * top-level `networks`, a service's `networks` and `network_mode`, links,
 * endpoint_mode, and published ports across the services of one file.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { COMPOSE_KEY_POLICY, readCompose, type ComposeReadOptions, type ComposeResult } from '../src/manifest/compose/index.js';
import type { ServiceSpec } from '../src/api/types.js';

function read(text: string, opts: Partial<ComposeReadOptions> = {}): ComposeResult {
  return readCompose(text, { fileName: 'compose.yaml', baseDir: '/srv/app', env: {}, stack: 'shop', ...opts });
}

/** specs reads a file that must translate, and returns its specs by service key. */
function specs(text: string, opts: Partial<ComposeReadOptions> = {}): Record<string, ServiceSpec> {
  const r = read(text, opts);
  expect(r.errors).toEqual([]);
  return Object.fromEntries(r.services.map((s) => [s.shortName, s.spec]));
}

/** errors reads a file that must be refused (no services), and returns "path:line message" lines. */
function errors(text: string, opts: Partial<ComposeReadOptions> = {}): string[] {
  const r = read(text, opts);
  expect(r.services).toEqual([]);
  return r.errors.map((e) => `${e.path}:${e.line} ${e.message}`);
}

const warnings = (text: string, opts: Partial<ComposeReadOptions> = {}): string[] => {
  const r = read(text, opts);
  expect(r.errors).toEqual([]);
  return r.warnings.map((e) => `${e.path}:${e.line} ${e.message}`);
};

const file = (services: string, networks = '') => `services:\n${services}${networks ? `networks:\n${networks}` : ''}`;

describe('top-level networks', () => {
  it('names each network <stack>_<key>, or by name:, and an external one by its own name', () => {
    const s = specs(
      file(
        '  web:\n    image: nginx\n    networks: [front, named, ext, extold, extnamed]\n',
        '  front:\n  named: {name: custom-net}\n  ext: {external: true}\n  extold: {external: {name: old-style}}\n  extnamed: {external: true, name: other_shared}\n',
      ),
    );
    expect(s.web!.networks).toEqual([
      { name: 'shop_front', aliases: [] },
      { name: 'custom-net', aliases: [] },
      { name: 'ext', aliases: [] },
      { name: 'old-style', aliases: [] },
      { name: 'other_shared', aliases: [] },
    ]);
  });

  it('lets two stacks share a network: one declares it, the other joins it as external', () => {
    const owner = specs(file('  api:\n    image: nginx\n    networks: [shared]\n', '  shared:\n'), { stack: 'backend' });
    const guest = specs(file('  web:\n    image: nginx\n    networks: [shared]\n', '  shared: {external: true, name: backend_shared}\n'), { stack: 'front' });
    expect(owner.api!.networks).toEqual([{ name: 'backend_shared', aliases: [] }]);
    expect(guest.web!.networks).toEqual([{ name: 'backend_shared', aliases: [] }]);
  });

  it('puts services without networks on a redeclared default network, and leaves networks out when it is the stack own', () => {
    expect(specs(file('  web:\n    image: nginx\n')).web!.networks).toBeUndefined();
    expect(specs(file('  web:\n    image: nginx\n', '  default:\n    driver: bridge\n')).web!.networks).toBeUndefined();
    const s = specs(file('  web:\n    image: nginx\n  host:\n    image: nginx\n    network_mode: host\n', '  default:\n    external: true\n    name: proxy\n'));
    expect(s.web!.networks).toEqual([{ name: 'proxy', aliases: [] }]);
    expect(s.host!.networks).toBeUndefined();
  });

  it.each([undefined, 'bridge', 'overlay'])('takes driver %s as Baton network', (driver) => {
    const s = specs(file('  web:\n    image: nginx\n    networks: [front]\n', `  front:${driver ? ` {driver: ${driver}}` : ''}\n`));
    expect(s.web!.networks).toEqual([{ name: 'shop_front', aliases: [] }]);
  });

  it.each(['macvlan', 'host', 'weave'])('refuses driver %s, even with --ignore-unsupported', (driver) => {
    const message = `networks.front.driver:6 driver "${driver}" is not one Baton implements: leave it out, or write bridge or overlay; both mean Baton's network, which spans every node`;
    const text = file('  web:\n    image: nginx\n', `  front:\n    driver: ${driver}\n`);
    expect(errors(text)).toEqual([message]);
    expect(errors(text, { ignoreUnsupported: true })).toEqual([message]);
  });

  it('refuses the engine names host and none as networks of tasks', () => {
    expect(errors(file('  web:\n    image: nginx\n', '  hostnet:\n    external: true\n    name: host\n'))).toEqual([
      'networks.hostnet.name:7 "host" is the engine\'s name for the node\'s own network, not a network of tasks: give the services `network_mode: host` instead',
    ]);
    expect(errors(file('  web:\n    image: nginx\n', '  none: {external: true}\n'))).toEqual([
      'networks.none:5 "none" is the engine\'s name for no network, not a network of tasks: give the services `network_mode: none` instead',
    ]);
  });

  it('refuses a name that is not a network name, and an external name that contradicts name:', () => {
    const long = 'n'.repeat(60);
    expect(errors(file('  web:\n    image: nginx\n', `  ${long}:\n`))).toEqual([
      `networks.${long}:5 the network's name "shop_${long}" is not a network name: letters, digits, _ . - (at most 63)`,
    ]);
    expect(errors(file('  web:\n    image: nginx\n', '  ext:\n    name: a\n    external: {name: b}\n'))).toEqual([
      'networks.ext.external.name:7 conflicts with `name` ("b" vs "a"); set `name` only',
    ]);
    expect(errors(file('  web:\n    image: nginx\n', '  ext: {external: "sometimes"}\n'))).toEqual(['networks.ext.external:5 must be true or false, got "sometimes"']);
  });

  const ADDRESS = "Baton gives each task an address of its own from its node's range of --cluster-cidr";
  it.each([
    ['ipam:\n      config:\n        - subnet: 172.20.0.0/24', 'networks.front.ipam.config', `${ADDRESS}, so a network's own subnet, ip_range, gateway or aux_addresses cannot be honoured`],
    ['ipam:\n      driver: dhcp', 'networks.front.ipam.driver', ADDRESS],
    ['ipam:\n      options: {foo: bar}', 'networks.front.ipam.options', ADDRESS],
    ['driver_opts:\n      encrypted: "true"', 'networks.front.driver_opts', "Baton's network takes no driver options"],
    ['internal: true', 'networks.front.internal', "whether tasks reach beyond the cluster is decided per node (the agent's --egress), not per network"],
    ['enable_ipv6: true', 'networks.front.enable_ipv6', `${ADDRESS}, and task addresses are IPv4 only`],
    ['enable_ipv4: false', 'networks.front.enable_ipv4', ADDRESS],
  ])('refuses %s with the reason, and only warns with --ignore-unsupported', (body, path, reason) => {
    const text = file('  web:\n    image: nginx\n    networks: [front]\n', `  front:\n    ${body}\n`);
    const line = path.includes('.ipam.') ? 8 : 7;
    const message = `\`${path}\` is not supported by Baton yet: ${reason}`;
    expect(read(text).errors).toEqual([{ path, message, line }]);
    const lax = read(text, { ignoreUnsupported: true });
    expect(lax.errors).toEqual([]);
    expect(lax.warnings).toEqual([{ path, message: `${message} (ignored)`, line }]);
    expect(lax.services[0]!.spec.networks).toEqual([{ name: 'shop_front', aliases: [] }]);
  });

  it('takes the values that ask for what Baton does anyway without a word', () => {
    const text = file(
      '  web:\n    image: nginx\n    networks: [front]\n',
      '  front:\n    driver: overlay\n    driver_opts: {}\n    internal: false\n    enable_ipv4: true\n    enable_ipv6: "false"\n    attachable: false\n    ipam: {driver: default, config: []}\n    x-note: 1\n',
    );
    expect(warnings(text)).toEqual([]);
  });

  it('warns that attachable and labels change nothing', () => {
    expect(warnings(file('  web:\n    image: nginx\n', '  front:\n    attachable: true\n    labels: {team: a}\n'))).toEqual([
      "networks.front.attachable:6 `networks.front.attachable` is ignored: only Baton's tasks join Baton's networks; another stack's services join one through `external: true`",
      'networks.front.labels:7 `networks.front.labels` is ignored: network labels are metadata only',
    ]);
  });

  it('no longer warns that networks neither connect nor isolate', () => {
    const r = read(file('  web:\n    image: nginx\n    networks: [front]\n', '  front:\n'));
    expect(r.warnings).toEqual([]);
    for (const [key, row] of Object.entries(COMPOSE_KEY_POLICY)) expect(row.reason ?? '', key).not.toMatch(/host networking|host ports|no service VIPs/);
  });
});

describe('service networks', () => {
  const TOP = '  front:\n  back:\n';

  it('reads the list form, in order, on those networks only', () => {
    expect(specs(file('  web:\n    image: nginx\n    networks: [back, front]\n', TOP)).web!.networks).toEqual([
      { name: 'shop_back', aliases: [] },
      { name: 'shop_front', aliases: [] },
    ]);
  });

  it('reads the map form with aliases, and default as the stack own network', () => {
    const s = specs(file('  web:\n    image: nginx\n    networks:\n      front:\n        aliases: [www, shop.example]\n      default:\n      back: {}\n', TOP));
    expect(s.web!.networks).toEqual([
      { name: 'shop_front', aliases: ['www', 'shop.example'] },
      { name: 'shop_default', aliases: [] },
      { name: 'shop_back', aliases: [] },
    ]);
  });

  it('leaves networks out for an empty list, as for none', () => {
    expect(specs(file('  web:\n    image: nginx\n    networks: []\n', TOP)).web!.networks).toBeUndefined();
  });

  it('joins a network named twice (two keys, one name) once, with every alias', () => {
    const s = specs(file('  web:\n    image: nginx\n    networks:\n      a: {aliases: [x]}\n      b: {aliases: [x, y]}\n', '  a: {name: same}\n  b: {name: same}\n'));
    expect(s.web!.networks).toEqual([{ name: 'same', aliases: ['x', 'y'] }]);
  });

  it('refuses a network that is not declared, in both forms, listing the declared ones', () => {
    expect(errors(file('  web:\n    image: nginx\n    networks: [front, nope]\n  api:\n    image: nginx\n    networks:\n      gone:\n', TOP))).toEqual([
      'services.web.networks[1]:4 network "nope" is not declared under the top-level `networks` (declared: default, front, back)',
      'services.api.networks.gone:8 network "gone" is not declared under the top-level `networks` (declared: default, front, back)',
    ]);
    expect(errors(file('  web:\n    image: nginx\n    networks: [front]\n'))).toEqual([
      'services.web.networks[0]:4 network "front" is not declared under the top-level `networks` (declared: default)',
    ]);
  });

  it('refuses an alias that is not a DNS name', () => {
    expect(errors(file('  web:\n    image: nginx\n    networks:\n      front:\n        aliases: [ok, "bad_name", "-x"]\n', TOP))).toEqual([
      'services.web.networks.front.aliases[1]:6 "bad_name" is not a DNS name: letters, digits and "-", in labels of at most 63 separated by dots',
      'services.web.networks.front.aliases[2]:6 "-x" is not a DNS name: letters, digits and "-", in labels of at most 63 separated by dots',
    ]);
  });

  const FIXED = "Baton gives each task an address of its own from its node's range of --cluster-cidr; a fixed address cannot follow a service's replicas from node to node (reach the service by name)";
  it.each([
    ['ipv4_address: 172.20.0.5', 'ipv4_address', FIXED],
    ['ipv6_address: "2001:db8::5"', 'ipv6_address', FIXED],
    ['link_local_ips: [169.254.8.8]', 'link_local_ips', FIXED],
    ['mac_address: "02:42:ac:11:65:43"', 'mac_address', "Baton gives each task's interface a MAC address of its own; a fixed one cannot follow a service's replicas from node to node"],
    ['driver_opts: {foo: bar}', 'driver_opts', "Baton's network takes no driver options"],
    ['interface_name: eth7', 'interface_name', 'a task has one network interface, which Baton names'],
  ])('refuses %s on a service network, and keeps the network with --ignore-unsupported', (body, key, reason) => {
    const text = file(`  web:\n    image: nginx\n    networks:\n      front:\n        aliases: [www]\n        ${body}\n`, TOP);
    const path = `services.web.networks.front.${key}`;
    const message = `\`${path}\` is not supported by Baton yet: ${reason}`;
    expect(read(text).errors).toEqual([{ path, message, line: 7 }]);
    const lax = read(text, { ignoreUnsupported: true });
    expect(lax.errors).toEqual([]);
    expect(lax.warnings).toEqual([{ path, message: `${message} (ignored)`, line: 7 }]);
    expect(lax.services[0]!.spec.networks).toEqual([{ name: 'shop_front', aliases: ['www'] }]);
  });

  it('warns that priority and gw_priority change nothing', () => {
    expect(warnings(file('  web:\n    image: nginx\n    networks:\n      front: {priority: 100, gw_priority: 1}\n', TOP))).toEqual([
      'services.web.networks.front.priority:5 `services.web.networks.front.priority` is ignored: a task has one address, on all its networks at once, so there is no order in which it joins them',
      "services.web.networks.front.gw_priority:5 `services.web.networks.front.gw_priority` is ignored: a task has one address and one gateway, its node's, whatever networks it is on",
    ]);
  });
});

describe('network_mode', () => {
  it.each(['host', 'none', 'bridge'])('%s is the container network mode, with no networks', (mode) => {
    const s = specs(file(`  web:\n    image: nginx\n    network_mode: ${mode}\n`));
    expect(s.web!.container.networkMode).toBe(mode);
    expect(s.web!.networks).toBeUndefined();
  });

  it('defaults to bridge', () => {
    expect(specs(file('  web:\n    image: nginx\n')).web!.container.networkMode).toBe('bridge');
  });

  it.each(['host', 'bridge', 'none'])('network_mode: %s with networks is refused, as Compose refuses it', (mode) => {
    expect(errors(file(`  web:\n    image: nginx\n    network_mode: ${mode}\n    networks: [front]\n`, '  front:\n'))).toEqual([
      'services.web.network_mode:4 cannot be combined with `networks` (Compose refuses it too): each task of a service with `networks` has a namespace of its own (bridge) on them; keep one of the two',
    ]);
  });

  it('falls back to bridge when service: is ignored under --ignore-unsupported', () => {
    const r = read(file('  web:\n    image: nginx\n    network_mode: "service:db"\n'), { ignoreUnsupported: true });
    expect(r.errors).toEqual([]);
    expect(r.services[0]!.spec.container.networkMode).toBe('bridge');
    expect(r.warnings[0]!.message).not.toMatch(/host networking/);
    // The dropped mode does not then conflict with networks: the service is on them.
    const withNetworks = read(file('  web:\n    image: nginx\n    network_mode: "service:db"\n    networks: [front]\n', '  front:\n'), { ignoreUnsupported: true });
    expect(withNetworks.errors).toEqual([]);
    expect(withNetworks.warnings.map((w) => w.path)).toEqual(['services.web.network_mode']);
    expect(withNetworks.services[0]!.spec.networks).toEqual([{ name: 'shop_front', aliases: [] }]);
  });
});

describe('published ports across services', () => {
  it('refuses one port and protocol published by two services, naming both port paths', () => {
    expect(errors(file('  web:\n    image: nginx\n    ports: ["8080:80"]\n  api:\n    image: nginx\n    ports: ["9000:9000", {target: 81, published: 8080}]\n'))).toEqual([
      'services.api.ports[1]:7 published port 8080/tcp is already published by `services.web.ports[0]`: a port published in ingress mode is held on every node, so it leads to one service only',
    ]);
  });

  it('names the item a port range came from', () => {
    expect(errors(file('  web:\n    image: nginx\n    ports: ["7000:7000", "8000-8002:80-82"]\n  api:\n    image: nginx\n    ports:\n      - "8002:80"\n'))).toEqual([
      'services.api.ports[0]:8 published port 8002/tcp is already published by `services.web.ports[1]`: a port published in ingress mode is held on every node, so it leads to one service only',
    ]);
  });

  it('refuses an ingress port that a host-mode port or a host-networked service also takes', () => {
    expect(errors(file('  web:\n    image: nginx\n    ports: [{target: 80, published: 8080, mode: host}]\n  api:\n    image: nginx\n    ports: ["8080:80"]\n'))).toEqual([
      'services.api.ports[0]:7 published port 8080/tcp is already published by `services.web.ports[0]`: a port published in ingress mode is held on every node, so it leads to one service only',
    ]);
    expect(errors(file('  node-exporter:\n    image: prom\n    network_mode: host\n    ports: ["9100"]\n  api:\n    image: nginx\n    ports: ["9100:80"]\n'))).toEqual([
      'services.api.ports[0]:8 published port 9100/tcp is already published by `services.node-exporter.ports[0]`: a port published in ingress mode is held on every node, so it leads to one service only',
    ]);
  });

  it('lets two host-mode ports share a number: their tasks never share a node', () => {
    const s = specs(file('  a:\n    image: nginx\n    ports: [{target: 80, published: 8080, mode: host}]\n  b:\n    image: nginx\n    network_mode: host\n    ports: ["8080"]\n'));
    expect(s.a!.ports).toEqual([{ target: 80, published: 8080, protocol: 'tcp', mode: 'host' }]);
    expect(s.b!.ports).toEqual([{ target: 8080, published: 8080, protocol: 'tcp', mode: 'host' }]);
  });

  it('reports one service publishing a port twice once, where its ports are read', () => {
    expect(errors(file('  web:\n    image: nginx\n    ports: ["8080:80", "8080:81"]\n'))).toEqual(['services.web.ports:4 published port 8080/tcp appears more than once']);
  });

  it('takes unpublished and distinct ports', () => {
    specs(file('  web:\n    image: nginx\n    ports: ["80", "8080:80"]\n  api:\n    image: nginx\n    ports: ["80", "8081:80"]\n'));
  });
});

describe('links, endpoint_mode and DNS settings', () => {
  it('warns once for links without an alias, and refuses each aliased one', () => {
    expect(warnings(file('  web:\n    image: nginx\n    links: [db, "cache:cache"]\n'))).toEqual([
      'services.web.links:4 `services.web.links` is ignored: services reach each other by name on the networks they share, so a link without an alias adds nothing',
    ]);
    expect(errors(file('  web:\n    image: nginx\n    links:\n      - db\n      - "db:database"\n'))).toEqual([
      "services.web.links[1]:6 `services.web.links[1]` (alias database) is not supported by Baton yet: a link's alias is seen by the linking service alone, and a network's names are the same for every task on it: give the alias with `networks.<name>.aliases`",
    ]);
  });

  it('takes endpoint_mode vip silently, warns for dnsrr and refuses anything else', () => {
    expect(warnings(file('  web:\n    image: nginx\n    deploy: {endpoint_mode: vip}\n'))).toEqual([]);
    expect(warnings(file('  web:\n    image: nginx\n    deploy:\n      endpoint_mode: dnsrr\n'))).toEqual([
      "services.web.deploy.endpoint_mode:5 `services.web.deploy.endpoint_mode` is ignored: `<service>` resolves to the service's virtual IP, which balances over its ready tasks, and `tasks.<service>` to the tasks' own addresses, as dnsrr would",
    ]);
    expect(errors(file('  web:\n    image: nginx\n    deploy:\n      endpoint_mode: random\n'))).toEqual(['services.web.deploy.endpoint_mode:5 must be vip or dnsrr, got "random"']);
  });

  it.each(['dns: 8.8.8.8', 'dns_search: example.com', 'dns_opt: [use-vc]'])('refuses %s: the node resolver answers', (body) => {
    const key = body.slice(0, body.indexOf(':'));
    expect(errors(file(`  web:\n    image: nginx\n    ${body}\n`))).toEqual([
      `services.web.${key}:4 \`services.web.${key}\` is not supported by Baton yet: each task resolves names through its node's resolver, which answers the cluster's names and forwards the others to the agent's --dns-upstream`,
    ]);
  });
});

describe('robustness', () => {
  it('survives arbitrary values under network keys', () => {
    const value = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom('host', 'service:x', 'default', 'front', 'a:b', 'true', 'false'));
    const network = fc.dictionary(fc.constantFrom('name', 'external', 'driver', 'driver_opts', 'ipam', 'internal', 'enable_ipv6', 'attachable', 'labels'), value);
    const svcNet = fc.oneof(fc.array(fc.constantFrom('front', 'default', 'nope', 'x y')), fc.dictionary(fc.constantFrom('front', 'default', 'nope'), fc.oneof(fc.constant(null), fc.dictionary(fc.constantFrom('aliases', 'ipv4_address', 'priority'), value))));
    fc.assert(
      fc.property(network, svcNet, value, (net, networks, mode) => {
        for (const ignoreUnsupported of [false, true]) {
          const r = read(JSON.stringify({ services: { web: { image: 'nginx', networks, network_mode: mode, ports: ['80:80'] }, api: { image: 'nginx', ports: ['80:80'] } }, networks: { front: net } }), { ignoreUnsupported });
          for (const e of r.errors) expect(e.message).not.toMatch(/^internal error/);
          expect(r.errors.length).toBeGreaterThan(0); // the two services publish port 80
          expect(r.services).toEqual([]);
        }
      }),
      { numRuns: 300 },
    );
  });
});
