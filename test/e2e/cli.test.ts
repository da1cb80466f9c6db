/**
 * The CLI as a user meets it, against a real `baton server` process: manifest
 * errors (paths, lines, nothing applied, no stack trace), dry runs, contexts,
 * snapshot save and restore, and `up -d` / `down`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { baton, cleanupDir, eventually, portRange, removeClusterContainers, startProc, stopProc, tempDir, waitOutput, writeFile, TEST_IMAGE, type Proc } from '../helpers/proc.js';

describe('baton CLI against a real server', () => {
  let dir: string;
  let server: Proc;
  let env: Record<string, string>;

  async function startServer(): Promise<void> {
    server = startProc(['server', '--data-dir', join(dir, 'data'), '--listen', '127.0.0.1:0', '--log-level', 'warn'], { BATON_HOME: dir });
    const url = (await waitOutput(server, /listening on (\S+)/, 30_000))[1]!;
    env = { BATON_HOME: dir, BATON_SERVER: url, BATON_TOKEN: readFileSync(join(dir, 'data/server/admin.token'), 'utf8').trim(), BATON_CA: join(dir, 'data/server/ca.crt') };
  }

  beforeAll(async () => {
    dir = tempDir('baton-cli-');
    await startServer();
  }, 60_000);

  afterAll(async () => {
    if (server) await stopProc(server);
    cleanupDir(dir);
  });

  const svcNames = async () => (JSON.parse((await baton(['-o', 'json', 'service', 'ls'], env)).stdout) as { metadata: { name: string } }[]).map((s) => s.metadata.name).sort();

  it('lists every manifest error with its path and line, applies nothing, prints no stack', async () => {
    const f = writeFile(dir, 'bad.yaml', `services:\n  web:\n    image: ${TEST_IMAGE}\n    enviroment:\n      A: b\n    deploy:\n      replicas: many\n  db:\n    image: postgres\n    secrets: [pw]\n`);
    const r = await baton(['apply', '-f', f, '--stack', 'bad'], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: \S*bad\.yaml has \d+ errors; nothing was applied/);
    expect(r.stderr).toMatch(/services\.web\.enviroment \(line 4\): .*did you mean `environment`/);
    expect(r.stderr).toMatch(/services\.web\.deploy\.replicas \(line 7\)/);
    expect(r.stderr).toMatch(/services\.db\.secrets\[0\] \(line 10\): secret "pw" is not defined in the top-level `secrets`/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(await svcNames()).toEqual([]);
  });

  it('reads Kubernetes manifests by their content, and refuses what Baton cannot run with each document\'s path and line', async () => {
    const f = writeFile(dir, 'k8s.yaml', 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: other}}\n    spec:\n      containers: [{name: web, image: nginx}]\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\n');
    const r = await baton(['apply', '-f', f], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/k8s\.yaml has 2 errors; nothing was applied/);
    expect(r.stderr).toMatch(/documents\[0\]\.spec\.selector \(line 6\): does not select the template's own labels/);
    expect(r.stderr).toMatch(/documents\[1\]\.kind \(line 13\): Ingress web is not supported by Baton: publish the service/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(await svcNames()).toEqual([]);
  });

  it('dry-runs, applies, and prunes with a diff', async () => {
    const f = writeFile(dir, 'ok.yaml', `name: shop\nservices:\n  web:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "1000"]\n  api:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "1000"]\n`);
    const dry = await baton(['apply', '-f', f, '--dry-run'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('(dry run) would create service shop_web');
    expect(await svcNames()).toEqual([]);
    expect((await baton(['apply', '-f', f], env)).stdout).toContain('created service shop_api');
    expect(await svcNames()).toEqual(['shop_api', 'shop_web']);
    writeFile(dir, 'ok.yaml', `name: shop\nservices:\n  web:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "1000"]\n    deploy:\n      replicas: 2\n`);
    const pr = await baton(['apply', '-f', f, '--prune'], env);
    expect(pr.stdout).toContain('updated service shop_web');
    expect(pr.stdout).toContain('spec.replicas: 1 → 2');
    expect(pr.stdout).toContain('deleted service shop_api');
    expect(await svcNames()).toEqual(['shop_web']);
    const ps = await baton(['service', 'ps', 'shop_web'], env);
    expect(ps.stdout).toMatch(/no nodes in the cluster/);
  });

  it('makes tokens with roles: a deployer scales in its stack and is refused elsewhere; a revoked token is refused', async () => {
    const made = await baton(['token', 'create', 'ci', '--role', 'deployer', '--stacks', 'shop', '--ttl', '30d', '-q'], env);
    expect(made.code, made.stderr).toBe(0);
    const ci = { ...env, BATON_TOKEN: made.stdout.trim() };
    expect((await baton(['service', 'scale', 'shop_web=1'], ci)).stdout).toContain('shop_web scaled to 1');
    const f = writeFile(dir, 'elsewhere.yaml', `name: elsewhere\nservices:\n  web:\n    image: ${TEST_IMAGE}\n`);
    const refused = await baton(['apply', '-f', f], ci);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('this token may act only in the stacks shop, not in elsewhere');
    expect(refused.stderr).not.toMatch(/\n\s+at /);
    const ls = await baton(['token', 'ls'], env);
    expect(ls.stdout).toMatch(/ci\s+deployer\s+shop\s+\d{4}-\d\d-\d\dT/);
    expect((await baton(['token', 'ls'], ci)).stderr).toContain('this call needs the admin role; the token ci is a deployer');
    expect((await baton(['token', 'revoke', 'ci'], env)).stdout).toContain('token ci revoked');
    expect((await baton(['service', 'ls'], ci)).stderr).toContain('revoked');
    // The audit log: the scale and the refused apply, each with its result.
    await eventually(async () => {
      const audit = await baton(['audit', '--user', 'ci'], env);
      expect(audit.code, audit.stderr).toBe(0);
      expect(audit.stdout).toMatch(/ci\s+deployer\s+POST\s+\/api\/v1\/services\/:name\/scale\s+name=shop_web\s+200\s+127\.0\.0\.1/);
      expect(audit.stdout).toMatch(/ci\s+deployer\s+POST\s+\/api\/v1\/stacks\/:stack\/apply\s+stack=elsewhere\s+403 BATON_ERR_FORBIDDEN/);
    }, 5 * 2000);
  });

  it('sets a quota on a stack: a scale past it is refused with what is left; quota ls shows used/limit', async () => {
    const set = await baton(['quota', 'set', 'shop', '--tasks', '3', '--memory', '1GiB'], env);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain('quota of stack shop: tasks 1 of 3 used, cpus not limited (0 used), memory 0 of 1GiB used');
    // shop_web reserves no memory, and the quota limits memory: it cannot be counted, so it cannot grow.
    const unreserved = await baton(['service', 'scale', 'shop_web=2'], env);
    expect(unreserved.code).not.toBe(0);
    expect(unreserved.stderr).toContain('reserves no memory, and the quota of stack "shop" limits memory');
    expect((await baton(['quota', 'set', 'shop', '--tasks', '3'], env)).code).toBe(0);
    const over = await baton(['service', 'scale', 'shop_web=5'], env);
    expect(over.code).not.toBe(0);
    expect(over.stderr).toContain('the quota of stack "shop" does not allow this: tasks asks for 5 tasks in all; the quota is 3 tasks, 1 task in use, 2 tasks left');
    expect(over.stderr).not.toMatch(/\n\s+at /);
    expect((await baton(['service', 'scale', 'shop_web=3'], env)).code).toBe(0);
    expect((await baton(['quota', 'ls'], env)).stdout).toMatch(/shop\s+3\/3\s+0\/-\s+0\/-\s+token [0-9a-f]+\s+\d{4}-/);
    const bad = await baton(['quota', 'set', 'shop'], env);
    expect(bad.stderr).toContain('say what the quota limits: --cpus, --memory and/or --tasks');
    expect((await baton(['quota', 'rm', 'shop'], env)).stdout).toContain('quota of stack shop removed');
    expect((await baton(['service', 'scale', 'shop_web=1'], env)).code).toBe(0);
  });

  it('saves a snapshot online and restores it into a stopped server', async () => {
    const snap = join(dir, 'snap.db');
    const r = await baton(['snapshot', 'save', snap], env);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(snap)).toBe(true);
    const f = writeFile(dir, 'later.yaml', `services:\n  late:\n    image: ${TEST_IMAGE}\n`);
    expect((await baton(['apply', '-f', f, '--stack', 'later'], env)).code).toBe(0);
    expect(await svcNames()).toEqual(['later_late', 'shop_web']);
    // Restoring into a running server's data dir is refused.
    const busy = await baton(['snapshot', 'restore', snap, '--data-dir', join(dir, 'data')], env);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/in use by process/);
    await stopProc(server);
    const ok = await baton(['snapshot', 'restore', snap, '--data-dir', join(dir, 'data')], env);
    expect(ok.code, ok.stderr).toBe(0);
    await startServer();
    expect(await svcNames()).toEqual(['shop_web']);
  });

  it('manages contexts', async () => {
    const none = await baton(['--context', 'nope', 'service', 'ls'], { BATON_HOME: dir });
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/context "nope" not found/);
    const use = await baton(['context', 'use', 'nope'], { BATON_HOME: dir });
    expect(use.stderr).toMatch(/context "nope" not found/);
  });

  it('runs in the background with up -d and stops with a plain down (through the context), leaving containers to adopt', async () => {
    const home = tempDir('baton-upd-');
    const e = { BATON_HOME: home, BATON_TIMINGS: JSON.stringify({ heartbeatIntervalMs: 300 }) };
    let clusterId = '';
    try {
      const up = await baton(['up', '-d', '--data-dir', join(home, 'd'), '--listen', '127.0.0.1:0', '--port-range', portRange(24800), '--listen-port', '0', '--pull', 'never', '--cluster-cidr', '10.202.0.0/16', '--egress', 'none', '--dns-upstream', 'none'], e);
      expect(up.code, up.stderr).toBe(0);
      expect(up.stdout).toMatch(/baton is up in the background \(pid \d+\)/);
      // The server runs with its V8 flags (base/nodeFlags.ts), which V8 takes only at start: the child got them.
      const pid = /\(pid (\d+)\)/.exec(up.stdout)![1]!;
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      expect(environ.find((v) => v.startsWith('NODE_OPTIONS='))).toContain('--max-semi-space-size=64');
      clusterId = JSON.parse(readFileSync(join(home, 'd/server/cluster.json'), 'utf8')).clusterId;
      const again = await baton(['up', '-d', '--data-dir', join(home, 'd'), '--listen', '127.0.0.1:0'], e);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/already running/);
      const ctx = await baton(['context', 'ls'], e);
      expect(ctx.stdout).toMatch(/default \*\s+https:\/\/127\.0\.0\.1:\d+/);
      await eventually(async () => expect((await baton(['node', 'ls'], e)).stdout).toMatch(/Ready/), 15_000);
      // A plain `down` stops the cluster of the current context (written by `up`), not BATON_HOME's.
      const down = await baton(['down'], e);
      expect(down.code, down.stderr).toBe(0);
      expect(down.stdout).toMatch(/baton stopped/);
      expect((await baton(['down', '--context', 'nope'], e)).stderr).toContain('context "nope" not found');
      const after = await baton(['service', 'ls'], e);
      expect(after.stderr).toMatch(/cannot reach the server/);
    } finally {
      await baton(['down', '--data-dir', join(home, 'd')], e);
      await removeClusterContainers(clusterId);
      cleanupDir(home);
    }
  });
});
