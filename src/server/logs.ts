/**
 * LogRouter answers `GET /services/<s>/logs` and `GET /tasks/<t>/logs` by
 * calling the agents' listeners (mutual TLS, the server's client
 * certificate) and merging their streams into one response in time order
 * (base/lineMerge.ts: each agent merges its tasks, the server its agents),
 * each line `<task>@<node> <time> <o|e> <text>`, as `docker service logs`
 * prefixes its lines. Agents keep logs past their containers, so a removed
 * task's logs are still there; a service's logs are asked of every node
 * with a listener (a node that never ran the service answers nothing), and
 * a follower also reads nodes that join while it follows. A node that cannot
 * be read is reported in the stream as a line of task `-` on stderr.
 */
import { Agent as Dispatcher } from 'undici';
import { createSecureContext } from 'node:tls';
import type { ServerResponse } from 'node:http';
import { writeOrWait } from '../base/stream.js';
import { keyAt, lineTime, LineMerger } from '../base/lineMerge.js';
import type { Logger } from 'pino';
import { BatonError } from '../base/errors.js';
import type { Node, Task } from '../api/types.js';
import type { WatchCache } from './watchCache.js';

export interface LogRequest {
  follow: boolean;
  /** false: each node's lines as they come (grouped by task), not merged in time order. */
  merge?: boolean;
  tail?: number;
  /** RFC 3339 (absolute). */
  since?: string;
  grep?: string;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** parseSince reads `--since`: a duration ago (10m, 1h30m, 90s) or an RFC 3339 time; returns RFC 3339. */
export function parseSince(s: string, now: number): string {
  const v = s.trim();
  if (/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(v)) {
    let ms = 0;
    for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * UNITS[m[2]!]!;
    // A duration longer than all time reaches back to the epoch (a Date cannot hold less).
    return new Date(Math.max(0, now - ms)).toISOString();
  }
  if (/^\d{4}-\d\d-\d\d/.test(v) && !Number.isNaN(Date.parse(v))) return new Date(Date.parse(v)).toISOString();
  throw new BatonError('BATON_ERR_BAD_REQUEST', `since: "${s}" is neither a duration (10m, 1h30m) nor a time (2026-01-02T15:04:05Z)`);
}

/** copyInto writes a source's chunks into res, waiting while res is full, until it ends or the signal aborts. */
async function copyInto(res: ServerResponse, source: AsyncIterable<string>, signal: AbortSignal): Promise<void> {
  for await (const chunk of source) {
    const w = writeOrWait(res, chunk);
    if (w) await w;
    if (signal.aborted) return;
  }
}

export class LogRouter {
  private readonly dispatcher: Dispatcher;

  constructor(
    tls: { caPem: string; certPem: string; keyPem: string },
    private readonly nodes: WatchCache,
    private readonly tasks: WatchCache,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    const secureContext = createSecureContext({ ca: tls.caPem, cert: tls.certPem, key: tls.keyPem });
    this.dispatcher = new Dispatcher({ connect: { secureContext }, keepAliveTimeout: 10_000 });
  }

  /** nodesFor: the nodes to ask, with the listener to call. */
  private nodesFor(target: { service: string } | { task: string }): Node[] {
    const withListener = (n: Node | undefined): n is Node => !!n && !!n.status.agentPort && n.status.state !== 'down';
    if ('task' in target) {
      // A pod container's logs go by `<task>~<container>` (agent/pod.ts).
      const t = this.tasks.objects.get(target.task.split('~')[0]!) as unknown as Task | undefined;
      const n = t?.spec.nodeName ? (this.nodes.objects.get(t.spec.nodeName) as unknown as Node | undefined) : undefined;
      if (t && withListener(n)) return [n];
    }
    return [...this.nodes.objects.values()].map((n) => n as unknown as Node).filter(withListener);
  }

  /**
   * serve streams the logs into res until done (or, following, until the
   * client goes): merged in time order across the nodes (each agent merges
   * its own tasks), or with `merge: false` node by node as they come.
   */
  async serve(target: { service: string } | { task: string }, q: LogRequest, res: ServerResponse): Promise<void> {
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    // The answer starts now, also for a quiet service that a follower waits on.
    res.flushHeaders();
    const started = new Date(this.now()).toISOString();
    const merge = q.merge !== false;
    const merger = merge ? new LineMerger({ key: lineTime, follow: q.follow, now: this.now, signal: abort.signal }) : undefined;
    /** Unmerged: each source copied into res as it comes. */
    const copying: Promise<void>[] = [];
    const add = (source: AsyncIterable<string>) => {
      if (merger) merger.add(source);
      else copying.push(copyInto(res, source, abort.signal));
    };
    try {
      if (!q.follow) {
        if (merger) {
          for (const n of this.nodesFor(target)) add(this.fromNode(n, target, q, abort.signal));
          await copyInto(res, merger.lines(), abort.signal);
        } else for (const n of this.nodesFor(target)) await copyInto(res, this.fromNode(n, target, q, abort.signal), abort.signal);
        return;
      }
      const reading = new Set<string>();
      const follow = (n: Node, since: string | undefined) => {
        const key = `${n.metadata.name}@${n.status.address}:${n.status.agentPort}`;
        if (reading.has(key)) return;
        reading.add(key);
        add(this.followNode(n, target, { ...q, since }, abort.signal, () => reading.delete(key)));
      };
      for (const n of this.nodesFor(target)) follow(n, q.since);
      // Nodes that join (or come back) while we follow: their lines from the moment we started.
      const unsub = this.nodes.onDidChange((ev) => {
        const n = ev.object as unknown as Node | undefined;
        if (ev.type !== 'DELETED' && n?.status.agentPort && n.status.state === 'ready' && !abort.signal.aborted) follow(n, q.since ?? started);
      });
      if (merger) await copyInto(res, merger.lines(), abort.signal);
      await new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve(), { once: true }));
      unsub();
      await Promise.allSettled(copying);
    } finally {
      res.end();
    }
  }

  /** followNode reads a node until the client goes, reconnecting (from the last time it saw) when the agent restarts. */
  private async *followNode(n: Node, target: { service: string } | { task: string }, q: LogRequest, signal: AbortSignal, done: () => void): AsyncGenerator<string> {
    let since = q.since;
    let tail = q.tail;
    try {
      for (let attempt = 0; !signal.aborted; attempt++) {
        const seen: { last?: string } = {};
        yield* this.fromNode(n, target, { ...q, since, tail }, signal, attempt > 0, seen);
        if (seen.last) {
          since = seen.last;
          // Later reads pick up after the last line seen; the tail applied once.
          tail = undefined;
        }
        if (signal.aborted) return;
        const cur = this.nodes.objects.get(n.metadata.name) as unknown as Node | undefined;
        if (!cur || cur.status.state === 'down') return;
        n = cur;
        await new Promise((r) => setTimeout(r, Math.min(5000, 500 * (attempt + 1))).unref());
      }
    } finally {
      done();
    }
  }

  /**
   * fromNode yields one node's answer, whole lines at a time, and notes the
   * time of the last line in `seen`. `quiet` leaves out the error line (a
   * follower retrying).
   */
  private async *fromNode(n: Node, target: { service: string } | { task: string }, q: LogRequest, signal: AbortSignal, quiet = false, seen: { last?: string } = {}): AsyncGenerator<string> {
    const p = new URLSearchParams();
    if ('task' in target) p.set('task', target.task);
    else p.set('service', target.service);
    if (q.follow) p.set('follow', 'true');
    if (q.tail !== undefined) p.set('tail', String(q.tail));
    if (q.since) p.set('since', q.since);
    if (q.grep) p.set('grep', q.grep);
    if (q.merge === false) p.set('merge', 'false');
    const host = n.status.address.includes(':') ? `[${n.status.address}]` : n.status.address;
    let failed: string | undefined;
    try {
      const r = await this.dispatcher.request({ origin: `https://${host}:${n.status.agentPort}`, path: `/logs?${p}`, method: 'GET', signal, headersTimeout: 10_000, bodyTimeout: 0 });
      if (r.statusCode !== 200) {
        const body = (await r.body.json().catch(() => undefined)) as { error?: { message?: string } } | undefined;
        throw new Error(body?.error?.message ?? `HTTP ${r.statusCode}`);
      }
      let carry = '';
      for await (const chunk of r.body) {
        const text = carry + (chunk as Buffer).toString('utf8');
        const end = text.lastIndexOf('\n');
        if (end < 0) {
          carry = text;
          continue;
        }
        carry = text.slice(end + 1);
        const lines = text.slice(0, end + 1);
        // The time of the last line: after the first space of its last line.
        const ls = lines.lastIndexOf('\n', end - 1) + 1;
        seen.last = lineTime(lines.slice(ls)) || seen.last;
        yield lines;
        if (signal.aborted) break;
      }
    } catch (e) {
      if (signal.aborted) return;
      failed = (e as { code?: string; message?: string }).code ?? (e as Error).message;
      this.log.debug({ node: n.metadata.name, err: failed }, 'reading logs from a node failed');
    }
    if (failed !== undefined && !quiet) yield `-@${n.metadata.name} ${keyAt(this.now())} e cannot read logs from node ${n.metadata.name} (${n.status.address}:${n.status.agentPort}): ${failed}\n`;
  }

  async close(): Promise<void> {
    await this.dispatcher.close().catch(() => {});
  }
}
