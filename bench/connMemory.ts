/**
 * bench:conns — what one idle client connection costs a Node server in
 * memory, over TLS (as every agent reaches the Baton server) and over plain
 * TCP beside it, measured in the same run on the same Node. Each agent holds
 * two such connections to the server (its task watch, and its requests),
 * so at 5,000 nodes this is a large part of the server's RSS that is not the
 * V8 heap (docs/scale.md, "Where the server's memory goes").
 *
 *   npm run bench:conns -- [--conns 2000]
 *
 * The server is a child process with an HTTPS (or HTTP) server answering 2 KB
 * to each request, keep-alive held open; its certificate comes from the
 * cluster PKI's code (an ECDSA P-256 CA and serving certificate, as `baton
 * server` makes). The parent opens `--conns` keep-alive connections, one
 * request each, and reads the child's RssAnon and V8 heap before and after,
 * each after a full GC.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, Agent as HttpAgent, get as httpGet } from 'node:http';
import { createServer as createHttpsServer, Agent as HttpsAgent, get as httpsGet } from 'node:https';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createCA, createServingCert } from '../src/base/pki.js';
import { rssSplitKiB } from './lib.js';

interface Sample {
  rssAnonKiB: number;
  heapKiB: number;
}

function sample(): Sample {
  (globalThis as { gc?: () => void }).gc?.();
  return { rssAnonKiB: rssSplitKiB(process.pid)?.anon ?? NaN, heapKiB: process.memoryUsage().heapUsed / 1024 };
}

// The child: a server of one kind, answering the parent's samples.
if (process.argv[2] === '--child') {
  const tls = process.argv[3] === 'tls';
  const handler = (_req: unknown, res: import('node:http').ServerResponse) => res.end('x'.repeat(2048));
  let server: import('node:http').Server;
  if (tls) {
    const ca = await createCA('bench-conns-ca', { days: 1 });
    const serving = await createServingCert(ca, { ips: ['127.0.0.1'], dns: [], days: 1 });
    server = createHttpsServer({ key: serving.keyPem, cert: serving.certPem }, handler);
  } else {
    server = createHttpServer(handler);
  }
  server.keepAliveTimeout = 600_000;
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as { port: number }).port }));
  process.on('message', () => process.send!(sample()));
} else {
  const { values } = parseArgs({ options: { conns: { type: 'string', default: '2000' } } });
  const conns = Number(values.conns);
  if (!Number.isInteger(conns) || conns < 1) throw new Error('--conns must be a positive whole number');

  const ask = <T>(child: ChildProcess): Promise<T> =>
    new Promise((resolve) => {
      child.once('message', (m) => resolve(m as T));
      child.send('sample');
    });

  async function measure(kind: 'tls' | 'tcp'): Promise<{ perConnKiB: number; heapPerConnKiB: number; before: Sample; after: Sample }> {
    const child = fork(fileURLToPath(import.meta.url), ['--child', kind], { execArgv: ['--expose-gc'] });
    try {
      const { port } = await new Promise<{ port: number }>((resolve, reject) => {
        child.once('message', (m) => resolve(m as { port: number }));
        child.once('exit', (code) => reject(new Error(`the ${kind} server exited (${code})`)));
      });
      const before = await ask<Sample>(child);
      const agents: (HttpAgent | HttpsAgent)[] = [];
      // A hundred at a time: each its own agent (one socket), kept alive after its one request.
      for (let i = 0; i < conns; i += 100) {
        await Promise.all(
          Array.from({ length: Math.min(100, conns - i) }, () =>
            new Promise<void>((resolve, reject) => {
              const agent = kind === 'tls' ? new HttpsAgent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false }) : new HttpAgent({ keepAlive: true, maxSockets: 1 });
              agents.push(agent);
              const req = (kind === 'tls' ? httpsGet : httpGet)({ host: '127.0.0.1', port, agent, ...(kind === 'tls' ? { rejectUnauthorized: false } : {}) }, (res) => {
                res.resume();
                res.on('end', () => resolve());
              });
              req.on('error', reject);
            }),
          ),
        );
      }
      await new Promise((r) => setTimeout(r, 1000));
      const after = await ask<Sample>(child);
      for (const a of agents) a.destroy();
      return { perConnKiB: (after.rssAnonKiB - before.rssAnonKiB) / conns, heapPerConnKiB: (after.heapKiB - before.heapKiB) / conns, before, after };
    } finally {
      child.kill();
    }
  }

  const tcp = await measure('tcp');
  const tls = await measure('tls');
  const row = (name: string, m: Awaited<ReturnType<typeof measure>>) =>
    `${name.padEnd(10)} RssAnon ${(m.before.rssAnonKiB / 1024).toFixed(1)} → ${(m.after.rssAnonKiB / 1024).toFixed(1)} MiB: ${m.perConnKiB.toFixed(1)} KiB per connection (V8 heap ${m.heapPerConnKiB.toFixed(1)} of it)`;
  process.stdout.write(
    `# bench:conns: ${conns} idle keep-alive connections to one Node ${process.version} server, one 2 KB answer each\n` +
      `${row('plain TCP', tcp)}\n${row('TLS', tls)}\n` +
      `TLS over plain: +${(tls.perConnKiB - tcp.perConnKiB).toFixed(1)} KiB per connection (${(tls.perConnKiB / tcp.perConnKiB).toFixed(1)}×)\n` +
      `at 5,000 agents of two connections each: ${((tls.perConnKiB * 10_000) / 1024).toFixed(0)} MiB over TLS, ${((tcp.perConnKiB * 10_000) / 1024).toFixed(0)} MiB if it were plain TCP\n`,
  );
}
