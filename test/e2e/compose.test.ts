/**
 * Compose features end to end, on the shared dockerd.
 *
 * Secrets and configs: a Compose file's
 * secret (from a file) and config (inline) reach the task's container as
 * files with the declared owner and mode, from a tmpfs on the node; the
 * secret's content is nowhere else (docker inspect, the API's answers,
 * events, the server's SQLite files with the WAL, the agent's log store);
 * a new content rolls the service.
 *
 * Start order: `depends_on: {db: {condition: service_healthy}}` places web's
 * task only once db is healthy, and says what it waits for meanwhile.
 *
 * Build: a service with `build:` and no image is built on its node from the
 * context `baton apply` uploaded (.dockerignore honoured, build args passed,
 * RUN steps run), tagged `<stack>_<service>:<hash>`, and serves what its
 * Dockerfile copied; apply shows the steps; the same context is not built
 * again; a changed file rolls the service onto a new image; a failing step
 * fails the apply with the builder's words.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { serviceKind } from '../../src/api/kinds.js';
import { live, TestCluster } from '../helpers/cluster.js';
import { docker, eventually, TEST_IMAGE, writeFile } from '../helpers/proc.js';

const run = promisify(execFile);
const SECRET = 'pa55-w0rd-never-in-clear';
const NEWER = 'rotated-pa55-w0rd-never-in-clear';

/** filesUnder: every regular file below dir. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

describe('secrets and configs reach the container as files', () => {
  const c = new TestCluster('baton-compose-', { heartbeatIntervalMs: 500, nodeDownAfterMs: 30_000, bookmarkIntervalMs: 1000 }, 29000);

  beforeAll(async () => {
    await c.start(['n2', 'n3']);
  }, 60_000);
  afterAll(async () => {
    await c.stop();
  }, 60_000);

  const container = async () => {
    const [t] = live(await c.tasksOf('vault_app')).filter((x) => x.status.state === 'running');
    expect(t?.status.containerId).toBeDefined();
    return t!;
  };
  const sh = async (id: string, cmd: string) => (await docker(['exec', id, 'sh', '-c', cmd])).trim();

  it('delivers the secret and the config with their owner and mode, from a tmpfs, and the content is nowhere else', async () => {
    writeFile(c.dir, 'db_password.txt', SECRET);
    await c.apply('vault', `services:
  app:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    deploy:
      placement: {constraints: ["node.name == n2"]}
    secrets:
      - source: db_password
        uid: "103"
        gid: "104"
        mode: 0440
    configs:
      - source: app_conf
        target: /etc/app.conf
secrets:
  db_password:
    file: ./db_password.txt
configs:
  app_conf:
    content: "listen = 8080\\n"
`);
    const t = await eventually(container, 5 * 10_000);
    const id = t.status.containerId!;
    expect(await sh(id, 'cat /run/secrets/db_password')).toBe(SECRET);
    expect(await sh(id, 'stat -c "%a %u %g" /run/secrets/db_password')).toBe('440 103 104');
    expect(await sh(id, 'cat /etc/app.conf')).toBe('listen = 8080');
    expect(await sh(id, 'stat -c "%a" /etc/app.conf')).toBe('444');
    // Read-only in the container.
    await expect(docker(['exec', id, 'sh', '-c', 'echo x > /run/secrets/db_password'])).rejects.toThrow();

    // On the node, the file is on a tmpfs.
    const inspect = await docker(['inspect', id]);
    const mount = (JSON.parse(inspect)[0].Mounts as { Source: string; Destination: string }[]).find((m) => m.Destination === '/run/secrets/db_password')!;
    expect((await run('stat', ['-f', '-c', '%T', mount.Source])).stdout.trim()).toBe('tmpfs');

    // Nowhere else: the engine's view of the container, the API's answers, events, the server's files (WAL too), the agent's logs.
    expect(inspect).not.toContain(SECRET);
    const answers = [
      JSON.stringify((await c.api.tasks({ fieldSelector: { 'spec.serviceName': 'vault_app' } })).items),
      JSON.stringify(await c.api.call('GET', '/api/v1/services/vault_app')),
      JSON.stringify(await c.api.call('GET', '/api/v1/secrets')),
      JSON.stringify(await c.api.call('GET', '/api/v1/secrets/vault_db_password')),
      JSON.stringify(await c.api.events({ limit: 1000 })),
      (await c.baton(['secret', 'inspect', 'vault_db_password'])).stdout,
    ];
    for (const a of answers) {
      expect(a).not.toContain(SECRET);
      expect(a).not.toContain(Buffer.from(SECRET).toString('base64'));
    }
    const serverFiles = filesUnder(join(c.dir, 'server'));
    expect(serverFiles.some((f) => f.endsWith('state.db-wal') || f.endsWith('state.db'))).toBe(true);
    for (const dir of [join(c.dir, 'server'), join(c.dir, 'n2'), join(c.dir, 'n3')]) {
      for (const f of filesUnder(dir)) {
        if (statSync(f).size > 64 << 20) continue;
        const bytes = readFileSync(f);
        expect(bytes.includes(SECRET), `${f} holds the secret in clear`).toBe(false);
        expect(bytes.includes(Buffer.from(SECRET).toString('base64')), `${f} holds the secret in base64`).toBe(false);
      }
    }
  }, 120_000);

  it('rolls the service when the secret gets a new content', async () => {
    const before = await container();
    writeFile(c.dir, 'newer.txt', NEWER);
    const r = await c.baton(['secret', 'update', 'vault_db_password', join(c.dir, 'newer.txt')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/rolling vault_app/);
    const after = await eventually(async () => {
      const t = await container();
      expect(t.metadata.name).not.toBe(before.metadata.name);
      return t;
    }, 5 * 10_000);
    expect(await sh(after.status.containerId!, 'cat /run/secrets/db_password')).toBe(NEWER);
    // The old task's files went with it.
    await eventually(async () => expect(live(await c.tasksOf('vault_app'))).toHaveLength(1), 30_000);
    expect((await c.baton(['stack', 'rm', 'vault'])).code).toBe(0);
    await eventually(async () => expect(await c.running('vault_app')).toEqual([]), 30_000);
    const rm = await c.baton(['secret', 'rm', 'vault_db_password']);
    expect(rm.code, rm.stderr).toBe(0);
  }, 120_000);

  it('starts a service only once its dependency is healthy, and says what it waits for', async () => {
    await c.apply('dep', `services:
  web:
    image: ${TEST_IMAGE}
    command: ["sleep", "3600"]
    depends_on:
      db: {condition: service_healthy}
  db:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "sleep 3; touch /tmp/ok; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 500ms
      timeout: 1s
      retries: 1
      start_period: 20s
`);
    // While db is not healthy yet, web's task waits, and says for what.
    const waiting = await eventually(async () => {
      const [t] = await c.tasksOf('dep_web');
      expect(t?.status.pendingReason).toMatch(/^waiting for dep_db: 0\/1 healthy/);
      return t!;
    }, 5 * 5000);
    expect(waiting.spec.nodeName).toBe('');
    expect((await c.baton(['service', 'ps', 'dep_web'])).stdout).toMatch(/waiting for dep_db: 0\/1 healthy/);
    // Then db turns healthy, and web starts after it.
    const web = await eventually(async () => {
      const [t] = live(await c.tasksOf('dep_web')).filter((x) => x.status.state === 'running');
      expect(t).toBeDefined();
      return t!;
    }, 5 * 10_000).catch(async (e) => {
      const show = async (n: string) => JSON.stringify({ status: (await c.api.get<{ status: unknown }>(serviceKind, n)).status, tasks: (await c.tasksOf(n)).map((t) => t.status) });
      console.error(`dep_db: ${await show('dep_db')}\ndep_web: ${await show('dep_web')}`);
      throw e;
    });
    const [db] = live(await c.tasksOf('dep_db'));
    expect(db!.status.readyAt).toBeDefined();
    expect(Date.parse(web.status.startedAt!)).toBeGreaterThanOrEqual(Date.parse(db!.status.readyAt!));
    expect((await c.baton(['stack', 'rm', 'dep'])).code).toBe(0);
  }, 120_000);

  it('builds a service from its context on its node, and it serves what the Dockerfile copied', async () => {
    const ctx = join(c.dir, 'shop');
    mkdirSync(join(ctx, 'web', 'www'), { recursive: true });
    writeFile(join(ctx, 'web'), 'Dockerfile', `FROM ${TEST_IMAGE}
ARG GREETING=none
COPY www /www
RUN echo "$GREETING" > /www/greeting.txt
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
`);
    writeFile(join(ctx, 'web', 'www'), 'index.html', '<h1>built by baton</h1>\n');
    writeFile(join(ctx, 'web', 'www'), 'notes.secret', 'not for the image\n');
    writeFile(join(ctx, 'web'), '.dockerignore', '**/*.secret\n');
    const yaml = `name: shop
services:
  web:
    build:
      context: ./web
      args: {GREETING: hello}
    deploy:
      placement: {constraints: ["node.name == n3"]}
`;
    const file = writeFile(ctx, 'compose.yaml', yaml);
    const first = await c.baton(['apply', '-f', file]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/uploaded build context [0-9a-f]{12} \([\d.]+KiB, 3 files\)/);
    // Its steps as the node runs them (the CLI shows what it sees each time it looks).
    expect(first.stdout).toMatch(/shop_web\.1\.[0-9a-f]+ on n3: building image shop_web:[0-9a-f]{12}: Step \d+\/\d+ : /);
    const image = /built (shop_web:[0-9a-f]{12})/.exec(first.stdout)![1]!;

    const t = await eventually(async () => {
      const [x] = live(await c.tasksOf('shop_web'));
      expect(x?.status.containerId).toBeDefined();
      return x!;
    }, 5 * 10_000);
    expect(t.spec.nodeName).toBe('n3');
    expect(t.spec.container.image).toBe(image);
    const id = t.status.containerId!;
    expect(await sh(id, 'wget -qO- http://127.0.0.1:8080/index.html')).toBe('<h1>built by baton</h1>');
    expect(await sh(id, 'cat /www/greeting.txt')).toBe('hello');
    expect(await sh(id, 'ls /www')).not.toContain('notes.secret');
    // On the node's engine, with the cluster's label.
    const labels = JSON.parse(await docker(['image', 'inspect', image, '--format', '{{json .Config.Labels}}'])) as Record<string, string>;
    expect(labels).toMatchObject({ 'baton.cluster': c.clusterId });

    // The same file again: nothing to upload, build or roll.
    const again = await c.baton(['apply', '-f', file]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('unchanged service shop_web');
    expect(again.stdout).not.toMatch(/uploaded|building/);

    // A changed file is a new context, a new image, and a rollout onto it.
    writeFile(join(ctx, 'web', 'www'), 'index.html', '<h1>built again</h1>\n');
    const changed = await c.baton(['apply', '-f', file]);
    expect(changed.code, changed.stderr).toBe(0);
    const image2 = /built (shop_web:[0-9a-f]{12})/.exec(changed.stdout)![1]!;
    expect(image2).not.toBe(image);
    const t2 = await eventually(async () => {
      const [x] = live(await c.tasksOf('shop_web')).filter((y) => y.spec.container.image === image2);
      expect(x?.status.containerId).toBeDefined();
      return x!;
    }, 5 * 10_000);
    expect(await sh(t2.status.containerId!, 'wget -qO- http://127.0.0.1:8080/index.html')).toBe('<h1>built again</h1>');

    // A step that fails: the apply says which and why.
    writeFile(join(ctx, 'web'), 'Dockerfile', `FROM ${TEST_IMAGE}\nRUN echo broken; exit 3\n`);
    const broken = await c.baton(['apply', '-f', file]);
    expect(broken.code).not.toBe(0);
    expect(broken.stderr).toMatch(/the image of shop_web did not build on n3: building shop_web:[0-9a-f]{12}: The command '\/bin\/sh -c echo broken; exit 3' returned a non-zero code: 3/);
    expect((await c.baton(['stack', 'rm', 'shop'])).code).toBe(0);
    await eventually(async () => expect(await c.running('shop_web')).toEqual([]), 30_000);
  }, 180_000);
});
