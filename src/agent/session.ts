/**
 * NodeSession is the node's standing with the server once joined: it
 * registers the node (capacity, address, platform, engine), heartbeats on the
 * interval the server asks for (carrying the engine's state, named volumes
 * and usage), and registers again when the server has forgotten the node.
 * Registration also tells it the address ranges its task namespaces route.
 */
import { z } from 'zod';
import { hostname as osHostname, cpus as osCpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ApiClient } from '../api/client.js';
import { backoffDelay } from '../base/backoff.js';
import { parseCidr, formatCidr, type Cidr } from '../base/cidr.js';
import { sleep } from '../base/clock.js';
import { BatonError } from '../base/errors.js';
import { VERSION } from '../base/version.js';
import type { AgentOptions } from './options.js';
import type { EngineWatch } from './engineWatch.js';
import type { AgentState } from './state.js';
import type { StatusReporter } from './status.js';
import type { UsageReport } from './usage.js';

export type SessionOptions = Pick<AgentOptions, 'address' | 'dataDir' | 'driver' | 'cpus' | 'memoryBytes' | 'labels' | 'portRange' | 'heartbeatMs' | 'manager'>;

export interface SessionDeps {
  state: AgentState;
  client: () => ApiClient;
  engine: EngineWatch;
  status: StatusReporter;
  log: Logger;
  signal: AbortSignal;
  /** The agent's HTTPS port, when it runs its listener. */
  agentPort: () => number | undefined;
  /** What the next heartbeat carries about usage (undefined for simulated nodes). */
  usage: () => Promise<UsageReport | undefined>;
  /** A refusal that may mean this node was removed. */
  onAuthError: (e: unknown) => void;
  /** Servers sharing a store: the URLs of every live server, as a heartbeat reply lists them. */
  onServers?: (urls: string[]) => void;
}

/** The answer to `POST /nodes/register`, as the server sends it. */
interface RegisterResponse {
  node: { metadata: { uid: string } };
  clusterId: string;
  heartbeatIntervalMs: number;
  statusFlushMs?: number;
  taskRange?: string;
  clusterCidr?: string;
  serviceCidr?: string;
}

/**
 * NodeRanges are the addresses the server gave out, parsed: this node's
 * task range, the cluster's (every node's tasks) and the service CIDR (VIPs).
 */
export interface NodeRanges {
  taskRange: Cidr;
  clusterCidr: Cidr;
  serviceCidr: Cidr;
}

/** parseRanges reads the ranges of a registration answer; they go into routes, so anything but a plain IPv4 range is refused. */
export function parseRanges(res: Pick<RegisterResponse, 'taskRange' | 'clusterCidr' | 'serviceCidr'>): NodeRanges {
  const one = (field: 'taskRange' | 'clusterCidr' | 'serviceCidr'): Cidr => {
    const text = res[field];
    try {
      if (typeof text !== 'string') throw new Error('it is missing');
      const c = parseCidr(text);
      if (formatCidr(c) !== text) throw new Error(`${text} has host bits set`);
      return c;
    } catch (e) {
      throw new BatonError('BATON_ERR_INCOMPATIBLE_AGENT', `the server's registration answer has no usable ${field}: ${(e as Error).message}; run a server of version ${VERSION.split('.').slice(0, 2).join('.')}.x`);
    }
  };
  return { taskRange: one('taskRange'), clusterCidr: one('clusterCidr'), serviceCidr: one('serviceCidr') };
}

export class NodeSession {
  heartbeatMs: number;
  /** The ranges from the last registration. */
  ranges?: NodeRanges;

  constructor(
    private readonly opts: SessionOptions,
    private readonly deps: SessionDeps,
  ) {
    this.heartbeatMs = opts.heartbeatMs ?? 2000;
  }

  private nodeFile(): string {
    return join(this.opts.dataDir, 'node.json');
  }

  /** register registers (or re-registers) the node, retrying while the server is away; a refusal is final. */
  async register(): Promise<void> {
    const { opts, deps } = this;
    const { state } = deps;
    const info = await opts.driver.ping();
    let failures = 0;
    while (!deps.signal.aborted) {
      try {
        const port = deps.agentPort();
        const res = await deps.client().call<RegisterResponse>('POST', '/api/v1/nodes/register', {
          name: state.name,
          address: opts.address,
          hostname: osHostname(),
          agentVersion: VERSION,
          labels: opts.labels ?? {},
          capacity: { cpus: opts.cpus ?? info.cpus ?? osCpus().length, memoryBytes: opts.memoryBytes ?? info.memoryBytes ?? totalmem() },
          portRange: opts.portRange,
          heartbeatMs: opts.heartbeatMs,
          ...(port !== undefined ? { agentPort: port } : {}),
          ...(opts.manager ? { role: 'manager' } : {}),
          platform: { os: process.platform, arch: ({ x64: 'x86_64', arm64: 'aarch64', arm: 'armv7l', ia32: 'i386' } as Record<string, string>)[process.arch] ?? process.arch },
          engine: { ok: info.ok, version: info.version, error: info.error },
        });
        const known = existsSync(this.nodeFile()) ? JSON.parse(readFileSync(this.nodeFile(), 'utf8')) : undefined;
        if (known && known.clusterId && known.clusterId !== res.clusterId) {
          throw new BatonError('BATON_ERR_CONFLICT', `data directory ${opts.dataDir} belongs to cluster ${known.clusterId}, but the server is cluster ${res.clusterId}; use another --data-dir`);
        }
        this.ranges = parseRanges(res);
        state.nodeUid = res.node.metadata.uid;
        state.clusterId = res.clusterId;
        state.taskRange = formatCidr(this.ranges.taskRange);
        this.heartbeatMs = res.heartbeatIntervalMs;
        deps.status.advise(res.statusFlushMs);
        writeFileSync(this.nodeFile(), JSON.stringify({ name: state.name, uid: state.nodeUid, clusterId: state.clusterId }) + '\n');
        return;
      } catch (e) {
        const err = e as BatonError;
        // A refusal (revoked, incompatible version, wrong cluster) will not fix itself.
        if (err.code && err.code !== 'BATON_ERR_UNAVAILABLE' && err.code !== 'BATON_ERR_INTERNAL') throw err;
        failures++;
        if (failures === 1 || failures % 10 === 0) deps.log.warn({ err: err.message }, 'cannot register with the server yet; retrying');
        await sleep(backoffDelay({ initialMs: 200, maxMs: 5000 }, failures), deps.signal);
      }
    }
  }

  /** heartbeatLoop reports liveness and the last known engine state; it never waits on the engine. */
  async heartbeatLoop(): Promise<void> {
    const { deps } = this;
    while (!deps.signal.aborted) {
      await sleep(this.heartbeatMs, deps.signal);
      if (deps.signal.aborted) return;
      try {
        const { engine } = deps;
        const usage = await deps.usage();
        const client = deps.client();
        // With several servers, a beat that gets no answer within one interval moves the client to the next server
        // (a paused one still takes the connection): the node misses no more than that beat.
        const timeoutMs = client.servers.length > 1 ? this.heartbeatMs : undefined;
        // Every other call too (status reports, lists): a server that stopped answering costs at most an interval (not below 1 s).
        if (timeoutMs) client.setTimeout(Math.max(1000, timeoutMs));
        const r = await client.call<{ heartbeatIntervalMs?: number; statusFlushMs?: number; servers?: unknown }>(
          'POST',
          `/api/v1/nodes/${encodeURIComponent(deps.state.name)}/heartbeat`,
          {
            engine: { ok: deps.state.engineOk, version: engine.version, error: engine.error },
            intervalMs: this.heartbeatMs,
            ...(deps.state.volumes ? { volumes: deps.state.volumes } : {}),
            ...(usage ? { usage } : {}),
          },
          { timeoutMs },
        );
        // The server stretches the interval as the cluster grows (a bounded beat rate).
        if (r.heartbeatIntervalMs && r.heartbeatIntervalMs > 0) this.heartbeatMs = Math.max(this.opts.heartbeatMs ?? 0, r.heartbeatIntervalMs);
        deps.status.advise(r.statusFlushMs);
        const servers = serverList(r.servers);
        if (servers) deps.onServers?.(servers);
      } catch (e) {
        const err = e as BatonError;
        deps.onAuthError(err);
        if (err.code === 'BATON_ERR_NOT_FOUND') {
          await this.register().catch((x) => {
            deps.onAuthError(x);
            deps.log.warn({ err: String(x) }, 're-register failed');
          });
        } else deps.log.debug({ err: err.message }, 'heartbeat failed');
      }
    }
  }
}

/** A heartbeat reply's server URLs: https origins only, a bounded list. */
const serverListSchema = z.array(z.string().max(300).url().refine((u) => { const p = new URL(u); return p.protocol === 'https:' && p.pathname === '/' && !p.search && !p.username; }, 'an https origin')).min(1).max(64);

/** serverList reads a heartbeat reply's server URLs, or nothing when they are absent or malformed. */
function serverList(v: unknown): string[] | undefined {
  const r = serverListSchema.safeParse(v);
  return r.success ? r.data.map((u) => u.replace(/\/+$/, '')) : undefined;
}
