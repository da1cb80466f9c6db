/**
 * Output renders objects as docker-like tables, JSON or YAML (-o). Tables
 * pad columns with three spaces, as `docker service ls` does.
 */
import { yaml } from './yaml.js';
import { taskKind, type Column } from '../api/kinds.js';
import { podContainerNames, podContainerSpecs, type Task } from '../api/types.js';

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
  if (format === 'yaml') return yaml().stringify(raw);
  return table(
    columns.map((c) => c.header),
    items.map((i) => columns.map((c) => c.get(i))),
  );
}

export function renderOne(format: Format, obj: unknown): string {
  if (format === 'yaml') return yaml().stringify(obj);
  return JSON.stringify(obj, null, 2);
}

/**
 * taskTable renders tasks as `baton service ps` prints them: a task that
 * runs several containers (a pod) has a line for each below its own
 * (`\_ name`), with its state, readiness, restarts and last message, as
 * Docker prints a task's earlier attempts.
 */
export function taskTable(format: Format, items: Task[]): string {
  if (format !== 'table' || !items.some((t) => t.status.containers?.length)) return render(format, items, taskKind.columns);
  const cols = taskKind.columns;
  const rows: string[][] = [];
  for (const t of items) {
    rows.push(cols.map((c) => c.get(t)));
    const images = new Map(podContainerSpecs(t.spec).map(({ container }, i) => [podContainerNames(t.spec)[i], container.image]));
    for (const c of t.status.containers ?? []) {
      const cell: Record<string, string> = {
        NAME: ` \\_ ${c.name} (${c.role})`,
        IMAGE: images.get(c.name) ?? '',
        'CURRENT STATE': c.state === 'exited' ? `Exited (${c.exitCode ?? '?'})` : `${c.state[0]!.toUpperCase()}${c.state.slice(1)}`,
        HEALTH: c.ready === undefined ? '-' : c.ready ? 'ready' : 'not ready',
        RESTARTS: String(c.restartCount),
        ERROR: c.message ?? '',
      };
      rows.push(cols.map((col) => cell[col.header] ?? ''));
    }
  }
  return table(
    cols.map((c) => c.header),
    rows,
  );
}
