/**
 * Value helpers for the translators: Compose's booleans, integers, CPU
 * counts, durations and sizes, string lists, "list or dict" maps, and
 * commands split the way Compose splits them. A bad value is reported at its
 * path and read as undefined (or empty), so the reading goes on.
 */

import { parse as shellParse } from 'shell-quote';
import { wholeMillicores } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { parseBytes, parseDurationMs, type UnitResult } from '../units.js';
import { isObj, type Ctx } from './issues.js';

export function toBool(ctx: Ctx, v: unknown, segs: PathSegment[]): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    if (/^(true|t|1|yes|y|on)$/i.test(v.trim())) return true;
    if (/^(false|f|0|no|n|off)$/i.test(v.trim())) return false;
  }
  ctx.error(segs, `must be true or false, got ${JSON.stringify(v)}`);
  return undefined;
}

export function toInt(ctx: Ctx, v: unknown, segs: PathSegment[], min = 0): number | undefined {
  if (v === undefined) {
    ctx.error(segs, 'is required');
    return undefined;
  }
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*[-+]?\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    ctx.error(segs, `must be an integer${min === 0 ? ' ≥ 0' : ` ≥ ${min}`}, got ${JSON.stringify(v)}`);
    return undefined;
  }
  return n;
}

export function toCpus(ctx: Ctx, v: unknown, segs: PathSegment[]): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n) || n < 0) {
    ctx.error(segs, `must be a number of CPU cores such as 0.5, got ${JSON.stringify(v)}`);
    return undefined;
  }
  // Baton counts cpu in millicores, as Kubernetes does: a finer amount would be silently rounded.
  if (!wholeMillicores(n)) {
    ctx.error(segs, `${JSON.stringify(v)} is finer than a millicore; use at most three decimals (0.001 cpus = 1m)`);
    return undefined;
  }
  return n;
}

function unit(ctx: Ctx, r: UnitResult, segs: PathSegment[]): number | undefined {
  if (r.ok) return r.value;
  ctx.error(segs, r.error.message);
  return undefined;
}

export const duration = (ctx: Ctx, v: unknown, segs: PathSegment[]) => unit(ctx, parseDurationMs(v, formatKeyPath(segs)), segs);
export const bytes = (ctx: Ctx, v: unknown, segs: PathSegment[]) => unit(ctx, parseBytes(v, formatKeyPath(segs)), segs);

/** text renders any parsed value for a message or a string check without throwing (String() throws on some objects). */
export function text(v: unknown): string {
  if (v === null || (typeof v !== 'object' && typeof v !== 'function')) return String(v);
  try {
    return JSON.stringify(v) ?? typeof v;
  } catch {
    return typeof v;
  }
}

function scalarString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return undefined;
}

export function stringList(ctx: Ctx, v: unknown, segs: PathSegment[]): string[] {
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v)) {
    ctx.error(segs, 'must be a string or a list of strings');
    return [];
  }
  const out: string[] = [];
  v.forEach((item, i) => {
    const s = scalarString(item);
    if (s === undefined) ctx.error([...segs, i], 'must be a string');
    else out.push(s);
  });
  return out;
}

/**
 * listOrDict reads Compose's "list or dict" shape (`{K: v}` or `["K=v", "K"]`)
 * into key → value, null standing for "no value given" so each caller
 * applies its own rule (environment looks it up, labels use "").
 */
export function listOrDict(ctx: Ctx, v: unknown, segs: PathSegment[], sep = '='): Map<string, string | null> {
  const out = new Map<string, string | null>();
  if (v === null || v === undefined) return out;
  if (Array.isArray(v)) {
    v.forEach((item, i) => {
      const s = scalarString(item);
      if (s === undefined) return ctx.error([...segs, i], 'must be a string "KEY=value"');
      const at = s.indexOf(sep);
      const k = at < 0 ? s : s.slice(0, at);
      if (k.trim() === '') return ctx.error([...segs, i], `missing key in ${JSON.stringify(s)}`);
      out.set(k, at < 0 ? null : s.slice(at + 1));
    });
    return out;
  }
  if (isObj(v)) {
    for (const [k, item] of Object.entries(v)) {
      if (item === null || item === undefined) out.set(k, null);
      else {
        const s = scalarString(item);
        if (s === undefined) ctx.error([...segs, k], 'must be a string, number or boolean');
        else out.set(k, s);
      }
    }
    return out;
  }
  ctx.error(segs, 'must be a mapping or a list of "KEY=value" strings');
  return out;
}

const SHELL_OPERATOR_HINT = 'write the command as a list, or as ["sh", "-c", "..."]';

/**
 * splitShellWords splits a string command the way Compose does (shell
 * quoting, no variable expansion: a `$` left after interpolation is
 * literal, as is `#`), but refuses shell operators, which Compose silently
 * truncates at.
 */
function splitShellWords(s: string): { args: string[] } | { error: string } {
  let escaped = '';
  let q: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q === "'") {
      escaped += c;
      if (c === "'") q = null;
      continue;
    }
    if (c === '\\') {
      if (i + 1 >= s.length) return { error: 'ends with a lone backslash' };
      escaped += c + s[++i];
      continue;
    }
    if (q === '"') {
      if (c === '"') q = null;
      escaped += c === '$' || c === '`' ? `\\${c}` : c;
      continue;
    }
    if (c === "'" || c === '"') {
      q = c;
      escaped += c;
    } else if (c === '$' || c === '#' || c === '(' || c === ')' || c === '`' || c === '{' || c === '}' || c === '!') {
      escaped += `\\${c}`;
    } else escaped += c;
  }
  if (q) return { error: `has an unterminated ${q === '"' ? 'double' : 'single'} quote` };
  const args: string[] = [];
  for (const entry of shellParse(escaped)) {
    if (typeof entry === 'string') args.push(entry);
    else if ('op' in entry && entry.op === 'glob') args.push((entry as { pattern: string }).pattern);
    else if ('op' in entry) return { error: `contains the shell operator "${entry.op}": ${SHELL_OPERATOR_HINT}` };
    else return { error: `contains an unexpected ${JSON.stringify(entry)}` };
  }
  return { args };
}

/** command reads command/entrypoint: null keeps the image's, a string is split shell-style, a list is taken as is, "" and [] mean "explicitly empty". */
export function command(ctx: Ctx, v: unknown, segs: PathSegment[]): string[] | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'string') {
    const r = splitShellWords(v);
    if ('error' in r) {
      ctx.error(segs, `${JSON.stringify(v)} ${r.error}`);
      return undefined;
    }
    return r.args;
  }
  if (Array.isArray(v)) return stringList(ctx, v, segs);
  ctx.error(segs, 'must be a string or a list of strings');
  return undefined;
}
