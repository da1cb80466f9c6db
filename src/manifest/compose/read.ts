/**
 * readCompose: the pipeline from a Compose file's text to services, in its
 * order (YAML and the Kubernetes refusal, interpolation, the schema, the
 * stack name, translation), and the issues collected on the way turned into
 * ErrorDetails with their lines, sorted.
 */

import { MAX_ALIAS_COUNT, nestingMessage, parserMessage, textProblem, valueTooDeep } from '../yamlBounds.js';
import path from 'node:path';
import { LineCounter, isScalar, parseAllDocuments, type Document } from 'yaml';
import type { ErrorDetail } from '../../base/errors.js';
import { interpolateTree, type Lookup } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { isKubernetesDocument } from '../kubernetes/documents.js';
import { Ctx, isObj, type Issue, type Obj } from './issues.js';
import { checkPublishedPorts } from './networks.js';
import { validateSchema } from './schema.js';
import { translateService } from './services.js';
import { translateTopLevel } from './topLevel.js';
import type { ComposeReadOptions, ComposeResult, ComposeService } from './types.js';
import { fileInputs } from './files.js';
import { checkDependencyGraph } from './dependsOn.js';
import { applyComposeTags, isEmptyDoc, walkAst } from './yamlAst.js';

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
      secrets: [],
      configs: [],
      warnings: [],
      errors: [{ path: opts.fileName, message: `internal error while reading the file: ${e instanceof Error ? e.message : String(e)}` }],
    };
  }
}

function readComposeUnchecked(text: string, opts: ComposeReadOptions, fallbackStack: string): ComposeResult {
  const bound = textProblem(text);
  if (bound) return { stack: fallbackStack, services: [], secrets: [], configs: [], warnings: [], errors: [withLine({ path: opts.fileName, message: bound.message }, bound.line)] };
  const lineCounter = new LineCounter();
  const docs = Array.from(parseAllDocuments(text, { lineCounter, merge: true, prettyErrors: false, uniqueKeys: true }));
  const fileIssues: ErrorDetail[] = [];
  const fileWarnings: ErrorDetail[] = [];
  const line = (offset: number | undefined) => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  const result = (errors: ErrorDetail[], warnings: ErrorDetail[] = fileWarnings): ComposeResult => ({ stack: fallbackStack, services: [], secrets: [], configs: [], warnings, errors });

  for (const doc of docs) {
    for (const e of doc.errors) fileIssues.push(withLine({ path: opts.fileName, message: `YAML syntax error: ${parserMessage(e.message)}` }, line(e.pos[0])));
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
    raw = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    return result([{ path: opts.fileName, message: `YAML: ${parserMessage(e instanceof Error ? e.message : String(e))}` }]);
  }
  if (valueTooDeep(raw)) return result([{ path: opts.fileName, message: nestingMessage() }]);
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
    checkDependencyGraph(ctx, services);
    dropDisabledProfiles(ctx, data.services, services);
  } else if (data.services === undefined) {
    ctx.error(['services'], 'the file defines no services: a Compose file needs a `services` mapping');
  }

  const errors = finalize(ctx, ctx.errors, true);
  const warnings = finalize(ctx, ctx.warnings, false);
  const ok = errors.length === 0;
  return { stack: ctx.stack, services: ok ? services : [], secrets: ok ? fileInputs(ctx, 'secret') : [], configs: ok ? fileInputs(ctx, 'config') : [], warnings, errors };
}

/**
 * kubernetesRefusal: the one error for a Kubernetes object met by the
 * Compose reader (`baton apply` gives files of Kubernetes objects to the
 * Kubernetes reader, so this is a file that mixes the two), read from the
 * AST only, so template placeholders elsewhere cannot make it fail.
 */
function kubernetesRefusal(doc: Document, index: number, lineCounter: LineCounter): ErrorDetail {
  const scalar = (v: unknown): string | undefined => {
    const raw = isScalar(v) ? v.value : v;
    return raw === null || raw === undefined || typeof raw === 'object' ? undefined : String(raw);
  };
  const kind = scalar(doc.get('kind', true)) ?? 'object';
  const name = scalar(doc.getIn(['metadata', 'name'], true));
  return withLine({ path: `documents[${index}]`, message: `a Kubernetes ${kind}${name ? ` ${name}` : ''} among Compose: a file is either a Compose file or Kubernetes manifests` }, lineCounter.linePos(doc.contents?.range?.[0] ?? 0).line);
}

/**
 * dropDisabledProfiles leaves out the services whose `profiles` name none
 * of the enabled ones, as `docker compose up` does (each is still read, so
 * its errors are reported); a service that stays may not need one that goes.
 */
function dropDisabledProfiles(ctx: Ctx, raw: Obj, services: ComposeService[]): void {
  const enabled = new Set(ctx.opts.profiles ?? []);
  const dropped = new Set<string>();
  for (const [key, svc] of Object.entries(raw)) {
    if (!isObj(svc) || svc.profiles === undefined) continue;
    const profiles = Array.isArray(svc.profiles) ? svc.profiles.map(String) : [];
    if (enabled.has('*') || profiles.some((p) => enabled.has(p))) continue;
    dropped.add(`${ctx.stack}_${key}`);
    ctx.warn(['services', key, 'profiles'], `services.${key} is not deployed: none of its profiles (${profiles.join(', ')}) is enabled (--profile)`);
  }
  if (!dropped.size) return;
  for (let i = services.length - 1; i >= 0; i--) if (dropped.has(services[i]!.name)) services.splice(i, 1);
  for (const s of services) {
    (s.spec.dependsOn ?? []).forEach((d, i) => {
      if (d.required && dropped.has(d.service)) ctx.error(['services', s.shortName, 'depends_on', i], `depends on ${d.service.slice(ctx.stack.length + 1)}, whose profiles are not enabled: enable one with --profile`);
    });
    if (s.spec.dependsOn) s.spec.dependsOn = s.spec.dependsOn.filter((d) => !dropped.has(d.service));
  }
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
