/**
 * What the API's route modules share: their dependencies, and the small
 * rules more than one of them applies (a node acts only for itself; a node's
 * last heartbeat comes from memory).
 */
import type { AuditLog } from '../audit.js';
import type { Quotas } from '../quotas.js';
import type { ServerRecord } from '../heartbeats.js';
import type { FileContents } from '../files.js';
import type { Blobs } from '../blobs.js';
import type { Election } from '../election.js';
import { BlockList, isIP } from 'node:net';
import type { FastifyRequest } from 'fastify';
import { BatonError } from '../../base/errors.js';
import { nodeKind, serviceKind, taskKind } from '../../api/kinds.js';
import type { Node, Service, Task } from '../../api/types.js';
import type { NewEventBody } from '../../api/client.js';
import type { Role, Tokens } from '../auth.js';
import type { ClusterPki } from '../clusterPki.js';
import type { ControllerContext } from '../controllers/context.js';
import { recordEvent } from '../controllers/context.js';
import type { UsageStore } from '../usage.js';
import type { ServerMetrics } from '../metrics.js';
import type { AutoscaleController } from '../controllers/autoscaleController.js';
import type { LogRouter } from '../logs.js';
import type { WatchCache } from '../watchCache.js';
import type { AddressRateLimiter } from '../rateLimit.js';
import type { MeshRevisions } from '../meshRevisions.js';

declare module 'fastify' {
  interface FastifyRequest {
    role?: Role;
    /** For a caller with a node certificate: the node it is (the certificate's CN). */
    node?: string;
    /** For a caller with a node certificate: the IP address its certificate was issued for. */
    nodeAddress?: string;
    /** For a deployer's token: the stacks it acts in. */
    stacks?: string[];
    /** For a token: who it is, for the audit log (its name, else its id). */
    who?: string;
    /** The catalogue code of the answer, when it refused (for the audit log). */
    errorCode?: string;
  }
}

export interface HttpDeps {
  ctx: ControllerContext;
  tokens: Tokens;
  audit: AuditLog;
  /** Stacks' quotas (also the registry's guard of service writes). */
  quotas: Quotas;
  clusterId: string;
  storeBackend: string;
  /** The store's epoch: lists carry it, and a watch that names another is told 410 Gone. */
  storeEpoch: string;
  caches: Record<string, WatchCache>;
  /** The cluster's PKI: serves HTTPS and authenticates nodes by certificate. */
  pki: ClusterPki;
  /** Per source address: the join routes and failed authentications. */
  limiter: AddressRateLimiter;
  /** Usage agents report with their heartbeats (top, charts). */
  usage: UsageStore;
  metrics: ServerMetrics;
  /** Reads logs from the agents. */
  logs: LogRouter;
  autoscaler: AutoscaleController;
  /** The Endpoints revision each node's routing mesh has applied (deregistration of stopping tasks). */
  meshes: MeshRevisions;
  /**
   * The nodes whose agent runs in this server's own process (`baton up`'s):
   * only they may register with the manager role. The server knows them
   * because it was handed the agent it runs, not because an agent says so.
   */
  managers: ReadonlySet<string>;
  /** Servers sharing a store: this one's election (who leads). */
  election?: Election;
  /** Secret and config contents (sealed in the store). */
  files: FileContents;
  /** Build contexts, as files every server keeps. */
  blobs: Blobs;
  /** Servers sharing a store: every live server's name and URL (heartbeat replies and /info carry them). */
  servers?: () => Promise<ServerRecord[]>;
  /** Writes an online backup of the store to a file (a SQLite snapshot, whatever the backend) and returns its path. */
  snapshot: () => Promise<string>;
  logger?: boolean;
}

/** ownNode lets a node certificate act only for its own node (the Node authorizer's rule); admins act for any. */
export function ownNode(req: FastifyRequest, name: string): void {
  if (req.role === 'agent' && req.node !== name) throw new BatonError('BATON_ERR_FORBIDDEN', `node ${req.node} may not act for node ${name}`);
}

export function nodeCache(deps: HttpDeps): WatchCache {
  return deps.caches[nodeKind.plural]!;
}

export function serviceCache(deps: HttpDeps): WatchCache {
  return deps.caches[serviceKind.plural]!;
}

export function taskCache(deps: HttpDeps): WatchCache {
  return deps.caches[taskKind.plural]!;
}

/** serviceStacks: the stack a service is in ('' for none), for a deployer's scope; undefined when there is no such service (the route answers 404). */
export function serviceStacks(deps: HttpDeps, name: string): string[] | undefined {
  const s = serviceCache(deps).objects.get(name) as unknown as Service | undefined;
  return s ? [s.spec.stack] : undefined;
}

/**
 * logStacks: the stack whose logs a call reads: a service's, or a task's
 * (its label); a removed one's (logs outlive it) by its name's stack
 * prefix, `<stack>_<service>`, or none.
 */
export function logStacks(deps: HttpDeps, target: 'service' | 'task', name: string): string[] {
  if (target === 'service') {
    const known = serviceStacks(deps, name);
    if (known) return known;
  } else {
    const t = taskCache(deps).objects.get(name) as unknown as Task | undefined;
    if (t) return serviceStacks(deps, t.spec.serviceName) ?? [t.metadata.labels['baton.stack'] ?? ''];
  }
  const i = name.indexOf('_');
  return [i > 0 ? name.slice(0, i) : ''];
}

/** withLastBeat: a node as listed, with its last heartbeat from memory (it is never written per beat). */
export function withLastBeat(deps: HttpDeps, n: Node): Node {
  const b = deps.ctx.heartbeats.get(n.metadata.name);
  return b ? { ...n, status: { ...n.status, lastHeartbeat: new Date(b.at).toISOString() } } : n;
}

/** recordPosted records events an agent or admin posted (already validated, at most 1,000 a request). */
export function recordPosted(deps: HttpDeps, items: readonly NewEventBody[]): number {
  for (const e of items) recordEvent(deps.ctx, { type: e.type, reason: e.reason, message: e.message, kind: e.kind, name: e.name, uid: e.uid, node: e.node, service: e.service, source: e.source });
  return items.length;
}

/** sameAddress: two IP addresses in any text form (an IPv6 address has many) are the same address. */
export function sameAddress(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  if (a === b) return true;
  const family = isIP(a);
  if (family === 0 || family !== isIP(b)) return false;
  const list = new BlockList();
  list.addAddress(a, family === 4 ? 'ipv4' : 'ipv6');
  return list.check(b, family === 4 ? 'ipv4' : 'ipv6');
}
