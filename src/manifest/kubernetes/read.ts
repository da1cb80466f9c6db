/**
 * readKubernetes: Kubernetes manifests in, Baton services, configs and
 * secrets out, the way readCompose does it for Compose: every problem at
 * once with its document, key path and line, and nothing at all when there
 * is any error (nothing half-read is applied).
 *
 * Pipeline: documents (Lists opened) → the kind table → the stack (the
 * namespace, or --stack) → ConfigMaps, Secrets and PriorityClasses → the
 * workloads → the Services and HPAs that add to them.
 */
import type { ErrorDetail } from '../../base/errors.js';
import { STACK_LABEL, type ComposeResult, type ComposeService } from '../compose/types.js';
import { Issues, parseDocuments, type KDoc } from './documents.js';
import { KIND_RULES } from './kinds.js';
import { applyAutoscaler, applyDisruptionBudget, applyPodTerms, applyService } from './services.js';
import { World, type EarlierFile } from './world.js';
import { earlierWorkload, HPA_LABEL, readWorkload, type Workload } from './workloads.js';
import { attachService } from './services.js';
import { PDB_LABEL, serviceRecords } from './labels.js';
import type { ServiceSpec } from '../../api/types.js';

export interface KubernetesReadOptions {
  /** --stack: every document goes into it, whatever its namespace. */
  stack?: string;
  ignoreUnsupported?: boolean;
  /**
   * What earlier applies made in the stack (the CLI lists them): workloads
   * a Service or HPA of this apply may select, and the Services and HPAs
   * kept on a workload this apply brings again; ConfigMap and Secret keys
   * a volume may mount.
   */
  earlier?: { services: { spec: ServiceSpec; labels: Record<string, string> }[]; files: EarlierFile[] };
}

const WORKLOADS = new Set(['Deployment', 'ReplicaSet', 'ReplicationController', 'Pod', 'DaemonSet', 'Job', 'CronJob', 'StatefulSet']);
const STACK_NAME = /^[a-z0-9][a-z0-9_-]*$/;

export function readKubernetes(files: { name: string; text: string }[], opts: KubernetesReadOptions = {}): ComposeResult {
  const issues = new Issues(!!opts.ignoreUnsupported);
  const empty = (stack: string): ComposeResult => ({ stack, services: [], secrets: [], configs: [], warnings: sortIssues(issues.warnings), errors: sortIssues(issues.errors) });
  let docs: KDoc[];
  try {
    docs = parseDocuments(files, issues);
  } catch (e) {
    issues.errors.push({ path: files[0]?.name ?? 'input', message: `internal error while reading: ${e instanceof Error ? e.message : String(e)}` });
    return empty(opts.stack ?? 'default');
  }

  // The kind table.
  const kept: KDoc[] = [];
  for (const d of docs) {
    const rule = Object.hasOwn(KIND_RULES, d.kind) ? KIND_RULES[d.kind]! : undefined;
    if (!rule) {
      issues.unsupported(d, ['kind'], `${d.kind} ${d.name} (${d.apiVersion})`, d.apiVersion.includes('.') && !d.apiVersion.includes('k8s.io') ? 'a custom resource needs its controller, which needs the Kubernetes API' : 'Baton does not know this kind');
      continue;
    }
    if (rule.action === 'refuse') {
      issues.unsupported(d, ['kind'], `${d.kind} ${d.name}`, rule.reason);
      continue;
    }
    if (rule.action === 'warn') {
      issues.warn(d, ['kind'], `${d.kind} ${d.name} is accepted and ignored: ${rule.reason}`);
      continue;
    }
    if (!rule.apiVersions.includes(d.apiVersion)) {
      issues.error(d, ['apiVersion'], `${d.kind} is read at ${rule.apiVersions.join(', ')}, not ${d.apiVersion}`);
      continue;
    }
    if (!d.name) {
      issues.error(d, ['metadata', 'name'], `a ${d.kind} needs a name`);
      continue;
    }
    kept.push(d);
  }

  // The stack: --stack, else the one namespace the documents are in.
  let stack = opts.stack;
  if (stack !== undefined) {
    if (!STACK_NAME.test(stack)) issues.errors.push({ path: '--stack', message: `invalid stack name "${stack}": use lowercase letters, digits, "_" and "-", starting with a letter or digit` });
  } else {
    const namespaces = new Set<string>(kept.map((d) => (d.kind === 'Namespace' ? d.name : d.namespace)).filter((n): n is string => !!n));
    if (namespaces.size > 1) issues.errors.push({ path: 'metadata.namespace', message: `the documents are in several namespaces (${[...namespaces].sort().join(', ')}): one apply is one stack; apply each namespace apart, or give --stack` });
    stack = [...namespaces][0] ?? 'default';
  }
  const world = new World(stack, opts.earlier?.files ?? []);
  for (const d of kept) if (['ConfigMap', 'Secret', 'PriorityClass'].includes(d.kind)) world.gather(d, issues);

  const workloads: Workload[] = [];
  const names = new Map<string, KDoc>();
  for (const d of kept) {
    if (!WORKLOADS.has(d.kind)) continue;
    const other = names.get(d.name);
    if (other) {
      issues.error(d, ['metadata', 'name'], `${other.kind} ${d.name} has this name already: each workload is a Baton service named after it`);
      continue;
    }
    names.set(d.name, d);
    const w = readWorkload(d, issues, world);
    if (w) workloads.push(w);
  }
  // The workloads of earlier applies in the stack, which this apply's Services and HPAs may select.
  const earlier = new Map<string, { svc: { spec: ServiceSpec; labels: Record<string, string> }; w: Workload }>();
  for (const svc of opts.earlier?.services ?? []) {
    const w = earlierWorkload(svc);
    if (w && svc.labels[STACK_LABEL] === stack) earlier.set(w.doc.name, { svc, w });
  }
  const external = [...earlier.values()].map((e) => e.w).filter((w) => !names.has(w.doc.name));
  const candidates = [...workloads, ...external];
  for (const w of workloads) applyPodTerms(w, issues, candidates, stack);
  for (const d of kept) if (d.kind === 'Service') applyService(d, issues, candidates, stack);
  for (const d of kept) if (d.kind === 'HorizontalPodAutoscaler') applyAutoscaler(d, issues, candidates);
  for (const d of kept) if (d.kind === 'PodDisruptionBudget') applyDisruptionBudget(d, issues, candidates, stack);
  // A workload of an earlier apply keeps the Services and HPA that earlier applies gave it and this one does not name.
  const servicesHere = new Set(kept.filter((d) => d.kind === 'Service').map((d) => d.name));
  const hpasHere = new Set(kept.filter((d) => d.kind === 'HorizontalPodAutoscaler').map((d) => d.name));
  const pdbsHere = new Set(kept.filter((d) => d.kind === 'PodDisruptionBudget').map((d) => d.name));
  for (const w of [...workloads, ...external.filter((x) => x.earlier!.touched)]) {
    const before = earlier.get(w.doc.name)?.svc;
    if (!before) continue;
    for (const rec of serviceRecords(before.labels)) {
      if (servicesHere.has(rec.name)) continue;
      const problem = attachService(w, rec, stack);
      if (problem) issues.warnings.push({ path: `${w.doc.kind} ${w.doc.name}`, message: `Service ${rec.name} of an earlier apply no longer fits it: ${problem}` });
    }
    const hpa = before.labels[HPA_LABEL];
    if (hpa && !hpasHere.has(hpa) && before.spec.autoscale && !w.spec.autoscale) {
      w.spec.autoscale = before.spec.autoscale;
      w.labels[HPA_LABEL] = hpa;
    }
    const pdb = before.labels[PDB_LABEL];
    if (pdb && !pdbsHere.has(pdb) && before.spec.disruptionBudget && !w.spec.disruptionBudget) {
      w.spec.disruptionBudget = before.spec.disruptionBudget;
      w.labels[PDB_LABEL] = pdb;
    }
  }

  if (issues.errors.length) return empty(stack);
  const services: ComposeService[] = [...workloads, ...external.filter((x) => x.earlier!.touched)].map((w) => ({ name: `${stack}_${w.spec.shortName}`, shortName: w.spec.shortName, spec: w.spec, labels: { ...w.labels, [STACK_LABEL]: stack! } }));
  return { stack, services, secrets: world.files('secret'), configs: world.files('config'), warnings: sortIssues(issues.warnings), errors: [] };
}

function sortIssues(list: ErrorDetail[]): ErrorDetail[] {
  return list
    .map((d, i) => ({ d, i }))
    .sort((a, b) => a.d.path.split(/[.[]/)[0]!.localeCompare(b.d.path.split(/[.[]/)[0]!) || (a.d.line ?? Number.MAX_SAFE_INTEGER) - (b.d.line ?? Number.MAX_SAFE_INTEGER) || a.i - b.i)
    .map(({ d }) => d);
}
