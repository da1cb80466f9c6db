/** The cluster overview: nodes with their capacity and live usage, services with their replica health. */
import type { Node, Service, TopResponse } from '../../src/api/types.ts';
import type { QuotaView } from '../../src/api/quotas.ts';
import { useCluster } from './cluster.ts';
import { useHeartbeats, usePoll, useSession, type PollState } from './data.ts';
import { age, bytes, cpus } from './format.ts';
import { Badge, Bar, NodeLink, Notice, ReplicaBar, Section, serviceHref } from './components.tsx';

export function Overview() {
  const { api } = useSession();
  const { nodes, services } = useCluster();
  const top = usePoll(() => api.top(), 2000, [api]);
  return (
    <div className="page" data-testid="page-overview">
      <NodesSection nodes={nodes.items} synced={nodes.synced} error={nodes.error} top={top} />
      <ServicesSection services={services.items} synced={services.synced} error={services.error} />
      <QuotasSection />
    </div>
  );
}

export function usageNote(top: PollState<TopResponse>) {
  if (top.error && !top.data) return <span className="muted small" data-testid="usage-unavailable" title={top.error}>live usage unavailable: {top.error}</span>;
  if (top.data) return <span className="muted small">usage at {new Date(top.data.time).toLocaleTimeString(undefined, { hour12: false })}</span>;
  return <span className="muted small">loading usage…</span>;
}

function NodesSection({ nodes, synced, error, top }: { nodes: Node[]; synced: boolean; error?: string; top: PollState<TopResponse> }) {
  const usage = new Map((top.data?.nodes ?? []).map((n) => [n.name, n]));
  const beats = useHeartbeats();
  const sorted = [...nodes].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  return (
    <Section title={`Nodes (${nodes.length})`} extra={usageNote(top)} testid="nodes">
      {error ? <Notice kind="warn">Live updates interrupted: {error} (retrying)</Notice> : null}
      {!synced ? (
        <div className="empty">Loading nodes…</div>
      ) : sorted.length === 0 ? (
        <div className="empty">No nodes have joined yet. Join one with `baton join-token worker` and `baton agent --join`.</div>
      ) : (
        <table className="table">
          <thead>
            <tr>
              <th>Node</th>
              <th>State</th>
              <th>Address</th>
              <th className="wide">CPUs</th>
              <th className="wide">Memory</th>
              <th>Tasks</th>
              <th>Heartbeat</th>
            </tr>
          </thead>
          <tbody>
            {sorted.map((n) => {
              const u = usage.get(n.metadata.name);
              return (
                <tr key={n.metadata.name} data-testid={`node-row-${n.metadata.name}`} data-state={n.status.state}>
                  <td>
                    <NodeLink name={n.metadata.name} />
                    {n.spec.availability !== 'active' ? (
                      <>
                        {' '}
                        <Badge value={n.spec.availability} />
                      </>
                    ) : null}
                  </td>
                  <td>
                    <Badge value={n.status.state} testid="node-state" />
                  </td>
                  <td className="mono">{n.status.address}</td>
                  <td>
                    <Bar label="allocated" used={n.status.allocated.cpus} usage={u?.cpu} total={n.status.capacity.cpus} format={cpus} testid="node-cpu" />
                  </td>
                  <td>
                    <Bar label="allocated" used={n.status.allocated.memoryBytes} usage={u?.memoryBytes} total={n.status.capacity.memoryBytes} format={bytes} testid="node-memory" />
                  </td>
                  <td>{n.status.taskCount}</td>
                  <td className="muted nowrap">{heartbeat(beats.get(n.metadata.name) ?? n.status.lastHeartbeat)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </Section>
  );
}

export function heartbeat(at: string | undefined): string {
  return at ? `${age(at)} ago` : '-';
}

export function replicasText(s: Service): string {
  return s.spec.mode === 'global' ? `${s.status.ready}/${s.status.desired} (global)` : `${s.status.ready}/${s.spec.replicas}`;
}

function ServicesSection({ services, synced, error }: { services: Service[]; synced: boolean; error?: string }) {
  const sorted = [...services].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  return (
    <Section title={`Services (${services.length})`} testid="services">
      {error ? <Notice kind="warn">Live updates interrupted: {error} (retrying)</Notice> : null}
      {!synced ? (
        <div className="empty">Loading services…</div>
      ) : sorted.length === 0 ? (
        <div className="empty">No services. Deploy a stack with `baton apply -f compose.yaml`.</div>
      ) : (
        <table className="table">
          <thead>
            <tr>
              <th>Service</th>
              <th>Stack</th>
              <th>Image</th>
              <th>Replicas</th>
              <th className="wide">Health</th>
              <th>Ports</th>
              <th>Status</th>
            </tr>
          </thead>
          <tbody>
            {sorted.map((s) => {
              const desired = s.spec.mode === 'global' ? s.status.desired : s.spec.replicas;
              const healthy = s.status.ready >= desired;
              return (
                <tr key={s.metadata.name} data-testid={`service-row-${s.metadata.name}`} data-ready={s.status.ready} data-desired={desired}>
                  <td>
                    <a href={serviceHref(s.metadata.name)} data-testid={`service-link-${s.metadata.name}`}>
                      {s.metadata.name}
                    </a>
                  </td>
                  <td>{s.spec.stack || <span className="muted">-</span>}</td>
                  <td className="mono ellipsis" title={s.spec.container.image}>
                    {s.spec.container.image}
                  </td>
                  <td className="nowrap">
                    <Badge value={replicasText(s)} tone={healthy ? 'ok' : s.status.ready > 0 ? 'warn' : 'bad'} testid="service-replicas" />
                  </td>
                  <td>
                    <ReplicaBar ready={s.status.ready} running={s.status.running} desired={desired} />
                  </td>
                  <td className="mono small">{s.spec.ports.map((p) => (p.published ? `${p.published}→${p.target}` : `${p.target}`)).join(', ') || <span className="muted">-</span>}</td>
                  <td className="muted">{s.status.message ?? ''}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </Section>
  );
}

/** Stacks' quotas, each limit as a bar of what the stack's services ask for; shown when there are some. */
function QuotasSection() {
  const { api } = useSession();
  const quotas = usePoll(() => api.call<{ items: QuotaView[] }>('GET', '/api/v1/quotas'), 5000, [api]);
  const items = quotas.data?.items ?? [];
  if (items.length === 0) return null;
  return (
    <Section title={`Quotas (${items.length})`} testid="quotas">
      <table className="table">
        <thead>
          <tr>
            <th>Stack</th>
            <th className="wide">Tasks</th>
            <th className="wide">CPUs</th>
            <th className="wide">Memory</th>
          </tr>
        </thead>
        <tbody>
          {items.map((q) => (
            <tr key={q.stack} data-testid={`quota-row-${q.stack}`}>
              <td>{q.stack}</td>
              <td>{q.hard.tasks !== undefined ? <Bar label="tasks" used={q.used.tasks} total={q.hard.tasks} format={String} testid="quota-tasks" /> : <span className="muted small">{q.used.tasks}, not limited</span>}</td>
              <td>{q.hard.cpus !== undefined ? <Bar label="CPUs" used={q.used.cpus} total={q.hard.cpus} format={cpus} /> : <span className="muted small">{cpus(q.used.cpus)}, not limited</span>}</td>
              <td>{q.hard.memoryBytes !== undefined ? <Bar label="memory" used={q.used.memoryBytes} total={q.hard.memoryBytes} format={bytes} /> : <span className="muted small">{bytes(q.used.memoryBytes)}, not limited</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Section>
  );
}
