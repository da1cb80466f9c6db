/**
 * `baton exec [-i] [-t] TASK|SERVICE [-c CONTAINER] -- CMD...`: a command in
 * a running task's container, through the server and the node's agent (one
 * WebSocket per hop, base/execProtocol.ts). With -t the terminal goes raw
 * (Ctrl-C, arrows and the like reach the command as bytes) and follows
 * window resizes; with -i standard input is sent, and its end closes the
 * command's. `baton` exits with the command's exit code.
 *
 * A SERVICE names its running task of the lowest slot (kubectl exec
 * deploy/NAME picks one pod likewise).
 */
import type { Command } from 'commander';
import { ApiClient } from '../api/client.js';
import { serviceKind, taskKind } from '../api/kinds.js';
import type { Task } from '../api/types.js';
import { BatonError, isBatonError, type ErrorCode } from '../base/errors.js';
import { CH_STATUS, CH_STDERR, CH_STDOUT, closeFrame, EXEC_SUBPROTOCOL, execSearch, frame, CH_STDIN, parseFrame, resizeFrame, toBuffer } from '../base/execProtocol.js';
import { clientFor, type Globals } from './common.js';

/** resolveTask: the task NAME is, or the running task of service NAME with the lowest slot. */
async function resolveTask(api: ApiClient, name: string): Promise<string> {
  try {
    return (await api.get<Task>(taskKind, name)).metadata.name;
  } catch (e) {
    if (!isBatonError(e) || e.code !== 'BATON_ERR_NOT_FOUND') throw e;
  }
  try {
    await api.get(serviceKind, name);
  } catch (e) {
    if (isBatonError(e) && e.code === 'BATON_ERR_NOT_FOUND') throw new BatonError('BATON_ERR_NOT_FOUND', `no task or service named "${name}" (baton ps lists tasks)`);
    throw e;
  }
  const tasks = (await api.tasks({ fieldSelector: { 'spec.serviceName': name } })).items.filter((t) => t.spec.desiredState === 'running');
  const running = tasks.filter((t) => t.status.state === 'running').sort((a, b) => a.spec.slot - b.spec.slot);
  if (running[0]) return running[0].metadata.name;
  const states = tasks.map((t) => `${t.metadata.name} ${t.status.state}${t.spec.nodeName ? ` on ${t.spec.nodeName}` : ''}${t.status.message && t.status.message !== t.status.state ? ` (${t.status.message})` : ''}`);
  throw new BatonError('BATON_ERR_CONFLICT', `service ${name} has no running task${states.length ? `: ${states.join('; ')}` : ' (it has no task)'}`);
}

/**
 * refusal reads the server's answer to an upgrade it refused: its catalogue
 * error, else its status. The answer to an upgrade may leave the connection
 * open without saying its length: the body counts as read once it parses.
 */
function refusal(res: import('node:http').IncomingMessage): Promise<BatonError> {
  return new Promise((resolve) => {
    let body = '';
    const fallback = () => resolve(new BatonError('BATON_ERR_INTERNAL', `the server answered ${res.statusCode} to the exec request`));
    const timer = setTimeout(fallback, 5000);
    const tryParse = () => {
      try {
        const e = (JSON.parse(body) as { error?: { code?: string; message?: string } }).error;
        if (!e?.message) return false;
        clearTimeout(timer);
        resolve(new BatonError((e.code ?? 'BATON_ERR_INTERNAL') as ErrorCode, e.message));
        return true;
      } catch {
        return false;
      }
    };
    res.on('data', (c: Buffer) => {
      if (body.length < 65_536) body += c.toString();
      tryParse();
    });
    res.on('end', () => {
      if (!tryParse()) {
        clearTimeout(timer);
        fallback();
      }
    });
  });
}

interface ExecFlags {
  stdin?: boolean;
  tty?: boolean;
  container?: string;
}

/** runExec connects, copies both ways, and resolves with the command's exit code. */
async function runExec(g: Globals, target: string, command: string[], o: ExecFlags): Promise<number> {
  const { api, target: t, close } = clientFor(g);
  let task: string;
  try {
    task = await resolveTask(api, target);
  } finally {
    await close();
  }
  const tty = !!o.tty;
  const stdin = !!o.stdin;
  const servers = t.server.split(',').map((s) => s.trim().replace(/\/+$/, ''));
  const query = execSearch({ command, tty, stdin, ...(o.container ? { container: o.container } : {}) });
  let lastError: Error | undefined;
  for (const server of servers) {
    const url = `${server.replace(/^http/, 'ws')}/api/v1/tasks/${encodeURIComponent(task)}/exec?${query}`;
    const r = await session(url, t.token, t.ca, tty, stdin).catch((e: Error) => e);
    if (typeof r === 'number') return r;
    // Another server may answer when this one cannot be reached at all; a refusal is the cluster's answer.
    if (isBatonError(r) || !/ECONNREFUSED|EHOSTUNREACH|ETIMEDOUT|ENOTFOUND|socket hang up/.test(r.message)) throw r;
    lastError = r;
  }
  throw lastError ?? new BatonError('BATON_ERR_BAD_REQUEST', 'no server to exec through');
}

/** session runs one exec over a WebSocket (ws is loaded here, not at every CLI start). */
async function session(url: string, token: string, ca: string | undefined, tty: boolean, stdin: boolean): Promise<number> {
  const { WebSocket } = await import('ws');
  return new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(url, EXEC_SUBPROTOCOL, { headers: { authorization: `Bearer ${token}` }, ...(ca ? { ca } : {}), maxPayload: 1 << 20, handshakeTimeout: 30_000 });
    let status: number | undefined;
    let failure: Error | undefined;
    let opened = false;
    const raw = tty && process.stdin.isTTY;
    const restore = () => {
      if (raw) process.stdin.setRawMode(false);
      process.stdin.pause();
      process.stdout.off('resize', onResize);
    };
    const onResize = () => {
      if (ws.readyState === WebSocket.OPEN && process.stdout.columns) ws.send(resizeFrame(process.stdout.columns, process.stdout.rows));
    };
    // A refusal before the upgrade is the server's answer: its catalogue error, read whole, is what baton says.
    let refused = false;
    ws.on('unexpected-response', (req, res) => {
      refused = true;
      void refusal(res).then((e) => {
        reject(e);
        res.destroy();
        req.destroy();
        ws.terminate();
      });
    });
    ws.on('open', () => {
      opened = true;
      if (tty && process.stdout.isTTY) {
        onResize();
        process.stdout.on('resize', onResize);
      }
      if (stdin) {
        if (raw) process.stdin.setRawMode(true);
        process.stdin.on('data', (d: Buffer) => ws.readyState === WebSocket.OPEN && ws.send(frame(CH_STDIN, d)));
        process.stdin.on('end', () => ws.readyState === WebSocket.OPEN && ws.send(closeFrame()));
        process.stdin.resume();
      }
    });
    ws.on('message', (d: Buffer | ArrayBuffer | Buffer[]) => {
      const f = parseFrame(toBuffer(d));
      if (!f) return;
      if (f.channel === CH_STDOUT) process.stdout.write(f.data);
      else if (f.channel === CH_STDERR) process.stderr.write(f.data);
      else if (f.channel === CH_STATUS) {
        if ('exitCode' in f.status) status = f.status.exitCode < 0 ? 1 : f.status.exitCode;
        else failure = new BatonError('BATON_ERR_CONFLICT', f.status.error);
      }
    });
    ws.on('error', (e) => {
      if (refused) return;
      if (!opened) reject(e);
      else failure ??= e;
    });
    ws.on('close', () => {
      restore();
      if (!opened) return;
      if (failure) reject(failure);
      else if (status === undefined) reject(new BatonError('BATON_ERR_UNAVAILABLE', 'the connection closed before the command ended; it may still run in the task'));
      else resolve(status);
    });
    // Without a TTY, Ctrl-C stops baton (the command is left to end with its input); with one, it is a byte for the command.
    if (!raw) process.once('SIGINT', () => ws.close(1000));
  });
}

export function registerExec(program: Command): void {
  program
    .command('exec <target> [command...]')
    .description('run a command in a running task (TARGET: a task, or a service: its running task of the lowest slot), e.g. baton exec -it web -- sh')
    .option('-i, --stdin', 'send standard input to the command')
    .option('-t, --tty', 'give the command a terminal (raw mode, window size, Ctrl-C reaches it)')
    .option('-c, --container <name>', "one of a pod's containers (default: the main one)")
    .action(async (target: string, command: string[], o: ExecFlags, cmd: Command) => {
      if (!command.length) throw new BatonError('BATON_ERR_BAD_REQUEST', 'say what to run after --: baton exec TARGET -- CMD [ARGS...]');
      const code = await runExec(cmd.optsWithGlobals() as Globals, target, command, o);
      // Standard input may still hold the process open: leave once what was written is out.
      await new Promise<void>((r) => (process.stdout.writableNeedDrain ? process.stdout.once('drain', () => r()) : r()));
      process.exit(code);
    });
}
