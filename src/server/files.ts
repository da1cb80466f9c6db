/**
 * Secrets and configs, the server's side (Swarm's `docker secret` and
 * `docker config`): content that tasks get as files.
 *
 * - The object (`/baton/secrets/<name>`, a Secret with its content's hash
 *   and size) is what lists, watches, `inspect` and snapshots show; the
 *   content lives apart, under `/baton/filedata/<kind>/<name>`, which no
 *   route lists or watches.
 * - Secret content is sealed (AES-256-GCM, the store key as additional
 *   data) with the cluster key when servers share a store, or with a key
 *   file of the server's own (`secrets.key`, 0600) in its data directory;
 *   config content is sealed the same way, which costs nothing and keeps
 *   the two paths one.
 * - Both are written in one txn with the object, so a reader never finds
 *   one without the other.
 * - A node gets a content only while one of its tasks that should run uses
 *   it; every other caller is refused. Its hash goes into the task specs of
 *   the services that use it (FileRefSpec.hash), so a new content rolls them
 *   by their update_config.
 */
import { createHash } from 'node:crypto';
import { BatonError, type ErrorDetail } from '../base/errors.js';
import { configKind, secretKind, serviceKind, type KindInfo } from '../api/kinds.js';
import { MAX_FILE_BYTES } from '../api/schemas.js';
import { mapPodContainers, podContainerSpecs, type Config, type FileObjectSpec, type FileRefSpec, type Secret, type Service, type ServiceSpec, type Task } from '../api/types.js';
import { MAX_TXN_OPS, type Compare, type Op } from '../store/store.js';
import type { ClusterKey } from './clusterKey.js';
import type { AnyObject, Registry } from './registry.js';


export type FileKindName = 'secret' | 'config';

export const FILE_KINDS: Record<FileKindName, KindInfo> = { secret: secretKind, config: configKind };

/** Where contents live, apart from every object prefix. */
export const FILE_DATA_PREFIX = '/baton/filedata/';

/** dataKey: where a content is kept (never under an object prefix). */
export function dataKey(kind: FileKindName, name: string): string {
  return `${FILE_DATA_PREFIX}${kind}s/${name}`;
}

export function contentHash(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** usesFiles: whether a container spec refers to any secret or config (as files, or to pull its image with). */
export function usesFiles(c: { secrets?: FileRefSpec[]; configs?: FileRefSpec[]; pullSecret?: { source: string } }): boolean {
  return !!(c.secrets?.length || c.configs?.length || c.pullSecret);
}

/** refsOf: the secrets or configs a container spec uses. */
export function refsOf(spec: { secrets?: FileRefSpec[]; configs?: FileRefSpec[] }, kind: FileKindName): FileRefSpec[] {
  return (kind === 'secret' ? spec.secrets : spec.configs) ?? [];
}

export class FileContents {
  constructor(
    private readonly registry: Registry,
    private readonly key: ClusterKey,
  ) {}

  /**
   * plan is what writing `data` as a secret or config takes, given its
   * current object: the compare and ops (object and sealed content), or
   * nothing when the content is the same.
   */
  plan(kind: FileKindName, name: string, data: Buffer, current: Secret | Config | undefined, labels: Record<string, string> = {}): { compare: Compare; ops: Op[]; object: Secret | Config } | undefined {
    if (data.length > MAX_FILE_BYTES) throw new BatonError('BATON_ERR_VALIDATION', `${kind} "${name}" is ${data.length} bytes; the limit is ${MAX_FILE_BYTES} (500 KiB)`, [{ path: `${kind}s.${name}`, message: 'at most 500 KiB' }]);
    const k = FILE_KINDS[kind];
    const spec: FileObjectSpec = { hash: contentHash(data), size: data.length };
    if (current && current.spec.hash === spec.hash) return undefined;
    const sealed: Op = { type: 'put', key: dataKey(kind, name), value: this.key.seal(data.toString('base64'), dataKey(kind, name)) };
    if (!current) {
      const object = this.registry.build(k, { metadata: { name, labels }, spec, status: {} }) as Secret | Config;
      const { compare, op } = this.registry.createOp(k, object);
      return { compare, ops: [op, sealed], object };
    }
    const object = this.registry.specUpdate(current, { spec, labels: Object.keys(labels).length ? labels : current.metadata.labels }) as Secret | Config;
    const { compare, op } = this.registry.updateOp(k, current, object);
    return { compare, ops: [op, sealed], object };
  }

  /**
   * put creates a secret or config, or gives it a new content, and in the
   * same txn rolls every service that uses it (their specs take the new
   * hash, so their tasks are replaced by their update_config).
   */
  async put(kind: FileKindName, name: string, data: Buffer, labels: Record<string, string> = {}): Promise<{ object: Secret | Config; created: boolean; rolled: string[] }> {
    const k = FILE_KINDS[kind];
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.registry.get<Secret | Config>(k, name);
      const p = this.plan(kind, name, data, current, labels);
      if (!p) return { object: current!, created: false, rolled: [] };
      const services = (await this.registry.list<Service & AnyObject>(serviceKind)).items;
      const roll = rollOps(this.registry, services, kind, name, p.object.spec.hash);
      if (roll.ops.length + p.ops.length > MAX_TXN_OPS) throw new BatonError('BATON_ERR_TOO_LARGE', `${kind} "${name}" is used by ${roll.names.length} services; one change rolls them all in one transaction of at most ${MAX_TXN_OPS} writes`);
      const r = await this.registry.store.txn([p.compare, ...roll.compares], [...p.ops, ...roll.ops]);
      if (r.succeeded) {
        p.object.metadata.resourceVersion = String(r.revision);
        return { object: p.object, created: !current, rolled: roll.names };
      }
    }
    throw new BatonError('BATON_ERR_CONFLICT', `${kind} "${name}" or a service using it is being written by someone else; try again`);
  }

  /** read opens a content (for a node entitled to it). */
  async read(kind: FileKindName, name: string): Promise<{ data: Buffer; hash: string }> {
    const kv = await this.registry.store.get(dataKey(kind, name));
    if (!kv) throw new BatonError('BATON_ERR_NOT_FOUND', `${kind} "${name}" not found`);
    const data = Buffer.from(this.key.open(kv.value, dataKey(kind, name)), 'base64');
    return { data, hash: contentHash(data) };
  }

  /** remove deletes a secret or config that no service uses. */
  async remove(kind: FileKindName, name: string, services: Service[]): Promise<void> {
    const users = services.filter((s) => podContainerSpecs(s.spec).some((c) => refsOf(c.container, kind).some((r) => r.source === name) || (kind === 'secret' && c.container.pullSecret?.source === name))).map((s) => s.metadata.name);
    if (users.length) throw new BatonError('BATON_ERR_CONFLICT', `${kind} "${name}" is in use by ${users.join(', ')}: remove it from them first`);
    const k = FILE_KINDS[kind];
    const current = await this.registry.mustGet<Secret | Config>(k, name);
    const r = await this.registry.store.txn(
      [{ key: this.registry.key(k, name), target: 'mod', op: '=', value: Number(current.metadata.resourceVersion) }],
      [{ type: 'delete', key: this.registry.key(k, name) }, { type: 'delete', key: dataKey(kind, name) }],
    );
    if (!r.succeeded) throw new BatonError('BATON_ERR_CONFLICT', `${kind} "${name}" changed meanwhile; try again`);
  }
}

/**
 * entitled says whether `node` may read a content: one of its tasks that
 * should run uses it (Swarm sends a secret only to the nodes that run it).
 */
export function entitled(tasks: Iterable<Task>, node: string, kind: FileKindName, name: string): boolean {
  for (const t of tasks) {
    if (t.spec.nodeName !== node || t.spec.desiredState !== 'running') continue;
    if (podContainerSpecs(t.spec).some((c) => refsOf(c.container, kind).some((r) => r.source === name) || (kind === 'secret' && c.container.pullSecret?.source === name))) return true;
  }
  return false;
}

/**
 * withHash gives each of a container spec's references the current hash of
 * its secret or config (from `hashes`, by kind and name); a reference to one
 * that does not exist is an error detail at its path.
 */
export function withHashes<T extends { secrets?: FileRefSpec[]; configs?: FileRefSpec[]; pullSecret?: { source: string } }>(container: T, hashes: (kind: FileKindName, name: string) => string | undefined, path: string, details: ErrorDetail[]): T {
  const out = { ...container };
  // The secret a pull uses must exist too (it holds no file: nothing to hash into the spec).
  if (container.pullSecret && hashes('secret', container.pullSecret.source) === undefined) {
    details.push({ path: `${path}.pullSecret.source`, message: `secret "${container.pullSecret.source}" does not exist: log in to the image's registry (baton registry login SERVER), or create the secret` });
  }
  for (const kind of ['secret', 'config'] as const) {
    const refs = refsOf(container, kind);
    if (!refs.length) continue;
    const next = refs.map((r, i) => {
      const hash = hashes(kind, r.source);
      if (hash === undefined) details.push({ path: `${path}.${kind}s[${i}].source`, message: `${kind} "${r.source}" does not exist: create it (baton ${kind} create ${r.source} FILE) or define it in the file` });
      return { ...r, ...(hash ? { hash } : {}) };
    });
    if (kind === 'secret') out.secrets = next;
    else out.configs = next;
  }
  return out;
}

/** rollOps: the updates that give every service using a secret or config its new hash. */
export function rollOps(registry: Registry, services: (Service & AnyObject)[], kind: FileKindName, name: string, hash: string): { compares: Compare[]; ops: Op[]; names: string[] } {
  const out = { compares: [] as Compare[], ops: [] as Op[], names: [] as string[] };
  for (const s of services) {
    if (!podContainerSpecs(s.spec).some((c) => refsOf(c.container, kind).some((r) => r.source === name && r.hash !== hash))) continue;
    const spec = mapPodContainers(s.spec, (c) => {
      const refs = refsOf(c, kind);
      if (!refs.some((r) => r.source === name)) return c;
      const renewed = refs.map((r) => (r.source === name ? { ...r, hash } : r));
      return { ...c, ...(kind === 'secret' ? { secrets: renewed } : { configs: renewed }) };
    });
    const next = registry.specUpdate(s, { spec });
    const u = registry.updateOp(serviceKind, s, next);
    out.compares.push(u.compare);
    out.ops.push(u.op);
    out.names.push(s.metadata.name);
  }
  return out;
}

/** resolveFileRefs fills in the hashes of a service's container specs from the cluster's secrets and configs, or says which do not exist. */
export async function resolveFileRefs(registry: Registry, spec: ServiceSpec, path: string): Promise<ServiceSpec> {
  if (!podContainerSpecs(spec).some(({ container: c }) => usesFiles(c))) return spec;
  const hashes = new Map<string, string>();
  for (const kind of ['secret', 'config'] as const) {
    for (const o of (await registry.list<Secret | Config>(FILE_KINDS[kind])).items) hashes.set(`${kind}/${o.metadata.name}`, o.spec.hash);
  }
  const details: ErrorDetail[] = [];
  const out = mapPodContainers(spec, (c, at) => withHashes(c, (kind, name) => hashes.get(`${kind}/${name}`), `${path}.${at}`, details));
  if (details.length) throw new BatonError('BATON_ERR_VALIDATION', 'the service uses secrets or configs that do not exist', details);
  return out;
}
