/**
 * A pod's container → a Baton container spec: its image and command, its
 * environment (values, ConfigMap keys), ports, probes, resources, security
 * context and volume mounts (emptyDir as the task's shared directory,
 * hostPath, ConfigMap and Secret files, a StatefulSet's claims). Every field
 * is translated, ignored with a warning, or refused with the reason.
 */
import { defaultContainerSpec, type ContainerSpec, type FileRefSpec, type HealthcheckSpec, type ResourceSpec } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { isObj, type Issues, type KDoc, type Obj } from './documents.js';
import { cpuCores, memoryBytes } from './quantity.js';
import type { World } from './world.js';

/** A StatefulSet claim a container mounts (a volume per ordinal); `container` names a pod container other than the main one. */
export interface ClaimMount {
  name: string;
  target: string;
  readOnly: boolean;
  container?: string;
}

export type ContainerPort = { port: number; name?: string; protocol: 'tcp' | 'udp'; hostPort?: number };

/** ContainerResult is one translated container. */
export interface ContainerResult {
  /** Its name in the pod (undefined: it gave none, which only the first container may). */
  name?: string;
  container: ContainerSpec;
  resources: ResourceSpec;
  ports: ContainerPort[];
  claimMounts: ClaimMount[];
  /** A native sidecar: an init container with restartPolicy Always. */
  sidecar: boolean;
}

/** A container's name, and an emptyDir's (they become names on the node): a DNS label. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** What the container reads from its pod: the pod spec and its path, the claims of its StatefulSet, the emptyDirs several containers mount. */
export interface PodContext {
  at: PathSegment[];
  spec: Obj;
  claims: ReadonlySet<string>;
  shared: ReadonlySet<string>;
}

/** readContainer reads the container at `at` (containers[i] or initContainers[i]) of the pod. */
export function readContainer(d: KDoc, issues: Issues, world: World, pod: PodContext, at: PathSegment[], c: unknown, role: 'main' | 'sidecar' | 'init'): ContainerResult | undefined {
  if (!isObj(c)) {
    issues.error(d, at, 'must be a container');
    return undefined;
  }
  const cp = (...rest: PathSegment[]) => [...at, ...rest];
  const spec = pod.spec;
  for (const k of Object.keys(c)) {
    if (CONTAINER_FIELDS.has(k)) continue;
    if (k in CONTAINER_IGNORED) issues.ignored(d, cp(k), CONTAINER_IGNORED[k]!);
    else issues.unsupported(d, cp(k), `\`${k}\``);
  }
  let name: string | undefined;
  if (typeof c.name === 'string' && DNS_LABEL.test(c.name)) name = c.name;
  else if (c.name !== undefined || role !== 'main') issues.error(d, cp('name'), 'a container needs a name, a lowercase DNS label (a-z, 0-9 and -, at most 63)');
  const sidecar = role === 'init' && c.restartPolicy === 'Always';
  if (c.restartPolicy !== undefined && !(role === 'init' && c.restartPolicy === 'Always')) issues.error(d, cp('restartPolicy'), role === 'init' ? 'an init container\'s restartPolicy may only be Always (a sidecar)' : "only an init container has a restartPolicy (Always: a sidecar); a container restarts by the pod's");
  if (typeof c.image !== 'string' || c.image.trim() === '') {
    issues.error(d, cp('image'), 'image is required');
    return undefined;
  }
  const container = defaultContainerSpec(c.image.trim());
  if (c.command !== undefined) container.entrypoint = strings(d, issues, cp('command'), c.command);
  if (c.args !== undefined) container.command = strings(d, issues, cp('args'), c.args);
  if (typeof c.workingDir === 'string') container.workingDir = c.workingDir;
  if (c.imagePullPolicy !== undefined) {
    const pp = ({ Always: 'always', IfNotPresent: 'missing', Never: 'never' } as const)[String(c.imagePullPolicy) as 'Always'];
    if (pp) container.pullPolicy = pp;
    else issues.error(d, cp('imagePullPolicy'), 'must be Always, IfNotPresent or Never');
  }
  // Kubernetes runs the image's entrypoint as PID 1, without an init.
  container.init = false;
  if (typeof spec.terminationGracePeriodSeconds === 'number' && spec.terminationGracePeriodSeconds >= 0) container.stopGracePeriodMs = spec.terminationGracePeriodSeconds * 1000;
  else container.stopGracePeriodMs = 30_000;
  if (spec.hostNetwork === true) container.networkMode = 'host';
  if (typeof spec.hostname === 'string') container.hostname = spec.hostname;

  container.env = readEnv(d, issues, world, cp(), c);
  const ports = readPorts(d, issues, cp('ports'), c.ports);
  readSecurity(d, issues, [...pod.at, 'securityContext'], spec.securityContext, cp('securityContext'), c.securityContext, container);
  const claimMounts = readVolumes(d, issues, world, pod.at, spec.volumes, cp('volumeMounts'), c.volumeMounts, container, pod.claims, pod.shared).map((m) => (role === 'main' || !name ? m : { ...m, container: name }));

  if (role === 'init' && !sidecar) {
    // The API server refuses them: an init container runs to completion, nothing probes it.
    for (const k of ['livenessProbe', 'readinessProbe', 'startupProbe']) if (c[k] !== undefined) issues.error(d, cp(k), 'an init container has no probes (it runs to completion)');
  } else {
    const live = probe(d, issues, cp('livenessProbe'), c.livenessProbe, ports);
    const ready = probe(d, issues, cp('readinessProbe'), c.readinessProbe, ports);
    const startup = probe(d, issues, cp('startupProbe'), c.startupProbe, ports);
    if (startup) {
      // Kubernetes holds liveness until the startup probe passes; Baton's nearest is a start period that long.
      const grace = startup.startPeriodMs + startup.intervalMs * Math.max(1, startup.retries);
      if (live) live.startPeriodMs = Math.max(live.startPeriodMs, grace);
      issues.warn(d, cp('startupProbe'), `a startup probe becomes the liveness probe's start period (${grace / 1000} s): Baton does not run it`);
    }
    if (live) container.healthcheck = live;
    if (ready) container.readiness = ready;
  }
  if (c.lifecycle !== undefined) {
    if (role === 'init' && !sidecar) issues.error(d, cp('lifecycle'), 'an init container has no lifecycle hooks (it runs to completion)');
    else readLifecycle(d, issues, cp('lifecycle'), c.lifecycle, container);
  }
  const resources = readResources(d, issues, cp('resources'), c.resources);
  return { ...(name ? { name } : {}), container, resources, ports, claimMounts, sidecar };
}

const CONTAINER_FIELDS = new Set(['name', 'image', 'imagePullPolicy', 'command', 'args', 'workingDir', 'env', 'envFrom', 'ports', 'resources', 'volumeMounts', 'livenessProbe', 'readinessProbe', 'startupProbe', 'securityContext', 'restartPolicy', 'lifecycle']);
const CONTAINER_IGNORED: Record<string, string> = {
  terminationMessagePath: "Baton keeps a task's exit code and its engine's error",
  terminationMessagePolicy: "Baton keeps a task's exit code and its engine's error",
  stdin: 'tasks run without a terminal',
  stdinOnce: 'tasks run without a terminal',
  tty: 'tasks run without a terminal',
};

/** readLifecycle: a preStop hook that runs a command or pauses (before the stop signal, within the grace period). */
function readLifecycle(d: KDoc, issues: Issues, at: PathSegment[], v: unknown, container: ContainerSpec): void {
  if (!isObj(v)) return issues.error(d, at, 'must be a mapping');
  for (const k of Object.keys(v)) if (k !== 'preStop' && k !== 'postStart') issues.unsupported(d, [...at, k], `\`${k}\``);
  if (v.postStart !== undefined) issues.unsupported(d, [...at, 'postStart'], 'a postStart hook', "Baton starts a container and then probes it; make the step part of the image's entrypoint");
  const h = v.preStop;
  if (h === undefined) return;
  const hs = [...at, 'preStop'];
  if (!isObj(h)) return issues.error(d, hs, 'must be a mapping');
  if (isObj(h.exec)) {
    const cmd = Array.isArray(h.exec.command) ? h.exec.command.map(String) : [];
    if (!cmd.length) return issues.error(d, [...hs, 'exec', 'command'], 'must be a command');
    container.preStop = { command: cmd };
  } else if (isObj(h.sleep)) {
    const secs = h.sleep.seconds;
    if (typeof secs !== 'number' || !Number.isInteger(secs) || secs < 0) return issues.error(d, [...hs, 'sleep', 'seconds'], 'must be a whole number of seconds');
    container.preStop = { sleepMs: secs * 1000 };
  } else if (isObj(h.httpGet) || isObj(h.tcpSocket)) issues.unsupported(d, [...hs, isObj(h.httpGet) ? 'httpGet' : 'tcpSocket'], `a ${isObj(h.httpGet) ? 'httpGet' : 'tcpSocket'} preStop hook`, 'Baton runs exec and sleep hooks');
  else issues.error(d, hs, 'needs exec or sleep');
}

function strings(d: KDoc, issues: Issues, at: PathSegment[], v: unknown): string[] {
  if (Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number')) return v.map(String);
  issues.error(d, at, 'must be a list of strings');
  return [];
}

/** readEnv: env (values, and ConfigMap keys and pod fields Baton knows) and envFrom ConfigMaps. */
function readEnv(d: KDoc, issues: Issues, world: World, at: PathSegment[], c: Obj): Record<string, string> {
  const env: Record<string, string> = {};
  if (Array.isArray(c.envFrom)) {
    c.envFrom.forEach((src, i) => {
      const s = [...at, 'envFrom', i];
      if (!isObj(src)) return issues.error(d, s, 'must be a mapping');
      const prefix = typeof src.prefix === 'string' ? src.prefix : '';
      if (isObj(src.configMapRef)) {
        const cm = world.configMap(String(src.configMapRef.name ?? ''));
        if (!cm) {
          if (src.configMapRef.optional !== true) issues.error(d, [...s, 'configMapRef', 'name'], `ConfigMap "${String(src.configMapRef.name)}" is not in this apply or an earlier one in ${world.stack}`);
          return;
        }
        if (!cm.doc) return issues.error(d, [...s, 'configMapRef', 'name'], EARLIER_VALUES(String(src.configMapRef.name)));
        for (const [k, v] of cm.entries) env[prefix + k] = v.toString('utf8');
      } else if (isObj(src.secretRef)) issues.unsupported(d, [...s, 'secretRef'], 'a Secret in the environment', SECRET_ENV_REASON);
      else issues.error(d, s, 'needs configMapRef or secretRef');
    });
  }
  if (c.env !== undefined && !Array.isArray(c.env)) issues.error(d, [...at, 'env'], 'must be a list of {name, value}');
  if (Array.isArray(c.env)) {
    c.env.forEach((e, i) => {
      const s = [...at, 'env', i];
      if (!isObj(e) || typeof e.name !== 'string') return issues.error(d, s, 'must be {name, value} or {name, valueFrom}');
      if (e.value !== undefined) env[e.name] = String(e.value ?? '');
      else if (isObj(e.valueFrom)) {
        const vf = e.valueFrom;
        if (isObj(vf.configMapKeyRef)) {
          const ref = vf.configMapKeyRef;
          const cm = world.configMap(String(ref.name ?? ''));
          const value = cm?.entries.get(String(ref.key ?? ''));
          if (cm && !cm.doc) issues.error(d, [...s, 'valueFrom', 'configMapKeyRef'], EARLIER_VALUES(String(ref.name)));
          else if (value !== undefined) env[e.name] = value.toString('utf8');
          else if (ref.optional !== true) issues.error(d, [...s, 'valueFrom', 'configMapKeyRef'], cm ? `ConfigMap "${String(ref.name)}" has no key "${String(ref.key)}"` : `ConfigMap "${String(ref.name)}" is not in this apply or an earlier one in ${world.stack}`);
        } else if (isObj(vf.secretKeyRef)) issues.unsupported(d, [...s, 'valueFrom', 'secretKeyRef'], 'a Secret in the environment', SECRET_ENV_REASON);
        else if (isObj(vf.fieldRef)) {
          const f = String(vf.fieldRef.fieldPath ?? '');
          if (f === 'metadata.namespace') env[e.name] = world.stack;
          else issues.unsupported(d, [...s, 'valueFrom', 'fieldRef'], `the pod field ${f}`, 'only metadata.namespace is known when the file is read; a task finds its own name in BATON_TASK and its address in BATON_HOST_IP');
        } else issues.unsupported(d, [...s, 'valueFrom'], 'this valueFrom', 'Baton reads value, configMapKeyRef and fieldRef metadata.namespace');
      } else env[e.name] = '';
    });
  }
  return env;
}

/** A ConfigMap of an earlier apply has its keys known to the CLI, not its values. */
const EARLIER_VALUES = (name: string) => `ConfigMap "${name}" was applied earlier: its values reach a pod's environment only from the apply that holds it (apply both together, or mount it as a volume)`;

const SECRET_ENV_REASON = 'Baton never puts a secret in a container\'s environment (docker inspect and /proc show it): mount the Secret as a volume and read the file';

function readPorts(d: KDoc, issues: Issues, at: PathSegment[], v: unknown): { port: number; name?: string; protocol: 'tcp' | 'udp'; hostPort?: number }[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    issues.error(d, at, 'must be a list');
    return [];
  }
  const out: { port: number; name?: string; protocol: 'tcp' | 'udp'; hostPort?: number }[] = [];
  v.forEach((x, i) => {
    if (!isObj(x) || !validPort(x.containerPort)) return issues.error(d, [...at, i, 'containerPort'], 'must be a port number (1-65535)');
    const protocol = x.protocol === undefined || x.protocol === 'TCP' ? 'tcp' : x.protocol === 'UDP' ? 'udp' : undefined;
    if (!protocol) return issues.unsupported(d, [...at, i, 'protocol'], `protocol ${String(x.protocol)}`, 'Baton carries TCP and UDP');
    if (x.hostPort !== undefined && !validPort(x.hostPort)) return issues.error(d, [...at, i, 'hostPort'], 'must be a port number (1-65535)');
    if (x.hostIP !== undefined) issues.unsupported(d, [...at, i, 'hostIP'], 'hostIP', 'a hostPort is bound on the node\'s address');
    out.push({ port: x.containerPort as number, protocol, ...(typeof x.name === 'string' ? { name: x.name } : {}), ...(x.hostPort !== undefined ? { hostPort: x.hostPort as number } : {}) });
  });
  return out;
}

export function validPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

/** probe: a liveness, readiness or startup probe as a Baton probe. */
function probe(d: KDoc, issues: Issues, at: PathSegment[], v: unknown, ports: { port: number; name?: string }[]): HealthcheckSpec | undefined {
  if (v === undefined) return undefined;
  if (!isObj(v)) {
    issues.error(d, at, 'must be a mapping');
    return undefined;
  }
  const secs = (k: string, dflt: number) => (typeof v[k] === 'number' ? (v[k] as number) : dflt);
  const h: HealthcheckSpec = { test: [], intervalMs: secs('periodSeconds', 10) * 1000, timeoutMs: secs('timeoutSeconds', 1) * 1000, retries: secs('failureThreshold', 3), startPeriodMs: secs('initialDelaySeconds', 0) * 1000 };
  const port = (p: unknown, where: PathSegment[]): number | undefined => {
    if (validPort(p)) return p;
    const named = typeof p === 'string' ? ports.find((x) => x.name === p)?.port : undefined;
    if (named === undefined) issues.error(d, where, typeof p === 'string' ? `names no port of the container ("${p}")` : 'must be a port number or a container port\'s name');
    return named;
  };
  if (isObj(v.exec)) {
    const cmd = Array.isArray(v.exec.command) ? v.exec.command.map(String) : [];
    if (!cmd.length) issues.error(d, [...at, 'exec', 'command'], 'must be a command');
    h.test = ['CMD', ...cmd];
  } else if (isObj(v.httpGet)) {
    const g = v.httpGet;
    if (g.scheme === 'HTTPS') issues.unsupported(d, [...at, 'httpGet', 'scheme'], 'an HTTPS probe', 'Baton probes over plain HTTP; probe a plain port, or use exec');
    if (g.httpHeaders !== undefined) issues.warn(d, [...at, 'httpGet', 'httpHeaders'], 'probe headers are not sent');
    if (g.host !== undefined) issues.unsupported(d, [...at, 'httpGet', 'host'], 'a probe host', "Baton probes the task's own address");
    const n = port(g.port, [...at, 'httpGet', 'port']);
    if (n === undefined) return undefined;
    const path = typeof g.path === 'string' && g.path.startsWith('/') ? g.path : '/';
    h.test = ['NONE'];
    h.http = { path, port: n };
  } else if (isObj(v.tcpSocket)) {
    const n = port(v.tcpSocket.port, [...at, 'tcpSocket', 'port']);
    if (n === undefined) return undefined;
    h.test = ['NONE'];
    h.tcp = { port: n };
  } else if (isObj(v.grpc)) {
    // The nearest Baton has: the port accepts connections (not the gRPC health service's answer).
    const n = port(v.grpc.port, [...at, 'grpc', 'port']);
    if (n === undefined) return undefined;
    issues.warn(d, [...at, 'grpc'], `a gRPC probe becomes a TCP probe of port ${n}: Baton checks that the port accepts connections, not the gRPC health service's answer`);
    h.test = ['NONE'];
    h.tcp = { port: n };
  } else {
    issues.error(d, at, 'needs exec, httpGet, tcpSocket or grpc');
    return undefined;
  }
  if (typeof v.successThreshold === 'number' && v.successThreshold > 1) issues.warn(d, [...at, 'successThreshold'], 'one success is enough for Baton');
  return h;
}

function readResources(d: KDoc, issues: Issues, at: PathSegment[], v: unknown): ResourceSpec {
  const r: ResourceSpec = { reservations: { cpus: 0, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } };
  if (!isObj(v)) return r;
  for (const [key, into] of [['requests', r.reservations], ['limits', r.limits]] as const) {
    const x = v[key];
    if (!isObj(x)) continue;
    for (const [res, q] of Object.entries(x)) {
      const s = [...at, key, res];
      if (res === 'cpu') {
        const c = cpuCores(q);
        if (c === undefined) issues.error(d, s, 'must be a CPU quantity (0.5, 500m)');
        else into.cpus = c;
      } else if (res === 'memory') {
        const m = memoryBytes(q);
        if (m === undefined) issues.error(d, s, 'must be a memory quantity (128Mi, 1G)');
        else into.memoryBytes = m;
      } else if (res === 'ephemeral-storage') issues.ignored(d, s, "Baton does not account for a container's disk use");
      else issues.unsupported(d, s, `the resource ${res}`, 'Baton schedules CPU and memory');
    }
  }
  // Kubernetes' requests default to the limits.
  if (isObj(v.limits) && !isObj(v.requests)) r.reservations = { ...r.limits };
  return r;
}

function readSecurity(d: KDoc, issues: Issues, podAt: PathSegment[], pod: unknown, at: PathSegment[], c: unknown, container: ContainerSpec): void {
  let uid: number | undefined;
  let gid: number | undefined;
  for (const [where, sc] of [[podAt, pod], [at, c]] as const) {
    if (sc === undefined) continue;
    if (!isObj(sc)) {
      issues.error(d, where, 'must be a mapping');
      continue;
    }
    for (const [k, v] of Object.entries(sc)) {
      const s = [...where, k];
      if (k === 'runAsUser' && typeof v === 'number') uid = v;
      else if (k === 'runAsGroup' && typeof v === 'number') gid = v;
      else if (k === 'readOnlyRootFilesystem') container.readOnly = v === true;
      else if (k === 'capabilities' && isObj(v)) {
        if (Array.isArray(v.add)) container.capAdd = v.add.map(String);
        if (Array.isArray(v.drop)) container.capDrop = v.drop.map(String);
      } else if (k === 'privileged') {
        if (v === true) issues.unsupported(d, s, 'a privileged container', 'it would hold every capability of the node');
      } else if (k === 'sysctls' && Array.isArray(v)) {
        for (const x of v) if (isObj(x) && typeof x.name === 'string') container.sysctls[x.name] = String(x.value ?? '');
      } else if (['runAsNonRoot', 'allowPrivilegeEscalation', 'seccompProfile', 'seLinuxOptions', 'appArmorProfile', 'procMount', 'fsGroup', 'fsGroupChangePolicy', 'supplementalGroups', 'windowsOptions'].includes(k)) {
        issues.ignored(d, s, "Baton runs containers with the engine's default security profile");
      } else issues.unsupported(d, s, `\`${k}\``);
    }
  }
  if (uid !== undefined) container.user = gid !== undefined ? `${uid}:${gid}` : String(uid);
  else if (gid !== undefined) issues.warn(d, [...at, 'runAsGroup'], 'a group without runAsUser is ignored');
}

/** readVolumes: each volumeMount of the container, by its volume's kind. */
function readVolumes(d: KDoc, issues: Issues, world: World, pod: PathSegment[], volumes: unknown, at: PathSegment[], mounts: unknown, container: ContainerSpec, claims: ReadonlySet<string>, shared: ReadonlySet<string>): ClaimMount[] {
  const byName = new Map<string, { v: Obj; i: number }>();
  const claimMounts: ClaimMount[] = [];
  if (Array.isArray(volumes)) volumes.forEach((v, i) => isObj(v) && typeof v.name === 'string' && byName.set(v.name, { v, i }));
  if (mounts === undefined) return claimMounts;
  if (!Array.isArray(mounts)) {
    issues.error(d, at, 'must be a list');
    return claimMounts;
  }
  const configs: FileRefSpec[] = [];
  const secrets: FileRefSpec[] = [];
  mounts.forEach((m, i) => {
    const s = [...at, i];
    if (!isObj(m) || typeof m.name !== 'string' || typeof m.mountPath !== 'string' || !m.mountPath.startsWith('/')) return issues.error(d, s, 'needs a name and an absolute mountPath');
    const vol = byName.get(m.name);
    if (!vol && claims.has(m.name)) {
      if (m.subPath !== undefined) issues.unsupported(d, [...s, 'subPath'], 'a subPath of a claim', 'the volume of an ordinal is mounted whole');
      claimMounts.push({ name: m.name, target: m.mountPath, readOnly: m.readOnly === true });
      return;
    }
    if (!vol) return issues.error(d, [...s, 'name'], `no volume of the pod is named "${m.name}"`);
    const vs = [...pod, 'volumes', vol.i];
    const readOnly = m.readOnly === true;
    const subPath = typeof m.subPath === 'string' ? m.subPath : undefined;
    const v = vol.v;
    if (isObj(v.emptyDir) || v.emptyDir === null) {
      const memory = isObj(v.emptyDir) && v.emptyDir.medium === 'Memory';
      if (subPath !== undefined) issues.unsupported(d, [...s, 'subPath'], 'a subPath of an emptyDir', 'the directory is mounted whole');
      if (memory && !shared.has(m.name)) container.tmpfs.push(m.mountPath);
      else if (!DNS_LABEL.test(m.name)) issues.error(d, [...vs, 'name'], 'must be a lowercase DNS label (a-z, 0-9 and -, at most 63)');
      else {
        // The task's own directory, which every container of the task that mounts it shares (agent/taskDirs.ts).
        if (memory) issues.warn(d, [...vs, 'emptyDir', 'medium'], `emptyDir "${m.name}" is shared by several containers, so it is kept on the node's disk, not in memory`);
        container.mounts.push({ type: 'task', source: m.name, target: m.mountPath, readOnly });
      }
    } else if (isObj(v.hostPath)) {
      const path = String(v.hostPath.path ?? '');
      if (!path.startsWith('/')) return issues.error(d, [...vs, 'hostPath', 'path'], 'must be an absolute path');
      container.mounts.push({ type: 'bind', source: subPath ? `${path.replace(/\/$/, '')}/${subPath}` : path, target: m.mountPath, readOnly });
    } else if (isObj(v.configMap) || isObj(v.secret)) {
      const isConfig = isObj(v.configMap);
      const src = (isConfig ? v.configMap : v.secret) as Obj;
      const objName = String(isConfig ? src.name : src.secretName);
      const files = isConfig ? world.configMap(objName) : world.secret(objName);
      const kindWord = isConfig ? 'ConfigMap' : 'Secret';
      const mode = typeof src.defaultMode === 'number' ? src.defaultMode : 0o644;
      let items: { key: string; path: string; mode: number }[];
      if (Array.isArray(src.items)) items = src.items.filter(isObj).map((it) => ({ key: String(it.key), path: String(it.path ?? it.key), mode: typeof it.mode === 'number' ? it.mode : mode }));
      else if (files) items = [...files.entries.keys()].map((key) => ({ key, path: key, mode }));
      else {
        if (src.optional !== true) issues.error(d, [...vs, isConfig ? 'configMap' : 'secret'], `${kindWord} "${objName}" is not in this apply or an earlier one in ${world.stack}, and the volume lists no items`);
        return;
      }
      for (const it of items) {
        if (files && !files.entries.has(it.key)) {
          issues.error(d, [...vs, isConfig ? 'configMap' : 'secret', 'items'], `${kindWord} "${objName}" has no key "${it.key}"`);
          continue;
        }
        if (subPath !== undefined && subPath !== it.path) continue;
        const target = subPath !== undefined ? m.mountPath : `${m.mountPath.replace(/\/$/, '')}/${it.path}`;
        (isConfig ? configs : secrets).push({ source: world.fileName(objName, it.key), target, uid: 0, gid: 0, mode: it.mode & 0o777 });
      }
    } else if (isObj(v.persistentVolumeClaim)) {
      issues.unsupported(d, [...vs, 'persistentVolumeClaim'], 'a PersistentVolumeClaim', "Baton keeps volumes with each node's local driver; use hostPath or emptyDir, or a named volume in Compose");
    } else {
      const kind = Object.keys(v).find((k) => k !== 'name') ?? 'unknown';
      issues.unsupported(d, [...vs, kind], `a ${kind} volume`, 'Baton mounts emptyDir, hostPath, configMap and secret volumes');
    }
  });
  if (configs.length) container.configs = configs;
  if (secrets.length) container.secrets = secrets;
  return claimMounts;
}

