/**
 * Long loops of awaits on work that completes at once (better-sqlite3 is
 * synchronous behind the Store's promises) run only microtasks: without a
 * yield, writing 100,000 tasks would keep every HTTP request, heartbeat and
 * watch waiting until the loop ends. Yielding on every step has the opposite
 * problem under load: each yield waits a whole turn of a busy event loop.
 * timeSlicer yields once per slice of busy time, so a long loop runs in
 * slices of `sliceMs` and the API answers within about one slice.
 */
export function timeSlicer(sliceMs: number): () => Promise<void> {
  let since = performance.now();
  return async () => {
    if (performance.now() - since < sliceMs) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    since = performance.now();
  };
}

/** When the current turn of the event loop began, as turnBusyMs first saw it; undefined until a turn is marked. */
let turnBegan: number | undefined;

/**
 * turnBusyMs: how long the current turn of the event loop has been running
 * (since the first call in it), across everything that runs in it: one
 * callback and every microtask it leads to. A work queue whose handlers
 * finish without real I/O (the store is synchronous behind its promises)
 * runs key after key in one turn; asked this after each key, it hands the
 * rest to the next turn once the turn is long enough, so HTTP requests,
 * heartbeats and watches are served in between (WorkQueue). A setImmediate
 * marks the turn's end: it runs only once the turn's microtasks are done.
 */
export function turnBusyMs(): number {
  const now = performance.now();
  if (turnBegan === undefined) {
    turnBegan = now;
    setImmediate(() => {
      turnBegan = undefined;
    });
  }
  return now - turnBegan;
}
