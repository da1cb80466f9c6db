/**
 * MeshRevisions keeps, in server memory, the Endpoints revision each node's
 * routing mesh has applied (its routes and kernel rules in effect), as the
 * agents report it — Envoy's xDS acknowledgements, per node — and answers a
 * stopping task's agent: has every Ready node's mesh applied revision R, the
 * one that removed the task's endpoint? A task that stops before then is
 * refused connections by the nodes still routing to it, and the kernel path
 * cannot retry elsewhere (agent/deregistration.ts).
 *
 * Like heartbeats, a report is never a store write. The nodes that count
 * are the Ready ones that run a mesh, known in this server's life from a
 * report or from an endpoints watch opened with the node's certificate
 * (simulated nodes run none, and never hold anything up); in the first
 * NotReady window after the server starts, while agents reconnect, every
 * Ready node counts.
 */
import type { Clock } from '../base/clock.js';
import type { EndpointsApplied, Node } from '../api/types.js';

/** The part of the nodes' watch cache read here. */
export interface NodeSource {
  readonly objects: ReadonlyMap<string, unknown>;
  onDidChange(fn: () => void): () => void;
}

interface Waiter {
  revision: number;
  pending: Set<string>;
  finish: () => void;
}

export class MeshRevisions {
  private readonly applied = new Map<string, number>();
  private readonly meshNodes = new Set<string>();
  private readonly waiters = new Set<Waiter>();
  private closed = false;
  private readonly graceEnds: number;
  private readonly cleanups: (() => void)[] = [];

  constructor(
    private readonly clock: Clock,
    private readonly nodes: NodeSource,
    /** How long after the server starts every Ready node counts (its agent may not have reported yet). */
    graceMs: number,
  ) {
    this.graceEnds = clock.now() + graceMs;
    this.cleanups.push(nodes.onDidChange(() => this.recheck()), clock.setTimeout(() => this.recheck(), graceMs));
  }

  /** report records that `node`'s mesh has applied every Endpoints change up to `revision`. */
  report(node: string, revision: number): void {
    this.meshNodes.add(node);
    if (revision <= (this.applied.get(node) ?? 0)) return;
    this.applied.set(node, revision);
    for (const w of this.waiters) {
      if (revision >= w.revision && w.pending.delete(node) && w.pending.size === 0) w.finish();
    }
  }

  /** watching records that `node` runs a mesh: it watches Endpoints with its own certificate. */
  watching(node: string): void {
    this.meshNodes.add(node);
  }

  /** appliedBy is `node`'s last reported revision (0: none). */
  appliedBy(node: string): number {
    return this.applied.get(node) ?? 0;
  }

  /** pending lists the nodes that count and have not applied `revision`. */
  pending(revision: number): string[] {
    const out: string[] = [];
    for (const name of this.nodes.objects.keys()) if (this.holdsUp(name, revision)) out.push(name);
    return out.sort();
  }

  /**
   * waitApplied answers once every node that counts has applied `revision`,
   * or after `timeoutMs` (or when `signal` aborts) with the nodes still
   * pending. Nodes that stop counting meanwhile (no longer Ready) are
   * dropped; nodes that start counting are not added (a node that joins or
   * comes back lists Endpoints afresh).
   */
  waitApplied(revision: number, timeoutMs: number, signal?: AbortSignal): Promise<EndpointsApplied> {
    const pending = new Set(this.pending(revision));
    const answer = (): EndpointsApplied => ({ revision: String(revision), applied: pending.size === 0, pending: [...pending].sort() });
    // A stopping server holds nothing: a wait asked for after close() would keep its HTTP close waiting up to a minute.
    if (pending.size === 0 || timeoutMs <= 0 || signal?.aborted || this.closed) return Promise.resolve(answer());
    return new Promise((resolve) => {
      const w: Waiter = {
        revision,
        pending,
        finish: () => {
          if (!this.waiters.delete(w)) return;
          cancel();
          signal?.removeEventListener('abort', w.finish);
          resolve(answer());
        },
      };
      const cancel = this.clock.setTimeout(w.finish, timeoutMs);
      signal?.addEventListener('abort', w.finish, { once: true });
      this.waiters.add(w);
    });
  }

  /** close answers every wait as it stands (the server is stopping). */
  close(): void {
    this.closed = true;
    for (const c of this.cleanups.splice(0)) c();
    for (const w of [...this.waiters]) w.finish();
  }

  /** holdsUp: `node` counts and has not applied `revision`. */
  private holdsUp(node: string, revision: number): boolean {
    const n = this.nodes.objects.get(node) as Node | undefined;
    if (n?.status.state !== 'ready') return false;
    if (!this.meshNodes.has(node) && this.clock.now() >= this.graceEnds) return false;
    return (this.applied.get(node) ?? 0) < revision;
  }

  /** recheck drops from every wait the nodes that stopped counting (not Ready any more, or the grace ended). */
  private recheck(): void {
    for (const w of [...this.waiters]) {
      for (const n of w.pending) if (!this.holdsUp(n, w.revision)) w.pending.delete(n);
      if (w.pending.size === 0) w.finish();
    }
  }
}
