/**
 * The labels that say which Kubernetes object a Baton object came from, and
 * the Services recorded on a workload: what the reader writes and a later
 * apply or `baton get` reads back. Apart from the reader, so the CLI reads
 * them without loading it.
 */

/** The workload a service came from. */
export const KIND_LABEL = 'baton.kubernetes.kind';
export const NAME_LABEL = 'baton.kubernetes.name';
/** The Services that select it, as JSON ServiceRecords. */
export const SERVICES_LABEL = 'baton.kubernetes.services';
/** The HorizontalPodAutoscaler that scales it. */
export const HPA_LABEL = 'baton.kubernetes.hpa';
/** The PodDisruptionBudget that covers it. */
export const PDB_LABEL = 'baton.kubernetes.pdb';
/** Its container's ports (JSON: {ports, hostPorts}), so a later apply of a Service finds them and can take its own additions back off. */
export const PORTS_LABEL = 'baton.kubernetes.ports';
/** A config's or secret's key in its ConfigMap or Secret. */
export const KEY_LABEL = 'baton.kubernetes.key';

/** ServiceRecord: a Kubernetes Service as it is kept on the workload it selects, so a later apply of either finds it. */
export interface ServiceRecord {
  name: string;
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  ports: { port: number; target: number; protocol: 'tcp' | 'udp'; nodePort?: number }[];
}

/** serviceRecords: the Services kept on a workload (none when the label is absent or unreadable). */
export function serviceRecords(labels: Record<string, string>): ServiceRecord[] {
  try {
    const v = JSON.parse(labels[SERVICES_LABEL] ?? '[]') as unknown;
    return Array.isArray(v) ? (v as ServiceRecord[]).filter((r) => typeof r?.name === 'string' && Array.isArray(r.ports)) : [];
  } catch {
    return [];
  }
}
