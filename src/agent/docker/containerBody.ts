/**
 * The engine's container-create request for one task, built from its
 * ContainerSpec, resources, environment, labels and sandbox: a pure mapping
 * (mounts, tmpfs, ulimits, sysctls, limits, labels…), kept apart from the
 * calls that send it so it can be read and checked without an engine.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import type Docker from 'dockerode';
import { DriverError } from '../driver.js';
import type { ContainerSpec, ResourceSpec } from '../../api/types.js';
import type { TaskConfig } from '../driver.js';

/** createBody builds the engine's container-create request for one task; exported so the mapping can be checked without an engine. */
export function createBody(
  name: string,
  spec: ContainerSpec,
  resources: ResourceSpec,
  env: Record<string, string>,
  labels: Record<string, string>,
  /** A sandbox container whose network namespace this container joins. */
  sandbox?: string,
): Docker.ContainerCreateOptions {
  // Network mode bridge is Baton's task network, never the engine's bridge: without the task's sandbox there is nothing to join.
  if (spec.networkMode === 'bridge' && !sandbox) throw new DriverError('a container of network mode bridge joins its task\'s sandbox, and none was given', 'invalid_config');
  const mergedEnv = { ...spec.env, ...env };
  const hostConfig: Docker.HostConfig & Record<string, unknown> = {
    NetworkMode: sandbox ? `container:${sandbox}` : spec.networkMode,
    Init: spec.init,
    ReadonlyRootfs: spec.readOnly,
    RestartPolicy: { Name: 'no' },
    // The engine's files only buffer output until the agent has copied it into its log store; large, because the engine's
    // follower drops lines when a writer outruns it past a rotation (the agent drops the replays it sends).
    LogConfig: { Type: 'json-file', Config: { 'max-size': '64m', 'max-file': '3' } },
  };
  if (spec.capAdd.length) hostConfig.CapAdd = spec.capAdd;
  if (spec.capDrop.length) hostConfig.CapDrop = spec.capDrop;
  if (spec.tmpfs.length) {
    const tmpfs: Record<string, string> = {};
    for (const entry of spec.tmpfs) {
      const i = entry.indexOf(':');
      if (i < 0) tmpfs[entry] = '';
      else tmpfs[entry.slice(0, i)] = entry.slice(i + 1);
    }
    hostConfig.Tmpfs = tmpfs;
  }
  const ulimits = Object.entries(spec.ulimits).map(([Name, u]) => ({ Name, Soft: u.soft, Hard: u.hard }));
  if (ulimits.length) hostConfig.Ulimits = ulimits;
  if (Object.keys(spec.sysctls).length) hostConfig.Sysctls = { ...spec.sysctls };
  // A container joining a sandbox shares its hosts file and name: the engine refuses either set here.
  if (spec.extraHosts.length && !sandbox) hostConfig.ExtraHosts = [...spec.extraHosts];
  if (spec.mounts.length) {
    hostConfig.Mounts = spec.mounts.map((m) => {
      const mount: Record<string, unknown> = { Type: m.type, Target: m.target, ReadOnly: m.readOnly };
      if (m.type !== 'tmpfs' && m.source) mount.Source = m.source;
      return mount as unknown as Docker.MountSettings;
    });
  }
  if (resources.limits.memoryBytes > 0) hostConfig.Memory = resources.limits.memoryBytes;
  if (resources.limits.cpus > 0) hostConfig.NanoCpus = Math.round(resources.limits.cpus * 1e9);
  if (resources.limits.pids && resources.limits.pids > 0) hostConfig.PidsLimit = resources.limits.pids;

  const body: Docker.ContainerCreateOptions & Record<string, unknown> = {
    name,
    Image: spec.image,
    Env: Object.entries(mergedEnv).map(([k, v]) => `${k}=${v}`),
    Labels: { ...spec.labels, ...labels },
    StopTimeout: Math.max(0, Math.ceil(spec.stopGracePeriodMs / 1000)),
    HostConfig: hostConfig,
  };
  if (spec.command !== undefined) body.Cmd = spec.command;
  if (spec.entrypoint !== undefined) body.Entrypoint = spec.entrypoint;
  if (spec.user) body.User = spec.user;
  if (spec.workingDir) body.WorkingDir = spec.workingDir;
  // Docker rejects a hostname together with host networking (the host's is used).
  if (spec.hostname && spec.networkMode !== 'host' && !sandbox) body.Hostname = spec.hostname;
  if (spec.stopSignal) body.StopSignal = spec.stopSignal;
  // The agent runs health checks itself (at once after start, not after a whole interval as the engine does): the engine's own runner would run each twice.
  if (spec.healthcheck || spec.readiness) body.Healthcheck = { Test: ['NONE'] };
  return body;
}

/** taskBody is createBody for a task's whole TaskConfig. */
export function taskBody(name: string, config: TaskConfig): Docker.ContainerCreateOptions {
  return createBody(name, config.spec, config.resources, config.env, config.labels, config.sandbox?.id);
}

/**
 * ensureBindSources creates a missing bind-mount source directory, as Compose
 * does (`create_host_path` defaults to true); the engine's Mounts API would
 * refuse the container instead. The agent runs on the engine's host.
 */
export function ensureBindSources(config: TaskConfig): void {
  for (const m of config.spec.mounts) {
    if (m.type === 'bind' && m.source && isAbsolute(m.source) && !existsSync(m.source)) mkdirSync(m.source, { recursive: true });
  }
}
