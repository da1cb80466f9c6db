import { describe, expect, it } from 'vitest';
import { TURN_BUDGET_MS, WorkQueue } from '../src/base/workqueue.js';

/** busy keeps the thread busy for ms, as a reconcile over a synchronous store does. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

describe('WorkQueue', () => {
  it('processes each key once, and a key added while it runs once more afterwards', async () => {
    const seen: string[] = [];
    let q!: WorkQueue;
    q = new WorkQueue(async (key) => {
      seen.push(key);
      if (key === 'a' && seen.length === 1) q.add('a');
      await Promise.resolve();
    }, { name: 'test' });
    q.add('a');
    q.add('b');
    q.add('b');
    await q.idle();
    expect(seen).toEqual(['a', 'b', 'a']);
  });

  it('lets the event loop turn between keys once a turn has run past its budget', async () => {
    const order: string[] = [];
    const q = new WorkQueue(async (key) => {
      busy(TURN_BUDGET_MS / 2);
      order.push(key);
    }, { name: 'test' });
    // A timer due at once: it runs at the next turn that reaches the timers phase.
    const timer = new Promise<void>((resolve) => setTimeout(() => {
      order.push('timer');
      resolve();
    }, 0));
    for (let i = 0; i < 20; i++) q.add(`k${i}`);
    await Promise.all([q.idle(), timer]);
    expect(order.filter((x) => x !== 'timer')).toEqual(Array.from({ length: 20 }, (_, i) => `k${i}`));
    // Twenty keys of half a budget each take ten budgets: without turns between keys the timer would come last.
    const at = order.indexOf('timer');
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThan(10);
  });
});
