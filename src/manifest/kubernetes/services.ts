/**
 * Services and HorizontalPodAutoscalers, which add to the workloads they
 * select:
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
 *   requests, stabilization windows).
 */
import { createHash } from 'node:crypto';
import { defaultNetwork, type AutoscaleSpec } from '../../api/types.js';
import { isObj, type Issues, type KDoc } from './documents.js';
import { selects, validPort } from './pod.js';
import { HPA_LABEL, SERVICES_LABEL, type Workload } from './workloads.js';

/** nodePortFor: a stable port of Kubernetes' NodePort range for a Service port that names none. */
export function nodePortFor(namespace: string, service: string, port: number): number {
  const h = createHash('sha256').update(`${namespace}/${service}/${port}`).digest();
  return 30000 + (h.readUInt32BE(0) % 2768);
}

export function applyService(d: KDoc, issues: Issues, workloads: Workload[], stack: string): void {
  const spec = isObj(d.obj.spec) ? d.obj.spec : {};
  const type = typeof spec.type === 'string' ? spec.type : 'ClusterIP';
  if (type === 'ExternalName') return issues.unsupported(d, ['spec', 'type'], 'an ExternalName Service', "Baton's names resolve to the cluster's services; give the program the outside name itself");
  if (!['ClusterIP', 'NodePort', 'LoadBalancer'].includes(type)) return issues.error(d, ['spec', 'type'], 'must be ClusterIP, NodePort, LoadBalancer or ExternalName');
  if (!isObj(spec.selector) || Object.keys(spec.selector).length === 0) return issues.unsupported(d, ['spec', 'selector'], 'a Service without a selector', 'Baton keeps endpoints itself, from the pods a selector finds');
  const sel = { matchLabels: spec.selector };
  const matched = workloads.filter((w) => selects(sel, w.pod.labels));
  if (matched.length === 0) return issues.error(d, ['spec', 'selector'], `selects no pod of this apply (${Object.entries(spec.selector).map(([k, v]) => `${k}=${String(v)}`).join(', ')})`);
  if (matched.length > 1) return issues.unsupported(d, ['spec', 'selector'], `a Service over the pods of several workloads (${matched.map((w) => `${w.doc.kind} ${w.doc.name}`).join(', ')})`, 'a Baton service is one workload; give each its own Service');
  const w = matched[0]!;
  for (const k of ['externalIPs', 'loadBalancerIP', 'loadBalancerSourceRanges']) if (spec[k] !== undefined) issues.unsupported(d, ['spec', k], `\`${k}\``, "a published port is on every node's address");
  if (spec.sessionAffinity === 'ClientIP') issues.warn(d, ['spec', 'sessionAffinity'], "ignored: Baton's mesh balances each connection (round robin or least connections)");
  if (spec.externalTrafficPolicy === 'Local') issues.warn(d, ['spec', 'externalTrafficPolicy'], "ignored: a published port reaches the service's tasks on every node (the PROXY protocol, x-baton.lb, keeps the client's address)");
  if (spec.clusterIP === 'None') issues.warn(d, ['spec', 'clusterIP'], `a headless Service: ${d.name} resolves to a virtual IP in Baton; tasks.${d.name} resolves to the pods' own addresses`);

  // Its name, when it is not the workload's.
  if (d.name !== w.spec.shortName) {
    const nets = w.spec.networks?.length ? w.spec.networks : [{ name: defaultNetwork(stack), aliases: [] }];
    w.spec.networks = nets.map((n) => ({ ...n, aliases: [...new Set([...n.aliases, d.name])] }));
  }
  const ports = Array.isArray(spec.ports) ? spec.ports : [];
  if (ports.length === 0) issues.error(d, ['spec', 'ports'], 'a Service needs a port');
  // What `baton get services` shows: the Service as it was written, on the workload it became part of.
  const shown: string[] = [];
  const known = JSON.parse(w.labels[SERVICES_LABEL] ?? '[]') as { name: string; type: string; ports: string[] }[];
  known.push({ name: d.name, type, ports: shown });
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
      } else return issues.error(d, [...at, 'targetPort'], 'must be a port number or a container port\'s name');
    }
    if (!w.pod.ports.some((x) => x.port === target) && w.pod.ports.length > 0) issues.warn(d, [...at, 'targetPort'], `${target} is not among the container's declared ports (${w.pod.ports.map((x) => x.port).join(', ')})`);
    // On the VIP: the container port, and the Service's port when it is another (TCP).
    if (protocol === 'tcp' && !w.spec.expose.includes(target)) w.spec.expose.push(target);
    shown.push(`${p.port}${p.port !== target ? `:${target}` : ''}${type !== 'ClusterIP' ? `:${(p.nodePort as number | undefined) ?? (type === 'LoadBalancer' ? p.port : nodePortFor(stack, d.name, p.port))}` : ''}/${protocol.toUpperCase()}`);
    if (p.port !== target) {
      if (protocol === 'udp') issues.unsupported(d, [...at, 'port'], `a UDP Service port (${p.port}) that is not its targetPort (${target})`, `the service's virtual IP serves UDP on its container ports; make port ${target}`);
      else {
        const taken = (w.spec.vipPorts ?? []).find((v) => v.port === p.port);
        if (taken && taken.target !== target) return issues.error(d, [...at, 'port'], `port ${p.port} of ${w.spec.shortName}'s VIP reaches ${taken.target} already`);
        if (!taken) w.spec.vipPorts = [...(w.spec.vipPorts ?? []), { port: p.port, target }];
      }
    }
    if (protocol === 'udp' && !w.spec.ports.some((x) => x.target === target && x.protocol === 'udp')) w.spec.ports.push({ target, protocol: 'udp', mode: 'ingress' });
    if (type === 'NodePort' || type === 'LoadBalancer') {
      if (p.nodePort !== undefined && !validPort(p.nodePort)) return issues.error(d, [...at, 'nodePort'], 'must be a port number (1-65535)');
      const published = (p.nodePort as number | undefined) ?? (type === 'LoadBalancer' ? p.port : nodePortFor(stack, d.name, p.port));
      const existing = w.spec.ports.find((x) => x.published === published && x.protocol === protocol);
      if (existing && existing.target !== target) return issues.error(d, [...at, 'nodePort'], `port ${published} is published already for ${existing.target}`);
      if (!existing) {
        // The VIP-only UDP entry gives way to the published one.
        w.spec.ports = w.spec.ports.filter((x) => !(x.protocol === protocol && x.target === target && x.published === undefined));
        w.spec.ports.push({ target, published, protocol, mode: 'ingress' });
      }
    }
  });
  w.labels[SERVICES_LABEL] = JSON.stringify(known);
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
}
