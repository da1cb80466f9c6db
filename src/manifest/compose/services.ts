/**
 * Services: one Compose service in, one Baton service out. translateService
 * accounts for every key the schema knows (translating it or handing it to
 * the policy table), reads `deploy` and places the x-baton settings in the
 * spec; the parts are read by their own modules (container, ports, volumes,
 * resources, networks, xBaton).
 */

import {
  defaultContainerSpec,
  DEFAULT_UPDATE_CONFIG,
  isGlobal,
  isJob,
  SPREAD_PREFERENCE,
  type AutoscaleSpec,
  type CanarySpec,
  type ContainerSpec,
  type JobSpec,
  type ScheduleSpec,
  type ServiceSpec,
  type Toleration,
} from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { environment, extraHosts, healthcheck, mergeProbe, pullPolicy, ulimits } from './container.js';
import { isObj, type Ctx } from './issues.js';
import { COMPOSE_KEY_POLICY } from './keyPolicy.js';
import { readEndpointMode, readLinks, readServiceNetworking } from './networks.js';
import { checkHostAddresses, translateExpose, translatePorts } from './ports.js';
import { translateResources, translateRestart, translateUpdate } from './resources.js';
import { SERVICE_SCHEMA_KEYS } from './schema.js';
import { STACK_LABEL, type ComposeService } from './types.js';
import { command, duration, listOrDict, stringList, text, toBool, toInt } from './values.js';
import { volumes } from './volumes.js';
import { serviceRefs } from './files.js';
import { dependsOn } from './dependsOn.js';
import { readBuild, type LocalBuild } from './build.js';
import { buildRepository } from '../../api/build.js';
import { xBaton, type XProbe } from './xBaton.js';

const SERVICE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

const SERVICE_HANDLED = [
  'image',
  'depends_on',
  'secrets',
  'configs',
  'build',
  'command',
  'entrypoint',
  'environment',
  'env_file',
  'labels',
  'ports',
  'expose',
  'network_mode',
  'networks',
  'links',
  'deploy',
  'scale',
  'volumes',
  'user',
  'working_dir',
  'read_only',
  'cap_add',
  'cap_drop',
  'tmpfs',
  'ulimits',
  'sysctls',
  'extra_hosts',
  'hostname',
  'init',
  'stop_signal',
  'stop_grace_period',
  'healthcheck',
  'pull_policy',
  'platform',
  'profiles',
  'restart',
  'cpus',
  'mem_limit',
  'mem_reservation',
  'pids_limit',
  'x-baton',
];

export function translateService(ctx: Ctx, key: string, svc: unknown): ComposeService | undefined {
  const base: PathSegment[] = ['services', key];
  const at = (...rest: PathSegment[]): PathSegment[] => [...base, ...rest];
  if (!SERVICE_NAME.test(key)) {
    ctx.error(base, `invalid service name "${key}": use letters, digits, "_", "." and "-", starting with a letter or digit`);
  }
  if (!isObj(svc)) {
    ctx.error(base, 'must be a mapping');
    return undefined;
  }

  // Keys Baton does not translate: the policy table decides (schema-unknown keys are already schema errors).
  for (const k of Object.keys(svc)) {
    if (SERVICE_HANDLED.includes(k) || k.startsWith('x-')) continue;
    if (!SERVICE_SCHEMA_KEYS.includes(k)) continue;
    ctx.policy(at(k), `services.*.${k}`);
  }

  // image, or build (build.ts): a service with both runs its image unless pull_policy says build
  let image = '';
  let build: LocalBuild | undefined;
  const buildIt = svc.build !== undefined && svc.build !== null && (typeof svc.image !== 'string' || svc.image.trim() === '' || svc.pull_policy === 'build');
  if (buildIt) {
    build = readBuild(ctx, svc.build, at('build'));
    image = buildRepository(`${ctx.stack}_${key}`);
  } else if (typeof svc.image === 'string' && svc.image.trim() !== '') {
    image = svc.image.trim();
    if (svc.build !== undefined) ctx.policy(at('build'), 'services.*.build');
  } else {
    ctx.error(at('image'), 'image is required, or build to build one');
  }
  if (svc.pull_policy === 'build' && svc.build === undefined) ctx.error(at('pull_policy'), 'pull_policy "build" needs a build section');

  const container: ContainerSpec = defaultContainerSpec(image);

  if (svc.command !== undefined) {
    const c = command(ctx, svc.command, at('command'));
    if (c) container.command = c;
  }
  if (svc.entrypoint !== undefined) {
    const c = command(ctx, svc.entrypoint, at('entrypoint'));
    if (c) container.entrypoint = c;
  }

  container.env = environment(ctx, svc, base);
  if (svc.labels !== undefined) for (const [k, v] of listOrDict(ctx, svc.labels, at('labels'))) container.labels[k] = v ?? '';

  if (typeof svc.user === 'string') container.user = svc.user;
  else if (typeof svc.user === 'number') container.user = String(svc.user);
  if (typeof svc.working_dir === 'string') container.workingDir = svc.working_dir;
  if (typeof svc.hostname === 'string') container.hostname = svc.hostname;
  if (typeof svc.stop_signal === 'string') container.stopSignal = svc.stop_signal;
  if (svc.read_only !== undefined) container.readOnly = toBool(ctx, svc.read_only, at('read_only')) ?? false;
  if (svc.init !== undefined) container.init = toBool(ctx, svc.init, at('init')) ?? true;
  if (svc.cap_add !== undefined) container.capAdd = stringList(ctx, svc.cap_add, at('cap_add'));
  if (svc.cap_drop !== undefined) container.capDrop = stringList(ctx, svc.cap_drop, at('cap_drop'));
  if (svc.tmpfs !== undefined) container.tmpfs = stringList(ctx, svc.tmpfs, at('tmpfs'));
  if (svc.ulimits !== undefined) container.ulimits = ulimits(ctx, svc.ulimits, at('ulimits'));
  if (svc.sysctls !== undefined) for (const [k, v] of listOrDict(ctx, svc.sysctls, at('sysctls'))) container.sysctls[k] = v ?? '';
  if (svc.extra_hosts !== undefined) container.extraHosts = extraHosts(ctx, svc.extra_hosts, at('extra_hosts'));
  if (svc.stop_grace_period !== undefined) container.stopGracePeriodMs = duration(ctx, svc.stop_grace_period, at('stop_grace_period')) ?? 10_000;
  if (svc.healthcheck !== undefined && svc.healthcheck !== null) {
    const h = healthcheck(ctx, svc.healthcheck, at('healthcheck'));
    if (h) container.healthcheck = h;
  }
  if (svc.pull_policy !== undefined) {
    const p = pullPolicy(ctx, svc.pull_policy, at('pull_policy'));
    if (p) container.pullPolicy = p;
  }
  const net = readServiceNetworking(ctx, svc, base, ctx.networks);
  container.networkMode = net.mode;
  if (svc.links !== undefined) readLinks(ctx, svc.links, at('links'));
  volumes(ctx, svc.volumes, at('volumes'), container);
  const secrets = serviceRefs(ctx, 'secret', svc.secrets, at('secrets'));
  if (secrets.length) container.secrets = secrets;
  const configs = serviceRefs(ctx, 'config', svc.configs, at('configs'));
  if (configs.length) container.configs = configs;

  const ports = svc.ports === undefined ? [] : translatePorts(ctx, svc.ports, at('ports'));
  // `network_mode: host` says the program binds its ports on the host itself: each is a fixed host port, as `mode: host` publishing is.
  if (svc.network_mode === 'host') for (const p of ports) Object.assign(p, { mode: 'host', published: p.published ?? p.target });
  checkHostAddresses(ctx, ports, container.networkMode);
  const expose = svc.expose === undefined ? [] : translateExpose(ctx, svc.expose, at('expose'), ports);
  if (container.networkMode !== 'bridge' && ports.some((p) => p.protocol === 'udp')) ctx.error(at(svc.ports === undefined ? 'expose' : 'ports'), `a UDP port needs the task's own network (network_mode: ${container.networkMode} has none to forward into); remove network_mode or the UDP port`);

  // deploy
  const deploy = isObj(svc.deploy) ? svc.deploy : {};
  const dseg = (...rest: PathSegment[]) => at('deploy', ...rest);
  if (isObj(svc.deploy)) {
    ctx.checkKeys(deploy, at('deploy'), 'services.*.deploy', ['mode', 'replicas', 'labels', 'resources', 'restart_policy', 'placement', 'update_config', 'rollback_config', 'endpoint_mode']);
    readEndpointMode(ctx, deploy.endpoint_mode, dseg('endpoint_mode'));
  }
  const MODES = ['replicated', 'global', 'replicated-job', 'global-job'] as const;
  let mode: ServiceSpec['mode'] = MODES.includes(deploy.mode as never) ? (deploy.mode as ServiceSpec['mode']) : 'replicated';
  if (isGlobal({ mode }) && deploy.replicas !== undefined && deploy.replicas !== null) ctx.error(dseg('replicas'), `a ${mode} service runs one task on every eligible node; remove replicas, or use mode: replicated`);
  if (deploy.mode !== undefined && deploy.mode !== null && !MODES.includes(deploy.mode as never)) {
    const row = `services.*.deploy.mode=${text(deploy.mode)}`;
    if (Object.hasOwn(COMPOSE_KEY_POLICY, row)) ctx.unsupported(dseg('mode'), row, text(deploy.mode));
    else ctx.error(dseg('mode'), `must be one of: replicated, global, replicated-job, global-job`);
  }
  let replicas = 1;
  if (deploy.replicas !== undefined && deploy.replicas !== null) replicas = toInt(ctx, deploy.replicas, dseg('replicas')) ?? 1;
  if (svc.scale !== undefined && svc.scale !== null) {
    const scale = toInt(ctx, svc.scale, at('scale'));
    if (scale !== undefined) {
      if (deploy.replicas !== undefined && deploy.replicas !== null && scale !== replicas) {
        ctx.error(at('scale'), `conflicts with deploy.replicas (${scale} vs ${replicas}); set one of them`);
      }
      replicas = scale;
    }
  }
  const resources = translateResources(ctx, svc, deploy, base);
  const restartPolicy = translateRestart(ctx, svc, deploy, base);
  const constraints: string[] = [];
  if (svc.platform !== undefined) constraints.push(...platformConstraints(ctx, svc.platform, at('platform')));
  const placement: ServiceSpec['placement'] = { constraints };
  if (isObj(deploy.placement)) {
    const pl = deploy.placement;
    ctx.checkKeys(pl, dseg('placement'), 'services.*.deploy.placement', ['constraints', 'preferences', 'max_replicas_per_node']);
    if (pl.constraints !== undefined) {
      const list = stringList(ctx, pl.constraints, dseg('placement', 'constraints'));
      list.forEach((c, i) => {
        const why = constraintProblem(c);
        if (why) ctx.error(dseg('placement', 'constraints', i), why);
      });
      constraints.push(...list);
    }
    if (pl.preferences !== undefined) {
      const prefs: string[] = [];
      if (!Array.isArray(pl.preferences)) ctx.error(dseg('placement', 'preferences'), 'must be a list of {spread: <node attribute>}');
      else
        pl.preferences.forEach((p, i) => {
          const at2 = dseg('placement', 'preferences', i);
          if (!isObj(p) || Object.keys(p).length !== 1 || typeof p.spread !== 'string') return ctx.error(at2, 'must be {spread: <node attribute>}, e.g. {spread: node.labels.zone}');
          const spread = p.spread.trim();
          if (!SPREAD_PREFERENCE.test(spread)) return ctx.error([...at2, 'spread'], `"${p.spread}": Baton spreads over node.labels.<key>, node.id, node.hostname or node.name`);
          prefs.push(spread);
        });
      if (prefs.length) placement.preferences = prefs;
    }
    if (pl.max_replicas_per_node !== undefined) {
      const n = Number(pl.max_replicas_per_node);
      if (!Number.isInteger(n) || n < 0) ctx.error(dseg('placement', 'max_replicas_per_node'), `must be a whole number ≥ 0 (0 means no limit), got ${JSON.stringify(pl.max_replicas_per_node)}`);
      else if (n > 0) placement.maxReplicasPerNode = n;
    }
  }
  const labels: Record<string, string> = {};
  if (deploy.labels !== undefined) for (const [k, v] of listOrDict(ctx, deploy.labels, dseg('labels'))) labels[k] = v ?? '';
  labels[STACK_LABEL] = ctx.stack;

  const x = xBaton(ctx, svc['x-baton'], at('x-baton'));
  const backoff = x.restart as { backoff?: never; initialMs?: number; maxMs?: number; factor?: number } | undefined;
  if (backoff?.initialMs !== undefined) {
    restartPolicy.delayMs = backoff.initialMs;
    restartPolicy.maxDelayMs = Math.max(restartPolicy.maxDelayMs, backoff.initialMs);
  }
  if (backoff?.maxMs !== undefined) restartPolicy.maxDelayMs = backoff.maxMs;
  if (backoff?.factor !== undefined) restartPolicy.factor = backoff.factor;
  if (x.healthcheck) container.healthcheck = mergeProbe(container.healthcheck, x.healthcheck as XProbe);
  if (x.readiness) container.readiness = mergeProbe(undefined, x.readiness as XProbe);
  if (typeof x.pull_secret === 'string') container.pullSecret = { source: x.pull_secret };
  if (x.strategy === 'binpack' || x.strategy === 'spread') placement.strategy = x.strategy;
  if (Array.isArray(x.tolerations) && x.tolerations.length) placement.tolerations = x.tolerations as Toleration[];
  if (typeof x.priority === 'number' && x.priority !== 0) placement.priority = x.priority;
  // A sibling in this file is named by its short name; anything else is a full service name.
  const full = (list: unknown) => (list as { service: string; required: boolean }[]).map((a) => ({ ...a, service: ctx.serviceKeys.has(a.service) ? `${ctx.stack}_${a.service}` : a.service }));
  if (Array.isArray(x.affinity) && x.affinity.length) placement.affinity = full(x.affinity);
  if (Array.isArray(x.anti_affinity) && x.anti_affinity.length) placement.antiAffinity = full(x.anti_affinity);

  // Autoscaling: replicas is only the starting count, within min and max.
  const autoscale = x.autoscale as AutoscaleSpec | undefined;
  if (autoscale) {
    if (mode !== 'replicated') ctx.error(at('x-baton', 'autoscale'), `only a replicated service is autoscaled, not a ${mode} one`);
    if ((autoscale.rps !== undefined || autoscale.concurrency !== undefined) && ports.length === 0) ctx.error(at('x-baton', 'autoscale'), 'rps and concurrency are measured by the routing mesh: the service needs published ports');
    replicas = Math.min(autoscale.max, Math.max(autoscale.min, replicas));
  }
  // Jobs: run to completion. A schedule makes the service a cron job (a job template).
  const schedule = x.schedule as ScheduleSpec | undefined;
  if (schedule && mode === 'replicated') mode = 'replicated-job';
  if (schedule && mode === 'global') ctx.error(at('x-baton', 'schedule'), 'a schedule runs a job: use deploy.mode replicated-job or global-job (or leave mode out)');
  let job: JobSpec | undefined;
  if (isJob({ mode })) {
    const completions = typeof x.completions === 'number' ? x.completions : deploy.replicas !== undefined && deploy.replicas !== null ? replicas : 1;
    job = { completions, parallelism: typeof x.parallelism === 'number' ? x.parallelism : completions, backoffLimit: typeof x.backoff_limit === 'number' ? x.backoff_limit : 6 };
  } else {
    for (const k of ['completions', 'parallelism', 'backoff_limit'] as const) if (x[k] !== undefined) ctx.error(at('x-baton', k), `only a job has ${k}: use deploy.mode replicated-job or global-job`);
  }
  let update = deploy.update_config !== undefined ? translateUpdate(ctx, deploy.update_config, dseg('update_config'), false) : undefined;
  let rollbackConfig = deploy.rollback_config !== undefined ? translateUpdate(ctx, deploy.rollback_config, dseg('rollback_config'), true) : undefined;
  // x-baton.min_ready holds both an update's and a rollback's new tasks to being ready that long (Kubernetes' minReadySeconds).
  if (typeof x.min_ready === 'number' && x.min_ready > 0) {
    update = { ...(update ?? DEFAULT_UPDATE_CONFIG), minReadyMs: x.min_ready };
    rollbackConfig = { ...(rollbackConfig ?? DEFAULT_UPDATE_CONFIG), minReadyMs: x.min_ready };
  }
  const canary = x.canary as CanarySpec | undefined;
  if (canary && mode !== 'replicated') ctx.error(at('x-baton', 'canary'), 'canaries are for replicated services; a global service updates node by node');
  else if (canary && canary.count > replicas) ctx.error(at('x-baton', 'canary'), `${canary.count} canaries for ${replicas} replica(s): at most one per replica`);

  const dependencies = dependsOn(ctx, svc.depends_on, at('depends_on'));
  const spec: ServiceSpec = {
    stack: ctx.stack,
    shortName: key,
    mode,
    replicas: mode === 'replicated' ? replicas : 0,
    container,
    ports,
    expose,
    ...(net.networks ? { networks: net.networks } : {}),
    resources,
    restartPolicy,
    placement,
    ...(update ? { update } : {}),
    ...(rollbackConfig ? { rollbackConfig } : {}),
    ...(canary ? { canary } : {}),
    ...(job ? { job } : {}),
    ...(schedule ? { schedule } : {}),
    ...(autoscale ? { autoscale } : {}),
    ...(dependencies.length ? { dependsOn: dependencies } : {}),
    x,
  };
  return { name: `${ctx.stack}_${key}`, shortName: key, spec, labels, ...(build ? { build } : {}) };
}

/** CONSTRAINT_KEYS are the node attributes a placement constraint may test, as in Swarm. */
const CONSTRAINT_KEYS = ['node.id', 'node.hostname', 'node.name', 'node.role', 'node.platform.os', 'node.platform.arch'];

/** constraintProblem says what is wrong with a constraint expression, or undefined when it is well formed. */
/** Docker's architecture names (what nodes report, as Swarm's node.platform.arch) for the OCI names a platform is written with. */
const ARCH: Record<string, string> = { amd64: 'x86_64', arm64: 'aarch64', 'arm64/v8': 'aarch64', 'arm/v7': 'armv7l', 'arm/v6': 'armv6l', '386': 'i386', ppc64le: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/**
 * platformConstraints: `platform: linux/amd64` places the service's tasks on
 * nodes of that OS and architecture, whose engines then run that variant of
 * the image (Swarm's platform constraint).
 */
function platformConstraints(ctx: Ctx, v: unknown, segs: PathSegment[]): string[] {
  const m = typeof v === 'string' ? /^([a-z0-9]+)(?:\/(.+))?$/.exec(v.trim().toLowerCase()) : null;
  if (!m) {
    ctx.error(segs, 'must be os[/arch[/variant]], e.g. linux/amd64');
    return [];
  }
  const out = [`node.platform.os == ${m[1]}`];
  if (m[2] !== undefined) {
    const arch = ARCH[m[2]] ?? ARCH[m[2].split('/')[0]!];
    // Dropped whole (with --ignore-unsupported): a platform no node reports would hold the service pending for ever.
    if (!arch) {
      ctx.unsupported(segs, 'services.*.platform', `architecture ${m[2]}`);
      return [];
    }
    out.push(`node.platform.arch == ${arch}`);
  }
  return out;
}

export function constraintProblem(expr: string): string | undefined {
  const m = /^\s*([\w.\-/]+)\s*(==|!=)\s*(.+?)\s*$/.exec(expr);
  if (!m) return `"${expr}" must look like <attribute> == <value> or <attribute> != <value>, e.g. node.labels.zone == a`;
  const key = m[1]!;
  if (key.startsWith('node.labels.') && key.length > 'node.labels.'.length) return undefined;
  if (key.startsWith('engine.labels.')) return `"${key}": engine labels are not supported; use node labels (baton node update --label-add)`;
  if (!CONSTRAINT_KEYS.includes(key)) return `"${key}" is not a node attribute Baton knows; use one of ${CONSTRAINT_KEYS.join(', ')}, node.labels.<key>`;
  // A role no node has would leave the service pending for good (== ) or mean nothing (!=): say so now.
  if (key === 'node.role' && m[3] !== 'manager' && m[3] !== 'worker') return `"${m[3]}": node.role is manager (a node that runs a server: baton up's) or worker`;
  return undefined;
}
