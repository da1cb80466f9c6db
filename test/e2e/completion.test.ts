/**
 * Shell completion as a user meets it: `baton completion bash|zsh` sourced
 * into a real bash and a real zsh running in a tmux terminal, Tab pressed
 * after partial command lines, the screen read back. Names come from a real
 * cluster (one server, one agent, a running service); `baton __complete`,
 * what the scripts run, is also asked directly for flags, choices and files.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { BIN, eventually, TEST_IMAGE } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';

const execFileP = promisify(execFile);

describe('shell completion', () => {
  const c = new TestCluster('baton-completion-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 30_000, bookmarkIntervalMs: 1000 }, 48000);
  /** This test's own tmux server (-L), so it never touches another. */
  const socket = `baton-completion-${process.pid}`;
  let binDir = '';
  let task = '';

  const tmux = (...args: string[]) => execFileP('/usr/bin/tmux', ['-L', socket, ...args]);
  const screen = async (session: string) => (await tmux('capture-pane', '-p', '-t', session)).stdout;
  const complete = async (...words: string[]) => (await c.baton(['__complete', ...words])).stdout.split('\n').filter(Boolean);

  /** shell starts `argv` in a tmux session whose PATH finds `baton`, with the cluster's environment. */
  async function shell(session: string, argv: string[]): Promise<void> {
    const env = { ...c.env, PATH: `${binDir}:${dirname(process.execPath)}:/usr/bin:/bin`, HOME: c.dir, TERM: 'xterm' };
    // Through env(1): tmux's -e does not override the PATH its server was started with.
    await tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '40', '/usr/bin/env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), ...argv);
  }

  beforeAll(async () => {
    await c.start(['n2']);
    binDir = join(c.dir, 'bin');
    mkdirSync(binDir);
    symlinkSync(BIN, join(binDir, 'baton'));
    await c.apply('cstack', `services:\n  web:\n    image: ${TEST_IMAGE}\n    command: ["sleep", "100000"]\n`);
    await eventually(async () => expect(live(await c.tasksOf('cstack_web')).filter((t) => t.status.state === 'running')).toHaveLength(1), 5 * 10_000);
    task = live(await c.tasksOf('cstack_web'))[0]!.metadata.name;
  }, 120_000);

  afterAll(async () => {
    await tmux('kill-server').catch(() => undefined);
    await c.stop();
  });

  it('answers commands, flags, choices, files and the names in the cluster', async () => {
    expect(await complete('ser')).toEqual(['server', 'servers', 'service']);
    expect(await complete('service', 'r')).toEqual(['restart', 'resume', 'rm', 'rollback', 'rollout-status']);
    expect(await complete('service', 'scale', '--o')).toEqual(['--output']);
    expect(await complete('-o', '')).toEqual(['json', 'table', 'yaml']);
    expect(await complete('apply', '-f', '')).toEqual(['__files__']);
    expect(await complete('service', 'ps', '')).toEqual(['cstack_web']);
    expect(await complete('logs', 'cstack_')).toEqual([task, 'cstack_web'].sort());
    expect(await complete('node', 'inspect', '')).toEqual(['n2']);
    expect(await complete('stack', 'rm', '')).toEqual(['cstack']);
    expect(await complete('completion', '')).toEqual(['bash', 'zsh']);
    // A flag's value is skipped when finding the argument: `--server URL` is not the service.
    expect(await complete('--server', c.url, 'service', 'inspect', '')).toEqual(['cstack_web']);
    // A cluster that does not answer completes nothing, and says nothing.
    const r = await c.baton(['__complete', '--server', 'https://127.0.0.1:1', 'service', 'ps', '']);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
  });

  it('completes in a real bash: a command, then a service name from the cluster', async () => {
    await shell('b', ['/bin/bash', '--norc', '--noprofile']);
    await tmux('send-keys', '-t', 'b', "PS1='$ '; source <(baton completion bash)", 'Enter');
    // Typing waits for the prompt (capture-pane drops a line's trailing spaces).
    await eventually(async () => expect(await screen('b')).toMatch(/^\$$/m), 10_000);
    await tmux('send-keys', '-t', 'b', 'baton servi', 'Tab');
    await eventually(async () => expect(await screen('b')).toMatch(/\$ baton service$/m), 10_000);
    await tmux('send-keys', '-t', 'b', 'ps cst', 'Tab');
    await eventually(async () => expect(await screen('b')).toMatch(/\$ baton service ps cstack_web$/m), 10_000);
    // Three candidates, no common prefix to add: the second Tab lists them.
    await tmux('send-keys', '-t', 'b', 'C-u', 'baton serv', 'Tab', 'Tab');
    await eventually(async () => expect(await screen('b')).toMatch(/server\s+servers\s+service/), 10_000);
    // Files where a file is wanted.
    writeFileSync(join(c.dir, 'stack-file.yaml'), 'services: {}\n');
    await tmux('send-keys', '-t', 'b', 'C-u', `cd ${c.dir}`, 'Enter');
    await tmux('send-keys', '-t', 'b', 'baton apply -f stack-f', 'Tab');
    await eventually(async () => expect(await screen('b')).toMatch(/\$ baton apply -f stack-file\.yaml$/m), 10_000);
  });

  it('completes in a real zsh: a node name and a flag choice', async () => {
    await shell('z', ['/usr/bin/zsh', '-f']);
    await tmux('send-keys', '-t', 'z', "PS1='%% '; autoload -Uz compinit && compinit -u -d $HOME/.zcompdump; source <(baton completion zsh)", 'Enter');
    await eventually(async () => expect(await screen('z')).toMatch(/^%$/m), 10_000);
    await tmux('send-keys', '-t', 'z', 'baton node insp', 'Tab');
    await eventually(async () => expect(await screen('z')).toMatch(/% baton node inspect$/m), 10_000);
    await tmux('send-keys', '-t', 'z', '', 'Tab');
    await eventually(async () => expect(await screen('z')).toMatch(/% baton node inspect n2$/m), 10_000);
    await tmux('send-keys', '-t', 'z', 'C-u', 'baton -o ya', 'Tab');
    await eventually(async () => expect(await screen('z')).toMatch(/% baton -o yaml$/m), 10_000);
  });
});
