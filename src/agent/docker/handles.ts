/**
 * How the Docker driver names and finds a task's container, and reads its
 * state: the container is named after the task (so a retried create
 * conflicts instead of duplicating), a handle carries its id and name under
 * this driver's name and version (so a handle from another driver, or a
 * newer agent, is refused), and the engine's status words map onto the
 * driver's four states.
 */
import { createHash } from 'node:crypto';
import type Docker from 'dockerode';
import { DriverError, type DriverTaskState, type TaskHandle, type TaskInspect } from '../driver.js';

/** DOCKER_DRIVER_NAME is the `driver` field of every handle this driver makes, so a handle from another driver is refused. */
export const DOCKER_DRIVER_NAME = 'docker';
/** DOCKER_HANDLE_VERSION is the `version` of handles this driver writes; a newer agent reads older ones by it. */
export const DOCKER_HANDLE_VERSION = 1;

const ZERO_TIME = '0001-01-01T00:00:00Z';

/**
 * containerName turns a task name into a valid Docker container name
 * (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`), because the container is found again by
 * this name. Valid names are kept as they are; a name that had to change gets
 * a short hash of the original so two different task names never collide.
 */
export function containerName(taskName: string): string {
  if (/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(taskName)) return taskName;
  let n = taskName.replace(/[^a-zA-Z0-9_.-]+/g, '-').replace(/^[^a-zA-Z0-9]+/, '');
  if (n === '') n = 'task';
  const hash = createHash('sha256').update(taskName).digest('hex').slice(0, 8);
  return `${n}-${hash}`;
}

export function handleOf(id: string, name: string): TaskHandle {
  return { driver: DOCKER_DRIVER_NAME, version: DOCKER_HANDLE_VERSION, id, name };
}

/** containerOf is the engine's container for a handle this driver made; any other handle is refused as invalid_config. */
export function containerOf(docker: Docker, handle: TaskHandle): Docker.Container {
  if (handle.driver !== DOCKER_DRIVER_NAME) {
    throw new DriverError(`handle belongs to driver "${handle.driver}", not "${DOCKER_DRIVER_NAME}"`, 'invalid_config');
  }
  if (handle.version > DOCKER_HANDLE_VERSION) {
    throw new DriverError(`docker handle version ${handle.version} is newer than this agent understands (${DOCKER_HANDLE_VERSION})`, 'invalid_config');
  }
  return docker.getContainer(handle.id || handle.name);
}

export function labelFilters(labels: Record<string, string>): string[] {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`);
}

/** stateOf maps Docker's container status words onto the driver's four states. */
export function stateOf(status: string | undefined): DriverTaskState {
  switch (status) {
    case 'created':
      return 'created';
    case 'running':
    case 'paused':
    case 'restarting':
      return 'running';
    case 'exited':
    case 'dead':
    case 'removing':
      return 'exited';
    default:
      return 'exited';
  }
}

/** neverRan: the container was created and has never been started (nothing ran in it, it wrote nothing). */
export function neverRan(info: Docker.ContainerInspectInfo): boolean {
  return info.State.Status === 'created' && (!info.State.StartedAt || info.State.StartedAt === ZERO_TIME);
}

export function inspectOf(info: Docker.ContainerInspectInfo): TaskInspect {
  const st = info.State;
  const state = stateOf(st.Status);
  const out: TaskInspect = { state, labels: info.Config?.Labels ?? {} };
  if (state === 'exited') out.exitCode = st.ExitCode;
  if (st.Error) out.error = st.Error;
  if (st.OOMKilled) out.oomKilled = true;
  if (st.StartedAt && st.StartedAt !== ZERO_TIME) out.startedAt = st.StartedAt;
  if (st.FinishedAt && st.FinishedAt !== ZERO_TIME && state === 'exited') out.finishedAt = st.FinishedAt;
  const health = st.Health?.Status;
  if (health === 'starting' || health === 'healthy' || health === 'unhealthy') out.health = health;
  return out;
}
