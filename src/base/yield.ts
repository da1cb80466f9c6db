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
