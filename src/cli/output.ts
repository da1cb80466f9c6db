/**
 * Output renders objects as docker-like tables, JSON or YAML (-o). Tables
 * pad columns with three spaces, as `docker service ls` does.
 */
import YAML from 'yaml';
import type { Column } from '../api/kinds.js';

export type Format = 'table' | 'json' | 'yaml';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function render<T>(format: Format, items: T[], columns: Column<T>[], raw: unknown = items): string {
  if (format === 'json') return JSON.stringify(raw, null, 2);
  if (format === 'yaml') return YAML.stringify(raw);
  return table(
    columns.map((c) => c.header),
    items.map((i) => columns.map((c) => c.get(i))),
  );
}

export function renderOne(format: Format, obj: unknown): string {
  if (format === 'yaml') return YAML.stringify(obj);
  return JSON.stringify(obj, null, 2);
}
