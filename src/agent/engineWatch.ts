/**
 * EngineWatch follows the container engine for the agent: it probes it on
 * its own beat (so a slow or hung engine never delays a heartbeat) and keeps
 * one event stream open on it, filtered to this node's containers.
 *
 * An engine that dies (kill -9 of dockerd) takes with it the calls in
 * flight, the creates and starts half done, the event stream and the
 * containers themselves (a restarted dockerd finds them exited), and says
 * nothing of it afterwards. So:
 *
 * - when a probe finds the engine unreachable, every call in flight is cut
 *   short (`Driver.interrupt`): its answer may never come, and a worker
 *   waiting on it holds its task (the work queue never hands a key to two
 *   workers), so the task would never be driven again;
 * - when a probe finds it answering again, or a broken event stream is open
 *   again, `onResync` asks for every task the agent owns to be reconciled:
 *   the engine's state is read afresh rather than trusted from events that
 *   were never sent.
 */
import type { Logger } from 'pino';
import { sleep } from '../base/clock.js';
import type { Driver, DriverEvent, EngineInfo } from './driver.js';
import { clip } from './status.js';

export interface EngineWatchOptions {
  driver: Driver;
  log: Logger;
  /** The labels of the containers this agent owns (the event stream's filter). */
  labels: () => Record<string, string>;
  /** How often the engine is probed (the agent's heartbeat interval, which the server may stretch). */
  intervalMs: () => number;
  /** How long after a broken event stream it is opened again (default 1 s). */
  reopenMs?: number;
  onEvent: (e: DriverEvent) => void;
  /** The engine may have changed behind the agent's back: reconcile everything. */
  onResync: () => void;
  /** After each probe that found the engine answering (the agent lists its volumes). */
  onAnswer?: () => Promise<void>;
}

export class EngineWatch {
  /** The last probe's verdict (false until the first). */
  ok = false;
  version = '';
  error?: string;
  private readonly abort = new AbortController();
  private running = false;
  private stream?: { stop?: () => void };
  private reopenTimer?: NodeJS.Timeout;
  private loop?: Promise<void>;

  constructor(private readonly opts: EngineWatchOptions) {}

  /** probe asks the engine once; a change of verdict is logged and, once started, acted on. */
  async probe(): Promise<EngineInfo> {
    const info = await this.opts.driver.ping();
    const was = this.ok;
    this.ok = info.ok;
    this.version = info.version;
    // Reported with heartbeats: cut to what a report may carry.
    this.error = info.error === undefined ? undefined : clip(info.error);
    if (was !== info.ok) {
      this.opts.log[info.ok ? 'info' : 'warn']({ engine: info.version, err: info.error }, info.ok ? 'container engine is reachable' : 'container engine is unreachable');
      if (!info.ok) this.opts.driver.interrupt?.();
      else if (this.running) {
        // Back from an outage: the stream it had is dead or stale, and the tasks' containers may be exited, half made or gone.
        this.subscribe(false);
        this.opts.onResync();
      }
    }
    if (info.ok) await this.opts.onAnswer?.();
    return info;
  }

  /** start opens the event stream and probes every intervalMs until stop(). */
  start(): void {
    this.running = true;
    this.subscribe(false);
    this.loop = (async () => {
      const signal = this.abort.signal;
      while (!signal.aborted) {
        await sleep(this.opts.intervalMs(), signal);
        if (signal.aborted) return;
        await this.probe();
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.abort.abort();
    clearTimeout(this.reopenTimer);
    this.stream?.stop?.();
    this.stream = undefined;
    await this.loop;
  }

  /** subscribe (re)opens the event stream; with `resync`, the tasks are reconciled once it is open (events were missed while it was closed). */
  private subscribe(resync: boolean): void {
    clearTimeout(this.reopenTimer);
    this.stream?.stop?.();
    // The callbacks may come before events() returns: they know their stream by this object, not by its stop function.
    const sub: { stop?: () => void } = {};
    this.stream = sub;
    sub.stop = this.opts.driver.events(
      this.opts.labels(),
      (e) => this.opts.onEvent(e),
      (err) => {
        if (!this.running || this.stream !== sub) return;
        this.opts.log.debug({ err: err.message }, 'engine event stream broke; reopening it');
        this.stream = undefined;
        this.reopenTimer = setTimeout(() => {
          if (this.running && !this.stream) this.subscribe(true);
        }, this.opts.reopenMs ?? 1000);
        this.reopenTimer.unref();
      },
      () => {
        if (resync && this.running && this.stream === sub) this.opts.onResync();
      },
    );
  }
}
