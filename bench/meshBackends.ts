/**
 * The backends of bench:mesh, as Compose services of the stack it applies:
 *
 *   web    a small HTTP/1.1 keep-alive server (the host's HAProxy in `mode
 *          http`, or a tiny node:net server) bind-mounted read-only into the
 *          test image with the directories of its shared libraries, bound to
 *          $BATON_HOST_IP:$PORT; its network mode is the bench's choice
 *          (bridge, the default: the task's own address and port 80; or host:
 *          the node's address and a host port). Every answer carries
 *          `X-Task: <task name>` and a 128-byte body.
 *   httpd  the test image's busybox httpd, unmodified, on the fixed port 80 of
 *          its own namespace (network_mode bridge): `httpd -f -p 80` serving
 *          a file holding its task name. It answers `Connection: close` and
 *          forks a process per connection, whatever the client asks.
 *
 * Three replicas each, at most one per node, published on every node.
 */
import { writeFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { exec, oneLine } from './lib.js';

export const IMAGE = 'baton-test/busybox:latest';
export const BODY = 'x'.repeat(128);

export type Backend = 'haproxy' | 'node';

export interface Mount {
  source: string;
  target: string;
}

/** libMounts: the directories of the shared libraries (and the loader) `ldd` lists for a host binary, to mount at the same paths. */
export async function libMounts(bin: string): Promise<Mount[]> {
  const r = await exec('ldd', [bin]);
  if (r.code !== 0) throw new Error(`ldd ${bin}: ${oneLine(r.stderr || r.stdout)}`);
  const dirs = new Set<string>();
  for (const line of r.stdout.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) dirs.add(dirname(m[1]!));
  }
  if (dirs.size === 0) throw new Error(`ldd ${bin} listed no library paths:\n${r.stdout}`);
  return [...dirs].sort().map((d) => ({ source: realpathSync(d), target: d }));
}

/** The backend's HAProxy config (mode http): a fixed response, keep-alive, one thread; env vars are expanded by HAProxy in the container. */
function backendHaproxyCfg(): string {
  return [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-keep-alive 60s',
    'frontend web',
    '  bind "${BATON_HOST_IP}:${PORT}"',
    `  http-request return status 200 content-type text/plain string "${BODY}" hdr X-Task "\${BATON_TASK}"`,
    '',
  ].join('\n');
}

/** The --backend node server: HTTP/1.1 on node:net, keep-alive unless the request says Connection: close. */
function backendNodeJs(): string {
  return `'use strict';
const net = require('net');
const host = process.env.BATON_HOST_IP, port = Number(process.env.PORT), task = process.env.BATON_TASK || '';
const body = ${JSON.stringify(BODY)};
const head = (close) => 'HTTP/1.1 200 OK\\r\\ncontent-type: text/plain\\r\\ncontent-length: ' + Buffer.byteLength(body) + '\\r\\nx-task: ' + task + '\\r\\n' + (close ? 'connection: close\\r\\n' : '') + '\\r\\n';
const KEEP = Buffer.from(head(false) + body, 'latin1'), CLOSE = Buffer.from(head(true) + body, 'latin1');
net.createServer({ noDelay: true }, (s) => {
  let buf = '';
  s.setEncoding('latin1');
  s.on('error', () => s.destroy());
  s.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\\r\\n\\r\\n')) >= 0) {
      const req = buf.slice(0, i);
      buf = buf.slice(i + 4);
      if (/\\r\\nconnection:[ \\t]*close/i.test(req)) { buf = ''; s.end(CLOSE); return; }
      s.write(KEEP);
    }
    if (buf.length > 65536) s.destroy();
  });
}).listen({ host, port, backlog: 1024 }, () => console.log('listening on ' + host + ':' + port));
process.on('SIGTERM', () => process.exit(0));
`;
}

export interface BackendSetup {
  command: string[];
  mounts: Mount[];
  describe: string;
}

/** webBackend writes the web backend's files under `dir` and says how to run it. */
export async function webBackend(backend: Backend, dir: string, haproxyBin: string): Promise<BackendSetup> {
  if (backend === 'haproxy') {
    const cfg = join(dir, 'backend.cfg');
    writeFileSync(cfg, backendHaproxyCfg());
    const bin = realpathSync(haproxyBin);
    return {
      command: ['/opt/bench/haproxy', '-f', '/etc/bench/backend.cfg', '-db'],
      mounts: [{ source: bin, target: '/opt/bench/haproxy' }, { source: cfg, target: '/etc/bench/backend.cfg' }, ...(await libMounts(bin))],
      describe: `the host's ${bin} (mode http, http-request return of a ${BODY.length}-byte body, nbthread 1, keep-alive), bind-mounted into ${IMAGE}`,
    };
  }
  const js = join(dir, 'backend.cjs');
  writeFileSync(js, backendNodeJs());
  const bin = realpathSync(process.execPath);
  return {
    command: ['/opt/bench/node', '/etc/bench/backend.cjs'],
    mounts: [{ source: bin, target: '/opt/bench/node' }, { source: js, target: '/etc/bench/backend.cjs' }, ...(await libMounts(bin))],
    describe: `a tiny HTTP/1.1 keep-alive server on node:net (the host's node ${process.version}, ${BODY.length}-byte body), bind-mounted into ${IMAGE}`,
  };
}

/** The httpd backend: unmodified busybox httpd on port 80, its page its task's name ($$ is Compose's escape for a literal $). */
export const HTTPD_COMMAND = 'mkdir -p /www && echo $$BATON_TASK > /www/index.html && exec httpd -f -p 80 -h /www';
export const HTTPD_DESCRIBE = `busybox httpd -f -p 80 of ${IMAGE}, unmodified, network_mode bridge, serving its task's name (Connection: close, a process per connection)`;

export interface StackOptions {
  stack: string;
  /** The label every container carries (key, value). */
  label: [string, string];
  target: number;
  /** The web service, or none. */
  web?: { backend: BackendSetup; published: number; network: 'bridge' | 'host' };
  /** The httpd service, or none. */
  httpd?: { published: number };
}

/** stackText is the Compose text of the bench's stack. */
export function stackText(o: StackOptions): string {
  const common = (published: number) => [
    `    ports: ["${published}:${o.target}"]`,
    '    labels:',
    `      ${o.label[0]}: "${o.label[1]}"`,
    '    deploy:',
    '      replicas: 3',
    '      placement: {max_replicas_per_node: 1}',
  ];
  const lines = [`name: ${o.stack}`, 'services:'];
  if (o.web)
    lines.push(
      '  web:',
      `    image: ${IMAGE}`,
      `    command: ${JSON.stringify(o.web.backend.command)}`,
      ...(o.web.network === 'host' ? ['    network_mode: host'] : []),
      '    volumes:',
      ...o.web.backend.mounts.map((m) => `      - ${JSON.stringify(`${m.source}:${m.target}:ro`)}`),
      ...common(o.web.published),
    );
  if (o.httpd) lines.push('  httpd:', `    image: ${IMAGE}`, `    command: ${JSON.stringify(['sh', '-c', HTTPD_COMMAND])}`, '    network_mode: bridge', ...common(o.httpd.published));
  return lines.join('\n') + '\n';
}
