/**
 * `baton exec` on a real cluster (one server, one agent, the shared dockerd):
 *
 * - without a TTY: the command's exit code is baton's, stdout and stderr
 *   stay apart, piped standard input reaches it and its end closes the
 *   command's, and 4 MiB of output arrives whole;
 * - with a TTY, in a real terminal (tmux): type into sh and read the
 *   screen, resize the window, Ctrl-C a sleep, exit with a code;
 * - `-c NAME` runs in a pod's other container;
 * - refusals say what and where: a task that is not running, a name that is
 *   nothing, a viewer, a deployer of another stack; every exec is an event
 *   and an audit entry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { BIN, eventually, TEST_IMAGE, writeFile } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';

const execFileP = promisify(execFile);

/** run runs baton with stdin from `input`, and returns its exit code and both outputs as buffers. */
function run(env: Record<string, string>, args: string[], input?: Buffer): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
    p.stdin.end(input);
  });
}

describe('baton exec', () => {
  const c = new TestCluster('baton-exec-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 30_000, bookmarkIntervalMs: 1000 }, 49000);
  const socket = `baton-exec-${process.pid}`;
  const tmux = (...args: string[]) => execFileP('/usr/bin/tmux', ['-L', socket, ...args]);
  const screen = async () => (await tmux('capture-pane', '-p', '-t', 'x')).stdout;
  let task = '';

  beforeAll(async () => {
    await c.start(['n2']);
    await c.apply('ex', `services:\n  web:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "100000"]\n`);
    await eventually(async () => expect(live(await c.tasksOf('ex_web')).filter((t) => t.status.state === 'running')).toHaveLength(1), 5 * 10_000);
    task = live(await c.tasksOf('ex_web'))[0]!.metadata.name;
  }, 120_000);

  afterAll(async () => {
    await tmux('kill-server').catch(() => undefined);
    await c.stop();
  });

  it("returns the command's exit code and output, stdout and stderr apart; piped input reaches it and ends it", async () => {
    const r = await run(c.env, ['exec', 'ex_web', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    expect(r).toMatchObject({ code: 7, stderr: 'err\n' });
    expect(r.stdout.toString()).toBe('out\n');
    // The service's name picks its running task; -i sends standard input, whose end is the command's EOF.
    const cat = await run(c.env, ['exec', '-i', 'ex_web', '--', 'sh', '-c', 'wc -c; echo done'], Buffer.from('x'.repeat(100_000)));
    expect(cat.code, cat.stderr).toBe(0);
    expect(cat.stdout.toString()).toBe('100000\ndone\n');
    // 4 MiB of output arrives whole.
    const big = await run(c.env, ['exec', task, '--', 'sh', '-c', 'head -c 4194304 /dev/zero | tr "\\0" "a"']);
    expect(big.code, big.stderr).toBe(0);
    expect(big.stdout.length).toBe(4 * 1024 * 1024);
    expect(createHash('sha256').update(big.stdout).digest('hex')).toBe(createHash('sha256').update(Buffer.alloc(4 * 1024 * 1024, 'a')).digest('hex'));
    // A command the image lacks: the engine's answer and docker exec's code.
    const missing = await run(c.env, ['exec', task, '--', 'no-such-command']);
    expect(missing.code).toBe(126);
  });

  it("runs in a pod's other container with -c, and names the containers there are when the name is wrong", async () => {
    const f = writeFile(c.dir, 'pod.yaml', `apiVersion: apps/v1
kind: Deployment
metadata: {name: duo, namespace: expod}
spec:
  selector: {matchLabels: {app: duo}}
  template:
    metadata: {labels: {app: duo}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: main, image: ${TEST_IMAGE}, command: [sleep, "3600"], env: [{name: WHO, value: main}]}
      - {name: side, image: ${TEST_IMAGE}, command: [sleep, "3600"], env: [{name: WHO, value: side}]}
`);
    const applied = await c.baton(['apply', '-f', f]);
    expect(applied.code, applied.stderr).toBe(0);
    const pod = await eventually(async () => {
      const t = live(await c.tasksOf('expod_duo'))[0];
      expect(t?.status.containers?.every((x) => x.state === 'running')).toBe(true);
      return t!;
    }, 5 * 10_000);
    const who = async (...args: string[]) => (await run(c.env, ['exec', ...args, pod.metadata.name, '--', 'sh', '-c', 'echo $WHO'])).stdout.toString();
    expect(await who()).toBe('main\n');
    expect(await who('-c', 'side')).toBe('side\n');
    const wrong = await run(c.env, ['exec', '-c', 'nope', pod.metadata.name, '--', 'true']);
    expect(wrong.stderr).toMatch(/^error: task expod_duo\.1\.\w+ has no container "nope" \(it has main, side\)/);
  });

  it('gives a real terminal: typed input, the window size and its changes, Ctrl-C to the command, its exit code', async () => {
    const env = { ...c.env, PATH: `${dirname(process.execPath)}:/usr/bin:/bin`, TERM: 'xterm' };
    // Through env(1): tmux's -e does not override the PATH its server was started with.
    await tmux('new-session', '-d', '-s', 'x', '-x', '120', '-y', '30', '/usr/bin/env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), '/bin/bash', '--norc', '--noprofile');
    await tmux('send-keys', '-t', 'x', `PS1='$ '; ${process.execPath} ${BIN} exec -it ex_web -- sh`, 'Enter');
    await eventually(async () => expect(await screen()).toMatch(/^\/ #$/m), 5 * 5000);
    await tmux('send-keys', '-t', 'x', 'echo $((6*7)); stty size', 'Enter');
    await eventually(async () => expect(await screen()).toMatch(/^42\n30 120$/m), 5 * 2000);
    await tmux('resize-window', '-t', 'x', '-x', '100', '-y', '25');
    await eventually(async () => {
      await tmux('send-keys', '-t', 'x', 'stty size', 'Enter');
      expect(await screen()).toMatch(/^25 100$/m);
    }, 5 * 2000);
    // Ctrl-C is a byte for the terminal: it interrupts the command in the task, not baton.
    await tmux('send-keys', '-t', 'x', 'sleep 1000', 'Enter');
    await tmux('send-keys', '-t', 'x', 'C-c');
    await tmux('send-keys', '-t', 'x', 'echo back', 'Enter');
    await eventually(async () => expect(await screen()).toMatch(/^back$/m), 5 * 2000);
    await tmux('send-keys', '-t', 'x', 'exit 3', 'Enter');
    await eventually(async () => expect(await screen()).toMatch(/^\$$/m), 5 * 2000);
    await tmux('send-keys', '-t', 'x', 'echo rc=$?', 'Enter');
    await eventually(async () => expect(await screen()).toMatch(/^rc=3$/m), 5 * 2000);
  });

  it('refuses with what and where: a task that is not running, a name that is nothing, a viewer, another stack; every exec is an event and an audit entry', async () => {
    await c.apply('ex2', `services:\n  stuck:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "100000"]\n    deploy:\n      placement: { constraints: ["node.labels.zone == nowhere"] }\n`);
    const pending = await eventually(async () => {
      const t = (await c.tasksOf('ex2_stuck')).find((x) => x.spec.desiredState === 'running');
      expect(t?.status.state).toBe('pending');
      return t!;
    }, 5 * 5000);
    const r1 = await run(c.env, ['exec', pending.metadata.name, '--', 'true']);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(new RegExp(`^error: task ${pending.metadata.name.replace(/\./g, '\\.')} is not running: it is pending \\(not placed on any node\\)`));
    const r2 = await run(c.env, ['exec', 'ex2_stuck', '--', 'true']);
    expect(r2.stderr).toMatch(/^error: service ex2_stuck has no running task: ex2_stuck\.1\.\w+ pending/);
    const r3 = await run(c.env, ['exec', 'nothing', '--', 'true']);
    expect(r3.stderr).toBe('error: no task or service named "nothing" (baton ps lists tasks)\n');
    expect((await run(c.env, ['exec', 'ex_web'])).stderr).toMatch(/say what to run after --/);

    const token = async (name: string, ...extra: string[]) => {
      const r = await c.baton(['token', 'create', name, ...extra, '-o', 'json']);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { token: string }).token;
    };
    const viewer = await run({ ...c.env, BATON_TOKEN: await token('ex-viewer', '--role', 'viewer') }, ['exec', task, '--', 'true']);
    expect(viewer.code).toBe(1);
    expect(viewer.stderr).toMatch(/^error: this call needs the admin or deployer role; the token ex-viewer is a viewer/);
    const other = await run({ ...c.env, BATON_TOKEN: await token('ex-other', '--role', 'deployer', '--stacks', 'ex2') }, ['exec', task, '--', 'true']);
    expect(other.stderr).toMatch(/^error: this token may act only in the stacks ex2, not in ex/);
    const own = await run({ ...c.env, BATON_TOKEN: await token('ex-own', '--role', 'deployer', '--stacks', 'ex') }, ['exec', task, '--', 'sh', '-c', 'exit 0']);
    expect(own.code, own.stderr).toBe(0);

    const events = await c.baton(['events', '--type', 'TaskExec']);
    expect(events.stdout).toMatch(/TaskExec .*ex-own \(deployer\) ran "sh" with 2 arguments in ex_web/);
    const audit = await c.baton(['audit', '--user', 'ex-own']);
    expect(audit.stdout).toMatch(/ex-own\s+deployer\s+EXEC\s+\/api\/v1\/tasks\/:name\/exec\s+name=ex_web\.1\.\w+\s+101/);
  });
});
