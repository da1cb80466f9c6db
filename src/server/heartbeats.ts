/**
 * Heartbeats keeps node liveness in server memory. A heartbeat is an API call,
 * never a store write: Kubernetes learned (the Efficient Node Heartbeat KEP)
 * that status writes from every node every few seconds load the store for
 * nothing. The node-lifecycle controller writes Node status only when the
 * state derived from these beats changes.
 */
import type { Clock } from '../base/clock.js';

export interface Beat {
  at: number;
  engineOk: boolean;
  engineVersion: string;
  engineError?: string;
  /** The interval the agent says it beats at now: NotReady is judged against it. */
  intervalMs: number;
  /** Named volumes the node reports (sorted), when it reports them. */
  volumes?: string[];
}

export class Heartbeats {
  private beats = new Map<string, Beat>();
  private listeners = new Set<(node: string) => void>();
  readonly startedAt: number;

  constructor(private readonly clock: Clock) {
    this.startedAt = clock.now();
  }

  beat(node: string, engine: { ok: boolean; version: string; error?: string }, intervalMs: number, volumes?: string[]): void {
    const prev = this.beats.get(node);
    const vols = volumes ?? prev?.volumes;
    this.beats.set(node, { at: this.clock.now(), engineOk: engine.ok, engineVersion: engine.version, engineError: engine.error, intervalMs, ...(vols ? { volumes: vols } : {}) });
    // Wake the lifecycle controller only when something it derives could change.
    if (!prev || prev.engineOk !== engine.ok || String(prev.volumes) !== String(vols)) for (const l of this.listeners) l(node);
  }

  get size(): number {
    return this.beats.size;
  }

  get(node: string): Beat | undefined {
    return this.beats.get(node);
  }

  forget(node: string): void {
    this.beats.delete(node);
  }

  onDidChange(fn: (node: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
