/**
 * A command run inside a task's container (exec health checks): its stdout
 * and stderr are kept together and cut to a bound, as the engine's own
 * health checks keep them, and a command that outlives its timeout is left
 * behind with what it had written so far.
 */
import { PassThrough, Writable, type Duplex } from 'node:stream';
import type Docker from 'dockerode';
import type { ExecResult, ExecSession } from '../driver.js';
import type { DockerEngine } from './engine.js';

/** How much of an exec health check's output is kept (Docker keeps 4 KiB too). */
const EXEC_OUTPUT_BYTES = 4096;

/** execIn runs cmd in container c and returns its exit code and output; -1 when it timed out or the engine could not say. */
export async function execIn(engine: DockerEngine, c: Docker.Container, cmd: string[], timeoutMs: number): Promise<ExecResult> {
  let ex: Docker.Exec;
  try {
    ex = await engine.request('exec', (abortSignal) => c.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, abortSignal } as Docker.ExecCreateOptions));
  } catch (err) {
    throw engine.toDriverError(err);
  }
  const stream = await engine.request('exec start', (abortSignal) => ex.start({ hijack: true, stdin: false, abortSignal } as Docker.ExecStartOptions));
  const chunks: Buffer[] = [];
  let size = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (size < EXEC_OUTPUT_BYTES) chunks.push(chunk.subarray(0, EXEC_OUTPUT_BYTES - size));
      size += chunk.length;
      done();
    },
  });
  engine.docker.modem.demuxStream(stream, sink, sink);
  const finished = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    const end = () => {
      clearTimeout(timer);
      resolve(true);
    };
    stream.once('end', end);
    stream.once('close', end);
    stream.once('error', end);
  });
  const output = Buffer.concat(chunks).toString('utf8');
  if (!finished) {
    stream.destroy();
    return { exitCode: -1, output: `timed out after ${timeoutMs} ms${output ? `: ${output}` : ''}` };
  }
  const info = await engine.request('exec inspect', (abortSignal) => ex.inspect({ abortSignal })).catch(() => undefined);
  return { exitCode: typeof info?.ExitCode === 'number' ? info.ExitCode : -1, output };
}

/**
 * execAttach starts cmd in container c for a person (`baton exec`): stdin
 * when asked, a TTY when asked (one output stream, resizable), else stdout
 * and stderr apart. The session ends when the command exits; its exit code
 * is read from the engine then.
 */
export async function execAttach(engine: DockerEngine, c: Docker.Container, o: { cmd: string[]; tty: boolean; stdin: boolean }): Promise<ExecSession> {
  let ex: Docker.Exec;
  try {
    ex = await engine.request('exec', (abortSignal) => c.exec({ Cmd: o.cmd, AttachStdin: o.stdin, AttachStdout: true, AttachStderr: true, Tty: o.tty, abortSignal } as Docker.ExecCreateOptions));
  } catch (err) {
    throw engine.toDriverError(err);
  }
  let stream: Duplex;
  try {
    stream = (await engine.request('exec start', (abortSignal) => ex.start({ hijack: true, stdin: o.stdin, Tty: o.tty, abortSignal } as Docker.ExecStartOptions))) as Duplex;
  } catch (err) {
    throw engine.toDriverError(err);
  }
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  if (o.tty) stream.pipe(stdout);
  else {
    engine.docker.modem.demuxStream(stream, stdout, stderr);
    stream.once('end', () => {
      stdout.end();
      stderr.end();
    });
  }
  const ended = new Promise<void>((resolve) => {
    stream.once('end', resolve);
    stream.once('close', resolve);
    stream.once('error', () => resolve());
  });
  return {
    stdout,
    stderr: o.tty ? undefined : stderr,
    write: (data) => void (o.stdin && stream.writable && stream.write(data)),
    endInput: () => {
      // A hijacked connection is half-closed: the command reads EOF and may still write.
      if (o.stdin && stream.writable) stream.end();
    },
    resize: async (cols, rows) => {
      if (o.tty) await engine.request('exec resize', (abortSignal) => ex.resize({ h: rows, w: cols, abortSignal } as never)).catch(() => undefined);
    },
    wait: async () => {
      await ended;
      // The engine sets the exit code as the stream ends: ask a few times until it says the command stopped.
      for (let i = 0; i < 20; i++) {
        const info = await engine.request('exec inspect', (abortSignal) => ex.inspect({ abortSignal })).catch(() => undefined);
        if (info && !info.Running) return typeof info.ExitCode === 'number' ? info.ExitCode : -1;
        await new Promise((r) => setTimeout(r, 50));
      }
      return -1;
    },
    close: () => stream.destroy(),
  };
}
