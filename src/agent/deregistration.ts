/**
 * Deregistration: a task with ports that is told to stop keeps running until
 * no node's routing mesh sends it new connections. The kernel path (nftables
 * DNAT) cannot retry a refused connect, and a userspace proxy on another node
 * may lag too, so a task that stops while any node still routes to it fails
 * requests; Kubernetes leaves that race to a preStop sleep.
 *
 * The two halves meet on the server (`MeshRevisions`), like Envoy's xDS
 * acknowledgements:
 *
 * - `MeshReporter` tells the server the Endpoints revision this node's mesh
 *   has applied (routes and kernel rules in effect), as soon as it grows, one
 *   request at a time and at most one per status flush interval (which the
 *   server stretches as the cluster grows);
 * - `Deregistration` holds a stopping task until this node's mesh no longer
 *   routes to it, which names the Endpoints revision R that removed it, then
 *   asks the server to answer once every Ready node's mesh has applied R,
 *   all within `timeoutMs` of the stop being asked (then the task stops
 *   anyway: a node that never answers must not keep it alive).
 *
 * Nothing here depends on how the mesh routes (host ports today, network
 * namespaces later): only on its applied revision.
 */
import type { Logger } from 'pino';
import type { ApiClient } from '../api/client.js';
import type { EndpointsApplied } from '../api/types.js';
import { backoffDelay } from '../base/backoff.js';
import { sleep, type Clock } from '../base/clock.js';

/** What deregistration needs of a routing mesh (agent/mesh.ts). */
export interface MeshView {
  routesTo(service: string, task: string): boolean;
  readonly changeRevision: number;
  readonly appliedRevision: number;
  onDidApply(fn: (revision: number) => void): () => void;
}

const RETRY = { initialMs: 100, maxMs: 2000 };
/** The longest one wait the server holds (its schema's limit); a longer hold asks again. */
const MAX_WAIT_MS = 60_000;

/** MeshReporter posts this node's applied Endpoints revision to the server whenever it grows. */
export class MeshReporter {
  private sent = 0;
  private want = 0;
  private running = false;
  private lastAt = -Infinity;
  private readonly unsub: () => void;

  constructor(
    private readonly o: {
      client: ApiClient;
      node: string;
      mesh: MeshView;
      /** The least time between two reports (the agent's status flush interval). */
      minIntervalMs: () => number;
      signal: AbortSignal;
      log: Logger;
    },
  ) {
    this.unsub = o.mesh.onDidApply((r) => this.report(r));
    o.signal.addEventListener('abort', () => this.unsub(), { once: true });
    this.report(o.mesh.appliedRevision);
  }

  private report(revision: number): void {
    if (revision <= this.want) return;
    this.want = revision;
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    let failures = 0;
    const { client, node, signal, log } = this.o;
    while (this.want > this.sent && !signal.aborted) {
      // The first change after a quiet spell goes at once; a burst of them costs one report per interval.
      const pause = this.lastAt + this.o.minIntervalMs() - performance.now();
      if (pause > 0) await sleep(pause, signal);
      const revision = this.want;
      this.lastAt = performance.now();
      try {
        await client.call('POST', `/api/v1/nodes/${encodeURIComponent(node)}/mesh`, { endpointsRevision: String(revision) });
        this.sent = revision;
        failures = 0;
      } catch (e) {
        failures++;
        if (failures === 1 || failures % 10 === 0) log.debug({ err: String(e), revision }, 'could not report the mesh revision; retrying');
        await sleep(backoffDelay(RETRY, failures), signal);
      }
    }
    this.running = false;
  }
}

interface Hold {
  /** When the stop signal goes anyway. */
  deadline: number;
  /** The Endpoints revision that removed the task, once this node's mesh no longer routes to it. */
  revision?: number;
  confirmed: boolean;
  asking: boolean;
  /** Nodes the server last named as not there yet. */
  pending: string[];
}

/** Deregistration decides how long each stopping task keeps running; `wake` re-runs the task's reconcile when that changes. */
export class Deregistration {
  private readonly holds = new Map<string, Hold>();
  private readonly unsub: () => void;

  constructor(
    private readonly o: {
      client: ApiClient;
      mesh: MeshView;
      clock: Clock;
      /** The longest a task is held after it was told to stop. */
      timeoutMs: number;
      wake: (task: string) => void;
      signal: AbortSignal;
      log: Logger;
    },
  ) {
    // Each change this node's mesh puts in effect may be the one that removed a held task.
    this.unsub = o.mesh.onDidApply(() => {
      for (const [task, h] of this.holds) if (h.revision === undefined) o.wake(task);
    });
    o.signal.addEventListener('abort', () => this.unsub(), { once: true });
  }

  /**
   * remainingMs: how long `task` of `service` should keep running before its
   * stop signal; 0 means stop it now. The first call starts the clock. The
   * task is woken when the answer may have changed, and should be asked
   * again at the latest after the time returned.
   */
  remainingMs(task: string, service: string): number {
    const now = this.o.clock.now();
    let h = this.holds.get(task);
    if (!h) this.holds.set(task, (h = { deadline: now + this.o.timeoutMs, confirmed: false, asking: false, pending: [] }));
    if (h.confirmed) return 0;
    if (now >= h.deadline) {
      // Connections some node still sends it may be refused: worth a line in the log.
      this.o.log.warn(
        { task, revision: h.revision, pending: h.pending.length ? h.pending : undefined, afterMs: this.o.timeoutMs },
        h.revision === undefined ? "stopping a task this node's mesh still routes to: its endpoint was not removed in time" : 'stopping a task before every node confirmed that its endpoint is gone',
      );
      h.confirmed = true;
      return 0;
    }
    if (h.revision === undefined) {
      if (this.o.mesh.routesTo(service, task)) return h.deadline - now;
      h.revision = this.o.mesh.changeRevision;
    }
    if (!h.asking) void this.ask(task, h);
    return h.deadline - now;
  }

  /** forget drops a task's hold (it stopped, or is gone). */
  forget(task: string): void {
    this.holds.delete(task);
  }

  /** ask waits on the server until every Ready node's mesh has applied the task's removal, or the deadline. */
  private async ask(task: string, h: Hold): Promise<void> {
    h.asking = true;
    let failures = 0;
    const { client, clock, signal } = this.o;
    while (!h.confirmed && !signal.aborted && this.holds.get(task) === h) {
      const left = h.deadline - clock.now();
      if (left <= 0) break;
      try {
        const res = await client.raw('GET', `/api/v1/endpoints/-/applied?revision=${h.revision}&timeoutMs=${Math.min(MAX_WAIT_MS, Math.ceil(left))}`, undefined, signal);
        const a = (await res.json()) as Partial<EndpointsApplied>;
        h.pending = Array.isArray(a.pending) ? a.pending.map(String) : [];
        if (a.applied === true) h.confirmed = true;
      } catch (e) {
        if (signal.aborted) break;
        failures++;
        this.o.log.debug({ task, err: String(e) }, 'could not ask whether every node applied the endpoint removal; retrying');
        await sleep(Math.min(backoffDelay(RETRY, failures), Math.max(0, h.deadline - clock.now())), signal);
      }
    }
    h.asking = false;
    if (this.holds.get(task) === h) this.o.wake(task);
  }
}
