/**
 * Private registries against a real one: Debian's docker-registry
 * (distribution 2.8) on a loopback port with TLS and htpasswd, an image
 * pushed to it by the test (dockerd treats 127.0.0.0/8 registries as
 * insecure and skips the certificate check, so this covers the credentials
 * and the error classes), and one agent that pulls what it is missing.
 *
 * - `baton registry login` tries the registry: a wrong password and an
 *   unreachable registry are told apart, at once;
 * - a task whose image needs credentials it was not given is rejected
 *   saying so (authentication), one of an image the registry lacks saying
 *   that (not found), and both are retried by the backoff;
 * - `x-baton.pull_secret` and `apply --with-registry-auth` pull with the
 *   login; the password reaches no log;
 * - logout is refused while a service pulls with the login.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BIN, docker, eventually, freePort, TEST_IMAGE, writeFile } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';

const execFileP = promisify(execFile);
const USER = 'puller';
const PASSWORD = 'reg-pass-7f3c1d2e9b';

describe('private registries', () => {
  const c = new TestCluster('baton-registry-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 30_000, bookmarkIntervalMs: 1000 }, 35000, { agentArgs: ['--pull', 'missing'] });
  let registry: ChildProcess | undefined;
  let registryLog = '';
  let server = '';
  let dockerConfig = '';
  const image = (tag: string) => `${server}/priv/busybox:${tag}`;

  /** dockerAs runs the docker CLI with the test's own config dir (its login), never the user's. */
  const dockerAs = (args: string[], input?: string) =>
    new Promise<void>((resolve, reject) => {
      const p = spawn('/usr/bin/docker', ['--config', dockerConfig, ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`docker ${args[0]} exited ${code}: ${err}`))));
      p.stdin!.end(input);
    });

  beforeAll(async () => {
    await c.start(['n2']);
    const dir = join(c.dir, 'registry');
    mkdirSync(join(dir, 'data'), { recursive: true });
    dockerConfig = join(dir, 'docker-config');
    mkdirSync(dockerConfig);
    const port = await freePort();
    server = `127.0.0.1:${port}`;
    await execFileP('/usr/bin/openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
    writeFileSync(join(dir, 'htpasswd'), (await execFileP('/usr/bin/htpasswd', ['-Bbn', USER, PASSWORD])).stdout);
    writeFileSync(
      join(dir, 'config.yml'),
      `version: 0.1
log: { level: warn }
storage: { filesystem: { rootdirectory: ${join(dir, 'data')} } }
http:
  addr: ${server}
  tls: { certificate: ${join(dir, 'cert.pem')}, key: ${join(dir, 'key.pem')} }
auth:
  htpasswd: { realm: baton-test, path: ${join(dir, 'htpasswd')} }
`,
    );
    registry = spawn('/usr/bin/docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    registry.stdout!.on('data', (d: Buffer) => (registryLog += d.toString()));
    registry.stderr!.on('data', (d: Buffer) => (registryLog += d.toString()));
    await eventually(
      () =>
        new Promise<void>((resolve, reject) => {
          const s = connect(port, '127.0.0.1', () => {
            s.destroy();
            resolve();
          });
          s.on('error', reject);
        }),
      30_000,
    );
    // Two tags pushed with the test's own login, then removed from the engine: the agent must pull them.
    await dockerAs(['login', server, '-u', USER, '--password-stdin'], PASSWORD);
    for (const tag of ['1', '2']) {
      await docker(['tag', TEST_IMAGE, image(tag)]);
      await dockerAs(['push', image(tag)]);
      await docker(['rmi', image(tag)]);
    }
  }, 180_000);

  afterAll(async () => {
    await c.stop();
    for (const tag of ['1', '2', 'nope']) await docker(['rmi', image(tag)]).catch(() => undefined);
    if (registry && registry.exitCode === null) {
      registry.kill('SIGTERM');
      await new Promise((r) => registry!.once('exit', r));
    }
  });

  const login = (password: string, to = server) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'registry', 'login', to, '-u', USER, '--password-stdin'], { env: { ...process.env, ...c.env }, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code, stdout, stderr }));
      p.stdin!.end(password + '\n');
    });

  it('tries a login before keeping it: a wrong password and an unreachable registry are told apart', async () => {
    const wrong = await login('not-the-password');
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(new RegExp(`^error: registry ${server} refused these credentials \\(HTTP 401\\)`));
    const nowhere = await login(PASSWORD, `127.0.0.1:${await freePort()}`);
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr).toMatch(/^error: cannot reach registry 127\.0\.0\.1:\d+: ECONNREFUSED/);
    expect((await c.baton(['registry', 'ls'])).stdout).not.toContain(server);
    const ok = await login(PASSWORD);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`logged in to ${server} (kept as secret registry-127.0.0.1-${server.split(':')[1]})`);
    expect((await c.baton(['registry', 'ls'])).stdout).toMatch(new RegExp(`${server.replace(/\./g, '\\.')}\\s+registry-127\\.0\\.0\\.1-\\d+`));
  });

  it('rejects a task pulled without the credentials it needs, saying so; pulls with x-baton.pull_secret and with --with-registry-auth', async () => {
    const secret = `registry-127.0.0.1-${server.split(':')[1]}`;
    // No credentials: the registry refuses, the task says why (and the backoff tries again).
    await c.apply('anon', `services:\n  web:\n    image: ${image('1')}\n    command: ["sleep", "100000"]\n`);
    await eventually(async () => {
      const t = (await c.tasksOf('anon_web'))[0];
      expect(t?.status.error ?? '').toMatch(new RegExp(`registry ${server.replace(/\./g, '\\.')} refused an anonymous pull \\(authentication\\)`));
    }, 5 * 10_000);
    // Its pull secret named: it runs.
    await c.apply('named', `services:\n  web:\n    image: ${image('1')}\n    command: ["sleep", "100000"]\n    x-baton:\n      pull_secret: ${secret}\n`);
    await eventually(async () => expect(live(await c.tasksOf('named_web'))).toHaveLength(1), 5 * 15_000);
    // --with-registry-auth gives every service on that registry the login.
    const f = writeFile(c.dir, 'auth.yaml', `name: auth\nservices:\n  web:\n    image: ${image('2')}\n    command: ["sleep", "100000"]\n`);
    const applied = await c.baton(['apply', '-f', f, '--with-registry-auth']);
    expect(applied.code, applied.stderr).toBe(0);
    await eventually(async () => expect(live(await c.tasksOf('auth_web'))).toHaveLength(1), 5 * 15_000);
    // An image the registry lacks: not found, told apart from the other two.
    await c.apply('missing', `services:\n  web:\n    image: ${image('nope')}\n    command: ["sleep", "100000"]\n    x-baton:\n      pull_secret: ${secret}\n`);
    await eventually(async () => {
      const t = (await c.tasksOf('missing_web'))[0];
      expect(t?.status.error ?? '').toMatch(new RegExp(`registry ${server.replace(/\./g, '\\.')} has no such image \\(not found\\)`));
    }, 5 * 10_000);
    // A pull secret that does not exist is refused at apply, with its path.
    const bad = writeFile(c.dir, 'bad.yaml', `name: bad\nservices:\n  web:\n    image: ${image('1')}\n    x-baton:\n      pull_secret: no-such-secret\n`);
    const refused = await c.baton(['apply', '-f', bad]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/services\.web\.pullSecret\.source: secret "no-such-secret" does not exist: log in to the image's registry/);
    // The password is in no Baton process's output.
    for (const [, p] of c.agents) expect(p.output()).not.toContain(PASSWORD);
    expect(c.server.output()).not.toContain(PASSWORD);
    // A login in use cannot be dropped.
    const logout = await c.baton(['registry', 'logout', server]);
    expect(logout.code).toBe(1);
    expect(logout.stderr).toMatch(new RegExp(`secret "${secret.replace(/\./g, '\\.')}" is in use by (auth_web|missing_web|named_web)`));
  });
});
