/**
 * `baton exec`: GET /api/v1/tasks/:name/exec, a WebSocket (the framing is
 * base/execProtocol.ts). The server checks who asks (an admin, or a
 * deployer in the task's stack: running a command in a task is as strong
 * as deploying it), that the task runs and where, then opens the second
 * hop to that node's agent listener with its own client certificate
 * (mutual TLS, as logs do) and copies frames both ways. Every exec is an
 * event (TaskExec) and an audit entry, whoever asked and whatever came of
 * it; a refusal before the upgrade is an ordinary HTTP answer from the
 * catalogue, so the CLI says why ("task web.1 is not running: it is
 * pending, ...").
 *
 * Nothing received is pasted anywhere: the command travels as query
 * values to the agent, which hands it to the engine as an argv array.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { WebSocket } from 'ws';
import { BatonError } from '../../base/errors.js';
import { EXEC_SUBPROTOCOL, execQuery, execSearch, holdWhileQueued, statusFrame, toBuffer, type ExecQuery } from '../../base/execProtocol.js';
import { podContainerNames, type Node, type Task } from '../../api/types.js';
import { recordEvent } from '../controllers/context.js';
import { DEPLOYERS, nameParam, parseInput, ROUTES } from './route.js';
import { logStacks, nodeCache, taskCache, type HttpDeps } from './deps.js';

const URL_PATTERN = '/api/v1/tasks/:name/exec';
/** How long the agent may take to answer the second hop's upgrade. */
const AGENT_CONNECT_MS = 10_000;

interface Target {
  task: Task;
  node: Node;
  q: ExecQuery;
}

export function registerExecRoutes(app: FastifyInstance, deps: HttpDeps): void {
  if (!ROUTES.some((r) => r.url === URL_PATTERN)) ROUTES.push({ method: 'GET', url: URL_PATTERN, access: DEPLOYERS, scoped: true });
  const targets = new WeakMap<FastifyRequest, Target>();

  app.route({
    method: 'GET',
    url: URL_PATTERN,
    config: { access: DEPLOYERS },
    // Everything is judged before the upgrade, so a refusal is an ordinary answer.
    preValidation: async (req) => {
      const { name } = parseInput(nameParam, req.params, 'params', 'BATON_ERR_BAD_REQUEST');
      const q = parseInput(execQuery, req.query, 'query', 'BATON_ERR_BAD_REQUEST');
      if (req.role === 'deployer') {
        const outside = logStacks(deps, 'task', name).filter((s) => !(req.stacks ?? []).includes(s));
        if (outside.length) throw new BatonError('BATON_ERR_FORBIDDEN', `this token may act only in the stacks ${(req.stacks ?? []).join(', ') || '(none)'}, not in ${outside.join(', ')}`);
      }
      const task = taskCache(deps).objects.get(name) as unknown as Task | undefined;
      if (!task) throw new BatonError('BATON_ERR_NOT_FOUND', `task "${name}" not found (baton ps lists the running ones; baton exec SERVICE picks one of a service's)`);
      const where = task.spec.nodeName ? ` on node ${task.spec.nodeName}` : ' (not placed on any node)';
      if (task.spec.desiredState !== 'running' || task.status.state !== 'running') {
        throw new BatonError('BATON_ERR_CONFLICT', `task ${name} is not running: it is ${task.status.state}${where}${task.spec.desiredState !== 'running' ? `, desired ${task.spec.desiredState}` : ''}${task.status.message && task.status.message !== task.status.state ? ` (${task.status.message})` : ''}`);
      }
      if (q.container !== undefined) {
        const names = podContainerNames(task.spec);
        if (!names.includes(q.container)) throw new BatonError('BATON_ERR_NOT_FOUND', `task ${name} has no container "${q.container}" (it has ${names.join(', ')})`, [{ path: 'query.container', message: `one of ${names.join(', ')}` }]);
      }
      const node = nodeCache(deps).objects.get(task.spec.nodeName) as unknown as Node | undefined;
      if (!node?.status.agentPort || !node.status.address) throw new BatonError('BATON_ERR_CONFLICT', `task ${name} runs on node ${task.spec.nodeName}, whose agent has no listener to exec through`);
      if (node.status.state !== 'ready') throw new BatonError('BATON_ERR_CONFLICT', `task ${name} runs on node ${task.spec.nodeName}, which is ${node.status.state}: its agent cannot be reached`);
      targets.set(req, { task, node, q });
    },
    handler: async () => {
      throw new BatonError('BATON_ERR_BAD_REQUEST', 'exec is a WebSocket: send a GET with Upgrade: websocket (baton exec does)');
    },
    wsHandler: (client, req) => {
      const { task, node, q } = targets.get(req)!;
      const name = task.metadata.name;
      // What the person sends while the second hop opens waits for it.
      const early: Buffer[] = [];
      client.on('message', (d: Buffer | ArrayBuffer | Buffer[]) => (agent?.readyState === WebSocket.OPEN ? agent.send(toBuffer(d)) : early.push(toBuffer(d))));
      recordEvent(deps.ctx, { type: 'Normal', reason: 'TaskExec', kind: 'Task', name, uid: task.metadata.uid, node: node.metadata.name, service: task.spec.serviceName, source: 'api', message: `${req.who ?? 'anonymous'} (${req.role}) ran ${JSON.stringify(q.command[0]).slice(0, 200)}${q.command.length > 1 ? ` with ${q.command.length - 1} arguments` : ''} in ${name}${q.container ? ` (container ${q.container})` : ''}${q.tty ? ' with a TTY' : ''}` });
      deps.audit.record({ time: new Date(deps.ctx.clock.now()).toISOString(), user: req.who ?? 'anonymous', role: req.role ?? 'none', method: 'EXEC', route: URL_PATTERN, object: `name=${name}`, status: 101, address: req.ip });

      const host = node.status.address.includes(':') ? `[${node.status.address}]` : node.status.address;
      const { pki } = deps;
      const agent: WebSocket = new WebSocket(`wss://${host}:${node.status.agentPort}/exec?${execSearch(q, { task: name })}`, EXEC_SUBPROTOCOL, {
        ca: pki.ca.certPem,
        cert: pki.client.certPem,
        key: pki.client.keyPem,
        handshakeTimeout: AGENT_CONNECT_MS,
        maxPayload: 1 << 20,
      });
      const fail = (why: string) => {
        if (client.readyState === WebSocket.OPEN) client.send(statusFrame({ error: why.slice(0, 4000) }), () => client.close(1000));
      };
      agent.on('unexpected-response', (_r, res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body.length < 8192 ? (body += c.toString()) : undefined));
        res.on('end', () => {
          let message = `the agent of node ${node.metadata.name} answered ${res.statusCode}`;
          try {
            const m = (JSON.parse(body) as { error?: { message?: unknown } }).error?.message;
            if (typeof m === 'string') message = m.slice(0, 2000);
          } catch {
            // Not ours: the status says enough.
          }
          fail(message);
        });
      });
      agent.on('open', () => {
        for (const m of early.splice(0)) agent.send(m);
      });
      // A person's slow terminal slows the agent's socket, not this server's memory.
      agent.on('message', (d: Buffer | ArrayBuffer | Buffer[]) => {
        if (client.readyState !== WebSocket.OPEN) return;
        client.send(toBuffer(d));
        holdWhileQueued(client, agent, () => client.readyState !== WebSocket.OPEN);
      });
      agent.on('error', (e) => fail(`cannot reach the agent of node ${node.metadata.name} (${node.status.address}:${node.status.agentPort}): ${e.message}`));
      agent.on('close', () => {
        if (client.readyState === WebSocket.OPEN) client.close(1000);
      });
      client.on('close', () => {
        if (agent.readyState === WebSocket.OPEN || agent.readyState === WebSocket.CONNECTING) agent.terminate();
      });
      client.on('error', () => client.terminate());
    },
  });
}
