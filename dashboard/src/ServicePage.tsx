/**
 * One service: its tasks and where they run, why any is pending, a scale
 * control, usage charts, its live log tail and its events.
 */
import { useEffect, useLayoutEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import { taskKind } from '../../src/api/kinds.ts';
import type { Service, Task } from '../../src/api/types.ts';
import { callerText, mayDeploy, useCluster } from './cluster.ts';
import { useEvents, useInformer, useLogTail, usePoll, useSession } from './data.ts';
import { bytes, cpus, errorText, rate } from './format.ts';
import { Badge, EventsList, href, LineChart, NodeLink, Notice, ReplicaBar, Section } from './components.tsx';
import { currentTasks, finishedTasks, TaskTable } from './tasks.tsx';
import { replicasText } from './Overview.tsx';

export function ServicePage({ name }: { name: string }) {
  const { services } = useCluster();
  const svc = services.items.find((s) => s.metadata.name === name);
  if (!svc) {
    return (
      <div className="page" data-testid="page-service">
        <Breadcrumb name={name} />
        {services.synced ? (
          <Notice kind="warn" testid="service-missing">
            Service <code>{name}</code> does not exist (any more).
          </Notice>
        ) : (
          <div className="empty">Loading…</div>
        )}
      </div>
    );
  }
  return <ServiceView svc={svc} />;
}

function Breadcrumb({ name }: { name: string }) {
  return (
    <div className="crumbs">
      <a href={href('/')}>Overview</a> / services / <strong>{name}</strong>
    </div>
  );
}

function ServiceView({ svc }: { svc: Service }) {
  const { api } = useSession();
  const name = svc.metadata.name;
  const tasks = useInformer<Task>(taskKind, { 'spec.serviceName': name });
  const events = useEvents({ service: name });
  const top = usePoll(() => api.top(), 3000, [api]);
  const usage = useMemo(() => new Map((top.data?.tasks ?? []).filter((t) => t.service === name).map((t) => [t.task, t])), [top.data, name]);
  const current = currentTasks(tasks.items);
  const finished = finishedTasks(tasks.items).slice(0, 20);
  const desired = svc.spec.mode === 'global' ? svc.status.desired : svc.spec.replicas;
  const running = current.filter((t) => t.status.state === 'running').length;

  return (
    <div className="page" data-testid="page-service" data-service={name}>
      <Breadcrumb name={name} />
      <div className="title-row">
        <h1 data-testid="service-name">{name}</h1>
        <Badge value={replicasText(svc)} tone={svc.status.ready >= desired ? 'ok' : svc.status.ready > 0 ? 'warn' : 'bad'} testid="service-replicas" />
        <span className="muted">{svc.status.message ?? ''}</span>
      </div>
      <div className="grid two">
        <Section title="Service">
          <dl className="facts">
            <dt>Image</dt>
            <dd className="mono">{svc.spec.container.image}</dd>
            {svc.spec.container.command ? (
              <>
                <dt>Command</dt>
                <dd className="mono small">{svc.spec.container.command.join(' ')}</dd>
              </>
            ) : null}
            <dt>Mode</dt>
            <dd>{svc.spec.mode}</dd>
            <dt>Replicas</dt>
            <dd>
              <span data-testid="replica-counts">
                {svc.status.ready} ready, {svc.status.running} running, {desired} desired
              </span>
              <ReplicaBar ready={svc.status.ready} running={svc.status.running} desired={desired} />
            </dd>
            <dt>Ports</dt>
            <dd className="mono small">{svc.spec.ports.map((p) => (p.published ? `*:${p.published}→${p.target}/${p.mode}` : `${p.target}`)).join(', ') || '-'}</dd>
            <dt>Resources</dt>
            <dd>{reserves(svc)}</dd>
            {svc.spec.placement.constraints.length ? (
              <>
                <dt>Constraints</dt>
                <dd className="mono small">{svc.spec.placement.constraints.join(', ')}</dd>
              </>
            ) : null}
          </dl>
          <ScaleControl svc={svc} />
        </Section>
        <Section title="Placement" testid="placement">
          <Placement tasks={current} />
        </Section>
      </div>

      <Section title={`Tasks (${running}/${current.length} running)`} extra={tasks.error ? <span className="problem small">{tasks.error}</span> : null} testid="tasks-section">
        {!tasks.synced ? <div className="empty">Loading tasks…</div> : <TaskTable tasks={current} usage={usage} show="service" />}
        {finished.length ? (
          <details className="history">
            <summary>Stopped tasks ({finished.length})</summary>
            <TaskTable tasks={finished} show="service" testid="tasks-history" />
          </details>
        ) : null}
      </Section>

      {svc.spec.autoscale ? (
        <Section title="Autoscaling" testid="autoscale">
          <Autoscale svc={svc} />
        </Section>
      ) : null}

      <Section title="Usage" extra={<span className="muted small">per report interval</span>} testid="stats">
        <Stats name={name} />
      </Section>

      <Section title="Logs" testid="logs">
        <LogTail name={name} />
      </Section>

      <Section title="Events" testid="events-section">
        <EventsList state={events} />
      </Section>
    </div>
  );
}

function reserves(svc: Service): string {
  const r = svc.spec.resources.reservations;
  const l = svc.spec.resources.limits;
  const parts = [];
  if (r.cpus || r.memoryBytes) parts.push(`reserves ${cpus(r.cpus)} CPU, ${bytes(r.memoryBytes)}`);
  if (l.cpus || l.memoryBytes) parts.push(`limited to ${l.cpus ? `${cpus(l.cpus)} CPU` : 'any CPU'}, ${l.memoryBytes ? bytes(l.memoryBytes) : 'any memory'}`);
  return parts.length ? `${parts.join('; ')} per task` : 'no reservations or limits';
}

function ScaleControl({ svc }: { svc: Service }) {
  const { api } = useSession();
  const { info } = useCluster();
  const replicas = svc.spec.replicas;
  const [value, setValue] = useState(String(replicas));
  const [dirty, setDirty] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const [done, setDone] = useState<string | undefined>();
  useEffect(() => {
    if (!dirty) setValue(String(replicas));
  }, [replicas, dirty]);

  if (svc.spec.mode === 'global') return <p className="muted small">A global service runs one task on every eligible node; it cannot be scaled.</p>;
  if (!mayDeploy(info, svc.spec.stack)) {
    return (
      <p className="muted small" data-testid="scale-not-allowed">
        Signed in as {callerText(info)}: scaling {svc.spec.stack ? `stack ${svc.spec.stack}` : 'this service'} needs an admin{svc.spec.stack ? ` or a deployer of ${svc.spec.stack}` : ''}.
      </p>
    );
  }

  const submit = async (ev: FormEvent) => {
    ev.preventDefault();
    setError(undefined);
    setDone(undefined);
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < 0) return setError('Replicas must be a whole number, 0 or more.');
    setBusy(true);
    try {
      const out = await api.scale(svc.metadata.name, n);
      setDirty(false);
      setDone(`Scaled to ${out.spec.replicas}.`);
    } catch (e) {
      setError(`Scale failed: ${errorText(e)}`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="scale" onSubmit={submit} data-testid="scale-form">
      <label htmlFor="replicas">Scale to</label>
      <input
        id="replicas"
        type="number"
        min={0}
        step={1}
        value={value}
        onChange={(e) => {
          setValue(e.target.value);
          setDirty(true);
          setDone(undefined);
        }}
        data-testid="scale-input"
      />
      <button type="submit" className="primary" disabled={busy} data-testid="scale-submit">
        {busy ? 'Scaling…' : 'Scale'}
      </button>
      {done ? (
        <span className="ok-text small" data-testid="scale-done">
          {done}
        </span>
      ) : null}
      {error ? (
        <Notice kind="error" testid="scale-error">
          {error}
        </Notice>
      ) : null}
    </form>
  );
}

/** Placement: how many of the service's tasks each node holds, and the pending ones with their reasons. */
function Placement({ tasks }: { tasks: Task[] }) {
  const perNode = new Map<string, { running: number; other: number }>();
  const pending: Task[] = [];
  for (const t of tasks) {
    if (!t.spec.nodeName) {
      pending.push(t);
      continue;
    }
    const e = perNode.get(t.spec.nodeName) ?? { running: 0, other: 0 };
    if (t.status.state === 'running') e.running++;
    else e.other++;
    perNode.set(t.spec.nodeName, e);
  }
  const max = Math.max(1, ...[...perNode.values()].map((e) => e.running + e.other));
  const reasons = new Map<string, number>();
  for (const t of pending) {
    const r = t.status.pendingReason || t.status.message || 'waiting for the scheduler';
    reasons.set(r, (reasons.get(r) ?? 0) + 1);
  }
  if (tasks.length === 0) return <div className="empty">No tasks to place.</div>;
  return (
    <div>
      <ul className="placement">
        {[...perNode.entries()]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([node, e]) => (
            <li key={node} data-testid="placement-node" data-node={node} data-count={e.running + e.other}>
              <span className="placement-node">
                <NodeLink name={node} />
              </span>
              <span className="placement-bar">
                <span className="seg ok" style={{ width: `${(e.running / max) * 100}%` }} />
                <span className="seg info" style={{ width: `${(e.other / max) * 100}%` }} />
              </span>
              <span className="placement-count">
                {e.running}
                {e.other ? <span className="muted"> +{e.other} starting</span> : null}
              </span>
            </li>
          ))}
      </ul>
      {pending.length ? (
        <div className="pending" data-testid="pending">
          <strong>{pending.length} pending</strong>
          <ul>
            {[...reasons.entries()].map(([r, n]) => (
              <li key={r} className="problem">
                {n} × {r}
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </div>
  );
}

/** Autoscale: each target against what the autoscaler measures now, and its last decision. */
function Autoscale({ svc }: { svc: Service }) {
  const { api } = useSession();
  const view = usePoll(() => api.autoscale(), 3000, [api]);
  const v = view.data?.items.find((x) => x.service === svc.metadata.name);
  const a = svc.spec.autoscale!;
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  const m = v?.metrics;
  const perCpu = svc.spec.resources.reservations.cpus || svc.spec.resources.limits.cpus || 1;
  const perMem = svc.spec.resources.reservations.memoryBytes || svc.spec.resources.limits.memoryBytes;
  const rows: [string, string, string][] = [];
  if (a.cpu !== undefined) rows.push(['CPU', m && m.tasks ? pct(m.cpuCores / m.tasks / perCpu) : '-', pct(a.cpu)]);
  if (a.memory !== undefined) rows.push(['Memory', m && m.tasks && perMem ? pct(m.memoryBytes / m.tasks / perMem) : '-', pct(a.memory)]);
  if (a.rps !== undefined) rows.push(['Requests/s per task', m ? (m.rps / Math.max(1, v!.replicas)).toFixed(1) : '-', String(a.rps)]);
  if (a.concurrency !== undefined) rows.push(['Open connections per task', m ? (m.concurrency / Math.max(1, v!.replicas)).toFixed(1) : '-', String(a.concurrency)]);
  return (
    <div>
      <p className="small">
        {svc.spec.replicas} replica(s), between {a.min} and {a.max}
        {v?.lastColdStartMs !== undefined ? ` · last cold start ${v.lastColdStartMs} ms` : ''}
      </p>
      <table className="table" data-testid="autoscale-targets">
        <thead>
          <tr>
            <th>Metric</th>
            <th>Now</th>
            <th>Target</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(([k, now, target]) => (
            <tr key={k}>
              <td>{k}</td>
              <td>{now}</td>
              <td>{target}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="muted small">{view.error ? `Autoscaler view unavailable: ${view.error}` : (v?.why.join('; ') ?? 'no decision yet')}</p>
    </div>
  );
}

function Stats({ name }: { name: string }) {
  const { api } = useSession();
  const stats = usePoll(() => api.serviceStats(name), 3000, [api, name]);
  const pts = stats.data?.points ?? [];
  const series = (f: (p: (typeof pts)[number]) => number) => pts.map((p) => ({ t: Date.parse(p.time), v: f(p) })).filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v));
  return (
    <div>
      {stats.error ? (
        <Notice kind={stats.data ? 'warn' : 'info'} testid="stats-error">
          {stats.data ? 'Usage is not updating: ' : 'No usage data yet: '}
          {stats.error}
        </Notice>
      ) : null}
      <div className="charts">
        <LineChart title="CPU (cores)" points={series((p) => p.cpu)} format={cpus} testid="chart-cpu" />
        <LineChart title="Memory" points={series((p) => p.memoryBytes)} format={bytes} testid="chart-memory" />
        <LineChart title="Requests" points={series((p) => p.requestsPerSecond)} format={rate} testid="chart-requests" />
      </div>
    </div>
  );
}

function LogTail({ name }: { name: string }) {
  const tail = useLogTail(name, 100);
  const box = useRef<HTMLDivElement>(null);
  const [stick, setStick] = useState(true);
  useLayoutEffect(() => {
    const el = box.current;
    if (el && stick) el.scrollTop = el.scrollHeight;
  }, [tail.lines, stick]);
  return (
    <div>
      <div className="log-head">
        <span className="muted small" data-testid="log-status">
          {tail.error ? '' : tail.following ? `following · ${tail.lines.length} lines` : 'connecting…'}
        </span>
        <label className="small">
          <input type="checkbox" checked={stick} onChange={(e) => setStick(e.target.checked)} /> keep at the newest line
        </label>
      </div>
      {tail.error ? (
        <Notice kind="warn" testid="log-error">
          Logs unavailable: {tail.error} (retrying)
        </Notice>
      ) : null}
      <div
        className="log"
        ref={box}
        data-testid="log-tail"
        onScroll={(e) => {
          const el = e.currentTarget;
          const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 8;
          if (atBottom !== stick) setStick(atBottom);
        }}
      >
        {tail.lines.length === 0 ? (
          <div className="muted">{tail.following ? 'No log lines yet.' : ''}</div>
        ) : (
          tail.lines.map((l) => (
            <div key={l.seq} className={`log-line ${l.stream}`} data-testid="log-line" title={l.time}>
              <span className="log-src">
                {l.task}@{l.node}
              </span>{' '}
              | {l.text}
            </div>
          ))
        )}
      </div>
    </div>
  );
}
