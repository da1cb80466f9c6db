/**
 * bench:chaos — the cluster under test: its shape (names, addresses,
 * ranges, timings, the stack it runs), Cluster, which starts the private
 * dockerd, the server and the agents, deploys and scales the stack,
 * observes what the API and the engine say (a Snapshot), starts again what
 * exited on its own, and stops it all.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../src/api/client.js';
import { tlsTransport, withTransport } from '../src/api/tls.js';
import type { Node, Service, Task } from '../src/api/types.js';
import { PrivateEngine } from './chaosEngine.js';
import { BatonProc, freePort } from './chaosProcs.js';
import { checkInterrupted, CONFINED_AGENT_ARGS, dropAgentTables, log, oneLine, removeNodeNetworks, sleep, stackServices } from './lib.js';

export const IMAGE = 'baton-test/busybox:latest';
const LABEL = 'baton.bench';
const LABEL_VALUE = 'chaos';
export const BENCH_LABEL = `${LABEL}=${LABEL_VALUE}`;
const STACK = 'chaos';
export const SLEEP_SVC = `${STACK}_sleep`;
export const WEB_SVC = `${STACK}_web`;
export const SLEEP_REPLICAS = 6;
export const WEB_REPLICAS = 3;
export const AGENTS = [
  { name: 'chaos2', address: '127.0.0.2', portRange: '20200-20299' },
  { name: 'chaos3', address: '127.0.0.3', portRange: '20300-20399' },
  { name: 'chaos4', address: '127.0.0.4', portRange: '20400-20499' },
];
/**
 * Task and service ranges of the bench's own, so that it can run beside another bench or the tests: no other
 * bench or test uses 10.150.0.0/16 or 10.151.0.0/16 (the defaults are 10.42 and 10.43; bench:mesh, dns and
 * converge take 10.146; the e2e tests 10.200–10.204, and a TestCluster 10.(100 + port base / 1000), today
 * 10.126–10.149: one on a port base of 50000 or 51000 would take these).
 */
const SERVER_ARGS = ['--cluster-cidr', '10.150.0.0/16', '--service-cidr', '10.151.0.0/16'];
export const TIMINGS = { heartbeatIntervalMs: 500, missedHeartbeats: 3, nodeDownAfterMs: 5000, bookmarkIntervalMs: 1000 };

/** composeText: the stack the bench deploys (chaos_sleep with sleepReplicas, chaos_web with a health check). */
function composeText(sleepReplicas: number): string {
  return `name: ${STACK}
services:
  sleep:
    image: ${IMAGE}
    command: ["sleep", "3600"]
    labels:
      ${LABEL}: "${LABEL_VALUE}"
    deploy:
      replicas: ${sleepReplicas}
    x-baton:
      restart: {backoff: {initial: 200ms, max: 2s}}
  web:
    image: ${IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/ok && exec httpd -f -p 8080 -h /www"]
    expose: [8080]
    labels:
      ${LABEL}: "${LABEL_VALUE}"
    deploy:
      replicas: ${WEB_REPLICAS}
    x-baton:
      healthcheck: {http: /ok, port: 8080, interval: 1s, timeout: 2s, retries: 2}
      restart: {backoff: {initial: 200ms, max: 2s}}
`;
}

/** Ctr: a container of the cluster on the private engine, with its Baton labels. */
export interface Ctr {
  id: string;
  name: string;
  state: string;
  task: string;
  service: string;
  slot: string;
  pause: boolean;
  node: string;
}

/** Snapshot: what one poll saw of the API and the engine. */
export interface Snapshot {
  services: Service[];
  tasks: Task[];
  nodes: Node[];
  containers: Ctr[];
  /** Why a part could not be read. */
  apiError?: string;
  engineError?: string;
}

/** What the bench expects of a service: as made, then as last scaled (acknowledged writes). */
interface Expected {
  uid: string;
  generation: number;
  replicas: number;
}

/** Cluster: the private dockerd, the server and the agents, and what the bench expects and has seen of them. */
export class Cluster {
  readonly engine: PrivateEngine;
  server!: BatonProc;
  readonly agents: BatonProc[] = [];
  api!: ApiClient;
  private tls?: ReturnType<typeof tlsTransport>;
  clusterId = '';
  readonly expected = new Map<string, Expected>();
  /** Agents restarted whose "agent started" line is still awaited. */
  readonly awaitingStart = new Set<BatonProc>();
  readonly home: string;
  readonly logs: string;
  /** The fault being handled (0 before the first), for ended. */
  fault = 0;
  /** Tasks seen ended other than by a normal stop (failed, rejected, orphaned), by name, with the fault they ended under. */
  readonly ended = new Map<string, { fault: number; state: string; node: string; why: string }>();
  /**
   * Problems already reported as violations that stayed: later polls leave them out, so that the faults after
   * are judged on what they break (a leaked container would otherwise fail every fault to come).
   */
  readonly accepted = new Set<string>();

  constructor(readonly root: string) {
    this.engine = new PrivateEngine(join(root, 'engine'), join(root, 'docker.sock'));
    this.home = join(root, 'baton');
    this.logs = join(root, 'logs');
    mkdirSync(this.home, { recursive: true });
    mkdirSync(this.logs, { recursive: true });
  }

  async start(): Promise<void> {
    log(`starting the private dockerd (data under ${this.engine.dir}, socket ${this.engine.socket})`);
    await this.engine.start();
    log(`private dockerd pid ${this.engine.pid} answers; loading ${IMAGE} into it (docker save | docker load)`);
    await this.engine.loadImage(IMAGE);
    const env = { BATON_HOME: this.home, BATON_TIMINGS: JSON.stringify(TIMINGS) };
    const port = await freePort();
    this.server = new BatonProc('baton server', ['server', '--data-dir', join(this.home, 'server'), '--listen', `127.0.0.1:${port}`, '--log-level', 'info', ...SERVER_ARGS], join(this.logs, 'server.log'), env);
    log(`starting baton server on 127.0.0.1:${port}`);
    const [url, joinToken, clusterId] = await this.server.start([/baton server listening on (https:\/\/\S+)/, /join token: (BATON-\S+)/, /^cluster (\S+)$/m]);
    this.clusterId = clusterId!;
    const serverDir = join(this.home, 'server', 'server');
    this.tls = tlsTransport({ caPem: readFileSync(join(serverDir, 'ca.crt'), 'utf8') });
    this.api = new ApiClient(withTransport({ server: url!, token: readFileSync(join(serverDir, 'admin.token'), 'utf8').trim(), timeoutMs: 5000 }, this.tls));
    log(`baton server pid ${this.server.pid} at ${url}, cluster ${this.clusterId}`);
    for (const a of AGENTS) {
      const p = new BatonProc(
        `baton agent ${a.name}`,
        ['agent', '--join', url!, '--token', joinToken!, '--name', a.name, '--address', a.address, '--port-range', a.portRange, '--listen-port', '0', '--data-dir', join(this.home, a.name), '--docker-socket', this.engine.socket, '--pull', 'never', '--log-level', 'info', ...CONFINED_AGENT_ARGS],
        join(this.logs, `${a.name}.log`),
        env,
      );
      this.agents.push(p);
      await p.start();
      this.awaitingStart.add(p);
      log(`baton agent ${a.name} pid ${p.pid} on ${a.address}`);
    }
    // Every node Ready before the deploy, so that the tasks spread over the three.
    const deadline = Date.now() + 60_000;
    for (;;) {
      checkInterrupted();
      const ready = (await this.api.nodes().catch(() => ({ items: [] as Node[] }))).items.filter((n) => n.status.state === 'ready').map((n) => n.metadata.name);
      if (AGENTS.every((a) => ready.includes(a.name))) break;
      for (const p of this.agents) if (!p.running) throw new Error(`${p.what} exited: ${p.logTail()}`);
      if (Date.now() > deadline) throw new Error(`the nodes were not Ready within 60 s (ready: ${ready.join(', ') || 'none'})`);
      await sleep(200);
    }
    log(`${AGENTS.map((a) => a.name).join(', ')} are Ready`);
  }

  async deploy(): Promise<void> {
    log(`apply stack ${STACK}: ${SLEEP_SVC} (${SLEEP_REPLICAS} replicas), ${WEB_SVC} (${WEB_REPLICAS} replicas, HTTP health check)`);
    await this.api.apply(STACK, { services: stackServices(composeText(SLEEP_REPLICAS), STACK, this.home), prune: false, dryRun: false });
    for (const s of (await this.api.services()).items) this.expected.set(s.metadata.name, { uid: s.metadata.uid, generation: s.metadata.generation, replicas: s.spec.replicas });
  }

  /** scale writes a new replica count and records what the server acknowledged. */
  async scale(svc: string, replicas: number): Promise<Service> {
    const s = await this.api.scale(svc, replicas);
    this.expected.set(svc, { uid: s.metadata.uid, generation: s.metadata.generation, replicas: s.spec.replicas });
    return s;
  }

  async observe(): Promise<Snapshot> {
    const snap: Snapshot = { services: [], tasks: [], nodes: [], containers: [] };
    const api = (async () => {
      try {
        const [s, t, n] = await Promise.all([this.api.services(), this.api.tasks(), this.api.nodes()]);
        snap.services = s.items;
        snap.tasks = t.items;
        snap.nodes = n.items;
      } catch (e) {
        snap.apiError = oneLine((e as Error).message).slice(0, 300);
      }
    })();
    const engine = (async () => {
      const fmt = ['{{.ID}}', '{{.Names}}', '{{.State}}', '{{.Label "baton.task"}}', '{{.Label "baton.service"}}', '{{.Label "baton.slot"}}', '{{.Label "baton.pause"}}', '{{.Label "baton.node.name"}}'].join('\t');
      const r = await this.engine.docker(['ps', '-a', '--no-trunc', '--filter', `label=baton.cluster=${this.clusterId}`, '--format', fmt], 15_000);
      if (r.code !== 0) {
        snap.engineError = oneLine(r.stderr || r.stdout).slice(0, 300);
        return;
      }
      for (const line of r.stdout.split('\n')) {
        if (!line.trim()) continue;
        const [id, name, state, task, service, slot, pause, node] = line.split('\t') as string[];
        snap.containers.push({ id: id!, name: name!, state: state!, task: task ?? '', service: service ?? '', slot: slot ?? '', pause: !!pause, node: node ?? '' });
      }
    })();
    await Promise.all([api, engine]);
    for (const t of snap.tasks)
      if (['failed', 'rejected', 'orphaned'].includes(t.status.state) && !this.ended.has(t.metadata.name))
        this.ended.set(t.metadata.name, { fault: this.fault, state: t.status.state, node: t.spec.nodeName, why: oneLine(t.status.error ?? t.status.message ?? '').slice(0, 200) });
    return snap;
  }

  /** Agents whose "agent started" line is awaited: forget those that logged it. */
  noteStarted(): void {
    for (const p of this.awaitingStart) if (p.logged(/"msg":"agent started"/)) this.awaitingStart.delete(p);
  }

  /** restartExited starts again, with the same command line, what exited without the bench killing it; returns what it restarted. */
  async restartExited(): Promise<string[]> {
    const out: string[] = [];
    if (!this.engine.running && !this.engine.expectExit) {
      out.push(`the private dockerd exited on its own:\n${this.engine.logTail()}`);
      await this.engine.start();
    }
    if (!this.server.running && !this.server.expectExit) {
      out.push(`${this.server.what} exited on its own (${this.server.child?.exitCode ?? this.server.child?.signalCode}):\n${this.server.logTail()}`);
      await this.server.start([/baton server listening on/]);
    }
    for (const a of this.agents)
      if (!a.running && !a.expectExit) {
        out.push(`${a.what} exited on its own (${a.child?.exitCode ?? a.child?.signalCode}):\n${a.logTail()}`);
        await a.start();
        this.awaitingStart.add(a);
      }
    return out;
  }

  /** stop: every Baton process by its PID (agents first), then the engine and what it left, the agents' bridges and tables. */
  async stop(): Promise<void> {
    for (const a of [...this.agents].reverse()) await a.stop().catch((e) => log(`stopping ${a.what}: ${(e as Error).message}`));
    await this.server?.stop().catch((e) => log(`stopping the server: ${(e as Error).message}`));
    await this.tls?.close().catch(() => undefined);
    await this.engine.cleanup().catch((e) => log(`cleaning up the private dockerd: ${(e as Error).message}`));
    const names = AGENTS.map((a) => a.name);
    await dropAgentTables(names, this.clusterId || undefined);
    await removeNodeNetworks(names, this.clusterId || undefined);
    for (const n of names) rmSync(join('/run/baton', n), { recursive: true, force: true });
  }
}

