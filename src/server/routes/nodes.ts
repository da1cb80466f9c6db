/**
 * Node routes: an agent's registration, heartbeats and certificate renewal
 * (each for its own node only, at the address its certificate names), and
 * an admin's node updates and removal.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { BatonError } from '../../base/errors.js';
import { formatCidr } from '../../base/cidr.js';
import { compatible, VERSION } from '../../base/version.js';
import { nodeKind, taskKind } from '../../api/kinds.js';
import { ipSchema, objectNameSchema, REPORT_TEXT_MAX } from '../../api/schemas.js';
import { isTerminal, type Node, type NodeStatus, type Taint, type Task } from '../../api/types.js';
import { formatTaint, parseTaint } from '../../scheduler/placement.js';
import { DRAIN_STARTED_ANNOTATION, heartbeatInterval, recordEvent, statusFlushInterval, TASKS_BY_NODE } from '../controllers/context.js';
import { stableStringify, type AnyObject } from '../registry.js';
import { TaskRanges } from '../ipam.js';
import { defineRoute, flag, nameParam } from './route.js';
import { nodeCache, ownNode, sameAddress, taskCache, withLastBeat, type HttpDeps } from './deps.js';

/** A label key, as Kubernetes allows them (an optional prefix/ and a name). */
const LABEL_KEY = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$/;
const LABEL_KEY_RULE = 'a label key is letters, digits, ".", "-", "_" and "/", starting and ending with a letter or digit, at most 253 characters';
const labelKey = z.string().regex(LABEL_KEY, LABEL_KEY_RULE);
const labelValue = z.string().max(253, 'a label value is a string of at most 253 characters');
const port = z.number().int().min(1).max(65535);
const engine = z.object({ ok: z.boolean(), version: z.string().max(128), error: z.string().max(REPORT_TEXT_MAX).optional() });

const registerBody = z.object({
  name: objectNameSchema,
  address: ipSchema,
  hostname: z.string().min(1).max(253),
  agentVersion: z.string().min(1).max(64),
  labels: z.record(labelKey, labelValue).optional(),
  heartbeatMs: z.number().int().min(1).max(3_600_000).optional(),
  platform: z.object({ os: z.string().min(1).max(64), arch: z.string().min(1).max(64) }).optional(),
  capacity: z.object({ cpus: z.number().min(0).max(1_000_000), memoryBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER) }),
  portRange: z.tuple([port, port]).refine(([lo, hi]) => lo <= hi, 'the range must run from low to high'),
  engine,
  agentPort: port.optional(),
  /** Claimed by the agent that runs in the server's own process; the server checks it (HttpDeps.managers). */
  role: z.enum(['manager', 'worker']).optional(),
});

const usageCount = z.record(z.string().max(253), z.number().min(0).max(Number.MAX_SAFE_INTEGER));
const heartbeatBody = z.object({
  engine: engine.optional(),
  intervalMs: z.number().int().min(1).max(3_600_000).optional(),
  volumes: z.array(z.string().min(1).max(253)).max(100_000).optional(),
  usage: z
    .object({
      tasks: z.array(z.object({ task: z.string().max(253), service: z.string().max(253), cpu: z.number().min(0).max(1e6), memoryBytes: z.number().min(0).max(Number.MAX_SAFE_INTEGER), memoryLimitBytes: z.number().min(0).max(Number.MAX_SAFE_INTEGER).optional() })).max(100_000),
      connections: usageCount,
      active: usageCount.optional(),
    })
    .optional(),
});

const patchBody = z
  .object({
    labelsAdd: z.record(labelKey, labelValue).optional(),
    labelsRemove: z.array(z.string().max(253)).max(1000).optional(),
    availability: z.enum(['active', 'pause', 'drain']).optional(),
    taintsAdd: z.array(z.string().max(1024)).max(1000).optional(),
    taintsRemove: z.array(z.string().max(1024)).max(1000).optional(),
  })
  .strict();

export function registerNodeRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { ctx, pki } = deps;
  const ranges = new TaskRanges(ctx);
  const beatInterval = (requested: number | undefined) => heartbeatInterval(ctx.timings, nodeCache(deps).objects.size, requested);

  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/nodes/register',
    access: ['admin', 'agent'],
    body: registerBody,
    handler: async (req, _reply, { body: b }) => {
      ownNode(req, b.name);
      // A node is reached at the address its certificate was issued for: it cannot claim another node's.
      if (req.role === 'agent' && !sameAddress(req.nodeAddress, b.address)) {
        throw new BatonError('BATON_ERR_FORBIDDEN', `node ${b.name} may register only at ${req.nodeAddress ?? 'the address it joined with'}`, [{ path: 'body.address', message: `${b.address} is not the address this node's certificate was issued for; join again with a token to move the node` }]);
      }
      // The manager role is the server's to give: it knows the agent it runs itself, and the certificate says who this is.
      const manager = b.role === 'manager';
      if (manager && !(req.role === 'agent' && deps.managers.has(b.name))) {
        recordEvent(ctx, { type: 'Warning', reason: 'RoleRefused', kind: 'Node', name: b.name, source: 'api', message: `node ${b.name} claimed the manager role, but it does not run a server` });
        throw new BatonError('BATON_ERR_FORBIDDEN', `node ${b.name} may not register as a manager: only a node that runs a server (the agent of \`baton up\`, in the server's own process) is one`, [{ path: 'body.role', message: 'leave role out, or use worker' }]);
      }
      if (!compatible(VERSION, b.agentVersion)) {
        recordEvent(ctx, { type: 'Warning', reason: 'AgentRefused', kind: 'Node', name: b.name, source: 'api', message: `agent version ${b.agentVersion} is not compatible with server ${VERSION}` });
        throw new BatonError('BATON_ERR_INCOMPATIBLE_AGENT', `agent version ${b.agentVersion} is not compatible with server version ${VERSION}; agents may be this minor version or one before it, never newer (upgrade the servers first, then the agents)`);
      }
      const now = new Date(ctx.clock.now()).toISOString();
      const interval = beatInterval(b.heartbeatMs);
      ctx.heartbeats.beat(b.name, b.engine, interval);
      const status = ({ role: _was, ...prev }: Partial<NodeStatus> = {}): NodeStatus => ({
        ...prev,
        state: prev?.state ?? 'unknown',
        message: prev?.message ?? 'registered',
        address: b.address,
        hostname: b.hostname,
        capacity: b.capacity,
        allocated: prev?.allocated ?? { cpus: 0, memoryBytes: 0 },
        taskCount: prev?.taskCount ?? 0,
        agentVersion: b.agentVersion,
        engineVersion: b.engine.version,
        portRange: b.portRange,
        agentPort: b.agentPort,
        ...(manager ? { role: 'manager' as const } : {}),
        ...(b.platform ? { platform: b.platform } : {}),
        lastHeartbeat: now,
        timestamp: prev?.timestamp ?? now,
      });
      // Agent labels apply when the node is first made; afterwards `baton node update` owns them. A node without a task range gets one here.
      const { node, created } = await ranges.writeNode(b.name, (cur) =>
        cur ? { ...cur, status: status(cur.status) } : ctx.registry.build(nodeKind, { metadata: { name: b.name, labels: b.labels ?? {} }, spec: { availability: 'active' }, status: status() }),
      );
      if (created) recordEvent(ctx, { type: 'Normal', reason: 'NodeRegistered', kind: 'Node', name: b.name, uid: node.metadata.uid, node: b.name, source: 'api', message: `node ${b.name} registered at ${b.address} (${b.capacity.cpus} cpus, ${Math.round(b.capacity.memoryBytes / 1048576)} MiB, tasks in ${node.status.taskRange})` });
      // The cluster's ranges go with the node's own: its agent routes them inside task namespaces.
      return { node, clusterId: deps.clusterId, taskRange: node.status.taskRange, clusterCidr: formatCidr(ctx.network.cluster), serviceCidr: formatCidr(ctx.network.service), heartbeatIntervalMs: interval, statusFlushMs: statusFlushInterval(ctx.timings, nodeCache(deps).objects.size), serverVersion: VERSION };
    },
  });

  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/nodes/:name/heartbeat',
    access: ['admin', 'agent'],
    params: nameParam,
    body: heartbeatBody,
    handler: async (req, _reply, { params: { name }, body: b }) => {
      ownNode(req, name);
      if (!nodeCache(deps).objects.has(name)) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" is not registered; register again`);
      if (b.usage) deps.usage.record(name, { tasks: b.usage.tasks, connections: b.usage.connections, active: b.usage.active ?? {} });
      const next = beatInterval(undefined);
      // Judged against the interval the agent beats at now; it learns `next` from this answer.
      ctx.heartbeats.beat(name, b.engine ?? { ok: true, version: '' }, b.intervalMs ?? next, b.volumes ? [...b.volumes].sort() : undefined);
      // Servers sharing a store: the agent learns every live server's URL, to fail over to (added servers included).
      const servers = deps.servers ? (await deps.servers().catch(() => [])).map((s) => s.url) : undefined;
      return { heartbeatIntervalMs: next, statusFlushMs: statusFlushInterval(ctx.timings, nodeCache(deps).objects.size), ...(servers?.length ? { servers } : {}) };
    },
  });

  defineRoute(app, {
    method: 'POST',
    url: '/api/v1/nodes/:name/certificate',
    access: ['agent'],
    params: nameParam,
    body: z.object({ csr: z.string().min(1).max(16_384) }).strict(),
    handler: async (req, _reply, { params: { name }, body: { csr } }) => {
      ownNode(req, name);
      const node = nodeCache(deps).objects.get(name) as unknown as Node | undefined;
      if (!node) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" is not registered`);
      const cert = await pki.issue(name, csr, node.status.address, ctx.timings.nodeCertTtlMs);
      recordEvent(ctx, { type: 'Normal', reason: 'CertificateRenewed', kind: 'Node', name, uid: node.metadata.uid, node: name, source: 'api', message: `node ${name} renewed its certificate (serial ${cert.serial}, valid until ${cert.notAfter.toISOString()})` });
      return { certificate: cert.certPem, ca: pki.ca.certPem, notAfter: cert.notAfter.toISOString() };
    },
  });

  defineRoute(app, {
    method: 'PATCH',
    url: '/api/v1/nodes/:name',
    access: ['admin'],
    params: nameParam,
    body: patchBody.optional(),
    handler: async (_req, _reply, { params: { name }, body }) => {
      const b = body ?? {};
      const details: { path: string; message: string }[] = [];
      const addTaints: Taint[] = [];
      (b.taintsAdd ?? []).forEach((t, i) => {
        const r = parseTaint(t);
        if (typeof r === 'string') details.push({ path: `body.taintsAdd[${i}]`, message: r });
        else addTaints.push(r);
      });
      if (details.length) throw new BatonError('BATON_ERR_BAD_REQUEST', `invalid update of node ${name}`, details);
      let before: Node | undefined;
      const out = await ctx.registry.mutate<Node & AnyObject>(nodeKind, name, (cur) => {
        before = cur;
        const labels = { ...cur.metadata.labels, ...(b.labelsAdd ?? {}) };
        for (const k of b.labelsRemove ?? []) delete labels[k];
        const availability = b.availability ?? cur.spec.availability;
        const annotations = { ...(cur.metadata.annotations ?? {}) };
        if (availability === 'drain' && cur.spec.availability !== 'drain') annotations[DRAIN_STARTED_ANNOTATION] = new Date(ctx.clock.now()).toISOString();
        if (availability !== 'drain') delete annotations[DRAIN_STARTED_ANNOTATION];
        // A taint is keyed by key and effect, as in Kubernetes: adding one replaces its value; removing `key` drops all its effects.
        let taints = [...(cur.spec.taints ?? [])];
        for (const r of b.taintsRemove ?? []) {
          const [key, effect] = r.split(':');
          taints = taints.filter((t) => t.key !== key || (effect !== undefined && t.effect !== effect));
        }
        for (const t of addTaints) taints = [...taints.filter((x) => x.key !== t.key || x.effect !== t.effect), t];
        const spec = { ...cur.spec, availability, ...(taints.length ? { taints } : {}) };
        if (!taints.length) delete (spec as { taints?: Taint[] }).taints;
        const next = ctx.registry.specUpdate(cur, { spec, labels, annotations }) as Node & AnyObject;
        return stableStringify(next) === stableStringify(cur) ? undefined : next;
      });
      if (!out) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" not found`);
      const changes: string[] = [];
      if (before && before.spec.availability !== out.spec.availability) changes.push(`availability ${before.spec.availability} → ${out.spec.availability}`);
      for (const [k, v] of Object.entries(b.labelsAdd ?? {})) if (before?.metadata.labels[k] !== v) changes.push(`label ${k}=${v}`);
      for (const k of b.labelsRemove ?? []) if (before && k in before.metadata.labels) changes.push(`label ${k} removed`);
      const taintsText = (n: Node | undefined) => (n?.spec.taints ?? []).map(formatTaint).join(',') || 'none';
      if (taintsText(before) !== taintsText(out as unknown as Node)) changes.push(`taints ${taintsText(before)} → ${taintsText(out as unknown as Node)}`);
      if (changes.length) recordEvent(ctx, { type: 'Normal', reason: 'NodeUpdated', kind: 'Node', name, uid: out.metadata.uid, node: name, source: 'api', message: `node ${name}: ${changes.join(', ')}` });
      return withLastBeat(deps, out as unknown as Node);
    },
  });

  defineRoute(app, {
    method: 'DELETE',
    url: '/api/v1/nodes/:name',
    access: ['admin'],
    params: nameParam,
    query: z.object({ force: flag }),
    handler: async (_req, _reply, { params: { name }, query: { force } }) => {
      const node = (await ctx.registry.get(nodeKind, name)) as (Node & AnyObject) | undefined;
      if (!node) throw new BatonError('BATON_ERR_NOT_FOUND', `node "${name}" not found`);
      if (node.status.state === 'ready' && !force) {
        throw new BatonError('BATON_ERR_CONFLICT', `node ${name} is Ready; drain it and stop its agent first, or pass --force (its tasks are then replaced elsewhere)`);
      }
      const serials = await pki.revokeNode(name);
      // Its task range is free again once the node is gone (same txn).
      await ranges.deleteNode(name);
      ctx.heartbeats.forget(name);
      // Its tasks can no longer be reached: mark them orphaned so their services replace them.
      const tasks = (taskCache(deps).byIndex(TASKS_BY_NODE, name) as unknown as Task[]).filter((t) => !isTerminal(t.status.state));
      const at = new Date(ctx.clock.now()).toISOString();
      for (let i = 0; i < tasks.length; i += 128) {
        await ctx.registry.updateStatus(taskKind, tasks.slice(i, i + 128).map((t) => ({ name: t.metadata.name, uid: t.metadata.uid, status: { ...t.status, state: 'orphaned', message: `node ${name} was removed`, timestamp: at } })));
      }
      recordEvent(ctx, { type: 'Warning', reason: 'NodeRemoved', kind: 'Node', name, uid: node.metadata.uid, node: name, source: 'api', message: `node ${name} removed${force ? ' (forced)' : ''}; ${serials.length} certificate(s) revoked, ${tasks.length} task(s) orphaned` });
      return { removed: name, revokedCertificates: serials, orphanedTasks: tasks.length };
    },
  });
}
