/**
 * A command run inside a task's container (exec health checks): its stdout
 * and stderr are kept together and cut to a bound, as the engine's own
 * health checks keep them, and a command that outlives its timeout is left
 * behind with what it had written so far.
 */
import { Writable } from 'node:stream';
import type Docker from 'dockerode';
import type { ExecResult } from '../driver.js';
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
