/**
 * Kubernetes documents: the YAML documents of one or more files, `List`
 * kinds opened into their items, each with what every message about it
 * needs (where it is: file, document index, key path, line).
 */
import { MAX_ALIAS_COUNT, nestingMessage, parserMessage, textProblem, valueTooDeep } from '../yamlBounds.js';
import { LineCounter, parseAllDocuments, type Document } from 'yaml';
import type { ErrorDetail } from '../../base/errors.js';
import type { PathSegment } from '../interpolate.js';
import { formatKeyPath } from '../keyPath.js';
import { isEmptyDoc, walkAst } from '../compose/yamlAst.js';

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** KDoc is one Kubernetes object of the input. */
export interface KDoc {
  kind: string;
  apiVersion: string;
  name: string;
  /** metadata.namespace; undefined when the document names none. */
  namespace?: string;
  obj: Obj;
  /** The object's key path prefix in its file: `documents[2]`, or `documents[0].items[3]` inside a List. */
  base: PathSegment[];
  /** Its file's name, when the input has several files. */
  file?: string;
  line(segs: readonly PathSegment[]): number | undefined;
}

/** Issues collects errors and warnings with their paths and lines. */
export class Issues {
  readonly errors: ErrorDetail[] = [];
  readonly warnings: ErrorDetail[] = [];
  constructor(readonly ignoreUnsupported: boolean) {}

  private detail(d: KDoc | undefined, segs: readonly PathSegment[], message: string): ErrorDetail {
    const path = d ? `${d.file ? `${d.file}: ` : ''}${formatKeyPath([...d.base, ...segs])}` : formatKeyPath(segs);
    const line = d?.line(segs);
    return line === undefined ? { path, message } : { path, message, line };
  }

  error(d: KDoc | undefined, segs: readonly PathSegment[], message: string): void {
    this.errors.push(this.detail(d, segs, message));
  }

  warn(d: KDoc | undefined, segs: readonly PathSegment[], message: string): void {
    this.warnings.push(this.detail(d, segs, message));
  }

  /** unsupported refuses what Baton cannot honour, or only warns with --ignore-unsupported (the caller drops it either way). */
  unsupported(d: KDoc | undefined, segs: readonly PathSegment[], what: string, reason?: string): void {
    const msg = `${what} is not supported by Baton${reason ? `: ${reason}` : ''}`;
    if (this.ignoreUnsupported) this.warn(d, segs, `${msg} (ignored)`);
    else this.error(d, segs, msg);
  }

  /** ignored warns that a field changes nothing that runs. */
  ignored(d: KDoc, segs: readonly PathSegment[], reason: string): void {
    this.warn(d, segs, `\`${formatKeyPath(segs)}\` is ignored: ${reason}`);
  }
}

/** isKubernetesDocument: a mapping with both `apiVersion` and `kind`, a shape no Compose file has. */
export function isKubernetesDocument(doc: Document): boolean {
  const c = doc.contents as { has?: (k: string) => boolean } | null;
  return !!c && typeof c.has === 'function' && doc.has('apiVersion') && doc.has('kind');
}

/** looksLikeKubernetes: whether a file's text holds a Kubernetes object (how `baton apply -f` tells it from Compose). */
export function looksLikeKubernetes(text: string): boolean {
  try {
    return Array.from(parseAllDocuments(text, { prettyErrors: false, logLevel: 'error' })).some((d) => d.errors.length === 0 && isKubernetesDocument(d));
  } catch {
    return false;
  }
}

/**
 * parseDocuments reads every file's documents; YAML errors and documents
 * that are not Kubernetes objects are errors at their place.
 */
export function parseDocuments(files: { name: string; text: string }[], issues: Issues): KDoc[] {
  const out: KDoc[] = [];
  const several = files.length > 1;
  for (const f of files) {
    const bound = textProblem(f.text);
    if (bound) {
      issues.errors.push({ path: several ? f.name : 'documents', message: bound.message, ...(bound.line ? { line: bound.line } : {}) });
      continue;
    }
    const lc = new LineCounter();
    // YAML 1.1, as Kubernetes reads manifests: `defaultMode: 0644` is octal.
    const docs = Array.from(parseAllDocuments(f.text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, merge: true, logLevel: 'error', version: '1.1' }));
    const lineAt = (offset: number | undefined) => (offset === undefined ? undefined : lc.linePos(offset).line);
    docs.forEach((doc, i) => {
      const where = { path: `${several ? `${f.name}: ` : ''}documents[${i}]` };
      if (doc.errors.length) {
        for (const e of doc.errors) issues.errors.push({ ...where, message: `YAML syntax error: ${parserMessage(e.message)}`, ...(lineAt(e.pos[0]) ? { line: lineAt(e.pos[0])! } : {}) });
        return;
      }
      if (isEmptyDoc(doc)) return;
      let js: unknown;
      try {
        js = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
      } catch (e) {
        issues.errors.push({ ...where, message: `YAML: ${parserMessage(e instanceof Error ? e.message : String(e))}` });
        return;
      }
      if (valueTooDeep(js)) {
        issues.errors.push({ ...where, message: nestingMessage() });
        return;
      }
      const make = (obj: Obj, base: PathSegment[]): KDoc => ({
        kind: typeof obj.kind === 'string' ? obj.kind : '',
        apiVersion: typeof obj.apiVersion === 'string' ? obj.apiVersion : '',
        name: isObj(obj.metadata) && typeof obj.metadata.name === 'string' ? obj.metadata.name : '',
        ...(isObj(obj.metadata) && typeof obj.metadata.namespace === 'string' ? { namespace: obj.metadata.namespace } : {}),
        obj,
        base: ['documents', i, ...base],
        ...(several ? { file: f.name } : {}),
        line: (segs) => lineAt(walkAst(doc, [...base, ...segs]).offset),
      });
      if (!isObj(js)) {
        issues.errors.push({ ...where, message: 'a Kubernetes document must be a mapping with apiVersion and kind', ...(lineAt(doc.contents?.range?.[0]) ? { line: lineAt(doc.contents?.range?.[0])! } : {}) });
        return;
      }
      const top = make(js, []);
      if (!top.kind || !top.apiVersion) {
        issues.error(top, [], `a Kubernetes document needs both apiVersion and kind${top.kind ? '' : ' (this one has no kind)'}`);
        return;
      }
      // A List (kind: List, or any <Kind>List) holds objects in items.
      if (top.kind === 'List' || (top.kind.endsWith('List') && Array.isArray(js.items))) {
        if (!Array.isArray(js.items)) {
          issues.error(top, ['items'], 'a List holds its objects in items');
          return;
        }
        js.items.forEach((item, j) => {
          if (!isObj(item)) return issues.error(top, ['items', j], 'must be a Kubernetes object');
          const d = make(item, ['items', j]);
          if (!d.kind || !d.apiVersion) return issues.error(d, [], 'a Kubernetes object needs both apiVersion and kind');
          out.push(d);
        });
        return;
      }
      out.push(top);
    });
  }
  return out;
}
