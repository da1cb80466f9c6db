/**
 * AgentListener is the agent's own HTTPS endpoint, the server's way *to* a
 * node (as the API server reaches a kubelet): it serves with the node
 * certificate (whose SAN is the node address) and accepts for logs only a
 * client certificate from the cluster CA naming the server (`baton-server`).
 * Each log stream is an ordinary HTTP response, so back-pressure and
 * cancellation are HTTP's: a slow reader slows only its own stream.
 *
 *   GET /logs?task=T | service=S [&follow=true&tail=N&since=RFC3339&grep=RE&merge=false]
 *       text, one line per record: `<task>@<node> <time> <o|e> <text>`
 *   GET /metrics   Prometheus text (open, read-only, like cAdvisor's port; or only with the scrape token, --metrics-auth token)
 *   GET /healthz
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import type { TLSSocket } from 'node:tls';
import type { ServerResponse } from 'node:http';
import { writeOrWait } from '../base/stream.js';
import type { Registry } from 'prom-client';
import type { LogStore } from './logs.js';
import { lineTime, LineMerger } from '../base/lineMerge.js';
import { SERVER_CLIENT_CN } from '../api/tls.js';
import { BatonError } from '../base/errors.js';


export interface ListenerOptions {
  address: string;
  port: number;
  node: string;
  tls: { caPem: string; certPem: string; keyPem: string };
  logs: LogStore;
  metrics: Registry;
  /** When set, /metrics answers only a request with `Authorization: Bearer <metricsToken>`. */
  metricsToken?: string;
}

const write = writeOrWait;

export class AgentListener {
  private app?: FastifyInstance;
  port = 0;

  constructor(private readonly opts: ListenerOptions) {}

  async start(): Promise<void> {
    const { opts } = this;
    const app = Fastify({
      logger: false,
      forceCloseConnections: true,
      https: { key: opts.tls.keyPem, cert: opts.tls.certPem, ca: opts.tls.caPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
    } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
    this.app = app;

    app.get('/healthz', async () => ({ ok: true, node: opts.node }));
    const wanted = opts.metricsToken === undefined ? undefined : createHash('sha256').update(opts.metricsToken).digest();
    app.get('/metrics', async (req, reply) => {
      if (wanted) {
        const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
        // Compared as digests of equal length, in constant time.
        if (!m || !timingSafeEqual(createHash('sha256').update(m[1]!).digest(), wanted)) {
          return reply.status(401).header('www-authenticate', 'Bearer').send({ error: { code: 'BATON_ERR_UNAUTHORIZED', message: "this agent's /metrics wants the scrape token (--metrics-auth token): send Authorization: Bearer <token>" } });
        }
      }
      return reply.type(opts.metrics.contentType).send(await opts.metrics.metrics());
    });

    app.get('/logs', async (req, reply) => {
      const sock = req.raw.socket as TLSSocket;
      const peer = sock.authorized ? sock.getPeerCertificate() : undefined;
      if (!peer || peer.subject?.CN !== SERVER_CLIENT_CN) {
        return reply.status(403).send({ error: { code: 'BATON_ERR_FORBIDDEN', message: "only the cluster's server may read logs here; use baton logs" } });
      }
      const q = req.query as Record<string, string | undefined>;
      let grep: RegExp | undefined;
      try {
        grep = q.grep ? new RegExp(q.grep) : undefined;
      } catch (e) {
        return reply.status(400).send({ error: { code: 'BATON_ERR_BAD_REQUEST', message: `grep: ${(e as Error).message}` } });
      }
      const follow = q.follow === 'true';
      const tail = q.tail !== undefined && q.tail !== '' && q.tail !== 'all' ? Math.max(0, Number(q.tail) || 0) : undefined;
      const filter = q.task ? { task: q.task } : q.service ? { service: q.service } : undefined;
      if (!filter) return reply.status(400).send({ error: { code: 'BATON_ERR_BAD_REQUEST', message: 'pass task= or service=' } });

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.flushHeaders();
      const abort = new AbortController();
      res.on('close', () => abort.abort());
      const merge = q.merge !== 'false';
      /** One task's records, each line prefixed with its task and node. */
      const linesOf = async function* (task: string): AsyncGenerator<string> {
        const prefix = `${task}@${opts.node} `;
        for await (const chunk of opts.logs.read(task, { tail, since: q.since, grep, follow, signal: abort.signal })) {
          // Every record is a whole line: prefix each with its task and node.
          yield prefix + chunk.slice(0, -1).replaceAll('\n', '\n' + prefix) + '\n';
        }
      };
      const copy = async (source: AsyncIterable<string>) => {
        for await (const chunk of source) {
          const p = write(res, chunk);
          if (p) await p;
          if (abort.signal.aborted) return;
        }
      };
      const wanted = (task: string, service: string) => ('task' in filter ? task === filter.task : service === filter.service);
      const known = new Set(opts.logs.list(filter).map((t) => t.task));
      // Merged: every task's lines in time order (base/lineMerge.ts); else task by task (following: each as it comes).
      const merger = merge ? new LineMerger({ key: lineTime, follow, signal: abort.signal }) : undefined;
      const running: Promise<void>[] = [];
      const add = (task: string) => (merger ? merger.add(linesOf(task)) : running.push(copy(linesOf(task))));
      try {
        if (!follow) {
          if (merger) {
            for (const t of known) add(t);
            await copy(merger.lines());
          } else for (const t of known) await copy(linesOf(t));
        } else {
          // Following: every task at once, and the tasks that start writing here later.
          for (const t of known) add(t);
          const stop = opts.logs.onNewTask((task, service) => {
            if (wanted(task, service) && !known.has(task)) {
              known.add(task);
              add(task);
            }
          });
          if (merger) await copy(merger.lines());
          await new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve(), { once: true }));
          stop();
          await Promise.allSettled(running);
        }
      } finally {
        res.end();
      }
    });

    try {
      await app.listen({ host: opts.address, port: opts.port });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EADDRINUSE') throw new BatonError('BATON_ERR_CONFLICT', `the agent's port ${opts.address}:${opts.port} is in use (another agent on this address?); pass --listen-port with a free port`);
      if (code === 'EADDRNOTAVAIL') throw new BatonError('BATON_ERR_BAD_REQUEST', `cannot listen on ${opts.address}:${opts.port}: the address is not on this host; check --address`);
      throw e;
    }
    const a = app.server.address();
    this.port = typeof a === 'object' && a ? a.port : opts.port;
  }

  /** setCredentials serves a renewed node certificate to new connections. */
  setCredentials(tls: { caPem: string; certPem: string; keyPem: string }): void {
    (this.app?.server as unknown as { setSecureContext?: (o: object) => void })?.setSecureContext?.({ key: tls.keyPem, cert: tls.certPem, ca: tls.caPem, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' });
  }

  async stop(): Promise<void> {
    await this.app?.close();
  }
}
