/**
 * The core issue's integration tests, against a real dockerd and real
 * `baton` processes: apply a 3-replica httpd stack and reach every replica on
 * its port; scale 5 → 1; `docker kill` → restart in place; restart the agent
 * → no duplicates; kill -9 mid-apply → state intact; missing image →
 * rejected with the engine's reason; wrong token → 401.
 */
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { tlsTransport } from '../../src/api/tls.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Task } from '../../src/api/types.js';
import {
  baton, cleanupDir, docker, eventually, portRange, removeClusterContainers, startProc, stopProc, tempDir, waitOutput, writeFile, TEST_IMAGE, type Proc,
} from '../helpers/proc.js';

const TIMINGS = JSON.stringify({ heartbeatIntervalMs: 300, nodeDownAfterMs: 5000, bookmarkIntervalMs: 1000 });

describe('single-node cluster on real Docker', () => {
  let home: string;
  let env: Record<string, string>;
  let up: Proc;
  let clusterId = '';
  let stackFile: string;

  const upArgs = () => ['up', '--data-dir', `${home}/data`, '--listen', '127.0.0.1:0', '--port-range', portRange(24000), '--listen-port', '0', '--pull', 'never', '--name', 'e2e-node', '--cluster-cidr', '10.200.0.0/16', '--egress', 'none', '--dns-upstream', 'none', '--log-level', 'warn'];

  async function startUp(): Promise<void> {
    up = startProc(upArgs(), env);
    await waitOutput(up, /baton is up: server (\S+)/, 30_000);
  }

  async function tasks(service: string): Promise<Task[]> {
    const r = await baton(['service', 'ps', service, '-o', 'json'], env);
    if (r.code !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout) as Task[];
  }

  async function running(service: string, n: number): Promise<Task[]> {
    const ts = (await tasks(service)).filter((t) => t.spec.desiredState === 'running');
    const ok = ts.filter((t) => t.status.state === 'running');
    if (ok.length !== n || ts.length !== n) throw new Error(`want ${n} running, have ${ok.length}/${ts.length}: ${ts.map((t) => `${t.metadata.name}=${t.status.state}`).join(' ')}`);
    return ok;
  }

  async function containers(): Promise<string[]> {
    return (await docker(['ps', '-q', '--filter', `label=baton.cluster=${clusterId}`, '--filter', 'label=baton.service=e2e_web'])).split('\n').filter(Boolean);
  }

  beforeAll(async () => {
    home = tempDir('baton-e2e-');
    env = { BATON_HOME: home, BATON_TIMINGS: TIMINGS, BATON_CONTEXT: '' };
    await startUp();
    const info = JSON.parse((await baton(['-o', 'json', 'node', 'ls'], env)).stdout);
    expect(info).toHaveLength(1);
    clusterId = JSON.parse(readFileSync(`${home}/data/server/cluster.json`, 'utf8')).clusterId;
    stackFile = writeFile(
      home,
      'stack.yaml',
      `name: e2e
services:
  web:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "echo hello from $$BATON_TASK > /tmp/index.html && exec httpd -f -p $$BATON_HOST_IP:$$PORT -h /tmp"]
    ports: ["80"]
    stop_grace_period: 2s
    deploy:
      replicas: 3
      restart_policy:
        delay: 200ms
`,
    );
  }, 60_000);

  afterAll(async () => {
    if (up) await stopProc(up);
    await removeClusterContainers(clusterId);
    cleanupDir(home);
  });

  it('applies a 3-replica stack and every replica answers at its own address, on its container port', async () => {
    const r = await baton(['apply', '-f', stackFile, '--wait', '--timeout', '60'], env);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('created service e2e_web');
    expect(r.stdout).toContain('stack e2e converged');
    const ts = await running('e2e_web', 3);
    expect(new Set(ts.map((t) => t.status.taskIP)).size).toBe(3);
    for (const t of ts) {
      const body = await eventually(async () => {
        const res = await fetch(`http://${t.status.taskIP}:80/index.html`);
        return res.text();
      }, 10_000);
      expect(body.trim()).toBe(`hello from ${t.metadata.name}`);
    }
    // Re-applying the same file changes nothing.
    const again = await baton(['apply', '-f', stackFile], env);
    expect(again.stdout).toContain('unchanged service e2e_web');
  });

  it('replaces every task, one at a time and stop-first, when the spec changes', async () => {
    const before = (await running('e2e_web', 3)).map((t) => t.metadata.name);
    writeFile(home, 'stack.yaml', readFileSync(stackFile, 'utf8').replace('echo hello from', 'echo hi from'));
    let maxContainers = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        maxContainers = Math.max(maxContainers, (await containers()).length);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const r = await baton(['apply', '-f', stackFile, '--wait', '--timeout', '60'], env);
    sampling = false;
    await sampler;
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('updated service e2e_web');
    const after = await running('e2e_web', 3);
    expect(after.map((t) => t.metadata.name).filter((n) => before.includes(n))).toEqual([]);
    expect(maxContainers).toBeLessThanOrEqual(3);
    for (const t of after) {
      const body = await eventually(async () => (await fetch(`http://${t.status.taskIP}:80/index.html`)).text(), 10_000);
      expect(body.trim()).toBe(`hi from ${t.metadata.name}`);
    }
  });

  it('scales to 5 and then to 1', async () => {
    expect((await baton(['service', 'scale', 'e2e_web=5'], env)).code).toBe(0);
    await eventually(() => running('e2e_web', 5), 30_000);
    await eventually(async () => expect(await containers()).toHaveLength(5), 30_000);
    expect((await baton(['service', 'scale', 'e2e_web=1'], env)).code).toBe(0);
    await eventually(() => running('e2e_web', 1), 30_000);
    await eventually(async () => expect(await containers()).toHaveLength(1), 30_000);
  });

  it('restarts a killed container in place', async () => {
    const [t] = await running('e2e_web', 1);
    const id = t!.status.containerId!;
    await docker(['kill', id]);
    const after = await eventually(async () => {
      const [x] = await running('e2e_web', 1);
      if (x!.status.restartCount < 1) throw new Error('not restarted yet');
      return x!;
    }, 20_000);
    expect(after.metadata.name).toBe(t!.metadata.name);
    expect(after.status.containerId).toBe(id);
    expect(await containers()).toEqual([id.slice(0, 12)]);
  });

  it('adopts its containers after a restart, with no duplicates', async () => {
    const before = await containers();
    await stopProc(up);
    // Containers keep running while baton is down.
    expect(await containers()).toEqual(before);
    await startUp();
    await eventually(() => running('e2e_web', 1), 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await containers()).toEqual(before);
  });

  it('keeps state intact when killed -9 in the middle of applying', async () => {
    writeFile(home, 'stack.yaml', readFileSync(stackFile, 'utf8').replace('replicas: 3', 'replicas: 6'));
    const r1 = await baton(['apply', '-f', stackFile], env);
    expect(r1.code, r1.stderr).toBe(0);
    // The apply is committed; controllers and the agent are mid-way through creating tasks and containers.
    up.child.kill('SIGKILL');
    await up.exited;
    const midway = (await containers()).length;
    await startUp();
    const r2 = await baton(['apply', '-f', stackFile, '--wait', '--timeout', '60'], env);
    expect(r2.code, r2.stderr + r2.stdout).toBe(0);
    expect(r2.stdout).toContain('unchanged service e2e_web');
    await eventually(() => running('e2e_web', 6), 30_000);
    await eventually(async () => expect(await containers()).toHaveLength(6), 30_000);
    const svcs = JSON.parse((await baton(['-o', 'json', 'service', 'ls'], env)).stdout);
    expect(svcs.map((s: { metadata: { name: string } }) => s.metadata.name)).toEqual(['e2e_web']);
    expect(midway).toBeLessThanOrEqual(6);
  });

  it('rejects a task whose image is missing, with the engine\'s reason, and keeps retrying', async () => {
    const f = writeFile(home, 'bad.yaml', `services:\n  ghost:\n    image: baton-test/does-not-exist:1\n    command: ["true"]\n    deploy:\n      restart_policy:\n        delay: 200ms\n`);
    const r = await baton(['apply', '-f', f, '--stack', 'bad'], env);
    expect(r.code, r.stderr).toBe(0);
    const rejected = await eventually(async () => {
      const ts = await tasks('bad_ghost');
      const all = JSON.parse((await baton(['-o', 'json', 'ps', '-a'], env)).stdout) as Task[];
      const rj = all.filter((t) => t.spec.serviceName === 'bad_ghost' && t.status.state === 'rejected');
      if (rj.length < 2) throw new Error(`want 2 rejected attempts, have ${rj.length} (${ts.length} live)`);
      return rj;
    }, 30_000);
    expect(rejected[0]!.status.error).toMatch(/No such image/i);
    const ev = await baton(['events', '--service', 'bad_ghost'], env);
    expect(ev.stdout).toMatch(/TaskRejected/);
    expect((await baton(['stack', 'rm', 'bad'], env)).code).toBe(0);
  });

  it("gives baton up's node the manager role: node.role == manager places there, != manager waits and says why", async () => {
    const nodes = JSON.parse((await baton(['-o', 'json', 'node', 'ls'], env)).stdout);
    expect(nodes.map((n: { status: { role?: string } }) => n.status.role)).toEqual(['manager']);
    const table = (await baton(['node', 'ls'], env)).stdout.split('\n');
    const col = table[0]!.indexOf('ROLE');
    expect(col).toBeGreaterThan(0);
    expect(table[1]!.slice(col, col + 'manager'.length)).toBe('manager');
    const file = writeFile(
      home,
      'roles.yaml',
      `name: roles
services:
  mgr:
    image: ${TEST_IMAGE}
    command: ["sleep", "600"]
    deploy:
      placement: {constraints: ["node.role == manager"]}
  wrk:
    image: ${TEST_IMAGE}
    command: ["sleep", "600"]
    deploy:
      placement: {constraints: ["node.role != manager"]}
`,
    );
    expect((await baton(['apply', '-f', file], env)).code).toBe(0);
    try {
      await eventually(async () => {
        expect((await tasks('roles_mgr')).map((t) => `${t.spec.nodeName} ${t.status.state}`)).toEqual(['e2e-node running']);
        expect((await tasks('roles_wrk')).map((t) => t.status.pendingReason)).toEqual(['0/1 nodes available: 1 constraint not satisfied (node.role!=manager)']);
      }, 30_000);
    } finally {
      expect((await baton(['stack', 'rm', 'roles'], env)).code).toBe(0);
    }
  });

  it('refuses a wrong token with 401 and a clear message', async () => {
    const ctx = YAML.parse(readFileSync(`${home}/contexts.yaml`, 'utf8'));
    const server = ctx.contexts.default.server as string;
    const tls = tlsTransport({ caPem: ctx.contexts.default.ca });
    const res = await tls.fetch(`${server}/api/v1/services`, { headers: { authorization: 'Bearer baton.000000000000.nope' }, ...tls.init } as RequestInit);
    await tls.close();
    expect(res.status).toBe(401);
    expect((await res.json()).error.message).toMatch(/invalid token/);
    const r = await baton(['--token', 'wrong', 'service', 'ls'], env);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^error: invalid token/);
    expect(r.stderr).not.toMatch(/at .*\.js/);
  });

  it('leaves another cluster alone: a second cluster whose node has the same name adopts and sweeps none of these containers', async () => {
    const before = (await containers()).sort();
    expect(before.length).toBeGreaterThan(0);
    const otherHome = tempDir('baton-e2e-other-');
    const other = startProc(['up', '--data-dir', `${otherHome}/data`, '--listen', '127.0.0.1:0', '--port-range', portRange(24600), '--listen-port', '0', '--pull', 'never', '--name', 'e2e-node', '--cluster-cidr', '10.201.0.0/16', '--egress', 'none', '--dns-upstream', 'none', '--log-level', 'warn'], { BATON_HOME: otherHome, BATON_TIMINGS: TIMINGS });
    try {
      await waitOutput(other, /baton is up: server (\S+)/, 30_000);
      // Give its agent time to sync and sweep (it sweeps right after its first sync).
      await new Promise((r) => setTimeout(r, 3000));
      expect((await containers()).sort()).toEqual(before);
      await running('e2e_web', before.length);
    } finally {
      await stopProc(other);
      const otherId = JSON.parse(readFileSync(`${otherHome}/data/server/cluster.json`, 'utf8')).clusterId;
      await removeClusterContainers(otherId);
      cleanupDir(otherHome);
    }
  });

  it('removes a stack and stops its containers gracefully', async () => {
    expect((await baton(['stack', 'rm', 'e2e'], env)).code).toBe(0);
    await eventually(async () => expect(await containers()).toHaveLength(0), 30_000);
  });
});
