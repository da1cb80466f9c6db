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
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Service, Task } from '../../src/api/types.js';
import { serviceKind } from '../../src/api/kinds.js';
import { getBody } from '../helpers/http.js';
import { live, TestCluster } from '../helpers/cluster.js';
import { docker, eventually, TEST_IMAGE, writeFile } from '../helpers/proc.js';

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
  const c = new TestCluster('baton-k8s-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 30_000, bookmarkIntervalMs: 1000 }, 34000);

  beforeAll(async () => {
    await c.start(['n2', 'n3']);
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

    // The Job ran to completion.
    await eventually(async () => expect((await c.api.get<Service>(serviceKind, 'k8s_once')).status.job?.state).toBe('complete'), 5 * 10_000);

    // Applying the same directory again changes nothing.
    const again = await c.baton(['apply', '-f', dir]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).not.toMatch(/created|updated/);
    expect((await c.baton(['stack', 'rm', 'k8s'])).code).toBe(0);
    await eventually(async () => expect(await c.running('k8s_web')).toEqual([]), 30_000);
  }, 240_000);
});
