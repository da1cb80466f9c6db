/**
 * The Compose reader: a Compose file's text in, Baton ServiceSpecs out, with
 * every problem reported at once as an ErrorDetail (key path + YAML line).
 * Pure apart from reading env_file files through opts.readFile.
 *
 * Pipeline: YAML (anchors, merge keys) → Kubernetes refusal → interpolation →
 * Compose Specification schema (ajv) → key policy table → translation.
 * Any error means no services: a half-read file is never applied.
 */

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as shellParse } from 'shell-quote';
import { Cron } from 'croner';
import { LineCounter, isScalar, parseAllDocuments } from 'yaml';
import {
  defaultContainerSpec,
  DEFAULT_LB,
  DEFAULT_UPDATE_CONFIG,
  isGlobal,
  isJob,
  wholeMillicores,
  type AutoscaleSpec,
  type CanarySpec,
  type ContainerSpec,
  type HealthcheckSpec,
  type LbSpec,
  type MountSpec,
  type PortSpec,
  type PullPolicy,
  type ResourceSpec,
  type RestartPolicy,
  type ServiceSpec,
  type JobSpec,
  type ScheduleSpec,
  type Toleration,
  type Ulimit,
  type UpdateConfig,
} from '../../api/types.js';
import type { ErrorDetail } from '../../base/errors.js';
import { checkPublishedPorts, readEndpointMode, readLinks, readNetworks, readServiceNetworking } from './networks.js';
import { interpolateTree, type Lookup, type PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { isKubernetesDocument, kubernetesRefusal } from '../kubernetes.js';
import { parseBytes, parseDurationMs, type UnitResult } from '../units.js';
import { parseDotEnv } from './dotenv.js';
import { Ctx, isObj, type Issue, type Obj } from './issues.js';
import { COMPOSE_KEY_POLICY } from './keyPolicy.js';
import { SERVICE_SCHEMA_KEYS, suggestion, validateSchema } from './schema.js';
import { STACK_LABEL, type ComposeReadOptions, type ComposeResult, type ComposeService } from './types.js';
import { applyComposeTags, isEmptyDoc, walkAst } from './yamlAst.js';

export { formatKeyPath };
export { parseDotEnv } from './dotenv.js';
export { COMPOSE_KEY_POLICY, type KeyPolicy } from './keyPolicy.js';
export { STACK_LABEL, type ComposeReadOptions, type ComposeResult, type ComposeService } from './types.js';

// ---------------------------------------------------------------- x-baton keys

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

/** CONSTRAINT_KEYS are the node attributes a placement constraint may test, as in Swarm. */
const CONSTRAINT_KEYS = ['node.id', 'node.hostname', 'node.name', 'node.role', 'node.platform.os', 'node.platform.arch'];

/** constraintProblem says what is wrong with a constraint expression, or undefined when it is well formed. */
export function constraintProblem(expr: string): string | undefined {
  const m = /^\s*([\w.\-/]+)\s*(==|!=)\s*(.+?)\s*$/.exec(expr);
  if (!m) return `"${expr}" must look like <attribute> == <value> or <attribute> != <value>, e.g. node.labels.zone == a`;
  const key = m[1]!;
  if (key.startsWith('node.labels.') && key.length > 'node.labels.'.length) return undefined;
  if (key.startsWith('engine.labels.')) return `"${key}": engine labels are not supported; use node labels (baton node update --label-add)`;
  if (!CONSTRAINT_KEYS.includes(key)) return `"${key}" is not a node attribute Baton knows; use one of ${CONSTRAINT_KEYS.join(', ')}, node.labels.<key>`;
  return undefined;
}

// ---------------------------------------------------------------- readCompose

const SERVICE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const STACK_NAME = /^[a-z0-9][a-z0-9_-]*$/;

/** sanitiseStackName turns a directory name into a stack name the way Compose derives a project name. */
function sanitiseStackName(raw: string): string {
  const s = raw
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '')
    .replace(/^[^a-z0-9]+/, '');
  return s === '' ? 'default' : s;
}

/**
 * readCompose translates one Compose file into Baton services. It never
 * throws: every problem (YAML syntax, Kubernetes documents, interpolation,
 * schema, unsupported keys, bad values) comes back in errors with its key
 * path and line, all of them at once, and services is empty whenever there
 * is any error so that nothing half-read gets applied.
 */
export function readCompose(text: string, opts: ComposeReadOptions): ComposeResult {
  const fallbackStack = opts.stack ?? sanitiseStackName(path.basename(path.resolve(opts.baseDir)));
  try {
    return readComposeUnchecked(text, opts, fallbackStack);
  } catch (e) {
    return {
      stack: fallbackStack,
      services: [],
      warnings: [],
      errors: [{ path: opts.fileName, message: `internal error while reading the file: ${e instanceof Error ? e.message : String(e)}` }],
    };
  }
}

function readComposeUnchecked(text: string, opts: ComposeReadOptions, fallbackStack: string): ComposeResult {
  const lineCounter = new LineCounter();
  const docs = Array.from(parseAllDocuments(text, { lineCounter, merge: true, prettyErrors: false, uniqueKeys: true }));
  const fileIssues: ErrorDetail[] = [];
  const fileWarnings: ErrorDetail[] = [];
  const line = (offset: number | undefined) => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  const result = (errors: ErrorDetail[], warnings: ErrorDetail[] = fileWarnings): ComposeResult => ({ stack: fallbackStack, services: [], warnings, errors });

  for (const doc of docs) {
    for (const e of doc.errors) fileIssues.push(withLine({ path: opts.fileName, message: `YAML syntax error: ${e.message}` }, line(e.pos[0])));
    for (const w of doc.warnings) {
      if (/!(reset|override)\b/.test(w.message)) continue;
      fileWarnings.push(withLine({ path: opts.fileName, message: `YAML: ${w.message}` }, line(w.pos[0])));
    }
  }
  const k8s = docs.map((d, i) => ({ d, i })).filter(({ d }) => d.errors.length === 0 && isKubernetesDocument(d));
  if (k8s.length > 0) {
    const errs = [...fileIssues];
    for (const { d, i } of k8s) errs.push(kubernetesRefusal(d, i, lineCounter));
    docs.forEach((d, i) => {
      if (d.errors.length === 0 && !isEmptyDoc(d) && !isKubernetesDocument(d)) {
        errs.push(withLine({ path: `documents[${i}]`, message: 'neither a Kubernetes object nor the only document of a Compose file' }, line(d.contents?.range?.[0])));
      }
    });
    return result(sortIssues(errs));
  }
  if (fileIssues.length > 0) return result(fileIssues);
  const nonEmpty = docs.filter((d) => !isEmptyDoc(d));
  if (nonEmpty.length === 0) return result([{ path: opts.fileName, message: 'the file is empty: a Compose file needs a `services` mapping' }]);
  if (nonEmpty.length > 1) {
    return result(
      docs
        .map((d, i) => ({ d, i }))
        .filter(({ d }) => !isEmptyDoc(d))
        .slice(1)
        .map(({ d, i }) => withLine({ path: `documents[${i}]`, message: `a Compose file holds one YAML document; this file has ${nonEmpty.length}` }, line(d.contents?.range?.[0]))),
    );
  }

  const doc = nonEmpty[0]!;
  applyComposeTags(doc);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    return result([{ path: opts.fileName, message: `YAML: ${e instanceof Error ? e.message : String(e)}` }]);
  }
  if (!isObj(raw)) return result([withLine({ path: opts.fileName, message: 'a Compose file must be a mapping with a `services` key' }, line(doc.contents?.range?.[0]))]);

  const ctx = new Ctx(
    opts,
    (segs) => line(walkAst(doc, segs).offset),
    (segs) => {
      const r = walkAst(doc, segs);
      return r.complete && isScalar(r.node) ? r.node.source : undefined;
    },
  );
  for (const w of fileWarnings) ctx.warnings.push({ segs: [], rawPath: w.path, message: w.message, line: w.line });

  // Interpolation, then the schema, both on the whole document.
  const lookup: Lookup = (name) => (Object.prototype.hasOwnProperty.call(opts.env, name) ? opts.env[name] : undefined);
  const interpolated = interpolateTree(raw, lookup);
  for (const e of interpolated.errors) ctx.error(e.path, e.message, true);
  for (const w of interpolated.warnings) ctx.warn(w.path, w.message);
  const data = interpolated.value as Obj;

  for (const i of validateSchema(data)) ctx.error(i.segs, i.message, true);

  // The stack name.
  if (opts.stack !== undefined) {
    if (!STACK_NAME.test(opts.stack)) {
      ctx.errors.push({ segs: [], rawPath: '--stack', message: `invalid stack name "${opts.stack}": use lowercase letters, digits, "_" and "-", starting with a letter or digit` });
    }
    ctx.stack = opts.stack;
  } else if (typeof data.name === 'string' && data.name !== '') {
    if (!STACK_NAME.test(data.name)) ctx.error(['name'], `invalid project name "${data.name}": use lowercase letters, digits, "_" and "-", starting with a letter or digit`);
    ctx.stack = data.name;
  } else {
    ctx.stack = fallbackStack;
  }

  translateTopLevel(ctx, data);
  const services: ComposeService[] = [];
  if (isObj(data.services)) {
    ctx.serviceKeys = new Set(Object.keys(data.services));
    for (const [key, svc] of Object.entries(data.services)) {
      const s = translateService(ctx, key, svc);
      if (s) services.push(s);
    }
    if (Object.keys(data.services).length === 0) ctx.error(['services'], 'the file defines no services');
    checkPublishedPorts(ctx, ctx.publishedPorts);
  } else if (data.services === undefined) {
    ctx.error(['services'], 'the file defines no services: a Compose file needs a `services` mapping');
  }

  const errors = finalize(ctx, ctx.errors, true);
  const warnings = finalize(ctx, ctx.warnings, false);
  return { stack: ctx.stack, services: errors.length > 0 ? [] : services, warnings, errors };
}

function withLine(d: ErrorDetail, line: number | undefined): ErrorDetail {
  return line === undefined ? d : { ...d, line };
}

function sortIssues(list: ErrorDetail[]): ErrorDetail[] {
  return list
    .map((d, i) => ({ d, i }))
    .sort((a, b) => (a.d.line ?? Number.MAX_SAFE_INTEGER) - (b.d.line ?? Number.MAX_SAFE_INTEGER) || a.i - b.i)
    .map(({ d }) => d);
}

/** finalize formats paths, attaches lines, hides translation errors under a schema or interpolation error, drops duplicates and sorts by line. */
function finalize(ctx: Ctx, issues: Issue[], isErrors: boolean): ErrorDetail[] {
  const blockers = isErrors ? issues.filter((i) => i.blocking).map((i) => formatKeyPath(i.segs)) : [];
  const seen = new Set<string>();
  const out: ErrorDetail[] = [];
  for (const issue of issues) {
    const p = issue.rawPath ?? formatKeyPath(issue.segs);
    if (!issue.blocking && blockers.some((b) => p === b || p.startsWith(`${b}.`) || p.startsWith(`${b}[`))) continue;
    const key = `${p}\u0000${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const line = issue.line ?? (issue.rawPath ? undefined : ctx.locate(issue.segs));
    out.push(withLine({ path: p === '' ? ctx.opts.fileName : p, message: issue.message }, line));
  }
  return sortIssues(out);
}

// ---------------------------------------------------------------- top level

const TOP_LEVEL_HANDLED = ['name', 'services', 'volumes', 'networks'];

function translateTopLevel(ctx: Ctx, data: Obj): void {
  for (const key of Object.keys(data)) {
    if (TOP_LEVEL_HANDLED.includes(key)) continue;
    if (key === 'x-baton') {
      ctx.error([key], '`x-baton` belongs under a service (services.<name>.x-baton)');
      continue;
    }
    if (key.startsWith('x-')) continue;
    if (!Object.hasOwn(COMPOSE_KEY_POLICY, key)) continue; // unknown top-level keys are schema errors already
    ctx.policy([key], key);
  }
  ctx.networks = readNetworks(ctx, data.networks);
  if (!isObj(data.volumes)) return;
  for (const [name, vol] of Object.entries(data.volumes)) {
    const segs: PathSegment[] = ['volumes', name];
    const v = isObj(vol) ? vol : {};
    const ext = v.external;
    const external = ext === true || ext === 'true' || isObj(ext);
    const extName = isObj(ext) && typeof ext.name === 'string' ? ext.name : undefined;
    const customName = typeof v.name === 'string' && v.name !== '' ? v.name : undefined;
    ctx.volumes.set(name, { source: external ? (customName ?? extName ?? name) : (customName ?? `${ctx.stack}_${name}`) });
    for (const key of Object.keys(v)) {
      if (key === 'name' || key === 'external' || key.startsWith('x-')) continue;
      if (key === 'driver' && (v.driver === 'local' || v.driver === 'default')) continue;
      if (key === 'driver_opts' && isObj(v.driver_opts) && Object.keys(v.driver_opts).length === 0) continue;
      ctx.policy([...segs, key], `volumes.*.${key}`);
    }
  }
}

// ---------------------------------------------------------------- value helpers

function toBool(ctx: Ctx, v: unknown, segs: PathSegment[]): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    if (/^(true|t|1|yes|y|on)$/i.test(v.trim())) return true;
    if (/^(false|f|0|no|n|off)$/i.test(v.trim())) return false;
  }
  ctx.error(segs, `must be true or false, got ${JSON.stringify(v)}`);
  return undefined;
}

function toInt(ctx: Ctx, v: unknown, segs: PathSegment[], min = 0): number | undefined {
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

function toCpus(ctx: Ctx, v: unknown, segs: PathSegment[]): number | undefined {
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

const duration = (ctx: Ctx, v: unknown, segs: PathSegment[]) => unit(ctx, parseDurationMs(v, formatKeyPath(segs)), segs);
const bytes = (ctx: Ctx, v: unknown, segs: PathSegment[]) => unit(ctx, parseBytes(v, formatKeyPath(segs)), segs);

/** text renders any parsed value for a message or a string check without throwing (String() throws on some objects). */
function text(v: unknown): string {
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

function stringList(ctx: Ctx, v: unknown, segs: PathSegment[]): string[] {
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
function listOrDict(ctx: Ctx, v: unknown, segs: PathSegment[], sep = '='): Map<string, string | null> {
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
function command(ctx: Ctx, v: unknown, segs: PathSegment[]): string[] | undefined {
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

// ---------------------------------------------------------------- services

const SERVICE_HANDLED = [
  'image',
  'build',
  'command',
  'entrypoint',
  'environment',
  'env_file',
  'labels',
  'ports',
  'expose',
  'network_mode',
  'networks',
  'links',
  'deploy',
  'scale',
  'volumes',
  'user',
  'working_dir',
  'read_only',
  'cap_add',
  'cap_drop',
  'tmpfs',
  'ulimits',
  'sysctls',
  'extra_hosts',
  'hostname',
  'init',
  'stop_signal',
  'stop_grace_period',
  'healthcheck',
  'pull_policy',
  'restart',
  'cpus',
  'mem_limit',
  'mem_reservation',
  'pids_limit',
  'x-baton',
];

function translateService(ctx: Ctx, key: string, svc: unknown): ComposeService | undefined {
  const base: PathSegment[] = ['services', key];
  const at = (...rest: PathSegment[]): PathSegment[] => [...base, ...rest];
  if (!SERVICE_NAME.test(key)) {
    ctx.error(base, `invalid service name "${key}": use letters, digits, "_", "." and "-", starting with a letter or digit`);
  }
  if (!isObj(svc)) {
    ctx.error(base, 'must be a mapping');
    return undefined;
  }

  // Keys Baton does not translate: the policy table decides (schema-unknown keys are already schema errors).
  for (const k of Object.keys(svc)) {
    if (SERVICE_HANDLED.includes(k) || k.startsWith('x-')) continue;
    if (!SERVICE_SCHEMA_KEYS.includes(k)) continue;
    ctx.policy(at(k), `services.*.${k}`);
  }

  // image (required) and build
  let image = '';
  if (typeof svc.image === 'string' && svc.image.trim() !== '') {
    image = svc.image.trim();
    if (svc.build !== undefined) ctx.policy(at('build'), 'services.*.build');
  } else if (svc.image === undefined || svc.image === null || svc.image === '') {
    ctx.error(at('image'), 'image is required (Baton does not build images)');
  }

  const container: ContainerSpec = defaultContainerSpec(image);

  if (svc.command !== undefined) {
    const c = command(ctx, svc.command, at('command'));
    if (c) container.command = c;
  }
  if (svc.entrypoint !== undefined) {
    const c = command(ctx, svc.entrypoint, at('entrypoint'));
    if (c) container.entrypoint = c;
  }

  container.env = environment(ctx, svc, base);
  if (svc.labels !== undefined) for (const [k, v] of listOrDict(ctx, svc.labels, at('labels'))) container.labels[k] = v ?? '';

  if (typeof svc.user === 'string') container.user = svc.user;
  else if (typeof svc.user === 'number') container.user = String(svc.user);
  if (typeof svc.working_dir === 'string') container.workingDir = svc.working_dir;
  if (typeof svc.hostname === 'string') container.hostname = svc.hostname;
  if (typeof svc.stop_signal === 'string') container.stopSignal = svc.stop_signal;
  if (svc.read_only !== undefined) container.readOnly = toBool(ctx, svc.read_only, at('read_only')) ?? false;
  if (svc.init !== undefined) container.init = toBool(ctx, svc.init, at('init')) ?? true;
  if (svc.cap_add !== undefined) container.capAdd = stringList(ctx, svc.cap_add, at('cap_add'));
  if (svc.cap_drop !== undefined) container.capDrop = stringList(ctx, svc.cap_drop, at('cap_drop'));
  if (svc.tmpfs !== undefined) container.tmpfs = stringList(ctx, svc.tmpfs, at('tmpfs'));
  if (svc.ulimits !== undefined) container.ulimits = ulimits(ctx, svc.ulimits, at('ulimits'));
  if (svc.sysctls !== undefined) for (const [k, v] of listOrDict(ctx, svc.sysctls, at('sysctls'))) container.sysctls[k] = v ?? '';
  if (svc.extra_hosts !== undefined) container.extraHosts = extraHosts(ctx, svc.extra_hosts, at('extra_hosts'));
  if (svc.stop_grace_period !== undefined) container.stopGracePeriodMs = duration(ctx, svc.stop_grace_period, at('stop_grace_period')) ?? 10_000;
  if (svc.healthcheck !== undefined && svc.healthcheck !== null) {
    const h = healthcheck(ctx, svc.healthcheck, at('healthcheck'));
    if (h) container.healthcheck = h;
  }
  if (svc.pull_policy !== undefined) {
    const p = pullPolicy(ctx, svc.pull_policy, at('pull_policy'));
    if (p) container.pullPolicy = p;
  }
  const net = readServiceNetworking(ctx, svc, base, ctx.networks);
  container.networkMode = net.mode;
  if (svc.links !== undefined) readLinks(ctx, svc.links, at('links'));
  volumes(ctx, svc.volumes, at('volumes'), container);

  const ports = svc.ports === undefined ? [] : translatePorts(ctx, svc.ports, at('ports'));
  // `network_mode: host` says the program binds its ports on the host itself: each is a fixed host port, as `mode: host` publishing is.
  if (svc.network_mode === 'host') for (const p of ports) Object.assign(p, { mode: 'host', published: p.published ?? p.target });
  const expose = svc.expose === undefined ? [] : translateExpose(ctx, svc.expose, at('expose'), ports);
  if (container.networkMode !== 'bridge' && ports.some((p) => p.protocol === 'udp')) ctx.error(at(svc.ports === undefined ? 'expose' : 'ports'), `a UDP port needs the task's own network (network_mode: ${container.networkMode} has none to forward into); remove network_mode or the UDP port`);

  // deploy
  const deploy = isObj(svc.deploy) ? svc.deploy : {};
  const dseg = (...rest: PathSegment[]) => at('deploy', ...rest);
  if (isObj(svc.deploy)) {
    ctx.checkKeys(deploy, at('deploy'), 'services.*.deploy', ['mode', 'replicas', 'labels', 'resources', 'restart_policy', 'placement', 'update_config', 'rollback_config', 'endpoint_mode']);
    readEndpointMode(ctx, deploy.endpoint_mode, dseg('endpoint_mode'));
  }
  const MODES = ['replicated', 'global', 'replicated-job', 'global-job'] as const;
  let mode: ServiceSpec['mode'] = MODES.includes(deploy.mode as never) ? (deploy.mode as ServiceSpec['mode']) : 'replicated';
  if (isGlobal({ mode }) && deploy.replicas !== undefined && deploy.replicas !== null) ctx.error(dseg('replicas'), `a ${mode} service runs one task on every eligible node; remove replicas, or use mode: replicated`);
  if (deploy.mode !== undefined && deploy.mode !== null && !MODES.includes(deploy.mode as never)) {
    const row = `services.*.deploy.mode=${text(deploy.mode)}`;
    if (Object.hasOwn(COMPOSE_KEY_POLICY, row)) ctx.unsupported(dseg('mode'), row, text(deploy.mode));
    else ctx.error(dseg('mode'), `must be one of: replicated, global, replicated-job, global-job`);
  }
  let replicas = 1;
  if (deploy.replicas !== undefined && deploy.replicas !== null) replicas = toInt(ctx, deploy.replicas, dseg('replicas')) ?? 1;
  if (svc.scale !== undefined && svc.scale !== null) {
    const scale = toInt(ctx, svc.scale, at('scale'));
    if (scale !== undefined) {
      if (deploy.replicas !== undefined && deploy.replicas !== null && scale !== replicas) {
        ctx.error(at('scale'), `conflicts with deploy.replicas (${scale} vs ${replicas}); set one of them`);
      }
      replicas = scale;
    }
  }
  const resources = translateResources(ctx, svc, deploy, base);
  const restartPolicy = translateRestart(ctx, svc, deploy, base);
  const constraints: string[] = [];
  const placement: ServiceSpec['placement'] = { constraints };
  if (isObj(deploy.placement)) {
    const pl = deploy.placement;
    ctx.checkKeys(pl, dseg('placement'), 'services.*.deploy.placement', ['constraints', 'preferences', 'max_replicas_per_node']);
    if (pl.constraints !== undefined) {
      const list = stringList(ctx, pl.constraints, dseg('placement', 'constraints'));
      list.forEach((c, i) => {
        const why = constraintProblem(c);
        if (why) ctx.error(dseg('placement', 'constraints', i), why);
      });
      constraints.push(...list);
    }
    if (pl.preferences !== undefined) {
      const prefs: string[] = [];
      if (!Array.isArray(pl.preferences)) ctx.error(dseg('placement', 'preferences'), 'must be a list of {spread: node.labels.<key>}');
      else
        pl.preferences.forEach((p, i) => {
          const at2 = dseg('placement', 'preferences', i);
          if (!isObj(p) || Object.keys(p).length !== 1 || typeof p.spread !== 'string') return ctx.error(at2, 'must be {spread: node.labels.<key>}');
          if (!/^node\.labels\.\S+$/.test(p.spread)) return ctx.error([...at2, 'spread'], `"${p.spread}": Baton spreads over node labels only (node.labels.<key>)`);
          prefs.push(p.spread);
        });
      if (prefs.length) placement.preferences = prefs;
    }
    if (pl.max_replicas_per_node !== undefined) {
      const n = Number(pl.max_replicas_per_node);
      if (!Number.isInteger(n) || n < 0) ctx.error(dseg('placement', 'max_replicas_per_node'), `must be a whole number ≥ 0 (0 means no limit), got ${JSON.stringify(pl.max_replicas_per_node)}`);
      else if (n > 0) placement.maxReplicasPerNode = n;
    }
  }
  const labels: Record<string, string> = {};
  if (deploy.labels !== undefined) for (const [k, v] of listOrDict(ctx, deploy.labels, dseg('labels'))) labels[k] = v ?? '';
  labels[STACK_LABEL] = ctx.stack;

  const x = xBaton(ctx, svc['x-baton'], at('x-baton'));
  const backoff = x.restart as { backoff?: never; initialMs?: number; maxMs?: number; factor?: number } | undefined;
  if (backoff?.initialMs !== undefined) {
    restartPolicy.delayMs = backoff.initialMs;
    restartPolicy.maxDelayMs = Math.max(restartPolicy.maxDelayMs, backoff.initialMs);
  }
  if (backoff?.maxMs !== undefined) restartPolicy.maxDelayMs = backoff.maxMs;
  if (backoff?.factor !== undefined) restartPolicy.factor = backoff.factor;
  if (x.healthcheck) container.healthcheck = mergeProbe(container.healthcheck, x.healthcheck as XProbe);
  if (x.readiness) container.readiness = mergeProbe(undefined, x.readiness as XProbe);
  if (x.strategy === 'binpack' || x.strategy === 'spread') placement.strategy = x.strategy;
  if (Array.isArray(x.tolerations) && x.tolerations.length) placement.tolerations = x.tolerations as Toleration[];
  if (typeof x.priority === 'number' && x.priority !== 0) placement.priority = x.priority;
  // A sibling in this file is named by its short name; anything else is a full service name.
  const full = (list: unknown) => (list as { service: string; required: boolean }[]).map((a) => ({ ...a, service: ctx.serviceKeys.has(a.service) ? `${ctx.stack}_${a.service}` : a.service }));
  if (Array.isArray(x.affinity) && x.affinity.length) placement.affinity = full(x.affinity);
  if (Array.isArray(x.anti_affinity) && x.anti_affinity.length) placement.antiAffinity = full(x.anti_affinity);

  // Autoscaling: replicas is only the starting count, within min and max.
  const autoscale = x.autoscale as AutoscaleSpec | undefined;
  if (autoscale) {
    if (mode !== 'replicated') ctx.error(at('x-baton', 'autoscale'), `only a replicated service is autoscaled, not a ${mode} one`);
    if ((autoscale.rps !== undefined || autoscale.concurrency !== undefined) && ports.length === 0) ctx.error(at('x-baton', 'autoscale'), 'rps and concurrency are measured by the routing mesh: the service needs published ports');
    replicas = Math.min(autoscale.max, Math.max(autoscale.min, replicas));
  }
  // Jobs: run to completion. A schedule makes the service a cron job (a job template).
  const schedule = x.schedule as ScheduleSpec | undefined;
  if (schedule && mode === 'replicated') mode = 'replicated-job';
  if (schedule && mode === 'global') ctx.error(at('x-baton', 'schedule'), 'a schedule runs a job: use deploy.mode replicated-job or global-job (or leave mode out)');
  let job: JobSpec | undefined;
  if (isJob({ mode })) {
    const completions = typeof x.completions === 'number' ? x.completions : deploy.replicas !== undefined && deploy.replicas !== null ? replicas : 1;
    job = { completions, parallelism: typeof x.parallelism === 'number' ? x.parallelism : completions, backoffLimit: typeof x.backoff_limit === 'number' ? x.backoff_limit : 6 };
  } else {
    for (const k of ['completions', 'parallelism', 'backoff_limit'] as const) if (x[k] !== undefined) ctx.error(at('x-baton', k), `only a job has ${k}: use deploy.mode replicated-job or global-job`);
  }
  const update = deploy.update_config !== undefined ? translateUpdate(ctx, deploy.update_config, dseg('update_config'), false) : undefined;
  const rollbackConfig = deploy.rollback_config !== undefined ? translateUpdate(ctx, deploy.rollback_config, dseg('rollback_config'), true) : undefined;
  const canary = x.canary as CanarySpec | undefined;
  if (canary && mode !== 'replicated') ctx.error(at('x-baton', 'canary'), 'canaries are for replicated services; a global service updates node by node');
  else if (canary && canary.count > replicas) ctx.error(at('x-baton', 'canary'), `${canary.count} canaries for ${replicas} replica(s): at most one per replica`);

  const spec: ServiceSpec = {
    stack: ctx.stack,
    shortName: key,
    mode,
    replicas: mode === 'replicated' ? replicas : 0,
    container,
    ports,
    expose,
    ...(net.networks ? { networks: net.networks } : {}),
    resources,
    restartPolicy,
    placement,
    ...(update ? { update } : {}),
    ...(rollbackConfig ? { rollbackConfig } : {}),
    ...(canary ? { canary } : {}),
    ...(job ? { job } : {}),
    ...(schedule ? { schedule } : {}),
    ...(autoscale ? { autoscale } : {}),
    x,
  };
  return { name: `${ctx.stack}_${key}`, shortName: key, spec, labels };
}

/** environment merges env_file (in order) under `environment`; a key with no value takes the interpolation env's value or is left out, as in Compose. */
function environment(ctx: Ctx, svc: Obj, base: PathSegment[]): Record<string, string> {
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

function ulimits(ctx: Ctx, v: unknown, segs: PathSegment[]): Record<string, Ulimit> {
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

function extraHosts(ctx: Ctx, v: unknown, segs: PathSegment[]): string[] {
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

function healthcheck(ctx: Ctx, v: unknown, segs: PathSegment[]): HealthcheckSpec | undefined {
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
function mergeProbe(base: HealthcheckSpec | undefined, x: XProbe): HealthcheckSpec {
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

function pullPolicy(ctx: Ctx, v: unknown, segs: PathSegment[]): PullPolicy | undefined {
  switch (v) {
    case 'always':
    case 'missing':
    case 'never':
      return v;
    case 'if_not_present':
      return 'missing';
    case 'build':
      ctx.error(segs, 'pull_policy "build" needs an image build, and Baton does not build images');
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

// ---------------------------------------------------------------- ports

const PORT_RANGE = /^(\d+)(?:-(\d+))?$/;

function parseRange(s: string): [number, number] | undefined {
  const m = PORT_RANGE.exec(s.trim());
  if (!m) return undefined;
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (lo < 1 || hi > 65535 || hi < lo) return undefined;
  return [lo, hi];
}

function translatePorts(ctx: Ctx, v: unknown, segs: PathSegment[]): PortSpec[] {
  const out: PortSpec[] = [];
  if (!Array.isArray(v)) return out;
  v.forEach((item, i) => {
    const s = [...segs, i];
    const from = out.length;
    if (typeof item === 'number') {
      if (!Number.isInteger(item) || item < 1 || item > 65535) return ctx.error(s, `invalid port ${item}: must be 1-65535`);
      out.push({ target: item, protocol: 'tcp', mode: 'ingress' });
    } else if (typeof item === 'string') out.push(...shortPort(ctx, item, s));
    else if (isObj(item)) {
      const p = longPort(ctx, item, s);
      if (p) out.push(p);
    }
    for (const port of out.slice(from)) ctx.publishedPorts.push({ segs: s, port });
  });
  const seen = new Set<string>();
  out.forEach((p) => {
    if (p.published === undefined) return;
    const key = `${p.published}/${p.protocol}`;
    if (seen.has(key)) ctx.error(segs, `published port ${key} appears more than once`);
    seen.add(key);
  });
  return out;
}

/** shortPort reads "[[host_ip:]published:]target[/protocol]" with ranges, e.g. "8000-8001:80-81" → two ports. */
function shortPort(ctx: Ctx, raw: string, segs: PathSegment[]): PortSpec[] {
  let rest = raw.trim();
  let protocol = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    protocol = rest.slice(slash + 1).toLowerCase();
    rest = rest.slice(0, slash);
  }
  let hostIp: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0 || rest[close + 1] !== ':') {
      ctx.error(segs, `invalid port ${JSON.stringify(raw)}: expected [host_ip:][published:]target[/protocol]`);
      return [];
    }
    hostIp = rest.slice(1, close);
    rest = rest.slice(close + 2);
  }
  let parts = rest.split(':');
  if (hostIp === undefined && parts.length > 2) {
    hostIp = parts.slice(0, -2).join(':');
    parts = parts.slice(-2);
  }
  if (parts.length > 2 || parts.some((p, i) => p === '' && i === parts.length - 1)) {
    ctx.error(segs, `invalid port ${JSON.stringify(raw)}: expected [host_ip:][published:]target[/protocol]`);
    return [];
  }
  if (protocol !== 'tcp' && protocol !== 'udp') {
    if (protocol === 'sctp') ctx.unsupported(segs, 'services.*.ports[]/sctp', `protocol ${protocol}`);
    else ctx.error(segs, `invalid protocol ${JSON.stringify(protocol)} in port ${JSON.stringify(raw)}: must be tcp or udp`);
    return [];
  }
  if (hostIp !== undefined && hostIp !== '') {
    ctx.unsupported(segs, 'services.*.ports[].host_ip', `host IP ${hostIp}`);
    if (!ctx.opts.ignoreUnsupported) return [];
  }
  const target = parseRange(parts[parts.length - 1]!);
  const pubRaw = parts.length === 2 ? parts[0]! : '';
  const published = pubRaw === '' ? undefined : parseRange(pubRaw);
  if (!target || (pubRaw !== '' && !published)) {
    ctx.error(segs, `invalid port ${JSON.stringify(raw)}: ports are 1-65535, ranges "low-high"`);
    return [];
  }
  const count = target[1] - target[0] + 1;
  if (published && published[1] - published[0] + 1 !== count) {
    if (count === 1) {
      ctx.unsupported(segs, 'services.*.ports[].published=range', `published range ${pubRaw} for one target port`);
      return [];
    }
    ctx.error(segs, `invalid port ${JSON.stringify(raw)}: the published range must be as long as the target range`);
    return [];
  }
  const out: PortSpec[] = [];
  for (let k = 0; k < count; k++) {
    const p: PortSpec = { target: target[0] + k, protocol: protocol as PortSpec['protocol'], mode: 'ingress' };
    if (published) p.published = published[0] + k;
    out.push(p);
  }
  return out;
}

function longPort(ctx: Ctx, item: Obj, segs: PathSegment[]): PortSpec | undefined {
  ctx.checkKeys(item, segs, 'services.*.ports[]', ['target', 'published', 'protocol', 'mode', 'name', 'host_ip']);
  const at = (k: string): PathSegment[] => [...segs, k];
  const protocol = item.protocol === undefined ? 'tcp' : text(item.protocol).toLowerCase();
  if (protocol !== 'tcp' && protocol !== 'udp') {
    if (protocol === 'sctp') ctx.unsupported(at('protocol'), 'services.*.ports[]/sctp', `protocol ${protocol}`);
    else ctx.error(at('protocol'), `must be tcp or udp, got ${JSON.stringify(item.protocol)}`);
    return undefined;
  }
  if (item.host_ip !== undefined && item.host_ip !== '') {
    ctx.unsupported(at('host_ip'), 'services.*.ports[].host_ip');
    if (!ctx.opts.ignoreUnsupported) return undefined;
  }
  if (item.target === undefined) {
    ctx.error(segs, '`target` is required');
    return undefined;
  }
  const t = parseRange(text(item.target));
  if (!t || t[0] !== t[1]) {
    ctx.error(at('target'), `must be one port 1-65535, got ${JSON.stringify(item.target)}`);
    return undefined;
  }
  const p: PortSpec = { target: t[0], protocol: protocol as PortSpec['protocol'], mode: 'ingress' };
  if (item.published !== undefined && item.published !== null && item.published !== '') {
    const pub = parseRange(text(item.published));
    if (!pub) {
      ctx.error(at('published'), `must be a port 1-65535, got ${JSON.stringify(item.published)}`);
      return undefined;
    }
    if (pub[0] !== pub[1]) {
      ctx.unsupported(at('published'), 'services.*.ports[].published=range', `range ${text(item.published)}`);
      return undefined;
    }
    p.published = pub[0];
  }
  if (item.mode !== undefined) {
    if (item.mode === 'host' || item.mode === 'ingress') p.mode = item.mode;
    else ctx.error(at('mode'), `must be host or ingress, got ${JSON.stringify(item.mode)}`);
  }
  if (typeof item.name === 'string' && item.name !== '') p.name = item.name;
  return p;
}

/**
 * translateExpose reads `expose`: TCP ports become the service's expose list;
 * a UDP port (`53/udp`) becomes a port without a published one in `ports`
 * (what the VIP serves), as Baton's service spec has no UDP expose list.
 */
function translateExpose(ctx: Ctx, v: unknown, segs: PathSegment[], ports: PortSpec[]): number[] {
  const out: number[] = [];
  if (!Array.isArray(v)) return out;
  v.forEach((item, i) => {
    const s = [...segs, i];
    let raw = text(item).trim();
    let udp = false;
    const slash = raw.lastIndexOf('/');
    if (slash >= 0) {
      const proto = raw.slice(slash + 1).toLowerCase();
      raw = raw.slice(0, slash);
      if (proto === 'sctp') return ctx.unsupported(s, 'services.*.expose[]/sctp', `protocol ${proto}`);
      if (proto !== 'tcp' && proto !== 'udp') return ctx.error(s, `invalid protocol ${JSON.stringify(proto)}: must be tcp or udp`);
      udp = proto === 'udp';
    }
    const r = parseRange(raw);
    if (!r) return ctx.error(s, `invalid port ${JSON.stringify(item)}: ports are 1-65535, ranges "low-high"`);
    for (let p = r[0]; p <= r[1]; p++) {
      if (!udp) {
        if (!out.includes(p)) out.push(p);
      } else if (!ports.some((q) => q.protocol === 'udp' && q.target === p)) ports.push({ target: p, protocol: 'udp', mode: 'ingress' });
    }
  });
  return out;
}

// ---------------------------------------------------------------- volumes

const PROPAGATION = ['shared', 'rshared', 'slave', 'rslave', 'private', 'rprivate'];

function resolveBindSource(ctx: Ctx, src: string): string {
  if (src === '~' || src.startsWith('~/')) {
    const home = ctx.opts.env.HOME ?? os.homedir();
    return path.join(home, src.slice(1));
  }
  return path.resolve(ctx.opts.baseDir, src);
}

const looksLikePath = (s: string) => s.startsWith('/') || s.startsWith('.') || s.startsWith('~');

function volumes(ctx: Ctx, v: unknown, segs: PathSegment[], container: ContainerSpec): void {
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

// ---------------------------------------------------------------- resources and restarts

function translateResources(ctx: Ctx, svc: Obj, deploy: Obj, base: PathSegment[]): ResourceSpec {
  const r: ResourceSpec = { reservations: { cpus: 0, memoryBytes: 0 }, limits: { cpus: 0, memoryBytes: 0 } };
  const res = isObj(deploy.resources) ? deploy.resources : undefined;
  const rseg = [...base, 'deploy', 'resources'];
  const limits = res && isObj(res.limits) ? res.limits : {};
  const reservations = res && isObj(res.reservations) ? res.reservations : {};
  if (res) ctx.checkKeys(res, rseg, 'services.*.deploy.resources', ['limits', 'reservations']);
  if (res && isObj(res.limits)) ctx.checkKeys(limits, [...rseg, 'limits'], 'services.*.deploy.resources.limits', ['cpus', 'memory', 'pids']);
  if (res && isObj(res.reservations)) ctx.checkKeys(reservations, [...rseg, 'reservations'], 'services.*.deploy.resources.reservations', ['cpus', 'memory']);

  type Field = { long?: unknown; longSegs: PathSegment[]; short?: unknown; shortSegs: PathSegment[]; parse: (v: unknown, s: PathSegment[]) => number | undefined; set: (n: number) => void };
  const cpus = (v: unknown, s: PathSegment[]) => toCpus(ctx, v, s);
  const mem = (v: unknown, s: PathSegment[]) => bytes(ctx, v, s);
  const pids = (v: unknown, s: PathSegment[]) => toInt(ctx, v, s, -1);
  const fields: Field[] = [
    { long: limits.cpus, longSegs: [...rseg, 'limits', 'cpus'], short: svc.cpus, shortSegs: [...base, 'cpus'], parse: cpus, set: (n) => (r.limits.cpus = n) },
    { long: limits.memory, longSegs: [...rseg, 'limits', 'memory'], short: svc.mem_limit, shortSegs: [...base, 'mem_limit'], parse: mem, set: (n) => (r.limits.memoryBytes = n) },
    {
      long: limits.pids,
      longSegs: [...rseg, 'limits', 'pids'],
      short: svc.pids_limit,
      shortSegs: [...base, 'pids_limit'],
      parse: pids,
      set: (n) => {
        if (n > 0) r.limits.pids = n;
      },
    },
    { long: reservations.cpus, longSegs: [...rseg, 'reservations', 'cpus'], shortSegs: [], parse: cpus, set: (n) => (r.reservations.cpus = n) },
    {
      long: reservations.memory,
      longSegs: [...rseg, 'reservations', 'memory'],
      short: svc.mem_reservation,
      shortSegs: [...base, 'mem_reservation'],
      parse: mem,
      set: (n) => (r.reservations.memoryBytes = n),
    },
  ];
  for (const f of fields) {
    const has = (v: unknown) => v !== undefined && v !== null && v !== '';
    const long = has(f.long) ? f.parse(f.long, f.longSegs) : undefined;
    const short = has(f.short) ? f.parse(f.short, f.shortSegs) : undefined;
    if (long !== undefined && short !== undefined && long !== short) {
      ctx.error(f.shortSegs, `conflicts with ${formatKeyPath(f.longSegs.slice(2))} (${text(f.short)} vs ${text(f.long)}); set one of them`);
      continue;
    }
    const n = long ?? short;
    if (n !== undefined) f.set(n);
  }
  return r;
}

/** translateUpdate reads `deploy.update_config` / `rollback_config` (Swarm's keys and defaults). */
function translateUpdate(ctx: Ctx, v: unknown, segs: PathSegment[], rollback: boolean): UpdateConfig | undefined {
  if (!isObj(v)) {
    ctx.error(segs, 'must be a mapping {parallelism, delay, failure_action, monitor, max_failure_ratio, order}');
    return undefined;
  }
  ctx.checkKeys(v, segs, rollback ? 'services.*.deploy.rollback_config' : 'services.*.deploy.update_config', ['parallelism', 'delay', 'failure_action', 'monitor', 'max_failure_ratio', 'order']);
  const u: UpdateConfig = { ...DEFAULT_UPDATE_CONFIG };
  if (v.parallelism !== undefined) u.parallelism = toInt(ctx, v.parallelism, [...segs, 'parallelism']) ?? u.parallelism;
  if (v.delay !== undefined) u.delayMs = duration(ctx, v.delay, [...segs, 'delay']) ?? u.delayMs;
  if (v.monitor !== undefined) u.monitorMs = duration(ctx, v.monitor, [...segs, 'monitor']) ?? u.monitorMs;
  if (v.failure_action !== undefined) {
    const allowed = rollback ? ['pause', 'continue'] : ['pause', 'continue', 'rollback'];
    if (allowed.includes(v.failure_action as string)) u.failureAction = v.failure_action as UpdateConfig['failureAction'];
    else ctx.error([...segs, 'failure_action'], `must be one of: ${allowed.join(', ')}; got ${JSON.stringify(v.failure_action)}`);
  }
  if (v.max_failure_ratio !== undefined) {
    const r = typeof v.max_failure_ratio === 'string' ? Number(v.max_failure_ratio) : v.max_failure_ratio;
    if (typeof r === 'number' && r >= 0 && r <= 1) u.maxFailureRatio = r;
    else ctx.error([...segs, 'max_failure_ratio'], `must be a number from 0 to 1 (the share of tasks that may fail), got ${JSON.stringify(v.max_failure_ratio)}`);
  }
  if (v.order !== undefined) {
    if (v.order === 'stop-first' || v.order === 'start-first') u.order = v.order;
    else ctx.error([...segs, 'order'], `must be stop-first or start-first, got ${JSON.stringify(v.order)}`);
  }
  return u;
}

const RESTART_DEFAULT: RestartPolicy = { condition: 'any', delayMs: 200, maxDelayMs: 30_000, maxAttempts: 0, windowMs: 0 };

function translateRestart(ctx: Ctx, svc: Obj, deploy: Obj, base: PathSegment[]): RestartPolicy {
  const rp: RestartPolicy = { ...RESTART_DEFAULT };
  const segs = [...base, 'deploy', 'restart_policy'];
  if (isObj(deploy.restart_policy)) {
    const p = deploy.restart_policy;
    ctx.checkKeys(p, segs, 'services.*.deploy.restart_policy', ['condition', 'delay', 'max_attempts', 'window']);
    if (svc.restart !== undefined) ctx.policy([...base, 'restart'], 'services.*.restart+deploy.restart_policy');
    if (p.condition !== undefined) {
      if (p.condition === 'none' || p.condition === 'on-failure' || p.condition === 'any') rp.condition = p.condition;
      else ctx.error([...segs, 'condition'], `must be one of: none, on-failure, any; got ${JSON.stringify(p.condition)}`);
    }
    if (p.delay !== undefined) {
      const d = duration(ctx, p.delay, [...segs, 'delay']);
      if (d !== undefined) {
        rp.delayMs = d;
        rp.maxDelayMs = Math.max(rp.maxDelayMs, d);
      }
    }
    if (p.max_attempts !== undefined) rp.maxAttempts = toInt(ctx, p.max_attempts, [...segs, 'max_attempts']) ?? 0;
    if (p.window !== undefined) rp.windowMs = duration(ctx, p.window, [...segs, 'window']) ?? 0;
    return rp;
  }
  if (svc.restart === undefined || svc.restart === null) return rp;
  const r = text(svc.restart);
  const m = /^on-failure(?::(\d+))?$/.exec(r);
  if (r === 'no' || r === 'false') rp.condition = 'none';
  else if (r === 'always' || r === 'unless-stopped') rp.condition = 'any';
  else if (m) {
    rp.condition = 'on-failure';
    if (m[1] !== undefined) rp.maxAttempts = Number(m[1]);
  } else ctx.error([...base, 'restart'], `must be one of: no, always, unless-stopped, on-failure[:N]; got ${JSON.stringify(svc.restart)}`);
  return rp;
}

// ---------------------------------------------------------------- x-baton

function xBaton(ctx: Ctx, v: unknown, segs: PathSegment[]): Record<string, unknown> {
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
