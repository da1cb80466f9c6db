/**
 * The record of the leaders' writes: every fenced txn puts its writer's term
 * to LEADER_WRITES (server/election.ts), so the history of that one key says
 * whose writes landed, in order. Read through a watch from a revision, up to
 * the store's revision when asked.
 */
import { LEADER_WRITES } from '../../src/server/election.js';
import type { Store } from '../../src/store/store.js';

/** history: every put of `key` after revision `after`, in order. */
export async function history(store: Store, key: string, after: number): Promise<{ value: string; revision: number }[]> {
  const out: { value: string; revision: number }[] = [];
  const now = await store.currentRevision();
  await new Promise<void>((resolve, reject) => {
    const w = store.watch(key, after, {
      onBatch: (b) => {
        for (const e of b.events) if (e.kv.key === key && e.type === 'put') out.push({ value: e.kv.value, revision: e.kv.modRevision });
        if (b.revision >= now) {
          w.close();
          resolve();
        }
      },
      onError: reject,
    });
    w.requestProgress();
  });
  return out;
}

/** termsSince: the term of every fenced write after revision `after`, in order. */
export async function termsSince(store: Store, after: number): Promise<{ term: number; revision: number }[]> {
  return (await history(store, LEADER_WRITES, after)).map((h) => ({ term: (JSON.parse(h.value) as { term: number }).term, revision: h.revision }));
}
