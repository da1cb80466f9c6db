/**
 * The container settings that take more than a copy: `environment` over
 * `env_file`, `ulimits`, `extra_hosts`, `healthcheck` (and an x-baton probe
 * laid over it), and `pull_policy`.
 */

import fs from 'node:fs';
import path from 'node:path';
import type { HealthcheckSpec, PullPolicy, Ulimit } from '../../api/types.js';
import type { Lookup, PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { parseDotEnv } from './dotenv.js';
import { isObj, type Ctx, type Obj } from './issues.js';
import { duration, listOrDict, stringList, text, toBool, toInt } from './values.js';
import type { XProbe } from './xBaton.js';

/** environment merges env_file (in order) under `environment`; a key with no value takes the interpolation env's value or is left out, as in Compose. */
export function environment(ctx: Ctx, svc: Obj, base: PathSegment[]): Record<string, string> {
  const env: Record<string, string> = {};
  const lookup: Lookup = (name) => (Object.prototype.hasOwnProperty.call(ctx.opts.env, name) ? ctx.opts.env[name] : undefined);
  if (svc.env_file !== undefined && svc.env_file !== null) {
    const segs = [...base, 'env_file'];
    const entries: { file: unknown; required: boolean; format?: unknown; segs: PathSegment[] }[] = [];
    if (typeof svc.env_file === 'string') entries.push({ file: svc.env_file, required: true, segs });
    else if (Array.isArray(svc.env_file)) {
      svc.env_file.forEach((item, i) => {
        if (typeof item === 'string') entries.push({ file: item, required: true, segs: [...segs, i] });
        else if (isObj(item)) {
          const required = item.required === undefined ? true : (toBool(ctx, item.required, [...segs, i, 'required']) ?? true);
          entries.push({ file: item.path, required, format: item.format, segs: [...segs, i] });
        }
      });
    }
    const read = ctx.opts.readFile ?? ((p: string) => fs.readFileSync(p, 'utf8'));
    for (const entry of entries) {
      if (typeof entry.file !== 'string' || entry.file === '') {
        ctx.error(entry.segs, 'must name a file');
        continue;
      }
      if (entry.format !== undefined && entry.format !== null && entry.format !== 'dotenv') {
        ctx.error([...entry.segs, 'format'], `\`${formatKeyPath([...entry.segs, 'format'])}\` (format ${JSON.stringify(entry.format)}) is not supported by Baton yet: env files are read as dotenv`);
        continue;
      }
      const abs = path.resolve(ctx.opts.baseDir, entry.file);
      let text: string;
      try {
        text = read(abs);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ENOENT') {
          if (entry.required) ctx.error(entry.segs, `env file ${abs} not found`);
          continue;
        }
        ctx.error(entry.segs, `cannot read env file ${abs}: ${e instanceof Error ? e.message : String(e)}`);
        continue;
      }
      try {
        Object.assign(env, parseDotEnv(text, lookup));
      } catch (e) {
        ctx.error(entry.segs, `env file ${abs}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
  if (svc.environment !== undefined) {
    for (const [k, v] of listOrDict(ctx, svc.environment, [...base, 'environment'])) {
      if (v !== null) env[k] = v;
      else {
        const fromEnv = lookup(k);
        if (fromEnv !== undefined) env[k] = fromEnv;
        else delete env[k];
      }
    }
  }
  return env;
}

export function ulimits(ctx: Ctx, v: unknown, segs: PathSegment[]): Record<string, Ulimit> {
  const out: Record<string, Ulimit> = {};
  if (!isObj(v)) return out;
  for (const [name, item] of Object.entries(v)) {
    const s = [...segs, name];
    if (isObj(item)) {
      const soft = toInt(ctx, item.soft, [...s, 'soft'], -1);
      const hard = toInt(ctx, item.hard, [...s, 'hard'], -1);
      if (soft === undefined || hard === undefined) continue;
      if (hard !== -1 && (soft === -1 || soft > hard)) {
        ctx.error(s, `soft limit ${soft} exceeds hard limit ${hard}`);
        continue;
      }
      out[name] = { soft, hard };
    } else {
      const n = toInt(ctx, item, s, -1);
      if (n !== undefined) out[name] = { soft: n, hard: n };
    }
  }
  return out;
}

export function extraHosts(ctx: Ctx, v: unknown, segs: PathSegment[]): string[] {
  const out: string[] = [];
  const add = (host: string, ip: string, s: PathSegment[]) => {
    if (host.trim() === '' || ip.trim() === '') ctx.error(s, `must be "host:ip", got ${JSON.stringify(`${host}:${ip}`)}`);
    else out.push(`${host.trim()}:${ip.trim()}`);
  };
  if (Array.isArray(v)) {
    v.forEach((item, i) => {
      if (typeof item !== 'string') return ctx.error([...segs, i], 'must be a string "host:ip"');
      const eq = item.indexOf('=');
      const colon = item.indexOf(':');
      const at = eq >= 0 ? eq : colon;
      if (at < 0) return ctx.error([...segs, i], `must be "host:ip", got ${JSON.stringify(item)}`);
      add(item.slice(0, at), item.slice(at + 1), [...segs, i]);
    });
  } else if (isObj(v)) {
    for (const [host, ip] of Object.entries(v)) {
      if (typeof ip === 'string') add(host, ip, [...segs, host]);
      else if (Array.isArray(ip)) ip.forEach((one, i) => add(host, text(one), [...segs, host, i]));
      else ctx.error([...segs, host], 'must be an IP address or a list of them');
    }
  }
  return out;
}

const HEALTH_TEST_KINDS = ['NONE', 'CMD', 'CMD-SHELL'];

export function healthcheck(ctx: Ctx, v: unknown, segs: PathSegment[]): HealthcheckSpec | undefined {
  if (!isObj(v)) return undefined;
  ctx.checkKeys(v, segs, 'services.*.healthcheck', ['test', 'disable', 'interval', 'timeout', 'retries', 'start_period', 'start_interval']);
  const at = (k: string): PathSegment[] => [...segs, k];
  const h: HealthcheckSpec = { test: [], intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0 };
  const disabled = v.disable !== undefined && v.disable !== null && toBool(ctx, v.disable, at('disable')) === true;
  if (disabled) h.test = ['NONE'];
  else if (typeof v.test === 'string') {
    if (v.test.trim() === '') ctx.error(at('test'), 'must not be empty');
    else h.test = ['CMD-SHELL', v.test];
  } else if (Array.isArray(v.test)) {
    const t = stringList(ctx, v.test, at('test'));
    if (t.length === 0) {
      // [] keeps the image's test, as Docker does.
    } else if (!HEALTH_TEST_KINDS.includes(t[0]!)) {
      ctx.error([...segs, 'test', 0], `a test list starts with NONE, CMD or CMD-SHELL, got ${JSON.stringify(t[0])} (use a string for a shell command)`);
    } else h.test = t;
  }
  // With no test, [] means "keep the image's HEALTHCHECK test" (Docker's convention).
  if (v.interval !== undefined) h.intervalMs = duration(ctx, v.interval, at('interval')) ?? h.intervalMs;
  if (v.timeout !== undefined) h.timeoutMs = duration(ctx, v.timeout, at('timeout')) ?? h.timeoutMs;
  if (v.start_period !== undefined) h.startPeriodMs = duration(ctx, v.start_period, at('start_period')) ?? h.startPeriodMs;
  if (v.start_interval !== undefined) {
    const d = duration(ctx, v.start_interval, at('start_interval'));
    if (d !== undefined) h.startIntervalMs = d;
  }
  if (v.retries !== undefined) h.retries = toInt(ctx, v.retries, at('retries')) ?? h.retries;
  return h;
}

/** mergeProbe lays an x-baton probe over a Compose healthcheck (whose timings it keeps unless it gives its own); alone it probes every 10 s with a 2 s timeout. */
export function mergeProbe(base: HealthcheckSpec | undefined, x: XProbe): HealthcheckSpec {
  const h: HealthcheckSpec = base && base.test[0] !== 'NONE' ? { ...base } : { test: [], intervalMs: 10_000, timeoutMs: 2_000, retries: 3, startPeriodMs: 0 };
  if (x.http) h.http = x.http;
  if (x.tcp) h.tcp = x.tcp;
  if (x.test) h.test = x.test;
  if (x.intervalMs !== undefined) h.intervalMs = x.intervalMs;
  if (x.timeoutMs !== undefined) h.timeoutMs = x.timeoutMs;
  if (x.retries !== undefined) h.retries = x.retries;
  if (x.startPeriodMs !== undefined) h.startPeriodMs = x.startPeriodMs;
  return h;
}

export function pullPolicy(ctx: Ctx, v: unknown, segs: PathSegment[]): PullPolicy | undefined {
  switch (v) {
    case 'always':
    case 'missing':
    case 'never':
      return v;
    case 'if_not_present':
      return 'missing';
    case 'build':
      // The image is built (build.ts), never pulled: nothing to set.
      return undefined;
    default:
      if (typeof v === 'string' && /^(refresh|daily|weekly|every_([0-9]+[wdhms])+)$/.test(v)) {
        ctx.unsupported(segs, 'services.*.pull_policy=refresh', v);
        return undefined;
      }
      ctx.error(segs, `must be one of: always, missing, never, if_not_present; got ${JSON.stringify(v)}`);
      return undefined;
  }
}
