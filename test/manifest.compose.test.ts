import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  COMPOSE_KEY_POLICY,
  formatKeyPath,
  parseDotEnv,
  readCompose,
  type ComposeReadOptions,
  type ComposeResult,
} from '../src/manifest/compose/index.js';
import { interpolateString, interpolateTree } from '../src/manifest/interpolate.js';
import { parseBytes, parseDurationMs } from '../src/manifest/units.js';
import type { ServiceSpec } from '../src/api/types.js';

const BASE = '/srv/app';

function read(text: string, opts: Partial<ComposeReadOptions> = {}): ComposeResult {
  return readCompose(text, { fileName: 'compose.yaml', baseDir: BASE, env: {}, ...opts });
}

/** service reads a one-service file (`services: { web: <body> }`) and returns its spec, failing on any error. */
function service(body: string, opts: Partial<ComposeReadOptions> = {}): ServiceSpec {
  const r = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`, opts);
  expect(r.errors).toEqual([]);
  expect(r.services).toHaveLength(1);
  return r.services[0]!.spec;
}

/** errorsOf reads a one-service file and returns its errors as "path: message" lines. */
function errorsOf(body: string, opts: Partial<ComposeReadOptions> = {}): string[] {
  const r = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`, opts);
  if (r.errors.length > 0) expect(r.services).toEqual([]);
  return r.errors.map((e) => `${e.path}: ${e.message}`);
}

function warningsOf(body: string, opts: Partial<ComposeReadOptions> = {}): string[] {
  const r = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`, opts);
  expect(r.errors).toEqual([]);
  return r.warnings.map((e) => `${e.path}: ${e.message}`);
}

describe('units', () => {
  it.each([
    ['10s', 10_000],
    ['1m30s', 90_000],
    ['500ms', 500],
    ['1h', 3_600_000],
    ['1.5s', 1500],
    ['2h45m', 9_900_000],
    ['0', 0],
    ['250us', 0],
    [0, 0],
  ])('duration %j → %d ms', (input, ms) => {
    expect(parseDurationMs(input, 'x')).toEqual({ ok: true, value: ms });
  });

  it.each(['10', '-1s', '1x', 'abc', '', 30, '1s2'])('duration %j is refused with its path', (input) => {
    const r = parseDurationMs(input, 'services.web.stop_grace_period');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.path).toBe('services.web.stop_grace_period');
  });

  it.each([
    ['512m', 512 * 1024 ** 2],
    ['1g', 1024 ** 3],
    ['100k', 102_400],
    ['1024', 1024],
    ['2gb', 2 * 1024 ** 3],
    ['50M', 50 * 1024 ** 2],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['100b', 100],
    [4096, 4096],
  ])('size %j → %d bytes', (input, n) => {
    expect(parseBytes(input, 'x')).toEqual({ ok: true, value: n });
  });

  it.each(['12q', '-1m', 'g', '', true])('size %j is refused with its path', (input) => {
    const r = parseBytes(input, 'services.web.mem_limit');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.path).toBe('services.web.mem_limit');
  });
});

describe('interpolation', () => {
  const env: Record<string, string> = { SET: 'v', EMPTY: '' };
  const lookup = (n: string) => env[n];
  it.each([
    ['$SET', 'v'],
    ['${SET}', 'v'],
    ['a-${SET}-b', 'a-v-b'],
    ['${UNSET:-d}', 'd'],
    ['${EMPTY:-d}', 'd'],
    ['${EMPTY-d}', ''],
    ['${UNSET-d}', 'd'],
    ['${SET:-d}', 'v'],
    ['${SET:+alt}', 'alt'],
    ['${EMPTY:+alt}', ''],
    ['${EMPTY+alt}', 'alt'],
    ['${UNSET+alt}', ''],
    ['${UNSET:-${SET}}', 'v'],
    ['${UNSET:-a${UNSET2:-b}c}', 'abc'],
    ['$$', '$'],
    ['$$SET', '$SET'],
    ['$${SET}', '${SET}'],
    ['cost $ 5', 'cost $ 5'],
    ['$1 and $', '$1 and $'],
    ['${EMPTY?err}', ''],
  ])('%s → %j', (input, out) => {
    const r = interpolateString(input, lookup);
    expect(r.errors).toEqual([]);
    expect(r.value).toBe(out);
  });

  it.each([
    ['${UNSET:?need it}', 'required variable UNSET is missing a value: need it'],
    ['${EMPTY:?}', 'required variable EMPTY is missing a value'],
    ['${UNSET?gone}', 'required variable UNSET is missing a value: gone'],
    ['${UNSET', 'invalid interpolation format: "${UNSET" has no closing "}"'],
    ['${1BAD}', 'invalid interpolation format: "${1BAD}" (expected a variable name)'],
    ['${A*B}', 'invalid interpolation format: "${A*B}" (expected "}", ":-", "-", ":?", "?", ":+" or "+" after A)'],
  ])('%s is an error', (input, message) => {
    expect(interpolateString(input, lookup).errors).toEqual([message]);
  });

  it('reports unset variables without defaults', () => {
    expect(interpolateString('$NOPE ${NOPE2}', lookup).unset).toEqual(['NOPE', 'NOPE2']);
  });

  it('interpolates values, never keys, and reports each path', () => {
    const r = interpolateTree({ '${SET}': '$SET', list: ['${X:?x}', 3, true, null] }, lookup);
    expect(r.value).toEqual({ '${SET}': 'v', list: ['', 3, true, null] });
    expect(r.errors).toEqual([{ path: ['list', 0], message: 'required variable X is missing a value: x' }]);
  });

  it('reads the interpolation env in a Compose file and reports ${VAR:?msg} with its path and line', () => {
    const r = read('services:\n  web:\n    image: "nginx:${TAG:?set TAG first}"\n');
    expect(r.errors).toEqual([{ path: 'services.web.image', message: 'required variable TAG is missing a value: set TAG first', line: 3 }]);
    expect(r.services).toEqual([]);
    const ok = read('services:\n  web:\n    image: "nginx:${TAG:?set TAG first}"\n', { env: { TAG: '1.27' } });
    expect(ok.services[0]!.spec.container.image).toBe('nginx:1.27');
  });

  it('turns $$ into a literal $ and leaves the command un-expanded', () => {
    const spec = service('command: echo $$HOME "$${USER}"\nenvironment:\n  PRICE: "$$5"');
    expect(spec.container.command).toEqual(['echo', '$HOME', '${USER}']);
    expect(spec.container.env).toEqual({ PRICE: '$5' });
  });

  it('warns once per unset variable, at its first use', () => {
    const r = interpolateTree({ a: '$X', b: ['${X}', '$Y', '$X'] }, lookup);
    expect(r.warnings).toEqual([
      { path: ['a'], message: 'variable "X" is not set; substituting an empty string (here and in 2 more places)' },
      { path: ['b', 1], message: 'variable "Y" is not set; substituting an empty string' },
    ]);
  });

  it('warns about unset variables with the key path', () => {
    const r = read('services:\n  web:\n    image: nginx\n    environment:\n      A: ${MISSING}\n');
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([{ path: 'services.web.environment.A', message: 'variable "MISSING" is not set; substituting an empty string', line: 5 }]);
  });
});

describe('parseDotEnv', () => {
  it('reads the dotenv format', () => {
    const text = [
      '# comment',
      '',
      'A=1',
      'export B = two ',
      'C="quoted # not a comment"',
      "D='single $A'",
      'E=value # comment',
      'F="line1\\nline2"',
      'G="multi',
      'line"',
      'H=${A}-$B',
      'I="${A}x"',
      'J=',
      'K=a=b',
      'L=\'x\' # trailing',
    ].join('\r\n');
    expect(parseDotEnv(text)).toEqual({
      A: '1',
      B: 'two',
      C: 'quoted # not a comment',
      D: 'single $A',
      E: 'value',
      F: 'line1\nline2',
      G: 'multi\nline',
      H: '1-two',
      I: '1x',
      J: '',
      K: 'a=b',
      L: 'x',
    });
  });

  it('takes bare keys and unknown variables from the lookup', () => {
    const env: Record<string, string> = { FROM_ENV: 'e', OTHER: 'o' };
    expect(parseDotEnv('FROM_ENV\nMISSING\nX=${OTHER}', (n) => env[n])).toEqual({ FROM_ENV: 'e', X: 'o' });
  });

  it.each([
    ['A="open', 'line 1: unterminated double quote'],
    ['OK=1\nBAD KEY=1', 'line 2: expected "=" after BAD'],
    ['1A=x', 'line 1: invalid variable name "1A"'],
    ['A="x" y', 'line 1: unexpected text after the closing quote: "y"'],
    ['A=${B:?needed}', 'line 1: required variable B is missing a value: needed'],
  ])('refuses %j', (text, message) => {
    expect(() => parseDotEnv(text)).toThrow(message);
  });
});

describe('readCompose: supported keys', () => {
  it('fills ContainerSpec and ServiceSpec defaults', () => {
    const r = read('services:\n  web:\n    image: nginx\n', { baseDir: '/srv/My App!' });
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.stack).toBe('myapp');
    expect(r.services).toEqual([
      {
        name: 'myapp_web',
        shortName: 'web',
        labels: { 'baton.stack': 'myapp' },
        spec: {
          stack: 'myapp',
          shortName: 'web',
          mode: 'replicated',
          replicas: 1,
          container: {
            image: 'nginx',
            env: {},
            labels: {},
            readOnly: false,
            capAdd: [],
            capDrop: [],
            tmpfs: [],
            ulimits: {},
            sysctls: {},
            extraHosts: [],
            init: true,
            stopGracePeriodMs: 10_000,
            mounts: [],
            networkMode: 'bridge',
          },
          ports: [],
          expose: [],
          resources: { reservations: { cpus: 0, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } },
          restartPolicy: { condition: 'any', delayMs: 200, maxDelayMs: 30_000, maxAttempts: 0, windowMs: 0 },
          placement: { constraints: [] },
          x: {},
        },
      },
    ]);
  });

  it('names the stack from --stack, then `name`, then the directory', () => {
    expect(read('name: shop\nservices:\n  web:\n    image: nginx\n').services[0]!.name).toBe('shop_web');
    expect(read('name: shop\nservices:\n  web:\n    image: nginx\n', { stack: 'prod' }).services[0]!.name).toBe('prod_web');
    expect(read('services:\n  web:\n    image: nginx\n', { stack: 'Bad Name' }).errors).toEqual([
      { path: '--stack', message: 'invalid stack name "Bad Name": use lowercase letters, digits, "_" and "-", starting with a letter or digit' },
    ]);
    expect(read('name: Shop\nservices:\n  web:\n    image: nginx\n').errors[0]).toMatchObject({ path: 'name', line: 1 });
  });

  it('requires an image and warns about build next to one', () => {
    expect(read('services:\n  web:\n    build: .\n').errors).toEqual([{ path: 'services.web.image', message: 'image is required (Baton does not build images)', line: 2 }]);
    const r = read('services:\n  web:\n    image: app:1\n    build: .\n');
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([{ path: 'services.web.build', message: '`services.web.build` is ignored: Baton does not build images; it runs `image`', line: 4 }]);
  });

  it.each([
    ['command: bundle exec thin -p 3000', { command: ['bundle', 'exec', 'thin', '-p', '3000'] }],
    [`command: sh -c "echo 'a b'; exit 1"`, { command: ['sh', '-c', "echo 'a b'; exit 1"] }],
    ['command: ["a", "b c"]', { command: ['a', 'b c'] }],
    ['command: null', {}],
    ['command: ""', { command: [] }],
    ['command: []', { command: [] }],
    ['entrypoint: /entry.sh --flag', { entrypoint: ['/entry.sh', '--flag'] }],
    ['entrypoint: []', { entrypoint: [] }],
    ['entrypoint: ["tini", "--"]', { entrypoint: ['tini', '--'] }],
  ])('%s', (body, expected) => {
    const c = service(body).container;
    expect({ command: c.command, entrypoint: c.entrypoint }).toEqual({ command: undefined, entrypoint: undefined, ...expected });
  });

  it('refuses shell operators and unbalanced quotes in a string command', () => {
    expect(errorsOf('command: a && b')).toEqual([
      'services.web.command: "a && b" contains the shell operator "&&": write the command as a list, or as ["sh", "-c", "..."]',
    ]);
    expect(errorsOf(`command: echo 'oops`)).toEqual([`services.web.command: "echo 'oops" has an unterminated single quote`]);
  });

  it.each([
    ['environment:\n  A: "1"\n  B: 2\n  C: true\n  D: ""', {}, { A: '1', B: '2', C: 'true', D: '' }],
    ['environment:\n  - A=1\n  - B=x=y\n  - C=', {}, { A: '1', B: 'x=y', C: '' }],
    ['environment:\n  - FROM_ENV\n  - ABSENT', { FROM_ENV: 'e' }, { FROM_ENV: 'e' }],
    ['environment:\n  FROM_ENV:\n  ABSENT:', { FROM_ENV: 'e' }, { FROM_ENV: 'e' }],
  ])('environment %#', (body, env, expected) => {
    expect(service(body, { env }).container.env).toEqual(expected);
  });

  it('reads env_file relative to baseDir, in order, under environment', () => {
    const files: Record<string, string> = {
      '/srv/app/a.env': 'A=from-a\nB=from-a\nREF=${HOST_VAR}',
      '/srv/app/conf/b.env': 'B=from-b\nC=from-b',
    };
    const readFile = (p: string) => {
      if (p in files) return files[p]!;
      throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    };
    const spec = service(
      'env_file:\n  - a.env\n  - path: ./conf/b.env\n  - path: missing.env\n    required: false\nenvironment:\n  C: from-environment',
      { readFile, env: { HOST_VAR: 'h' } },
    );
    expect(spec.container.env).toEqual({ A: 'from-a', B: 'from-b', C: 'from-environment', REF: 'h' });
    expect(service('env_file: a.env', { readFile }).container.env).toMatchObject({ A: 'from-a' });
    expect(errorsOf('env_file: nope.env', { readFile })).toEqual(['services.web.env_file: env file /srv/app/nope.env not found']);
    expect(errorsOf('env_file: bad.env', { readFile: () => 'NOT VALID' })).toEqual([
      'services.web.env_file: env file /srv/app/bad.env: line 1: expected "=" after NOT',
    ]);
  });

  it('reads container labels and service labels', () => {
    const r = read('services:\n  web:\n    image: nginx\n    labels: [a=1, b]\n    deploy:\n      labels:\n        traefik.enable: "true"\n        n: 5\n', { stack: 's' });
    expect(r.services[0]!.spec.container.labels).toEqual({ a: '1', b: '' });
    expect(r.services[0]!.labels).toEqual({ 'traefik.enable': 'true', n: '5', 'baton.stack': 's' });
  });

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
    [
      'ports: ["127.0.0.1:8080:80"]',
      '`services.web.ports[0]` (host IP 127.0.0.1) is not supported by Baton yet: Baton publishes ports on every host address in this release',
    ],
    ['ports: ["8000-8002:80-81"]', 'invalid port "8000-8002:80-81": the published range must be as long as the target range'],
    ['ports: ["99999"]', 'invalid port "99999": ports are 1-65535, ranges "low-high"'],
    ['ports: ["8080:80", "8080:81"]', 'published port 8080/tcp appears more than once'],
  ])('refuses %s', (body, message) => {
    expect(errorsOf(body).map((e) => e.slice(e.indexOf(': ') + 2))).toEqual([message]);
  });

  it('keeps the port without its host IP under --ignore-unsupported', () => {
    const r = read('services:\n  web:\n    image: nginx\n    ports: ["127.0.0.1:8080:80", "5060:5060/sctp"]\n', { ignoreUnsupported: true });
    expect(r.errors).toEqual([]);
    expect(r.services[0]!.spec.ports).toEqual([{ target: 80, published: 8080, protocol: 'tcp', mode: 'ingress' }]);
    expect(r.warnings.map((w) => w.path)).toEqual(['services.web.ports[0]', 'services.web.ports[1]']);
  });

  it('reads expose', () => {
    expect(service('expose: ["3000", 4000, "5000-5001", "6000/tcp"]').expose).toEqual([3000, 4000, 5000, 5001, 6000]);
    // A UDP port to expose is a port without a published one (the VIP serves it); SCTP is refused.
    const s = service('expose: ["53/udp", "53"]');
    expect(s.expose).toEqual([53]);
    expect(s.ports).toEqual([{ target: 53, protocol: 'udp', mode: 'ingress' }]);
    expect(errorsOf('expose: ["53/sctp"]')).toHaveLength(1);
  });

  it.each([
    ['network_mode: host', 'host'],
    ['network_mode: none', 'none'],
    ['network_mode: bridge', 'bridge'],
  ])('%s', (body, mode) => {
    expect(service(body).container.networkMode).toBe(mode);
  });

  it('makes the ports of a network_mode: host service fixed host ports, as host-mode publishing is', () => {
    expect(service('network_mode: host\nports: ["9100", "8080:80"]').ports).toEqual([
      { target: 9100, published: 9100, protocol: 'tcp', mode: 'host' },
      { target: 80, published: 8080, protocol: 'tcp', mode: 'host' },
    ]);
    expect(service('ports: ["9100"]').ports).toEqual([{ target: 9100, protocol: 'tcp', mode: 'ingress' }]);
  });

  it.each([
    ['service:db', "each task has a network namespace of its own, and sharing another service's is not supported: reach that service by name, or run both programs in one service"],
    ['container:abc', "each task has a network namespace of its own; Baton does not join a container's"],
  ])('refuses network_mode %s with the reason', (mode, reason) => {
    expect(errorsOf(`network_mode: "${mode}"`)).toEqual([`services.web.network_mode: \`services.web.network_mode\` (${mode}) is not supported by Baton yet: ${reason}`]);
  });

  it('refuses a network_mode Compose does not know, pointing a network name to networks', () => {
    expect(errorsOf('network_mode: default')).toEqual([
      `services.web.network_mode: must be bridge (the default: a network namespace of the task's own), host or none; got "default"`,
    ]);
    const r = read('services:\n  web:\n    image: nginx\n    network_mode: front\nnetworks:\n  front:\n');
    expect(r.errors).toEqual([
      {
        path: 'services.web.network_mode',
        message: `must be bridge (the default: a network namespace of the task's own), host or none; got "front"; to join network "front", write \`networks: [front]\``,
        line: 4,
      },
    ]);
  });

  it('reads replicas, scale and their conflict', () => {
    expect(service('deploy:\n  replicas: 3').replicas).toBe(3);
    expect(service('deploy:\n  replicas: "4"').replicas).toBe(4);
    expect(service('scale: 2').replicas).toBe(2);
    expect(service('deploy:\n  mode: replicated\n  replicas: 0').replicas).toBe(0);
    expect(errorsOf('scale: 2\ndeploy:\n  replicas: 3')).toEqual(['services.web.scale: conflicts with deploy.replicas (2 vs 3); set one of them']);
  });

  it('reads resources, and the short keys as the same fields', () => {
    const spec = service(
      'deploy:\n  resources:\n    limits: {cpus: "0.5", memory: 512M, pids: 100}\n    reservations: {cpus: 0.25, memory: 1g}',
    );
    expect(spec.resources).toEqual({
      limits: { cpus: 0.5, memoryBytes: 512 * 1024 ** 2, pids: 100 },
      reservations: { cpus: 0.25, memoryBytes: 1024 ** 3 },
    });
    expect(service('cpus: 1.5\nmem_limit: 2g\nmem_reservation: 1g\npids_limit: 50').resources).toEqual({
      limits: { cpus: 1.5, memoryBytes: 2 * 1024 ** 3, pids: 50 },
      reservations: { cpus: 0, memoryBytes: 1024 ** 3 },
    });
    expect(errorsOf('cpus: 1\ndeploy:\n  resources:\n    limits: {cpus: 2}')).toEqual([
      'services.web.cpus: conflicts with deploy.resources.limits.cpus (1 vs 2); set one of them',
    ]);
    expect(errorsOf('deploy:\n  resources:\n    reservations: {cpus: "0.0005"}')).toEqual([
      'services.web.deploy.resources.reservations.cpus: "0.0005" is finer than a millicore; use at most three decimals (0.001 cpus = 1m)',
    ]);
    expect(errorsOf('deploy:\n  resources:\n    limits: {memory: lots}')).toEqual([
      'services.web.deploy.resources.limits.memory: invalid size "lots": use a number and an optional unit (b, k, m, g, t, p), e.g. "512m"',
    ]);
  });

  it('reads volumes: binds relative to baseDir, declared named volumes, anonymous volumes, tmpfs', () => {
    const r = read(
      [
        'services:',
        '  web:',
        '    image: nginx',
        '    volumes:',
        '      - .:/code',
        '      - ./conf:/etc/app:ro',
        '      - ~/cache:/cache',
        '      - /abs:/abs:rw',
        '      - data:/data',
        '      - ext:/ext',
        '      - named:/named',
        '      - /anon',
        '      - {type: bind, source: ./src, target: /src, read_only: true}',
        '      - {type: volume, source: data, target: /data2}',
        '      - {type: volume, target: /anon2}',
        '      - {type: tmpfs, target: /tmp}',
        '      - {type: tmpfs, target: /run, tmpfs: {size: 64m, mode: 01777}}',
        'volumes:',
        '  data:',
        '  ext: {external: true}',
        '  named: {name: custom-name}',
      ].join('\n'),
      { stack: 'st', env: { HOME: '/home/me' } },
    );
    expect(r.errors).toEqual([]);
    const c = r.services[0]!.spec.container;
    expect(c.mounts).toEqual([
      { type: 'bind', source: '/srv/app', target: '/code', readOnly: false },
      { type: 'bind', source: '/srv/app/conf', target: '/etc/app', readOnly: true },
      { type: 'bind', source: '/home/me/cache', target: '/cache', readOnly: false },
      { type: 'bind', source: '/abs', target: '/abs', readOnly: false },
      { type: 'volume', source: 'st_data', target: '/data', readOnly: false },
      { type: 'volume', source: 'ext', target: '/ext', readOnly: false },
      { type: 'volume', source: 'custom-name', target: '/named', readOnly: false },
      { type: 'volume', target: '/anon', readOnly: false },
      { type: 'bind', source: '/srv/app/src', target: '/src', readOnly: true },
      { type: 'volume', source: 'st_data', target: '/data2', readOnly: false },
      { type: 'volume', target: '/anon2', readOnly: false },
      { type: 'tmpfs', target: '/tmp', readOnly: false },
    ]);
    expect(c.tmpfs).toEqual(['/run:size=67108864,mode=1777']);
  });

  it('refuses undeclared named volumes and duplicate targets', () => {
    expect(errorsOf('volumes: ["data:/data"]')).toEqual(['services.web.volumes[0]: volume "data" is not declared under the top-level `volumes`']);
    expect(errorsOf('volumes: ["/a:/x", "/b:/x"]')).toEqual(['services.web.volumes[1]: mount target /x is already used by services.web.volumes[0]']);
  });

  it.each<[string, Partial<ServiceSpec['container']>]>([
    ['user: "1000:1000"', { user: '1000:1000' }],
    ['working_dir: /app', { workingDir: '/app' }],
    ['read_only: true', { readOnly: true }],
    ['read_only: "true"', { readOnly: true }],
    ['cap_add: [NET_ADMIN]\ncap_drop: [ALL]', { capAdd: ['NET_ADMIN'], capDrop: ['ALL'] }],
    ['tmpfs: /run', { tmpfs: ['/run'] }],
    ['tmpfs: [/run, "/tmp:size=64m"]', { tmpfs: ['/run', '/tmp:size=64m'] }],
    ['ulimits:\n  nproc: 65535\n  nofile: {soft: 20000, hard: 40000}', { ulimits: { nproc: { soft: 65535, hard: 65535 }, nofile: { soft: 20000, hard: 40000 } } }],
    ['sysctls:\n  net.core.somaxconn: 1024', { sysctls: { 'net.core.somaxconn': '1024' } }],
    ['sysctls: ["net.ipv4.ip_forward=1"]', { sysctls: { 'net.ipv4.ip_forward': '1' } }],
    ['extra_hosts: ["a:1.2.3.4", "b=5.6.7.8", "v6:::1"]', { extraHosts: ['a:1.2.3.4', 'b:5.6.7.8', 'v6:::1'] }],
    ['extra_hosts:\n  a: 1.2.3.4\n  b: [5.6.7.8, "::1"]', { extraHosts: ['a:1.2.3.4', 'b:5.6.7.8', 'b:::1'] }],
    ['hostname: web1', { hostname: 'web1' }],
    ['init: false', { init: false }],
    ['stop_signal: SIGINT', { stopSignal: 'SIGINT' }],
    ['stop_grace_period: 1m30s', { stopGracePeriodMs: 90_000 }],
    ['pull_policy: always', { pullPolicy: 'always' }],
    ['pull_policy: missing', { pullPolicy: 'missing' }],
    ['pull_policy: if_not_present', { pullPolicy: 'missing' }],
    ['pull_policy: never', { pullPolicy: 'never' }],
  ])('%s', (body, expected) => {
    expect(service(body).container).toMatchObject(expected);
  });

  it('refuses pull_policy build and bad values', () => {
    expect(errorsOf('pull_policy: build')).toEqual(['services.web.pull_policy: pull_policy "build" needs an image build, and Baton does not build images']);
    expect(errorsOf('ulimits:\n  nofile: {soft: 2, hard: 1}')).toEqual(['services.web.ulimits.nofile: soft limit 2 exceeds hard limit 1']);
    expect(errorsOf('stop_grace_period: "10"')).toEqual(['services.web.stop_grace_period: invalid duration "10": missing unit (for example "10s")']);
    expect(errorsOf('stop_grace_period: 10')).toEqual(['services.web.stop_grace_period: must be a string']);
  });

  it.each<[string, ServiceSpec['container']['healthcheck']]>([
    ['healthcheck:\n  test: curl -f http://localhost', { test: ['CMD-SHELL', 'curl -f http://localhost'], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 }],
    [
      'healthcheck:\n  test: ["CMD", "pg_isready"]\n  interval: 5s\n  timeout: 2s\n  retries: 5\n  start_period: 1m\n  start_interval: 1s',
      { test: ['CMD', 'pg_isready'], intervalMs: 5000, timeoutMs: 2000, retries: 5, startPeriodMs: 60_000, startIntervalMs: 1000 },
    ],
    ['healthcheck:\n  disable: true', { test: ['NONE'], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 }],
    ['healthcheck:\n  interval: 10s', { test: [], intervalMs: 10_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 }],
  ])('%s', (body, hc) => {
    expect(service(body).container.healthcheck).toEqual(hc);
  });

  it('refuses a healthcheck list without NONE/CMD/CMD-SHELL', () => {
    expect(errorsOf('healthcheck:\n  test: ["curl", "x"]')).toEqual([
      'services.web.healthcheck.test[0]: a test list starts with NONE, CMD or CMD-SHELL, got "curl" (use a string for a shell command)',
    ]);
  });

  it.each<[string, Partial<ServiceSpec['restartPolicy']>]>([
    ['restart: "no"', { condition: 'none' }],
    ['restart: always', { condition: 'any' }],
    ['restart: unless-stopped', { condition: 'any' }],
    ['restart: on-failure', { condition: 'on-failure', maxAttempts: 0 }],
    ['restart: on-failure:3', { condition: 'on-failure', maxAttempts: 3 }],
    [
      'deploy:\n  restart_policy:\n    condition: on-failure\n    delay: 5s\n    max_attempts: 3\n    window: 2m',
      { condition: 'on-failure', delayMs: 5000, maxDelayMs: 30_000, maxAttempts: 3, windowMs: 120_000 },
    ],
    ['deploy:\n  restart_policy:\n    condition: none', { condition: 'none', delayMs: 200 }],
    ['x-baton:\n  restart:\n    backoff: {initial: 1s, max: 2m, factor: 3}', { condition: 'any', delayMs: 1000, maxDelayMs: 120_000, factor: 3 }],
    ['deploy:\n  restart_policy:\n    delay: 5s\nx-baton:\n  restart:\n    backoff: {max: 10s}', { delayMs: 5000, maxDelayMs: 10_000 }],
    ['deploy:\n  restart_policy:\n    delay: 2m', { condition: 'any', delayMs: 120_000, maxDelayMs: 120_000 }],
  ])('%s', (body, rp) => {
    expect(service(body).restartPolicy).toMatchObject(rp);
  });

  it('warns that restart is ignored next to deploy.restart_policy', () => {
    expect(warningsOf('restart: always\ndeploy:\n  restart_policy:\n    condition: none')).toEqual([
      'services.web.restart: `services.web.restart` is ignored: `deploy.restart_policy` takes precedence, as in Swarm',
    ]);
  });

  it('stores placement constraints as written', () => {
    expect(service('deploy:\n  placement:\n    constraints: ["node.role==manager", "node.labels.disk == ssd"]').placement).toEqual({
      constraints: ['node.role==manager', 'node.labels.disk == ssd'],
    });
  });
});

describe('readCompose: YAML', () => {
  it('resolves anchors and merge keys', () => {
    const r = read(
      [
        'x-defaults: &defaults',
        '  image: base:1',
        '  environment: &env',
        '    A: "1"',
        '  restart: "no"',
        'services:',
        '  one:',
        '    <<: *defaults',
        '  two:',
        '    <<: *defaults',
        '    image: other:2',
        '    environment:',
        '      <<: *env',
        '      B: "2"',
      ].join('\n'),
    );
    expect(r.errors).toEqual([]);
    const [one, two] = r.services.map((s) => s.spec);
    expect(one!.container).toMatchObject({ image: 'base:1', env: { A: '1' } });
    expect(one!.restartPolicy.condition).toBe('none');
    expect(two!.container).toMatchObject({ image: 'other:2', env: { A: '1', B: '2' } });
  });

  it('points a schema error inside merged content at the anchored line', () => {
    const r = read('x-base: &base\n  image: nginx\n  enviroment: {}\nservices:\n  web:\n    <<: *base\n');
    expect(r.errors).toEqual([{ path: 'services.web.enviroment', message: 'unknown key `enviroment`; did you mean `environment`?', line: 3 }]);
  });

  it('reports YAML syntax errors with their line', () => {
    const r = read('services:\n  web:\n    image: nginx\n    ports: [80\n');
    expect(r.services).toEqual([]);
    expect(r.errors.length).toBeGreaterThan(0);
    expect(r.errors[0]).toMatchObject({ path: 'compose.yaml' });
    expect(r.errors[0]!.message).toMatch(/^YAML syntax error: /);
    expect(r.errors[0]!.line).toBeGreaterThanOrEqual(4);
  });

  it('refuses duplicate keys', () => {
    expect(read('services:\n  web:\n    image: a\n    image: b\n').errors).toEqual([{ path: 'compose.yaml', message: 'YAML syntax error: Map keys must be unique', line: 4 }]);
  });

  it('refuses an empty file and a multi-document Compose file', () => {
    expect(read('# nothing\n').errors).toEqual([{ path: 'compose.yaml', message: 'the file is empty: a Compose file needs a `services` mapping' }]);
    expect(read('services:\n  a: {image: x}\n---\nservices:\n  b: {image: y}\n').errors).toEqual([
      { path: 'documents[1]', message: 'a Compose file holds one YAML document; this file has 2', line: 4 },
    ]);
  });

  it('gives Compose tags their single-file meaning', () => {
    const r = read('x-base: &base\n  image: nginx\n  command: [a]\nservices:\n  web:\n    <<: *base\n    user: !reset root\n    hostname: !override h\n');
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.services[0]!.spec.container.user).toBeUndefined();
    expect(r.services[0]!.spec.container.hostname).toBe('h');
  });
});

describe('readCompose: Kubernetes', () => {
  it('refuses each Kubernetes document with its kind and name', () => {
    const r = read('apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\n# svc\napiVersion: v1\nkind: Service\nmetadata:\n  name: web-svc\n---\n');
    expect(r.services).toEqual([]);
    expect(r.errors).toEqual([
      { path: 'documents[0]', message: 'Kubernetes manifests are not supported yet: Deployment web', line: 1 },
      { path: 'documents[1]', message: 'Kubernetes manifests are not supported yet: Service web-svc', line: 7 },
    ]);
  });

  it('names objects without metadata by kind alone', () => {
    expect(read('apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [a.yaml]\n').errors).toEqual([
      { path: 'documents[0]', message: 'Kubernetes manifests are not supported yet: Kustomization', line: 1 },
    ]);
  });
});

describe('readCompose: validation', () => {
  it('names an unknown key, suggests the nearest one and gives its line', () => {
    const r = read('services:\n  web:\n    image: nginx\n    enviroment:\n      A: 1\n    deploy:\n      resources:\n        limits:\n          cpu: 1\n');
    expect(r.services).toEqual([]);
    expect(r.errors).toEqual([
      { path: 'services.web.enviroment', message: 'unknown key `enviroment`; did you mean `environment`?', line: 4 },
      { path: 'services.web.deploy.resources.limits.cpu', message: 'unknown key `cpu`; did you mean `cpus`?', line: 9 },
    ]);
  });

  it('suggests nothing when no key is close', () => {
    expect(read('services:\n  web:\n    image: nginx\n    zzzzzzzz: 1\n').errors).toEqual([{ path: 'services.web.zzzzzzzz', message: 'unknown key `zzzzzzzz`', line: 4 }]);
    expect(read('servics:\n  web:\n    image: nginx\n').errors[0]).toEqual({ path: 'servics', message: 'unknown key `servics`; did you mean `services`?', line: 1 });
  });

  it('folds oneOf cascades into one message per path, and collects all errors', () => {
    const r = read(
      'services:\n  web:\n    image: nginx\n    environment: 5\n    ports: [true]\n    command: {a: 1}\n    healthcheck:\n      test: [1]\n    volumes:\n      - {source: /a}\n',
    );
    expect(r.errors).toEqual([
      { path: 'services.web.environment', message: 'must be a mapping or a list', line: 4 },
      { path: 'services.web.ports[0]', message: 'must be a number, a string or a mapping', line: 5 },
      { path: 'services.web.command', message: 'must be null, a string or a list', line: 6 },
      { path: 'services.web.healthcheck.test[0]', message: 'must be a string', line: 8 },
      { path: 'services.web.volumes[0]', message: '`type` is required', line: 10 },
    ]);
  });

  it('validates service names', () => {
    expect(read('services:\n  "my app": {image: x}\n  .hidden: {image: x}\n').errors).toEqual([
      { path: 'services["my app"]', message: 'invalid name `my app`: must match ^[a-zA-Z0-9._-]+$', line: 2 },
      { path: 'services[".hidden"]', message: 'invalid service name ".hidden": use letters, digits, "_", "." and "-", starting with a letter or digit', line: 3 },
    ]);
  });

  it('ignores x-* extensions but checks x-baton', () => {
    const r = read('x-anything: {a: 1}\nservices:\n  web:\n    image: nginx\n    x-foo: bar\n    deploy:\n      x-note: hi\n');
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(service('x-baton: {}').x).toEqual({});
    expect(errorsOf('x-baton:\n  foo: 1')).toEqual(['services.web.x-baton.foo: unknown x-baton key "foo"']);
    expect(read('x-baton: {}\nservices:\n  web: {image: x}\n').errors).toEqual([
      { path: 'x-baton', message: '`x-baton` belongs under a service (services.<name>.x-baton)', line: 1 },
    ]);
  });

  it('reads x-baton.tolerations and says what is wrong with a bad one', () => {
    expect(service('x-baton:\n  tolerations:\n    - {key: gpu, value: "true", effect: NoSchedule}\n    - {key: maint, operator: Exists}\n    - {operator: Exists}').placement.tolerations).toEqual([
      { key: 'gpu', operator: 'Equal', value: 'true', effect: 'NoSchedule' },
      { key: 'maint', operator: 'Exists' },
      { operator: 'Exists' },
    ]);
    expect(errorsOf('x-baton:\n  tolerations:\n    - {key: gpu, operator: Maybe}\n    - {key: a, effect: Never}\n    - {value: x}\n    - {key: a, operator: Exists, value: x, colour: red}')).toEqual([
      'services.web.x-baton.tolerations[0].operator: must be Equal or Exists, got "Maybe"',
      'services.web.x-baton.tolerations[1].effect: must be NoSchedule, PreferNoSchedule or NoExecute, got "Never"',
      'services.web.x-baton.tolerations[2]: a toleration without a key must use operator Exists (it then tolerates every taint)',
      'services.web.x-baton.tolerations[3].colour: unknown key "colour" (a toleration has key, operator, value, effect)',
      'services.web.x-baton.tolerations[3].value: operator Exists takes no value',
    ]);
  });

  it('reads x-baton affinity and anti_affinity, naming siblings by their short name', () => {
    const r = read('name: shop\nservices:\n  db: {image: x}\n  api:\n    image: x\n    x-baton:\n      affinity: [db]\n      anti_affinity:\n        - {service: api}\n        - {service: other_cache, required: false}\n');
    expect(r.errors).toEqual([]);
    expect(r.services.find((s) => s.name === 'shop_api')!.spec.placement).toMatchObject({
      affinity: [{ service: 'shop_db', required: true }],
      antiAffinity: [{ service: 'shop_api', required: true }, { service: 'other_cache', required: false }],
    });
    expect(errorsOf('x-baton:\n  affinity: db\n  anti_affinity: [{service: a, required: maybe, weight: 2}, 3]')).toEqual([
      'services.web.x-baton.affinity: must be a list of service names, or of {service: NAME, required: true|false}',
      'services.web.x-baton.anti_affinity[0].weight: unknown key "weight" (an anti_affinity entry has service and required)',
      'services.web.x-baton.anti_affinity[0].required: must be true or false',
      'services.web.x-baton.anti_affinity[1]: must be a service name or {service: NAME, required: true|false}',
    ]);
  });

  it('reads x-baton healthcheck and readiness probes over a Compose healthcheck, and says what is wrong with a bad one', () => {
    const c = service('healthcheck:\n  test: ["CMD", "true"]\n  interval: 5s\n  retries: 2\nx-baton:\n  healthcheck: {http: /healthz, port: 8080}\n  readiness: {tcp: 5432, interval: 1s}').container;
    expect(c.healthcheck).toEqual({ test: ['CMD', 'true'], http: { path: '/healthz', port: 8080 }, intervalMs: 5000, timeoutMs: 30_000, retries: 2, startPeriodMs: 0 });
    expect(c.readiness).toEqual({ test: [], tcp: { port: 5432 }, intervalMs: 1000, timeoutMs: 2000, retries: 3, startPeriodMs: 0 });
    expect(service('x-baton:\n  readiness: {test: "test -f /ready", retries: 1}').container.readiness).toMatchObject({ test: ['CMD-SHELL', 'test -f /ready'], retries: 1 });
    expect(errorsOf('x-baton:\n  healthcheck: {http: healthz, port: 99999}\n  readiness: {tcp: 80, test: [CMD, x], every: 1s}\n  restart: {backoff: {initial: fast, factor: 0.5, max: 1s}}')).toEqual([
      'services.web.x-baton.healthcheck.http: must be a path starting with "/", got "healthz"',
      'services.web.x-baton.readiness.every: unknown key "every" (x-baton.readiness has http and port, tcp, test, interval, timeout, retries, start_period)',
      'services.web.x-baton.readiness: takes one of http, tcp or test',
      'services.web.x-baton.restart.backoff.initial: invalid duration "fast": use a number and a unit (ns, us, ms, s, m, h), e.g. "1m30s"',
      'services.web.x-baton.restart.backoff.factor: must be a number from 1 to 10 (each crash multiplies the delay by it), got 0.5',
    ]);
    expect(errorsOf('x-baton:\n  healthcheck: {port: 80}')).toEqual([
      'services.web.x-baton.healthcheck.port: port goes with http (for tcp, write tcp: PORT)',
      'services.web.x-baton.healthcheck: says what to probe: {http: /healthz, port: 8080} or {tcp: 5432} or {test: [CMD, ...]}',
    ]);
  });

  it('reads x-baton.lb with its defaults, and says what is wrong with a bad one', () => {
    expect(service('x-baton:\n  lb: {algorithm: least_conn, proxy_protocol: v1, hold_timeout: 5s}').x.lb).toEqual({ algorithm: 'least_conn', proxyProtocol: 'v1', holdTimeoutMs: 5000 });
    expect(service('x-baton:\n  lb: {proxy_protocol: off}').x.lb).toEqual({ algorithm: 'round_robin', proxyProtocol: 'off', holdTimeoutMs: 30_000 });
    expect(errorsOf('x-baton:\n  lb: {algorithm: random, proxy_protocol: v3, hold_timeout: soon, sticky: true}')).toEqual([
      'services.web.x-baton.lb.algorithm: must be round_robin (the default) or least_conn, got "random"',
      'services.web.x-baton.lb.proxy_protocol: must be off (the default), v1 or v2, got "v3"',
      'services.web.x-baton.lb.hold_timeout: invalid duration "soon": use a number and a unit (ns, us, ms, s, m, h), e.g. "1m30s"',
      'services.web.x-baton.lb.sticky: unknown key "sticky" (x-baton.lb has algorithm, proxy_protocol, hold_timeout)',
    ]);
  });

  it('reads update_config and rollback_config with Swarm\'s defaults, and says what is wrong', () => {
    const spec = service('deploy:\n  replicas: 4\n  update_config: {parallelism: 2, delay: 10s, failure_action: rollback, monitor: 30s, max_failure_ratio: 0.25, order: start-first}\n  rollback_config: {parallelism: 0}');
    expect(spec.update).toEqual({ parallelism: 2, delayMs: 10_000, failureAction: 'rollback', monitorMs: 30_000, maxFailureRatio: 0.25, order: 'start-first' });
    expect(spec.rollbackConfig).toEqual({ parallelism: 0, delayMs: 0, failureAction: 'pause', monitorMs: 5000, maxFailureRatio: 0, order: 'stop-first' });
    expect(service('deploy: {replicas: 2}').update).toBeUndefined();
    expect(errorsOf('deploy:\n  update_config: {parallelism: -1, failure_action: explode, max_failure_ratio: 2, order: random, monitor: soon}\n  rollback_config: {failure_action: rollback}')).toEqual([
      'services.web.deploy.update_config.order: must be one of: start-first, stop-first',
      'services.web.deploy.update_config.parallelism: must be an integer ≥ 0, got -1',
      'services.web.deploy.update_config.monitor: invalid duration "soon": use a number and a unit (ns, us, ms, s, m, h), e.g. "1m30s"',
      'services.web.deploy.update_config.failure_action: must be one of: pause, continue, rollback; got "explode"',
      'services.web.deploy.update_config.max_failure_ratio: must be a number from 0 to 1 (the share of tasks that may fail), got 2',
      'services.web.deploy.rollback_config.failure_action: must be one of: pause, continue; got "rollback"',
    ]);
  });

  it('reads x-baton.canary as a count or {count, auto_promote}, at most one per replica', () => {
    expect(service('deploy: {replicas: 3}\nx-baton:\n  canary: 1').canary).toEqual({ count: 1 });
    expect(service('deploy: {replicas: 3}\nx-baton:\n  canary: {count: 2, auto_promote: 1m}').canary).toEqual({ count: 2, autoPromoteMs: 60_000 });
    expect(errorsOf('deploy: {replicas: 1}\nx-baton:\n  canary: 2')).toEqual(['services.web.x-baton.canary: 2 canaries for 1 replica(s): at most one per replica']);
    expect(errorsOf('x-baton:\n  canary: {count: 0, auto: 1}')).toEqual([
      'services.web.x-baton.canary.count: must be a number of canary tasks (1 or more), or {count, auto_promote: 5m}; got {"count":0,"auto":1}',
    ]);
  });

  it('reads jobs (replicated-job, global-job) with completions, parallelism and backoff_limit', () => {
    expect(service('deploy: {mode: replicated-job, replicas: 4}\nx-baton: {parallelism: 2}')).toMatchObject({ mode: 'replicated-job', replicas: 0, job: { completions: 4, parallelism: 2, backoffLimit: 6 } });
    expect(service('deploy: {mode: replicated-job}\nx-baton: {completions: 3, backoff_limit: 0}').job).toEqual({ completions: 3, parallelism: 3, backoffLimit: 0 });
    expect(service('deploy: {mode: global-job}').mode).toBe('global-job');
    expect(errorsOf('x-baton: {completions: 2}')).toEqual(['services.web.x-baton.completions: only a job has completions: use deploy.mode replicated-job or global-job']);
    expect(errorsOf('deploy: {mode: replicated-job}\nx-baton: {parallelism: 0}')).toEqual(['services.web.x-baton.parallelism: must be a whole number from 1 to 100000 (tasks of the job that run at once), got 0']);
  });

  it('reads x-baton.schedule (cron job): 5 or 6 fields, time zone, concurrency, history; and says what is wrong', () => {
    expect(service('x-baton:\n  schedule: "*/5 * * * *"')).toMatchObject({ mode: 'replicated-job', schedule: { cron: '*/5 * * * *', concurrency: 'allow', successfulHistory: 3, failedHistory: 1 } });
    expect(service('x-baton:\n  schedule: {cron: "*/10 * * * * *", time_zone: Europe/Paris, concurrency: forbid, successful_history: 1, failed_history: 0}').schedule).toEqual({ cron: '*/10 * * * * *', timeZone: 'Europe/Paris', concurrency: 'forbid', successfulHistory: 1, failedHistory: 0 });
    expect(errorsOf('x-baton:\n  schedule: "61 * * * *"')).toEqual(['services.web.x-baton.schedule: "61 * * * *": Invalid value for minute: 61']);
    expect(errorsOf('x-baton:\n  schedule: "* * *"')).toEqual(['services.web.x-baton.schedule: must have 5 fields (minute hour day month weekday) or 6 (seconds first), got 3: "* * *"']);
    expect(errorsOf('x-baton:\n  schedule: {cron: "* * * * *", time_zone: Mars/Olympus, concurrency: sometimes}')).toEqual([
      'services.web.x-baton.schedule.time_zone: unknown time zone "Mars/Olympus" (an IANA name such as Europe/Paris)',
      'services.web.x-baton.schedule.concurrency: must be allow, forbid or replace, got "sometimes"',
    ]);
    expect(errorsOf('deploy: {mode: global}\nx-baton:\n  schedule: "* * * * *"')).toEqual(['services.web.x-baton.schedule: a schedule runs a job: use deploy.mode replicated-job or global-job (or leave mode out)']);
  });

  it('reads x-baton.autoscale: targets, windows, replicas as the starting count within min and max; says what is wrong', () => {
    const spec = service('ports: ["8080:80"]\ndeploy: {replicas: 1}\nx-baton:\n  autoscale: {min: 2, max: 8, cpu: 60%, rps: 100, scale_down: {stabilization: 60s, step: 1}}');
    expect(spec.autoscale).toEqual({ min: 2, max: 8, cpu: 0.6, rps: 100, scaleUp: { stabilizationMs: 0 }, scaleDown: { stabilizationMs: 60_000, step: 1 } });
    expect(spec.replicas).toBe(2);
    expect(errorsOf('x-baton:\n  autoscale: {min: 0, max: 3, cpu: 60%}')).toEqual(['services.web.x-baton.autoscale.min: scaling to zero (min: 0) needs a traffic target, rps or concurrency: CPU and memory never ask for zero']);
    expect(errorsOf('x-baton:\n  autoscale: {max: 3, rps: 10}')).toEqual(['services.web.x-baton.autoscale: rps and concurrency are measured by the routing mesh: the service needs published ports']);
    expect(errorsOf('x-baton:\n  autoscale: {min: 4, max: 2, cpu: lots, burst: 1}')).toEqual([
      'services.web.x-baton.autoscale.burst: unknown key "burst" (x-baton.autoscale has min, max, cpu, memory, rps, concurrency, scale_up, scale_down)',
      'services.web.x-baton.autoscale.min: min (4) must not be above max (2)',
      'services.web.x-baton.autoscale.cpu: must be a target utilisation such as 60%, got "lots"',
    ]);
  });

  it('reads x-baton.priority', () => {
    expect(service('x-baton:\n  priority: 100').placement.priority).toBe(100);
    expect(service('x-baton:\n  priority: 0').placement.priority).toBeUndefined();
    expect(errorsOf('x-baton:\n  priority: high')).toEqual(['services.web.x-baton.priority: must be a whole number from -1000000 to 1000000 (higher runs first and may preempt lower), got "high"']);
  });

  it('reads deploy.mode: global, and refuses replicas beside it', () => {
    const spec = service('deploy:\n  mode: global\n  placement:\n    constraints: ["node.labels.role == edge"]');
    expect(spec).toMatchObject({ mode: 'global', replicas: 0, placement: { constraints: ['node.labels.role == edge'] } });
    expect(errorsOf('deploy:\n  mode: global\n  replicas: 3')).toEqual(['services.web.deploy.replicas: a global service runs one task on every eligible node; remove replicas, or use mode: replicated']);
  });

  it('reads placement: constraints (checked), spread preferences, max replicas per node, and x-baton.strategy', () => {
    const spec = service('deploy:\n  placement:\n    constraints: ["node.labels.zone == a", "node.platform.os == linux"]\n    preferences:\n      - spread: node.labels.zone\n      - spread: node.labels.rack\n    max_replicas_per_node: 2\nx-baton:\n  strategy: binpack');
    expect(spec.placement).toEqual({ constraints: ['node.labels.zone == a', 'node.platform.os == linux'], preferences: ['node.labels.zone', 'node.labels.rack'], maxReplicasPerNode: 2, strategy: 'binpack' });
    expect(service('deploy:\n  placement:\n    max_replicas_per_node: 0').placement).toEqual({ constraints: [] });
    expect(errorsOf('deploy:\n  placement:\n    constraints: ["zone=a", "engine.labels.x == y", "node.color == red"]\n    preferences:\n      - spread: node.hostname\n    max_replicas_per_node: -1\nx-baton:\n  strategy: tight')).toEqual([
      'services.web.deploy.placement.constraints[0]: "zone=a" must look like <attribute> == <value> or <attribute> != <value>, e.g. node.labels.zone == a',
      'services.web.deploy.placement.constraints[1]: "engine.labels.x": engine labels are not supported; use node labels (baton node update --label-add)',
      'services.web.deploy.placement.constraints[2]: "node.color" is not a node attribute Baton knows; use one of node.id, node.hostname, node.name, node.role, node.platform.os, node.platform.arch, node.labels.<key>',
      'services.web.deploy.placement.preferences[0].spread: "node.hostname": Baton spreads over node labels only (node.labels.<key>)',
      'services.web.deploy.placement.max_replicas_per_node: must be a whole number ≥ 0 (0 means no limit), got -1',
      'services.web.x-baton.strategy: must be spread (fewest tasks, least allocated; the default) or binpack (most allocated first), got "tight"',
    ]);
  });

  it('formats key paths', () => {
    expect(formatKeyPath(['services', 'web', 'ports', 0])).toBe('services.web.ports[0]');
    expect(formatKeyPath(['services', 'web', 'labels', 'com.example.a'])).toBe('services.web.labels["com.example.a"]');
  });
});

describe('readCompose: key policy', () => {
  it.each([
    ['privileged: true', 'services.web.privileged', '`services.web.privileged` is not supported by Baton yet'],
    ['secrets: [s]', 'services.web.secrets', '`services.web.secrets` is not supported by Baton yet'],
    ['links: ["db:database"]', 'services.web.links[0]', "`services.web.links[0]` (alias database) is not supported by Baton yet: a link's alias is seen by the linking service alone, and a network's names are the same for every task on it: give the alias with `networks.<name>.aliases`"],
    ['platform: wasi/wasm', 'services.web.platform', '`services.web.platform` is not supported by Baton yet: it selects which image variant runs'],
    ['profiles: [debug]', 'services.web.profiles', '`services.web.profiles` is not supported by Baton yet: profiles choose which services run, and Baton has no --profile yet'],
    ['cpu_shares: 512', 'services.web.cpu_shares', '`services.web.cpu_shares` is not supported by Baton yet: use `deploy.resources.limits.cpus`'],
    ['devices: ["/dev/ttyUSB0:/dev/ttyUSB0"]', 'services.web.devices', '`services.web.devices` is not supported by Baton yet'],
  ])('%s is an error, and a warning with --ignore-unsupported', (body, path, message) => {
    const line = 3 + body.split('\n').length; // the last line of the body holds the refused key or value
    const strict = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`);
    expect(strict.services).toEqual([]);
    expect(strict.errors).toEqual([{ path, message, line }]);
    const lax = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`, { ignoreUnsupported: true });
    expect(lax.errors).toEqual([]);
    expect(lax.warnings).toEqual([{ path, message: `${message} (ignored)`, line }]);
    expect(lax.services).toHaveLength(1);
    expect(lax.services[0]!.spec.mode).toBe('replicated');
  });

  it('keeps every unsupported error, not just the first', () => {
    expect(errorsOf('privileged: true\npid: host\nipc: host').map((e) => e.split(':')[0])).toEqual([
      'services.web.privileged',
      'services.web.pid',
      'services.web.ipc',
    ]);
  });

  it.each([
    ['container_name: web1', 'services.web.container_name'],
    ['logging:\n  driver: json-file', 'services.web.logging'],
    ['links: [db]', 'services.web.links'],
    ['depends_on: [db]', 'services.web.depends_on'],
    ['stdin_open: true', 'services.web.stdin_open'],
    ['tty: true', 'services.web.tty'],
    ['deploy:\n  endpoint_mode: dnsrr', 'services.web.deploy.endpoint_mode'],
  ])('%s only warns', (body, path) => {
    const r = read(`services:\n  web:\n    image: nginx\n${body.replace(/^/gm, '    ')}\n`);
    expect(r.errors).toEqual([]);
    expect(r.services).toHaveLength(1);
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatchObject({ path, line: path.startsWith('services.web.deploy.') ? 5 : 4 });
    expect(r.warnings[0]!.message).toMatch(new RegExp(`^\`${path.replace(/\./g, '\\.')}\` is ignored: .+`));
  });

  it('warns about top-level definitions alone and the obsolete version', () => {
    const r = read('version: "3.9"\nservices:\n  web: {image: x}\nnetworks:\n  front:\nsecrets:\n  s: {file: ./s}\nconfigs:\n  c: {file: ./c}\n');
    expect(r.errors).toEqual([]);
    expect(r.warnings.map((w) => [w.path, w.line])).toEqual([
      ['version', 1],
      ['secrets', 6],
      ['configs', 8],
    ]);
  });

  it('refuses non-local volume drivers', () => {
    expect(read('services:\n  web: {image: x}\nvolumes:\n  v: {driver: rexray}\n').errors).toEqual([
      { path: 'volumes.v.driver', message: '`volumes.v.driver` is not supported by Baton yet: Baton creates volumes with the engine\'s "local" driver', line: 4 },
    ]);
    expect(read('services:\n  web: {image: x}\nvolumes:\n  v: {driver: local}\n').errors).toEqual([]);
  });

  it('gives every row a reason when it only warns', () => {
    for (const [key, row] of Object.entries(COMPOSE_KEY_POLICY)) if (row.kind === 'warn') expect(row.reason, key).toBeTruthy();
  });
});

describe('readCompose: robustness', () => {
  const serviceKeys = [
    'image', 'command', 'entrypoint', 'environment', 'env_file', 'labels', 'ports', 'expose', 'network_mode', 'deploy', 'scale',
    'volumes', 'user', 'working_dir', 'read_only', 'cap_add', 'tmpfs', 'ulimits', 'sysctls', 'extra_hosts', 'hostname', 'init',
    'stop_signal', 'stop_grace_period', 'healthcheck', 'pull_policy', 'restart', 'cpus', 'mem_limit', 'x-baton', 'secrets', 'build',
    'networks', 'links',
  ];
  const noInternalError = (r: ComposeResult) => {
    for (const e of r.errors) expect(e.message).not.toMatch(/^internal error/);
    for (const e of r.errors) expect(e.path).toBeTruthy();
    if (r.errors.length > 0) expect(r.services).toEqual([]);
  };

  it('survives arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => noInternalError(read(text))),
      { numRuns: 300 },
    );
  });

  it('survives arbitrary values under known keys', () => {
    const value = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.constantFrom('80:80', '1.2.3.4:1-2:3-4/udp', '${X:?}', '$$', 'a:/b:ro', '~/x:/y', '1m', '1g', 'on-failure:2', 'service:x'),
    );
    const deployValue = fc.dictionary(fc.constantFrom('mode', 'replicas', 'resources', 'restart_policy', 'placement', 'labels', 'endpoint_mode'), fc.jsonValue({ maxDepth: 3 }));
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...serviceKeys), value), deployValue, (svc, deploy) => {
        noInternalError(read(JSON.stringify({ services: { web: { ...svc, deploy } }, volumes: { data: null } })));
        noInternalError(read(JSON.stringify({ services: { web: { ...svc, deploy } } }), { ignoreUnsupported: true }));
      }),
      { numRuns: 400 },
    );
  });
});

describe('readCompose: hostile keys', () => {
  it('treats prototype names as ordinary (unknown) keys', () => {
    const r = read('constructor: 1\nservices:\n  web:\n    image: nginx\n    toString: 1\n    x-baton:\n      toString: 1\n      __proto__: 2\n    deploy:\n      mode: {toString: false}\n');
    expect(r.services).toEqual([]);
    expect(r.errors.map((e) => e.path)).toEqual([
      'constructor',
      'services.web.toString',
      'services.web.x-baton.toString',
      'services.web.x-baton.__proto__',
      'services.web.deploy.mode',
    ]);
    for (const e of r.errors) expect(e.message).not.toMatch(/^internal error/);
  });

  it('survives list items with a toString key (which make ajv throw)', () => {
    const r = read('services:\n  web:\n    image: nginx\n    ports:\n      - {target: 80}\n      - {target: 81, toString: []}\n');
    expect(r.services).toEqual([]);
    expect(r.errors).toEqual([{ path: 'services.web.ports[1].toString', message: 'unknown key `toString`', line: 6 }]);
  });
});
