/**
 * StatusReporter turns what the agent sees of its tasks into status reports
 * and task events, buffers them, and sends them in batches: one request per
 * flush, buffered while the server is away. A report that says nothing new
 * is not sent.
 */
import type { Logger } from 'pino';
import type { ApiClient, NewEventBody } from '../api/client.js';
import { taskKind } from '../api/kinds.js';
import { REPORT_TEXT_MAX } from '../api/schemas.js';
import { isPod, type Task, type TaskState, type TaskStatus } from '../api/types.js';
import { sleep, type Clock } from '../base/clock.js';
import type { BatonError } from '../base/errors.js';
import { stableStringify } from '../base/json.js';
import { podStatuses } from './pod.js';
import type { TaskLocal } from './state.js';

/** A flush carries at most this many statuses and events (the server takes up to 1000 events a request). */
const MAX_STATUSES_PER_FLUSH = 500;
const MAX_EVENTS_PER_FLUSH = 1000;

/** Status fields an agent does not own or that change without news: never a reason to report. */
const NOT_REPORTED = new Set(['timestamp', 'scheduling', 'pendingReason']);

/** sameReport: status a says what b says (fields an agent reports; undefined counts as absent). Called for every task event, so no serialising. */
function sameReport(a: TaskStatus | undefined, b: TaskStatus): boolean {
  if (!a) return false;
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    if (NOT_REPORTED.has(k) || x[k] === undefined) continue;
    n++;
    const u = x[k];
    const v = y[k];
    if (u !== v && (typeof u !== 'object' || typeof v !== 'object' || u === null || v === null || stableStringify(u) !== stableStringify(v))) return false;
  }
  for (const k in y) if (!NOT_REPORTED.has(k) && y[k] !== undefined) n--;
  return n === 0;
}

/** clip cuts a text to what a report may carry, marking the cut. */
export function clip(text: string): string {
  return text.length <= REPORT_TEXT_MAX ? text : `${text.slice(0, REPORT_TEXT_MAX - 14)} … (truncated)`;
}

export interface StatusReporterOptions {
  node: string;
  /** The address tasks are reported at (hostIP). */
  address: string;
  client: () => ApiClient;
  clock: Clock;
  log: Logger;
  /** How often pending status changes are sent (the server may ask for less often). */
  statusFlushMs?: number;
}

export class StatusReporter {
  private readonly pendingStatus = new Map<string, { name: string; uid: string; status: TaskStatus }>();
  private readonly pendingEvents: NewEventBody[] = [];
  private flushMs: number;
  /** When the last flush began (clock ms). */
  private lastFlush = -Infinity;
  /** Ends the loop's wait: a report arrived (idle), or an urgent one did (a task changed state or turned ready). */
  private wake?: () => void;
  /** A report waiting to be sent changes a task's state or readiness: what the server's next step waits for. */
  private urgent = false;

  constructor(private readonly opts: StatusReporterOptions) {
    this.flushMs = opts.statusFlushMs ?? 200;
  }

  /** report records the task's status (and the event its change of state makes), to be sent at the next flush. */
  report(task: Task, local: TaskLocal, state: TaskState, message: string, extra: Partial<TaskStatus> = {}): void {
    const { node, clock } = this.opts;
    const prev = local.status ?? task.status;
    const status: TaskStatus = {
      state,
      message,
      ports: local.ports ?? [],
      hostIP: this.opts.address,
      ...(local.taskIP ? { taskIP: local.taskIP } : {}),
      restartCount: local.restartCount,
      ...(local.handle ? { containerId: local.handle.id, handle: JSON.stringify(local.handle) } : {}),
      ...(prev.startedAt ? { startedAt: prev.startedAt } : {}),
      // The last exit code stays visible while a restarted task runs.
      ...(local.restartCount > 0 && prev.exitCode !== undefined ? { exitCode: prev.exitCode } : {}),
      // (The scheduler's decision belongs to the server, which keeps it: never echoed back.)
      ...extra,
      ...(isPod(task.spec) ? { containers: podStatuses(task, local, state, extra) } : {}),
      timestamp: prev.state === state ? prev.timestamp : new Date(clock.now()).toISOString(),
    };
    // The server refuses a report past its bounds: an engine's long error text is cut here, not lost with the report.
    status.message = clip(status.message);
    if (status.error !== undefined) status.error = clip(status.error);
    for (const c of status.containers ?? []) if (c.message !== undefined) c.message = clip(c.message);
    if (sameReport(local.status, status) || (sameReport(task.status, status) && !this.pendingStatus.has(task.metadata.name))) {
      local.status = status;
      return;
    }
    local.status = status;
    this.pendingStatus.set(task.metadata.name, { name: task.metadata.name, uid: task.metadata.uid, status });
    if (prev.state !== state || (status.readyAt !== undefined && prev.readyAt === undefined)) this.urgent = true;
    this.wake?.();
    if (prev.state === state) return;
    const event = (type: 'Normal' | 'Warning', reason: string, text: string) =>
      this.pendingEvents.push({ type, reason, message: text, kind: 'Task', name: task.metadata.name, uid: task.metadata.uid, node, service: task.spec.serviceName, source: `agent/${node}` });
    const n = task.metadata.name;
    if (state === 'running') {
      if (local.restartCount > 0) event('Normal', 'TaskRestarted', `${n} restarted on ${node} (restart ${local.restartCount})`);
      else event('Normal', 'TaskStarted', `${n} started on ${node}`);
    } else if (state === 'rejected' || state === 'failed' || (state === 'starting' && extra.exitCode !== undefined)) {
      event('Warning', state === 'rejected' ? 'TaskRejected' : state === 'failed' ? 'TaskFailed' : 'TaskCrashed', `${n}: ${extra.error ?? message}`);
    }
  }

  /** pending: whether a report of this task waits to be sent. */
  pending(name: string): boolean {
    return this.pendingStatus.has(name);
  }

  /** flushInterval: how often reports go now (the server may have stretched it). */
  get flushInterval(): number {
    return this.flushMs;
  }

  /** advise takes the server's status flush interval (it grows with the cluster), never below our own setting. */
  advise(ms: number | undefined): void {
    if (typeof ms === 'number' && ms > 0) this.flushMs = Math.max(this.opts.statusFlushMs ?? 200, ms);
  }

  /**
   * loop sends what is buffered at most once per flush interval. While the
   * server has not stretched the interval (a small cluster), a report after
   * a quiet spell goes at once, and one that changes a task's state or
   * readiness (what a rollout's next step waits for) waits a quarter of the
   * interval at most, so the next step waits for no timer; in a large
   * cluster, where the server asks for less, every agent keeps its own phase
   * and their reports stay spread over the interval.
   */
  async loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const leading = this.flushMs <= (this.opts.statusFlushMs ?? 200);
      if (leading && this.pendingStatus.size === 0 && this.pendingEvents.length === 0) {
        // Nothing to send: sleep until a report arrives (no timer: an idle agent is not woken five times a second for nothing).
        await this.wait(undefined, signal);
        continue;
      }
      if (leading) {
        const since = this.opts.clock.now() - this.lastFlush;
        const gap = this.urgent ? this.flushMs / 4 : this.flushMs;
        if (since < gap) {
          // An urgent report arriving meanwhile shortens the wait.
          await this.wait(gap - since, signal);
          continue;
        }
      } else await sleep(this.flushMs, signal);
      if (signal.aborted) return;
      this.lastFlush = this.opts.clock.now();
      this.urgent = false;
      await this.flush().catch((e) => this.opts.log.debug({ err: String(e) }, 'status flush failed; will retry'));
    }
  }

  /** wait waits up to ms (with none, for as long as it takes), or until a report arrives. */
  private async wait(ms: number | undefined, signal: AbortSignal): Promise<void> {
    const ac = new AbortController();
    const stop = () => ac.abort();
    signal.addEventListener('abort', stop, { once: true });
    this.wake = stop;
    try {
      if (signal.aborted) return;
      if (ms !== undefined) await sleep(ms, ac.signal);
      else await new Promise<void>((resolve) => ac.signal.addEventListener('abort', () => resolve(), { once: true }));
    } finally {
      this.wake = undefined;
      signal.removeEventListener('abort', stop);
    }
  }

  /**
   * flush sends buffered statuses and events in one request (one connection:
   * two requests back to back make undici open a second one, and a thousand
   * agents doing so at once is a storm of TLS handshakes); anything not
   * accepted stays buffered unless its task is gone.
   */
  async flush(): Promise<void> {
    if (this.pendingStatus.size === 0 && this.pendingEvents.length === 0) return;
    const events = this.pendingEvents.splice(0, MAX_EVENTS_PER_FLUSH);
    const items = [...this.pendingStatus.values()].slice(0, MAX_STATUSES_PER_FLUSH);
    let res: Awaited<ReturnType<ApiClient['updateStatus']>>;
    try {
      res = await this.opts.client().updateStatus(taskKind, items, events);
    } catch (e) {
      // A report the server finds malformed will never be accepted: retrying it would only hold back every later one.
      if ((e as BatonError).code === 'BATON_ERR_VALIDATION' || (e as BatonError).code === 'BATON_ERR_BAD_REQUEST') {
        for (const sent of items) if (this.pendingStatus.get(sent.name) === sent) this.pendingStatus.delete(sent.name);
        this.opts.log.error({ err: (e as BatonError).message, details: (e as BatonError).details }, 'the server refused a status report as malformed; dropped it');
        return;
      }
      // Kept for the next flush (the newest, if the server was away long enough for many to pile up).
      this.pendingEvents.unshift(...events.slice(-500));
      throw e;
    }
    res.items.forEach((r, i) => {
      const sent = items[i]!;
      // Drop it if accepted, or if the task is gone/replaced; keep it if a newer one was queued meanwhile.
      if (this.pendingStatus.get(sent.name) === sent) this.pendingStatus.delete(sent.name);
      if (!r.ok && r.error?.code !== 'BATON_ERR_NOT_FOUND' && r.error?.code !== 'BATON_ERR_CONFLICT') this.opts.log.warn({ task: sent.name, err: r.error?.message }, 'status rejected');
    });
  }
}
