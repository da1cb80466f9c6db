/**
 * The Kubernetes reader (src/manifest/kubernetes/): each kind and the pod
 * fields it translates, what it ignores with a warning, and what it refuses,
 * each with its document, key path and line; nothing at all on any error.
 */
import { describe, it, expect } from 'vitest';
import { readKubernetes } from '../../src/manifest/kubernetes/index.js';
import { parseQuantity } from '../../src/manifest/kubernetes/quantity.js';
import { nodePortFor } from '../../src/manifest/kubernetes/services.js';

const read = (text: string, o: { stack?: string; ignoreUnsupported?: boolean } = {}) => readKubernetes([{ name: 'm.yaml', text }], o);

/** deployment: a Deployment web (app=web) whose container is `container` (YAML, indented for a list item), with more pod fields. */
function deployment(container = '', pod = '', spec = ''): string {
  const ind = (s: string, n: number) => s.replace(/^(?=.)/gm, ' '.repeat(n));
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {tier: front}
spec:
  selector: {matchLabels: {app: web}}
${ind(spec, 2)}  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
${ind(container, 8)}${ind(pod, 6)}`;
}

const only = (text: string) => {
  const r = read(text);
  expect(r.errors).toEqual([]);
  return r.services[0]!.spec;
};

describe('readKubernetes: workloads', () => {
  it('reads a Deployment into a replicated service of the namespace\'s stack', () => {
    const r = read(deployment('ports: [{containerPort: 80, name: http}]\n', '', 'replicas: 3\n').replace('name: web\n  labels', 'name: web\n  namespace: shop\n  labels'));
    expect(r.errors).toEqual([]);
    expect(r.stack).toBe('shop');
    const s = r.services[0]!;
    expect(s.name).toBe('shop_web');
    expect(s.labels).toEqual({ tier: 'front', 'baton.stack': 'shop', 'baton.kubernetes.kind': 'Deployment', 'baton.kubernetes.name': 'web', 'baton.kubernetes.ports': JSON.stringify({ ports: [{ port: 80, protocol: 'tcp', name: 'http' }], hostPorts: [] }) });
    // The pod's labels are its container's.
    expect(s.spec.container.labels).toEqual({ app: 'web' });
    expect(s.spec).toMatchObject({ stack: 'shop', shortName: 'web', mode: 'replicated', replicas: 3, expose: [80], restartPolicy: { condition: 'any', delayMs: 10_000, maxDelayMs: 300_000 } });
    expect(s.spec.container).toMatchObject({ image: 'nginx:1.27', init: false, stopGracePeriodMs: 30_000, networkMode: 'bridge' });
    // Default strategy: 25% surge of 3 is 1, so start-first one at a time.
    expect(s.spec.update).toMatchObject({ parallelism: 1, order: 'start-first', monitorMs: 0, failureAction: 'pause' });
  });

  it('reads command, args, env from values, ConfigMaps and the namespace, resources and pull policy', () => {
    const text = `${deployment(`command: [/bin/app]
args: [--port, 8080]
imagePullPolicy: IfNotPresent
workingDir: /srv
env:
- {name: A, value: "1"}
- name: MODE
  valueFrom: {configMapKeyRef: {name: cfg, key: mode}}
- name: NS
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
envFrom:
- configMapRef: {name: cfg}
  prefix: CFG_
resources:
  requests: {cpu: 250m, memory: 64Mi}
  limits: {cpu: "1", memory: 1Gi}
`)}---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {mode: fast, level: "3"}
`;
    const s = only(text);
    expect(s.container).toMatchObject({ entrypoint: ['/bin/app'], command: ['--port', '8080'], pullPolicy: 'missing', workingDir: '/srv' });
    expect(s.container.env).toEqual({ A: '1', MODE: 'fast', NS: 'default', CFG_mode: 'fast', CFG_level: '3' });
    expect(s.resources).toEqual({ reservations: { cpus: 0.25, memoryBytes: 64 * 2 ** 20 }, limits: { cpus: 1, memoryBytes: 2 ** 30 } });
  });

  it('reads probes: http, tcp, exec, and gRPC as TCP with a warning; a startup probe lengthens the start period', () => {
    const r = read(deployment(`ports: [{containerPort: 8080, name: http}]
livenessProbe: {httpGet: {path: /healthz, port: http}, initialDelaySeconds: 5, periodSeconds: 2, failureThreshold: 4}
readinessProbe: {tcpSocket: {port: 8080}, timeoutSeconds: 3}
startupProbe: {exec: {command: [cat, /ready]}, periodSeconds: 1, failureThreshold: 30}
`));
    expect(r.errors).toEqual([]);
    const c = r.services[0]!.spec.container;
    expect(c.healthcheck).toEqual({ test: ['NONE'], http: { path: '/healthz', port: 8080 }, intervalMs: 2000, timeoutMs: 1000, retries: 4, startPeriodMs: 30_000 });
    expect(c.readiness).toEqual({ test: ['NONE'], tcp: { port: 8080 }, intervalMs: 10_000, timeoutMs: 3000, retries: 3, startPeriodMs: 0 });
    expect(r.warnings.map((w) => w.path)).toContain('documents[0].spec.template.spec.containers[0].startupProbe');
    const g = read(deployment('livenessProbe: {grpc: {port: 9090}}\n'));
    expect(g.services[0]!.spec.container.healthcheck!.tcp).toEqual({ port: 9090 });
    expect(g.warnings[0]!.message).toMatch(/gRPC probe becomes a TCP probe of port 9090/);
    expect(read(deployment('livenessProbe: {httpGet: {path: /, port: nope}}\n')).errors[0]).toMatchObject({ path: 'documents[0].spec.template.spec.containers[0].livenessProbe.httpGet.port', message: 'names no port of the container ("nope")' });
  });

  it('mounts emptyDir, hostPath, and each key of a ConfigMap or Secret as a file', () => {
    const text = `${deployment(`volumeMounts:
- {name: scratch, mountPath: /tmp/s}
- {name: mem, mountPath: /cache}
- {name: logs, mountPath: /var/log/app, readOnly: true}
- {name: conf, mountPath: /etc/app}
- {name: tls, mountPath: /etc/tls/cert.pem, subPath: cert.pem}
`, `volumes:
- {name: scratch, emptyDir: {}}
- {name: mem, emptyDir: {medium: Memory}}
- {name: logs, hostPath: {path: /var/log}}
- {name: conf, configMap: {name: cfg, defaultMode: 0440}}
- name: tls
  secret:
    secretName: tls
    items: [{key: tls.crt, path: cert.pem, mode: 0400}]
`)}---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {app.conf: "x = 1\\n"}
---
apiVersion: v1
kind: Secret
metadata: {name: tls}
data: {tls.crt: ${Buffer.from('CERT').toString('base64')}}
stringData: {tls.key: KEY}
`;
    const r = read(text);
    expect(r.errors).toEqual([]);
    const c = r.services[0]!.spec.container;
    expect(c.mounts).toEqual([
      { type: 'task', source: 'scratch', target: '/tmp/s', readOnly: false },
      { type: 'bind', source: '/var/log', target: '/var/log/app', readOnly: true },
    ]);
    expect(c.tmpfs).toEqual(['/cache']);
    expect(c.configs).toEqual([{ source: 'default_cfg.app.conf', target: '/etc/app/app.conf', uid: 0, gid: 0, mode: 0o440 }]);
    expect(c.secrets).toEqual([{ source: 'default_tls.tls.crt', target: '/etc/tls/cert.pem', uid: 0, gid: 0, mode: 0o400 }]);
    expect(r.configs).toEqual([{ name: 'default_cfg.app.conf', data: Buffer.from('x = 1\n').toString('base64'), labels: { 'baton.kubernetes.kind': 'ConfigMap', 'baton.kubernetes.name': 'cfg', 'baton.kubernetes.key': 'app.conf' } }]);
    expect(r.secrets.map((x) => [x.name, Buffer.from(x.data, 'base64').toString()])).toEqual([
      ['default_tls.tls.crt', 'CERT'],
      ['default_tls.tls.key', 'KEY'],
    ]);
  });

  it('places with or away from the pods of other workloads by pod (anti-)affinity, required or preferred', () => {
    const other = (name: string) => `---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ${name}}\nspec:\n  selector: {matchLabels: {app: ${name}}}\n  template:\n    metadata: {labels: {app: ${name}}}\n    spec:\n      containers: [{name: c, image: redis}]\n`;
    const affinity = (body: string) => deployment('', `affinity:\n${body}`) + other('cache') + other('batch');
    const r = read(
      affinity(`  podAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
    - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: cache}}}
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
    - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: web}}}
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 50
      podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchExpressions: [{key: app, operator: In, values: [batch]}]}}
`),
    );
    expect(r.errors).toEqual([]);
    expect(r.services.find((x) => x.shortName === 'web')!.spec.placement).toMatchObject({ affinity: [{ service: 'default_cache', required: true }], antiAffinity: [{ service: 'default_batch', required: false }], maxReplicasPerNode: 1 });
    const errs = (t: string) => read(t).errors.map((e) => `${e.path}: ${e.message}`);
    expect(errs(affinity('  podAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n    - {topologyKey: topology.kubernetes.io/zone, labelSelector: {matchLabels: {app: cache}}}\n'))[0]).toMatch(/podAffinity\.requiredDuringSchedulingIgnoredDuringExecution\[0\]\.topologyKey: a pod affinity by topology\.kubernetes\.io\/zone is not supported by Baton/);
    expect(errs(affinity('  podAffinity:\n    requiredDuringSchedulingIgnoredDuringExecution:\n    - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: nope}}}\n'))).toEqual([
      'documents[0].spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector: selects no pod of this apply or of an earlier one in default: the pods could never be placed',
    ]);
  });

  it('places by nodeSelector, node affinity, self anti-affinity, spread, tolerations and priority', () => {
    const text = `${deployment('', `nodeSelector: {disk: ssd, kubernetes.io/os: linux}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: zone, operator: In, values: [a]}
        - {key: kubernetes.io/hostname, operator: NotIn, values: [n9]}
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector: {matchLabels: {app: web}}
topologySpreadConstraints:
- {topologyKey: zone, maxSkew: 1, whenUnsatisfiable: ScheduleAnyway}
tolerations:
- {key: gpu, operator: Exists, effect: NoSchedule}
priorityClassName: high
`)}---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
`;
    expect(only(text).placement).toEqual({
      constraints: ['node.labels.disk == ssd', 'node.platform.os == linux', 'node.labels.zone == a', 'node.hostname != n9'],
      maxReplicasPerNode: 1,
      preferences: ['node.labels.zone'],
      tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }],
      priority: 1000,
    });
  });

  it('reads Recreate, a surge-free rolling update and minReadySeconds', () => {
    expect(only(deployment('', '', 'strategy: {type: Recreate}\n')).update).toMatchObject({ parallelism: 0, order: 'stop-first' });
    expect(only(deployment('', '', 'replicas: 10\nminReadySeconds: 7\nstrategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 20%}}\n')).update).toMatchObject({ parallelism: 2, order: 'stop-first', monitorMs: 0, minReadyMs: 7000 });
  });

  it('reads a DaemonSet as global, a Job as a replicated job, a CronJob as a schedule, a bare Pod as one task', () => {
    const pod = (restart: string) => `template:\n  metadata: {labels: {app: j}}\n  spec:\n    restartPolicy: ${restart}\n    containers: [{name: j, image: busybox}]\n`;
    const ind = (s: string, n: number) => s.replace(/^(?=.)/gm, ' '.repeat(n));
    const ds = only(`apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: j}}\n  updateStrategy: {rollingUpdate: {maxUnavailable: 2}}\n${ind(pod('Always'), 2)}`);
    expect(ds).toMatchObject({ mode: 'global', update: { parallelism: 2 } });
    const job = only(`apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  completions: 4\n  parallelism: 2\n  backoffLimit: 1\n${ind(pod('OnFailure'), 2)}`);
    expect(job).toMatchObject({ mode: 'replicated-job', replicas: 4, job: { completions: 4, parallelism: 2, backoffLimit: 1 }, restartPolicy: { condition: 'on-failure' } });
    const cron = only(`apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: "0 3 * * *"\n  timeZone: Europe/Paris\n  concurrencyPolicy: Forbid\n  successfulJobsHistoryLimit: 5\n  jobTemplate:\n    spec:\n${ind(pod('Never'), 6)}`);
    expect(cron).toMatchObject({ mode: 'replicated-job', job: { completions: 1, backoffLimit: 6 }, schedule: { cron: '0 3 * * *', timeZone: 'Europe/Paris', concurrency: 'forbid', successfulHistory: 5, failedHistory: 1 } });
    const bare = only('apiVersion: v1\nkind: Pod\nmetadata: {name: once}\nspec:\n  restartPolicy: Never\n  containers: [{name: x, image: busybox}]\n');
    expect(bare).toMatchObject({ mode: 'replicated-job', job: { completions: 1, parallelism: 1, backoffLimit: 0 } });
    expect(only('apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: x, image: busybox}]\n')).toMatchObject({ mode: 'replicated', replicas: 1 });
  });
});

describe('readKubernetes: StatefulSet', () => {
  const sts = (extra = '') => `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: pg}
spec:
  serviceName: pg
  replicas: 3
  selector: {matchLabels: {app: pg}}
${extra}  template:
    metadata: {labels: {app: pg}}
    spec:
      containers:
      - name: pg
        image: postgres:16
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
`;
  it('reads ordinals with a volume each, ordered unless Parallel, rolled one ordinal at a time', () => {
    const s = only(sts());
    expect(s).toMatchObject({ mode: 'replicated', replicas: 3, stateful: { ordered: true, volumes: [{ name: 'data', target: '/var/lib/postgresql/data', readOnly: false }] }, update: { parallelism: 1, order: 'stop-first' } });
    // The claim is not a mount of the template itself: each slot gets its own (serviceReconciler).
    expect(s.container.mounts).toEqual([]);
    expect(only(sts('  podManagementPolicy: Parallel\n')).stateful!.ordered).toBe(false);
    expect(read(sts('  updateStrategy: {rollingUpdate: {partition: 2}}\n')).errors[0]!.path).toBe('documents[0].spec.updateStrategy.rollingUpdate.partition');
  });
});

describe('readKubernetes: Services and autoscalers', () => {
  const svc = (spec: string, name = 'web') => `---\napiVersion: v1\nkind: Service\nmetadata: {name: ${name}}\nspec:\n${spec.replace(/^(?=.)/gm, '  ')}`;

  it('serves a ClusterIP port on the VIP, mapping it to its targetPort, and names the workload after the Service', () => {
    const s = only(deployment('ports: [{containerPort: 8080, name: http}]\n') + svc('selector: {app: web}\nports: [{port: 80, targetPort: http}]\n', 'frontend'));
    expect(s.expose).toEqual([8080]);
    expect(s.vipPorts).toEqual([{ port: 80, target: 8080 }]);
    expect(s.networks).toEqual([{ name: 'default_default', aliases: ['frontend'] }]);
    // `baton get services` reads the Service back from its workload's labels.
    expect(JSON.parse(read(deployment('ports: [{containerPort: 8080, name: http}]\n') + svc('selector: {app: web}\nports: [{port: 80, targetPort: http}]\n', 'frontend')).services[0]!.labels['baton.kubernetes.services']!)).toEqual([{ name: 'frontend', type: 'ClusterIP', ports: [{ port: 80, target: 8080, protocol: 'tcp' }] }]);
  });

  it('publishes NodePort and LoadBalancer ports on every node', () => {
    const s = only(deployment('ports: [{containerPort: 80}]\n') + svc('type: NodePort\nselector: {app: web}\nports: [{port: 80, nodePort: 30080}, {port: 81, targetPort: 80}]\n') + svc('type: LoadBalancer\nselector: {app: web}\nports: [{port: 8443, targetPort: 80}]\n', 'lb'));
    expect(s.ports).toEqual([
      { target: 80, published: 30080, protocol: 'tcp', mode: 'ingress' },
      { target: 80, published: nodePortFor('default', 'web', 81), protocol: 'tcp', mode: 'ingress' },
      { target: 80, published: 8443, protocol: 'tcp', mode: 'ingress' },
    ]);
    expect(nodePortFor('default', 'web', 81)).toBeGreaterThanOrEqual(30000);
    expect(nodePortFor('default', 'web', 81)).toBeLessThan(32768);
  });

  it('refuses a Service that selects nothing, or a port that names no container port', () => {
    const r = read(deployment() + svc('selector: {app: nope}\nports: [{port: 80}]\n'));
    expect(r.services).toEqual([]);
    expect(r.errors).toEqual([{ path: 'documents[1].spec.selector', message: 'selects no pod of this apply or of an earlier one in default (app=nope)', line: 19 }]);
    expect(read(deployment('ports: [{containerPort: 80}]\n') + svc('selector: {app: web}\nports: [{port: 80, targetPort: http}]\n')).errors[0]!.message).toBe('names no port of Deployment web\'s container ("http")');
  });

  it('autoscales the target of an HPA on CPU and memory with its windows', () => {
    const hpa = `---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 2\n  maxReplicas: 10\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}\n  - type: Resource\n    resource: {name: memory, target: {type: Utilization, averageUtilization: 80}}\n  behavior:\n    scaleDown: {stabilizationWindowSeconds: 60}\n`;
    expect(only(deployment() + hpa).autoscale).toEqual({ min: 2, max: 10, cpu: 0.7, memory: 0.8, scaleUp: { stabilizationMs: 0 }, scaleDown: { stabilizationMs: 60_000 } });
  });

  it('gives the workloads a PodDisruptionBudget selects its budget, kept when the workload is applied again alone', () => {
    const pdb = (body: string) => `---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web-pdb}\nspec:\n  selector: {matchLabels: {app: web}}\n${body}`;
    expect(only(deployment() + pdb('  minAvailable: 2\n')).disruptionBudget).toEqual({ minAvailable: 2 });
    const r = read(deployment() + pdb('  maxUnavailable: 25%\n'));
    expect(r.errors).toEqual([]);
    expect(r.services[0]!.spec.disruptionBudget).toEqual({ maxUnavailable: '25%' });
    expect(r.services[0]!.labels['baton.kubernetes.pdb']).toBe('web-pdb');
    const again = readKubernetes([{ name: 'd.yaml', text: deployment('', '', 'replicas: 3\n') }], { earlier: { services: r.services.map((x) => ({ spec: x.spec, labels: x.labels })), files: [] } });
    expect(again.services[0]!.spec).toMatchObject({ replicas: 3, disruptionBudget: { maxUnavailable: '25%' } });
    const errs = (t: string) => read(t).errors.map((e) => `${e.path}: ${e.message}`);
    expect(errs(deployment() + pdb('  minAvailable: 1\n  maxUnavailable: 1\n'))).toEqual(['documents[1].spec: give one of minAvailable and maxUnavailable']);
    expect(errs(deployment() + pdb('  minAvailable: half\n'))).toEqual(['documents[1].spec.minAvailable: must be a whole number or a percentage ("50%")']);
    expect(errs(deployment() + pdb('  minAvailable: 1\n').replace('{app: web}}', '{app: nope}}'))).toEqual(['documents[1].spec.selector: selects no pod of this apply or of an earlier one in default']);
  });
});

describe('readKubernetes: applies file by file', () => {
  const svcDoc = (port: number) => `apiVersion: v1\nkind: Service\nmetadata: {name: frontend}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: ${port}, targetPort: http, nodePort: 30111}]\n`;
  const earlierOf = (r: ReturnType<typeof read>) => ({ services: r.services.map((x) => ({ spec: x.spec, labels: x.labels })), files: [] });

  it('adds a Service to the workload an earlier apply made, and keeps it when the workload is applied again', () => {
    const dep = read(deployment('ports: [{containerPort: 8080, name: http}]\n'));
    expect(dep.errors).toEqual([]);
    // The Service alone: it finds the Deployment of the earlier apply, and the apply carries that service, changed.
    const withSvc = readKubernetes([{ name: 's.yaml', text: svcDoc(80) }], { earlier: earlierOf(dep) });
    expect(withSvc.errors).toEqual([]);
    const web = withSvc.services[0]!;
    expect(web.name).toBe('default_web');
    expect(web.spec).toMatchObject({ expose: [8080], vipPorts: [{ port: 80, target: 8080 }], networks: [{ name: 'default_default', aliases: ['frontend'] }], ports: [{ target: 8080, published: 30111, protocol: 'tcp', mode: 'ingress' }] });
    // The Deployment alone again: the Service stays on it.
    const again = readKubernetes([{ name: 'd.yaml', text: deployment('ports: [{containerPort: 8080, name: http}]\n', '', 'replicas: 2\n') }], { earlier: earlierOf(withSvc) });
    expect(again.errors).toEqual([]);
    expect(again.services[0]!.spec).toMatchObject({ replicas: 2, vipPorts: [{ port: 80, target: 8080 }], networks: [{ name: 'default_default', aliases: ['frontend'] }] });
    // The Service changed: its old port goes, nothing is doubled.
    const changed = readKubernetes([{ name: 's.yaml', text: svcDoc(81) }], { earlier: earlierOf(again) });
    expect(changed.services[0]!.spec.vipPorts).toEqual([{ port: 81, target: 8080 }]);
    expect(changed.services[0]!.spec.ports).toEqual([{ target: 8080, published: 30111, protocol: 'tcp', mode: 'ingress' }]);
    // A workload no Service of this apply selects is not applied again.
    expect(readKubernetes([{ name: 'x.yaml', text: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n' }], { earlier: earlierOf(changed) }).services).toEqual([]);
  });

  it('mounts the keys of a ConfigMap an earlier apply made, and says why its values cannot reach the environment', () => {
    const earlier = { services: [], files: [{ kind: 'ConfigMap' as const, name: 'cfg', key: 'app.conf' }] };
    const mounted = readKubernetes([{ name: 'd.yaml', text: deployment('volumeMounts: [{name: conf, mountPath: /etc/app}]\n', 'volumes: [{name: conf, configMap: {name: cfg}}]\n') }], { earlier });
    expect(mounted.errors).toEqual([]);
    expect(mounted.services[0]!.spec.container.configs).toEqual([{ source: 'default_cfg.app.conf', target: '/etc/app/app.conf', uid: 0, gid: 0, mode: 0o644 }]);
    expect(mounted.configs).toEqual([]);
    const env = readKubernetes([{ name: 'd.yaml', text: deployment('envFrom: [{configMapRef: {name: cfg}}]\n') }], { earlier });
    expect(env.errors[0]!.message).toMatch(/ConfigMap "cfg" was applied earlier: its values reach a pod's environment only from the apply that holds it/);
  });
});

describe('readKubernetes: documents and refusals', () => {
  it('opens a List, and refuses RBAC, Ingress and custom resources with their reasons and lines', () => {
    const text = `apiVersion: v1
kind: List
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: r}
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {name: i}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
`;
    const r = read(text);
    expect(r.errors.map((e) => [e.path, e.line])).toEqual([
      ['documents[0].items[0].kind', 5],
      ['documents[0].items[1].kind', 8],
      ['documents[1].kind', 12],
    ]);
    expect(r.errors[0]!.message).toMatch(/^Role r is not supported by Baton: .*RBAC/);
    expect(r.errors[1]!.message).toMatch(/^Ingress i is not supported by Baton: publish the service/);
    expect(r.errors[2]!.message).toMatch(/^Widget w \(example.com\/v1\) is not supported by Baton: a custom resource/);
    // With --ignore-unsupported they are warnings, and the rest is read.
    expect(read(text, { ignoreUnsupported: true }).errors).toEqual([]);
  });

  it('accepts a ServiceAccount with a warning, and says what is wrong with a document without kind, an unknown apiVersion, several namespaces', () => {
    expect(read('apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n').warnings[0]!.message).toMatch(/pods get no Kubernetes API credentials/);
    expect(read('apiVersion: v1\nmetadata: {name: x}\n').errors).toEqual([{ path: 'documents[0]', message: 'a Kubernetes document needs both apiVersion and kind (this one has no kind)', line: 1 }]);
    expect(read(deployment().replace('apps/v1', 'apps/v2')).errors[0]).toMatchObject({ path: 'documents[0].apiVersion', message: 'Deployment is read at apps/v1, apps/v1beta1, apps/v1beta2, extensions/v1beta1, not apps/v2' });
    const two = read('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: shop}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: blog}\n');
    expect(two.errors[0]!.message).toMatch(/several namespaces \(blog, shop\)/);
    expect(read('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n', { stack: 'mine' }).stack).toBe('mine');
  });

  it('refuses a Secret in the environment, privileged containers, and pod containers Kubernetes would refuse, naming their paths', () => {
    const errs = (t: string) => read(t).errors.map((e) => e.path);
    expect(errs(deployment('env: [{name: P, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n'))).toEqual(['documents[0].spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef']);
    expect(errs(deployment('securityContext: {privileged: true}\n'))).toEqual(['documents[0].spec.template.spec.containers[0].securityContext.privileged']);
    // A sidecar needs a name, and a name of its own.
    expect(errs(deployment().replace('spec:\n      containers:', 'spec:\n      containers:\n      - {image: envoy}'))).toEqual(['documents[0].spec.template.spec.containers[0].name']);
    expect(read(deployment('', 'initContainers: [{name: web, image: busybox}]\n')).errors).toMatchObject([{ path: 'documents[0].spec.template.spec.initContainers[0].name', message: 'another container of the pod is named "web"' }]);
    expect(errs(deployment('', 'initContainers: [{name: i, image: busybox, readinessProbe: {tcpSocket: {port: 80}}}]\n'))).toEqual(['documents[0].spec.template.spec.initContainers[0].readinessProbe']);
    expect(errs(deployment('', 'initContainers: [{name: Init_1, image: busybox}]\n'))).toEqual(['documents[0].spec.template.spec.initContainers[0].name']);
    expect(errs(deployment('restartPolicy: Always\n'))).toEqual(['documents[0].spec.template.spec.containers[0].restartPolicy']);
    expect(errs(deployment('lifecycle: {preStop: {httpGet: {port: 80, path: /drain}}}\n'))).toEqual(['documents[0].spec.template.spec.containers[0].lifecycle.preStop.httpGet']);
    expect(errs(deployment('lifecycle: {postStart: {exec: {command: [x]}}}\n'))).toEqual(['documents[0].spec.template.spec.containers[0].lifecycle.postStart']);
    expect(errs(deployment('', 'initContainers: [{name: i, image: busybox, lifecycle: {preStop: {sleep: {seconds: 1}}}}]\n'))).toEqual(['documents[0].spec.template.spec.initContainers[0].lifecycle']);
  });

  it('keeps revisionHistoryLimit old revisions, stalls a rollout past progressDeadlineSeconds, and removes a Job ttlSecondsAfterFinished after it finished', () => {
    expect(only(deployment('', '', 'revisionHistoryLimit: 2\n')).revisionHistoryLimit).toBe(2);
    expect(only(deployment('', '', 'progressDeadlineSeconds: 120\n')).update).toMatchObject({ progressDeadlineMs: 120_000 });
    const job = read(`apiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  ttlSecondsAfterFinished: 30\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: j, image: busybox}]\n`);
    expect(job.errors).toEqual([]);
    expect(job.warnings).toEqual([]);
    expect(job.services[0]!.spec.job).toMatchObject({ ttlAfterFinishedMs: 30_000 });
  });

  it('runs a preStop hook before the stop signal: a command, or a pause', () => {
    expect(only(deployment('lifecycle: {preStop: {exec: {command: [nginx, -s, quit]}}}\n')).container.preStop).toEqual({ command: ['nginx', '-s', 'quit'] });
    expect(only(deployment('lifecycle: {preStop: {sleep: {seconds: 5}}}\n')).container.preStop).toEqual({ sleepMs: 5000 });
  });

  it('translates a pod of several containers: the first is the main one, the others sidecars, init containers before them; they share emptyDirs', () => {
    const r = read(
      deployment(
        'ports: [{name: http, containerPort: 80}]\nresources: {requests: {cpu: 250m, memory: 64Mi}, limits: {memory: 128Mi}}\nvolumeMounts: [{name: html, mountPath: /usr/share/nginx/html}, {name: shm, mountPath: /dev/shm}]\n',
        `initContainers:
- name: fetch
  image: busybox
  command: [sh, -c, 'echo hi > /work/index.html']
  resources: {requests: {cpu: '1', memory: 16Mi}}
  volumeMounts: [{name: html, mountPath: /work}]
- name: mesh
  image: envoy
  restartPolicy: Always
  ports: [{name: admin, containerPort: 9901}]
  readinessProbe: {httpGet: {port: admin, path: /ready}}
volumes:
- {name: html, emptyDir: {}}
- {name: shm, emptyDir: {medium: Memory}}
`,
      ).replace('spec:\n      containers:', 'spec:\n      containers:\n      - name: logger\n        image: busybox\n        args: [tail, -f, /dev/null]\n        resources: {requests: {cpu: 100m, memory: 32Mi}}\n        volumeMounts: [{name: html, mountPath: /logs, readOnly: true}]'),
    );
    expect(r.errors).toEqual([]);
    const s = r.services[0]!.spec;
    // The first container listed is the task's main one.
    expect(s.containerName).toBe('logger');
    expect(s.container.mounts).toEqual([{ type: 'task', source: 'html', target: '/logs', readOnly: true }]);
    expect(s.sidecars!.map((c) => c.name)).toEqual(['mesh', 'web']);
    expect(s.initContainers!.map((c) => [c.name, c.container.entrypoint])).toEqual([['fetch', ['sh', '-c', 'echo hi > /work/index.html']]]);
    expect(s.initContainers![0]!.container.mounts).toEqual([{ type: 'task', source: 'html', target: '/work', readOnly: false }]);
    const web = s.sidecars!.find((c) => c.name === 'web')!;
    // An emptyDir only one container mounts keeps its medium.
    expect(web.container.tmpfs).toEqual(['/dev/shm']);
    expect(web.resources.limits.memoryBytes).toBe(128 * 2 ** 20);
    expect(s.sidecars!.find((c) => c.name === 'mesh')!.container.readiness?.http).toEqual({ path: '/ready', port: 9901 });
    // The task reserves its containers' sum (100m + 250m), and no less than its largest init container (1 CPU).
    expect(s.resources.reservations).toEqual({ cpus: 1, memoryBytes: (32 + 64) * 2 ** 20 });
    // Every container's ports are the task's (one namespace).
    expect(s.expose.sort()).toEqual([80, 9901]);
    expect(r.warnings.map((w) => w.path)).not.toContain('documents[0].spec.template.spec.initContainers[1]');
  });
});

describe('quantities', () => {
  it('reads CPU and memory as Kubernetes writes them', () => {
    expect([parseQuantity('250m'), parseQuantity('1.5'), parseQuantity(2), parseQuantity('128Mi'), parseQuantity('1G'), parseQuantity('1e3'), parseQuantity('x')]).toEqual([0.25, 1.5, 2, 134217728, 1e9, 1000, undefined]);
  });
});
