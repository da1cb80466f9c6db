/**
 * Services, HorizontalPodAutoscalers and PodDisruptionBudgets, which add to
 * the workloads they select:
 *
 * - a Service's selector finds the one workload of the apply whose pods it
 *   selects; its name, when not the workload's own, becomes a name the
 *   workload answers to (`<name>` and `<name>.<namespace>.svc.cluster.local`);
 * - ClusterIP ports are served on the workload's VIP: its container port,
 *   and the Service's port when it is another (ServiceSpec.vipPorts);
 *   NodePort and LoadBalancer ports are published on every node by the
 *   routing mesh (`nodePort`, else the port for a LoadBalancer, else a port
 *   of 30000-32767 derived from the Service's name and port, the same on
 *   every apply);
 * - an HPA's target workload autoscales (cpu and memory utilisation of the
 *   requests, stabilization windows);
 * - a PodDisruptionBudget's minAvailable or maxUnavailable becomes the
 *   disruption budget of each workload whose pods it selects.
 */
import { createHash } from 'node:crypto';
import { defaultNetwork, type AutoscaleSpec } from '../../api/types.js';
import { isObj, type Issues, type KDoc } from './documents.js';
import { selects, validPort } from './pod.js';
import type { Workload } from './workloads.js';
import { HPA_LABEL, PDB_LABEL, SERVICES_LABEL, serviceRecords, type ServiceRecord } from './labels.js';

export { serviceRecords, type ServiceRecord };

/** nodePortFor: a stable port of Kubernetes' NodePort range for a Service port that names none. */
export function nodePortFor(namespace: string, service: string, port: number): number {
  const h = createHash('sha256').update(`${namespace}/${service}/${port}`).digest();
  return 30000 + (h.readUInt32BE(0) % 2768);
}

/**
 * applyService reads a Service and adds it to the one workload it selects,
 * among this apply's and, when the CLI found them, the stack's earlier ones.
 */
export function applyService(d: KDoc, issues: Issues, workloads: Workload[], stack: string): void {
  const spec = isObj(d.obj.spec) ? d.obj.spec : {};
  const type = typeof spec.type === 'string' ? spec.type : 'ClusterIP';
  if (type === 'ExternalName') return issues.unsupported(d, ['spec', 'type'], 'an ExternalName Service', "Baton's names resolve to the cluster's services; give the program the outside name itself");
  if (type !== 'ClusterIP' && type !== 'NodePort' && type !== 'LoadBalancer') return issues.error(d, ['spec', 'type'], 'must be ClusterIP, NodePort, LoadBalancer or ExternalName');
  if (!isObj(spec.selector) || Object.keys(spec.selector).length === 0) return issues.unsupported(d, ['spec', 'selector'], 'a Service without a selector', 'Baton keeps endpoints itself, from the pods a selector finds');
  const sel = { matchLabels: spec.selector };
  const matched = workloads.filter((w) => selects(sel, w.pod.labels));
  if (matched.length === 0) return issues.error(d, ['spec', 'selector'], `selects no pod of this apply or of an earlier one in ${stack} (${Object.entries(spec.selector).map(([k, v]) => `${k}=${String(v)}`).join(', ')})`);
  if (matched.length > 1) return issues.unsupported(d, ['spec', 'selector'], `a Service over the pods of several workloads (${matched.map((w) => `${w.doc.kind} ${w.doc.name}`).join(', ')})`, 'a Baton service is one workload; give each its own Service');
  const w = matched[0]!;
  for (const k of ['externalIPs', 'loadBalancerIP', 'loadBalancerSourceRanges']) if (spec[k] !== undefined) issues.unsupported(d, ['spec', k], `\`${k}\``, "a published port is on every node's address");
  if (spec.sessionAffinity === 'ClientIP') issues.warn(d, ['spec', 'sessionAffinity'], "ignored: Baton's mesh balances each connection (round robin or least connections)");
  if (spec.externalTrafficPolicy === 'Local') issues.warn(d, ['spec', 'externalTrafficPolicy'], "ignored: a published port reaches the service's tasks on every node (the PROXY protocol, x-baton.lb, keeps the client's address)");
  if (spec.clusterIP === 'None') issues.warn(d, ['spec', 'clusterIP'], `a headless Service: ${d.name} resolves to a virtual IP in Baton; tasks.${d.name} resolves to the pods' own addresses`);
  const ports = Array.isArray(spec.ports) ? spec.ports : [];
  if (ports.length === 0) issues.error(d, ['spec', 'ports'], 'a Service needs a port');
  const rec: ServiceRecord = { name: d.name, type, ports: [] };
  ports.forEach((p, i) => {
    const at = ['spec', 'ports', i];
    if (!isObj(p) || !validPort(p.port)) return issues.error(d, [...at, 'port'], 'must be a port number (1-65535)');
    const protocol = p.protocol === undefined || p.protocol === 'TCP' ? 'tcp' : p.protocol === 'UDP' ? 'udp' : undefined;
    if (!protocol) return issues.unsupported(d, [...at, 'protocol'], `protocol ${String(p.protocol)}`, 'Baton carries TCP and UDP');
    let target = p.port;
    if (p.targetPort !== undefined) {
      if (validPort(p.targetPort)) target = p.targetPort;
      else if (typeof p.targetPort === 'string') {
        const named = w.pod.ports.find((x) => x.name === p.targetPort);
        if (!named) return issues.error(d, [...at, 'targetPort'], `names no port of ${w.doc.kind} ${w.doc.name}'s container ("${p.targetPort}")`);
        target = named.port;
      } else return issues.error(d, [...at, 'targetPort'], "must be a port number or a container port's name");
    }
    if (!w.pod.ports.some((x) => x.port === target) && w.pod.ports.length > 0) issues.warn(d, [...at, 'targetPort'], `${target} is not among the container's declared ports (${w.pod.ports.map((x) => x.port).join(', ')})`);
    if (p.port !== target && protocol === 'udp') return issues.unsupported(d, [...at, 'port'], `a UDP Service port (${p.port}) that is not its targetPort (${target})`, `the service's virtual IP serves UDP on its container ports; make port ${target}`);
    if (p.nodePort !== undefined && !validPort(p.nodePort)) return issues.error(d, [...at, 'nodePort'], 'must be a port number (1-65535)');
    rec.ports.push({ port: p.port, target, protocol, ...(type !== 'ClusterIP' ? { nodePort: (p.nodePort as number | undefined) ?? (type === 'LoadBalancer' ? p.port : nodePortFor(stack, d.name, p.port)) } : {}) });
  });
  const problem = attachService(w, rec, stack);
  if (problem) issues.error(d, ['spec', 'ports'], problem);
  if (w.earlier) w.earlier.touched = true;
}

/**
 * attachService adds a Service to its workload: its name (when not the
 * workload's own), its ports on the VIP (the container port, and the
 * Service's when it is another), published ports, and the record itself.
 * A record of the same name is replaced (the Service applied again).
 */
export function attachService(w: Workload, rec: ServiceRecord, stack: string): string | undefined {
  w.labels[SERVICES_LABEL] = JSON.stringify([...serviceRecords(w.labels).filter((r) => r.name !== rec.name), rec]);
  if (rec.name !== w.spec.shortName) {
    const nets = w.spec.networks?.length ? w.spec.networks : [{ name: defaultNetwork(stack), aliases: [] }];
    w.spec.networks = nets.map((n) => ({ ...n, aliases: [...new Set([...n.aliases, rec.name])] }));
  }
  for (const p of rec.ports) {
    if (p.protocol === 'tcp' && !w.spec.expose.includes(p.target)) w.spec.expose.push(p.target);
    if (p.protocol === 'tcp' && p.port !== p.target) {
      const taken = (w.spec.vipPorts ?? []).find((v) => v.port === p.port);
      if (taken && taken.target !== p.target) return `port ${p.port} of ${w.spec.shortName}'s VIP reaches ${taken.target} already`;
      if (!taken) w.spec.vipPorts = [...(w.spec.vipPorts ?? []), { port: p.port, target: p.target }];
    }
    if (p.protocol === 'udp' && !w.spec.ports.some((x) => x.target === p.target && x.protocol === 'udp')) w.spec.ports.push({ target: p.target, protocol: 'udp', mode: 'ingress' });
    if (p.nodePort !== undefined) {
      const existing = w.spec.ports.find((x) => x.published === p.nodePort && x.protocol === p.protocol);
      if (existing && existing.target !== p.target) return `port ${p.nodePort} is published already for ${existing.target}`;
      if (!existing) {
        // The VIP-only UDP entry gives way to the published one.
        w.spec.ports = w.spec.ports.filter((x) => !(x.protocol === p.protocol && x.target === p.target && x.published === undefined));
        w.spec.ports.push({ target: p.target, published: p.nodePort, protocol: p.protocol, mode: 'ingress' });
      }
    }
  }
  return undefined;
}

export function applyAutoscaler(d: KDoc, issues: Issues, workloads: Workload[]): void {
  const spec = isObj(d.obj.spec) ? d.obj.spec : {};
  const ref = isObj(spec.scaleTargetRef) ? spec.scaleTargetRef : {};
  const w = workloads.find((x) => x.doc.kind === ref.kind && x.doc.name === ref.name);
  if (!w) return issues.error(d, ['spec', 'scaleTargetRef'], `${String(ref.kind)} ${String(ref.name)} is not a workload of this apply`);
  if (w.spec.mode !== 'replicated') return issues.error(d, ['spec', 'scaleTargetRef'], `${w.doc.kind} ${w.doc.name} does not scale by replicas`);
  const max = spec.maxReplicas;
  const min = spec.minReplicas ?? 1;
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 1) return issues.error(d, ['spec', 'maxReplicas'], 'must be a whole number, 1 or more');
  if (typeof min !== 'number' || !Number.isInteger(min) || min < 0 || min > max) return issues.error(d, ['spec', 'minReplicas'], `must be a whole number from 0 to maxReplicas (${max})`);
  const a: AutoscaleSpec = { min, max, scaleUp: { stabilizationMs: 0 }, scaleDown: { stabilizationMs: 300_000 } };
  if (typeof spec.targetCPUUtilizationPercentage === 'number') a.cpu = spec.targetCPUUtilizationPercentage / 100;
  const metrics = Array.isArray(spec.metrics) ? spec.metrics : [];
  metrics.forEach((m, i) => {
    const at = ['spec', 'metrics', i];
    const r = isObj(m) && m.type === 'Resource' && isObj(m.resource) ? m.resource : undefined;
    if (!r) return issues.unsupported(d, at, `a ${isObj(m) ? String(m.type) : ''} metric`, 'Baton scales on cpu and memory utilisation (and, with x-baton.autoscale, requests and connections)');
    const t = isObj(r.target) ? r.target : {};
    const pct = typeof t.averageUtilization === 'number' ? t.averageUtilization : typeof r.targetAverageUtilization === 'number' ? r.targetAverageUtilization : undefined;
    if (pct === undefined || pct <= 0) return issues.unsupported(d, [...at, 'resource', 'target'], 'a target other than averageUtilization', 'Baton scales on utilisation of the requests');
    if (r.name === 'cpu') a.cpu = pct / 100;
    else if (r.name === 'memory') a.memory = pct / 100;
    else issues.unsupported(d, [...at, 'resource', 'name'], `the resource ${String(r.name)}`, 'Baton scales on cpu and memory');
  });
  if (a.cpu === undefined && a.memory === undefined) {
    if (metrics.length === 0 && spec.targetCPUUtilizationPercentage === undefined) a.cpu = 0.8; // the HPA's default: 80% CPU
    else return;
  }
  const b = isObj(spec.behavior) ? spec.behavior : {};
  for (const [dir, into] of [['scaleUp', a.scaleUp], ['scaleDown', a.scaleDown]] as const) {
    const x = isObj(b[dir]) ? b[dir] : undefined;
    if (!x) continue;
    if (typeof x.stabilizationWindowSeconds === 'number') into.stabilizationMs = x.stabilizationWindowSeconds * 1000;
    if (x.policies !== undefined) issues.warn(d, ['spec', 'behavior', dir, 'policies'], 'ignored: Baton moves straight to the replicas the metrics ask for, within the stabilization window');
  }
  w.spec.autoscale = a;
  w.labels[HPA_LABEL] = d.name;
  if (w.earlier) w.earlier.touched = true;
}

/** applyDisruptionBudget gives each workload whose pods the PodDisruptionBudget selects its budget. */
export function applyDisruptionBudget(d: KDoc, issues: Issues, workloads: Workload[], stack: string): void {
  const spec = isObj(d.obj.spec) ? d.obj.spec : {};
  const amount = (k: 'minAvailable' | 'maxUnavailable'): number | string | undefined => {
    const v = spec[k];
    if (v === undefined) return undefined;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
    if (typeof v === 'string' && /^(100|[1-9]?[0-9])%$/.test(v)) return v;
    issues.error(d, ['spec', k], 'must be a whole number or a percentage ("50%")');
    return undefined;
  };
  const min = amount('minAvailable');
  const max = amount('maxUnavailable');
  if (min !== undefined && max !== undefined) return issues.error(d, ['spec'], 'give one of minAvailable and maxUnavailable');
  if (min === undefined && max === undefined) {
    if (spec.minAvailable === undefined && spec.maxUnavailable === undefined) issues.error(d, ['spec'], 'needs minAvailable or maxUnavailable');
    return;
  }
  if (spec.unhealthyPodEvictionPolicy !== undefined) issues.warn(d, ['spec', 'unhealthyPodEvictionPolicy'], 'ignored: a task that is not ready never counts towards the budget, and stopping it never needs one');
  const sel = isObj(spec.selector) ? spec.selector : undefined;
  const matched = sel ? workloads.filter((w) => selects(sel, w.pod.labels)) : [];
  if (matched.length === 0) return issues.error(d, ['spec', 'selector'], `selects no pod of this apply or of an earlier one in ${stack}`);
  if (matched.length > 1) issues.warn(d, ['spec', 'selector'], `covers several workloads (${matched.map((w) => `${w.doc.kind} ${w.doc.name}`).join(', ')}): each keeps the budget on its own tasks`);
  for (const w of matched) {
    if (w.spec.mode !== 'replicated') {
      issues.warn(d, ['spec', 'selector'], `${w.doc.kind} ${w.doc.name} is not replicated: a drain stops its tasks without a budget, as kubectl drain leaves DaemonSet pods and jobs`);
      continue;
    }
    w.spec.disruptionBudget = min !== undefined ? { minAvailable: min } : { maxUnavailable: max! };
    w.labels[PDB_LABEL] = d.name;
    if (w.earlier) w.earlier.touched = true;
  }
}

/**
 * applyPodTerms resolves a workload's pod (anti-)affinity terms over other
 * workloads' pods: each workload a term selects becomes a service its tasks
 * are placed with (affinity) or away from (anti-affinity), by node, required
 * or preferred. A required affinity that selects nothing is an error (its
 * pods could never be placed); any other term that does is warned about.
 */
export function applyPodTerms(w: Workload, issues: Issues, workloads: Workload[], stack: string): void {
  for (const t of w.pod.podTerms ?? []) {
    const matched = workloads.filter((x) => x !== w && selects(t.selector, x.pod.labels));
    if (matched.length === 0) {
      const what = `selects no pod of this apply or of an earlier one in ${stack}`;
      // Required affinity to no pod can never be met; anti-affinity to none always is.
      if (t.required && !t.anti) issues.error(w.doc, [...t.at, 'labelSelector'], `${what}: the pods could never be placed`);
      else issues.warn(w.doc, [...t.at, 'labelSelector'], `${what}; ignored`);
      continue;
    }
    const list = (t.anti ? (w.spec.placement.antiAffinity ??= []) : (w.spec.placement.affinity ??= []));
    for (const x of matched) {
      const service = `${stack}_${x.spec.shortName}`;
      if (!list.some((e) => e.service === service)) list.push({ service, required: t.required });
    }
  }
}
