/**
 * TestCluster: one `baton server` process and `baton agent` processes on
 * 127.0.0.2, 127.0.0.3, … (node nN has address 127.0.0.N), each with its own
 * data dir and port range, on the shared dockerd (or, with `dockerSocket`,
 * on an engine of the test's own). Everything it starts is stopped by PID and
 * every container of its cluster removed in stop().
 *
 * With `netns`, each agent runs in a network namespace of its own
 * (NetnsHarness: node nN at 100.127.0.N on a bridge the test owns) and the
 * server on the bridge's address in the root namespace, so traffic between
 * nodes crosses real interfaces; stop() deletes the namespaces and the
 * bridge (and with them each node's task network).
 *
 * With `ha`, there are several servers (`servers[i]` on `ha.serverPort` + i)
 * on an etcd cluster of the test's, sharing a cluster key; the agents and the
 * client know every server's URL.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { nodeKind } from '../../src/api/kinds.js';
import type { Node, Task } from '../../src/api/types.js';
import { tlsTransport, withTransport, type Transport } from '../../src/api/tls.js';
import { removeNodeNetwork, staleClusters } from './net.js';
import { HARNESS_GATEWAY, NetnsHarness } from './netns.js';
import { baton, BIN, cleanupDir, docker, eventually, freePort, removeClusterContainers, startProc, stopProc, tempDir, waitOutput, writeFile, type Proc } from './proc.js';

export class TestCluster {
  dir = '';
  server!: Proc;
  /** With ha: every server, by index (server is servers[0]). */
  readonly servers: Proc[] = [];
  urls: string[] = [];
  url = '';
  api!: ApiClient;
  env: Record<string, string> = {};
  clusterId = '';
  token = '';
  readonly agents = new Map<string, Proc>();
  private port = 0;
  private tls?: Transport;
  /** The namespaces and link of a multi-host cluster (option netns). */
  readonly netns?: NetnsHarness;

  constructor(
    private readonly prefix: string,
    private readonly timings: Record<string, number>,
    /** Each agent's port range starts here plus 200 × its number. */
    private readonly portBase: number,
    private readonly opts: {
      /** The agents' engine socket (default: the shared dockerd). */
      dockerSocket?: string;
      /** More flags for every agent. */
      agentArgs?: string[];
      /** Run each agent in a network namespace of its own, joined to the others by a bridge the test owns (NetnsHarness). */
      netns?: boolean;
      /** Several servers on etcd (these client URLs), with this leader TTL. */
      /** Several servers on etcd (these client URLs), with this leader TTL; server i listens on serverPort + i (below the ephemeral ports: servers are restarted on their port). */
      ha?: { servers: number; etcd: string[]; leaderTtl?: string; serverPort: number };
    } = {},
  ) {
    if (opts.netns) this.netns = new NetnsHarness();
  }

  /** dockerHost is the engine the agents use, for the docker CLI (undefined: the shared one). */
  get dockerHost(): string | undefined {
    return this.opts.dockerSocket ? `unix://${this.opts.dockerSocket}` : undefined;
  }

  /**
   * clusterCidr: each test cluster's task addresses come from a /16 of its
   * own, from its port base, so that clusters of files run one after another
   * (or a bridge a killed run left behind) never claim the same range.
   */
  get clusterCidr(): string {
    return `10.${100 + (Math.floor(this.portBase / 1000) % 150)}.0.0/16`;
  }

  static addr(node: string): string {
    return `127.0.0.${node.slice(1)}`;
  }

  /** address: node n's address (on the harness link with netns, else on loopback). */
  address(node: string): string {
    return this.netns ? this.netns.address(Number(node.slice(1))) : TestCluster.addr(node);
  }

  async start(nodes: readonly string[]): Promise<void> {
    this.dir = tempDir(this.prefix);
    this.env = { BATON_HOME: this.dir, BATON_TIMINGS: JSON.stringify(this.timings) };
    // A run of this file killed before its end left its tasks and network up: they go first.
    if (!this.netns) for (const stale of await staleClusters(this.clusterCidr)) await removeClusterContainers(stale, this.dockerHost);
    // The harness's bridge address is this run's alone: the port base's last port is free there.
    this.port = this.netns ? this.portBase + 999 : await freePort();
    await this.netns?.up(nodes.map((n) => Number(n.slice(1))));
    if (this.opts.ha) {
      // The first server makes the cluster (and its key); the others join it through the store.
      for (let i = 0; i < this.opts.ha.servers; i++) await this.startServer(i);
      this.server = this.servers[0]!;
      this.url = this.urls.join(',');
    } else await this.startServer();
    this.token = (await waitOutput(this.server, /join token: (\S+)/, 5000))[1]!;
    const data = join(this.dir, this.opts.ha ? 'server0/server' : 'server/server');
    this.clusterId = JSON.parse(readFileSync(join(data, 'cluster.json'), 'utf8')).clusterId;
    const admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    this.tls = tlsTransport({ caPem: readFileSync(join(data, 'ca.crt'), 'utf8') });
    this.api = new ApiClient(withTransport({ server: this.url, token: admin }, this.tls));
    this.env = { ...this.env, BATON_SERVER: this.url, BATON_TOKEN: admin, BATON_CA: join(data, 'ca.crt') };
    for (const n of nodes) this.startAgent(n);
    await eventually(async () => {
      for (const n of nodes) expect(await this.state(n)).toBe('ready');
    }, 30_000);
  }

  /** The build servers and agents start from: bin/baton.js of this checkout, or of an older one (the upgrade test). */
  bin = BIN;
  private readonly withBin = (argv: string[]): string[] => argv.map((a) => (a === BIN ? this.bin : a));

  /** startServer (re)starts the server (with ha: server i) on the same port and data dir. */
  async startServer(i?: number): Promise<void> {
    const ha = this.opts.ha;
    if (ha && i !== undefined) {
      const p = startProc(
        ['server', '--data-dir', join(this.dir, `server${i}`), '--listen', `127.0.0.1:${ha.serverPort + i}`, '--name', `s${i}`, '--cluster-cidr', this.clusterCidr, '--log-level', process.env.BATON_TEST_SERVER_LOG ?? 'warn',
          '--store', 'etcd', '--etcd-endpoints', ha.etcd.join(','), '--cluster-key', join(this.dir, 'cluster.key'), '--init-cluster-key', '--leader-ttl', ha.leaderTtl ?? '1s'],
        this.env,
        this.withBin,
      );
      this.servers[i] = p;
      if (i === 0) this.server = p;
      this.urls[i] = (await waitOutput(p, /listening on (\S+)/, 30_000))[1]!;
      return;
    }
    this.server = startProc(['server', '--data-dir', join(this.dir, 'server'), '--listen', `${this.netns ? HARNESS_GATEWAY : '127.0.0.1'}:${this.port}`, '--cluster-cidr', this.clusterCidr, '--log-level', 'warn'], this.env, this.withBin);
    this.url = (await waitOutput(this.server, /listening on (\S+)/, 30_000))[1]!;
  }

  startAgent(n: string): Proc {
    const base = this.portBase + Number(n.slice(1)) * 200;
    const p = startProc(
      ['agent', '--join', this.url, '--token', this.token, '--name', n, '--address', this.address(n), '--data-dir', join(this.dir, n), '--port-range', `${base}-${base + 199}`, '--listen-port', '0', '--pull', 'never', '--egress', 'none', '--dns-upstream', 'none', '--log-level', process.env.BATON_TEST_AGENT_LOG ?? 'warn', ...(this.opts.dockerSocket ? ['--docker-socket', this.opts.dockerSocket] : []), ...(this.opts.agentArgs ?? [])],
      this.env,
      this.netns ? (argv) => this.netns!.wrap(Number(n.slice(1)), this.withBin(argv)) : this.withBin,
    );
    this.agents.set(n, p);
    return p;
  }

  async stop(): Promise<void> {
    for (const [n, p] of this.agents) {
      if (p.child.exitCode !== null && p.child.exitCode !== 0 && p.child.signalCode !== 'SIGKILL') console.error(`agent ${n} exited ${p.child.exitCode}:\n${p.output()}`);
      await stopProc(p);
    }
    if (this.opts.ha) for (const p of this.servers) await stopProc(p);
    else if (this.server) await stopProc(this.server);
    await this.tls?.close();
    if (this.clusterId) await removeClusterContainers(this.clusterId, this.dockerHost).catch((e) => console.error(`could not remove cluster containers: ${e}`));
    // Agents leave their task networks up when they stop (their tasks run on); the test takes them down.
    if (this.clusterId && !this.netns) for (const n of this.agents.keys()) await removeNodeNetwork(this.clusterId, n);
    await this.netns?.down();
    if (this.dir) cleanupDir(this.dir);
  }

  /** serverApi: a client of server i alone (with ha), as the admin. */
  serverApi(i: number): ApiClient {
    return new ApiClient(withTransport({ server: this.urls[i]!, token: this.env.BATON_TOKEN, timeoutMs: 3000 }, this.tls!));
  }

  async state(n: string): Promise<string> {
    return (await this.api.get<Node>(nodeKind, n)).status.state;
  }

  async tasksOf(svc: string): Promise<Task[]> {
    return (await this.api.tasks({ fieldSelector: { 'spec.serviceName': svc } })).items;
  }

  /** running lists the running containers of a service (on one node, or all), straight from the engine. */
  async running(svc: string, node?: string): Promise<string[]> {
    const out = await docker(['ps', '-q', '--filter', `label=baton.cluster=${this.clusterId}`, '--filter', `label=baton.service=${svc}`, ...(node ? ['--filter', `label=baton.node.name=${node}`] : [])], this.dockerHost);
    return out.split('\n').filter(Boolean);
  }

  /** apply deploys a Compose file as stack `name` with the CLI. */
  async apply(name: string, yaml: string): Promise<void> {
    const r = await baton(['apply', '-f', writeFile(this.dir, `${name}.yaml`, `name: ${name}\n${yaml}`)], this.env);
    expect(r.code, r.stderr).toBe(0);
  }

  baton(args: string[]) {
    return baton(args, this.env);
  }
}

/** live: the tasks that should run and do. */
export function live(ts: Task[]): Task[] {
  return ts.filter((t) => t.spec.desiredState === 'running' && t.status.state === 'running');
}
