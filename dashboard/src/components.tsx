/** Building blocks shared by the pages: links, badges, capacity bars, line charts, the events list. */
import type { ReactNode } from 'react';
import type { EventsState } from './data.ts';
import { age, clockTime } from './format.ts';

export function href(path: string): string {
  return `#${path}`;
}

export function serviceHref(name: string): string {
  return href(`/services/${encodeURIComponent(name)}`);
}

export function nodeHref(name: string): string {
  return href(`/nodes/${encodeURIComponent(name)}`);
}

/** Logo: a conductor's baton. */
export function Logo() {
  return (
    <svg className="logo" viewBox="0 0 16 16" width="18" height="18" aria-hidden="true">
      <rect x="7.2" y="0.5" width="1.6" height="15" rx="0.8" transform="rotate(35 8 8)" fill="currentColor" />
      <circle cx="3.9" cy="13.9" r="1.9" fill="currentColor" />
    </svg>
  );
}

export function NodeLink({ name }: { name: string }) {
  if (!name) return <span className="muted">-</span>;
  return (
    <a href={nodeHref(name)} data-testid={`node-link-${name}`}>
      {name}
    </a>
  );
}

const STATE_TONE: Record<string, string> = {
  ready: 'ok',
  running: 'ok',
  complete: 'ok',
  active: 'ok',
  healthy: 'ok',
  notready: 'warn',
  pending: 'warn',
  assigned: 'info',
  preparing: 'info',
  starting: 'info',
  pause: 'warn',
  drain: 'warn',
  'not ready': 'warn',
  unknown: 'muted',
  shutdown: 'muted',
  down: 'bad',
  failed: 'bad',
  rejected: 'bad',
  orphaned: 'bad',
  unhealthy: 'bad',
};

export function Badge({ value, tone, testid }: { value: string; tone?: string; testid?: string }) {
  return (
    <span className={`badge ${tone ?? STATE_TONE[value] ?? 'muted'}`} data-testid={testid}>
      {value}
    </span>
  );
}

export function Section({ title, extra, children, testid }: { title: ReactNode; extra?: ReactNode; children: ReactNode; testid?: string }) {
  return (
    <section className="card" data-testid={testid}>
      <header className="card-head">
        <h2>{title}</h2>
        {extra ? <div className="card-extra">{extra}</div> : null}
      </header>
      <div className="card-body">{children}</div>
    </section>
  );
}

export function Notice({ kind = 'info', children, testid }: { kind?: 'info' | 'error' | 'warn'; children: ReactNode; testid?: string }) {
  return (
    <div className={`notice ${kind}`} data-testid={testid} role={kind === 'error' ? 'alert' : undefined}>
      {children}
    </div>
  );
}

/**
 * Bar shows use against a total: a solid part (allocated) and, when given, a
 * thin line for what is really in use.
 */
export function Bar({ label, used, usage, total, format, testid }: { label: string; used: number; usage?: number; total: number; format: (n: number) => string; testid?: string }) {
  const p = total > 0 ? Math.min(100, (used / total) * 100) : 0;
  const u = usage !== undefined && total > 0 ? Math.min(100, (usage / total) * 100) : undefined;
  const tone = p >= 95 ? 'bad' : p >= 80 ? 'warn' : 'ok';
  return (
    <div className="bar" data-testid={testid} title={`${label}: ${format(used)} allocated${usage !== undefined ? `, ${format(usage)} in use` : ''} of ${format(total)}`}>
      <div className="bar-label">
        <span>{label}</span>
        <span className="bar-nums">
          {format(used)} / {format(total)}
          {usage !== undefined ? <span className="muted"> · {format(usage)} used</span> : null}
        </span>
      </div>
      <div className="bar-track">
        <div className={`bar-fill ${tone}`} style={{ width: `${p}%` }} />
        {u !== undefined ? <div className="bar-usage" style={{ width: `${u}%` }} /> : null}
      </div>
    </div>
  );
}

/** ReplicaBar: ready (green), running but not ready (amber), missing (red) out of desired. */
export function ReplicaBar({ ready, running, desired }: { ready: number; running: number; desired: number }) {
  const total = Math.max(desired, running, 1);
  const notReady = Math.max(0, running - ready);
  const missing = Math.max(0, desired - running);
  return (
    <div className="replicas" title={`${ready} ready, ${notReady} running but not ready, ${missing} missing, of ${desired}`}>
      <div className="bar-track">
        <div className="seg ok" style={{ width: `${(ready / total) * 100}%` }} />
        <div className="seg warn" style={{ width: `${(notReady / total) * 100}%` }} />
        <div className="seg bad" style={{ width: `${(missing / total) * 100}%` }} />
      </div>
    </div>
  );
}

/** LineChart is a small inline SVG chart of one series over time, its latest value above it. */
export function LineChart({ title, points, format, testid }: { title: string; points: { t: number; v: number }[]; format: (n: number) => string; testid?: string }) {
  const W = 300;
  const H = 80;
  const last = points[points.length - 1];
  let body: ReactNode;
  if (points.length < 2) {
    body = <div className="chart-empty">{points.length ? 'collecting…' : 'no data yet'}</div>;
  } else {
    const t0 = points[0]!.t;
    const t1 = last!.t;
    // Headroom above the largest value, so a steady series draws as a line below the top.
    const top = (Math.max(...points.map((p) => p.v)) || 1) * 1.2;
    const x = (t: number) => (t1 === t0 ? W : ((t - t0) / (t1 - t0)) * W);
    const y = (v: number) => H - 4 - (v / top) * (H - 8);
    const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
    body = (
      <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" className="chart-svg" role="img" aria-label={`${title} over time`}>
        <line x1="0" y1={H - 4} x2={W} y2={H - 4} className="chart-axis" />
        <path d={`${d} L${W},${H - 4} L0,${H - 4} Z`} className="chart-area" />
        <path d={d} className="chart-line" vectorEffect="non-scaling-stroke" />
      </svg>
    );
  }
  const max = points.length ? Math.max(...points.map((p) => p.v)) : undefined;
  return (
    <div className="chart" data-testid={testid}>
      <div className="chart-head">
        <span className="chart-title">{title}</span>
        <span className="chart-value">{last ? format(last.v) : '-'}</span>
      </div>
      {body}
      <div className="chart-foot muted">
        {points.length >= 2 ? (
          <>
            <span>{clockTime(points[0]!.t)}</span>
            <span>max {format(max!)}</span>
            <span>{clockTime(last!.t)}</span>
          </>
        ) : (
          <span>&nbsp;</span>
        )}
      </div>
    </div>
  );
}

export function EventsList({ state, testid = 'events' }: { state: EventsState; testid?: string }) {
  return (
    <div data-testid={testid}>
      {state.error ? (
        <Notice kind="warn" testid="events-error">
          Events unavailable: {state.error} (retrying)
        </Notice>
      ) : null}
      {state.items.length === 0 ? (
        <div className="empty">{state.connected ? 'No events.' : 'Loading events…'}</div>
      ) : (
        <table className="table events">
          <thead>
            <tr>
              <th>Time</th>
              <th>Type</th>
              <th>Reason</th>
              <th>Object</th>
              <th>Message</th>
            </tr>
          </thead>
          <tbody>
            {state.items.map((e) => (
              <tr key={e.id} data-testid="event-row" className={e.type === 'Warning' ? 'warning' : undefined}>
                <td className="nowrap" title={e.count && e.count > 1 ? `first ${e.time}, last ${e.lastTime}` : e.time}>
                  {clockTime(e.lastTime ?? e.time)} <span className="muted">({age(e.lastTime ?? e.time)} ago)</span>
                </td>
                <td>
                  <Badge value={e.type} tone={e.type === 'Warning' ? 'bad' : 'muted'} />
                </td>
                <td className="nowrap">{e.reason}</td>
                <td className="nowrap">
                  {e.kind.toLowerCase()}/{e.name}
                </td>
                <td className="message">
                  {e.message}
                  {e.count && e.count > 1 ? (
                    <span className="muted" data-testid="event-count">
                      {' '}
                      (x{e.count})
                    </span>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
