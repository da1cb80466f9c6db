/**
 * Paths and issues: Ctx, the context one readCompose call hands to every
 * translator. It collects errors and warnings with their key paths, finds a
 * path's YAML line, and applies the key policy table (keyPolicy.ts).
 */

import type { PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { COMPOSE_KEY_POLICY } from './keyPolicy.js';
import type { DeclaredNetworks, PublishedPort } from './networks.js';
import type { DeclaredVolume } from './volumes.js';
import type { ComposeReadOptions } from './types.js';
import type { DeclaredFile, FileKind } from './files.js';

/** Obj is a YAML mapping as parsed: any keys, values not yet checked. */
export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Issue is one error or warning as a translator reports it; finalize (read.ts) formats its path and finds its line. */
export interface Issue {
  segs: PathSegment[];
  /** Set instead of segs for issues about the file or the stream as a whole. */
  rawPath?: string;
  message: string;
  line?: number;
  /** Schema and interpolation errors hide translation errors at or below their path. */
  blocking?: boolean;
}

/** Ctx collects issues for one readCompose call and knows how to find a path's YAML line. */
export class Ctx {
  readonly errors: Issue[] = [];
  readonly warnings: Issue[] = [];
  stack = '';
  volumes = new Map<string, DeclaredVolume>();
  /** Network keys a service may name → full names (networks.ts). */
  networks: DeclaredNetworks = new Map();
  /** Every translated port with its item's path, so a port two services publish is found once all are read. */
  publishedPorts: PublishedPort[] = [];
  /** The file's service keys, so x-baton (anti-)affinity can name a sibling by its short name. */
  serviceKeys = new Set<string>();
  /** Top-level secrets and configs by key (files.ts). */
  files: Record<FileKind, Map<string, DeclaredFile>> = { secret: new Map(), config: new Map() };

  constructor(
    readonly opts: ComposeReadOptions,
    readonly locate: (segs: PathSegment[]) => number | undefined,
    readonly scalarSource: (segs: PathSegment[]) => string | undefined,
  ) {}

  error(segs: PathSegment[], message: string, blocking = false): void {
    this.errors.push({ segs, message, blocking });
  }

  warn(segs: PathSegment[], message: string): void {
    this.warnings.push({ segs, message });
  }

  /** unsupported refuses a key or value, or only warns with --ignore-unsupported; either way the caller drops it. */
  unsupported(segs: PathSegment[], rowKey: string, what?: string): void {
    const row = Object.hasOwn(COMPOSE_KEY_POLICY, rowKey) ? COMPOSE_KEY_POLICY[rowKey] : undefined;
    const p = `\`${formatKeyPath(segs)}\`${what ? ` (${what})` : ''}`;
    const msg = `${p} is not supported by Baton yet${row?.reason ? `: ${row.reason}` : ''}`;
    if (this.opts.ignoreUnsupported) this.warn(segs, `${msg} (ignored)`);
    else this.error(segs, msg);
  }

  /** policy applies a table row to a key Baton does not translate; a key with no row is refused. */
  policy(segs: PathSegment[], rowKey: string): void {
    const row = Object.hasOwn(COMPOSE_KEY_POLICY, rowKey) ? COMPOSE_KEY_POLICY[rowKey] : undefined;
    if (row?.kind === 'warn') this.warn(segs, `\`${formatKeyPath(segs)}\` is ignored: ${row.reason}`);
    else this.unsupported(segs, rowKey);
  }

  /**
   * checkKeys applies the policy table to the keys of a mapping that the
   * translator does not handle itself; `x-*` extensions are ignored, except a
   * misplaced `x-baton`, which would otherwise be silently lost.
   */
  checkKeys(obj: Obj, segs: PathSegment[], pattern: string, handled: readonly string[]): void {
    for (const key of Object.keys(obj)) {
      if (handled.includes(key)) continue;
      if (key === 'x-baton') {
        this.error([...segs, key], '`x-baton` belongs directly under a service (services.<name>.x-baton)');
        continue;
      }
      if (key.startsWith('x-')) continue;
      this.policy([...segs, key], `${pattern}.${key}`);
    }
  }
}
