/**
 * `baton apply -f FILE|DIR`: a Compose file or Kubernetes manifests in, one
 * atomic apply out.
 *
 * 1. The reader translates the file (manifest/compose, or
 *    manifest/kubernetes for manifests, told apart by content); any error
 *    and nothing is sent.
 * 2. Services with `build:` have their contexts packed (buildContext.ts),
 *    named by digest and tagged by their build's hash (api/build.ts), and
 *    uploaded unless a server has them already.
 * 3. The apply itself: services, secrets and configs in one txn.
 * 4. When a built service changed, the nodes build its image: apply shows
 *    each task's build progress until its container starts, and a build's
 *    error as the reason apply fails (`--detach` leaves at once).
 * 5. `--wait`: until the stack has converged.
 */
import type { Command } from 'commander';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { ApiClient } from '../api/client.js';
import { buildImage } from '../api/build.js';
import { isGlobal, mapPodContainers, type BuildSpec, type Config, type Secret, type Service, type ServiceSpec, type Task } from '../api/types.js';
import { registryOf } from '../api/registries.js';
import { BatonError } from '../base/errors.js';
import { sleep } from '../base/clock.js';
import { STACK_LABEL, type ComposeResult, type ComposeService } from '../manifest/compose/types.js';
import type { KubernetesReadOptions } from '../manifest/kubernetes/index.js';
import { configKind, secretKind, serviceKind } from '../api/kinds.js';
import type { PackedContext } from './buildContext.js';
import { KEY_LABEL, KIND_LABEL, NAME_LABEL } from '../manifest/kubernetes/labels.js';
import { bytes } from '../api/kinds.js';
import { client, out } from './common.js';

export function registerApply(program: Command): void {
  program
    .command('apply')
    .description('create or update a stack from a Compose file or Kubernetes manifests, atomically')
    .requiredOption('-f, --file <path>', 'a Compose file, a file of Kubernetes manifests, or a directory of them')
    .option('--stack <name>', "stack name (default: the Compose file's `name`, else its directory; the manifests' namespace, else default)")
    .option('--dry-run', 'print what would change; change nothing')
    .option('--prune', 'remove services of the stack that left the file')
    .option('--wait', 'block until the stack has converged')
    .option('--timeout <seconds>', 'with --wait, and for builds, give up after this long', '300')
    .option('--detach', "do not follow the builds of built services' images")
    .option('--profile <name...>', 'enable a Compose profile (repeatable; or COMPOSE_PROFILES, comma-separated): services with profiles are deployed only when one is enabled')
    .option('--ignore-unsupported', 'turn "not supported" errors into warnings and drop those keys')
    .option('--with-registry-auth', "every service whose image is on a registry this cluster is logged in to (baton registry ls) pulls with that login, unless it names its own (x-baton.pull_secret)")
    .action(async (o, cmd: Command) => {
      const profiles = [...(o.profile ?? []), ...(process.env.COMPOSE_PROFILES ?? '').split(',').map((p) => p.trim()).filter(Boolean)];
      const { api } = client(cmd);
      const r = await readManifests(o.file, { stack: o.stack, ignoreUnsupported: !!o.ignoreUnsupported, profiles, earlier: (stack) => earlierObjects(api, stack) });
      for (const w of r.warnings) process.stderr.write(`warning: ${o.file}: ${w.path}${w.line ? ` (line ${w.line})` : ''}: ${w.message}\n`);
      if (r.errors.length) throw new BatonError('BATON_ERR_MANIFEST', `${o.file} has ${r.errors.length} error${r.errors.length > 1 ? 's' : ''}; nothing was applied`, r.errors);
      await prepareBuilds(api, r.services);
      if (o.withRegistryAuth) await withRegistryAuth(api, r.services);
      const res = await api.apply(r.stack, {
        services: r.services.map((s) => ({ name: s.name, spec: s.spec, labels: s.labels })),
        prune: !!o.prune,
        dryRun: !!o.dryRun,
        ...(r.secrets.length ? { secrets: r.secrets } : {}),
        ...(r.configs.length ? { configs: r.configs } : {}),
      });
      for (const f of res.files ?? []) out(o.dryRun ? `(dry run) would ${f.action} ${f.kind} ${f.name}` : `${f.action === 'create' ? 'created' : 'updated'} ${f.kind} ${f.name}`);
      for (const x of res.results) {
        const done = { create: 'created', update: 'updated', unchanged: 'unchanged', delete: 'deleted' }[x.action];
        out(o.dryRun && x.action !== 'unchanged' ? `(dry run) would ${x.action} service ${x.name}` : `${done} service ${x.name}`);
        for (const d of x.diff ?? []) out(`    ${d}`);
        const pl = res.placement?.[x.name];
        if (pl) {
          const where = Object.entries(pl.nodes)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([n, c]) => `${n}×${c}`);
          if (where.length) out(`    would place: ${where.join(', ')}`);
          for (const [why, c] of Object.entries(pl.pending)) out(`    would stay pending: ${c} × ${why}`);
        }
      }
      const timeoutMs = Number(o.timeout) * 1000;
      if (!o.dryRun && !o.detach) {
        const changed = new Set(res.results.filter((x) => x.action === 'create' || x.action === 'update').map((x) => x.name));
        const built = r.services.filter((s) => s.spec.container.build && changed.has(s.name));
        if (built.length) await followBuilds(api, built.map((s) => ({ name: s.name, image: s.spec.container.image })), timeoutMs);
      }
      if (o.wait && !o.dryRun) await waitStack(api, r.stack, r.services.map((s) => s.name), timeoutMs);
    });
}

/**
 * readManifests reads what `-f` names: a Compose file, a file of
 * Kubernetes manifests (told apart by content: a document with apiVersion
 * and kind), or a directory of Kubernetes manifests (its *.yaml, *.yml and
 * *.json files, in name order, as one apply).
 */
export async function readManifests(path: string, o: { stack?: string; ignoreUnsupported: boolean; profiles?: string[]; earlier?: (stack: string) => Promise<KubernetesReadOptions['earlier']> }): Promise<ComposeResult> {
  const file = resolve(path);
  if (!existsSync(file)) throw new BatonError('BATON_ERR_BAD_REQUEST', `${path}: no such file or directory`);
  const k8s = await import('../manifest/kubernetes/index.js');
  if (statSync(file).isDirectory()) {
    const names = readdirSync(file).filter((n) => /\.(ya?ml|json)$/i.test(n) && statSync(join(file, n)).isFile()).sort();
    if (!names.length) throw new BatonError('BATON_ERR_BAD_REQUEST', `${path}: a directory of Kubernetes manifests, but it holds no .yaml, .yml or .json file`);
    const files = names.map((n) => ({ name: n, text: readFileSync(join(file, n), 'utf8') }));
    const compose = files.filter((f) => !k8s.looksLikeKubernetes(f.text)).map((f) => f.name);
    if (compose.length) throw new BatonError('BATON_ERR_MANIFEST', `${path}: a directory is read as Kubernetes manifests, and ${compose.join(', ')} holds none; apply a Compose file by itself`);
    return readKubernetesWithEarlier(k8s.readKubernetes, files, o);
  }
  const text = readFileSync(file, 'utf8');
  if (k8s.looksLikeKubernetes(text)) return readKubernetesWithEarlier(k8s.readKubernetes, [{ name: basename(file), text }], o);
  const { parseDotEnv, readCompose } = await import('../manifest/compose/index.js');
  const dotenv = join(dirname(file), '.env');
  const env = { ...(existsSync(dotenv) ? parseDotEnv(readFileSync(dotenv, 'utf8')) : {}), ...process.env };
  return readCompose(text, { fileName: basename(file), baseDir: dirname(file), env, ...(o.stack !== undefined ? { stack: o.stack } : {}), ignoreUnsupported: o.ignoreUnsupported, profiles: o.profiles ?? [] });
}

/**
 * readKubernetesWithEarlier reads manifests with what earlier applies made
 * in their stack (a Service applied apart from its Deployment, kubectl's
 * file-by-file habit): once for the stack, once more with its objects.
 */
async function readKubernetesWithEarlier(read: typeof import('../manifest/kubernetes/index.js').readKubernetes, files: { name: string; text: string }[], o: { stack?: string; ignoreUnsupported: boolean; earlier?: (stack: string) => Promise<KubernetesReadOptions['earlier']> }): Promise<ComposeResult> {
  const base = { ...(o.stack !== undefined ? { stack: o.stack } : {}), ignoreUnsupported: o.ignoreUnsupported };
  const first = read(files, base);
  if (!o.earlier) return first;
  const earlier = await o.earlier(first.stack);
  return read(files, { ...base, ...(earlier ? { earlier } : {}) });
}

/** earlierObjects: the stack's services, configs and secrets that Kubernetes manifests made. */
async function earlierObjects(api: ApiClient, stack: string): Promise<KubernetesReadOptions['earlier']> {
  const inStack = { labelSelector: { [STACK_LABEL]: stack } };
  const [services, configs, secrets] = await Promise.all([api.list<Service>(serviceKind, inStack), api.list<Config>(configKind, inStack), api.list<Secret>(secretKind, inStack)]);
  const files = [...configs.items, ...secrets.items].flatMap((f) => {
    const l = f.metadata.labels ?? {};
    const kind = l[KIND_LABEL];
    return (kind === 'ConfigMap' || kind === 'Secret') && l[NAME_LABEL] && l[KEY_LABEL] ? [{ kind, name: l[NAME_LABEL], key: l[KEY_LABEL] } as const] : [];
  });
  return { services: services.items.filter((s) => s.metadata.labels?.[KIND_LABEL]).map((s) => ({ spec: s.spec, labels: s.metadata.labels ?? {} })), files };
}

/**
 * prepareBuilds packs each built service's context, names its image by its
 * build's hash, and uploads each context no server has yet (a context two
 * services share goes once).
 */
async function prepareBuilds(api: ApiClient, services: ComposeService[]): Promise<void> {
  const packed = new Map<string, PackedContext>();
  if (!services.some((s) => s.build)) return;
  const { packContext } = await import('./buildContext.js');
  for (const s of services) {
    const b = s.build;
    if (!b) continue;
    const p = await packContext(b);
    const spec: BuildSpec = {
      context: p.digest,
      size: p.data.length,
      dockerfile: p.dockerfile,
      args: b.args,
      labels: b.labels,
      ...(b.target ? { target: b.target } : {}),
      ...(b.network ? { network: b.network } : {}),
      ...(b.noCache ? { noCache: true } : {}),
      ...(b.pull ? { pull: true } : {}),
      ...(b.extraHosts ? { extraHosts: b.extraHosts } : {}),
    };
    s.spec.container = { ...s.spec.container, build: spec, image: buildImage(s.name, spec) };
    packed.set(p.digest, p);
  }
  for (const p of packed.values()) {
    const have = await api.blobStat(p.digest).catch((e) => {
      if (e instanceof BatonError && e.code === 'BATON_ERR_NOT_FOUND') return undefined;
      throw e;
    });
    if (have) continue;
    await api.putBlob(p.digest, p.data);
    out(`uploaded build context ${p.digest.slice(7, 19)} (${bytes(p.data.length)}, ${p.files} files)`);
  }
}

/** Task states past the build: its container was created. */
const BUILT_STATES = new Set(['starting', 'running', 'complete']);

/**
 * followBuilds prints the build progress of the tasks of built services
 * (their status messages while they prepare) until every one of them has a
 * task whose container started; a task rejected while building fails it
 * with the builder's words.
 */
async function followBuilds(api: ApiClient, services: { name: string; image: string }[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const said = new Map<string, string>();
  const waiting = new Set(services.map((s) => s.name));
  const images = new Map(services.map((s) => [s.name, s.image]));
  while (waiting.size) {
    if (Date.now() > deadline) throw new BatonError('BATON_ERR_UNAVAILABLE', `the images of ${[...waiting].join(', ')} were not built within ${Math.round(timeoutMs / 1000)} s (baton service ps shows where they are)`);
    const tasks = (await api.tasks()).items.filter((t: Task) => waiting.has(t.spec.serviceName) && t.spec.container.image === images.get(t.spec.serviceName));
    for (const t of tasks) {
      const where = `${t.metadata.name}${t.spec.nodeName ? ` on ${t.spec.nodeName}` : ''}`;
      const m = t.status.state === 'preparing' ? t.status.message : t.status.state === 'rejected' ? `${t.status.message}: ${t.status.error ?? ''}` : '';
      if (m && said.get(t.metadata.name) !== m) {
        said.set(t.metadata.name, m);
        out(`  ${where}: ${m}`);
      }
      // A build's failure, in the agent's words (agent/builds.ts); any other rejection is the start backoff's, as for any service.
      if (t.status.state === 'rejected' && /^(building |fetching the build context|the build context)/.test(t.status.error ?? '')) {
        throw new BatonError('BATON_ERR_CONFLICT', `the image of ${t.spec.serviceName} did not build on ${t.spec.nodeName ?? 'its node'}: ${t.status.error}; the stack was applied, and the node tries again with backoff: fix the build and apply again`);
      }
    }
    for (const name of [...waiting]) {
      if (tasks.some((t) => t.spec.serviceName === name && BUILT_STATES.has(t.status.state))) {
        waiting.delete(name);
        out(`built ${images.get(name)}`);
      }
    }
    if (waiting.size) await sleep(300);
  }
}

/** progress: one service's state for --wait and rollout-status: ready count, and the rollout when one runs. */
export function progress(s: Service): string {
  const want = isGlobal(s.spec) ? s.status.desired : s.spec.replicas;
  const r = s.status.rollout;
  const roll = r && r.state !== 'completed' ? `, ${r.state} ${r.updated}/${r.total}${r.failed ? ` (${r.failed} failed)` : ''}${r.message ? `: ${r.message}` : ''}` : '';
  return `${s.metadata.name} ${s.status.ready ?? 0}/${want} ready${roll}`;
}

/** converged: observed at its generation, every replica ready, the rollout complete; failed: the rollout stopped or rolled back. */
export function converged(s: Service): 'yes' | 'no' | 'failed' {
  const r = s.status.rollout;
  if (s.status.observedGeneration < s.metadata.generation) return 'no';
  // Rolled back by itself (not by hand), or stopped by failures.
  if (r && ((r.state === 'rolled-back' && r.message?.startsWith('rolled back by itself')) || (r.state === 'paused' && r.failed > 0) || r.stalled)) return 'failed';
  const want = isGlobal(s.spec) ? s.status.desired : s.spec.replicas;
  return s.status.ready === want && (!r || r.state === 'completed' || r.state === 'rolled-back') && !s.status.message ? 'yes' : 'no';
}

/** waitStack blocks until every service is observed at its generation with all replicas ready, printing progress. */
async function waitStack(api: ApiClient, stack: string, names: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  const reported = new Set<string>();
  while (Date.now() < deadline) {
    const [svcs, tasks] = await Promise.all([api.services(), api.tasks()]);
    const mine = svcs.items.filter((s: Service) => names.includes(s.metadata.name));
    const line = mine.map(progress).join('; ');
    if (line !== last) {
      out(`waiting: ${line}`);
      last = line;
    }
    for (const t of tasks.items) {
      if (!names.includes(t.spec.serviceName) || t.spec.desiredState !== 'running') continue;
      const why = t.status.error ?? (t.status.state === 'pending' ? t.status.pendingReason : undefined);
      const key = `${t.metadata.name}:${t.status.state}:${why}`;
      if (why && !reported.has(key)) {
        reported.add(key);
        out(`  ${t.metadata.name}: ${t.status.state}: ${why}`);
      }
    }
    const failed = mine.filter((s) => converged(s) === 'failed');
    if (failed.length) throw new BatonError('BATON_ERR_CONFLICT', `the rollout of ${failed.map((s) => `${s.metadata.name} ${s.status.rollout!.state}: ${s.status.rollout!.message ?? ''}`).join('; ')} (baton service history, baton events --service NAME)`);
    if (mine.length === names.length && mine.every((s) => converged(s) === 'yes')) {
      out(`stack ${stack} converged`);
      return;
    }
    await sleep(500);
  }
  throw new BatonError('BATON_ERR_UNAVAILABLE', `stack ${stack} did not converge within ${Math.round(timeoutMs / 1000)} s (last: ${last})`);
}

/**
 * withRegistryAuth gives every container of the services whose image is on
 * a registry the cluster is logged in to, and that names no pull secret of
 * its own, that login's secret (`docker stack deploy --with-registry-auth`).
 */
async function withRegistryAuth(api: ApiClient, services: { spec: ServiceSpec }[]): Promise<void> {
  const logins = new Map((await api.call<{ items: { server: string; secret: string }[] }>('GET', '/api/v1/registries')).items.map((l) => [l.server, l.secret]));
  for (const s of services) {
    s.spec = mapPodContainers(s.spec, (c) => {
      const secret = logins.get(registryOf(c.image));
      return secret && !c.pullSecret ? { ...c, pullSecret: { source: secret } } : c;
    });
  }
}
