/**
 * yieldToEventLoop lets I/O run. A loop of awaits on work that completes at
 * once (better-sqlite3 is synchronous behind the Store's promises) runs only
 * microtasks: without this, writing 100,000 tasks would keep every HTTP
 * request, heartbeat and watch waiting until the loop ends.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
