/**
 * The agent's end of `baton exec`: one WebSocket from the server (mutual
 * TLS, the server's certificate only: listener.ts) joined to one command
 * attached in the task's container (the driver's ExecSession), in the
 * channel framing of base/execProtocol.ts.
 *
 * The command's output goes out as it comes, paused while the socket's
 * buffer is over a bound (the person's terminal is slow, or the network
 * is): a command that writes without end cannot grow the agent's memory.
 * The status frame is the last message; the socket closes after it. A
 * socket that closes first (the person went away) detaches the command: a
 * TTY's command gets SIGHUP, as a closed ssh session's would.
 */
import type { WebSocket } from 'ws';
import type { ExecSession } from './driver.js';
import { CH_CLOSE, CH_RESIZE, CH_STDERR, CH_STDIN, CH_STDOUT, frame, holdWhileQueued, parseFrame, statusFrame, toBuffer } from '../base/execProtocol.js';

export function bridgeExec(socket: WebSocket, session: ExecSession, onEnd: (exitCode: number | undefined) => void, early: Buffer[] = []): void {
  let closed = false;
  const pump = (stream: NodeJS.ReadableStream & { pause(): void; resume(): void }, channel: number) => {
    stream.on('data', (chunk: Buffer) => {
      if (closed) return;
      socket.send(frame(channel, chunk));
      holdWhileQueued(socket, stream, () => closed);
    });
  };
  pump(session.stdout, CH_STDOUT);
  if (session.stderr) pump(session.stderr, CH_STDERR);
  const onMessage = (msg: Buffer) => {
    const f = parseFrame(msg);
    if (!f) return;
    if (f.channel === CH_STDIN) session.write(f.data);
    else if (f.channel === CH_RESIZE) void session.resize(f.cols, f.rows);
    else if (f.channel === CH_CLOSE) session.endInput();
  };
  for (const m of early) onMessage(m);
  socket.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => onMessage(toBuffer(data)));
  socket.on('close', () => {
    if (closed) return;
    closed = true;
    session.close();
    onEnd(undefined);
  });
  socket.on('error', () => socket.terminate());
  void session.wait().then(async (exitCode) => {
    // What the command wrote before it exited goes out before its status.
    await Promise.all([ended(session.stdout), session.stderr ? ended(session.stderr) : undefined]);
    if (closed) return;
    closed = true;
    socket.send(statusFrame({ exitCode: Math.max(-1, Math.min(255, exitCode)) }), () => socket.close(1000));
    onEnd(exitCode);
  });
}

function ended(s: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve) => {
    if ((s as { readableEnded?: boolean }).readableEnded) return resolve();
    s.once('end', resolve);
    s.once('close', resolve);
    setTimeout(resolve, 2000).unref();
  });
}
