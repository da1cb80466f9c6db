/**
 * The Compose reader's public shapes: what readCompose takes besides the
 * text, and what it gives back.
 */

import type { FileInput, ServiceSpec } from '../../api/types.js';
import type { ErrorDetail } from '../../base/errors.js';
import type { LocalBuild } from './build.js';

/** ComposeReadOptions is everything readCompose needs besides the text, so the reader stays pure and testable with tables. */
export interface ComposeReadOptions {
  /** Used in messages about the file as a whole (YAML syntax errors, an empty file). */
  fileName: string;
  /** Directory of the file: relative bind mounts and env_file paths resolve against it. */
  baseDir: string;
  /** Interpolation environment (the caller merges process.env over .env). */
  env: Record<string, string | undefined>;
  /** --stack; default: the top-level `name`, else the basename of baseDir, sanitised. */
  stack?: string;
  /** Profiles enabled (`--profile`, COMPOSE_PROFILES): a service with `profiles` is deployed only when one of them is. */
  profiles?: string[];
  /** Turns "not supported by Baton yet" errors into warnings and drops the key. */
  ignoreUnsupported?: boolean;
  /** Reads an env_file; default fs.readFileSync(p, 'utf8'). The reader's only I/O, with readFileBytes. */
  readFile?: (absPath: string) => string;
  /** Reads a secret's or config's `file:`; default fs.readFileSync(p). */
  readFileBytes?: (absPath: string) => Buffer;
}

/** ComposeService is one translated service, named `${stack}_${key}` so services of different stacks never collide. */
export interface ComposeService {
  name: string;
  shortName: string;
  spec: ServiceSpec;
  /** Service labels: deploy.labels plus baton.stack. */
  labels: Record<string, string>;
  /** `build:`: spec.container.image is then the repository alone; the CLI packs the context and fills in the tag and spec.container.build. */
  build?: LocalBuild;
}

/** ComposeResult carries every warning and error together; services is empty whenever errors is not, so nothing half-read is applied. */
export interface ComposeResult {
  stack: string;
  services: ComposeService[];
  /** The secrets and configs the file defines (not external ones), to create or update with the apply. */
  secrets: FileInput[];
  configs: FileInput[];
  warnings: ErrorDetail[];
  errors: ErrorDetail[];
}

/** STACK_LABEL is the service label naming the stack a service came from, so `apply --prune` finds the stack's services. */
export const STACK_LABEL = 'baton.stack';
