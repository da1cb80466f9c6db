/**
 * Kubernetes quantities (`resources.requests.cpu: 250m`, `memory: 128Mi`):
 * a decimal number with an optional suffix, binary (Ki … Ei), decimal
 * (k, M … E, and m for thousandths) or an exponent (1e3).
 */

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
const QUANTITY = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei)|([numkMGTPE]?)|[eE]([+-]?\d+))$/;

/** parseQuantity reads a quantity as a number (cores, bytes); undefined when it is not one. */
export function parseQuantity(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = QUANTITY.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const out = m[2] ? n * BINARY[m[2]]! : m[4] !== undefined ? n * 10 ** Number(m[4]) : n * DECIMAL[m[3] ?? '']!;
  return Number.isFinite(out) && out >= 0 ? out : undefined;
}

/** cpuCores: a CPU quantity as cores, rounded to whole millicores (what Baton schedules in). */
export function cpuCores(v: unknown): number | undefined {
  const q = parseQuantity(v);
  return q === undefined ? undefined : Math.round(q * 1000) / 1000;
}

/** memoryBytes: a memory quantity as whole bytes. */
export function memoryBytes(v: unknown): number | undefined {
  const q = parseQuantity(v);
  return q === undefined ? undefined : Math.ceil(q);
}
