/**
 * BatonServer is the control plane in one object: the store, one watch cache
 * per kind, the controllers behind a leadership gate, and the HTTP API.
 *
 * Start order matters and is the layer order: store → caches (list+watch) →
 * controllers (only while leading) → HTTP. Stop is the reverse.
 */
import { AuditLog } from './audit.js';
import { networkInterfaces } from 'node:os';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { BatonError } from '../base/errors.js';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import pino, { type Logger } from 'pino';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { systemClock, type Clock } from '../base/clock.js';
import { lockDir } from '../base/lock.js';
import { serviceKind, STORE_KINDS } from '../api/kinds.js';
import { eligibleForGlobal } from '../api/quotas.js';
import { Quotas } from './quotas.js';
import { getOrCreate, type Store } from '../store/store.js';
import { exportSnapshot, storeEpoch } from '../store/transfer.js';
import { migrateSchema } from './schema.js';
import { FileContents } from './files.js';
import type { EventStore } from '../store/events.js';
import { SqliteStore } from '../store/sqlite/sqliteStore.js';
import { SqliteEventStore } from '../store/sqlite/sqliteEventStore.js';
import { SpreadPlacer } from '../scheduler/placement.js';
import { Registry } from './registry.js';
import { WatchCache } from './watchCache.js';
import type { Node, Revision, Service, Task } from '../api/types.js';
import { Tokens } from './auth.js';
import { HeartbeatExchange, Heartbeats } from './heartbeats.js';
import { ClusterPki } from './clusterPki.js';
import { buildHttp } from './http.js';
import { DEFAULT_TIMINGS, recordEvent, type Controller, type ControllerContext, type Timings } from './controllers/context.js';
import { ServiceController } from './controllers/serviceController.js';
import { SchedulerController } from './controllers/schedulerController.js';
import { EndpointsController } from './controllers/endpointsController.js';
import { NodeLifecycleController } from './controllers/nodeLifecycleController.js';
import { CronController } from './controllers/cronController.js';
import { AutoscaleController } from './controllers/autoscaleController.js';
import { UsageStore } from './usage.js';
import { MeshRevisions } from './meshRevisions.js';
import { ServerMetrics } from './metrics.js';
import { LogRouter } from './logs.js';
import { AddressRateLimiter } from './rateLimit.js';
import { describeNetwork, taskNetwork, type TaskNetwork } from './ipam.js';
import { alwaysLeader, Election, FencedStore, type Leadership } from './election.js';
import { ClusterKey } from './clusterKey.js';
import { Blobs } from './blobs.js';
import { MAX_BUILD_CONTEXT_BYTES } from '../api/build.js';

export interface ServerOptions {
  dataDir: string;
  /** host:port; port 0 picks a free one. */
  listen: string;
  /** Inject a store (tests use MemoryStore); default: SQLite in dataDir. */
  store?: Store;
  events?: EventStore;
  clock?: Clock;
  timings?: Partial<Timings>;
  logLevel?: string;
  logger?: Logger;
  /** Extra names or addresses for the API's serving certificate. */
  tlsSans?: string[];
  /** The range nodes' task ranges come from (--cluster-cidr, default 10.42.0.0/16; IPv4). */
  clusterCidr?: string;
  /** The prefix length of each node's task range (--node-cidr-size, default 24). */
  nodeCidrSize?: number;
  /** The range service VIPs come from (--service-cidr, default 10.43.0.0/16; IPv4, apart from the cluster CIDR). */
  serviceCidr?: string;
  /**
   * Several servers on one store (etcd): the controllers run on the leader
   * only, elected through the store, and every write they make is fenced by
   * its term (election.ts). Without it, this server is the only one and
   * always leads.
   */
  election?: { identity: string; ttlSeconds?: number };
  /**
   * The cluster key file (--cluster-key): servers sharing a store keep the
   * cluster's identity and CA there, the CA's key sealed with it. Without
   * it, they live in the data directory (one server).
   */
  clusterKeyFile?: string;
}

/** Compaction advances at most this many revisions per backend transaction (see housekeeping). */
const COMPACT_STEP_REVISIONS = 1000;

export class BatonServer {
  private app!: FastifyInstance;
  private controllers: Controller[] = [];
  private caches: Record<string, WatchCache> = {};
  private releaseLock?: () => void;
  private timers: (() => void)[] = [];
  private stoppers: (() => Promise<void>)[] = [];
  private leadershipUnsub?: () => void;
  /** The election, with several servers; otherwise this server always leads. */
  election?: Election;
  leadership: Leadership = alwaysLeader;
  /** Servers sharing a store: the heartbeat exchange, which also keeps the directory of live servers. */
  private exchange?: HeartbeatExchange;
  private logs?: LogRouter;
  private tokens?: Tokens;
  private limiter?: AddressRateLimiter;
  autoscaler!: AutoscaleController;
  url = '';
  clusterId = '';
  adminToken = '';
  pki!: ClusterPki;
  store!: Store;
  /** The store's epoch (transfer.ts): a copy into another store gets a new one, and watches from another epoch are told 410. */
  storeEpoch = '';
  ctx!: ControllerContext;
  /** Where nodes' task ranges and service VIPs come from, as the flags gave it. */
  network!: TaskNetwork;

  private constructor(private readonly opts: ServerOptions) {}

  static async start(opts: ServerOptions): Promise<BatonServer> {
    const s = new BatonServer(opts);
    try {
      await s.init();
    } catch (e) {
      await s.stop().catch(() => {});
      throw e;
    }
    return s;
  }

  private async init(): Promise<void> {
    const { opts } = this;
    // Bad flags are refused before anything is made or locked.
    const network = taskNetwork(opts.clusterCidr, opts.nodeCidrSize, opts.serviceCidr);
    this.network = network;
    const dir = join(opts.dataDir, 'server');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // A data directory whose state `baton migrate` moved to etcd must not come back as a SQLite server: two stores would diverge.
    const moved = join(dir, MOVED_FILE);
    if (!opts.store && existsSync(moved)) {
      const m = JSON.parse(readFileSync(moved, 'utf8')) as { endpoints?: string[]; at?: string };
      throw new BatonError('BATON_ERR_CONFLICT', `the state of ${dir} was moved to etcd (${(m.endpoints ?? []).join(',')}) at ${m.at}: start this server with --store etcd --etcd-endpoints ... --cluster-key ...`);
    }
    this.releaseLock = lockDir(dir, 'baton server');
    const clock = opts.clock ?? systemClock;
    const log = opts.logger ?? pino({ level: opts.logLevel ?? 'info', base: { component: 'server' } }, pino.destination(2));
    const timings = { ...DEFAULT_TIMINGS, ...opts.timings };

    let sqlite: SqliteStore | undefined;
    if (opts.store) this.store = opts.store;
    else this.store = sqlite = SqliteStore.open(join(dir, 'state.db'), { clock });
    const events = opts.events ?? (sqlite ? new SqliteEventStore(sqlite, { ttlMs: timings.eventTtlMs, seriesWindowMs: timings.eventSeriesWindowMs }) : undefined);
    if (!events) throw new Error('an injected store needs an injected event store');
    this.storeEpoch = await storeEpoch(this.store);

    // Cluster identity and the admin token, made once; nodes join with certificates.
    const idFile = join(dir, 'cluster.json');
    const tokens = (this.tokens = new Tokens(this.store, { clock, missTtlMs: timings.authMissTtlMs, maxMisses: timings.authMissCacheSize, recheckMs: timings.tokenRecheckMs }));
    // A server without the cluster's key cannot read its CA: it says so and does not start.
    const clusterKey = opts.clusterKeyFile ? ClusterKey.load(opts.clusterKeyFile) : undefined;
    if (clusterKey) {
      // Shared: the first server names the cluster in the store; each server makes an admin token of its own.
      this.clusterId = await sharedClusterId(this.store);
      if (existsSync(join(dir, 'admin.token'))) this.adminToken = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
      else {
        this.adminToken = await tokens.create('admin', `created at the start of server ${opts.election?.identity ?? opts.listen}`);
        writeFileSync(join(dir, 'admin.token'), this.adminToken + '\n', { mode: 0o600 });
      }
      writeFileSync(idFile, JSON.stringify({ clusterId: this.clusterId }) + '\n', { mode: 0o600 });
    } else if (existsSync(idFile)) {
      this.clusterId = JSON.parse(readFileSync(idFile, 'utf8')).clusterId;
      this.adminToken = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
    } else {
      this.clusterId = randomUUID();
      this.adminToken = await tokens.create('admin', 'created at cluster init');
      writeFileSync(join(dir, 'admin.token'), this.adminToken + '\n', { mode: 0o600 });
      writeFileSync(idFile, JSON.stringify({ clusterId: this.clusterId }) + '\n', { mode: 0o600 });
    }
    const [host, port] = splitHostPort(opts.listen);
    this.pki = await ClusterPki.open(dir, this.store, clock, {
      listenHost: host,
      extraSans: opts.tlsSans,
      nonces: { ttlMs: timings.joinNonceTtlMs, max: timings.maxJoinNonces, perAddress: timings.maxJoinNoncesPerAddress },
      ...(clusterKey ? { clusterKey } : {}),
    });
    this.limiter = new AddressRateLimiter({ clock, burst: timings.rateLimitBurst, perSecond: timings.rateLimitPerSecond, maxAddresses: timings.rateLimitAddresses });

    for (const k of STORE_KINDS) {
      const c = new WatchCache(this.store, k);
      await c.start();
      this.caches[k.plural] = c;
    }
    const registry = new Registry(this.store, clock);
    // Stacks' quotas, charged in the transaction of every service write that changes what a stack asks for.
    const quotas = new Quotas(registry, () => eligibleForGlobal(this.caches.nodes!.list() as unknown as Node[]), clock);
    registry.guard(serviceKind, quotas.guard);
    this.ctx = {
      registry,
      nodes: this.caches.nodes!,
      services: this.caches.services!,
      tasks: this.caches.tasks!,
      endpoints: this.caches.endpoints!,
      revisions: this.caches.revisions!,
      events,
      heartbeats: new Heartbeats(clock),
      clock,
      timings,
      log,
      network,
    };
    // Usage reports (in memory, like heartbeats) and the metrics every part reports to.
    const usage = new UsageStore(clock, timings.usageBucketMs);
    let cancelTick = () => {};
    const tickUsage = () => {
      usage.tick();
      cancelTick = clock.setTimeout(tickUsage, timings.usageBucketMs);
    };
    cancelTick = clock.setTimeout(tickUsage, timings.usageBucketMs);
    this.timers.push(() => cancelTick());
    // Which Endpoints revision each node's mesh has applied (in memory, like heartbeats); before a first report,
    // every Ready node counts for one NotReady window.
    const meshes = new MeshRevisions(clock, this.caches.nodes!, timings.heartbeatIntervalMs * timings.missedHeartbeats);
    this.timers.push(() => meshes.close());
    const metrics = new ServerMetrics(this.caches, usage);
    this.ctx.metrics = metrics;
    // The controllers write through the leadership fence when servers share the store; the API writes as it is.
    let leaderCtx = this.ctx;
    if (opts.election) {
      this.election = new Election({ store: this.store, identity: opts.election.identity, ttlSeconds: opts.election.ttlSeconds, log });
      this.leadership = this.election;
      leaderCtx = { ...this.ctx, registry: new Registry(new FencedStore(this.store, this.election), clock) };
      leaderCtx.registry.guard(serviceKind, quotas.guard);
      // Published twice per heartbeat interval: the leader sees a beat another server took at most half an interval late.
      const exchange = (this.exchange = new HeartbeatExchange(this.store, this.ctx.heartbeats, opts.election.identity, Math.max(100, timings.heartbeatIntervalMs / 2), log));
      await exchange.start();
      this.stoppers.push(() => exchange.stop());
    }
    this.autoscaler = new AutoscaleController(leaderCtx, usage, quotas);
    this.logs = new LogRouter({ caPem: this.pki.ca.certPem, certPem: this.pki.client.certPem, keyPem: this.pki.client.keyPem }, this.caches.nodes!, this.caches.tasks!, log, () => clock.now());
    const scheduler = new SchedulerController(leaderCtx, new SpreadPlacer());
    this.controllers = [new NodeLifecycleController(leaderCtx), scheduler, new ServiceController(leaderCtx, scheduler), new EndpointsController(leaderCtx), new CronController(leaderCtx), this.autoscaler];
    let leading = false;
    let terms = 0;
    // The stored schema is brought to this build's before any controller reads it: by the one server at start,
    // or by each new leader (through its fence) when servers share the store; each migration runs once.
    const migrate = async (): Promise<void> => {
      try {
        for (const m of await migrateSchema(leaderCtx.registry.store, log, () => clock.now())) {
          recordEvent(this.ctx, { type: 'Normal', reason: 'SchemaMigrated', kind: 'Cluster', name: this.clusterId, source: 'server', message: `stored schema ${m.to}: ${m.what}` });
        }
      } catch (err) {
        log.error({ err: String(err) }, 'could not migrate the stored schema; the controllers run on it as it is, and the next leader tries again');
      }
    };
    if (!this.election) await migrate();
    this.leadershipUnsub = this.leadership.onDidChange((now) => {
      if (now === leading) return;
      leading = now;
      const term = ++terms;
      if (!now) {
        for (const c of this.controllers) c.stop();
        return;
      }
      // A new leader gives every node a fresh grace period before judging it by heartbeats.
      if (this.election) this.ctx.heartbeats.restartGrace();
      if (!this.election) for (const c of this.controllers) c.start();
      else void migrate().finally(() => leading && term === terms && this.controllers.forEach((c) => c.start()));
    });
    this.election?.start();

    // Build contexts: files of this server's own, copied to and fetched from the others when servers share a store.
    const blobs = new Blobs(dir, {
      maxBytes: MAX_BUILD_CONTEXT_BYTES,
      log,
      ...(this.exchange && opts.election ? { peers: { list: () => this.exchange!.servers(), self: opts.election.identity, tls: { caPem: this.pki.ca.certPem, certPem: this.pki.client.certPem, keyPem: this.pki.client.keyPem } } } : {}),
    });
    this.stoppers.push(() => blobs.close());

    // The audit log of what people and programs asked to change (audit.ts).
    const audit = new AuditLog(this.store, log);

    // Housekeeping: compaction with a stated retention, and the event TTL.
    const housekeep = async () => {
      try {
        // Servers sharing a store: the leader compacts it and prunes what expired; the others would only repeat it.
        if (this.leadership.leading) {
          const target = (await this.store.currentRevision()) - timings.compactRetainRevisions;
          // In steps, as etcd's compaction batches: one step is one synchronous backend transaction, and
          // compacting 100,000 revisions at once would stall every request for seconds.
          for (let from = await this.store.compactRevision(); from < target; ) {
            from = Math.min(target, from + COMPACT_STEP_REVISIONS);
            await this.store.compact(from);
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
          await this.pki.prune();
          const pruned = await audit.prune(clock.now() - timings.auditRetentionMs);
          if (pruned) log.info({ pruned }, 'deleted audit entries past their retention');
        }
        events.prune(clock.now());
        // Every server keeps its own copies of the blobs: each sweeps its own.
        const swept = blobs.sweep(referencedBlobs(this.caches), clock.now(), timings.blobGraceMs);
        if (swept) log.info({ swept }, 'deleted build contexts nothing names any more');
      } catch (e) {
        log.warn({ err: String(e) }, 'housekeeping failed');
      }
      this.timers.push(clock.setTimeout(() => void housekeep(), timings.compactIntervalMs));
    };
    this.timers.push(clock.setTimeout(() => void housekeep(), timings.compactIntervalMs));

    this.app = buildHttp({
      ctx: this.ctx,
      audit,
      tokens,
      quotas,
      clusterId: this.clusterId,
      storeBackend: this.store.backend,
      storeEpoch: this.storeEpoch,
      files: new FileContents(this.ctx.registry, clusterKey ?? secretsKey(dir)),
      blobs,
      caches: this.caches,
      pki: this.pki,
      limiter: this.limiter,
      usage,
      metrics,
      logs: this.logs,
      autoscaler: this.autoscaler,
      meshes,
      managers: this.managers,
      ...(this.election ? { election: this.election } : {}),
      ...(this.exchange ? { servers: () => this.exchange!.servers() } : {}),
      snapshot: async () => {
        // In the server's own 0700 directory, not the shared /tmp: the copy holds token hashes and the CA (its key sealed, on etcd), and is 0600 itself.
        const file = join(opts.dataDir, 'server', `snapshot-${process.pid}-${Date.now()}.db`);
        // SQLite copies its own file online; another backend's state is read at one revision into a file of the same format.
        if (sqlite) await sqlite.backup(file);
        else await exportSnapshot({ store: this.store, events }, file);
        return file;
      },
    });
    // Thousands of agents may connect within one turn of a busy event loop (Node's default backlog is 511): a full
    // accept queue drops their SYNs, and each drop costs a client 1, 3, then 7 seconds of TCP retransmission.
    await this.app.listen({ host, port, backlog: LISTEN_BACKLOG });
    const addr = this.app.server.address();
    const p = typeof addr === 'object' && addr ? addr.port : port;
    this.url = `https://${host.includes(':') ? `[${host}]` : host}:${p}`;
    this.exchange?.announce(this.advertisedUrl(host, p));
    log.info({ url: this.url, clusterId: this.clusterId, store: this.store.backend, taskNetwork: describeNetwork(network) }, 'server started');
  }

  /** The nodes whose agent runs in this process (hostsAgent). */
  private readonly managers = new Set<string>();

  /**
   * hostsAgent tells the server that the agent of node `name` runs in its
   * own process (`baton up`): that node, when it registers with its
   * certificate and claims it, has the manager role. No request can add a
   * name here, so no agent elsewhere becomes a manager by saying so.
   */
  hostsAgent(name: string): void {
    this.managers.add(name);
  }

  /** joinToken is the current worker join token. */
  get joinToken(): string {
    return this.pki.joinToken();
  }

  /**
   * What callers without credentials have made the server hold: unknown
   * token ids remembered, addresses the rate limit tracks, join nonces. For
   * tests, which check that each stays bounded.
   */
  get anonymousState(): { authMisses: number; authKnown: number; rateLimitAddresses: number; joinNonces: number; nonceAddresses: number } {
    const n = this.pki.nonceCount;
    return { authMisses: this.tokens!.cacheSize.misses, authKnown: this.tokens!.cacheSize.known, rateLimitAddresses: this.limiter!.size, joinNonces: n.nonces, nonceAddresses: n.addresses };
  }

  /** inject sends a request to the API without a socket (fastify's inject), from `remoteAddress` if given; for tests. */
  inject(o: InjectOptions): Promise<LightMyRequestResponse> {
    return this.app.inject(o);
  }

  /** caPem is the cluster CA certificate that clients trust. */
  get caPem(): string {
    return this.pki.ca.certPem;
  }

  /** advertisedUrl: where others reach this server; for a wildcard listen address, the machine's first external IPv4 address. */
  private advertisedUrl(host: string, port: number): string {
    let h = host;
    if (h === '0.0.0.0' || h === '::' || h === '') {
      const external = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal);
      h = external?.address ?? '127.0.0.1';
    }
    return `https://${h.includes(':') ? `[${h}]` : h}:${port}`;
  }

  async stop(): Promise<void> {
    this.leadershipUnsub?.();
    for (const c of this.controllers) c.stop();
    // Resigning hands the leadership over at once rather than after a TTL.
    await this.election?.stop();
    for (const s of this.stoppers) await s().catch(() => {});
    for (const t of this.timers) t();
    if (this.app) await this.app.close().catch(() => {});
    await this.logs?.close();
    this.pki?.close();
    for (const c of Object.values(this.caches)) c.stop();
    if (this.store && !this.opts.store) await this.store.close().catch(() => {});
    this.releaseLock?.();
  }
}

/** The server's listen backlog (the kernel caps it at net.core.somaxconn, 4096 on current kernels). */
export const LISTEN_BACKLOG = 8192;

export function splitHostPort(listen: string): [string, number] {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen must be host:port, got "${listen}"`);
  return [m[1] || '127.0.0.1', Number(m[2])];
}

export const CLUSTER_ID_KEY = '/baton/cluster/id';
/** In a server's data directory once `baton migrate` moved its state to etcd: it records where, and keeps a SQLite server from starting there. */
export const MOVED_FILE = 'moved-to-etcd.json';

/**
 * secretsKey: a single server seals secret contents with a key of its own in
 * its data directory (0600), made at first use; servers sharing a store use
 * the cluster key instead.
 */
function secretsKey(dir: string): ClusterKey {
  const file = join(dir, 'secrets.key');
  return existsSync(file) ? ClusterKey.load(file) : ClusterKey.create(file);
}

/** sharedClusterId reads the cluster's id from the store, or names the cluster there (the first server to write wins). */
function sharedClusterId(store: Store): Promise<string> {
  return getOrCreate(store, CLUSTER_ID_KEY, async () => randomUUID());
}

/** referencedBlobs: the build contexts that services, their kept revisions and their tasks name (a rollback or a restart may need any of them). */
function referencedBlobs(caches: Record<string, WatchCache>): Set<string> {
  const out = new Set<string>();
  const add = (c: { build?: { context: string } } | undefined) => c?.build && out.add(c.build.context);
  // (Only a task's main container is built: schemas.ts.)
  for (const s of caches.services?.objects.values() ?? []) add((s as unknown as Service).spec.container);
  for (const r of caches.revisions?.objects.values() ?? []) add((r as unknown as Revision).spec.spec.container);
  for (const t of caches.tasks?.objects.values() ?? []) add((t as unknown as Task).spec.container);
  return out;
}
