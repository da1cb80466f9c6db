/**
 * Workloads → Baton services: Deployment, ReplicaSet and
 * ReplicationController (replicated, their rollout), a bare Pod, DaemonSet
 * (global), Job (a replicated job) and CronJob (a scheduled job).
 */
import { DEFAULT_UPDATE_CONFIG, type JobSpec, type ScheduleSpec, type ServiceSpec, type UpdateConfig } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { isObj, type Issues, type KDoc, type Obj } from './documents.js';
import { readPod, selects, type PodResult } from './pod.js';
import { HPA_LABEL, KIND_LABEL, NAME_LABEL, PORTS_LABEL, SERVICES_LABEL, serviceRecords } from './labels.js';

export { HPA_LABEL };
import type { World } from './world.js';

/** Workload: one translated workload, which Services and HPAs then add to. */
export interface Workload {
  doc: KDoc;
  spec: ServiceSpec;
  /** What Services need of the pod: its labels and ports; and its affinity terms over other workloads (this apply's workloads only). */
  pod: Pick<PodResult, 'labels' | 'ports'> & Partial<Pick<PodResult, 'podTerms'>>;
  /** metadata.labels: the service's labels. */
  labels: Record<string, string>;
  /** A workload of an earlier apply (the CLI found it in the stack): applied again only when a Service of this apply changes it. */
  earlier?: { touched: boolean };
}

/** Kubernetes' crash loop backoff: 10 s, doubling, at most 5 minutes. */
const CRASH_BACKOFF = { delayMs: 10_000, maxDelayMs: 300_000, factor: 2, maxAttempts: 0, windowMs: 0 };

const strMap = (v: unknown): Record<string, string> => (isObj(v) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)])) : {});

/** podPorts: a pod's own ports in a service (before any Service adds to them): hostPorts published on its node, UDP ports on the VIP, TCP ports exposed. */
function podPorts(pod: Pick<PodResult, 'ports' | 'hostPorts'>): Pick<ServiceSpec, 'ports' | 'expose'> {
  return {
    ports: [...pod.hostPorts, ...pod.ports.filter((p) => p.protocol === 'udp').map((p) => ({ target: p.port, protocol: 'udp' as const, mode: 'ingress' as const }))],
    expose: [...new Set(pod.ports.filter((p) => p.protocol === 'tcp').map((p) => p.port))],
  };
}

/**
 * earlierWorkload is a workload a former apply made (a Baton service of
 * the stack with the kind and name labels), with what Services added taken
 * back off (from its ports label and its Service records), so this apply's
 * Services, and its kept ones, can be added again.
 */
export function earlierWorkload(svc: { spec: ServiceSpec; labels: Record<string, string> }): Workload | undefined {
  const kind = svc.labels[KIND_LABEL];
  const name = svc.labels[NAME_LABEL];
  if (!kind || !name) return undefined;
  let own: Pick<PodResult, 'ports' | 'hostPorts'>;
  try {
    own = JSON.parse(svc.labels[PORTS_LABEL] ?? '{"ports":[],"hostPorts":[]}') as Pick<PodResult, 'ports' | 'hostPorts'>;
  } catch {
    return undefined;
  }
  const added = new Set(serviceRecords(svc.labels).map((r) => r.name));
  const networks = (svc.spec.networks ?? []).map((n) => ({ ...n, aliases: n.aliases.filter((a) => !added.has(a)) }));
  const spec: ServiceSpec = { ...structuredClone(svc.spec), ...podPorts(own) };
  delete spec.vipPorts;
  if (networks.length && !(networks.length === 1 && networks[0]!.aliases.length === 0 && networks[0]!.name === `${spec.stack}_default`)) spec.networks = networks;
  else delete spec.networks;
  const labels = { ...svc.labels };
  delete labels[SERVICES_LABEL];
  const doc = { kind, apiVersion: '', name, obj: {}, base: [], line: () => undefined } as KDoc;
  return { doc, spec, pod: { labels: { ...svc.spec.container.labels }, ports: own.ports }, labels, earlier: { touched: false } };
}

/** readWorkload translates a workload document, or says why it cannot. */
export function readWorkload(d: KDoc, issues: Issues, world: World): Workload | undefined {
  const o = d.obj;
  const spec = isObj(o.spec) ? o.spec : {};
  if (!isObj(o.spec) && d.kind !== 'Pod') {
    issues.error(d, ['spec'], `a ${d.kind} needs a spec`);
    return undefined;
  }
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(d.name) || d.name.length > 63) {
    issues.error(d, ['metadata', 'name'], 'a name of lowercase letters, digits, "-" and ".", at most 63');
    return undefined;
  }
  let podAt: PathSegment[];
  let template: Obj | undefined;
  if (d.kind === 'Pod') {
    podAt = ['spec'];
    template = { metadata: o.metadata, spec: o.spec };
  } else if (d.kind === 'CronJob') {
    const jt = isObj(spec.jobTemplate) ? spec.jobTemplate : undefined;
    podAt = ['spec', 'jobTemplate', 'spec', 'template', 'spec'];
    template = jt && isObj(jt.spec) && isObj(jt.spec.template) ? jt.spec.template : undefined;
  } else {
    podAt = ['spec', 'template', 'spec'];
    template = isObj(spec.template) ? spec.template : undefined;
  }
  if (!template) {
    issues.error(d, podAt.slice(0, -1), 'a pod template is required');
    return undefined;
  }
  const podLabels = strMap(isObj(template.metadata) ? template.metadata.labels : undefined);
  // A selector must select the template's own pods (the API server refuses it otherwise).
  if (['Deployment', 'ReplicaSet', 'DaemonSet', 'StatefulSet'].includes(d.kind) || (d.kind === 'ReplicationController' && spec.selector !== undefined)) {
    const sel = d.kind === 'ReplicationController' ? { matchLabels: spec.selector } : isObj(spec.selector) ? spec.selector : undefined;
    // Before apps/v1 the selector defaulted to the template's labels.
    if (!sel && d.kind !== 'ReplicationController' && d.apiVersion === 'apps/v1') issues.error(d, ['spec', 'selector'], 'a selector is required');
    else if (sel && !selects(sel as Obj, podLabels)) issues.error(d, ['spec', 'selector'], "does not select the template's own labels");
  }
  const claims = d.kind === 'StatefulSet' ? claimTemplates(d, issues, spec) : new Set<string>();
  const pod = readPod(d, issues, world, podAt, template.spec, podLabels, claims);
  if (!pod) return undefined;
  // The pod's labels are its container's (docker inspect shows them); the workload's kind and name are the service's, for `baton get`.
  pod.container.labels = { ...podLabels };
  for (const c of [...(pod.sidecars ?? []), ...(pod.initContainers ?? [])]) c.container.labels = { ...podLabels };
  const labels = { ...strMap(isObj(o.metadata) ? o.metadata.labels : undefined), [KIND_LABEL]: d.kind, [NAME_LABEL]: d.name, [PORTS_LABEL]: JSON.stringify({ ports: pod.ports, hostPorts: pod.hostPorts }) };
  const s: ServiceSpec = {
    stack: world.stack,
    shortName: d.name,
    mode: 'replicated',
    replicas: 1,
    container: pod.container,
    ...podPorts(pod),
    resources: pod.resources,
    restartPolicy: { condition: pod.restart, ...CRASH_BACKOFF },
    placement: pod.placement,
    ...(pod.containerName ? { containerName: pod.containerName } : {}),
    ...(pod.sidecars ? { sidecars: pod.sidecars } : {}),
    ...(pod.initContainers ? { initContainers: pod.initContainers } : {}),
    x: {},
  };
  const int = (k: string, dflt: number, at: PathSegment[] = ['spec', k], from: Obj = spec): number => {
    const v = from[k];
    if (v === undefined || v === null) return dflt;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
    issues.error(d, at, 'must be a whole number, 0 or more');
    return dflt;
  };
  switch (d.kind) {
    case 'Deployment':
    case 'ReplicaSet':
    case 'ReplicationController':
      s.replicas = int('replicas', 1);
      if (pod.restart !== 'any') issues.error(d, [...podAt, 'restartPolicy'], `a ${d.kind}'s pods restart Always`);
      if (d.kind === 'Deployment') s.update = readStrategy(d, issues, spec, s.replicas);
      if (spec.minReadySeconds !== undefined) s.update = { ...(s.update ?? DEFAULT_UPDATE_CONFIG), monitorMs: 0, ...minReady(int('minReadySeconds', 0)) };
      if (spec.revisionHistoryLimit !== undefined) s.revisionHistoryLimit = int('revisionHistoryLimit', 10);
      if (spec.progressDeadlineSeconds !== undefined) s.update = { ...(s.update ?? DEFAULT_UPDATE_CONFIG), progressDeadlineMs: int('progressDeadlineSeconds', 600) * 1000 };
      if (spec.paused === true) issues.unsupported(d, ['spec', 'paused'], 'a paused Deployment', 'apply it when it should roll out');
      break;
    case 'StatefulSet': {
      s.replicas = int('replicas', 1);
      if (pod.restart !== 'any') issues.error(d, [...podAt, 'restartPolicy'], "a StatefulSet's pods restart Always");
      const policy = spec.podManagementPolicy ?? 'OrderedReady';
      if (policy !== 'OrderedReady' && policy !== 'Parallel') issues.error(d, ['spec', 'podManagementPolicy'], 'must be OrderedReady or Parallel');
      s.stateful = { ordered: policy !== 'Parallel', volumes: pod.claimMounts };
      const us = isObj(spec.updateStrategy) ? spec.updateStrategy : {};
      if (us.type === 'OnDelete') issues.unsupported(d, ['spec', 'updateStrategy', 'type'], 'OnDelete updates', 'Baton rolls a spec change out by its update settings');
      if (isObj(us.rollingUpdate) && us.rollingUpdate.partition !== undefined && us.rollingUpdate.partition !== 0) issues.unsupported(d, ['spec', 'updateStrategy', 'rollingUpdate', 'partition'], 'a partitioned update', 'a rollout updates every ordinal');
      // One ordinal at a time, the old one stopped first: it holds the ordinal's name and volume.
      s.update = { ...DEFAULT_UPDATE_CONFIG, parallelism: 1, order: 'stop-first', monitorMs: 0, ...minReady(int('minReadySeconds', 0)) };
      if (spec.persistentVolumeClaimRetentionPolicy !== undefined) issues.ignored(d, ['spec', 'persistentVolumeClaimRetentionPolicy'], "an ordinal's volume stays on its node until removed by hand (docker volume rm)");
      if (spec.revisionHistoryLimit !== undefined) s.revisionHistoryLimit = int('revisionHistoryLimit', 10);
      if (typeof spec.serviceName === 'string' && spec.serviceName !== '') world.governing.set(d.name, spec.serviceName);
      break;
    }
    case 'Pod':
      // A bare pod that is not restarted runs to completion once: a job of one.
      if (pod.restart !== 'any') {
        s.mode = 'replicated-job';
        s.job = { completions: 1, parallelism: 1, backoffLimit: pod.restart === 'none' ? 0 : 6 };
      }
      break;
    case 'DaemonSet': {
      s.mode = 'global';
      const us = isObj(spec.updateStrategy) ? spec.updateStrategy : {};
      if (us.type === 'OnDelete') issues.unsupported(d, ['spec', 'updateStrategy', 'type'], 'OnDelete updates', 'Baton rolls a spec change out by its update settings');
      const ru = isObj(us.rollingUpdate) ? us.rollingUpdate : {};
      const unavailable = typeof ru.maxUnavailable === 'number' ? ru.maxUnavailable : 1;
      s.update = { ...DEFAULT_UPDATE_CONFIG, parallelism: Math.max(1, unavailable), monitorMs: 0, ...minReady(int('minReadySeconds', 0)) };
      break;
    }
    case 'Job':
    case 'CronJob': {
      const jobSpec = d.kind === 'Job' ? spec : isObj(spec.jobTemplate) && isObj(spec.jobTemplate.spec) ? spec.jobTemplate.spec : {};
      const jat: PathSegment[] = d.kind === 'Job' ? ['spec'] : ['spec', 'jobTemplate', 'spec'];
      if (pod.restart === 'any') issues.error(d, [...podAt, 'restartPolicy'], "a job's pods restart Never or OnFailure");
      s.mode = 'replicated-job';
      const parallelism = int('parallelism', 1, [...jat, 'parallelism'], jobSpec);
      const job: JobSpec = { completions: int('completions', parallelism, [...jat, 'completions'], jobSpec), parallelism, backoffLimit: int('backoffLimit', 6, [...jat, 'backoffLimit'], jobSpec) };
      s.job = job;
      s.replicas = job.completions;
      for (const k of ['completionMode', 'podFailurePolicy', 'successPolicy', 'suspend', 'activeDeadlineSeconds']) {
        if (jobSpec[k] !== undefined && jobSpec[k] !== 'NonIndexed' && jobSpec[k] !== false) issues.unsupported(d, [...jat, k], `\`${k}\``, 'Baton runs a job\'s tasks to their completions, retrying up to backoffLimit');
      }
      if (jobSpec.ttlSecondsAfterFinished !== undefined) job.ttlAfterFinishedMs = int('ttlSecondsAfterFinished', 0, [...jat, 'ttlSecondsAfterFinished'], jobSpec) * 1000;
      if (d.kind === 'CronJob') s.schedule = readSchedule(d, issues, spec);
      break;
    }
  }
  return { doc: d, spec: s, pod, labels };
}

/** claimTemplates: the names of a StatefulSet's volumeClaimTemplates (each a volume per ordinal; the storage request is the node's to give). */
function claimTemplates(d: KDoc, issues: Issues, spec: Obj): Set<string> {
  const out = new Set<string>();
  if (spec.volumeClaimTemplates === undefined) return out;
  if (!Array.isArray(spec.volumeClaimTemplates)) {
    issues.error(d, ['spec', 'volumeClaimTemplates'], 'must be a list');
    return out;
  }
  spec.volumeClaimTemplates.forEach((t, i) => {
    const name = isObj(t) && isObj(t.metadata) && typeof t.metadata.name === 'string' ? t.metadata.name : undefined;
    if (!name || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) return issues.error(d, ['spec', 'volumeClaimTemplates', i, 'metadata', 'name'], 'a claim needs a name of lowercase letters, digits, "-" and "."');
    out.add(name);
    const cs = isObj(t) && isObj(t.spec) ? t.spec : {};
    if (cs.storageClassName !== undefined && cs.storageClassName !== null) issues.ignored(d, ['spec', 'volumeClaimTemplates', i, 'spec', 'storageClassName'], "each ordinal's volume is a local volume on its node");
  });
  return out;
}

/** minReady: minReadySeconds as UpdateConfig.minReadyMs (a new pod is available once ready that long), absent for 0. */
function minReady(seconds: number): { minReadyMs?: number } {
  return seconds > 0 ? { minReadyMs: seconds * 1000 } : {};
}

/** readStrategy: a Deployment's strategy as Baton's rollout. */
function readStrategy(d: KDoc, issues: Issues, spec: Obj, replicas: number): UpdateConfig {
  const st = isObj(spec.strategy) ? spec.strategy : {};
  if (st.type === 'Recreate') return { ...DEFAULT_UPDATE_CONFIG, parallelism: 0, order: 'stop-first', monitorMs: 0 };
  const ru = isObj(st.rollingUpdate) ? st.rollingUpdate : {};
  const amount = (v: unknown, dflt: string, round: (x: number) => number, at: PathSegment[]): number => {
    const x = v ?? dflt;
    if (typeof x === 'number' && Number.isInteger(x) && x >= 0) return x;
    const m = typeof x === 'string' ? /^(\d+)%$/.exec(x) : null;
    if (m) return round((Number(m[1]) / 100) * Math.max(1, replicas));
    issues.error(d, at, 'must be a whole number or a percentage');
    return 1;
  };
  const surge = amount(ru.maxSurge, '25%', Math.ceil, ['spec', 'strategy', 'rollingUpdate', 'maxSurge']);
  const unavailable = amount(ru.maxUnavailable, '25%', Math.floor, ['spec', 'strategy', 'rollingUpdate', 'maxUnavailable']);
  if (surge === 0 && unavailable === 0) issues.error(d, ['spec', 'strategy', 'rollingUpdate'], 'maxSurge and maxUnavailable cannot both be 0');
  // Surge: each new task starts before an old one stops (start-first), so no capacity is lost; else stop-first.
  return surge > 0 ? { ...DEFAULT_UPDATE_CONFIG, parallelism: surge, order: 'start-first', monitorMs: 0 } : { ...DEFAULT_UPDATE_CONFIG, parallelism: Math.max(1, unavailable), order: 'stop-first', monitorMs: 0 };
}

function readSchedule(d: KDoc, issues: Issues, spec: Obj): ScheduleSpec | undefined {
  if (typeof spec.schedule !== 'string' || spec.schedule.trim() === '') {
    issues.error(d, ['spec', 'schedule'], 'a cron schedule is required');
    return undefined;
  }
  const concurrency = ({ Allow: 'allow', Forbid: 'forbid', Replace: 'replace' } as const)[String(spec.concurrencyPolicy ?? 'Allow') as 'Allow'];
  if (!concurrency) issues.error(d, ['spec', 'concurrencyPolicy'], 'must be Allow, Forbid or Replace');
  if (spec.suspend === true) issues.unsupported(d, ['spec', 'suspend'], 'a suspended CronJob', 'apply it when it should run');
  if (spec.startingDeadlineSeconds !== undefined) issues.ignored(d, ['spec', 'startingDeadlineSeconds'], 'a firing missed while no server led is not run later');
  const n = (v: unknown, dflt: number) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : dflt);
  return {
    cron: spec.schedule.trim(),
    ...(typeof spec.timeZone === 'string' ? { timeZone: spec.timeZone } : {}),
    concurrency: concurrency ?? 'allow',
    successfulHistory: n(spec.successfulJobsHistoryLimit, 3),
    failedHistory: n(spec.failedJobsHistoryLimit, 1),
  };
}
