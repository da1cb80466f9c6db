/**
 * Faults with separate processes: `baton server` and `baton agent` on
 * 127.0.0.2, the agent talking to dockerd through a unix-socket relay that
 * the test closes and reopens (the shared dockerd is never stopped).
 *
 * - engine unreachable → node NotReady with the reason, new tasks pending;
 *   all recovers when the engine returns;
 * - server kill -9 and restart → the agent reconnects by itself; nothing
 *   lost, nothing duplicated;
 * - an agent of an incompatible version is refused with a clear message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../../src/api/client.js';
import { tlsTransport, withTransport, type Transport } from '../../src/api/tls.js';
import { nodeKind } from '../../src/api/kinds.js';
import type { Node, Task } from '../../src/api/types.js';
import { baton, cleanupDir, freePort, docker, eventually, portRange, removeClusterContainers, startProc, stopProc, tempDir, waitOutput, writeFile, TEST_IMAGE, type Proc } from '../helpers/proc.js';

const HEARTBEAT_MS = 300;
const TIMINGS = JSON.stringify({ heartbeatIntervalMs: HEARTBEAT_MS, nodeDownAfterMs: 20_000, bookmarkIntervalMs: 1000 });

class Relay {
  private server?: Server;
  private conns = new Set<Socket>();
  constructor(readonly path: string) {}
  get isOpen(): boolean {
    return this.server !== undefined;
  }
  async open(): Promise<void> {
    this.server = createServer((c) => {
      const u = connect('/var/run/docker.sock');
      this.conns.add(c).add(u);
      c.pipe(u).pipe(c);
      const drop = () => {
        c.destroy();
        u.destroy();
        this.conns.delete(c);
        this.conns.delete(u);
      };
      c.on('error', drop).on('close', drop);
      u.on('error', drop).on('close', drop);
    });
    await new Promise<void>((r) => this.server!.listen(this.path, r));
  }
  async close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = undefined;
  }
}

describe('faults across processes', () => {
  let dir: string;
  let server: Proc;
  let agent: Proc;
  let relay: Relay;
  let url = '';
  let api: ApiClient;
  let tls: Transport;
  let env: Record<string, string>;
  let clusterId = '';
  let port = 0;

  async function startServer(): Promise<void> {
    server = startProc(['server', '--data-dir', join(dir, 'server'), '--listen', `127.0.0.1:${port}`, '--cluster-cidr', '10.203.0.0/16', '--log-level', 'warn'], env);
    const m = await waitOutput(server, /listening on (\S+)/, 30_000);
    url = m[1]!;
  }

  async function node(): Promise<Node> {
    return api.get<Node>(nodeKind, 'n2');
  }

  beforeAll(async () => {
    dir = tempDir('baton-faults-');
    env = { BATON_HOME: dir, BATON_TIMINGS: TIMINGS };
    port = await freePort();
    await startServer();
    const joinToken = /join token: (\S+)/.exec(server.output())![1]!;
    const admin = readFileSync(join(dir, 'server/server/admin.token'), 'utf8').trim();
    clusterId = JSON.parse(readFileSync(join(dir, 'server/server/cluster.json'), 'utf8')).clusterId;
    tls = tlsTransport({ caPem: readFileSync(join(dir, 'server/server/ca.crt'), 'utf8') });
    api = new ApiClient(withTransport({ server: url, token: admin }, tls));
    env = { ...env, BATON_SERVER: url, BATON_TOKEN: admin, BATON_CA: join(dir, 'server/server/ca.crt') };
    relay = new Relay(join(dir, 'docker.sock'));
    await relay.open();
    agent = startProc(
      ['agent', '--join', url, '--token', joinToken, '--name', 'n2', '--address', '127.0.0.2', '--data-dir', join(dir, 'agent'), '--docker-socket', relay.path, '--port-range', portRange(24400), '--listen-port', '0', '--pull', 'never', '--egress', 'none', '--dns-upstream', 'none', '--log-level', 'warn'],
      env,
    );
    await eventually(async () => expect((await node()).status.state).toBe('ready'), 15_000);
  }, 60_000);

  afterAll(async () => {
    // An agent that died on its own is a bug: show why.
    if (agent && agent.child.exitCode !== null) console.error(`agent exited (${agent.child.exitCode}):\n${agent.output()}`);
    if (agent) await stopProc(agent);
    if (server) await stopProc(server);
    await relay?.close();
    await tls?.close();
    await removeClusterContainers(clusterId);
    cleanupDir(dir);
  });

  it('marks the node NotReady while its engine is unreachable, keeps new tasks pending, and recovers', async () => {
    await relay.close();
    // A loaded machine may first show a late beat; the engine reason must follow.
    await eventually(async () => {
      const x = await node();
      expect(x.status.state).toBe('notready');
      expect(x.status.message).toMatch(/container engine unreachable/);
    }, 10 * HEARTBEAT_MS * 5);
    expect(agent.child.exitCode).toBeNull(); // losing the engine mid-sweep must not kill the agent

    const f = writeFile(dir, 'svc.yaml', `services:\n  web:\n    image: ${TEST_IMAGE}\n    command: ["sh", "-c", "exec httpd -f -p $$BATON_HOST_IP:$$PORT -h /"]\n    expose: ["8080"]\n    deploy:\n      replicas: 2\n`);
    expect((await baton(['apply', '-f', f, '--stack', 'faults'], env)).code).toBe(0);
    const pending = await eventually(async () => {
      const ts = (await api.tasks()).items.filter((t: Task) => t.spec.serviceName === 'faults_web');
      expect(ts).toHaveLength(2);
      for (const t of ts) expect(t.status.pendingReason).toMatch(/node not ready/);
      return ts;
    }, 10_000);
    expect(pending.every((t) => t.status.state === 'pending')).toBe(true);
    const ps = await baton(['service', 'ps', 'faults_web'], env);
    expect(ps.stdout).toMatch(/0\/1 nodes available: 1 node not ready/);

    await relay.open();
    await eventually(async () => expect((await node()).status.state).toBe('ready'), 10 * HEARTBEAT_MS * 5);
    const ts = await eventually(async () => {
      const r = (await api.tasks()).items.filter((t: Task) => t.spec.serviceName === 'faults_web' && t.status.state === 'running');
      expect(r).toHaveLength(2);
      return r;
    }, 30_000);
    for (const t of ts) {
      expect(t.status.hostIP).toBe('127.0.0.2');
      const res = await eventually(() => fetch(`http://${t.status.taskIP}:8080/`), 10_000);
      expect(res.status).toBeLessThan(500);
    }
  });

  it('survives a server kill -9: the agent reconnects, nothing lost, nothing duplicated', async () => {
    if (!relay.isOpen) await relay.open(); // the previous test failed midway
    const before = (await api.tasks()).items.filter((t: Task) => t.spec.desiredState === 'running').map((t) => t.metadata.name).sort();
    const containersBefore = (await docker(['ps', '-q', '--filter', `label=baton.cluster=${clusterId}`, '--filter', 'label=baton.service'])).split('\n').filter(Boolean).sort();
    server.child.kill('SIGKILL');
    await server.exited;
    // The agent keeps its containers while the server is away.
    await new Promise((r) => setTimeout(r, 1000));
    expect((await docker(['ps', '-q', '--filter', `label=baton.cluster=${clusterId}`, '--filter', 'label=baton.service'])).split('\n').filter(Boolean).sort()).toEqual(containersBefore);
    await startServer();
    await eventually(async () => expect((await node()).status.state).toBe('ready'), 15_000);
    // Scaling after the restart reaches the reconnected agent.
    expect((await baton(['service', 'scale', 'faults_web=3'], env)).code).toBe(0);
    await eventually(async () => {
      const r = (await api.tasks()).items.filter((t: Task) => t.spec.serviceName === 'faults_web' && t.status.state === 'running');
      expect(r).toHaveLength(3);
    }, 30_000);
    const after = (await api.tasks()).items.filter((t: Task) => t.spec.desiredState === 'running').map((t) => t.metadata.name);
    for (const name of before) expect(after).toContain(name);
    expect((await docker(['ps', '-q', '--filter', `label=baton.cluster=${clusterId}`, '--filter', 'label=baton.service'])).split('\n').filter(Boolean)).toHaveLength(3);
  });

  it('refuses an agent of an incompatible version with a clear message', async () => {
    const res = await api.raw('POST', '/api/v1/nodes/register', {
      name: 'old', address: '127.0.0.9', hostname: 'old', agentVersion: '9.0.0', capacity: { cpus: 1, memoryBytes: 1 }, portRange: [1, 2], engine: { ok: true, version: 'x' },
    }).catch((e) => e);
    expect(res.code).toBe('BATON_ERR_INCOMPATIBLE_AGENT');
    expect(res.message).toMatch(/agent version 9.0.0 is not compatible with server version/);
    await expect(api.get(nodeKind, 'old')).rejects.toThrow(/not found/);
  });

  it('refuses a second process on the same data directory', async () => {
    const r = await baton(['server', '--data-dir', join(dir, 'server'), '--listen', '127.0.0.1:0'], env);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/data directory .* is in use by process \d+/);
  });
});
