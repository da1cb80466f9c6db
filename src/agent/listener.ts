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
 *   GET /exec?task=T&command=C…[&container=N&tty=true&stdin=true]   (WebSocket: agent/execBridge.ts)
 *       a command attached in a task's container, for the server only
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
import { BatonError, isBatonError } from '../base/errors.js';
import websocket from '@fastify/websocket';
import { z } from 'zod';
import type { ExecSession, TaskHandle } from './driver.js';
import { bridgeExec } from './execBridge.js';
import { EXEC_SUBPROTOCOL, execQuery, statusFrame, toBuffer } from '../base/execProtocol.js';


export interface ListenerOptions {
  address: string;
  port: number;
  node: string;
  tls: { caPem: string; certPem: string; keyPem: string };
  logs: LogStore;
  metrics: Registry;
  /** How /exec finds a task's container and attaches a command in it; without it, /exec is refused. */
  exec?: {
    /** find: the running container of task (and container, for a pod's other ones); throws a BatonError saying why not. */
    find(task: string, container?: string): TaskHandle;
    attach(handle: TaskHandle, o: { cmd: string[]; tty: boolean; stdin: boolean }): Promise<ExecSession>;
    onSession(task: string, cmd: string[], exitCode: number | undefined): void;
  };
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

    // ---------------------------------------------------------------- exec
    await app.register(websocket, { options: { maxPayload: 1 << 20, handleProtocols: (p: Set<string>) => (p.has(EXEC_SUBPROTOCOL) ? EXEC_SUBPROTOCOL : false) } });
    const execTargets = new WeakMap<object, { handle: TaskHandle; q: z.infer<typeof execQuery>; task: string }>();
    const refuse = (reply: import('fastify').FastifyReply, status: number, code: string, message: string) => reply.status(status).send({ error: { code, message } });
    app.route({
      method: 'GET',
      url: '/exec',
      preValidation: async (req, reply) => {
        const sock = req.raw.socket as TLSSocket;
        const peer = sock.authorized ? sock.getPeerCertificate() : undefined;
        if (!peer || peer.subject?.CN !== SERVER_CLIENT_CN) return refuse(reply, 403, 'BATON_ERR_FORBIDDEN', "only the cluster's server may exec here; use baton exec");
        if (!opts.exec) return refuse(reply, 400, 'BATON_ERR_BAD_REQUEST', `node ${opts.node} cannot run commands in its tasks (its driver has no exec)`);
        const { task, ...rest } = req.query as Record<string, unknown>;
        const q = execQuery.safeParse(rest);
        if (typeof task !== 'string' || !task || task.length > 253 || !q.success) return refuse(reply, 400, 'BATON_ERR_BAD_REQUEST', `bad exec request${q.success ? ': pass task=' : `: ${q.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`}`);
        try {
          execTargets.set(req, { handle: opts.exec.find(task, q.data.container), q: q.data, task });
        } catch (e) {
          if (!isBatonError(e)) throw e;
          return refuse(reply, e.status, e.code, e.message);
        }
      },
      handler: async (_req, reply) => refuse(reply, 400, 'BATON_ERR_BAD_REQUEST', 'exec is a WebSocket: send an upgrade'),
      wsHandler: (socket, req) => {
        const target = execTargets.get(req)!;
        const exec = opts.exec!;
        // What the client sends while the command starts (its first resize, typed-ahead input) waits for it.
        const early: Buffer[] = [];
        const collect = (d: Buffer | ArrayBuffer | Buffer[]) => early.push(toBuffer(d));
        socket.on('message', collect);
        exec
          .attach(target.handle, { cmd: target.q.command, tty: target.q.tty, stdin: target.q.stdin })
          .then(
            (session) => {
              socket.off('message', collect);
              if (socket.readyState !== socket.OPEN) return session.close();
              bridgeExec(socket, session, (code) => exec.onSession(target.task, target.q.command, code), early);
            },
            (e: Error) => socket.send(statusFrame({ error: `cannot run ${target.q.command[0]} in ${target.task}: ${e.message}`.slice(0, 4000) }), () => socket.close(1000)),
          );
      },
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
