/**
 * Secrets and configs: the file's top-level definitions and each service's
 * references, as Swarm reads them.
 *
 * - A definition takes its content from `file:` (relative to the file's
 *   directory), `environment:` (a variable of the interpolation
 *   environment), or for configs `content:`; `external: true` names one the
 *   cluster has already. Its name in the cluster is `name:`, else
 *   `<stack>_<key>` (an external one's: `name:`, else its key). A content is
 *   at most 500 KiB (Swarm's limit), and never appears in a message.
 * - A reference is a key (short syntax) or `{source, target, uid, gid,
 *   mode}`; a secret lands at /run/secrets/<target or source>, a config at
 *   its target or /<source>. uid and gid are numbers (Compose writes them as
 *   strings), mode is octal as Compose means it (`0440`; YAML 1.2 would read
 *   that as decimal 440, so the scalar's own text decides).
 */
import { posix, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import type { FileInput, FileRefSpec } from '../../api/types.js';
import { MAX_FILE_BYTES, objectNameSchema } from '../../api/schemas.js';
import type { PathSegment } from '../interpolate.js';
import { isObj, type Ctx, type Obj } from './issues.js';

export type FileKind = 'secret' | 'config';


export interface DeclaredFile {
  /** The name in the cluster. */
  name: string;
  external: boolean;
  /** The content, for a definition that is not external (absent when it could not be read). */
  data?: Buffer;
  labels?: Record<string, string>;
}

const DEFINITION_KEYS: Record<FileKind, readonly string[]> = {
  secret: ['file', 'environment', 'external', 'name', 'labels'],
  config: ['file', 'environment', 'content', 'external', 'name', 'labels'],
};

/** readDefinitions reads the top-level `secrets:` or `configs:` into ctx.files. */
export function readDefinitions(ctx: Ctx, kind: FileKind, defs: unknown): void {
  const section = `${kind}s`;
  if (defs === undefined || defs === null) return;
  if (!isObj(defs)) return void ctx.error([section], `must be a mapping of ${kind} names to definitions`);
  for (const [key, raw] of Object.entries(defs)) {
    const segs: PathSegment[] = [section, key];
    const d: Obj = isObj(raw) ? raw : {};
    if (!isObj(raw)) ctx.error(segs, `must be a mapping with ${kind === 'config' ? 'file, environment, content' : 'file, environment'} or external`);
    ctx.checkKeys(d, segs, `${section}.*`, DEFINITION_KEYS[kind]);
    // `external: {name: x}` is the older form of `external: true` with `name: x`.
    const legacy = isObj(d.external) ? d.external : undefined;
    const external = d.external === true || d.external === 'true' || legacy !== undefined;
    const named = typeof d.name === 'string' && d.name !== '' ? d.name : typeof legacy?.name === 'string' && legacy.name !== '' ? legacy.name : undefined;
    const name = named ?? (external ? key : `${ctx.stack}_${key}`);
    if (!objectNameSchema.safeParse(name).success) ctx.error(named ? [...segs, 'name'] : segs, `"${name}" is not a usable ${kind} name: letters, digits, "_", "." or "-", at most 63`);
    const sources = (['file', 'environment', 'content'] as const).filter((k) => d[k] !== undefined);
    if (external) {
      if (sources.length) ctx.error(segs, `an external ${kind} has no ${sources.join(' or ')}: it is in the cluster already`);
      ctx.files[kind].set(key, { name, external: true });
      continue;
    }
    if (sources.length !== 1) {
      ctx.error(segs, sources.length ? `give one of ${sources.join(', ')}, not several` : `needs ${kind === 'config' ? 'file, environment or content' : 'file or environment'}, or external: true`);
      ctx.files[kind].set(key, { name, external: false });
      continue;
    }
    const data = readContent(ctx, kind, d, sources[0]!, segs);
    const labels = isObj(d.labels) ? Object.fromEntries(Object.entries(d.labels).map(([k, v]) => [k, String(v)])) : Array.isArray(d.labels) ? Object.fromEntries(d.labels.map((l) => String(l).split('=', 2) as [string, string]).map(([k, v]) => [k, v ?? ''])) : undefined;
    ctx.files[kind].set(key, { name, external: false, ...(data ? { data } : {}), ...(labels ? { labels } : {}) });
  }
}

function readContent(ctx: Ctx, kind: FileKind, d: Obj, source: 'file' | 'environment' | 'content', segs: PathSegment[]): Buffer | undefined {
  let data: Buffer | undefined;
  if (source === 'file') {
    if (typeof d.file !== 'string' || d.file === '') return void ctx.error([...segs, 'file'], 'must be a path');
    const path = resolve(ctx.opts.baseDir, d.file);
    try {
      data = (ctx.opts.readFileBytes ?? readFileSync)(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return void ctx.error([...segs, 'file'], code === 'ENOENT' ? `${path} does not exist` : `${path} cannot be read (${code ?? 'error'})`);
    }
  } else if (source === 'environment') {
    if (typeof d.environment !== 'string' || d.environment === '') return void ctx.error([...segs, 'environment'], 'must name a variable');
    const v = ctx.opts.env[d.environment];
    if (v === undefined) return void ctx.error([...segs, 'environment'], `variable ${d.environment} is not set`);
    data = Buffer.from(v, 'utf8');
  } else {
    if (typeof d.content !== 'string') return void ctx.error([...segs, 'content'], 'must be a string');
    data = Buffer.from(d.content, 'utf8');
  }
  if (data.length > MAX_FILE_BYTES) return void ctx.error([...segs, source], `the ${kind} is ${data.length} bytes; the limit is ${MAX_FILE_BYTES} (500 KiB)`);
  return data;
}

/** serviceRefs reads a service's `secrets:` or `configs:` list. */
export function serviceRefs(ctx: Ctx, kind: FileKind, list: unknown, segs: PathSegment[]): FileRefSpec[] {
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) return void ctx.error(segs, 'must be a list'), [];
  const out: FileRefSpec[] = [];
  const targets = new Set<string>();
  list.forEach((item, i) => {
    const at: PathSegment[] = [...segs, i];
    const r: Obj = typeof item === 'string' ? { source: item } : isObj(item) ? item : {};
    if (typeof item !== 'string' && !isObj(item)) return void ctx.error(at, `must be a ${kind} name or {source, target, uid, gid, mode}`);
    if (isObj(item)) ctx.checkKeys(item, at, `services.*.${kind}s[]`, ['source', 'target', 'uid', 'gid', 'mode']);
    const key = typeof r.source === 'string' ? r.source : '';
    const def = ctx.files[kind].get(key);
    if (!def) return void ctx.error(typeof item === 'string' ? at : [...at, 'source'], `${kind} "${key}" is not defined in the top-level \`${kind}s\``);
    const target = refTarget(ctx, kind, r.target, key, [...at, 'target']);
    const ids = (['uid', 'gid'] as const).map((k) => idOf(ctx, r[k], [...at, k]));
    const mode = modeOf(ctx, r.mode, [...at, 'mode']);
    if (target === undefined || ids.includes(undefined) || mode === undefined) return;
    if (targets.has(target)) return void ctx.error(at, `two ${kind}s go to ${target}`);
    targets.add(target);
    out.push({ source: def.name, target, uid: ids[0]!, gid: ids[1]!, mode });
  });
  return out;
}

function refTarget(ctx: Ctx, kind: FileKind, raw: unknown, source: string, segs: PathSegment[]): string | undefined {
  if (raw !== undefined && (typeof raw !== 'string' || raw === '')) return void ctx.error(segs, 'must be a path');
  const t = (raw as string | undefined) ?? source;
  // A secret's relative target is under /run/secrets (Swarm's rule); a config's under /.
  const abs = posix.isAbsolute(t) ? t : posix.join(kind === 'secret' ? '/run/secrets' : '/', t);
  if (t.split('/').some((seg) => seg === '..' || seg === '.') || posix.normalize(abs) !== abs || abs === '/') return void ctx.error(segs, `"${t}" is not a usable path in the container (no "." or ".." segments)`);
  return abs;
}

function idOf(ctx: Ctx, raw: unknown, segs: PathSegment[]): number | undefined {
  if (raw === undefined) return 0;
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 31 - 1) return void ctx.error(segs, 'must be a numeric id (0 or more)');
  return n;
}

function modeOf(ctx: Ctx, raw: unknown, segs: PathSegment[]): number | undefined {
  if (raw === undefined) return 0o444;
  // Octal as Compose means it: "0440", 0440 (the scalar's own text), 0o440; a plain number without a leading 0 is decimal.
  const text = typeof raw === 'string' ? raw : (ctx.scalarSource(segs) ?? String(raw));
  let n = NaN;
  if (/^0o?[0-7]+$/i.test(text)) n = parseInt(text.replace(/^0o?/i, '') || '0', 8);
  else if (/^\d+$/.test(text)) n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 0o777) return void ctx.error(segs, `must be a file mode such as 0440 (octal, at most 0777); got ${JSON.stringify(raw)}`);
  return n;
}

/** fileInputs: the contents to create or update with the apply (every definition that is not external). */
export function fileInputs(ctx: Ctx, kind: FileKind): FileInput[] {
  const out: FileInput[] = [];
  for (const d of ctx.files[kind].values()) if (!d.external && d.data) out.push({ name: d.name, data: d.data.toString('base64'), ...(d.labels ? { labels: d.labels } : {}) });
  return out;
}
