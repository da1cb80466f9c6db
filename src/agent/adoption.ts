/**
 * Adoption is how an agent takes over from the run before it: it finds this
 * node's containers by label and re-attaches to them (their ports stay
 * reserved), and, only after its first full sync with the server, removes
 * the containers no task wants (only this cluster's and this node's).
 */
import type { Logger } from 'pino';
import type { Driver } from './driver.js';
import type { LogCollector } from './logs.js';
import type { PortAllocator } from './ports.js';
import { LABEL_CONTAINER, LABEL_PORTS, LABEL_TASK, parsePorts, type AgentState, type TaskLocal } from './state.js';

export interface AdoptionOptions {
  driver: Driver;
  state: AgentState;
  ports: PortAllocator;
  log: Logger;
  collector: () => LogCollector | undefined;
}

export class Adoption {
  private cleaned = false;

  constructor(private readonly opts: AdoptionOptions) {}

  /** adopt finds this node's containers from a previous run and re-attaches to them. */
  async adopt(): Promise<void> {
    const { driver, state, ports, log } = this.opts;
    if (!state.engineOk) return;
    const found = await driver.list(state.labelsFilter());
    const adopted = new Set<TaskLocal>();
    for (const c of found) {
      const name = c.labels[LABEL_TASK];
      if (!name) continue;
      let local = state.locals.get(name);
      if (!local || !adopted.has(local)) state.locals.set(name, (local = { crashes: 0, restarts: [], restartCount: 0 }));
      adopted.add(local);
      const container = c.labels[LABEL_CONTAINER];
      if (container) {
        // One of its other containers (a sidecar, an init container): its ports are the main container's.
        local.pod ??= { containers: new Map(), initDone: false };
        local.pod.containers.set(container, { handle: c.handle, state: 'waiting', crashes: 0, restarts: [], restartCount: 0 });
        continue;
      }
      const bound = parsePorts(c.labels[LABEL_PORTS]);
      ports.reserve(bound.map((p) => p.hostPort));
      local.handle = c.handle;
      local.ports = bound;
    }
    // A task whose main container was made has had its init containers run.
    for (const local of adopted) if (local.pod) local.pod.initDone = local.handle !== undefined;
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
