/**
 * The audit log (an admin's page, #/audit): every request that asked to
 * change something, newest first: who, role, route, object, result,
 * address and time, polled every 3 s, filtered by user.
 */
import { useState } from 'react';
import { usePoll, useSession } from './data.ts';
import { clockTime } from './format.ts';
import { Badge, Notice, Section } from './components.tsx';

interface AuditEntry {
  id: string;
  time: string;
  user: string;
  role: string;
  method: string;
  route: string;
  object: string;
  status: number;
  error?: string;
  address: string;
}

export function AuditPage() {
  const { api } = useSession();
  const [user, setUser] = useState('');
  const q = new URLSearchParams({ limit: '200', ...(user.trim() ? { user: user.trim() } : {}) });
  const log = usePoll(() => api.call<{ items: AuditEntry[] }>('GET', `/api/v1/audit?${q}`), 3000, [api, user]);
  const items = [...(log.data?.items ?? [])].reverse();
  return (
    <div className="page" data-testid="page-audit">
      <Section
        title="Audit log"
        extra={
          <label className="small">
            User{' '}
            <input value={user} onChange={(e) => setUser(e.target.value)} placeholder="any" data-testid="audit-user" />
          </label>
        }
        testid="audit"
      >
        {log.error ? <Notice kind="warn">Could not read the audit log: {log.error} (retrying)</Notice> : null}
        {!log.data ? (
          <div className="empty">Loading…</div>
        ) : items.length === 0 ? (
          <div className="empty">Nothing was asked to change{user.trim() ? ` by ${user.trim()}` : ''} in the retention window.</div>
        ) : (
          <table className="table">
            <thead>
              <tr>
                <th>Time</th>
                <th>User</th>
                <th>Role</th>
                <th>Request</th>
                <th>Object</th>
                <th>Result</th>
                <th>Address</th>
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.id} data-testid="audit-row" data-user={e.user} data-status={e.status}>
                  <td className="mono small" title={e.time}>
                    {clockTime(e.time)}
                  </td>
                  <td>{e.user}</td>
                  <td>{e.role}</td>
                  <td className="mono small">
                    {e.method} {e.route}
                  </td>
                  <td className="mono small">{e.object || '-'}</td>
                  <td>
                    <Badge value={`${e.status}${e.error ? ` ${e.error}` : ''}`} tone={e.status < 400 ? 'ok' : 'bad'} />
                  </td>
                  <td className="mono small">{e.address}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </div>
  );
}
