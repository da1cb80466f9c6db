/**
 * Fixtures after Nomad's mock.Node()/mock.Job(): valid objects with
 * overridable parts, so tests say only what matters to them.
 */
import { defaultContainerSpec, type Node, type Service, type ServiceSpec, type Task } from '../src/api/types.js';
import { newTaskSpec, specHash, taskIdentity } from '../src/server/controllers/serviceReconciler.js';

export function serviceSpec(over: Partial<ServiceSpec> = {}): ServiceSpec {
  return {
    stack: 'app',
    shortName: 'web',
    mode: 'replicated',
    replicas: 3,
    container: { ...defaultContainerSpec('baton-test/busybox:latest'), command: ['sleep', '1000'] },
    ports: [],
    expose: [],
    resources: { reservations: { cpus: 0, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } },
    restartPolicy: { condition: 'any', delayMs: 1000, maxDelayMs: 60_000, maxAttempts: 0, windowMs: 0 },
    placement: { constraints: [] },
    x: {},
    ...over,
  };
}

export function service(over: Partial<ServiceSpec> = {}, name = 'app_web'): Service {
  return {
    apiVersion: 'baton/v1',
    kind: 'Service',
    metadata: { name, uid: 'svc-uid-1', resourceVersion: '1', generation: 1, labels: {}, ownerRefs: [], creationTimestamp: new Date(0).toISOString() },
    spec: serviceSpec(over),
    status: { observedGeneration: 0, desired: 0, ready: 0, running: 0 },
  };
}

let seq = 0;
export function task(svc: Service, slot: number, over: { state?: Task['status']['state']; desired?: Task['spec']['desiredState']; node?: string; attempt?: number; hash?: string; at?: number; exitCode?: number } = {}): Task {
  const hash = over.hash ?? specHash(svc);
  const attempt = over.attempt ?? 1;
  const id = taskIdentity(svc.metadata.name, svc.metadata.uid, slot, hash, attempt);
  const spec = newTaskSpec(svc, slot, hash);
  spec.nodeName = over.node ?? 'n1';
  spec.desiredState = over.desired ?? 'running';
  return {
    apiVersion: 'baton/v1',
    kind: 'Task',
    metadata: { ...id, resourceVersion: String(++seq), generation: 1, labels: { 'baton.attempt': String(attempt) }, ownerRefs: [], creationTimestamp: new Date(over.at ?? 0).toISOString() },
    spec,
    status: { state: over.state ?? 'running', message: '', ports: [], restartCount: 0, timestamp: new Date(over.at ?? 0).toISOString(), ...(over.exitCode !== undefined ? { exitCode: over.exitCode } : {}) },
  };
}

export function node(name: string, over: Partial<Node['status']> = {}, availability: Node['spec']['availability'] = 'active', labels: Record<string, string> = {}): Node {
  return {
    apiVersion: 'baton/v1',
    kind: 'Node',
    metadata: { name, uid: `uid-${name}`, resourceVersion: '1', generation: 1, labels, ownerRefs: [], creationTimestamp: new Date(0).toISOString() },
    spec: { availability },
    status: {
      state: 'ready',
      message: '',
      address: '127.0.0.1',
      hostname: name,
      capacity: { cpus: 2, memoryBytes: 4 * 1024 ** 3 },
      allocated: { cpus: 0, memoryBytes: 0 },
      taskCount: 0,
      agentVersion: '0.1.0',
      engineVersion: '20.10',
      portRange: [20000, 20999],
      timestamp: new Date(0).toISOString(),
      ...over,
    },
  };
}

/** registration is the body of `POST /nodes/register` an agent at 127.0.0.1 sends, with `over` on top. */
export function registration(name: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, address: '127.0.0.1', hostname: name, agentVersion: '0.1.0', capacity: { cpus: 2, memoryBytes: 2 ** 30 }, portRange: [1, 2], engine: { ok: true, version: 'test' }, ...over };
}
