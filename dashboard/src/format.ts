/** Small formatting helpers shared by the pages. */

export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  if (n === 0) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

export function cpus(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  if (n === 0) return '0';
  if (n < 1) return `${Math.round(n * 1000)}m`;
  return `${Number(n.toFixed(2))}`;
}

export function rate(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n >= 100 ? `${Math.round(n)}/s` : `${Number(n.toFixed(1))}/s`;
}

/** age: how long ago an ISO time (or epoch ms) was, in the largest whole unit. */
export function age(t: string | number | undefined, now = Date.now()): string {
  if (t === undefined || t === '') return '-';
  const at = typeof t === 'number' ? t : Date.parse(t);
  if (!Number.isFinite(at)) return '-';
  const s = Math.max(0, Math.floor((now - at) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function clockTime(t: string | number | undefined): string {
  if (t === undefined) return '';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toLocaleTimeString(undefined, { hour12: false });
}

export function pct(used: number, total: number): number {
  if (!total || !Number.isFinite(used)) return 0;
  return Math.max(0, Math.min(100, (used / total) * 100));
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
