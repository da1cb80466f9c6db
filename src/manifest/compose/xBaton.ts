/**
 * The x-baton extension: Baton's own settings for a service (priority,
 * affinity, tolerations, autoscaling, jobs and schedules, canaries, restart
 * backoff, load balancing, probes, the placement strategy), one row per
 * subkey in X_BATON_KEYS. xBaton reads them into ServiceSpec.x, and
 * translateService (services.ts) carries them into the spec.
 */

import { Cron } from 'croner';
import { DEFAULT_LB, type AutoscaleSpec, type CanarySpec, type LbSpec, type ScheduleSpec, type Toleration } from '../../api/types.js';
import type { PathSegment } from '../interpolate.js';
import { parseDurationMs } from '../units.js';
import { isObj, type Ctx, type Obj } from './issues.js';
import { suggestion } from './schema.js';

/** positiveCount reads an x-baton count ≥ 1. */
function positiveCount(key: string, what: string): XBatonKey {
  return {
    translate(value, report) {
      if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 100_000) return value;
      return report.error(`must be a whole number from 1 to 100000 (${what}), got ${JSON.stringify(value)}`);
    },
  };
}

/** XBatonKey translates one `x-baton` subkey into ServiceSpec.x; later issues add rows to X_BATON_KEYS. */
export interface XBatonKey {
  /** Returns the value stored under spec.x[key]; problems go through report (subPath is relative to the subkey). */
  translate(value: unknown, report: { error(message: string, subPath?: PathSegment[]): void; warn(message: string, subPath?: PathSegment[]): void }): unknown;
}

/**
 * X_BATON_KEYS is the one schema of the service-level `x-baton` extension:
 * one row per subkey; any other subkey is an error ("unknown x-baton key")
 * rather than a silently ignored typo.
 */
export const X_BATON_KEYS: Readonly<Record<string, XBatonKey>> = {
  priority: {
    translate(value, report) {
      if (typeof value === 'number' && Number.isInteger(value) && Math.abs(value) <= 1_000_000) return value;
      report.error(`must be a whole number from -1000000 to 1000000 (higher runs first and may preempt lower), got ${JSON.stringify(value)}`);
      return undefined;
    },
  },
  affinity: affinityKey('affinity'),
  anti_affinity: affinityKey('anti_affinity'),
  tolerations: {
    translate(value, report) {
      if (!Array.isArray(value)) {
        report.error('must be a list of {key, operator: Equal|Exists, value, effect}');
        return undefined;
      }
      const out: Toleration[] = [];
      value.forEach((v, i) => {
        if (!isObj(v)) return report.error('must be a mapping {key, operator, value, effect}', [i]);
        for (const k of Object.keys(v)) if (!['key', 'operator', 'value', 'effect'].includes(k)) report.error(`unknown key "${k}" (a toleration has key, operator, value, effect)`, [i, k]);
        const operator = v.operator ?? (v.value === undefined ? 'Exists' : 'Equal');
        if (operator !== 'Equal' && operator !== 'Exists') return report.error(`must be Equal or Exists, got ${JSON.stringify(v.operator)}`, [i, 'operator']);
        if (v.effect !== undefined && !['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(v.effect as string)) return report.error(`must be NoSchedule, PreferNoSchedule or NoExecute, got ${JSON.stringify(v.effect)}`, [i, 'effect']);
        if (v.key === undefined && operator !== 'Exists') return report.error('a toleration without a key must use operator Exists (it then tolerates every taint)', [i]);
        if (operator === 'Exists' && v.value !== undefined) return report.error('operator Exists takes no value', [i, 'value']);
        out.push({ ...(v.key !== undefined ? { key: String(v.key) } : {}), operator, ...(v.value !== undefined ? { value: String(v.value) } : {}), ...(v.effect !== undefined ? { effect: v.effect as Toleration['effect'] } : {}) });
      });
      return out;
    },
  },
  autoscale: {
    translate(value, report) {
      if (!isObj(value)) return report.error('must be a mapping {min, max, cpu: 60%, memory: 70%, rps: 100, concurrency: 20, scale_up: {stabilization, step}, scale_down: {stabilization, step}}');
      const known = ['min', 'max', 'cpu', 'memory', 'rps', 'concurrency', 'scale_up', 'scale_down'];
      for (const k of Object.keys(value)) if (!known.includes(k)) report.error(`unknown key "${k}" (x-baton.autoscale has ${known.join(', ')})`, [k]);
      const int = (k: string, min: number) => {
        const v = value[k];
        if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= 100_000) return v;
        report.error(`must be a whole number from ${min} to 100000, got ${JSON.stringify(v)}`, [k]);
        return undefined;
      };
      const minR = value.min === undefined ? 1 : int('min', 0);
      const maxR = value.max === undefined ? report.error('is required: the most replicas the autoscaler may run', ['max']) : int('max', 1);
      if (minR !== undefined && maxR !== undefined && minR > maxR) report.error(`min (${minR}) must not be above max (${maxR})`, ['min']);
      const percent = (k: string) => {
        const v = value[k];
        if (v === undefined) return undefined;
        const n = typeof v === 'string' && /^\d+(\.\d+)?%$/.test(v.trim()) ? Number(v.trim().slice(0, -1)) : typeof v === 'number' ? v : NaN;
        if (Number.isFinite(n) && n > 0 && n <= 1000) return n / 100;
        report.error(`must be a target utilisation such as 60%, got ${JSON.stringify(v)}`, [k]);
        return undefined;
      };
      const positive = (k: string) => {
        const v = value[k];
        if (v === undefined) return undefined;
        if (typeof v === 'number' && v > 0) return v;
        report.error(`must be a number above 0 (per task), got ${JSON.stringify(v)}`, [k]);
        return undefined;
      };
      const window = (k: 'scale_up' | 'scale_down', defaultMs: number) => {
        const v = value[k];
        const out: { stabilizationMs: number; step?: number } = { stabilizationMs: defaultMs };
        if (v === undefined) return out;
        if (!isObj(v)) {
          report.error('must be a mapping {stabilization: 60s, step: 2}', [k]);
          return out;
        }
        for (const kk of Object.keys(v)) if (kk !== 'stabilization' && kk !== 'step') report.error(`unknown key "${kk}" (${k} has stabilization, step)`, [k, kk]);
        if (v.stabilization !== undefined) {
          const d = parseDurationMs(v.stabilization, 'stabilization');
          if (!d.ok) report.error(d.error.message, [k, 'stabilization']);
          else out.stabilizationMs = d.value;
        }
        if (v.step !== undefined) {
          if (typeof v.step === 'number' && Number.isInteger(v.step) && v.step >= 1) out.step = v.step;
          else report.error(`must be a whole number of replicas ≥ 1 per decision, got ${JSON.stringify(v.step)}`, [k, 'step']);
        }
        return out;
      };
      const out: AutoscaleSpec = { min: minR ?? 1, max: maxR ?? 1, scaleUp: window('scale_up', 0), scaleDown: window('scale_down', 300_000) };
      const cpu = percent('cpu');
      const memory = percent('memory');
      const rps = positive('rps');
      const concurrency = positive('concurrency');
      if (cpu !== undefined) out.cpu = cpu;
      if (memory !== undefined) out.memory = memory;
      if (rps !== undefined) out.rps = rps;
      if (concurrency !== undefined) out.concurrency = concurrency;
      if (value.cpu === undefined && value.memory === undefined && value.rps === undefined && value.concurrency === undefined) report.error('give at least one target: cpu, memory, rps or concurrency');
      if (out.min === 0 && value.rps === undefined && value.concurrency === undefined) report.error('scaling to zero (min: 0) needs a traffic target, rps or concurrency: CPU and memory never ask for zero', ['min']);
      return out;
    },
  },
  completions: positiveCount('completions', 'successful tasks that complete the job'),
  parallelism: positiveCount('parallelism', 'tasks of the job that run at once'),
  backoff_limit: {
    translate(value, report) {
      if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
      return report.error(`must be a whole number ≥ 0 (failed tasks tolerated before the job fails), got ${JSON.stringify(value)}`);
    },
  },
  schedule: {
    translate(value, report) {
      const o = isObj(value) ? value : { cron: value };
      if (isObj(value)) for (const k of Object.keys(value)) if (!['cron', 'time_zone', 'concurrency', 'successful_history', 'failed_history'].includes(k)) report.error(`unknown key "${k}" (x-baton.schedule has cron, time_zone, concurrency, successful_history, failed_history)`, [k]);
      const at = isObj(value) ? ['cron'] : [];
      if (typeof o.cron !== 'string') return report.error(`must be a cron schedule ("*/5 * * * *", or 6 fields with seconds first) or {cron, time_zone, concurrency, ...}; got ${JSON.stringify(value)}`, at);
      const fields = o.cron.trim().split(/\s+/).length;
      if (fields !== 5 && fields !== 6) return report.error(`must have 5 fields (minute hour day month weekday) or 6 (seconds first), got ${fields}: "${o.cron}"`, at);
      const out: ScheduleSpec = { cron: o.cron.trim(), concurrency: 'allow', successfulHistory: 3, failedHistory: 1 };
      try {
        new Cron(out.cron, { paused: true, ...(typeof o.time_zone === 'string' ? { timezone: o.time_zone } : {}) }).nextRun();
      } catch (e) {
        const msg = (e as Error).message.replace(/^CronPattern: /, '');
        if (typeof o.time_zone === 'string' && /time ?zone|RangeError/i.test(`${(e as Error).name} ${msg}`)) report.error(`unknown time zone "${o.time_zone}" (an IANA name such as Europe/Paris)`, ['time_zone']);
        else report.error(`"${out.cron}": ${msg}`, at);
      }
      if (o.time_zone !== undefined) {
        if (typeof o.time_zone === 'string') out.timeZone = o.time_zone;
        else report.error('must be an IANA time zone name such as Europe/Paris', ['time_zone']);
      }
      if (o.concurrency !== undefined) {
        if (o.concurrency === 'allow' || o.concurrency === 'forbid' || o.concurrency === 'replace') out.concurrency = o.concurrency;
        else report.error(`must be allow, forbid or replace, got ${JSON.stringify(o.concurrency)}`, ['concurrency']);
      }
      for (const [k, f] of [['successful_history', 'successfulHistory'], ['failed_history', 'failedHistory']] as const) {
        const v = o[k];
        if (v === undefined) continue;
        if (typeof v === 'number' && Number.isInteger(v) && v >= 0) out[f] = v;
        else report.error(`must be a whole number ≥ 0 (finished runs kept), got ${JSON.stringify(v)}`, [k]);
      }
      return out;
    },
  },
  /** Kubernetes' minReadySeconds: a new task is available only after staying ready this long (UpdateConfig.minReadyMs). */
  min_ready: {
    translate(value, report) {
      const d = parseDurationMs(value, 'min_ready');
      if (!d.ok) return report.error(`${d.error.message} (how long a new task must stay ready before it counts as available, e.g. 10s)`);
      return d.value;
    },
  },
  canary: {
    translate(value, report) {
      const count = isObj(value) ? value.count : value;
      if (typeof count !== 'number' || !Number.isInteger(count) || count < 1) return report.error(`must be a number of canary tasks (1 or more), or {count, auto_promote: 5m}; got ${JSON.stringify(value)}`, isObj(value) ? ['count'] : []);
      const out: CanarySpec = { count };
      if (isObj(value)) {
        for (const k of Object.keys(value)) if (k !== 'count' && k !== 'auto_promote') report.error(`unknown key "${k}" (x-baton.canary has count, auto_promote)`, [k]);
        if (value.auto_promote !== undefined) {
          const d = parseDurationMs(value.auto_promote, 'auto_promote');
          if (!d.ok) report.error(d.error.message, ['auto_promote']);
          else out.autoPromoteMs = d.value;
        }
      }
      return out;
    },
  },
  restart: {
    translate(value, report) {
      if (!isObj(value)) return report.error('must be a mapping: {backoff: {initial: 200ms, max: 30s, factor: 2}}');
      for (const k of Object.keys(value)) if (k !== 'backoff') report.error(`unknown key "${k}" (x-baton.restart has backoff)`, [k]);
      const b = value.backoff;
      if (b === undefined) return {};
      if (!isObj(b)) return report.error('must be a mapping {initial, max, factor}', ['backoff']);
      const out: { initialMs?: number; maxMs?: number; factor?: number } = {};
      for (const [k, v] of Object.entries(b)) {
        if (k === 'initial' || k === 'max') {
          const d = parseDurationMs(v, k);
          if (!d.ok) report.error(d.error.message, ['backoff', k]);
          else out[k === 'initial' ? 'initialMs' : 'maxMs'] = d.value;
        } else if (k === 'factor') {
          if (typeof v === 'number' && v >= 1 && v <= 10) out.factor = v;
          else report.error(`must be a number from 1 to 10 (each crash multiplies the delay by it), got ${JSON.stringify(v)}`, ['backoff', k]);
        } else report.error(`unknown key "${k}" (a backoff has initial, max, factor)`, ['backoff', k]);
      }
      if (out.initialMs !== undefined && out.maxMs !== undefined && out.maxMs < out.initialMs) report.error(`max (${b.max}) must not be below initial (${b.initial})`, ['backoff', 'max']);
      return out;
    },
  },
  /** The secret holding the registry login its image is pulled with (baton registry login makes `registry-<server>`). */
  pull_secret: {
    translate(value, report) {
      if (typeof value === 'string' && /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/.test(value)) return value;
      return report.error(`must be the name of a secret holding a registry login (baton registry ls shows them), got ${JSON.stringify(value)}`);
    },
  },
  /** Where its tasks serve Prometheus metrics: {port, path} (GET /api/v1/sd/prometheus lists them). */
  metrics: {
    translate(value, report) {
      if (!isObj(value)) return report.error('must be a mapping {port, path: /metrics}');
      for (const k of Object.keys(value)) if (k !== 'port' && k !== 'path') report.error(`unknown key "${k}" (x-baton.metrics has port, path)`, [k]);
      const port = value.port;
      if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) return report.error(`must be a container port from 1 to 65535, got ${JSON.stringify(port)}`, ['port']);
      if (value.path !== undefined && (typeof value.path !== 'string' || !/^\/[\x21-\x7e]{0,255}$/.test(value.path))) return report.error(`must be a URL path starting with "/", got ${JSON.stringify(value.path)}`, ['path']);
      return { port, ...(value.path !== undefined ? { path: value.path } : {}) };
    },
  },
  lb: {
    translate(value, report) {
      if (!isObj(value)) return report.error('must be a mapping: {algorithm: round_robin|least_conn, proxy_protocol: off|v1|v2, hold_timeout: 30s}');
      const out: LbSpec = { ...DEFAULT_LB };
      for (const [k, v] of Object.entries(value)) {
        if (k === 'algorithm') {
          if (v === 'round_robin' || v === 'least_conn') out.algorithm = v;
          else report.error(`must be round_robin (the default) or least_conn, got ${JSON.stringify(v)}`, [k]);
        } else if (k === 'proxy_protocol') {
          // YAML reads a bare off as false.
          const p = v === false ? 'off' : v;
          if (p === 'off' || p === 'v1' || p === 'v2') out.proxyProtocol = p;
          else report.error(`must be off (the default), v1 or v2, got ${JSON.stringify(v)}`, [k]);
        } else if (k === 'hold_timeout') {
          const d = parseDurationMs(v, k);
          if (!d.ok) report.error(d.error.message, [k]);
          else out.holdTimeoutMs = d.value;
        } else report.error(`unknown key "${k}" (x-baton.lb has algorithm, proxy_protocol, hold_timeout)`, [k]);
      }
      return out;
    },
  },
  healthcheck: probeKey('healthcheck'),
  readiness: probeKey('readiness'),
  strategy: {
    translate(value, report) {
      if (value === 'spread' || value === 'binpack') return value;
      report.error(`must be spread (fewest tasks, least allocated; the default) or binpack (most allocated first), got ${JSON.stringify(value)}`);
      return undefined;
    },
  },
};

/** XProbe is an x-baton probe as read: what to probe, and any timings given. */
export interface XProbe {
  http?: { path: string; port: number };
  tcp?: { port: number };
  test?: string[];
  intervalMs?: number;
  timeoutMs?: number;
  retries?: number;
  startPeriodMs?: number;
}

/**
 * probeKey reads `x-baton.healthcheck` / `x-baton.readiness`: one of
 * `http: /path` (with `port`), `tcp: PORT`, or `test` (as Compose's), plus
 * interval, timeout, retries, start_period.
 */
function probeKey(name: string): XBatonKey {
  const example = `{http: /healthz, port: 8080} or {tcp: 5432} or {test: [CMD, ...]}`;
  return {
    translate(value, report) {
      if (!isObj(value)) return report.error(`must be a mapping, e.g. ${example}`);
      const out: XProbe = {};
      const port = (v: unknown, at: string) => {
        if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) return v;
        report.error(`must be a port number from 1 to 65535, got ${JSON.stringify(v)}`, [at]);
        return undefined;
      };
      for (const [k, v] of Object.entries(value)) {
        if (k === 'http') {
          if (typeof v !== 'string' || !v.startsWith('/')) report.error(`must be a path starting with "/", got ${JSON.stringify(v)}`, [k]);
          else if (value.port === undefined) report.error('an http probe needs a port (the container port it listens on)', [k]);
          else {
            const p = port(value.port, 'port');
            if (p !== undefined) out.http = { path: v, port: p };
          }
        } else if (k === 'tcp') {
          const p = port(v, k);
          if (p !== undefined) out.tcp = { port: p };
        } else if (k === 'port') {
          if (value.http === undefined) report.error('port goes with http (for tcp, write tcp: PORT)', [k]);
        } else if (k === 'test') {
          if (typeof v === 'string' && v.trim() !== '') out.test = ['CMD-SHELL', v];
          else if (Array.isArray(v) && v.length > 1 && (v[0] === 'CMD' || v[0] === 'CMD-SHELL') && v.every((x) => typeof x === 'string')) out.test = v as string[];
          else report.error('must be a shell command string, or a list starting with CMD or CMD-SHELL', [k]);
        } else if (k === 'interval' || k === 'timeout' || k === 'start_period') {
          const d = parseDurationMs(v, k);
          if (!d.ok) report.error(d.error.message, [k]);
          else out[k === 'interval' ? 'intervalMs' : k === 'timeout' ? 'timeoutMs' : 'startPeriodMs'] = d.value;
        } else if (k === 'retries') {
          if (typeof v === 'number' && Number.isInteger(v) && v >= 1) out.retries = v;
          else report.error(`must be a whole number from 1 (failures in a row before the probe counts as failing), got ${JSON.stringify(v)}`, [k]);
        } else report.error(`unknown key "${k}" (x-baton.${name} has http and port, tcp, test, interval, timeout, retries, start_period)`, [k]);
      }
      const kinds = [out.http, out.tcp, out.test].filter(Boolean).length;
      if (kinds === 0 && !Object.keys(value).some((k) => k === 'http' || k === 'tcp' || k === 'test')) report.error(`says what to probe: ${example}`);
      if (kinds > 1) report.error('takes one of http, tcp or test');
      return out;
    },
  };
}

/** affinityKey reads `x-baton.affinity` / `anti_affinity`: a list of service names (required) or {service, required}. */
function affinityKey(name: string): XBatonKey {
  return {
    translate(value, report) {
      if (!Array.isArray(value)) {
        report.error(`must be a list of service names, or of {service: NAME, required: true|false}`);
        return undefined;
      }
      const out: { service: string; required: boolean }[] = [];
      value.forEach((v, i) => {
        if (typeof v === 'string' && v !== '') return void out.push({ service: v, required: true });
        if (v !== null && typeof v === 'object' && !Array.isArray(v) && typeof (v as Obj).service === 'string') {
          const o = v as Obj;
          for (const k of Object.keys(o)) if (k !== 'service' && k !== 'required') report.error(`unknown key "${k}" (an ${name} entry has service and required)`, [i, k]);
          if (o.required !== undefined && typeof o.required !== 'boolean') return report.error('must be true or false', [i, 'required']);
          return void out.push({ service: o.service as string, required: o.required !== false });
        }
        report.error('must be a service name or {service: NAME, required: true|false}', [i]);
      });
      return out;
    },
  };
}

export function xBaton(ctx: Ctx, v: unknown, segs: PathSegment[]): Record<string, unknown> {
  const x: Record<string, unknown> = {};
  if (v === undefined || v === null) return x;
  if (!isObj(v)) {
    ctx.error(segs, 'must be a mapping');
    return x;
  }
  const known = Object.keys(X_BATON_KEYS);
  for (const [key, value] of Object.entries(v)) {
    const row = Object.hasOwn(X_BATON_KEYS, key) ? X_BATON_KEYS[key] : undefined;
    if (!row) {
      ctx.error([...segs, key], `unknown x-baton key "${key}"${suggestion(key, known)}`);
      continue;
    }
    x[key] = row.translate(value, {
      error: (message, sub = []) => ctx.error([...segs, key, ...sub], message),
      warn: (message, sub = []) => ctx.warn([...segs, key, ...sub], message),
    });
  }
  return x;
}
