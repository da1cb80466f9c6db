/** One node: its status, labels and taints, capacity against allocation and live usage, its tasks and its events. */
import { useMemo } from 'react';
import { taskKind } from '../../src/api/kinds.ts';
import type { Node, Task } from '../../src/api/types.ts';
import { useCluster } from './cluster.ts';
import { useEvents, useHeartbeats, useInformer, usePoll, useSession } from './data.ts';
import { age, bytes, cpus } from './format.ts';
import { Badge, Bar, EventsList, href, Notice, Section } from './components.tsx';
import { currentTasks, TaskTable } from './tasks.tsx';
import { heartbeat, usageNote } from './Overview.tsx';

export function NodePage({ name }: { name: string }) {
  const { nodes } = useCluster();
  const node = nodes.items.find((n) => n.metadata.name === name);
  if (!node) {
    return (
      <div className="page" data-testid="page-node">
        <Breadcrumb name={name} />
        {nodes.synced ? (
          <Notice kind="warn" testid="node-missing">
            Node <code>{name}</code> is not registered.
          </Notice>
        ) : (
          <div className="empty">Loading…</div>
        )}
      </div>
    );
  }
  return <NodeView node={node} />;
}

function Breadcrumb({ name }: { name: string }) {
  return (
    <div className="crumbs">
      <a href={href('/')}>Overview</a> / nodes / <strong>{name}</strong>
    </div>
  );
}

function NodeView({ node }: { node: Node }) {
  const { api } = useSession();
  const name = node.metadata.name;
  const tasks = useInformer<Task>(taskKind, { 'spec.nodeName': name });
  const events = useEvents({ node: name });
  const top = usePoll(() => api.top(), 2000, [api]);
  const usage = top.data?.nodes.find((n) => n.name === name);
  const beats = useHeartbeats();
  const taskUsage = useMemo(() => new Map((top.data?.tasks ?? []).filter((t) => t.node === name).map((t) => [t.task, t])), [top.data, name]);
  const current = currentTasks(tasks.items);
  const s = node.status;
  const labels = Object.entries(node.metadata.labels);
  const taints = node.spec.taints ?? [];

  return (
    <div className="page" data-testid="page-node" data-node={name}>
      <Breadcrumb name={name} />
      <div className="title-row">
        <h1>{name}</h1>
        <Badge value={s.state} testid="node-state" />
        <Badge value={node.spec.availability} />
        <span className="muted">{s.message}</span>
      </div>
      <div className="grid two">
        <Section title="Status">
          <dl className="facts">
            <dt>Address</dt>
            <dd className="mono">{s.address}</dd>
            <dt>Hostname</dt>
            <dd>{s.hostname || '-'}</dd>
            <dt>Platform</dt>
            <dd>{s.platform ? `${s.platform.os}/${s.platform.arch}` : '-'}</dd>
            <dt>Agent</dt>
            <dd>{s.agentVersion || '-'}</dd>
            <dt>Engine</dt>
            <dd>{s.engineVersion || '-'}</dd>
            <dt>Heartbeat</dt>
            <dd>{heartbeat(beats.get(name) ?? s.lastHeartbeat)}</dd>
            <dt>State since</dt>
            <dd title={s.timestamp}>{age(s.timestamp)} ago</dd>
            <dt>Port range</dt>
            <dd className="mono">{s.portRange ? `${s.portRange[0]}-${s.portRange[1]}` : '-'}</dd>
            <dt>Task range</dt>
            <dd className="mono">{s.taskRange ?? '-'}</dd>
            {s.volumes?.length ? (
              <>
                <dt>Volumes</dt>
                <dd className="mono small">{s.volumes.join(', ')}</dd>
              </>
            ) : null}
          </dl>
        </Section>
        <Section title="Resources" extra={usageNote(top)} testid="node-resources">
          <Bar label="CPUs allocated" used={s.allocated.cpus} usage={usage?.cpu} total={s.capacity.cpus} format={cpus} testid="node-cpu" />
          <Bar label="Memory allocated" used={s.allocated.memoryBytes} usage={usage?.memoryBytes} total={s.capacity.memoryBytes} format={bytes} testid="node-memory" />
          <dl className="facts compact">
            <dt>Capacity</dt>
            <dd>
              {cpus(s.capacity.cpus)} CPUs, {bytes(s.capacity.memoryBytes)}
            </dd>
            <dt>Allocated</dt>
            <dd>
              {cpus(s.allocated.cpus)} CPUs, {bytes(s.allocated.memoryBytes)}
            </dd>
            <dt>In use</dt>
            <dd>{usage ? `${cpus(usage.cpu)} CPUs, ${bytes(usage.memoryBytes)}` : <span className="muted">no data</span>}</dd>
            <dt>Tasks</dt>
            <dd>{s.taskCount}</dd>
          </dl>
          <h3>Labels</h3>
          <div className="chips" data-testid="node-labels">
            {labels.length ? (
              labels.map(([k, v]) => (
                <span className="chip" key={k}>
                  {k}={v}
                </span>
              ))
            ) : (
              <span className="muted">none</span>
            )}
          </div>
          <h3>Taints</h3>
          <div className="chips" data-testid="node-taints">
            {taints.length ? (
              taints.map((t) => (
                <span className="chip warn" key={`${t.key}:${t.effect}`}>
                  {t.key}
                  {t.value ? `=${t.value}` : ''}:{t.effect}
                </span>
              ))
            ) : (
              <span className="muted">none</span>
            )}
          </div>
        </Section>
      </div>
      <Section title={`Tasks (${current.length})`} extra={tasks.error ? <span className="problem small">{tasks.error}</span> : null} testid="tasks-section">
        {!tasks.synced ? <div className="empty">Loading tasks…</div> : <TaskTable tasks={current} usage={taskUsage} show="node" />}
      </Section>
      <Section title="Events" testid="events-section">
        <EventsList state={events} />
      </Section>
    </div>
  );
}
