/**
 * Named volumes on the Docker engine: the driver creates a task's volumes
 * itself before its container, so they carry the cluster and node labels
 * (the engine would create them bare), and lists them by those labels for
 * the node's heartbeat.
 */
import { DriverError, volumeLabels, type TaskConfig } from '../driver.js';
import { engineMessage, statusOf, type DockerEngine } from './engine.js';
import { labelFilters } from './handles.js';

/** listVolumes names the engine's volumes that carry every one of labels, sorted. */
export async function listVolumes(engine: DockerEngine, labels: Record<string, string>): Promise<string[]> {
  try {
    const filters = JSON.stringify({ label: labelFilters(labels) });
    const r = await engine.request('volume list', (abortSignal) => engine.docker.listVolumes({ filters, abortSignal }));
    return (r.Volumes ?? []).map((v) => v.Name).sort();
  } catch (err) {
    throw engine.toDriverError(err);
  }
}

/** ensureVolumes creates named volumes before the container, so they carry the cluster/node labels (Docker would create them bare). */
export async function ensureVolumes(engine: DockerEngine, config: TaskConfig): Promise<void> {
  const { docker } = engine;
  const labels = volumeLabels(config.labels);
  for (const m of config.spec.mounts) {
    if (m.type !== 'volume' || !m.source) continue;
    try {
      const v = docker.getVolume(m.source);
      await engine.request('volume inspect', (abortSignal) => v.inspect({ abortSignal }));
      continue;
    } catch (err) {
      if (statusOf(err) !== 404) throw engine.toDriverError(err);
    }
    try {
      await engine.request('volume create', (abortSignal) => docker.createVolume({ Name: m.source!, Labels: labels, abortSignal }));
    } catch (err) {
      throw statusOf(err) === 400 ? new DriverError(engineMessage(err), 'invalid_config') : engine.toDriverError(err);
    }
  }
}
