/**
 * A task's output as the Docker engine streams it, turned into the log
 * store's records `<time> <o|e> <text>\n`: the engine frames each message
 * with an 8-byte header (unless the container has a TTY, when there is one
 * stream of raw lines), and its json-file follower replays lines after a
 * rotation, which are dropped here so that a resumed or rotated stream never
 * hands the collector a record twice.
 */
import type Docker from 'dockerode';
import { nanoTime } from '../logs.js';
import { statusOf, type DockerEngine } from './engine.js';

/**
 * followLogs streams container c's output after the time `after` ('' for all of it) to onRecords until the
 * container's output ends or signal aborts; a container that is gone has nothing to follow.
 */
export async function followLogs(
  engine: DockerEngine,
  c: Docker.Container,
  after: string,
  onRecords: (records: string, lastTime: string) => void,
  signal: AbortSignal,
): Promise<void> {
  let tty = false;
  try {
    tty = Boolean((await engine.request('inspect', (abortSignal) => c.inspect({ abortSignal }))).Config?.Tty);
  } catch (err) {
    if (statusOf(err) === 404) return;
    throw engine.toDriverError(err);
  }
  const opts: Record<string, unknown> = { follow: true, stdout: true, stderr: true, timestamps: true, abortSignal: signal };
  if (after) opts.since = unixSince(after);
  let stream: NodeJS.ReadableStream;
  try {
    if (signal.aborted) return;
    stream = (await c.logs(opts as unknown as Docker.ContainerLogsOptions & { follow: true })) as NodeJS.ReadableStream;
  } catch (err) {
    if (signal.aborted || statusOf(err) === 404) return;
    throw engine.toDriverError(err);
  }
  // Aborted while the stream was being opened: its abort listener below would never fire.
  if (signal.aborted) {
    (stream as unknown as { destroy?: () => void }).destroy?.();
    return;
  }
  const demux = new LogDemuxer(tty, after, onRecords);
  await new Promise<void>((resolve, reject) => {
    const finish = () => {
      demux.end();
      resolve();
    };
    stream.on('data', (b: Buffer) => demux.push(b));
    stream.on('end', finish);
    stream.on('close', finish);
    stream.on('error', (e: Error) => (signal.aborted ? finish() : reject(e)));
    signal.addEventListener('abort', () => {
      (stream as unknown as { destroy?: () => void }).destroy?.();
      finish();
    }, { once: true });
  });
}

/** unixSince turns an RFC 3339 time with nanoseconds into the engine's `since` form (seconds.nanoseconds). */
function unixSince(t: string): string {
  const m = /^(.{19})(?:\.(\d{1,9}))?Z$/.exec(t);
  if (!m) return String(Math.floor(Date.parse(t) / 1000));
  return `${Math.floor(Date.parse(m[1] + 'Z') / 1000)}.${(m[2] ?? '').padEnd(9, '0')}`;
}

/**
 * LogDemuxer turns the engine's log stream (8-byte frame headers per
 * message unless the container has a TTY; `timestamps=true` puts the time
 * first) into records `<time> <o|e> <text>\n`, leaving out any at or before
 * `after` (a resumed stream starts at the last time it had).
 */
class LogDemuxer {
  private pending: Buffer | undefined;
  private ttyCarry = '';
  /**
   * The last record passed on, per stream: the engine's json-file follower
   * replays lines after a rotation, so within a stream time never goes
   * back. (Across streams it may: each pipe is timestamped as it is read.)
   */
  private readonly last: Record<string, { time: string; text: string }>;
  private maxTime: string;

  constructor(
    private readonly tty: boolean,
    after: string,
    private readonly onRecords: (records: string, lastTime: string) => void,
  ) {
    this.last = { o: { time: after, text: '' }, e: { time: after, text: '' } };
    this.maxTime = after;
  }

  push(chunk: Buffer): void {
    let out = '';
    const add = (payload: string, stream: string) => {
      const sp = payload.indexOf(' ');
      if (sp < 0) return;
      let time = payload.slice(0, sp);
      if (time.length !== 30) time = nanoTime(time);
      const text = payload.slice(sp + 1);
      // Older than what this stream had: a replay. The same time: a replay only if it is the same line.
      const last = this.last[stream]!;
      if (time < last.time || (time === last.time && (last.text === '' || text === last.text))) return;
      out += `${time} ${stream} ${text}`;
      if (!text.endsWith('\n')) out += '\n';
      last.time = time;
      last.text = text;
      if (time > this.maxTime) this.maxTime = time;
    };
    if (this.tty) {
      const text = this.ttyCarry + chunk.toString('utf8');
      const end = text.lastIndexOf('\n');
      this.ttyCarry = text.slice(end + 1);
      for (const line of text.slice(0, end + 1).split('\n')) if (line) add(line.replace(/\r$/, '') + '\n', 'o');
    } else {
      let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
      let i = 0;
      while (buf.length - i >= 8) {
        const len = buf.readUInt32BE(i + 4);
        if (buf.length - i - 8 < len) break;
        add(buf.toString('utf8', i + 8, i + 8 + len), buf[i] === 2 ? 'e' : 'o');
        i += 8 + len;
      }
      this.pending = i < buf.length ? buf.subarray(i) : undefined;
    }
    if (out) this.onRecords(out, this.maxTime);
  }

  end(): void {
    if (this.tty && this.ttyCarry) {
      const line = this.ttyCarry;
      this.ttyCarry = '';
      this.push(Buffer.from(line + '\n'));
    }
  }
}
