/**
 * A pod template → what a Baton task runs: its containers (the first is the
 * task's main one, the others its sidecars, its init containers run before
 * them; container.ts reads each), the resources it reserves, placement,
 * restart condition and ports. Every field is translated, ignored with a
 * warning (it changes nothing that runs), or refused with the reason.
 */
import type { ContainerSpec, PlacementSpec, PodContainer, PortSpec, ResourceSpec, RestartPolicy, TaintEffect, Toleration } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { isObj, type Issues, type KDoc, type Obj } from './documents.js';
import { readContainer, type ClaimMount, type ContainerResult, type PodContext } from './container.js';
import type { World } from './world.js';

export { validPort } from './container.js';

export interface PodResult {
  container: ContainerSpec;
  resources: ResourceSpec;
  placement: PlacementSpec;
  restart: RestartPolicy['condition'];
  /** Container ports by number, with their names (a Service's named targetPort finds them). */
  ports: { port: number; name?: string; protocol: 'tcp' | 'udp' }[];
  /** hostPort: published on the task's node only. */
  hostPorts: PortSpec[];
  /** The pod template's labels (Services select on them). */
  labels: Record<string, string>;
  /** Mounts of a StatefulSet's volumeClaimTemplates (a volume per ordinal). */
  claimMounts: ClaimMount[];
  /** Pod (anti-)affinity terms over other workloads' pods, resolved once every workload is known. */
  podTerms: PodTerm[];
  /** With more than one container: the first one's name, and the others. */
  containerName?: string;
  sidecars?: PodContainer[];
  initContainers?: PodContainer[];
}

/** PodTerm: a pod (anti-)affinity term by host over the pods of other workloads. */
export interface PodTerm {
  anti: boolean;
  required: boolean;
  selector: Obj;
  at: PathSegment[];
}

const POD_FIELDS = new Set(['containers', 'initContainers', 'volumes', 'restartPolicy', 'terminationGracePeriodSeconds', 'nodeSelector', 'affinity', 'tolerations', 'priorityClassName', 'priority', 'topologySpreadConstraints', 'hostNetwork', 'hostname', 'securityContext']);
const POD_IGNORED: Record<string, string> = {
  serviceAccountName: 'pods get no Kubernetes API credentials in Baton',
  serviceAccount: 'pods get no Kubernetes API credentials in Baton',
  automountServiceAccountToken: 'pods get no Kubernetes API credentials in Baton',
  dnsPolicy: "a task resolves names through its node's resolver, which answers the cluster's names first",
  dnsConfig: "a task resolves names through its node's resolver, which answers the cluster's names first",
  enableServiceLinks: "Baton sets no <SERVICE>_HOST variables; services are found by name",
  subdomain: 'tasks are reached by their service name',
  schedulerName: "Baton's scheduler places every task",
  shareProcessNamespace: "a task's containers share its network namespace, not its processes",
  preemptionPolicy: 'a higher-priority task may always preempt lower ones',
  activeDeadlineSeconds: 'tasks run until they exit',
};
/** pod reads the pod spec at `at` (e.g. spec.template.spec) with the template's labels. */
export function readPod(d: KDoc, issues: Issues, world: World, at: PathSegment[], spec: unknown, labels: Record<string, string>, claims: ReadonlySet<string> = new Set()): PodResult | undefined {
  if (!isObj(spec)) {
    issues.error(d, at, 'a pod spec is required');
    return undefined;
  }
  const p = (...rest: PathSegment[]) => [...at, ...rest];
  for (const k of Object.keys(spec)) {
    if (POD_FIELDS.has(k)) continue;
    if (k in POD_IGNORED) issues.ignored(d, p(k), POD_IGNORED[k]!);
    else if (k === 'imagePullSecrets') continue;
    else issues.unsupported(d, p(k), `\`${k}\``);
  }
  const containers = Array.isArray(spec.containers) ? spec.containers : [];
  if (containers.length === 0) {
    issues.error(d, p('containers'), 'a pod needs a container');
    return undefined;
  }
  if (spec.initContainers !== undefined && !Array.isArray(spec.initContainers)) issues.error(d, p('initContainers'), 'must be a list of containers');
  const inits = Array.isArray(spec.initContainers) ? spec.initContainers : [];
  // An emptyDir that several containers mount is the task's shared directory, even when it asks for memory.
  const mounters = new Map<string, number>();
  for (const c of [...containers, ...inits]) {
    const names = new Set(isObj(c) && Array.isArray(c.volumeMounts) ? c.volumeMounts.filter(isObj).map((m) => String(m.name)) : []);
    for (const n of names) mounters.set(n, (mounters.get(n) ?? 0) + 1);
  }
  const pod: PodContext = { at, spec, claims, shared: new Set([...mounters].filter(([, n]) => n > 1).map(([k]) => k)) };
  const main = readContainer(d, issues, world, pod, p('containers', 0), containers[0], 'main');
  if (!main) return undefined;
  const more = containers.slice(1).map((c, i) => readContainer(d, issues, world, pod, p('containers', i + 1), c, 'sidecar'));
  const initial = inits.map((c, i) => readContainer(d, issues, world, pod, p('initContainers', i), c, 'init'));
  // A native sidecar (an init container that restarts Always) runs beside the main container, as the others do.
  const sidecars = [...initial.filter((c) => c?.sidecar), ...more].filter((c): c is ContainerResult => c !== undefined);
  const initContainers = initial.filter((c): c is ContainerResult => c !== undefined && !c.sidecar);
  const early = initial.findIndex((c, i) => c?.sidecar && initial.slice(i + 1).some((x) => x && !x.sidecar));
  if (early >= 0) issues.warn(d, p('initContainers', early), 'a sidecar among init containers starts with the main container in Baton, after every init container, not before the init containers that follow it');
  if (!main.name && (sidecars.length || initContainers.length)) issues.error(d, p('containers', 0, 'name'), 'a container of a pod with several needs a name, a lowercase DNS label (a-z, 0-9 and -, at most 63)');
  const seen = new Map<string, PathSegment[]>();
  [main, ...more, ...initial].forEach((c, i) => {
    if (!c?.name) return;
    const where = i === 0 ? p('containers', 0, 'name') : i <= more.length ? p('containers', i, 'name') : p('initContainers', i - 1 - more.length, 'name');
    if (seen.has(c.name)) issues.error(d, where, `another container of the pod is named "${c.name}"`);
    seen.set(c.name, where);
  });
  // imagePullSecrets: a kubernetes.io/dockerconfigjson Secret of this apply (or an earlier one) is the pull secret of every container.
  if (spec.imagePullSecrets !== undefined) {
    const list = spec.imagePullSecrets;
    if (!Array.isArray(list) || !list.every((x) => isObj(x) && typeof x.name === 'string')) issues.error(d, p('imagePullSecrets'), 'must be a list of {name: <Secret>}');
    else if (list.length) {
      if (list.length > 1) issues.warn(d, p('imagePullSecrets', 1), 'Baton pulls with one pull secret: the first');
      const name = String((list[0] as Obj).name);
      if (world.secret(name)?.entries.has('.dockerconfigjson')) {
        const pullSecret = { source: world.fileName(name, '.dockerconfigjson') };
        for (const c of [main, ...more, ...initial]) if (c) c.container.pullSecret = pullSecret;
      } else {
        issues.unsupported(d, p('imagePullSecrets', 0), `\`imagePullSecrets\` naming Secret "${name}", which these manifests do not define as a kubernetes.io/dockerconfigjson Secret`, 'log in with baton registry login SERVER and apply with --with-registry-auth');
      }
    }
  }
  // The task reserves what its containers ask for together, and at least what any init container does (they run before the others).
  const sum = (k: 'cpus' | 'memoryBytes') => Math.max([main, ...sidecars].reduce((n, c) => n + c.resources.reservations[k], 0), ...initContainers.map((c) => c.resources.reservations[k]));
  const resources: ResourceSpec = { reservations: { cpus: Math.round(sum('cpus') * 1000) / 1000, memoryBytes: sum('memoryBytes') }, limits: main.resources.limits };
  // The pod's ports are its containers' (they share one network namespace); an init container's are not served.
  const ports = [...main.ports, ...sidecars.flatMap((c) => c.ports)];
  const hostPorts: PortSpec[] = ports.filter((x) => x.hostPort).map((x) => ({ target: x.port, published: x.hostPort!, protocol: x.protocol, mode: 'host' as const }));
  const claimMounts = [main, ...sidecars, ...initContainers].flatMap((c) => c.claimMounts);
  const podContainer = (c: ContainerResult): PodContainer => ({ name: c.name!, container: c.container, resources: c.resources });
  const podTerms: PodTerm[] = [];
  const placement = readPlacement(d, issues, world, p(), spec, labels, podTerms);
  const restart = spec.restartPolicy === 'Never' ? 'none' : spec.restartPolicy === 'OnFailure' ? 'on-failure' : 'any';
  if (spec.restartPolicy !== undefined && !['Always', 'OnFailure', 'Never'].includes(String(spec.restartPolicy))) issues.error(d, p('restartPolicy'), 'must be Always, OnFailure or Never');
  return {
    container: main.container,
    resources,
    placement,
    restart,
    ports: ports.map(({ port, name, protocol }) => ({ port, protocol, ...(name ? { name } : {}) })),
    hostPorts,
    labels,
    claimMounts,
    podTerms,
    ...(main.name && (sidecars.length || initContainers.length) ? { containerName: main.name } : {}),
    ...(sidecars.length ? { sidecars: sidecars.map(podContainer) } : {}),
    ...(initContainers.length ? { initContainers: initContainers.map(podContainer) } : {}),
  };
}

function readPlacement(d: KDoc, issues: Issues, world: World, at: PathSegment[], spec: Obj, labels: Record<string, string>, podTerms: PodTerm[]): PlacementSpec {
  const placement: PlacementSpec = { constraints: [] };
  const nodeKey = (k: string): string | undefined => {
    if (k === 'kubernetes.io/hostname') return 'node.hostname';
    if (k === 'kubernetes.io/os' || k === 'beta.kubernetes.io/os') return 'node.platform.os';
    if (k === 'kubernetes.io/arch' || k === 'beta.kubernetes.io/arch') return 'node.platform.arch';
    return /^[\w.\-/]+$/.test(k) ? `node.labels.${k}` : undefined;
  };
  if (isObj(spec.nodeSelector)) {
    for (const [k, v] of Object.entries(spec.nodeSelector)) {
      const key = nodeKey(k);
      if (!key) issues.error(d, [...at, 'nodeSelector', k], 'a label key');
      else placement.constraints.push(`${key} == ${String(v)}`);
    }
  }
  if (isObj(spec.affinity)) {
    const a = spec.affinity;
    const as = [...at, 'affinity'];
    if (isObj(a.nodeAffinity)) {
      const req = a.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution;
      const terms = isObj(req) && Array.isArray(req.nodeSelectorTerms) ? req.nodeSelectorTerms : [];
      if (terms.length > 1) issues.unsupported(d, [...as, 'nodeAffinity', 'requiredDuringSchedulingIgnoredDuringExecution', 'nodeSelectorTerms', 1], 'several nodeSelectorTerms (any of them)', 'Baton\'s constraints must all hold');
      const exprs = isObj(terms[0]) && Array.isArray(terms[0].matchExpressions) ? terms[0].matchExpressions : [];
      exprs.forEach((e, i) => {
        const es = [...as, 'nodeAffinity', 'requiredDuringSchedulingIgnoredDuringExecution', 'nodeSelectorTerms', 0, 'matchExpressions', i];
        if (!isObj(e)) return;
        const key = nodeKey(String(e.key));
        const values = Array.isArray(e.values) ? e.values.map(String) : [];
        if (key && e.operator === 'In' && values.length === 1) placement.constraints.push(`${key} == ${values[0]}`);
        else if (key && e.operator === 'NotIn') for (const v of values) placement.constraints.push(`${key} != ${v}`);
        else issues.unsupported(d, es, `the node selector ${String(e.key)} ${String(e.operator)} ${values.join(',')}`, 'Baton\'s constraints are == and != of one value');
      });
      if (a.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution !== undefined) issues.ignored(d, [...as, 'nodeAffinity', 'preferredDuringSchedulingIgnoredDuringExecution'], 'preferred node affinity only ranks nodes; Baton spreads tasks instead');
    }
    // Pod (anti-)affinity: a term over the pods themselves by host is a spread (at most one per node when required);
    // a term over other workloads' pods is resolved once every workload is known (podTerms, read.ts).
    for (const anti of [true, false]) {
      const key = anti ? 'podAntiAffinity' : 'podAffinity';
      const pa = a[key];
      if (pa === undefined) continue;
      if (!isObj(pa)) {
        issues.error(d, [...as, key], 'must be a mapping');
        continue;
      }
      for (const [field, required] of [['requiredDuringSchedulingIgnoredDuringExecution', true], ['preferredDuringSchedulingIgnoredDuringExecution', false]] as const) {
        const list = pa[field];
        if (list === undefined) continue;
        if (!Array.isArray(list)) {
          issues.error(d, [...as, key, field], 'must be a list');
          continue;
        }
        list.forEach((entry, i) => {
          const at: PathSegment[] = [...as, key, field, i, ...(required ? [] : ['podAffinityTerm'])];
          const term = required ? entry : isObj(entry) ? entry.podAffinityTerm : undefined;
          if (!isObj(term)) return issues.error(d, at, 'must be a pod affinity term');
          if (term.topologyKey !== 'kubernetes.io/hostname') return issues.unsupported(d, [...at, 'topologyKey'], `a pod ${anti ? 'anti-' : ''}affinity by ${String(term.topologyKey)}`, 'Baton places tasks together or apart by node (kubernetes.io/hostname)');
          if (term.namespaces !== undefined || term.namespaceSelector !== undefined) return issues.unsupported(d, [...at, term.namespaces !== undefined ? 'namespaces' : 'namespaceSelector'], 'a term over other namespaces', "a workload's affinity names the services of its own stack");
          const sel = isObj(term.labelSelector) ? term.labelSelector : undefined;
          if (!sel) return issues.error(d, [...at, 'labelSelector'], 'a term needs a labelSelector');
          if (selects(sel, labels)) {
            if (!anti) return issues.ignored(d, at, "affinity to the workload's own pods: Baton places a service's tasks by its spread");
            if (required) placement.maxReplicasPerNode = 1;
            else placement.preferences = ['node.id'];
            return;
          }
          podTerms.push({ anti, required, selector: sel, at });
        });
      }
    }
  }
  if (Array.isArray(spec.topologySpreadConstraints)) {
    spec.topologySpreadConstraints.forEach((t, i) => {
      if (!isObj(t)) return;
      const key = String(t.topologyKey ?? '');
      const pref = key === 'kubernetes.io/hostname' ? 'node.id' : nodeKey(key);
      if (pref) placement.preferences = [...(placement.preferences ?? []).filter((x) => x !== pref), pref];
      else issues.error(d, [...at, 'topologySpreadConstraints', i, 'topologyKey'], 'a node label key');
    });
  }
  if (Array.isArray(spec.tolerations)) {
    const tolerations: Toleration[] = [];
    spec.tolerations.forEach((t, i) => {
      if (!isObj(t)) return;
      const op = t.operator === 'Exists' ? 'Exists' : 'Equal';
      const effect = typeof t.effect === 'string' && t.effect !== '' ? (t.effect as TaintEffect) : undefined;
      if (effect && !['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(effect)) return issues.error(d, [...at, 'tolerations', i, 'effect'], 'must be NoSchedule, PreferNoSchedule or NoExecute');
      if (t.tolerationSeconds !== undefined) issues.ignored(d, [...at, 'tolerations', i, 'tolerationSeconds'], 'a tolerated NoExecute taint is tolerated for good');
      tolerations.push({ operator: op, ...(typeof t.key === 'string' && t.key ? { key: t.key } : {}), ...(op === 'Equal' && t.value !== undefined ? { value: String(t.value) } : {}), ...(effect ? { effect } : {}) });
    });
    if (tolerations.length) placement.tolerations = tolerations;
  }
  if (typeof spec.priorityClassName === 'string') {
    const p = world.priority(spec.priorityClassName);
    if (p === undefined) issues.error(d, [...at, 'priorityClassName'], `PriorityClass "${spec.priorityClassName}" is not in this apply`);
    else placement.priority = p;
  } else if (typeof spec.priority === 'number') placement.priority = spec.priority;
  return placement;
}

/** selects: whether a label selector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) matches labels. */
export function selects(sel: Obj | undefined, labels: Record<string, string>): boolean {
  if (!sel) return false;
  const ml = isObj(sel.matchLabels) ? sel.matchLabels : {};
  for (const [k, v] of Object.entries(ml)) if (labels[k] !== String(v)) return false;
  const exprs = Array.isArray(sel.matchExpressions) ? sel.matchExpressions : [];
  for (const e of exprs) {
    if (!isObj(e)) return false;
    const k = String(e.key);
    const values = Array.isArray(e.values) ? e.values.map(String) : [];
    const has = Object.hasOwn(labels, k);
    if (e.operator === 'In' && !(has && values.includes(labels[k]!))) return false;
    if (e.operator === 'NotIn' && has && values.includes(labels[k]!)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return Object.keys(ml).length + exprs.length > 0;
}
