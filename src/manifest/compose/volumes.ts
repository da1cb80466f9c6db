/**
 * Volumes: a service's `volumes`, short and long syntax, as mounts: binds
 * resolved against the file's directory, named volumes declared at the top
 * level (topLevel.ts), anonymous volumes, and tmpfs mounts, whose options
 * only fit ContainerSpec.tmpfs.
 */

import os from 'node:os';
import path from 'node:path';
import type { ContainerSpec, MountSpec } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { isObj, type Ctx, type Obj } from './issues.js';
import { bytes, text, toBool } from './values.js';

const PROPAGATION = ['shared', 'rshared', 'slave', 'rslave', 'private', 'rprivate'];

function resolveBindSource(ctx: Ctx, src: string): string {
  if (src === '~' || src.startsWith('~/')) {
    const home = ctx.opts.env.HOME ?? os.homedir();
    return path.join(home, src.slice(1));
  }
  return path.resolve(ctx.opts.baseDir, src);
}

const looksLikePath = (s: string) => s.startsWith('/') || s.startsWith('.') || s.startsWith('~');

export function volumes(ctx: Ctx, v: unknown, segs: PathSegment[], container: ContainerSpec): void {
  if (!Array.isArray(v)) return;
  const targets = new Map<string, number>();
  v.forEach((item, i) => {
    const s = [...segs, i];
    const mount = typeof item === 'string' ? shortVolume(ctx, item, s) : isObj(item) ? longVolume(ctx, item, s, container) : undefined;
    if (!mount) return;
    const seen = targets.get(mount.target);
    if (seen !== undefined) return ctx.error(s, `mount target ${mount.target} is already used by ${formatKeyPath([...segs, seen])}`);
    targets.set(mount.target, i);
    container.mounts.push(mount);
  });
}

function namedVolume(ctx: Ctx, name: string, segs: PathSegment[]): string | undefined {
  const declared = ctx.volumes.get(name);
  if (!declared) {
    ctx.error(segs, `volume "${name}" is not declared under the top-level \`volumes\``);
    return undefined;
  }
  return declared.source;
}

/** shortVolume reads "SRC:DST[:MODE]" (bind when SRC is a path, else a declared named volume) or "DST" (anonymous volume). */
function shortVolume(ctx: Ctx, raw: string, segs: PathSegment[]): MountSpec | undefined {
  const parts = raw.split(':');
  if (parts.length > 3 || parts.some((p) => p === '')) {
    ctx.error(segs, `invalid volume ${JSON.stringify(raw)}: expected [SOURCE:]TARGET[:MODE]`);
    return undefined;
  }
  if (parts.length === 1) {
    if (!parts[0]!.startsWith('/')) {
      ctx.error(segs, `invalid volume ${JSON.stringify(raw)}: the target must be an absolute path`);
      return undefined;
    }
    return { type: 'volume', target: parts[0]!, readOnly: false };
  }
  const [src, target, mode] = parts as [string, string, string | undefined];
  if (!target.startsWith('/')) {
    ctx.error(segs, `invalid volume ${JSON.stringify(raw)}: the target must be an absolute path`);
    return undefined;
  }
  let readOnly = false;
  for (const opt of mode === undefined ? [] : mode.split(',')) {
    if (opt === 'ro') readOnly = true;
    else if (opt === 'rw') readOnly = false;
    else if (opt === 'cached' || opt === 'delegated' || opt === 'consistent') ctx.policy(segs, 'services.*.volumes[].consistency');
    else if (opt === 'z' || opt === 'Z') ctx.unsupported(segs, 'services.*.volumes[].bind.selinux', `mode ${opt}`);
    else if (opt === 'nocopy') ctx.unsupported(segs, 'services.*.volumes[].volume.nocopy', 'mode nocopy');
    else if (PROPAGATION.includes(opt)) ctx.unsupported(segs, 'services.*.volumes[].bind.propagation', `mode ${opt}`);
    else ctx.error(segs, `invalid volume mode ${JSON.stringify(opt)} in ${JSON.stringify(raw)}`);
  }
  if (looksLikePath(src)) return { type: 'bind', source: resolveBindSource(ctx, src), target, readOnly };
  const source = namedVolume(ctx, src, segs);
  return source === undefined ? undefined : { type: 'volume', source, target, readOnly };
}

function longVolume(ctx: Ctx, item: Obj, segs: PathSegment[], container: ContainerSpec): MountSpec | undefined {
  const at = (...k: PathSegment[]): PathSegment[] => [...segs, ...k];
  ctx.checkKeys(item, segs, 'services.*.volumes[]', ['type', 'source', 'target', 'read_only', 'bind', 'volume', 'tmpfs']);
  const type = item.type;
  if (type === 'cluster' || type === 'npipe' || type === 'image') {
    ctx.unsupported(at('type'), `services.*.volumes[].type=${type}`, type);
    return undefined;
  }
  if (type !== 'bind' && type !== 'volume' && type !== 'tmpfs') {
    ctx.error(at('type'), 'must be bind, volume or tmpfs');
    return undefined;
  }
  if (typeof item.target !== 'string' || !item.target.startsWith('/')) {
    ctx.error(at('target'), 'must be an absolute path in the container');
    return undefined;
  }
  const readOnly = item.read_only === undefined ? false : (toBool(ctx, item.read_only, at('read_only')) ?? false);
  const source = typeof item.source === 'string' && item.source !== '' ? item.source : undefined;
  for (const sub of ['bind', 'volume', 'tmpfs'] as const) {
    if (item[sub] !== undefined && item[sub] !== null && sub !== type) ctx.error(at(sub), `only applies to type ${sub}`);
  }
  if (type === 'bind') {
    if (isObj(item.bind)) {
      for (const k of Object.keys(item.bind)) {
        if (k.startsWith('x-')) continue;
        if (k === 'create_host_path') {
          if (toBool(ctx, item.bind[k], at('bind', k)) === false) ctx.policy(at('bind', k), 'services.*.volumes[].bind.create_host_path=false');
        } else ctx.policy(at('bind', k), `services.*.volumes[].bind.${k}`);
      }
    }
    if (!source) {
      ctx.error(at('source'), 'a bind mount needs a source path');
      return undefined;
    }
    return { type: 'bind', source: resolveBindSource(ctx, source), target: item.target, readOnly };
  }
  if (type === 'volume') {
    if (isObj(item.volume)) ctx.checkKeys(item.volume, at('volume'), 'services.*.volumes[].volume', []);
    if (!source) return { type: 'volume', target: item.target, readOnly };
    const name = namedVolume(ctx, source, at('source'));
    return name === undefined ? undefined : { type: 'volume', source: name, target: item.target, readOnly };
  }
  // tmpfs: options (size, mode) only fit ContainerSpec.tmpfs's "path:options" form.
  if (source) ctx.error(at('source'), 'a tmpfs mount has no source');
  const options: string[] = [];
  if (isObj(item.tmpfs)) {
    const t = item.tmpfs;
    for (const k of Object.keys(t)) {
      if (k.startsWith('x-') || k === 'size' || k === 'mode') continue;
      ctx.policy(at('tmpfs', k), `services.*.volumes[].tmpfs.${k}`);
    }
    if (t.size !== undefined && t.size !== null) {
      const n = bytes(ctx, t.size, at('tmpfs', 'size'));
      if (n !== undefined) options.push(`size=${n}`);
    }
    if (t.mode !== undefined && t.mode !== null) {
      const m = tmpfsMode(ctx, t.mode, at('tmpfs', 'mode'));
      if (m !== undefined) options.push(`mode=${m}`);
    }
  }
  if (options.length === 0) return { type: 'tmpfs', target: item.target, readOnly };
  if (readOnly) options.push('ro');
  container.tmpfs.push(`${item.target}:${options.join(',')}`);
  return undefined;
}

/** tmpfsMode renders a file mode as the octal string Docker expects, reading the YAML source so 0755, 0o755 and 755 all mean rwxr-xr-x. */
function tmpfsMode(ctx: Ctx, v: unknown, segs: PathSegment[]): string | undefined {
  const src = (ctx.scalarSource(segs) ?? text(v)).trim();
  const m = /^0?o?([0-7]{1,4})$/.exec(src);
  if (m) return m[1]!.padStart(4, '0');
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0o7777) return v.toString(8).padStart(4, '0');
  ctx.error(segs, `must be an octal file mode such as 1777, got ${JSON.stringify(v)}`);
  return undefined;
}
