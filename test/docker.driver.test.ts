/**
 * DockerDriver against the real local dockerd (scripts/setup.sh starts one and
 * builds baton-test/busybox:latest). Nothing is pulled: no registry is
 * reachable. Every container carries baton.test=<run id> and is removed in
 * afterAll; all traffic stays on 127.0.0.1.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerDriver, containerName } from '../src/agent/docker/dockerDriver.js';
import { isStaleTask } from '../src/agent/docker/engine.js';
import { DriverError, type DriverEvent, type TaskConfig, type TaskHandle } from '../src/agent/driver.js';
import { defaultContainerSpec, type ContainerSpec, type ResourceSpec } from '../src/api/types.js';

const execFileP = promisify(execFile);
const DOCKER = '/usr/bin/docker';
const IMAGE = 'baton-test/busybox:latest';
const RUN = randomBytes(4).toString('hex');
const TEST_LABEL = 'baton.test';
const VOLUME = `baton-test-vol-${RUN}`;
/** A shell loop that exits 0 on SIGTERM (sh runs the trap after the current sleep); /tmp/trapped says its trap is set. */
const TRAP_TERM = 'trap "exit 0" TERM; touch /tmp/trapped; while true; do sleep 1; done';

/** trapped waits until a container's shell has set its trap: a signal sent before would meet the default action. */
async function trapped(h: TaskHandle): Promise<TaskHandle> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await promisify(execFile)('docker', ['exec', h.id, 'test', '-f', '/tmp/trapped']).then(() => true, () => false);
    if (ok) return h;
    if (Date.now() > deadline) throw new Error(`${h.name} never set its trap`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function docker(...args: string[]): Promise<string> {
  const { stdout } = await execFileP(DOCKER, args, { timeout: 60_000 });
  return stdout.trim();
}

async function dockerInspect(name: string): Promise<any> {
  return JSON.parse(await docker('inspect', '--type', 'container', name))[0];
}

async function countByName(name: string): Promise<number> {
  const out = await docker('ps', '-a', '-q', '--filter', `label=${TEST_LABEL}=${RUN}`, '--filter', `name=^/${name}$`);
  return out ? out.split('\n').length : 0;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function eventually<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function containerSpec(over: Partial<ContainerSpec> = {}): ContainerSpec {
  // Host networking: these tests run containers straight on the driver, without the sandbox a task of its own namespace needs (net.sandbox.test.ts has those).
  return { ...defaultContainerSpec(IMAGE), networkMode: 'host', ...over };
}

const NO_LIMITS: ResourceSpec = { reservations: { cpus: 0, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } };

let seq = 0;
function taskConfig(name: string, spec: Partial<ContainerSpec>, extra: Partial<Omit<TaskConfig, 'spec'>> = {}): TaskConfig {
  seq++;
  return {
    taskName: `bt-${RUN}-${name}`,
    taskUid: `uid-${RUN}-${seq}`,
    serviceName: `svc-${name}`,
    slot: 1,
    resources: NO_LIMITS,
    env: {},
    pullPolicy: 'never',
    ...extra,
    spec: containerSpec(spec),
    labels: { [TEST_LABEL]: RUN, ...(extra.labels ?? {}) },
  };
}

const driver = new DockerDriver();

beforeAll(async () => {
  const info = await driver.ping();
  if (!info.ok) throw new Error(`dockerd does not answer (run scripts/setup.sh): ${info.error}`);
  await docker('image', 'inspect', IMAGE).catch(() => {
    throw new Error(`test image ${IMAGE} is missing (run scripts/setup.sh)`);
  });
});

afterAll(async () => {
  await driver.close();
  const ids = await docker('ps', '-a', '-q', '--filter', `label=${TEST_LABEL}=${RUN}`);
  if (ids) await docker('rm', '-f', '-v', ...ids.split('\n'));
  await docker('volume', 'rm', '-f', VOLUME).catch(() => undefined);
});

describe('DockerDriver', () => {
  it('ping reports the engine version and capacity', async () => {
    const info = await driver.ping();
    expect(info.ok).toBe(true);
    expect(info.version).toMatch(/^\d+\./);
    expect(info.cpus).toBeGreaterThan(0);
    expect(info.memoryBytes).toBeGreaterThan(0);
  });

  it("tells the engine's refusals of a start that died with it (the container must be replaced) from others", () => {
    const engineError = (statusCode: number, message: string) => Object.assign(new Error(`(HTTP code ${statusCode}) ${message}`), { statusCode, json: { message } });
    for (const m of ['could not start task 0123456789abcdef: already exists', 'Conflict. The container name is already in use: id already in use', 'OCI runtime start failed: cannot start a stopped process: unknown']) expect(isStaleTask(engineError(500, m)), m).toBe(true);
    for (const [code, m] of [[500, 'OCI runtime create failed: executable file not found'], [404, 'cannot start a stopped process'], [409, 'id already in use']] as const) expect(isStaleTask(engineError(code, m)), m).toBe(false);
  });

  it('containerName keeps valid names and makes invalid ones valid without collisions', () => {
    expect(containerName('web.1.abc')).toBe('web.1.abc');
    const a = containerName('web/1');
    const b = containerName('web:1');
    for (const n of [a, b, containerName('_x'), containerName('é'), containerName('a')]) {
      expect(n).toMatch(/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/);
    }
    expect(a).not.toBe(b);
  });

  it('starts an httpd on host networking that answers on 127.0.0.1, with stats', async () => {
    const port = await freePort();
    const cfg = taskConfig('httpd', { command: ['httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', '/www'] });
    const t0 = performance.now();
    const h = await driver.start(cfg);
    const ms = performance.now() - t0;
    console.log(`docker create+start latency: ${ms.toFixed(0)} ms`);
    expect(h).toMatchObject({ driver: 'docker', version: 1, name: cfg.taskName });
    expect(h.id).toMatch(/^[0-9a-f]{64}$/);

    const body = await eventually('httpd to answer', async () => {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5_000) });
      return res.ok ? res.text() : undefined;
    });
    expect(body).toContain('baton test image');

    const ins = await driver.inspect(h);
    expect(ins.state).toBe('running');
    expect(ins.labels[TEST_LABEL]).toBe(RUN);
    expect(ins.startedAt).toBeTruthy();

    // Read from the container's cgroup files (as cAdvisor does), not the engine's slow stats call.
    const st = await driver.stats(h);
    expect(st.source).toBe('cgroup');
    expect(st.cpuSeconds).toBeGreaterThan(0);
    expect(st.memoryBytes).toBeGreaterThan(0);
    expect(st.memoryLimitBytes).toBe(0); // no limit was set
    expect(Math.abs(st.timeMs - Date.now())).toBeLessThan(60_000);

    await driver.destroy(h);
    expect((await driver.inspect(h)).state).toBe('missing');
    await driver.destroy(h); // missing is not an error
    await driver.stop(h, 1_000);
  });

  it('start is idempotent by task name, also when two starts race', async () => {
    const cfg = taskConfig('idem', { command: ['sleep', '3600'] });
    const h1 = await driver.start(cfg);
    const h2 = await driver.start(cfg);
    expect(h2.id).toBe(h1.id);
    expect(await countByName(cfg.taskName)).toBe(1);

    const race = taskConfig('race', { command: ['sleep', '3600'] });
    const [r1, r2, r3] = await Promise.all([driver.start(race), driver.start(race), driver.start(race)]);
    expect(r2.id).toBe(r1.id);
    expect(r3.id).toBe(r1.id);
    expect(await countByName(race.taskName)).toBe(1);
    expect((await driver.inspect(r1)).state).toBe('running');
  });

  it('replaces a container of the task that never ran and cannot start (its start died with the engine), keeping the name', async () => {
    const cfg = taskConfig('neverran', { command: ['sleep', '3600'] });
    // What a dockerd killed mid-start leaves: the container, created, never run, that will not start.
    const stale = await docker('create', '--name', cfg.taskName, '--label', `${TEST_LABEL}=${RUN}`, '--network', 'host', IMAGE, '/no/such/binary');
    const h = await driver.start(cfg);
    expect(h.id).not.toBe(stale);
    expect(h.name).toBe(cfg.taskName);
    expect((await driver.inspect(h)).state).toBe('running');
    expect(await countByName(cfg.taskName)).toBe(1);
  });

  it('runs a command in the container with its exit code and output, and bounds it by a timeout', async () => {
    const h = await driver.start(taskConfig('exec', { command: ['sleep', '3600'] }));
    const r = await driver.exec(h, ['/bin/sh', '-c', 'echo out; echo err >&2; exit 3'], 5_000);
    // stdout and stderr both, in whatever order the engine delivered them.
    expect(r.exitCode).toBe(3);
    expect(r.output.split('\n').sort()).toEqual(['', 'err', 'out']);
    expect(await driver.exec(h, ['true'], 5_000)).toEqual({ exitCode: 0, output: '' });
    const slow = await driver.exec(h, ['sleep', '5'], 300);
    expect(slow.exitCode).toBe(-1);
    expect(slow.output).toMatch(/timed out after 300 ms/);
    expect(await driver.imageHealthcheck(IMAGE)).toBeUndefined();
  });

  it('reports die with the exit code after docker kill, and restarts in place', async () => {
    const labels = { 'baton.case': `events-${RUN}` };
    const cfg = taskConfig('events', { command: ['sleep', '3600'] }, { labels });
    const events: DriverEvent[] = [];
    const errors: Error[] = [];
    let opened = false;
    const stop = driver.events({ [TEST_LABEL]: RUN, ...labels }, (e) => events.push(e), (e) => errors.push(e), () => (opened = true));
    try {
      // The engine says when it took the stream (the agent reconciles everything when a broken one is open again).
      await eventually('event stream open', () => opened);
      const h = await driver.start(cfg);
      await eventually('start event', () => events.find((e) => e.type === 'start' && e.handle.id === h.id));

      const waited = driver.wait(h);
      await docker('kill', cfg.taskName);
      const die = await eventually('die event', () => events.find((e) => e.type === 'die' && e.handle.id === h.id));
      expect(die).toMatchObject({ type: 'die', exitCode: 137, handle: { id: h.id, name: cfg.taskName } });
      expect(die.labels['baton.case']).toBe(labels['baton.case']);
      expect(die.labels[TEST_LABEL]).toBe(RUN);
      expect(die.labels).not.toHaveProperty('exitCode');
      const exit = await waited;
      expect(exit.exitCode).toBe(137);
      expect(exit.oomKilled).toBe(false);
      const ins = await driver.inspect(h);
      expect(ins).toMatchObject({ state: 'exited', exitCode: 137 });
      expect(ins.finishedAt).toBeTruthy();
      // wait on an exited container resolves at once
      expect((await driver.wait(h)).exitCode).toBe(137);

      const t0 = performance.now();
      const again = await driver.start(cfg);
      console.log(`docker restart-in-place latency: ${(performance.now() - t0).toFixed(0)} ms`);
      expect(again.id).toBe(h.id);
      expect((await driver.inspect(again)).state).toBe('running');
      await eventually('second start event', () => (events.filter((e) => e.type === 'start' && e.handle.id === h.id).length >= 2 ? true : undefined));

      await driver.destroy(again);
      await eventually('destroy event', () => events.find((e) => e.type === 'destroy' && e.handle.id === h.id));
    } finally {
      stop();
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(errors).toEqual([]);
  });

  it('wait honours its AbortSignal', async () => {
    const h = await driver.start(taskConfig('waitabort', { command: ['sleep', '3600'] }));
    const ac = new AbortController();
    const p = driver.wait(h, ac.signal);
    setTimeout(() => ac.abort(new Error('enough')), 200);
    await expect(p).rejects.toThrow('enough');
    expect((await driver.inspect(h)).state).toBe('running');
  });

  it('stop sends the stop signal and kills only after the grace period', async () => {
    // Handles TERM: exits 0 well within the grace period.
    const polite = await trapped(await driver.start(taskConfig('stop-term', { command: ['sh', '-c', TRAP_TERM] })));
    let t0 = performance.now();
    await driver.stop(polite, 20_000);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(await driver.inspect(polite)).toMatchObject({ state: 'exited', exitCode: 0 });

    // Ignores TERM: killed (137) once the 2 s grace has passed, not before.
    const stubborn = await trapped(
      await driver.start(
        taskConfig('stop-ignore', { command: ['sh', '-c', 'trap "" TERM; touch /tmp/trapped; while true; do sleep 1; done'] }),
      ),
    );
    t0 = performance.now();
    await driver.stop(stubborn, 2_000);
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(1_500);
    expect(took).toBeLessThan(15_000);
    expect(await driver.inspect(stubborn)).toMatchObject({ state: 'exited', exitCode: 137 });

    // The spec's stop signal is the one sent.
    const usr1 = await trapped(
      await driver.start(
        taskConfig('stop-usr1', { stopSignal: 'SIGUSR1', command: ['sh', '-c', 'trap "exit 3" USR1; touch /tmp/trapped; while true; do sleep 1; done'] }),
      ),
    );
    await driver.stop(usr1, 20_000);
    expect(await driver.inspect(usr1)).toMatchObject({ state: 'exited', exitCode: 3 });

    // An explicit signal that differs from the container's stop signal is sent instead.
    const intr = await trapped(
      await driver.start(
        taskConfig('stop-int', { command: ['sh', '-c', 'trap "exit 4" INT; touch /tmp/trapped; while true; do sleep 1; done'] }),
      ),
    );
    await driver.stop(intr, 20_000, 'SIGINT');
    expect(await driver.inspect(intr)).toMatchObject({ state: 'exited', exitCode: 4 });

    // ...and followed by SIGKILL when the grace runs out.
    const deaf = await trapped(
      await driver.start(
        taskConfig('stop-int-ignore', { command: ['sh', '-c', 'trap "" INT; touch /tmp/trapped; while true; do sleep 1; done'] }),
      ),
    );
    t0 = performance.now();
    await driver.stop(deaf, 1_500, 'INT');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(1_000);
    expect(await driver.inspect(deaf)).toMatchObject({ state: 'exited', exitCode: 137 });

    // Stopping a stopped container is fine.
    await driver.stop(polite, 1_000);
    await driver.stop(deaf, 1_000, 'SIGINT');
  });

  it('fails with image_not_found for a missing image under pull policy never, leaving no container', async () => {
    const cfg = taskConfig('noimage', { image: `baton-test/does-not-exist-${RUN}:latest`, command: ['true'] });
    const err = await driver.start(cfg).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DriverError);
    expect((err as DriverError).reason).toBe('image_not_found');
    expect((err as DriverError).message).toMatch(/no such image/i);
    expect((err as DriverError).message).not.toMatch(/HTTP code/);
    expect(await countByName(cfg.taskName)).toBe(0);
  });

  it('pull policy missing does not pull an image that is present', async () => {
    const h = await driver.start(taskConfig('pullmissing', { command: ['sleep', '3600'] }, { pullPolicy: 'missing' }));
    expect((await driver.inspect(h)).state).toBe('running');
  });

  it('applies env, labels, limits and the rest of the container spec', async () => {
    const cfg = taskConfig(
      'spec',
      {
        command: ['sleep', '3600'],
        env: { A: '1', B: 'spec' },
        labels: { 'com.example.role': 'web', 'baton.test': 'overridden-by-agent' },
        user: 'nobody',
        workingDir: '/tmp',
        readOnly: true,
        capAdd: ['SYS_PTRACE'],
        capDrop: ['NET_RAW'],
        tmpfs: ['/scratch:size=1m', '/plain'],
        ulimits: { nofile: { soft: 1024, hard: 2048 } },
        extraHosts: ['myhost:127.0.0.2'],
        hostname: 'bt-host',
        networkMode: 'none',
        stopSignal: 'SIGUSR1',
        stopGracePeriodMs: 2_500,
        healthcheck: { test: ['CMD', 'true'], intervalMs: 1_000, timeoutMs: 2_000, retries: 3, startPeriodMs: 0 },
        mounts: [
          { type: 'volume', source: VOLUME, target: '/data', readOnly: false },
          { type: 'volume', target: '/anon', readOnly: false },
          { type: 'tmpfs', target: '/mem', readOnly: false },
        ],
      },
      {
        env: { B: 'agent', PORT: '1234' },
        labels: { 'baton.cluster': 'c1', 'baton.node': 'n1', 'baton.task': 'other' },
        resources: { reservations: { cpus: 0.25, memoryBytes: 0 }, limits: { cpus: 0.5, memoryBytes: 64 * 1024 * 1024, pids: 64 } },
      },
    );
    const h = await driver.start(cfg);
    const c = await dockerInspect(cfg.taskName);
    expect(c.Id).toBe(h.id);
    expect(c.Config.Env).toEqual(expect.arrayContaining(['A=1', 'B=agent', 'PORT=1234']));
    expect(c.Config.Env).not.toContain('B=spec');
    expect(c.Config.Labels).toMatchObject({ 'com.example.role': 'web', [TEST_LABEL]: RUN, 'baton.cluster': 'c1', 'baton.node': 'n1' });
    expect(c.Config.User).toBe('nobody');
    expect(c.Config.WorkingDir).toBe('/tmp');
    expect(c.Config.Hostname).toBe('bt-host');
    expect(c.Config.StopSignal).toBe('SIGUSR1');
    expect(c.Config.StopTimeout).toBe(3);
    // The agent runs health checks itself: the engine's runner is switched off.
    expect(c.Config.Healthcheck).toEqual({ Test: ['NONE'] });
    expect(c.Config.Cmd).toEqual(['sleep', '3600']);
    const hc = c.HostConfig;
    expect(hc.NetworkMode).toBe('none');
    expect(hc.Memory).toBe(64 * 1024 * 1024);
    expect(hc.NanoCpus).toBe(5e8);
    expect(hc.PidsLimit).toBe(64);
    expect(hc.ReadonlyRootfs).toBe(true);
    expect(hc.Init).toBe(true);
    expect(hc.CapAdd).toEqual(['SYS_PTRACE']);
    expect(hc.CapDrop).toEqual(['NET_RAW']);
    expect(hc.Tmpfs).toEqual({ '/scratch': 'size=1m', '/plain': '' });
    expect(hc.Ulimits).toEqual([{ Name: 'nofile', Soft: 1024, Hard: 2048 }]);
    expect(hc.ExtraHosts).toEqual(['myhost:127.0.0.2']);
    expect(hc.RestartPolicy.Name).toBe('no');
    expect(hc.LogConfig).toEqual({ Type: 'json-file', Config: { 'max-size': '64m', 'max-file': '3' } });
    const mounts = c.Mounts as { Type: string; Name?: string; Destination: string }[];
    expect(mounts.find((m) => m.Destination === '/data')).toMatchObject({ Type: 'volume', Name: VOLUME });
    const anon = mounts.find((m) => m.Destination === '/anon');
    expect(anon).toMatchObject({ Type: 'volume' });
    expect(mounts.find((m) => m.Destination === '/mem')).toMatchObject({ Type: 'tmpfs' });

    // The named volume was created by the driver with the cluster/node labels only.
    const vol = JSON.parse(await docker('volume', 'inspect', VOLUME))[0];
    expect(vol.Labels).toEqual({ 'baton.cluster': 'c1', 'baton.node': 'n1' });
    // The agent reports it (the scheduler sends the task back here); another cluster's filter does not see it.
    expect(await driver.volumes({ 'baton.cluster': 'c1', 'baton.node': 'n1' })).toEqual([VOLUME]);
    expect(await driver.volumes({ 'baton.cluster': 'c2' })).toEqual([]);

    // Inside the container: the environment and /etc/hosts are as asked.
    expect(await docker('exec', cfg.taskName, 'sh', '-c', 'echo $B-$PORT; id -u; grep myhost /etc/hosts')).toMatch(
      /^agent-1234\n65534\n127\.0\.0\.2\s+myhost$/,
    );

    // The spec's health check runs through exec (the agent's probe), as the container's user.
    expect(await driver.exec(h, ['/bin/sh', '-c', 'id -u'], 5_000)).toEqual({ exitCode: 0, output: '65534\n' });

    // destroy removes the anonymous volume along with the container; the named one stays.
    await driver.destroy(h);
    const vols = await docker('volume', 'ls', '-q');
    expect(vols.split('\n')).not.toContain(anon!.Name);
    expect(vols.split('\n')).toContain(VOLUME);
  });

  it('creates a missing bind-mount source directory, as Compose does', async () => {
    const src = `/tmp/baton-bind-${RUN}/nested`;
    try {
      const h = await driver.start(taskConfig('bindsrc', { command: ['sh', '-c', 'echo ok > /data/out && sleep 3600'], mounts: [{ type: 'bind', source: src, target: '/data', readOnly: false }] }));
      expect((await driver.inspect(h)).state).toBe('running');
      await eventually('file written through the bind mount', () => readFileSync(`${src}/out`, 'utf8').trim() === 'ok');
    } finally {
      rmSync(`/tmp/baton-bind-${RUN}`, { recursive: true, force: true });
    }
  });

  it('omits the hostname under host networking (Docker rejects it)', async () => {
    const h = await driver.start(taskConfig('hostnet-hostname', { command: ['sleep', '3600'], hostname: 'ignored' }));
    expect((await driver.inspect(h)).state).toBe('running');
  });

  it('reports a create the engine rejects as invalid_config and a failed start as failed', async () => {
    const bad = taskConfig('badbind', {
      command: ['true'],
      mounts: [{ type: 'bind', source: '/tmp', target: 'relative/target', readOnly: true }],
    });
    await expect(driver.start(bad)).rejects.toMatchObject({ name: 'DriverError', reason: 'invalid_config' });

    // Without init (with it, docker-init starts and then exits 127 itself).
    const noexec = taskConfig('noexec', { command: ['/no/such/binary'], init: false });
    const err = (await driver.start(noexec).catch((e: unknown) => e)) as DriverError;
    expect(err).toBeInstanceOf(DriverError);
    expect(err.reason).toBe('failed');
    expect(err.message).toMatch(/no such file|not found/i);
    expect(err.message).not.toMatch(/^\(HTTP code/);
  });

  it('lists containers by labels', async () => {
    const group = `list-${RUN}`;
    const a1 = await driver.start(taskConfig('list-a1', { command: ['sleep', '3600'] }, { labels: { 'baton.group': group, 'baton.part': 'a' } }));
    const a2 = await driver.start(taskConfig('list-a2', { command: ['sleep', '3600'] }, { labels: { 'baton.group': group, 'baton.part': 'a' } }));
    const b1 = await driver.start(taskConfig('list-b1', { command: ['true'] }, { labels: { 'baton.group': group, 'baton.part': 'b' } }));
    await driver.wait(b1);

    const a = await driver.list({ [TEST_LABEL]: RUN, 'baton.group': group, 'baton.part': 'a' });
    expect(a.map((t) => t.handle.id).sort()).toEqual([a1.id, a2.id].sort());
    for (const t of a) {
      expect(t.state).toBe('running');
      expect(t.handle).toMatchObject({ driver: 'docker', version: 1 });
      expect(t.labels['baton.part']).toBe('a');
    }
    expect(a.map((t) => t.handle.name).sort()).toEqual([a1.name, a2.name].sort());

    const all = await driver.list({ 'baton.group': group });
    expect(all).toHaveLength(3);
    expect(all.find((t) => t.handle.id === b1.id)?.state).toBe('exited');
    expect(await driver.list({ 'baton.group': `${group}-none` })).toEqual([]);
  });

  it('reports an unreachable engine: ping ok:false, start engine_unavailable, events onError', async () => {
    const bogus = new DockerDriver({ socketPath: `/nonexistent/baton-${RUN}.sock` });
    const info = await bogus.ping();
    expect(info.ok).toBe(false);
    expect(info.error).toBeTruthy();

    const err = await bogus.start(taskConfig('bogus', { command: ['true'] })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect((err as DriverError).reason).toBe('engine_unavailable');

    const handle: TaskHandle = { driver: 'docker', version: 1, id: 'x', name: 'x' };
    await expect(bogus.inspect(handle)).rejects.toMatchObject({ reason: 'engine_unavailable' });

    const got = await new Promise<Error>((resolve) => {
      bogus.events({ [TEST_LABEL]: RUN }, () => undefined, resolve);
    });
    expect((got as DriverError).reason).toBe('engine_unavailable');
    await bogus.close();
  });

  it('gives up on a wedged engine (it takes the connection, never answers) after requestTimeoutMs, and at once on interrupt()', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-wedged-'));
    const held: net.Socket[] = [];
    const wedged = net.createServer((c) => held.push(c));
    await new Promise<void>((r) => wedged.listen(join(dir, 'docker.sock'), r));
    try {
      const slow = new DockerDriver({ socketPath: join(dir, 'docker.sock'), requestTimeoutMs: 300 });
      const handle: TaskHandle = { driver: 'docker', version: 1, id: 'x', name: 'x' };
      const t0 = performance.now();
      const err = await slow.inspect(handle).catch((e: unknown) => e);
      expect(err).toMatchObject({ reason: 'engine_unavailable', message: expect.stringMatching(/did not answer inspect within 300 ms/) });
      expect(performance.now() - t0).toBeLessThan(5_000);

      // A start stuck on the engine is cut short by interrupt() (the agent found the engine gone), not left holding its task.
      const patient = new DockerDriver({ socketPath: join(dir, 'docker.sock'), requestTimeoutMs: 600_000 });
      const pending = patient.start(taskConfig('wedged', { command: ['true'] })).catch((e: unknown) => e);
      await eventually('the call to reach the engine', () => held.length >= 2);
      patient.interrupt();
      expect(await pending).toMatchObject({ reason: 'engine_unavailable', message: expect.stringMatching(/cut short: the engine went away/) });
      // Calls after the interrupt get their full time again.
      const later = patient.list({ [TEST_LABEL]: RUN });
      const outcome = await Promise.race([later.then(() => 'answered', () => 'failed'), new Promise((r) => setTimeout(() => r('still waiting'), 500))]);
      expect(outcome).toBe('still waiting');
      patient.interrupt();
      await expect(later).rejects.toMatchObject({ reason: 'engine_unavailable' });
    } finally {
      for (const c of held) c.destroy();
      await new Promise((r) => wedged.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
