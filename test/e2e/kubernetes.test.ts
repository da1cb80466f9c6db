/**
 * Kubernetes manifests end to end, on the shared dockerd: a directory of
 * manifests (namespace k8s) applied with `baton apply -f DIR`:
 *
 * - a ConfigMap mounted as files: the Deployment's httpd serves its key;
 * - a ClusterIP Service named apart from its Deployment, port 80 →
 *   targetPort http (8080): another pod reaches `frontend`,
 *   `frontend.k8s.svc.cluster.local` and the port mapping through the VIP;
 * - a NodePort Service: the page on every node's address;
 * - readiness by an HTTP probe on a named port; a Job that completes.
 *
 * And a StatefulSet of 3 (namespace state): its pods start in order, each
 * named after its ordinal (hostname, `kv-1.kv` in DNS) with a volume of its
 * own, which a rolling restart hands to the ordinal's next pod.
 *
 * And a pod of three containers (namespace pods): an init container writes
 * the page into an emptyDir, the main container serves it, a sidecar reads
 * it over localhost and gates the task's readiness; each container's logs
 * apart, and a sidecar that crashes is restarted alone, in place.
 *
 * And a PodDisruptionBudget (namespace pdb): a drain whose replacement
 * cannot be placed holds the node's task past the drain deadline while
 * the budget forbids stopping it, and stops it once the budget allows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Service, Task } from '../../src/api/types.js';
import { serviceKind } from '../../src/api/kinds.js';
import { getBody } from '../helpers/http.js';
import { live, TestCluster } from '../helpers/cluster.js';
import { docker, eventually, stopProc, TEST_IMAGE, writeFile } from '../helpers/proc.js';

const NODE_PORT = 33480;

const MANIFESTS: Record<string, string> = {
  'config.yaml': `apiVersion: v1
kind: ConfigMap
metadata: {name: site, namespace: k8s}
data:
  index.html: "<h1>from a ConfigMap</h1>"
`,
  'web.yaml': `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: k8s, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      # httpd as PID 1 (Kubernetes runs no init) ignores SIGTERM: stop it fast.
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: ${TEST_IMAGE}
        command: [httpd, -f, -p, "8080", -h, /www]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
        volumeMounts: [{name: site, mountPath: /www}]
      volumes:
      - name: site
        configMap: {name: site}
---
apiVersion: v1
kind: Service
metadata: {name: frontend, namespace: k8s}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-public, namespace: k8s}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 8080, nodePort: ${NODE_PORT}}]
`,
  'client.yaml': `apiVersion: apps/v1
kind: Deployment
metadata: {name: client, namespace: k8s}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: ${TEST_IMAGE}, command: [sleep, "3600"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: k8s}
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: j, image: ${TEST_IMAGE}, command: [sh, -c, "echo done"]}]
`,
};

describe('Kubernetes manifests', () => {
  const c = new TestCluster('baton-k8s-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 30_000, bookmarkIntervalMs: 1000, drainDeadlineMs: 2000, usageBucketMs: 500, autoscaleSyncMs: 500 }, 34000);

  beforeAll(async () => {
    await c.start(['n2', 'n3']);
    // A CronJob fires at the start of a minute: applied first, checked by the last test, while the others run.
    const r = await c.baton(['apply', '-f', writeFile(c.dir, 'cron.yaml', `apiVersion: batch/v1
kind: CronJob
metadata: {name: stamp, namespace: cron}
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: s, image: ${TEST_IMAGE}, command: [sh, -c, "echo stamped"]}]
`)]);
    expect(r.code, r.stderr).toBe(0);
  }, 90_000);
  afterAll(async () => {
    await c.stop();
  }, 60_000);

  it('applies a directory of manifests: a ConfigMap served by a Deployment, reached through its Services by name, port mapping and node port', async () => {
    const dir = join(c.dir, 'manifests');
    mkdirSync(dir, { recursive: true });
    for (const [name, text] of Object.entries(MANIFESTS)) writeFile(dir, name, text);
    const r = await c.baton(['apply', '-f', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('created config k8s_site.index.html');
    expect(r.stdout).toMatch(/created service k8s_web/);

    // Both replicas ready (their HTTP probe on the named port passes), serving the ConfigMap's key.
    const webs = await eventually(async () => {
      const ts = live(await c.tasksOf('k8s_web')).filter((t) => t.status.ready !== false);
      expect(ts).toHaveLength(2);
      expect((await c.api.get<Service>(serviceKind, 'k8s_web')).status.ready).toBe(2);
      return ts;
    }, 5 * 15_000);
    expect(webs.map((t) => t.spec.nodeName).sort()).toEqual(['n2', 'n3']);

    // From another pod: the Service's name, its Kubernetes form, and port 80 reaching the container's 8080.
    const [client] = await eventually(async () => {
      const ts = live(await c.tasksOf('k8s_client'));
      expect(ts).toHaveLength(1);
      return ts as [Task];
    }, 5 * 10_000);
    const wget = (url: string) => docker(['exec', client.status.containerId!, 'wget', '-q', '-O', '-', url]);
    await eventually(async () => expect((await wget('http://frontend/index.html')).trim()).toBe('<h1>from a ConfigMap</h1>'), 5 * 5000);
    expect((await wget('http://frontend.k8s.svc.cluster.local:80/index.html')).trim()).toBe('<h1>from a ConfigMap</h1>');
    expect((await wget('http://web:8080/index.html')).trim()).toBe('<h1>from a ConfigMap</h1>');

    // From outside: the node port on every node's address.
    for (const address of ['127.0.0.2', '127.0.0.3']) {
      await eventually(async () => expect(await getBody(address, NODE_PORT, '/index.html')).toEqual({ ok: true, body: '<h1>from a ConfigMap</h1>' }), 5 * 5000);
    }

    // kubectl's words for what was applied.
    const get = async (...args: string[]) => {
      const g = await c.baton(['get', ...args]);
      expect(g.code, g.stderr).toBe(0);
      return g.stdout;
    };
    expect(await get('deploy', '-n', 'k8s')).toMatch(/NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\n(client\s+1\/1.*\n)?web\s+2\/2\s+2\s+2\s/);
    expect(await get('svc', 'frontend', '-n', 'k8s')).toMatch(/frontend\s+ClusterIP\s+10\.\d+\.\d+\.\d+\s+80:8080\/TCP/);
    expect(await get('svc', '-n', 'k8s')).toMatch(new RegExp(`web-public\\s+NodePort\\s+\\S+\\s+8080:${NODE_PORT}/TCP`));
    expect(await get('cm', '-n', 'k8s')).toMatch(/site\s+1\s/);
    expect((await get('pods', '-n', 'k8s')).split('\n').filter((l) => /^web\b|k8s_web\./.test(l) && /1\/1\s+Running/.test(l))).toHaveLength(2);
    expect(await get('deploy', '-n', 'nowhere')).toContain('No resources found in nowhere namespace.');
    const missing = await c.baton(['get', 'deploy', 'nope', '-n', 'k8s']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('Deployment "nope" not found in namespace k8s');

    // The Job ran to completion.
    await eventually(async () => expect((await c.api.get<Service>(serviceKind, 'k8s_once')).status.job?.state).toBe('complete'), 5 * 10_000);

    // Applying the same directory again changes nothing.
    const again = await c.baton(['apply', '-f', dir]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).not.toMatch(/created|updated/);
    expect((await c.baton(['stack', 'rm', 'k8s'])).code).toBe(0);
    await eventually(async () => expect(await c.running('k8s_web')).toEqual([]), 30_000);
  }, 240_000);

  it('joins a Service applied on its own to the Deployment of an earlier apply, and keeps it when the Deployment is applied again', async () => {
    const dep = (replicas: number) => writeFile(c.dir, 'files-dep.yaml', `apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: files}
spec:
  replicas: ${replicas}
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: api
        image: ${TEST_IMAGE}
        command: [sh, -c, "echo api > /tmp/index.html; exec httpd -f -p 9090 -h /tmp"]
        ports: [{name: web, containerPort: 9090}]
`);
    const svc = writeFile(c.dir, 'files-svc.yaml', `apiVersion: v1
kind: Service
metadata: {name: api-public, namespace: files}
spec:
  type: NodePort
  selector: {app: api}
  ports: [{port: 80, targetPort: web, nodePort: ${NODE_PORT + 1}}]
`);
    for (const f of [dep(1), svc]) {
      const r = await c.baton(['apply', '-f', f]);
      expect(r.code, r.stderr).toBe(0);
    }
    const reach = async () => {
      for (const address of ['127.0.0.2', '127.0.0.3']) await eventually(async () => expect(await getBody(address, NODE_PORT + 1, '/index.html')).toEqual({ ok: true, body: 'api' }), 5 * 5000);
    };
    await reach();
    // The Deployment again, scaled: the Service stays on it.
    const r = await c.baton(['apply', '-f', dep(2)]);
    expect(r.code, r.stderr).toBe(0);
    await eventually(async () => expect(live(await c.tasksOf('files_api'))).toHaveLength(2), 5 * 10_000);
    await reach();
    expect((await c.baton(['get', 'svc', '-n', 'files'])).stdout).toMatch(new RegExp(`api-public\\s+NodePort\\s+\\S+\\s+80:9090:${NODE_PORT + 1}/TCP`));
    expect((await c.baton(['stack', 'rm', 'files'])).code).toBe(0);
    await eventually(async () => expect(await c.running('files_api')).toEqual([]), 30_000);
  }, 180_000);

  it('starts a StatefulSet in order, names each pod after its ordinal, and keeps each ordinal\'s name and volume across a restart and a kill', async () => {
    const file = writeFile(c.dir, 'state.yaml', `apiVersion: v1
kind: Service
metadata: {name: kv, namespace: state}
spec:
  clusterIP: None
  selector: {app: kv}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kv, namespace: state}
spec:
  serviceName: kv
  replicas: 3
  selector: {matchLabels: {app: kv}}
  template:
    metadata: {labels: {app: kv}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: kv
        image: ${TEST_IMAGE}
        command: [sh, -c, "hostname >> /data/boots; exec httpd -f -p 8080 -h /data"]
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Mi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: state}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: p, image: ${TEST_IMAGE}, command: [sleep, "3600"]}]
`);
    // Left by an earlier run that stopped before its cleanup (the cluster's own go when it stops).
    await docker(['volume', 'rm', '-f', 'state_data-kv-0', 'state_data-kv-1', 'state_data-kv-2']).catch(() => '');
    const r = await c.baton(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
    const pods = await eventually(async () => {
      const ts = live(await c.tasksOf('state_kv')).filter((t) => t.status.readyAt);
      expect(ts).toHaveLength(3);
      return ts.sort((a, b) => a.spec.slot - b.spec.slot);
    }, 5 * 20_000);
    // In order: each ordinal started once the one before it was ready.
    for (let i = 1; i < 3; i++) expect(Date.parse(pods[i]!.status.startedAt!)).toBeGreaterThanOrEqual(Date.parse(pods[i - 1]!.status.readyAt!));
    for (const [i, t] of pods.entries()) {
      expect((await docker(['exec', t.status.containerId!, 'hostname'])).trim()).toBe(`kv-${i}`);
      expect((await docker(['exec', t.status.containerId!, 'cat', '/data/boots'])).trim()).toBe(`kv-${i}`);
    }
    expect((await docker(['volume', 'ls', '-q', '--filter', 'name=state_data-kv-'])).split('\n').filter(Boolean).sort()).toEqual(['state_data-kv-0', 'state_data-kv-1', 'state_data-kv-2']);
    expect((await c.baton(['get', 'sts', '-n', 'state'])).stdout).toMatch(/kv\s+3\/3\s/);
    expect((await c.baton(['get', 'pods', '-n', 'state'])).stdout).toMatch(/kv-0\s+1\/1\s+Running[\s\S]*kv-1\s+1\/1\s+Running[\s\S]*kv-2\s+1\/1\s+Running/);
    // By name from another pod: the ordinal under its governing Service.
    const [probe] = await eventually(async () => {
      const ts = live(await c.tasksOf('state_probe'));
      expect(ts).toHaveLength(1);
      return ts as [Task];
    }, 5 * 10_000);
    await eventually(async () => expect((await docker(['exec', probe.status.containerId!, 'wget', '-q', '-O', '-', 'http://kv-2.kv:8080/boots'])).trim()).toBe('kv-2'), 5 * 5000);
    expect((await docker(['exec', probe.status.containerId!, 'wget', '-q', '-O', '-', 'http://kv-1.kv.state.svc.cluster.local:8080/boots'])).trim()).toBe('kv-1');

    // A rolling restart: every pod is new, on its ordinal's node, with its ordinal's volume (two boots recorded).
    const before = new Map(pods.map((t) => [t.spec.slot, t]));
    expect((await c.baton(['service', 'restart', 'state_kv'])).code).toBe(0);
    const after = await eventually(async () => {
      const ts = live(await c.tasksOf('state_kv')).filter((t) => t.status.readyAt && t.metadata.name !== before.get(t.spec.slot)?.metadata.name);
      expect(ts).toHaveLength(3);
      return ts;
    }, 5 * 30_000);
    for (const t of after) {
      expect(t.spec.nodeName).toBe(before.get(t.spec.slot)!.spec.nodeName);
      expect((await docker(['exec', t.status.containerId!, 'cat', '/data/boots'])).trim().split('\n')).toEqual([`kv-${t.spec.slot - 1}`, `kv-${t.spec.slot - 1}`]);
    }
    // Killed: kv-1 comes back as kv-1, with its volume (a third boot) and its name in DNS.
    const kv1 = after.find((t) => t.spec.slot === 2)!;
    await docker(['kill', kv1.status.containerId!]);
    await eventually(async () => {
      const t = live(await c.tasksOf('state_kv')).find((x) => x.spec.slot === 2 && x.status.readyAt);
      expect(t).toBeDefined();
      expect((await docker(['exec', t!.status.containerId!, 'cat', '/data/boots'])).trim().split('\n')).toEqual(['kv-1', 'kv-1', 'kv-1']);
      expect((await docker(['exec', t!.status.containerId!, 'hostname'])).trim()).toBe('kv-1');
    }, 5 * 15_000);
    await eventually(async () => expect((await docker(['exec', probe.status.containerId!, 'wget', '-q', '-O', '-', 'http://kv-1.kv:8080/boots'])).trim().split('\n')).toHaveLength(3), 5 * 5000);
    expect((await c.baton(['stack', 'rm', 'state'])).code).toBe(0);
    await eventually(async () => expect(await c.running('state_kv')).toEqual([]), 30_000);
  }, 300_000);

  it('runs a pod: an init container fills an emptyDir the main container serves, a sidecar reaches it on localhost, and a crashed sidecar restarts alone', async () => {
    const file = writeFile(c.dir, 'pods.yaml', `apiVersion: apps/v1
kind: Deployment
metadata: {name: site, namespace: pods}
spec:
  selector: {matchLabels: {app: site}}
  template:
    metadata: {labels: {app: site}}
    spec:
      terminationGracePeriodSeconds: 1
      initContainers:
      - name: render
        image: ${TEST_IMAGE}
        command: [sh, -c, "echo rendered-by-init > /work/index.html; echo init-done"]
        volumeMounts: [{name: html, mountPath: /work}]
      containers:
      - name: web
        image: ${TEST_IMAGE}
        command: [httpd, -f, -p, "8080", -h, /www]
        ports: [{name: http, containerPort: 8080}]
        volumeMounts: [{name: html, mountPath: /www, readOnly: true}]
      - name: poller
        image: ${TEST_IMAGE}
        command: [sh, -c, "while true; do wget -q -O /tmp/last http://127.0.0.1:8080/index.html && cat /tmp/last; sleep 0.3; done"]
        readinessProbe: {exec: {command: [grep, -q, rendered-by-init, /tmp/last]}, periodSeconds: 1}
      volumes: [{name: html, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: site, namespace: pods}
spec:
  type: NodePort
  selector: {app: site}
  ports: [{port: 8080, targetPort: http, nodePort: ${NODE_PORT + 2}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: retry, namespace: pods}
spec:
  selector: {matchLabels: {app: retry}}
  template:
    metadata: {labels: {app: retry}}
    spec:
      terminationGracePeriodSeconds: 1
      initContainers:
      - name: flaky
        image: ${TEST_IMAGE}
        command: [sh, -c, "test -f /scratch/tried && exit 0; touch /scratch/tried; exit 3"]
        volumeMounts: [{name: scratch, mountPath: /scratch}]
      containers:
      - name: main
        image: ${TEST_IMAGE}
        command: [sleep, "3600"]
        # Run before the stop signal: it leaves a file on the node.
        lifecycle: {preStop: {exec: {command: [sh, -c, "echo stopped-by-hook > /out/prestop"]}}}
        volumeMounts: [{name: out, mountPath: /out}]
      volumes: [{name: scratch, emptyDir: {}}, {name: out, hostPath: {path: ${join(c.dir, 'prestop-out')}}}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: broken, namespace: pods}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      initContainers: [{name: check, image: ${TEST_IMAGE}, command: [sh, -c, "exit 4"]}]
      containers: [{name: never, image: ${TEST_IMAGE}, command: [echo, never]}]
`);
    const r = await c.baton(['apply', '-f', file]);
    expect(r.code, r.stderr).toBe(0);
    // Ready only once the sidecar's probe passes: it fetched, over the pod's loopback, the page the init container wrote.
    const pod = await eventually(async () => {
      const ts = live(await c.tasksOf('pods_site')).filter((t) => t.status.readyAt);
      expect(ts).toHaveLength(1);
      return ts[0]!;
    }, 5 * 20_000);
    expect(pod.status.containers).toMatchObject([
      { name: 'render', role: 'init', state: 'exited', exitCode: 0, restartCount: 0 },
      { name: 'web', role: 'main', state: 'running' },
      { name: 'poller', role: 'sidecar', state: 'running', ready: true, restartCount: 0 },
    ]);
    for (const address of ['127.0.0.2', '127.0.0.3']) {
      await eventually(async () => expect(await getBody(address, NODE_PORT + 2, '/index.html')).toEqual({ ok: true, body: 'rendered-by-init' }), 5 * 5000);
    }

    // An init container that fails is started again in place (the pod's policy restarts), then the task goes on.
    await eventually(async () => {
      const [t] = live(await c.tasksOf('pods_retry'));
      expect(t?.status.containers?.[0]).toMatchObject({ name: 'flaky', state: 'exited', exitCode: 0, restartCount: 1 });
    }, 5 * 15_000);
    // With restartPolicy Never, a failed init container fails the pod, saying which; its main container never ran.
    const failed = await eventually(async () => {
      const [t] = (await c.tasksOf('pods_broken')).filter((x) => x.status.state === 'failed');
      expect(t).toBeDefined();
      return t!;
    }, 5 * 15_000);
    expect(failed.status.error).toContain('init container check (1/1) exited with code 4');
    expect(failed.status.containers?.find((x) => x.name === 'never')).toMatchObject({ state: 'waiting' });
    await eventually(async () => expect((await c.api.get<Service>(serviceKind, 'pods_broken')).status.job?.state).toBe('failed'), 5 * 10_000);

    // Each container's output apart; the CLI and kubectl's view list them.
    const logs = async (...args: string[]) => {
      const l = await c.baton(['logs', pod.metadata.name, ...args]);
      expect(l.code, l.stderr).toBe(0);
      return l.stdout;
    };
    await eventually(async () => expect(await logs('-c', 'render')).toContain('init-done'), 5 * 5000);
    await eventually(async () => expect(await logs('-c', 'poller')).toContain(`${pod.metadata.name}/poller@${pod.spec.nodeName}`), 5 * 5000);
    expect(await logs('-c', 'poller')).toContain('rendered-by-init');
    expect(await logs()).not.toContain('rendered-by-init');
    const wrong = await c.baton(['logs', pod.metadata.name, '-c', 'nope']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain('has no container "nope" (it has web, poller, render)');
    const ps = await c.baton(['service', 'ps', 'pods_site']);
    expect(ps.stdout).toMatch(/\\_ render \(init\)\s+\S+\s+Exited \(0\)/);
    expect(ps.stdout).toMatch(/\\_ poller \(sidecar\)\s+\S+\s+Running\s+ready\s+0/);
    expect((await c.baton(['get', 'pods', '-n', 'pods'])).stdout).toMatch(/pods_site\.\S+\s+2\/2\s+Running\s+0\s/);

    // The sidecar crashes: it alone is started again, in place; the main container and the task stay.
    const main = pod.status.containerId!;
    const poller = (await docker(['ps', '-q', '--filter', `name=^${pod.metadata.name}_poller$`])).trim();
    expect(poller).not.toBe('');
    await docker(['kill', poller]);
    const restarted = await eventually(async () => {
      const t = (await c.tasksOf('pods_site')).find((x) => x.metadata.name === pod.metadata.name)!;
      expect(t.status.containers?.find((x) => x.name === 'poller')).toMatchObject({ state: 'running', restartCount: 1, ready: true });
      expect(t.status.readyAt).toBeDefined();
      return t;
    }, 5 * 15_000);
    expect(restarted.status.containerId).toBe(main);
    expect(restarted.status.restartCount).toBe(0);
    expect(live(await c.tasksOf('pods_site'))).toHaveLength(1);
    expect((await docker(['ps', '-q', '--filter', `name=^${pod.metadata.name}_poller$`])).trim()).toBe(poller);

    // An agent restart adopts every container of the pod: none is made again, and each keeps its count.
    await stopProc(c.agents.get(pod.spec.nodeName)!);
    c.startAgent(pod.spec.nodeName);
    await eventually(async () => expect(await c.state(pod.spec.nodeName)).toBe('ready'), 5 * 10_000);
    await eventually(async () => {
      const t = (await c.tasksOf('pods_site')).find((x) => x.metadata.name === pod.metadata.name)!;
      expect(t.status.containers).toMatchObject([
        { name: 'render', state: 'exited', exitCode: 0 },
        { name: 'web', state: 'running' },
        { name: 'poller', state: 'running', restartCount: 1, ready: true },
      ]);
      expect(t.status.readyAt).toBeDefined();
    }, 5 * 10_000);
    expect(live(await c.tasksOf('pods_site')).map((t) => t.status.containerId)).toEqual([main]);
    expect((await docker(['ps', '-q', '--filter', `name=^${pod.metadata.name}_poller$`])).trim()).toBe(poller);

    // Removed with its task: every container, and the emptyDir.
    const dirOf = join(c.dir, pod.spec.nodeName, 'taskdirs', pod.metadata.uid);
    expect(existsSync(join(dirOf, 'html', 'index.html'))).toBe(true);
    expect((await c.baton(['stack', 'rm', 'pods'])).code).toBe(0);
    await eventually(async () => {
      expect(await docker(['ps', '-aq', '--filter', `label=baton.task=${pod.metadata.name}`])).toBe('');
      expect(existsSync(dirOf)).toBe(false);
    }, 5 * 10_000);
    // The retry pod's preStop hook ran as it stopped.
    await eventually(async () => expect(readFileSync(join(c.dir, 'prestop-out', 'prestop'), 'utf8')).toBe('stopped-by-hook\n'), 5 * 10_000);
  }, 240_000);

  it('holds a drained node\'s task while the PodDisruptionBudget forbids stopping it, and stops it once the budget allows', async () => {
    const write = (budget: string) => writeFile(c.dir, 'pdb.yaml', `apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded, namespace: pdb}
spec:
  replicas: 2
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      terminationGracePeriodSeconds: 1
      # One per node, on two nodes: a drained node's replacement has nowhere to go.
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: guarded}}}
      containers:
      - name: g
        image: ${TEST_IMAGE}
        command: [sh, -c, "echo ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: guarded, namespace: pdb}
spec:
  ${budget}
  selector: {matchLabels: {app: guarded}}
`);
    const r = await c.baton(['apply', '-f', write('minAvailable: 2')]);
    expect(r.code, r.stderr).toBe(0);
    const onN2 = await eventually(async () => {
      const ts = live(await c.tasksOf('pdb_guarded')).filter((t) => t.status.readyAt);
      expect(ts.map((t) => t.spec.nodeName).sort()).toEqual(['n2', 'n3']);
      return ts.find((t) => t.spec.nodeName === 'n2')!;
    }, 5 * 15_000);
    try {
      expect((await c.baton(['node', 'update', '--availability', 'drain', 'n2'])).code).toBe(0);
      // Past the drain deadline (2 s), the budget holds the task: its service says so, and it still serves.
      await eventually(async () => expect((await c.api.get<Service>(serviceKind, 'pdb_guarded')).status.message).toMatch(/^drain of n2 held: stopping pdb_guarded\.\d+\.\w+ before its replacement is ready would break the disruption budget \(minAvailable 2\)$/), 5 * 10_000);
      expect((await c.baton(['get', 'pdb', '-n', 'pdb'])).stdout).toMatch(/guarded\s+2\s+N\/A\s+0\s/);
      const still = (await c.tasksOf('pdb_guarded')).find((t) => t.metadata.name === onN2.metadata.name)!;
      expect(still.spec.desiredState).toBe('running');
      expect(still.status.state).toBe('running');
      // A budget that allows one task down: the drain goes on and stops it.
      const loose = await c.baton(['apply', '-f', write('maxUnavailable: 1')]);
      expect(loose.code, loose.stderr).toBe(0);
      await eventually(async () => {
        const t = (await c.tasksOf('pdb_guarded')).find((x) => x.metadata.name === onN2.metadata.name)!;
        expect(t.spec.desiredState).toBe('shutdown');
      }, 5 * 10_000);
    } finally {
      expect((await c.baton(['node', 'update', '--availability', 'active', 'n2'])).code).toBe(0);
    }
    // Back to active, the waiting replacement lands on n2.
    await eventually(async () => expect(live(await c.tasksOf('pdb_guarded')).map((t) => t.spec.nodeName).sort()).toEqual(['n2', 'n3']), 5 * 15_000);
    expect((await c.baton(['stack', 'rm', 'pdb'])).code).toBe(0);
    await eventually(async () => expect(await c.running('pdb_guarded')).toEqual([]), 30_000);
  }, 240_000);

  it('scales a Deployment by its HorizontalPodAutoscaler under CPU load', async () => {
    const r = await c.baton(['apply', '-f', writeFile(c.dir, 'hpa.yaml', `apiVersion: apps/v1
kind: Deployment
metadata: {name: burn, namespace: hpa}
spec:
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: ${TEST_IMAGE}
        command: [sh, -c, "while :; do :; done"]
        # A fifth of a core: 200% of what it requests, far past the HPA's 50%.
        resources: {requests: {cpu: 100m}, limits: {cpu: 200m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn, namespace: hpa}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
`)]);
    expect(r.code, r.stderr).toBe(0);
    await eventually(async () => {
      expect((await c.api.get<Service>(serviceKind, 'hpa_burn')).spec.replicas).toBe(2);
      expect(live(await c.tasksOf('hpa_burn'))).toHaveLength(2);
    }, 5 * 20_000);
    expect((await c.baton(['get', 'hpa', '-n', 'hpa'])).stdout).toMatch(/burn\s+Deployment\/burn\s+cpu: 50%\s+1\s+2\s+2/);
    expect((await c.baton(['stack', 'rm', 'hpa'])).code).toBe(0);
    await eventually(async () => expect(await c.running('hpa_burn')).toEqual([]), 30_000);
  }, 180_000);

  it('fired the CronJob applied before the others at the start of a minute', async () => {
    const run = await eventually(async () => {
      const runs = (await c.api.services()).items.filter((s) => s.metadata.labels?.['baton.cron'] === 'cron_stamp' && s.status.job?.state === 'complete');
      expect(runs.length).toBeGreaterThan(0);
      return runs[0]!;
    }, 5 * 61_000);
    const cron = await c.api.get<Service>(serviceKind, 'cron_stamp');
    // On the minute, as Kubernetes fires a five-field schedule.
    expect(new Date(cron.status.cron!.lastScheduleTime!).getUTCSeconds()).toBe(0);
    expect((await c.baton(['get', 'cronjobs', '-n', 'cron'])).stdout).toMatch(/stamp\s+\* \* \* \* \*\s+<none>\s+\d+\s+\S+\s+\S+/);
    const logs = await c.baton(['logs', run.metadata.name]);
    expect(logs.stdout).toContain('stamped');
    expect((await c.baton(['stack', 'rm', 'cron'])).code).toBe(0);
  }, 5 * 61_000 + 30_000);
});
