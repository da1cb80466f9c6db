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
import path from 'node:path';
import { Cron } from 'croner';
import { LineCounter, isScalar, parseAllDocuments } from 'yaml';
import {
  defaultContainerSpec,
  DEFAULT_LB,
  isGlobal,
  isJob,
  type AutoscaleSpec,
  type CanarySpec,
  type ContainerSpec,
  type HealthcheckSpec,
  type LbSpec,
  type PullPolicy,
  type ServiceSpec,
  type JobSpec,
  type ScheduleSpec,
  type Toleration,
  type Ulimit,
} from '../../api/types.js';
import type { ErrorDetail } from '../../base/errors.js';
import { checkPublishedPorts, readEndpointMode, readLinks, readServiceNetworking } from './networks.js';
import { interpolateTree, type Lookup, type PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { isKubernetesDocument, kubernetesRefusal } from '../kubernetes.js';
import { parseDurationMs } from '../units.js';
import { parseDotEnv } from './dotenv.js';
import { Ctx, isObj, type Issue, type Obj } from './issues.js';
import { COMPOSE_KEY_POLICY } from './keyPolicy.js';
import { translateExpose, translatePorts } from './ports.js';
import { translateResources, translateRestart, translateUpdate } from './resources.js';
import { SERVICE_SCHEMA_KEYS, suggestion, validateSchema } from './schema.js';
import { translateTopLevel } from './topLevel.js';
import { STACK_LABEL, type ComposeReadOptions, type ComposeResult, type ComposeService } from './types.js';
import { command, duration, listOrDict, stringList, text, toBool, toInt } from './values.js';
import { volumes } from './volumes.js';
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
