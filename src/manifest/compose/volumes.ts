/**
 * Volumes: the top-level declarations (their driver and the local driver's
 * options, read by declareVolume for topLevel.ts), and a service's
 * `volumes`, short and long syntax, as mounts: binds resolved against the
 * file's directory, named volumes, anonymous volumes, and tmpfs mounts,
 * whose options only fit ContainerSpec.tmpfs.
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

/**
 * DeclaredVolume is what a top-level volume is on a node: a named volume of
 * the engine's local driver (`source`, its engine name), or, from the local
 * driver's options, a host path bound in (`bind`: type none, o bind,
 * device) or a tmpfs (`tmpfs`: its mount options, type tmpfs). Those two
 * become the mounts they stand for, so they follow the rules of a bind
 * mount and a tmpfs mount, not a named volume's (no node keeps them).
 */
export interface DeclaredVolume {
  source: string;
  bind?: string;
  tmpfs?: string[];
}

/** Filesystem types that mount a share from another machine: refused with the remote-filesystems row. */
const REMOTE_TYPES = ['nfs', 'nfs4', 'cifs', 'smb', 'smb3', 'smbfs', 'glusterfs', 'ceph', 'cephfs', 'sshfs', 'fuse.sshfs', '9p', 'lustre', 'virtiofs'];

/** declareVolume reads one top-level volume: its name on the engine, its driver, and the local driver's bind and tmpfs options. */
export function declareVolume(ctx: Ctx, name: string, v: Obj): void {
  const segs: PathSegment[] = ['volumes', name];
  const ext = v.external;
  const external = ext === true || ext === 'true' || isObj(ext);
  const extName = isObj(ext) && typeof ext.name === 'string' ? ext.name : undefined;
  const customName = typeof v.name === 'string' && v.name !== '' ? v.name : undefined;
  const declared: DeclaredVolume = { source: external ? (customName ?? extName ?? name) : (customName ?? `${ctx.stack}_${name}`) };
  ctx.volumes.set(name, declared);
  const local = v.driver === undefined || v.driver === null || v.driver === 'local' || v.driver === 'default';
  for (const key of Object.keys(v)) {
    if (key === 'name' || key === 'external' || key.startsWith('x-')) continue;
    if (key === 'driver') {
      if (!local) ctx.unsupported([...segs, key], 'volumes.*.driver', `driver ${text(v.driver)}`);
      continue;
    }
    if (key === 'driver_opts') {
      if (!isObj(v.driver_opts) || Object.keys(v.driver_opts).length === 0 || !local) continue;
      if (external) ctx.error([...segs, key], 'an external volume was made outside this file, with its own options; remove driver_opts or external');
      else Object.assign(declared, localDriverOpts(ctx, v.driver_opts, [...segs, key]));
      continue;
    }
    ctx.policy([...segs, key], `volumes.*.${key}`);
  }
}

/**
 * localDriverOpts reads the local driver's options as mount(8) takes them:
 * `type: none, o: bind, device: /path` binds a host path (absolute, as the
 * engine requires: it resolves nothing against the file); `type: tmpfs`
 * with `o: size=…,mode=…[,uid=…,gid=…]` is a tmpfs. Every value is checked
 * here: nothing goes to the engine as written.
 */
function localDriverOpts(ctx: Ctx, opts: Obj, segs: PathSegment[]): Pick<DeclaredVolume, 'bind' | 'tmpfs'> | undefined {
  const at = (k: string): PathSegment[] => [...segs, k];
  const type = opts.type === undefined || opts.type === null ? '' : text(opts.type).trim().toLowerCase();
  const o = opts.o === undefined || opts.o === null ? [] : text(opts.o).split(',').map((x) => x.trim()).filter(Boolean);
  const device = opts.device === undefined || opts.device === null ? undefined : text(opts.device);
  const unknown = Object.keys(opts).find((k) => k !== 'type' && k !== 'o' && k !== 'device');
  if (REMOTE_TYPES.includes(type) || (type === '' && o.some((x) => x.startsWith('addr=')))) {
    ctx.unsupported(at('type'), 'volumes.*.driver_opts.type=remote', `type ${type || 'with addr='}`);
    return undefined;
  }
  if (unknown !== undefined) {
    ctx.unsupported(at(unknown), 'volumes.*.driver_opts', `option ${unknown}`);
    return undefined;
  }
  if (type === 'none' || (type === '' && o.some((x) => x === 'bind' || x === 'rbind'))) {
    if (o.length !== 1 || (o[0] !== 'bind' && o[0] !== 'rbind')) {
      ctx.error(at('o'), `a bind volume (type none) takes o: bind (or rbind), got ${JSON.stringify(opts.o ?? '')}; make it read-only where a service mounts it (:ro)`);
      return undefined;
    }
    if (device === undefined || !path.posix.isAbsolute(device) || device.includes('\0')) {
      ctx.error(at('device'), `a bind volume's device is the host path to bind, absolute (the engine resolves nothing against the file), got ${JSON.stringify(opts.device ?? '')}`);
      return undefined;
    }
    return { bind: path.posix.normalize(device).replace(/(.)\/+$/, '$1') };
  }
  if (type === 'tmpfs') {
    const options: string[] = [];
    for (const opt of o) {
      const eq = opt.indexOf('=');
      const [k, val] = eq < 0 ? [opt, ''] : [opt.slice(0, eq), opt.slice(eq + 1)];
      if (k === 'size') {
        const n = bytes(ctx, val, at('o'));
        if (n !== undefined) options.push(`size=${n}`);
      } else if (k === 'mode') {
        const m = /^0?o?([0-7]{1,4})$/.exec(val);
        if (m) options.push(`mode=${m[1]!.padStart(4, '0')}`);
        else ctx.error(at('o'), `mode must be an octal file mode such as 1777, got ${JSON.stringify(val)}`);
      } else if ((k === 'uid' || k === 'gid') && /^\d{1,10}$/.test(val)) options.push(`${k}=${Number(val)}`);
      else ctx.error(at('o'), `tmpfs option ${JSON.stringify(opt)}: Baton passes size=<bytes>, mode=<octal>, uid=<n> and gid=<n>`);
    }
    return { tmpfs: options };
  }
  ctx.unsupported(at('type'), 'volumes.*.driver_opts', `type ${type || '(none)'}`);
  return undefined;
}

export function volumes(ctx: Ctx, v: unknown, segs: PathSegment[], container: ContainerSpec): void {
  if (!Array.isArray(v)) return;
  const targets = new Map<string, number>();
  v.forEach((item, i) => {
    const s = [...segs, i];
    const mount = typeof item === 'string' ? shortVolume(ctx, item, s, container) : isObj(item) ? longVolume(ctx, item, s, container) : undefined;
    if (!mount) return;
    const seen = targets.get(mount.target);
    if (seen !== undefined) return ctx.error(s, `mount target ${mount.target} is already used by ${formatKeyPath([...segs, seen])}`);
    targets.set(mount.target, i);
    container.mounts.push(mount);
  });
}

/** namedVolume is the mount a declared volume makes at `target` (none for a tmpfs with options: those go to ContainerSpec.tmpfs). */
function namedVolume(ctx: Ctx, name: string, segs: PathSegment[], target: string, readOnly: boolean, container: ContainerSpec): MountSpec | undefined {
  const declared = ctx.volumes.get(name);
  if (!declared) {
    ctx.error(segs, `volume "${name}" is not declared under the top-level \`volumes\``);
    return undefined;
  }
  if (declared.bind !== undefined) return { type: 'bind', source: declared.bind, target, readOnly };
  if (declared.tmpfs !== undefined) return tmpfsMount(declared.tmpfs, target, readOnly, container);
  return { type: 'volume', source: declared.source, target, readOnly };
}

/** tmpfsMount is a tmpfs at target: a mount, or with options an entry of ContainerSpec.tmpfs ("path:options"), which alone carries them. */
function tmpfsMount(options: string[], target: string, readOnly: boolean, container: ContainerSpec): MountSpec | undefined {
  if (options.length === 0) return { type: 'tmpfs', target, readOnly };
  container.tmpfs.push(`${target}:${[...options, ...(readOnly ? ['ro'] : [])].join(',')}`);
  return undefined;
}

/** shortVolume reads "SRC:DST[:MODE]" (bind when SRC is a path, else a declared named volume) or "DST" (anonymous volume). */
function shortVolume(ctx: Ctx, raw: string, segs: PathSegment[], container: ContainerSpec): MountSpec | undefined {
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
  return namedVolume(ctx, src, segs, target, readOnly, container);
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
    return namedVolume(ctx, source, at('source'), item.target, readOnly, container);
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
  return tmpfsMount(options, item.target, readOnly, container);
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
