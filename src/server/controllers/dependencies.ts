/**
 * Start order (Compose's `depends_on`), as the scheduler applies it: a
 * service's tasks are not placed while a dependency does not meet its
 * condition, and wait with a reason that says for what ("waiting for
 * shop_db: 1/3 healthy"). It holds only until the service has first run: a
 * service one of whose tasks has started is never held again, so a later
 * restart or rescheduling starts at once (docker compose applies depends_on
 * at `up` only; Swarm ignores it entirely).
 */
import { isTerminal, type Dependency, type Service, type Task } from '../../api/types.js';

export interface DependencyView {
  service(name: string): Service | undefined;
  /** Whether a task of the service has ever started (any task of it, past or present, with a start time). */
  hasStarted(service: string): boolean;
}

/** waitReason says why a pending task of `svc` must wait for its dependencies, or undefined when it need not. */
export function waitReason(svc: Service | undefined, view: DependencyView): string | undefined {
  const deps = svc?.spec.dependsOn;
  if (!svc || !deps?.length || view.hasStarted(svc.metadata.name)) return undefined;
  const waits: string[] = [];
  for (const d of deps) {
    const why = unmet(d, view.service(d.service));
    if (why) waits.push(`${d.service}: ${why}`);
  }
  return waits.length ? `waiting for ${waits.join('; ')}` : undefined;
}

function unmet(d: Dependency, dep: Service | undefined): string | undefined {
  if (!dep) return d.required ? 'not deployed' : undefined;
  const want = dep.status.desired || dep.spec.replicas;
  switch (d.condition) {
    case 'service_started':
      return dep.status.running >= want && want > 0 ? undefined : `${dep.status.running}/${want} running`;
    case 'service_healthy':
      return dep.status.ready >= want && want > 0 ? undefined : `${dep.status.ready}/${want} healthy`;
    case 'service_completed_successfully': {
      const job = dep.status.job;
      if (job?.state === 'complete') return undefined;
      if (job?.state === 'failed') return 'its job failed, so this never starts (fix it and apply again)';
      return job ? `its job has ${job.succeeded}/${job.completions} completions` : 'its job has not run';
    }
  }
}

/** startedServices: the services that have had a task start (running, or ended after a start). */
export function startedServices(tasks: Iterable<Task>): Set<string> {
  const out = new Set<string>();
  for (const t of tasks) if (t.status.startedAt || t.status.state === 'running' || (isTerminal(t.status.state) && t.status.exitCode !== undefined)) out.add(t.spec.serviceName);
  return out;
}
