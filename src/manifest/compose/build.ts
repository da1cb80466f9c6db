/**
 * `build:`: what a service's image is built from. The reader only reads
 * and checks the keys; the CLI packs the context (cli/buildContext.ts) and
 * names the image (api/build.ts), and each node builds it on its own
 * engine (agent/builds.ts).
 *
 * A service with `build` and no `image` is built. With both, Compose pulls
 * `image` and builds only when the pull fails; in a cluster every node
 * would have to fail the same way, so Baton runs `image` and says so,
 * unless `pull_policy: build` asks for the build.
 */
import { isAbsolute, resolve } from 'node:path';
import type { BuildSpec } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { extraHosts } from './container.js';
import { isObj, type Ctx } from './issues.js';
import { listOrDict, toBool } from './values.js';

/**
 * LocalBuild is a build as the file gives it, before its context is packed:
 * the context and Dockerfile are paths on this machine; the parameters are
 * BuildSpec's.
 */
export interface LocalBuild extends Pick<BuildSpec, 'args' | 'target' | 'labels' | 'network' | 'noCache' | 'pull' | 'extraHosts'> {
  /** The context directory (absolute). */
  contextDir: string;
  /** The Dockerfile: a path (relative to the context, or absolute), or its text (`dockerfile_inline`). */
  dockerfile: { path: string } | { inline: string };
  /** Where `build` is in the file (`services.web.build`, its line), for what packing finds wrong. */
  keyPath: string;
  line?: number;
}

const HANDLED = ['context', 'dockerfile', 'dockerfile_inline', 'args', 'labels', 'target', 'network', 'no_cache', 'pull', 'extra_hosts'];

/** A context that is not a directory here: a Git repository or an archive at a URL. */
const REMOTE = /^(?:[a-z][a-z0-9+.-]*:\/\/|git@|github\.com\/)/i;

/** readBuild reads `services.<key>.build` (the short form is the context alone). */
export function readBuild(ctx: Ctx, v: unknown, segs: PathSegment[]): LocalBuild | undefined {
  const b = typeof v === 'string' ? { context: v } : isObj(v) ? v : undefined;
  if (!b) {
    ctx.error(segs, 'must be a context directory or a mapping');
    return undefined;
  }
  ctx.checkKeys(b, segs, 'services.*.build', HANDLED);
  const at = (...rest: PathSegment[]) => [...segs, ...rest];
  const problems = ctx.errors.length;

  const context = typeof b.context === 'string' && b.context.trim() !== '' ? b.context.trim() : '.';
  if (REMOTE.test(context)) ctx.error(typeof v === 'string' ? segs : at('context'), `a remote build context (${context}) is not supported: clone it and give its directory`);
  const contextDir = resolve(ctx.opts.baseDir, context);

  let dockerfile: LocalBuild['dockerfile'] = { path: 'Dockerfile' };
  if (b.dockerfile_inline !== undefined) {
    if (b.dockerfile !== undefined) ctx.error(at('dockerfile_inline'), 'give dockerfile or dockerfile_inline, not both');
    if (typeof b.dockerfile_inline === 'string' && b.dockerfile_inline.trim() !== '') dockerfile = { inline: b.dockerfile_inline };
    else ctx.error(at('dockerfile_inline'), 'must be the Dockerfile\'s text');
  } else if (typeof b.dockerfile === 'string' && b.dockerfile.trim() !== '') {
    const p = b.dockerfile.trim();
    if (p.includes('\0')) ctx.error(at('dockerfile'), 'must be a path');
    dockerfile = { path: isAbsolute(p) ? p : p.replace(/^\.\//, '') };
  }

  const args: Record<string, string> = {};
  if (b.args !== undefined) {
    for (const [k, val] of listOrDict(ctx, b.args, at('args'))) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) {
        ctx.error(at('args', k), 'a build argument is named with letters, digits and "_", not starting with a digit');
        continue;
      }
      // `- NAME` with no value takes it from the environment, as Compose does; absent there, the Dockerfile's default holds.
      const value = val ?? ctx.opts.env[k];
      if (value !== undefined) args[k] = value;
    }
  }
  const labels: Record<string, string> = {};
  if (b.labels !== undefined) for (const [k, val] of listOrDict(ctx, b.labels, at('labels'))) labels[k] = val ?? '';

  const out: LocalBuild = { contextDir, dockerfile, args, labels, keyPath: formatKeyPath(segs), ...(ctx.locate(segs) !== undefined ? { line: ctx.locate(segs) } : {}) };
  if (b.target !== undefined) {
    if (typeof b.target === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(b.target)) out.target = b.target;
    else ctx.error(at('target'), 'must be the name of a stage of the Dockerfile');
  }
  if (b.network !== undefined) {
    if (b.network === 'default' || b.network === 'host' || b.network === 'none') out.network = b.network;
    else ctx.error(at('network'), `must be default, host or none: each node builds on its own engine, where the stack's networks do not exist (got ${JSON.stringify(b.network)})`);
  }
  if (b.no_cache !== undefined) {
    const x = toBool(ctx, b.no_cache, at('no_cache'));
    if (x) out.noCache = true;
  }
  if (b.pull !== undefined) {
    const x = toBool(ctx, b.pull, at('pull'));
    if (x) out.pull = true;
  }
  if (b.extra_hosts !== undefined) {
    const hosts = extraHosts(ctx, b.extra_hosts, at('extra_hosts'));
    if (hosts.length) out.extraHosts = hosts;
  }
  return ctx.errors.length === problems ? out : undefined;
}
