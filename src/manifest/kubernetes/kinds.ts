/**
 * The kinds Baton reads, and what it says about the others: one table, so
 * a refusal always gives the same reason, and a kind with no row is refused
 * as unknown (custom resources included).
 */

export type KindRule =
  | { action: 'translate'; apiVersions: readonly string[] }
  /** Accepted; it changes nothing that runs, and the warning says why. */
  | { action: 'warn'; reason: string }
  | { action: 'refuse'; reason: string };

const translate = (...apiVersions: string[]): KindRule => ({ action: 'translate', apiVersions });
const refuse = (reason: string): KindRule => ({ action: 'refuse', reason });
const warn = (reason: string): KindRule => ({ action: 'warn', reason });

const RBAC = "Baton's tasks get no Kubernetes API, so there is nothing for RBAC to authorize; Baton's own users are tokens with a role (baton token create NAME --role admin|deployer|viewer [--stacks a,b])";
const STORAGE = "Baton keeps volumes with each node's local driver: a StatefulSet's volumeClaimTemplates (a volume per ordinal) and a pod's emptyDir or hostPath say what a task gets";

export const KIND_RULES: Readonly<Record<string, KindRule>> = {
  Deployment: translate('apps/v1', 'apps/v1beta1', 'apps/v1beta2', 'extensions/v1beta1'),
  ReplicaSet: translate('apps/v1', 'apps/v1beta2', 'extensions/v1beta1'),
  ReplicationController: translate('v1'),
  Pod: translate('v1'),
  DaemonSet: translate('apps/v1', 'apps/v1beta2', 'extensions/v1beta1'),
  Job: translate('batch/v1'),
  CronJob: translate('batch/v1', 'batch/v1beta1'),
  Service: translate('v1'),
  ConfigMap: translate('v1'),
  Secret: translate('v1'),
  HorizontalPodAutoscaler: translate('autoscaling/v2', 'autoscaling/v2beta2', 'autoscaling/v1'),
  Namespace: translate('v1'),
  PriorityClass: translate('scheduling.k8s.io/v1', 'scheduling.k8s.io/v1beta1'),
  ServiceAccount: warn("pods get no Kubernetes API credentials in Baton (there is no Kubernetes API): the account is accepted and means nothing"),
  PodDisruptionBudget: translate('policy/v1', 'policy/v1beta1'),
  StatefulSet: translate('apps/v1', 'apps/v1beta1', 'apps/v1beta2'),
  Role: refuse(RBAC),
  ClusterRole: refuse(RBAC),
  RoleBinding: refuse(RBAC),
  ClusterRoleBinding: refuse(RBAC),
  Ingress: refuse('publish the service on every node with a NodePort or LoadBalancer Service (Baton\'s routing mesh), and put an HTTP proxy such as Traefik or HAProxy in front as a service of its own'),
  IngressClass: refuse('there is no Ingress in Baton (see Ingress)'),
  NetworkPolicy: refuse("isolation in Baton is by network: tasks reach only the services of the networks they share (a namespace's stack has its own)"),
  PersistentVolume: refuse(STORAGE),
  PersistentVolumeClaim: refuse(STORAGE),
  StorageClass: refuse(STORAGE),
  CustomResourceDefinition: refuse('custom resources need their controllers, which need the Kubernetes API'),
  APIService: refuse('it extends the Kubernetes API, which Baton does not serve'),
  MutatingWebhookConfiguration: refuse('admission webhooks extend the Kubernetes API, which Baton does not serve'),
  ValidatingWebhookConfiguration: refuse('admission webhooks extend the Kubernetes API, which Baton does not serve'),
  LimitRange: refuse('Baton has no per-namespace defaults or limits'),
  ResourceQuota: refuse("a namespace's quota is an admin's to set, not a manifest's: baton quota set STACK [--tasks N] [--cpus N] [--memory SIZE] (what its pods, requests.cpu and requests.memory limit)"),
  Kustomization: refuse('render it first (kubectl kustomize DIR > all.yaml) and apply the output'),
  Endpoints: refuse("Baton keeps each service's endpoints itself, from its ready tasks"),
  EndpointSlice: refuse("Baton keeps each service's endpoints itself, from its ready tasks"),
};
