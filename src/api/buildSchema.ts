/**
 * The schema of a BuildSpec and its limits (api/build.ts has the rules):
 * apart from build.ts, which hashes with node:crypto, because the API's
 * schemas are also read where there is no node:crypto (the dashboard).
 */
import { z } from 'zod';

/** The largest build context Baton takes: 64 MiB, once .dockerignore has left out what the build does not need. */
export const MAX_BUILD_CONTEXT_BYTES = 64 * 1024 * 1024;

/** A blob's name: the sha256 of its bytes. */
export const blobDigestSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be a digest: sha256 and 64 lowercase hex digits');

/** A path inside the context: relative, no "." or ".." segments, no NUL. */
const contextPath = z
  .string()
  .min(1)
  .max(4096)
  .regex(/^[^/\0][^\0]*$/, 'a relative path inside the build context')
  .refine((p) => !p.split('/').some((seg) => seg === '..' || seg === '.' || seg === ''), 'no empty, "." or ".." segments');

export const buildSpecSchema = z
  .object({
    context: blobDigestSchema,
    size: z.number().int().min(0).max(MAX_BUILD_CONTEXT_BYTES),
    dockerfile: contextPath,
    args: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a build argument name').max(256), z.string().max(64 * 1024)),
    target: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'a stage name')
      .max(128)
      .optional(),
    labels: z.record(z.string().max(1024), z.string().max(64 * 1024)),
    network: z.enum(['default', 'host', 'none']).optional(),
    noCache: z.boolean().optional(),
    pull: z.boolean().optional(),
    extraHosts: z.array(z.string().max(300)).max(100).optional(),
  })
  .strict();
