/**
 * The Kubernetes reader: manifests in, Baton services, configs and secrets
 * out (the same result as the Compose reader's, so `baton apply` applies
 * either atomically). One module per concern:
 *
 *   read.ts        readKubernetes: the pipeline
 *   documents.ts   documents and Lists, paths and lines, issues
 *   kinds.ts       the kind table: translated, accepted with a warning, refused and why
 *   world.ts       what the documents know of each other: the stack, ConfigMaps, Secrets, PriorityClasses
 *   workloads.ts   Deployment, ReplicaSet, ReplicationController, Pod, DaemonSet, Job, CronJob
 *   pod.ts         a pod template: its containers (main, sidecars, init), resources, placement
 *   container.ts   one container: image, command, env, ports, probes, resources, volume mounts
 *   services.ts    Services and HorizontalPodAutoscalers, added to the workloads they select
 *   labels.ts      the labels that record where a Baton object came from (read back by later applies and `baton get`)
 *   quantity.ts    CPU and memory quantities
 */
export { readKubernetes, type KubernetesReadOptions } from './read.js';
export { isKubernetesDocument, looksLikeKubernetes } from './documents.js';
