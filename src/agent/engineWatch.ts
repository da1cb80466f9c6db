/**
 * EngineWatch follows the container engine: whether it answers (probed on
 * its own beat, so a hung engine never delays a heartbeat), its event stream
 * (filtered to this cluster's and node's containers; each event wakes the
 * task it names), adoption of containers a previous agent left, and the
 * sweep of containers no task wants (only after a sync with the server).
 */
import type { Logger } from 'pino';
import { sleep } from '../base/clock.js';
import type { WorkQueue } from '../base/workqueue.js';
import type { Driver } from './driver.js';
import type { LogCollector } from './logs.js';
import type { PortAllocator } from './ports.js';
import { LABEL_PORTS, LABEL_TASK, parsePorts, type AgentState } from './state.js';
import { clip } from './status.js';

export interface EngineWatchOptions {
  driver: Driver;
  state: AgentState;
  queue: WorkQueue;
  ports: PortAllocator;
  log: Logger;
  signal: AbortSignal;
  collector: () => LogCollector | undefined;
}

export class EngineWatch {
  /** The engine's version and, while it does not answer, why. */
  version = '';
  error?: string;
  /** Named volumes on this node's engine for this cluster (undefined until first listed). */
  volumes: string[] | undefined;
  private stopEvents?: () => void;
  private cleaned = false;

  constructor(private readonly opts: EngineWatchOptions) {}

  /** ping asks the engine; coming back from an outage, it follows events again and re-drives every task. */
  async ping(): Promise<void> {
    const { driver, state, log } = this.opts;
    const info = await driver.ping();
    const was = state.engineOk;
    state.engineOk = info.ok;
    this.version = info.version;
    this.error = info.error === undefined ? undefined : clip(info.error);
    // The node's named volumes, so the scheduler sends tasks back to the data they left.
    if (info.ok && state.clusterId) this.volumes = await driver.volumes(state.labelsFilter()).catch(() => this.volumes);
    if (was !== info.ok) {
      log[info.ok ? 'info' : 'warn']({ engine: info.version, err: info.error }, info.ok ? 'container engine is reachable' : 'container engine is unreachable');
      if (info.ok && state.nodeUid) {
        // Back from an outage: events may have been missed.
        this.startEvents();
        for (const name of state.taskNames()) this.opts.queue.add(name);
        this.sweepOnce();
      }
    }
  }

  /** loop probes the engine every intervalMs() (the heartbeat's interval). */
  async loop(intervalMs: () => number): Promise<void> {
    const { signal } = this.opts;
    while (!signal.aborted) {
      await sleep(intervalMs(), signal);
      if (signal.aborted) return;
      await this.ping();
    }
  }

  startEvents(): void {
    const { driver, state, queue, log, signal } = this.opts;
    this.stopEvents?.();
    this.stopEvents = driver.events(
      state.labelsFilter(),
      (e) => {
        const name = e.labels[LABEL_TASK];
        if (name) queue.add(name);
      },
      (err) => {
        if (signal.aborted) return;
        log.debug({ err: err.message }, 'engine event stream broke; reconnecting');
        this.stopEvents = undefined;
        setTimeout(() => {
          if (!signal.aborted && !this.stopEvents) {
            this.startEvents();
            for (const name of state.taskNames()) queue.add(name);
          }
        }, 1000).unref();
      },
    );
  }

  stop(): void {
    this.stopEvents?.();
  }

  /** adopt finds this node's containers from a previous run and re-attaches to them. */
  async adopt(): Promise<void> {
    const { driver, state, ports, log } = this.opts;
    if (!state.engineOk) return;
    const found = await driver.list(state.labelsFilter());
    for (const c of found) {
      const name = c.labels[LABEL_TASK];
      if (!name) continue;
      const bound = parsePorts(c.labels[LABEL_PORTS]);
      ports.reserve(bound.map((p) => p.hostPort));
      state.locals.set(name, { handle: c.handle, ports: bound, crashes: 0, restarts: [], restartCount: 0 });
    }
    if (found.length) log.info({ count: found.length }, 'adopted existing containers');
  }

  /** sweepOnce sweeps after the first sync; one that fails (engine gone mid-way) runs again when the engine is back. */
  sweepOnce(): void {
    const { state } = this.opts;
    if (this.cleaned || !state.informer?.synced || !state.engineOk) return;
    this.cleaned = true;
    this.sweep().catch((err) => {
      this.cleaned = false;
      this.opts.log.warn({ err: String(err) }, 'sweep of unwanted containers failed; will retry');
    });
  }

  /** sweep removes containers no task wants: only after a sync, only this cluster's and this node's. */
  private async sweep(): Promise<void> {
    const { driver, state, ports, log } = this.opts;
    if (!state.engineOk || !state.clusterId) return;
    const found = await driver.list(state.labelsFilter());
    for (const c of found) {
      const name = c.labels[LABEL_TASK];
      if (name && state.informer?.objects.has(name)) continue;
      log.info({ container: c.handle.name }, 'removing a container no task wants');
      if (name) await this.opts.collector()?.drain(name);
      await driver.destroy(c.handle).catch(() => {});
      ports.release(parsePorts(c.labels[LABEL_PORTS]).map((p) => p.hostPort));
      if (name) state.locals.delete(name);
    }
  }
}
