/**
 * KINDS is the one table of resource kinds. It drives the HTTP routes, the
 * server's watches and watch cache, the typed client, the CLI's tables and
 * the conformance tests, so a later kind (Endpoints, Job, Autoscaler state,
 * Revision) is a new row here, not a rewrite elsewhere.
 */
import type { z } from 'zod';
import { hasProbe, isGlobal, type Config, type Endpoints, type Node, type Revision, type Secret, type Service, type Task } from './types.js';
import { nodeSpecSchema, serviceSpecSchema } from './schemas.js';

export interface Column<T> {
  header: string;
  get(obj: T): string;
}

export interface KindInfo<T = any> {
  kind: string;
  plural: string;
  /** Where objects live: the revisioned store, or the TTL'd event table. */
  storage: 'store' | 'events';
  /** Whether clients may create/update it through the generic routes (Tasks and Nodes are server-owned). */
  clientWritable: boolean;
  specSchema?: z.ZodType;
  /** Field selectors the watch cache can filter on (e.g. spec.nodeName for an agent's tasks). */
  fields: Record<string, (obj: T) => string | undefined>;
  columns: Column<T>[];
}

/** hostOf shows where a published port is bound: `*` for every node's address, else its host IP (an IPv6 one in brackets). */
const hostOf = (ip: string | undefined): string => (ip === undefined ? '*' : ip.includes(':') ? `[${ip}]` : ip);

export function age(iso: string | undefined): string {
  if (!iso) return '-';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function bytes(n: number): string {
  if (!n) return '0';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n % 1 ? n.toFixed(1) : n}${units[i]}`;
}

export const nodeKind: KindInfo<Node> = {
  kind: 'Node',
  plural: 'nodes',
  storage: 'store',
  clientWritable: false,
  specSchema: nodeSpecSchema,
  fields: { 'metadata.name': (n) => n.metadata.name, 'status.state': (n) => n.status.state },
  columns: [
    { header: 'ID', get: (n) => n.metadata.uid.replace(/-/g, '').slice(0, 12) },
    { header: 'NAME', get: (n) => n.metadata.name },
    { header: 'STATUS', get: (n) => ({ ready: 'Ready', notready: 'NotReady', down: 'Down', unknown: 'Unknown' })[n.status.state] ?? n.status.state },
    { header: 'AVAILABILITY', get: (n) => n.spec.availability },
    { header: 'ROLE', get: (n) => n.status.role ?? 'worker' },
    { header: 'ADDRESS', get: (n) => n.status.address },
    { header: 'TASK RANGE', get: (n) => n.status.taskRange ?? '-' },
    { header: 'CPUS', get: (n) => `${n.status.allocated.cpus}/${n.status.capacity.cpus}` },
    { header: 'MEMORY', get: (n) => `${bytes(n.status.allocated.memoryBytes)}/${bytes(n.status.capacity.memoryBytes)}` },
    { header: 'TASKS', get: (n) => String(n.status.taskCount) },
    { header: 'LABELS', get: (n) => Object.entries(n.metadata.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-' },
    { header: 'HEARTBEAT', get: (n) => (n.status.lastHeartbeat ? `${age(n.status.lastHeartbeat)} ago` : '-') },
    { header: 'VERSION', get: (n) => n.status.agentVersion || '-' },
  ],
};

export const serviceKind: KindInfo<Service> = {
  kind: 'Service',
  plural: 'services',
  storage: 'store',
  clientWritable: true,
  specSchema: serviceSpecSchema,
  fields: { 'metadata.name': (s) => s.metadata.name, 'spec.stack': (s) => s.spec.stack },
  columns: [
    { header: 'ID', get: (s) => s.metadata.uid.replace(/-/g, '').slice(0, 12) },
    { header: 'NAME', get: (s) => s.metadata.name },
    { header: 'MODE', get: (s) => s.spec.mode },
    { header: 'REPLICAS', get: (s) => (s.status.job ? `${s.status.job.succeeded}/${s.status.job.completions} done (${s.spec.mode})` : s.spec.schedule ? `cron ${s.spec.schedule.cron}` : isGlobal(s.spec) ? `${s.status.ready}/${s.status.desired} (global)` : `${s.status.ready}/${s.spec.replicas}`) },
    { header: 'IMAGE', get: (s) => s.spec.container.image },
    {
      header: 'PORTS',
      get: (s) => s.spec.ports.map((p) => (p.published ? `${hostOf(p.hostIP)}:${p.published}->${p.target}/${p.protocol}` : `${p.target}/${p.protocol}`)).join(', '),
    },
  ],
};

/**
 * serviceColumnsWithVip is the service table with each service's VIP, which
 * its Endpoints holds (`-` for none: a service on the host's network without
 * ports, or one written when the service CIDR was full), before its ports.
 */
export function serviceColumnsWithVip(vipOf: (service: string) => string | undefined): Column<Service>[] {
  const cols = [...serviceKind.columns];
  cols.splice(cols.findIndex((c) => c.header === 'PORTS'), 0, { header: 'VIP', get: (s) => vipOf(s.metadata.name) ?? '-' });
  return cols;
}

export const taskKind: KindInfo<Task> = {
  kind: 'Task',
  plural: 'tasks',
  storage: 'store',
  clientWritable: false,
  fields: {
    'metadata.name': (t) => t.metadata.name,
    'spec.nodeName': (t) => t.spec.nodeName,
    'spec.serviceName': (t) => t.spec.serviceName,
    'status.state': (t) => t.status.state,
  },
  columns: [
    { header: 'ID', get: (t) => t.metadata.uid.replace(/-/g, '').slice(0, 12) },
    { header: 'NAME', get: (t) => t.metadata.name },
    { header: 'IMAGE', get: (t) => t.spec.container.image },
    { header: 'NODE', get: (t) => t.spec.nodeName || '-' },
    { header: 'DESIRED STATE', get: (t) => t.spec.desiredState },
    { header: 'CURRENT STATE', get: (t) => `${t.status.state[0]!.toUpperCase()}${t.status.state.slice(1)} ${age(t.status.timestamp)} ago` },
    // A task's own address (its namespace's), then the node ports that reach it (host networking, or mode: host ports).
    { header: 'ADDRESS', get: (t) => [...(t.status.taskIP ? [t.status.taskIP] : []), ...(t.status.hostIP ? t.status.ports.map((p) => `${t.status.hostIP}:${p.hostPort}`) : [])].join(',') || '-' },
    { header: 'HEALTH', get: health },
    { header: 'RESTARTS', get: (t) => `${t.status.restartCount ?? 0}${t.status.restartCount && t.status.exitCode !== undefined ? ` (last exit ${t.status.exitCode})` : ''}` },
    { header: 'ERROR', get: taskProblem },
  ],
};

/** health sums up a task's probes: healthy, unhealthy, not ready, starting (no verdict yet), or - (no probes). */
function health(t: Task): string {
  const c = t.spec.container;
  if (!hasProbe(c.healthcheck) && !hasProbe(c.readiness)) return '-';
  if (t.status.state !== 'running') return '-';
  if (t.status.healthy === false) return 'unhealthy';
  if (hasProbe(c.readiness) && t.status.ready === false) return 'not ready';
  if ((hasProbe(c.healthcheck) && t.status.healthy === undefined) || (hasProbe(c.readiness) && t.status.ready === undefined)) return 'starting';
  return 'healthy';
}

/** taskProblem is what the ERROR column says: the engine's error, why a task is pending, when it restarts next, or why it is not ready. */
function taskProblem(t: Task): string {
  const s = t.status;
  if (s.nextRestartAt && Date.parse(s.nextRestartAt) > Date.now()) return `${s.message} (at ${s.nextRestartAt.slice(11, 23)})`;
  if (s.error) return s.error;
  if (s.state === 'pending') return s.pendingReason ?? '';
  if (s.state === 'running' && s.message.startsWith('not ready')) return s.message;
  if (s.state === 'orphaned') return s.message;
  return '';
}

export const eventKind: KindInfo<any> = {
  kind: 'Event',
  plural: 'events',
  storage: 'events',
  clientWritable: false,
  fields: {},
  columns: [
    // A repeated event (a series) shows when it last happened and how often: "(x12)".
    { header: 'TIME', get: (e) => e.lastTime ?? e.time },
    { header: 'TYPE', get: (e) => e.type },
    { header: 'REASON', get: (e) => e.reason },
    { header: 'OBJECT', get: (e) => `${e.kind.toLowerCase()}/${e.name}` },
    { header: 'SOURCE', get: (e) => e.source },
    { header: 'MESSAGE', get: (e) => (e.count > 1 ? `${e.message} (x${e.count})` : e.message) },
  ],
};

export const endpointsKind: KindInfo<Endpoints> = {
  kind: 'Endpoints',
  plural: 'endpoints',
  storage: 'store',
  clientWritable: false,
  fields: { 'metadata.name': (e) => e.metadata.name, 'spec.stack': (e) => e.spec.stack },
  columns: [
    { header: 'NAME', get: (e) => e.metadata.name },
    { header: 'VIP', get: (e) => e.spec.vip ?? '-' },
    { header: 'PUBLISHED', get: (e) => e.spec.published.map((p) => `${hostOf(p.hostIP)}:${p.published}->${p.target}${p.protocol === 'udp' ? '/udp' : ''}`).join(',') || '-' },
    { header: 'LB', get: (e) => `${e.spec.lb.algorithm}${e.spec.lb.proxyProtocol !== 'off' ? ` proxy-${e.spec.lb.proxyProtocol}` : ''}` },
    // Where the mesh dials each endpoint: a task's own address, or its node's address and host ports.
    { header: 'ENDPOINTS', get: (e) => e.spec.endpoints.map((a) => `${a.taskIP ?? a.address}:${Object.values(a.ports).join('/')}`).join(',') || '<none>' },
  ],
};

export const revisionKind: KindInfo<Revision> = {
  kind: 'Revision',
  plural: 'revisions',
  storage: 'store',
  clientWritable: false,
  fields: { 'metadata.name': (r) => r.metadata.name, 'spec.service': (r) => r.spec.service },
  columns: [
    { header: 'REVISION', get: (r) => String(r.spec.revision) },
    { header: 'SERVICE', get: (r) => r.spec.service },
    { header: 'HASH', get: (r) => r.spec.hash },
    { header: 'IMAGE', get: (r) => r.spec.spec.container.image },
    { header: 'CREATED', get: (r) => `${age(r.metadata.creationTimestamp)} ago` },
    { header: 'CAUSE', get: (r) => r.spec.cause },
  ],
};

/** fileKind: secrets and configs are listed alike (their content is never in the object). */
function fileKind<T extends Secret | Config>(kind: 'Secret' | 'Config', plural: string): KindInfo<T> {
  return {
    kind,
    plural,
    storage: 'store',
    // Written through their own routes, which take the content and keep it apart from the object.
    clientWritable: false,
    fields: { 'metadata.name': (o) => o.metadata.name },
    columns: [
      { header: 'NAME', get: (o) => o.metadata.name },
      { header: 'HASH', get: (o) => o.spec.hash.slice(0, 12) },
      { header: 'SIZE', get: (o) => bytes(o.spec.size) },
      { header: 'AGE', get: (o) => age(o.metadata.creationTimestamp) },
    ],
  };
}

export const secretKind = fileKind<Secret>('Secret', 'secrets');
export const configKind = fileKind<Config>('Config', 'configs');

export const KINDS = [nodeKind, serviceKind, taskKind, endpointsKind, revisionKind, secretKind, configKind, eventKind] as const;
export const STORE_KINDS = KINDS.filter((k) => k.storage === 'store');

export function kindByPlural(plural: string): KindInfo | undefined {
  return KINDS.find((k) => k.plural === plural);
}

export function kindByName(kind: string): KindInfo | undefined {
  return KINDS.find((k) => k.kind.toLowerCase() === kind.toLowerCase());
}

/** storeKey is where an object lives in the Store; one prefix per kind so each kind has one watch. */
export function storeKey(plural: string, name: string): string {
  return `/baton/${plural}/${name}`;
}

export function storePrefix(plural: string): string {
  return `/baton/${plural}/`;
}
