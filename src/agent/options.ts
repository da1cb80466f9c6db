/**
 * AgentOptions: how `baton agent` (and `baton up`'s agent, and `baton sim`'s
 * simulated nodes) configure a node agent. Each part of the agent takes the
 * options it reads (a Pick of these).
 */
import type { Logger } from 'pino';
import type { Clock } from '../base/clock.js';
import type { Driver } from './driver.js';

export interface AgentOptions {
  /** The server to join (https://HOST:PORT); optional once this node has joined (its data dir knows). */
  server?: string;
  /** The join token; needed only for the first join (or after the certificate expired). */
  joinToken?: string;
  name?: string;
  /**
   * This agent runs in a server's own process (`baton up`), so its node has
   * the manager role: it claims it at registration, and the server checks
   * the claim against the agent it was handed (BatonServer.hostsAgent).
   * No flag sets it.
   */
  manager?: boolean;
  address: string;
  dataDir: string;
  /** Where secrets and configs are kept as files, under <runDir>/<node>/files (default /run/baton; a tmpfs, or one is mounted there). */
  runDir?: string;
  driver: Driver;
  cpus?: number;
  memoryBytes?: number;
  labels?: Record<string, string>;
  portRange: [number, number];
  /** Loopback range for this node's service VIPs (default: from the address). */
  vipRange?: string;
  /** Run the routing mesh (default true; simulated nodes run none). */
  mesh?: boolean;
  /** Let the mesh route plain round-robin services in the kernel (nftables), when it can (default true). */
  meshKernel?: boolean;
  /** Which proxy carries the TCP ports the kernel does not route while their service has endpoints (default haproxy, when installed). */
  meshUserspace?: 'haproxy' | 'node';
  /** How long HAProxy's workers replaced by a change of routes may serve their open connections (default 30 min). */
  meshProxyDrainMs?: number;
  /** How often the nftables tables of this cluster's agents that are gone are removed from the host (default 10 s). */
  tableSweepMs?: number;
  /** Run tasks of network mode bridge in namespaces of their own on this node's task network (default true; needs a driver with sandboxes). */
  taskNetwork?: boolean;
  /** Tasks on the task network reach outside the cluster's ranges, masqueraded (default true); false drops what they send elsewhere. */
  egress?: boolean;
  /** Where the node's resolver sends names outside the cluster ('ip' or 'ip:port'), or 'none' (NXDOMAIN); default: the node's own nameservers. */
  dnsUpstream?: string[] | 'none';
  /** The cluster domain (default cluster.local): `<service>.<stack>.svc.<domain>`. */
  clusterDomain?: string;
  pull: 'never' | 'missing' | 'always';
  /** Bound on fetching a build context and building an image from it (default 30 minutes). */
  buildTimeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
  logLevel?: string;
  /** How often pending status changes are sent. */
  statusFlushMs?: number;
  startConcurrency?: number;
  /** Re-check every task this often even without events (safety net). */
  resyncIntervalMs?: number;
  /** A task that stayed ready at least this long resets its crash backoff (default 60 s). */
  backoffResetMs?: number;
  /** Health checks and readiness probes running at once on this node (default 16). */
  maxProbesInFlight?: number;
  /** A task with ports told to stop waits at most this long for every Ready node's routing mesh to stop routing to it (default 10 s). */
  deregisterMs?: number;
  /** Asked heartbeat interval; the server may stretch it when the cluster is large. */
  heartbeatMs?: number;
  /** How often the certificate's age is checked for renewal. */
  certCheckMs?: number;
  /** The agent's HTTPS port on its address (logs and metrics for the server; default 7950); null: no listener (simulated nodes). */
  listenPort?: number | null;
  /** The bearer token a scraper must send to /metrics (--metrics-auth token); undefined: /metrics is open. */
  metricsToken?: string;
  /** Log retention on this node: total bytes (default 100 MiB) and age (default 24 h). */
  logMaxBytes?: number;
  logMaxAgeMs?: number;
  /** How often running tasks' CPU and memory are sampled (default 2 s). */
  statsIntervalMs?: number;
  /** Called when the cluster no longer accepts this node (revoked): the process should exit. */
  onFatal?: (err: Error) => void;
}

