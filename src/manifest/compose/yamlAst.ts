/**
 * YAML helpers: following a key path through the parsed document (maps with
 * their merge keys, sequences, aliases) to the node and offset it names, so
 * that every issue gets its line; and Compose's own `!reset` and `!override`
 * tags.
 */

import { isAlias, isMap, isScalar, isSeq, visit, type Document, type Pair, type YAMLMap } from 'yaml';
import type { PathSegment } from '../interpolate.js';

function isMergeKey(key: unknown): boolean {
  return isScalar(key) && (typeof key.value === 'symbol' || key.value === '<<');
}

function deref(node: unknown, doc: Document): unknown {
  let n = node;
  for (let guard = 0; isAlias(n) && guard < 64; guard++) n = n.resolve(doc);
  return n;
}

function findPair(map: YAMLMap, key: string, doc: Document, depth = 0): Pair | undefined {
  for (const p of map.items) {
    if (!isMergeKey(p.key) && isScalar(p.key) && String(p.key.value) === key) return p as Pair;
  }
  if (depth > 16) return undefined;
  for (const p of map.items) {
    if (!isMergeKey(p.key)) continue;
    const v = deref(p.value, doc);
    const sources = isSeq(v) ? v.items.map((i) => deref(i, doc)) : [v];
    for (const s of sources) {
      if (!isMap(s)) continue;
      const found = findPair(s, key, doc, depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}

/** walkAst follows a key path through maps (merge keys included), sequences and aliases; returns the deepest offset and node reached. */
export function walkAst(doc: Document, segs: readonly PathSegment[]): { offset?: number; node?: unknown; complete: boolean } {
  let node: unknown = doc.contents;
  let offset = (node as { range?: number[] } | null)?.range?.[0];
  for (const seg of segs) {
    node = deref(node, doc);
    if (isMap(node)) {
      const pair = findPair(node, String(seg), doc);
      if (!pair) return { offset, complete: false };
      offset = (pair.key as { range?: number[] } | null)?.range?.[0] ?? (pair.value as { range?: number[] } | null)?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) return { offset, complete: false };
      offset = (item as { range?: number[] } | null)?.range?.[0] ?? offset;
      node = item;
    } else {
      return { offset, complete: false };
    }
  }
  return { offset, node: deref(node, doc), complete: true };
}

export const isEmptyDoc = (doc: Document): boolean => doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null);

/**
 * applyComposeTags gives Compose's own YAML tags their single-file meaning:
 * `!reset` removes the key (back to the default), `!override` is the value
 * itself. Without this the yaml library would read `!reset` as "".
 */
export function applyComposeTags(doc: Document): void {
  visit(doc, {
    Pair(_, pair) {
      const v = pair.value as { tag?: string } | null;
      if (v && v.tag === '!reset') return visit.REMOVE;
      return undefined;
    },
    Node(_, node) {
      if ((node as { tag?: string }).tag === '!reset') return visit.REMOVE;
      if ((node as { tag?: string }).tag === '!override') (node as { tag?: string }).tag = undefined;
      return undefined;
    },
  });
}
