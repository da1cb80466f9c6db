/** Task helpers and the task table, shared by the service and node pages. */
import { Fragment, useState } from 'react';
import type { Task, TaskUsage } from '../../src/api/types.ts';
import { hasProbe, isTerminal } from '../../src/api/types.ts';
import { useSession } from './data.ts';
import { age, bytes, cpus, errorText } from './format.ts';
import { Badge, NodeLink, serviceHref } from './components.tsx';

/** taskHealth sums up a task's probes: healthy, unhealthy, not ready, starting, or - (no probes / not running). */
export function taskHealth(t: Task): string {
  const c = t.spec.container;
  if (!hasProbe(c.healthcheck) && !hasProbe(c.readiness)) return t.status.state === 'running' ? 'ready' : '-';
  if (t.status.state !== 'running') return '-';
  if (t.status.healthy === false) return 'unhealthy';
  if (hasProbe(c.readiness) && t.status.ready === false) return 'not ready';
  if ((hasProbe(c.healthcheck) && t.status.healthy === undefined) || (hasProbe(c.readiness) && t.status.ready === undefined)) return 'starting';
  return 'healthy';
}

/** taskProblem: the engine's error, why a task is pending, when it restarts next, or why it is not ready. */
export function taskProblem(t: Task): string {
  const s = t.status;
  if (s.nextRestartAt && Date.parse(s.nextRestartAt) > Date.now()) return s.message;
  if (s.error) return s.error;
  if (s.state === 'pending') return s.pendingReason ?? s.message ?? '';
  if (s.state === 'running' && s.message?.startsWith('not ready')) return s.message;
  if (s.state === 'orphaned') return s.message;
  return '';
}

/** current: the tasks that should run or have not stopped yet, by slot then name. */
export function currentTasks(ts: Task[]): Task[] {
  return ts.filter((t) => t.spec.desiredState === 'running' || !isTerminal(t.status.state)).sort(bySlot);
}

/** finished: stopped tasks that are not meant to run, newest first. */
export function finishedTasks(ts: Task[]): Task[] {
  return ts.filter((t) => t.spec.desiredState !== 'running' && isTerminal(t.status.state)).sort((a, b) => Date.parse(b.status.timestamp) - Date.parse(a.status.timestamp));
}

function bySlot(a: Task, b: Task): number {
  return a.spec.serviceName.localeCompare(b.spec.serviceName) || a.spec.slot - b.spec.slot || a.metadata.name.localeCompare(b.metadata.name);
}

interface Explain {
  task: string;
  decision: { evaluated: number; feasible: number; filtered: Record<string, number> } | null;
  nodes?: { node: string; fits: boolean; reason?: string }[];
}

export function TaskTable({ tasks, usage, show, testid = 'tasks' }: { tasks: Task[]; usage?: Map<string, TaskUsage>; show: 'service' | 'node'; testid?: string }) {
  const { api } = useSession();
  const [explain, setExplain] = useState<Record<string, Explain | string>>({});
  const ask = async (name: string) => {
    setExplain((x) => ({ ...x, [name]: 'asking the scheduler…' }));
    try {
      const r = await api.call<Explain>('GET', `/api/v1/tasks/${encodeURIComponent(name)}/explain?allNodes=true`);
      setExplain((x) => ({ ...x, [name]: r }));
    } catch (e) {
      setExplain((x) => ({ ...x, [name]: `explain failed: ${errorText(e)}` }));
    }
  };
  if (tasks.length === 0) return <div className="empty" data-testid={testid}>No tasks.</div>;
  const cols = 11;
  return (
    <table className="table" data-testid={testid}>
      <thead>
        <tr>
          <th>Task</th>
          {show === 'service' ? <th>Slot</th> : <th>Service</th>}
          <th>State</th>
          <th>Desired</th>
          {show === 'service' ? <th>Node</th> : <th>Slot</th>}
          <th>Health</th>
          <th>Restarts</th>
          <th>CPU</th>
          <th>Memory</th>
          <th>Since</th>
          <th>Reason / message</th>
        </tr>
      </thead>
      <tbody>
        {tasks.map((t) => {
          const u = usage?.get(t.metadata.name);
          const problem = taskProblem(t);
          const ex = explain[t.metadata.name];
          return (
            <Fragment key={t.metadata.name}>
              <tr data-testid="task-row" data-task={t.metadata.name} data-state={t.status.state} data-node={t.spec.nodeName} data-desired={t.spec.desiredState}>
                <td className="mono" title={t.metadata.uid}>
                  {t.metadata.name}
                </td>
                {show === 'service' ? (
                  <td>{t.spec.slot}</td>
                ) : (
                  <td>
                    <a href={serviceHref(t.spec.serviceName)}>{t.spec.serviceName}</a>
                  </td>
                )}
                <td>
                  <Badge value={t.status.state} testid="task-state" />
                </td>
                <td className="muted">{t.spec.desiredState}</td>
                {show === 'service' ? (
                  <td>
                    <NodeLink name={t.spec.nodeName} />
                  </td>
                ) : (
                  <td>{t.spec.slot}</td>
                )}
                <td>
                  <Badge value={taskHealth(t)} />
                </td>
                <td>
                  {t.status.restartCount ?? 0}
                  {t.status.restartCount && t.status.exitCode !== undefined ? <span className="muted small"> (exit {t.status.exitCode})</span> : null}
                </td>
                <td className="nowrap">{u ? cpus(u.cpu) : <span className="muted">-</span>}</td>
                <td className="nowrap">{u ? bytes(u.memoryBytes) : <span className="muted">-</span>}</td>
                <td className="muted nowrap" title={t.status.timestamp}>
                  {age(t.status.timestamp)}
                </td>
                <td className={t.status.state === 'pending' || t.status.error ? 'problem' : 'muted'} data-testid={t.status.state === 'pending' ? 'pending-reason' : undefined}>
                  {problem || (t.status.message ?? '')}
                  {t.status.state === 'pending' ? (
                    <>
                      {' '}
                      <button className="link" onClick={() => void ask(t.metadata.name)} data-testid="explain">
                        why?
                      </button>
                    </>
                  ) : null}
                </td>
              </tr>
              {(t.status.containers ?? []).map((c) => (
                <tr key={`${t.metadata.name}/${c.name}`} className="container-row" data-testid="container-row" data-task={t.metadata.name} data-container={c.name} data-state={c.state}>
                  <td className="mono muted">
                    {'\u2514 '}
                    {c.name} <span className="small">({c.role})</span>
                  </td>
                  <td />
                  <td>
                    <Badge value={c.state === 'exited' ? `exited ${c.exitCode ?? '?'}` : c.state} tone={c.state === 'exited' ? (c.exitCode === 0 ? 'ok' : 'bad') : undefined} />
                  </td>
                  <td />
                  <td />
                  <td>{c.ready === undefined ? <span className="muted">-</span> : <Badge value={c.ready ? 'ready' : 'not ready'} tone={c.ready ? 'ok' : 'warn'} />}</td>
                  <td>{c.restartCount}</td>
                  <td />
                  <td />
                  <td />
                  <td className="muted">{c.message ?? ''}</td>
                </tr>
              ))}
              {ex ? (
                <tr className="explain-row">
                  <td colSpan={cols}>
                    <ExplainView ex={ex} />
                  </td>
                </tr>
              ) : null}
            </Fragment>
          );
        })}
      </tbody>
    </table>
  );
}

function ExplainView({ ex }: { ex: Explain | string }) {
  if (typeof ex === 'string') return <span className="muted">{ex}</span>;
  const d = ex.decision;
  return (
    <div className="explain" data-testid="explain-result">
      {d ? (
        <div>
          Last placement: {d.evaluated} node(s) evaluated, {d.feasible} feasible.
          {Object.keys(d.filtered).length ? ` Ruled out: ${Object.entries(d.filtered).map(([why, n]) => `${why} (${n})`).join(', ')}.` : ''}
        </div>
      ) : (
        <div>The scheduler has not tried to place it yet.</div>
      )}
      {ex.nodes?.length ? (
        <ul>
          {ex.nodes.map((n) => (
            <li key={n.node}>
              <strong>{n.node}</strong>: {n.fits ? <span className="ok-text">fits now</span> : n.reason}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
