/**
 * Built images (Compose `build:`): the rules the CLI, the servers and the
 * agents share.
 *
 * - A build context is a tar archive, content-addressed ("sha256:<hex>" of
 *   its bytes), at most MAX_BUILD_CONTEXT_BYTES. The CLI packs it
 *   deterministically (cli/buildContext.ts), so the same files give the
 *   same digest wherever and whenever they are packed.
 * - A build's hash covers the context digest and every parameter that
 *   changes the image (Dockerfile, args, target, labels, network, ...).
 *   The image is `<stack>_<service>:<first 12 hex of it>`: a node builds
 *   each hash once, and a new hash is a new image, which rolls the service.
 * - RUN steps get the Compose file's `build.network` when it names one;
 *   otherwise the engine's default network when the engine has a bridge,
 *   and no network when it has none (as the test set-up's dockerd, run with
 *   --bridge=none): never the host's network unless asked, because a RUN
 *   step on the host's network reaches the node's loopback services (the
 *   agent, etcd).
 */
import { createHash } from 'node:crypto';
import type { BuildSpec } from './types.js';

export { MAX_BUILD_CONTEXT_BYTES, blobDigestSchema, buildSpecSchema } from './buildSchema.js';

/** A repository name Docker accepts (lowercase components joined by ".", "_", "__" or "-"). */
const REPOSITORY = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

/** buildHash: sha256 (hex) of what makes the image: the context's digest and every parameter, keys sorted. */
export function buildHash(b: BuildSpec): string {
  const sorted = (r: Record<string, string>) => Object.keys(r).sort().map((k) => [k, r[k]]);
  const canonical = JSON.stringify([b.context, b.dockerfile, sorted(b.args), b.target ?? '', sorted(b.labels), b.network ?? '', !!b.noCache, !!b.pull, b.extraHosts ?? []]);
  return createHash('sha256').update(canonical).digest('hex');
}

/** buildRepository: the repository a stack's service's images get, `<stack>_<service>` in Docker's lowercase alphabet. */
export function buildRepository(serviceName: string): string {
  const r = serviceName
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '')
    .replace(/[._-]{2,}/g, (m) => (m === '__' ? m : m[0]!));
  return r || 'built';
}

/** buildImage: the image a build makes, `<repository>:<12 hex of its hash>`. */
export function buildImage(serviceName: string, b: BuildSpec): string {
  return `${buildRepository(serviceName)}:${buildHash(b).slice(0, 12)}`;
}

/** buildImageProblem: why `image` is not the one this build makes (the server checks it, so no build overwrites another image), or undefined. */
export function buildImageProblem(image: string, b: BuildSpec): string | undefined {
  const i = image.lastIndexOf(':');
  const repo = i > 0 ? image.slice(0, i) : image;
  const tag = i > 0 ? image.slice(i + 1) : '';
  if (!REPOSITORY.test(repo)) return `a built image's repository must be lowercase letters and digits joined by ".", "_" or "-" (got "${repo}")`;
  const want = buildHash(b).slice(0, 12);
  if (tag !== want) return `a built image is tagged with its build's hash: "${repo}:${want}", not "${image}"`;
  return undefined;
}
