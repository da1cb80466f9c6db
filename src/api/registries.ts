/**
 * Private registries: what the CLI, the server and the agent share.
 *
 * `baton registry login SERVER` keeps the credentials as a secret of the
 * cluster (sealed in the store like every secret, and given to a node only
 * while one of its tasks pulls with it), named after the registry
 * (registrySecretName) and labelled with it (REGISTRY_LABEL). A service
 * pulls with one through its container's `pullSecret` (`x-baton.pull_secret`,
 * or every service of a stack whose image is on a registry logged in to,
 * with `apply --with-registry-auth`). The agent hands the credentials to
 * the engine for the pull alone: never to the container, a file, a log.
 */
import { z } from 'zod';

/** The label a registry login's secret carries: the registry's host[:port]. */
export const REGISTRY_LABEL = 'baton.registry';

/** Docker Hub's registry, as image references name it when they name none. */
export const DOCKER_HUB = 'docker.io';

/** A registry's host[:port] as `docker login` takes it (no scheme, no path). */
export const registryServerSchema = z
  .string()
  .min(1)
  .max(253)
  .regex(/^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?)(:\d{1,5})?$/, 'must be a registry host[:port], as docker login takes it (no scheme, no path)');

/** What a registry login's secret holds (JSON), read by schema wherever it is used. */
export const registryCredentialSchema = z
  .object({
    serveraddress: registryServerSchema,
    username: z.string().min(1).max(256),
    password: z.string().min(1).max(4096),
  })
  .strict();

export type RegistryCredential = z.infer<typeof registryCredentialSchema>;

/**
 * registryOf: the registry an image reference pulls from, by Docker's rule:
 * the first path component is a registry when it has a "." or a ":" or is
 * "localhost"; otherwise the image is Docker Hub's.
 */
export function registryOf(image: string): string {
  const slash = image.indexOf('/');
  if (slash < 0) return DOCKER_HUB;
  const first = image.slice(0, slash);
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first : DOCKER_HUB;
}

/** registrySecretName: the secret a login to `server` is kept as (`registry-<server>`, what a secret name allows). */
export function registrySecretName(server: string): string {
  return `registry-${server.replace(/[^a-zA-Z0-9_.-]/g, '-')}`.slice(0, 63);
}

/** A Docker config's `auths` (what a kubernetes.io/dockerconfigjson Secret holds), read by schema. */
const dockerConfigSchema = z.object({
  auths: z.record(
    z.string().max(512),
    z.object({ auth: z.string().max(8192).optional(), username: z.string().max(256).optional(), password: z.string().max(4096).optional() }).passthrough(),
  ),
});

/** The names Docker Hub's entry goes by in a Docker config. */
const HUB_KEYS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/', 'https://index.docker.io/v1', 'https://registry-1.docker.io']);

/**
 * dockerConfigCredential reads the login for `registry` out of a Docker
 * config (`{"auths": {"<server>": {"auth": base64(user:password)}}}`, or
 * username and password apart); undefined when it holds none.
 */
export function dockerConfigCredential(config: unknown, registry: string): RegistryCredential | undefined {
  const c = dockerConfigSchema.safeParse(config);
  if (!c.success) return undefined;
  for (const [key, entry] of Object.entries(c.data.auths)) {
    const host = key.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
    const matches = registry === DOCKER_HUB ? HUB_KEYS.has(key) || HUB_KEYS.has(host) : host === registry;
    if (!matches) continue;
    let username = entry.username;
    let password = entry.password;
    if (entry.auth) {
      const text = Buffer.from(entry.auth, 'base64').toString('utf8');
      const i = text.indexOf(':');
      if (i > 0) {
        username = text.slice(0, i);
        password = text.slice(i + 1);
      }
    }
    const cred = registryCredentialSchema.safeParse({ serveraddress: registry, username, password });
    if (cred.success) return cred.data;
  }
  return undefined;
}
