/**
 * Schema validation: the Compose Specification's JSON schema
 * (compose-spec.json, checked by ajv), its errors turned into one useful
 * message per key path, and the "did you mean" for a likely typo that the
 * x-baton reader uses too.
 */

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { closest, distance } from 'fastest-levenshtein';
import type { PathSegment } from '../interpolate.js';
import composeSpecSchema from './compose-spec.json' with { type: 'json' };
import { isObj, type Obj } from './issues.js';

let composeValidator: ValidateFunction | undefined;

/** validator compiles the Compose Specification schema once per process (compiling costs tens of milliseconds). */
function validator(): ValidateFunction {
  if (!composeValidator) {
    const ajv = new Ajv({ allErrors: true, strict: false, verbose: true, validateSchema: false });
    const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as unknown as (a: Ajv) => Ajv;
    addFormats(ajv);
    const { $schema: _metaSchema, ...schema } = composeSpecSchema as Record<string, unknown>;
    composeValidator = ajv.compile(schema);
  }
  return composeValidator;
}

/** SERVICE_SCHEMA_KEYS are the service keys the Compose Specification defines, so the translator knows which keys it must account for. */
export const SERVICE_SCHEMA_KEYS: readonly string[] = Object.keys(
  ((composeSpecSchema as unknown as { definitions: { service: { properties: Obj } } }).definitions.service.properties),
);

function pointerToSegs(pointer: string, data: unknown): PathSegment[] {
  if (pointer === '') return [];
  const segs: PathSegment[] = [];
  let cur: unknown = data;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      const i = Number(key);
      segs.push(i);
      cur = cur[i];
    } else {
      segs.push(key);
      cur = isObj(cur) ? cur[key] : undefined;
    }
  }
  return segs;
}

const TYPE_WORDS: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'a boolean',
  null: 'null',
};

function typeWords(types: Iterable<string>): string {
  const words = [...new Set([...types].flatMap((t) => t.split(',')))].map((t) => TYPE_WORDS[t] ?? t);
  if (words.length <= 1) return words[0] ?? 'another type';
  return `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
}

/** suggestion names the nearest allowed key when it is close enough to be a likely typo. */
export function suggestion(key: string, allowed: readonly string[]): string {
  const candidates = allowed.filter((k) => !k.startsWith('^'));
  if (candidates.length === 0) return '';
  const best = closest(key, candidates as string[]);
  const limit = Math.max(2, Math.ceil(key.length / 3));
  return distance(key, best) <= limit ? `; did you mean \`${best}\`?` : '';
}

// Lower is more useful; unknown keys and missing keys share a rank so both are shown.
const KEYWORD_RANK: Record<string, number> = { additionalProperties: 0, required: 0, enum: 2, pattern: 3, const: 3, type: 5 };

/**
 * schemaIssues turns ajv's errors into one useful message per path: for a
 * oneOf/anyOf failure it drops the branches whose type did not even match
 * (when another branch got further), and folds "all branches had the wrong
 * type" into one "must be a string or a list".
 */
function schemaIssues(errors: readonly ErrorObject[], data: unknown): { segs: PathSegment[]; message: string }[] {
  const isBranching = (e: ErrorObject) => e.keyword === 'oneOf' || e.keyword === 'anyOf';
  const byPath = new Map<string, ErrorObject[]>();
  for (const e of errors) {
    const list = byPath.get(e.instancePath) ?? [];
    list.push(e);
    byPath.set(e.instancePath, list);
  }
  const out: { segs: PathSegment[]; message: string }[] = [];
  for (const [ptr, errs] of byPath) {
    let keep = errs.filter((e) => !isBranching(e) && e.keyword !== 'if' && e.keyword !== 'not');
    const branching = errs.find(isBranching);
    let merged: string | undefined;
    if (branching) {
      const deeper = errors.some((e) => e.instancePath.startsWith(`${ptr}/`));
      const nonType = keep.filter((e) => e.keyword !== 'type');
      if (nonType.length > 0 || deeper) keep = nonType;
      else if (keep.length > 0) {
        merged = `must be ${typeWords(keep.map((e) => String((e.params as { type: unknown }).type)))}`;
        keep = [];
      } else merged = 'matches more than one of the allowed forms';
    }
    const segs = pointerToSegs(ptr, data);
    if (merged) {
      out.push({ segs, message: merged });
      continue;
    }
    if (keep.length === 0) continue;
    const best = Math.min(...keep.map((e) => KEYWORD_RANK[e.keyword] ?? 4));
    for (const e of keep.filter((x) => (KEYWORD_RANK[x.keyword] ?? 4) === best)) out.push(...describe(e, segs));
  }
  return out;
}

function describe(e: ErrorObject, segs: PathSegment[]): { segs: PathSegment[]; message: string }[] {
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const parent = (e.parentSchema ?? {}) as { properties?: Obj; patternProperties?: Obj };
      const allowed = Object.keys(parent.properties ?? {});
      if (allowed.length === 0) {
        const patterns = Object.keys(parent.patternProperties ?? {}).filter((p) => p !== '^x-');
        return [{ segs: [...segs, key], message: `invalid name \`${key}\`${patterns.length ? `: must match ${patterns.join(' or ')}` : ''}` }];
      }
      return [{ segs: [...segs, key], message: `unknown key \`${key}\`${suggestion(key, allowed)}` }];
    }
    case 'required':
      return [{ segs, message: `\`${String(params.missingProperty)}\` is required` }];
    case 'type':
      return [{ segs, message: `must be ${typeWords([String(params.type)])}` }];
    case 'enum':
      return [{ segs, message: `must be one of: ${(params.allowedValues as unknown[]).map(String).join(', ')}` }];
    case 'pattern':
      return [{ segs, message: `must match ${String(params.pattern)}` }];
    case 'uniqueItems':
      return [{ segs, message: `must not repeat items (items ${String(params.j)} and ${String(params.i)} are the same)` }];
    default:
      return [{ segs, message: e.message ?? `fails the ${e.keyword} rule` }];
  }
}

/**
 * validateSchema runs the Compose Specification schema. ajv's uniqueItems
 * check calls an item's own `toString`/`valueOf`, so an object holding such
 * a key makes it throw; those keys are then reported instead of crashing.
 */
export function validateSchema(data: unknown): { segs: PathSegment[]; message: string }[] {
  const validate = validator();
  try {
    return validate(data) ? [] : schemaIssues(validate.errors ?? [], data);
  } catch (e) {
    const found: { segs: PathSegment[]; message: string }[] = [];
    const walk = (v: unknown, segs: PathSegment[], inArray: boolean): void => {
      if (Array.isArray(v)) v.forEach((item, i) => walk(item, [...segs, i], true));
      else if (isObj(v)) {
        for (const [k, item] of Object.entries(v)) {
          if (inArray && (k === 'toString' || k === 'valueOf')) found.push({ segs: [...segs, k], message: `unknown key \`${k}\`` });
          walk(item, [...segs, k], false);
        }
      }
    };
    walk(data, [], false);
    return found.length > 0 ? found : [{ segs: [], message: `the schema check failed: ${e instanceof Error ? e.message : String(e)}` }];
  }
}
