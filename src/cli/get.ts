/**
 * `baton get KIND [NAME] [-n NAMESPACE]`: what a kubectl user applied, read
 * back in kubectl's words from the Baton objects it became (README:
 * Kubernetes manifests): a workload is a service (labels
 * baton.kubernetes.kind/name), a pod is a task, a Service is part of the
 * workload it selects, a ConfigMap's or Secret's keys are configs or
 * secrets, a namespace is a stack. `-o yaml|json` prints the Baton objects
 * themselves.
 */
import type { Command } from 'commander';
import { age, configKind, endpointsKind, secretKind, serviceKind, taskKind } from '../api/kinds.js';
import type { Config, Endpoints, Secret, Service, Task } from '../api/types.js';
import { disruptionsAllowed, isGlobal, statefulOrdinal } from '../api/types.js';
import { BatonError } from '../base/errors.js';
import { client, out } from './common.js';
import { renderOne, table } from './output.js';
import { HPA_LABEL, KIND_LABEL, NAME_LABEL, PDB_LABEL, serviceRecords, type ServiceRecord } from '../manifest/kubernetes/labels.js';

/** podName: a StatefulSet's pod is its ordinal's name; any other pod, its task's. */
function podName(s: Service, t: Task): string {
  return s.spec.stateful ? `${s.spec.shortName}-${statefulOrdinal(t.spec.slot)}` : t.metadata.name;
}


/** Each kind `baton get` reads, by every name kubectl knows it by. */
export const KUBECTL_KINDS: Record<string, string> = {
  deployment: 'Deployment', deployments: 'Deployment', deploy: 'Deployment',
  replicaset: 'ReplicaSet', replicasets: 'ReplicaSet', rs: 'ReplicaSet',
  replicationcontroller: 'ReplicationController', replicationcontrollers: 'ReplicationController', rc: 'ReplicationController',
  daemonset: 'DaemonSet', daemonsets: 'DaemonSet', ds: 'DaemonSet',
  statefulset: 'StatefulSet', statefulsets: 'StatefulSet', sts: 'StatefulSet',
  job: 'Job', jobs: 'Job', cronjob: 'CronJob', cronjobs: 'CronJob', cj: 'CronJob',
  pod: 'Pod', pods: 'Pod', po: 'Pod',
  service: 'Service', services: 'Service', svc: 'Service',
  configmap: 'ConfigMap', configmaps: 'ConfigMap', cm: 'ConfigMap',
  secret: 'Secret', secrets: 'Secret',
  horizontalpodautoscaler: 'HorizontalPodAutoscaler', horizontalpodautoscalers: 'HorizontalPodAutoscaler', hpa: 'HorizontalPodAutoscaler',
  poddisruptionbudget: 'PodDisruptionBudget', poddisruptionbudgets: 'PodDisruptionBudget', pdb: 'PodDisruptionBudget',
  namespace: 'Namespace', namespaces: 'Namespace', ns: 'Namespace',
};

export function registerGet(program: Command): void {
  program
    .command('get <kind> [name]')
    .description("list what Kubernetes manifests made, in kubectl's words (deployments, statefulsets, pods, services, configmaps, secrets, jobs, cronjobs, daemonsets, hpa, pdb, namespaces)")
    .option('-n, --namespace <ns>', 'the namespace (a stack)', 'default')
    .option('-A, --all-namespaces', 'every namespace')
    .action(async (kindArg: string, name: string | undefined, o, cmd: Command) => {
      const kind = KUBECTL_KINDS[kindArg.toLowerCase()];
      if (!kind) throw new BatonError('BATON_ERR_BAD_REQUEST', `unknown kind "${kindArg}": baton get reads ${[...new Set(Object.values(KUBECTL_KINDS))].join(', ')}`);
      const { api, g } = client(cmd);
      // Namespaces are listed whole.
      const all = !!o.allNamespaces || kind === 'Namespace';
      const inNs = (labels: Record<string, string> | undefined) => all || labels?.['baton.stack'] === o.namespace;
      const ns = (labels: Record<string, string> | undefined) => labels?.['baton.stack'] ?? '';
      const nsCol = all && kind !== 'Namespace' ? ['NAMESPACE'] : [];
      const nsCell = (labels: Record<string, string> | undefined) => (nsCol.length ? [ns(labels)] : []);
      const services = (await api.list<Service>(serviceKind)).items.filter((s) => s.metadata.labels?.[KIND_LABEL] && inNs(s.metadata.labels));
      const show = (rows: { obj: unknown; cells: string[] }[], headers: string[]) => {
        const picked = name ? rows.filter((r) => r.cells[nsCol.length] === name) : rows;
        if (name && !picked.length) throw new BatonError('BATON_ERR_NOT_FOUND', `${kind} "${name}" not found in namespace ${o.namespace}`);
        if (g.output !== 'table') return out(renderOne(g.output, name && picked.length === 1 ? picked[0]!.obj : picked.map((r) => r.obj)));
        if (!picked.length) return out(all ? 'No resources found.' : `No resources found in ${o.namespace} namespace.`);
        out(table([...nsCol, ...headers], picked.map((r) => r.cells)));
      };
      const workloads = (k: string) => services.filter((s) => s.metadata.labels![KIND_LABEL] === k);
      const short = (s: Service) => s.metadata.labels![NAME_LABEL]!;
      switch (kind) {
        case 'Deployment':
        case 'ReplicaSet':
        case 'ReplicationController':
          return show(workloads(kind).map((s) => ({ obj: s, cells: [...nsCell(s.metadata.labels), short(s), `${s.status.ready}/${s.spec.replicas}`, String(s.status.rollout?.updated ?? s.status.running), String(s.status.ready), age(s.metadata.creationTimestamp)] })), ['NAME', 'READY', 'UP-TO-DATE', 'AVAILABLE', 'AGE']);
        case 'StatefulSet':
          return show(workloads(kind).map((s) => ({ obj: s, cells: [...nsCell(s.metadata.labels), short(s), `${s.status.ready}/${s.spec.replicas}`, age(s.metadata.creationTimestamp)] })), ['NAME', 'READY', 'AGE']);
        case 'DaemonSet':
          return show(workloads(kind).map((s) => ({ obj: s, cells: [...nsCell(s.metadata.labels), short(s), String(s.status.desired), String(s.status.running), String(s.status.ready), age(s.metadata.creationTimestamp)] })), ['NAME', 'DESIRED', 'CURRENT', 'READY', 'AGE']);
        case 'Job':
          return show(workloads(kind).map((s) => ({ obj: s, cells: [...nsCell(s.metadata.labels), short(s), `${s.status.job?.succeeded ?? 0}/${s.spec.job?.completions ?? 1}`, s.status.job?.state ?? 'pending', age(s.metadata.creationTimestamp)] })), ['NAME', 'COMPLETIONS', 'STATUS', 'AGE']);
        case 'CronJob':
          return show(
            workloads(kind).map((s) => ({ obj: s, cells: [...nsCell(s.metadata.labels), short(s), s.spec.schedule?.cron ?? '', s.spec.schedule?.timeZone ?? '<none>', String(s.status.cron?.active.length ?? 0), s.status.cron?.lastScheduleTime ? age(s.status.cron.lastScheduleTime) : '<none>', age(s.metadata.creationTimestamp)] })),
            ['NAME', 'SCHEDULE', 'TIMEZONE', 'ACTIVE', 'LAST SCHEDULE', 'AGE'],
          );
        case 'Pod': {
          const byName = new Map(services.map((s) => [s.metadata.name, s]));
          const tasks = (await api.list<Task>(taskKind)).items.filter((t) => byName.has(t.spec.serviceName) && t.spec.desiredState === 'running');
          return show(
            tasks.map((t) => ({ obj: t, cells: [...nsCell(byName.get(t.spec.serviceName)!.metadata.labels), podName(byName.get(t.spec.serviceName)!, t), podReady(t), podPhase(t), String(podRestarts(t)), age(t.metadata.creationTimestamp), t.spec.nodeName || '<none>'] })),
            ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE', 'NODE'],
          );
        }
        case 'Service': {
          const vips = new Map((await api.list<Endpoints>(endpointsKind)).items.map((e) => [e.metadata.name, e.spec.vip]));
          // kubectl's PORT(S): port[:targetPort when another][:nodePort]/PROTOCOL.
          const portsOf = (x: ServiceRecord) => x.ports.map((p) => `${p.port}${p.port !== p.target ? `:${p.target}` : ''}${p.nodePort !== undefined ? `:${p.nodePort}` : ''}/${p.protocol.toUpperCase()}`).join(',');
          const rows = services.flatMap((s) =>
            serviceRecords(s.metadata.labels!).map((x) => ({ obj: { service: x, partOf: s.metadata.name, vip: vips.get(s.metadata.name) }, cells: [...nsCell(s.metadata.labels), x.name, x.type, vips.get(s.metadata.name) ?? '<none>', portsOf(x), age(s.metadata.creationTimestamp)] })),
          );
          return show(rows, ['NAME', 'TYPE', 'CLUSTER-IP', 'PORT(S)', 'AGE']);
        }
        case 'ConfigMap':
        case 'Secret': {
          const items = (await api.list<Config | Secret>(kind === 'ConfigMap' ? configKind : secretKind)).items.filter((f) => f.metadata.labels?.['baton.kubernetes.kind'] === kind && inNs(f.metadata.labels));
          const groups = new Map<string, (Config | Secret)[]>();
          for (const f of items) {
            const key = `${ns(f.metadata.labels)}/${f.metadata.labels!['baton.kubernetes.name']}`;
            groups.set(key, [...(groups.get(key) ?? []), f]);
          }
          return show(
            [...groups.entries()].map(([key, fs]) => ({ obj: fs, cells: [...(nsCol.length ? [key.split('/')[0]!] : []), key.split('/')[1]!, ...(kind === 'Secret' ? ['Opaque'] : []), String(fs.length), age(fs[0]!.metadata.creationTimestamp)] })),
            kind === 'Secret' ? ['NAME', 'TYPE', 'DATA', 'AGE'] : ['NAME', 'DATA', 'AGE'],
          );
        }
        case 'HorizontalPodAutoscaler':
          return show(
            services.filter((s) => s.metadata.labels![HPA_LABEL] && s.spec.autoscale).map((s) => ({ obj: s.spec.autoscale, cells: [...nsCell(s.metadata.labels), s.metadata.labels![HPA_LABEL]!, `${s.metadata.labels![KIND_LABEL]}/${short(s)}`, [s.spec.autoscale!.cpu !== undefined ? `cpu: ${Math.round(s.spec.autoscale!.cpu * 100)}%` : '', s.spec.autoscale!.memory !== undefined ? `memory: ${Math.round(s.spec.autoscale!.memory * 100)}%` : ''].filter(Boolean).join(', '), String(s.spec.autoscale!.min), String(s.spec.autoscale!.max), String(isGlobal(s.spec) ? s.status.desired : s.spec.replicas)] })),
            ['NAME', 'REFERENCE', 'TARGETS', 'MINPODS', 'MAXPODS', 'REPLICAS'],
          );
        case 'PodDisruptionBudget':
          return show(
            services
              .filter((s) => s.metadata.labels![PDB_LABEL] && s.spec.disruptionBudget)
              .map((s) => {
                const b = s.spec.disruptionBudget!;
                const allowed = Math.max(0, disruptionsAllowed(b, s.spec.replicas, s.status.ready));
                return { obj: b, cells: [...nsCell(s.metadata.labels), s.metadata.labels![PDB_LABEL]!, String(b.minAvailable ?? 'N/A'), String(b.maxUnavailable ?? 'N/A'), String(allowed), age(s.metadata.creationTimestamp)] };
              }),
            ['NAME', 'MIN AVAILABLE', 'MAX UNAVAILABLE', 'ALLOWED DISRUPTIONS', 'AGE'],
          );
        case 'Namespace': {
          const stacks = (await api.stacks()).items;
          return show(stacks.map((s) => ({ obj: s, cells: [s.name, 'Active', String(s.services)] })), ['NAME', 'STATUS', 'SERVICES']);
        }
      }
    });
}

/** podReady: READY as kubectl prints it, the pod's containers ready of its containers (init containers apart). */
function podReady(t: Task): string {
  const cs = t.status.containers?.filter((c) => c.role !== 'init');
  if (!cs) return t.status.state === 'running' && t.status.ready !== false ? '1/1' : '0/1';
  // A container without probes is ready while it runs; the main one's readiness is the task's when it is the only prober.
  const ready = cs.filter((c) => c.state === 'running' && c.ready !== false).length;
  return `${ready}/${cs.length}`;
}

/** podPhase: STATUS as kubectl prints it, Init:N/M while init containers run. */
function podPhase(t: Task): string {
  const s = t.status.state;
  const inits = t.status.containers?.filter((c) => c.role === 'init') ?? [];
  const done = inits.filter((c) => c.state === 'exited' && c.exitCode === 0).length;
  if ((s === 'preparing' || s === 'starting' || s === 'assigned') && inits.length && done < inits.length) return `Init:${done}/${inits.length}`;
  return s === 'running' ? 'Running' : s === 'complete' ? 'Completed' : s[0]!.toUpperCase() + s.slice(1);
}

/** podRestarts: RESTARTS, every container's. */
function podRestarts(t: Task): number {
  return t.status.containers ? t.status.containers.reduce((n, c) => n + c.restartCount, 0) : t.status.restartCount;
}
