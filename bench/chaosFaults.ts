/**
 * bench:chaos — fault injection: the fault kinds and their weights, the
 * seeded PRNG the faults are drawn from (the same seed replays the same
 * choices), and inject(), which does one fault and heals it (restart,
 * SIGCONT), saying when it struck and when it healed.
 */
import type { Cluster, Snapshot } from './chaosCluster.js';
import { log, now, oneLine, sleep } from './lib.js';

export const KINDS = ['server-kill', 'agent-kill', 'agent-stop', 'container-kill', 'dockerd-restart'] as const;
export type Kind = (typeof KINDS)[number];
/** How often each kind is drawn, relative to the others. */
export const WEIGHTS: Record<Kind, number> = { 'server-kill': 2, 'agent-kill': 2, 'agent-stop': 2, 'container-kill': 3, 'dockerd-restart': 1.5 };

/** mulberry32: a small 32-bit PRNG; the same seed gives the same sequence. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Rng: the draws a run makes (kind, target, durations), from one seed. */
export class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  float(): number {
    return this.next();
  }
  /** int: an integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  weighted<T extends string>(xs: readonly T[], w: Record<T, number>): T {
    const total = xs.reduce((s, x) => s + w[x], 0);
    let r = this.next() * total;
    for (const x of xs) if ((r -= w[x]) < 0) return x;
    return xs[xs.length - 1]!;
  }
  /** sample: n distinct items of xs (all when fewer). */
  sample<T>(xs: readonly T[], n: number): T[] {
    const pool = [...xs];
    const out: T[] = [];
    while (out.length < n && pool.length) out.push(pool.splice(Math.floor(this.next() * pool.length), 1)[0]!);
    return out;
  }
}

/** Injected: what a fault did, when it struck and when it was healed. */
export interface Injected {
  detail: string;
  injectedAt: number;
  healedAt: number;
}

/** inject does one fault of this kind (its target and durations drawn from rng; container-kill picks from snap's running containers) and heals it. */
export async function inject(c: Cluster, kind: Kind, rng: Rng, snap: Snapshot): Promise<Injected> {
  switch (kind) {
    case 'server-kill': {
      const downMs = rng.int(0, 3000);
      const t0 = now();
      await c.server.kill9();
      await sleep(downMs);
      await c.server.start([/baton server listening on/]);
      return { detail: `server pid killed, restarted after ${downMs} ms (new pid ${c.server.pid})`, injectedAt: t0, healedAt: now() };
    }
    case 'agent-kill': {
      const a = rng.pick(c.agents);
      const downMs = rng.int(0, 8000);
      const t0 = now();
      const old = a.pid;
      await a.kill9();
      await sleep(downMs);
      await a.start();
      c.awaitingStart.add(a);
      return { detail: `${a.what} (pid ${old}) killed, restarted after ${downMs} ms (new pid ${a.pid})`, injectedAt: t0, healedAt: now() };
    }
    case 'agent-stop': {
      const a = rng.pick(c.agents);
      const stopMs = rng.int(1000, 8000);
      const t0 = now();
      a.signal('SIGSTOP');
      await sleep(stopMs);
      a.signal('SIGCONT');
      return { detail: `${a.what} (pid ${a.pid}) stopped for ${stopMs} ms`, injectedAt: t0, healedAt: now() };
    }
    case 'container-kill': {
      const n = rng.int(1, 3);
      const candidates = snap.containers.filter((x) => !x.pause && x.state === 'running').sort((a, b) => a.name.localeCompare(b.name));
      const victims = rng.sample(candidates, n);
      const t0 = now();
      if (victims.length) {
        const r = await c.engine.docker(['kill', ...victims.map((v) => v.id)]);
        if (r.code !== 0) log(`warning: docker kill: ${oneLine(r.stderr)}`);
      }
      return { detail: `docker kill ${victims.map((v) => `${v.service}.${v.slot}@${v.node}`).join(', ') || '(no running container)'}`, injectedAt: t0, healedAt: now() };
    }
    case 'dockerd-restart': {
      const downMs = rng.int(0, 3000);
      const t0 = now();
      const old = c.engine.pid;
      await c.engine.kill9();
      await sleep(downMs);
      await c.engine.start();
      return { detail: `dockerd (pid ${old}) killed, started again after ${downMs} ms (new pid ${c.engine.pid})`, injectedAt: t0, healedAt: now() };
    }
  }
}
