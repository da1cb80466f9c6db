/**
 * `baton logs` and `baton top`: the CLI side of the server's log and usage
 * calls. Log lines arrive as `<task>@<node> <time> <o|e> <text>` and are
 * printed as `docker service logs` prints them (`task@node | text`),
 * stdout lines on stdout and stderr lines on stderr, a chunk at a time.
 */
import type { ApiClient } from '../api/client.js';
import { bytes, serviceKind } from '../api/kinds.js';
import type { LogQuery, Service } from '../api/types.js';
import { BatonError, isBatonError } from '../base/errors.js';
import { sleep } from '../base/clock.js';
import { table } from './output.js';
import { writeOrWait } from '../base/stream.js';

/** A task name: <service>.<slot>.<id>. */
const TASK_NAME = /^.+\.\d+\.[0-9a-z]+$/;

/** target decides whether a name is a service (also a removed one, whose logs outlive it) or a task. */
export async function logTarget(api: ApiClient, name: string): Promise<{ service: string } | { task: string }> {
  try {
    const svc = await api.get<Service>(serviceKind, name);
    if (svc.spec.schedule) {
      // A cron job: its latest run that has started a task (a run created a moment ago has no output yet; the one before has).
      const runs = (await api.list<Service>(serviceKind, { labelSelector: { 'baton.cron': name } })).items.sort((a, b) => a.metadata.creationTimestamp.localeCompare(b.metadata.creationTimestamp));
      if (!runs.length) throw new BatonError('BATON_ERR_NOT_FOUND', `cron job ${name} has not run yet (next at ${svc.status.cron?.nextScheduleTime ?? '?'})`);
      for (const run of runs.slice().reverse()) {
        const tasks = await api.tasks({ fieldSelector: { 'spec.serviceName': run.metadata.name } });
        if (tasks.items.some((t) => t.status.startedAt)) return { service: run.metadata.name };
      }
      return { service: runs.at(-1)!.metadata.name };
    }
    return { service: name };
  } catch (e) {
    if (!isBatonError(e) || e.code !== 'BATON_ERR_NOT_FOUND') throw e;
  }
  return TASK_NAME.test(name) ? { task: name } : { service: name };
}

function writeOut(stream: NodeJS.WriteStream, s: string): Promise<void> | undefined {
  return s ? writeOrWait(stream, s) : undefined;
}

export async function printLogs(api: ApiClient, name: string, q: LogQuery & { timestamps?: boolean }, signal?: AbortSignal): Promise<void> {
  const target = await logTarget(api, name);
  if (q.container !== undefined && 'service' in target) throw new BatonError('BATON_ERR_BAD_REQUEST', `-c names a container of one task, and ${name} is a service: pass one of its tasks (baton service ps ${name})`);
  const body = await api.logStream(target, q, signal);
  const decoder = new TextDecoder();
  let carry = '';
  for await (const chunk of body) {
    const text = carry + decoder.decode(chunk, { stream: true });
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      carry = text;
      continue;
    }
    carry = text.slice(end + 1);
    let out = '';
    let err = '';
    let start = 0;
    while (start <= end) {
      const nl = text.indexOf('\n', start);
      const a = text.indexOf(' ', start);
      const b = text.indexOf(' ', a + 1);
      const c = text.indexOf(' ', b + 1);
      if (a < 0 || c < 0 || c > nl) {
        start = nl + 1;
        continue;
      }
      // A pod container's lines come as <task>~<container>@<node>: shown as <task>/<container>@<node>.
      const who = text.slice(start, a).replace('~', '/');
      const line = text.slice(c + 1, nl + 1);
      if (who.startsWith('-@')) err += `baton: ${line}`;
      else if (text.charCodeAt(b + 1) === 101 /* e */) err += `${who}    | ${q.timestamps ? text.slice(a + 1, b) + ' ' : ''}${line}`;
      else out += `${who}    | ${q.timestamps ? text.slice(a + 1, b) + ' ' : ''}${line}`;
      start = nl + 1;
    }
    const w1 = writeOut(process.stdout, out);
    const w2 = writeOut(process.stderr, err);
    if (w1) await w1;
    if (w2) await w2;
  }
}

function pct(n: number): string {
  return `${(n * 100).toFixed(1)}%`;
}

/** printTop prints nodes' and tasks' live CPU and memory; with `watch`, again every interval until interrupted. */
export async function printTop(api: ApiClient, o: { watch: boolean; intervalMs: number; json: boolean }): Promise<void> {
  for (;;) {
    const r = await api.top();
    if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else {
      const nodes = table(
        ['NODE', 'STATE', 'CPU', 'CPU%', 'MEMORY', 'MEM%', 'TASKS'],
        r.nodes.map((n) => [n.name, n.state, n.cpu.toFixed(2), n.capacity.cpus ? pct(n.cpu / n.capacity.cpus) : '-', bytes(n.memoryBytes), n.capacity.memoryBytes ? pct(n.memoryBytes / n.capacity.memoryBytes) : '-', String(n.tasks)]),
      );
      const tasks = table(
        ['TASK', 'SERVICE', 'NODE', 'CPU', 'MEMORY', 'LIMIT'],
        [...r.tasks].sort((a, b) => b.cpu - a.cpu || a.task.localeCompare(b.task)).map((t) => [t.task, t.service, t.node, pct(t.cpu), bytes(t.memoryBytes), t.memoryLimitBytes ? bytes(t.memoryLimitBytes) : '-']),
      );
      process.stdout.write(`${o.watch && process.stdout.isTTY ? '\x1b[H\x1b[2J' : ''}${nodes}\n\n${r.tasks.length ? tasks : 'no running tasks have reported usage yet'}\n`);
    }
    if (!o.watch) return;
    await sleep(o.intervalMs);
  }
}
