/** JSON helpers shared by every layer. */

/** stableStringify is JSON with sorted keys, so equal specs compare equal regardless of key order. */
export function stableStringify(v: unknown): string {
  if (v === undefined) return 'null';
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableStringify(o[k])}`)
    .join(',')}}`;
}

/**
 * withProps is `{ ...o, ...extra }` (own enumerable properties, `extra`'s
 * last), copied property by property. Objects a process keeps many of (the
 * watch caches' metadata and status of every task) are made with it on hot
 * paths: on Node 20's V8, an object spread at a site that sees many shapes
 * could give each copy a hidden class of its own (a heap snapshot at 20,000
 * tasks held 75,000 such maps, docs/scale.md), while copies made by adding
 * properties in order share one through V8's transition tree.
 */
export function withProps<T extends object, E extends object>(o: T, extra: E): Omit<T, keyof E> & E {
  const r: Record<string, unknown> = {};
  for (const k in o) if (Object.hasOwn(o, k)) put(r, k, (o as Record<string, unknown>)[k]);
  for (const k in extra) if (Object.hasOwn(extra, k)) put(r, k, (extra as Record<string, unknown>)[k]);
  return r as Omit<T, keyof E> & E;
}

/** put sets an own data property, as a spread does: a key "__proto__" (JSON.parse makes one) is a property, never the prototype. */
function put(r: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(r, k, { value: v, enumerable: true, writable: true, configurable: true });
  else r[k] = v;
}
