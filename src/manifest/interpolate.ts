/**
 * Compose variable interpolation, applied to string values after YAML parsing
 * (never to keys, as Compose does): `$VAR`, `${VAR}`, `${VAR:-default}`,
 * `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`,
 * `${VAR+alt}`, and `$$` for a literal `$`. Defaults and alternatives may
 * themselves hold `${...}`. A `$` followed by anything else stays literal.
 */

/** PathSegment is one step of a key path: a map key or a sequence index. */
export type PathSegment = string | number;

/** InterpolationIssue is an error or warning at a key path, so the caller can attach a YAML line to it. */
export interface InterpolationIssue {
  path: PathSegment[];
  message: string;
}

/** Lookup returns a variable's value, or undefined when it is unset (which differs from empty for `-`, `?` and `+`). */
export type Lookup = (name: string) => string | undefined;

/** StringInterpolation is the result for one string: its value plus every problem found, so a file reports all of them at once. */
export interface StringInterpolation {
  value: string;
  /** Messages for `${VAR:?msg}` failures and malformed templates. */
  errors: string[];
  /** Names of variables that were unset and had no default (substituted with ""). */
  unset: string[];
}

const NAME_START = /[A-Za-z_]/;
const NAME_CHAR = /[A-Za-z0-9_]/;

/**
 * interpolateString expands one string the way Compose does, collecting
 * errors rather than throwing so that readCompose can report every bad value
 * with its path in one pass.
 */
export function interpolateString(text: string, lookup: Lookup): StringInterpolation {
  const out: StringInterpolation = { value: '', errors: [], unset: [] };
  out.value = expand(text, lookup, out);
  return out;
}

function expand(text: string, lookup: Lookup, acc: StringInterpolation): string {
  let result = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c !== '$') {
      result += c;
      i++;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      result += '$';
      i += 2;
      continue;
    }
    if (next !== undefined && NAME_START.test(next)) {
      let j = i + 1;
      while (j < text.length && NAME_CHAR.test(text[j]!)) j++;
      const name = text.slice(i + 1, j);
      const v = lookup(name);
      if (v === undefined) acc.unset.push(name);
      result += v ?? '';
      i = j;
      continue;
    }
    if (next === '{') {
      const end = findClose(text, i + 2);
      if (end < 0) {
        acc.errors.push(`invalid interpolation format: "${text.slice(i)}" has no closing "}"`);
        return result + text.slice(i);
      }
      result += braced(text.slice(i + 2, end), lookup, acc);
      i = end + 1;
      continue;
    }
    // A lone "$" (end of string, "$1", "$ ") is literal, as in Compose.
    result += '$';
    i++;
  }
  return result;
}

/** findClose returns the index of the "}" that closes a "${" whose body starts at from, honouring nested "${...}". */
function findClose(text: string, from: number): number {
  let depth = 0;
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (c === '$' && text[i + 1] === '$') {
      i++;
      continue;
    }
    if (c === '$' && text[i + 1] === '{') {
      depth++;
      i++;
      continue;
    }
    if (c === '}') {
      if (depth === 0) return i;
      depth--;
    }
  }
  return -1;
}

function braced(body: string, lookup: Lookup, acc: StringInterpolation): string {
  let j = 0;
  if (!(j < body.length && NAME_START.test(body[j]!))) {
    acc.errors.push(`invalid interpolation format: "\${${body}}" (expected a variable name)`);
    return '';
  }
  while (j < body.length && NAME_CHAR.test(body[j]!)) j++;
  const name = body.slice(0, j);
  const rest = body.slice(j);
  const value = lookup(name);
  if (rest === '') {
    if (value === undefined) acc.unset.push(name);
    return value ?? '';
  }
  const m = /^(:?)([-?+])/.exec(rest);
  if (!m) {
    acc.errors.push(`invalid interpolation format: "\${${body}}" (expected "}", ":-", "-", ":?", "?", ":+" or "+" after ${name})`);
    return '';
  }
  const colon = m[1] === ':';
  const op = m[2];
  const word = rest.slice(m[0].length);
  // With a colon, an empty value counts as missing; without, only unset does.
  const missing = value === undefined || (colon && value === '');
  switch (op) {
    case '-':
      return missing ? expand(word, lookup, acc) : value!;
    case '+':
      return missing ? '' : expand(word, lookup, acc);
    default: {
      if (!missing) return value!;
      const reason = expand(word, lookup, acc);
      acc.errors.push(reason ? `required variable ${name} is missing a value: ${reason}` : `required variable ${name} is missing a value`);
      return '';
    }
  }
}

/** TreeInterpolation is an interpolated copy of a parsed document plus its problems, each with the key path of the value. */
export interface TreeInterpolation<T> {
  value: T;
  errors: InterpolationIssue[];
  warnings: InterpolationIssue[];
}

/**
 * interpolateTree interpolates every string value of a parsed YAML document
 * (keys are left alone, as Compose does) and returns a copy, so the caller's
 * tree stays untouched. Each unset variable becomes one warning at its first
 * use, as Compose prints them; `${VAR:?}` failures and malformed templates
 * become errors at every path where they occur.
 */
export function interpolateTree<T>(value: T, lookup: Lookup, path: PathSegment[] = []): TreeInterpolation<T> {
  const errors: InterpolationIssue[] = [];
  const unset = new Map<string, { path: PathSegment[]; count: number }>();
  const walk = (v: unknown, p: PathSegment[]): unknown => {
    if (typeof v === 'string') {
      if (!v.includes('$')) return v;
      const r = interpolateString(v, lookup);
      for (const e of r.errors) errors.push({ path: p, message: e });
      for (const name of r.unset) {
        const seen = unset.get(name);
        if (seen) seen.count++;
        else unset.set(name, { path: p, count: 1 });
      }
      return r.value;
    }
    if (Array.isArray(v)) return v.map((item, i) => walk(item, [...p, i]));
    if (v !== null && typeof v === 'object') {
      const copy: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v as Record<string, unknown>)) {
        // defineProperty keeps a "__proto__" key an ordinary key instead of replacing the copy's prototype.
        Object.defineProperty(copy, k, { value: walk(item, [...p, k]), enumerable: true, writable: true, configurable: true });
      }
      return copy;
    }
    return v;
  };
  const result = walk(value, path) as T;
  // One warning per variable (at its first use), as Compose prints one line per variable.
  const warnings: InterpolationIssue[] = [...unset].map(([name, { path: p, count }]) => ({
    path: p,
    message: `variable "${name}" is not set; substituting an empty string${count > 1 ? ` (here and in ${count - 1} more place${count > 2 ? 's' : ''})` : ''}`,
  }));
  return { value: result, errors, warnings };
}
