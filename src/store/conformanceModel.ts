/**
 * The model-based property of the Store conformance suite: random txns and
 * compactions against a Map model, every retained revision read back (in
 * pages), and a watch from the compact revision replayed onto the state
 * there. Relative to the store's revision at the start of each run, so it
 * holds on a backend that other runs (or cases) have written to before.
 * Imported only by tests.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { byteOrder, caughtUp, record, type Time } from './conformanceKit.js';
import { StoreCompactedError, compareHolds, type Compare, type KeyValue, type Op, type Store } from './store.js';

/** checkAgainstModelProperty runs the property: each run on a store of its own from `open`. */
export async function checkAgainstModelProperty(open: () => Promise<Store>, time: Time): Promise<void> {
  await fc.assert(
    fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 30 }), async (commands) => {
      const s = await open();
      try {
        await checkAgainstModel(s, commands, time);
      } finally {
        await s.close();
      }
    }),
    { numRuns: 60 },
  );
}

const KEYS = ['a', 'a/1', 'a/2', 'a/b/1', 'a0', 'b', 'b/1', 'é', '😀', '\uFFFD'];
const PREFIXES = ['', 'a', 'a/', 'b/', 'z'];
const keyArb = fc.constantFrom(...KEYS);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant('put' as const), key: keyArb, value: fc.string({ maxLength: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('delete' as const), key: keyArb }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('deletePrefix' as const), prefix: fc.constantFrom(...PREFIXES) }) },
);
const compareArb: fc.Arbitrary<Compare> = fc.oneof(
  fc.record({ key: keyArb, target: fc.constantFrom('mod' as const, 'create' as const, 'version' as const), op: fc.constantFrom('=' as const, '!=' as const, '<' as const, '>' as const), value: fc.nat(12) }),
  fc.record({ key: keyArb, target: fc.constant('value' as const), op: fc.constantFrom('=' as const, '!=' as const, '<' as const, '>' as const), value: fc.string({ maxLength: 2 }) }),
);
type Command =
  | { kind: 'txn'; compares: Compare[]; success: Op[]; failure: Op[] }
  | { kind: 'compact'; fraction: number };
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('txn' as const), compares: fc.array(compareArb, { maxLength: 2 }), success: fc.array(opArb, { minLength: 1, maxLength: 4 }), failure: fc.array(opArb, { maxLength: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }) },
);

/** invalidBranch mirrors etcd's rule: no key put twice, and none both put and deleted. */
function invalidBranch(ops: Op[]): boolean {
  const puts = ops.filter((o) => o.type === 'put').map((o) => o.key);
  if (new Set(puts).size !== puts.length) return true;
  return ops.some((o) => (o.type === 'delete' ? puts.includes(o.key) : o.type === 'deletePrefix' && puts.some((k) => k.startsWith(o.prefix))));
}

const sortedValues = (m: Map<string, KeyValue>, prefix = '') =>
  [...m.values()].filter((kv) => kv.key.startsWith(prefix)).sort((a, b) => byteOrder(a.key, b.key));

/** checkAgainstModel applies commands to the store and to a Map, and checks they agree throughout. */
async function checkAgainstModel(s: Store, commands: Command[], time: Time): Promise<void> {
  const start = await s.currentRevision();
  const model = new Map<string, KeyValue>();
  /** The model's state after each revision (the store's keys were none at the start). */
  const states = new Map<number, Map<string, KeyValue>>([[start, new Map()]]);
  let rev = start;
  let compacted = await s.compactRevision();
  for (const cmd of commands) {
    if (cmd.kind === 'compact') {
      const lo = Math.max(compacted, start);
      const target = lo + Math.floor(cmd.fraction * (rev - lo));
      if (target > compacted) {
        await s.compact(target);
        compacted = target;
      }
      continue;
    }
    if (invalidBranch(cmd.success) || invalidBranch(cmd.failure)) {
      await expect(s.txn(cmd.compares, cmd.success, cmd.failure)).rejects.toMatchObject({ code: 'duplicate_key' });
      continue;
    }
    const result = await s.txn(cmd.compares, cmd.success, cmd.failure);
    const succeeded = cmd.compares.every((c) => compareHolds(c, model.get(c.key)));
    expect(result.succeeded).toBe(succeeded);
    const next = new Map(model);
    let changed = false;
    for (const op of succeeded ? cmd.success : cmd.failure) {
      if (op.type === 'put') {
        const prev = next.get(op.key);
        next.set(op.key, {
          key: op.key,
          value: op.value,
          createRevision: prev?.createRevision ?? result.revision,
          modRevision: result.revision,
          version: (prev?.version ?? 0) + 1,
          lease: 0,
        });
        changed = true;
      } else {
        for (const key of [...next.keys()]) {
          if (op.type === 'delete' ? key === op.key : key.startsWith(op.prefix)) changed = next.delete(key) || changed;
        }
      }
    }
    if (changed) {
      expect(result.revision).toBeGreaterThan(rev);
      rev = result.revision;
      model.clear();
      for (const [k, v] of next) model.set(k, v);
      states.set(rev, next);
    } else {
      expect(result.revision).toBe(rev);
    }
  }

  expect(await s.currentRevision()).toBe(rev);
  for (const key of KEYS) expect(await s.get(key)).toEqual(model.get(key));
  for (const prefix of PREFIXES) expect((await s.range(prefix)).kvs).toEqual(sortedValues(model, prefix));

  // Every retained revision reads as the model did then (revisions read side by side; each one's pages in order).
  await Promise.all(
    [...states].map(async ([r, state]) => {
      if (r === 0) return; // atRevision 0 means "current", as in etcd
      if (r < compacted) {
        await expect(s.range('', { atRevision: r })).rejects.toBeInstanceOf(StoreCompactedError);
        return;
      }
      const paged: KeyValue[] = [];
      let cont: string | undefined;
      do {
        const page = await s.range('', { atRevision: r, limit: 2, continue: cont });
        expect(page.revision).toBe(r);
        paged.push(...page.kvs);
        cont = page.continue;
      } while (cont);
      expect(paged).toEqual(sortedValues(state));
    }),
  );

  // A watch from the compact revision (or the start, if this run compacted nothing), applied to the state there, replays to the final state.
  const from = Math.max(compacted, start);
  const base = [...states.entries()].filter(([r]) => r <= from).pop()![1];
  const replayed = new Map(base);
  const w = record(s, '', from);
  await caughtUp(time, w, rev);
  w.close();
  expect(w.errors).toEqual([]);
  let last = from;
  for (const b of w.eventBatches()) {
    expect(b.revision).toBeGreaterThan(last);
    for (const e of b.events) {
      expect(e.kv.modRevision).toBeGreaterThan(from);
      expect(e.kv.modRevision).toBeLessThanOrEqual(b.revision);
      if (e.prevKv) expect(e.prevKv).toEqual(replayed.get(e.kv.key));
      if (e.type === 'put') replayed.set(e.kv.key, e.kv);
      else {
        expect(replayed.has(e.kv.key)).toBe(true);
        replayed.delete(e.kv.key);
      }
    }
    last = b.revision;
  }
  expect(sortedValues(replayed)).toEqual(sortedValues(model));
}
