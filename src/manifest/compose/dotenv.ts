/**
 * .env files: the dotenv format Compose reads for a stack's `.env` (the CLI
 * reads it into the interpolation environment) and for a service's
 * `env_file` (container.ts).
 */

import { interpolateString, type Lookup } from '../interpolate.js';

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/**
 * parseDotEnv reads a dotenv file (`KEY=value`, `export KEY=value`, `#`
 * comments, single quotes literal, double quotes with escapes and
 * multi-line values), interpolating unquoted and double-quoted values from
 * keys defined earlier in the file and then from lookup, as Compose does for
 * .env and env_file. A bare `KEY` takes lookup's value or is left out.
 * Throws an Error naming the line for malformed input, because a .env file
 * that is silently half-read hides the mistake.
 */
export function parseDotEnv(text: string, lookup?: Lookup): Record<string, string> {
  const out: Record<string, string> = {};
  const resolve: Lookup = (name) => (Object.prototype.hasOwnProperty.call(out, name) ? out[name] : lookup?.(name));
  const src = text.replace(/\r\n?/g, '\n');
  let i = 0;
  let line = 1;
  const fail = (msg: string): never => {
    throw new Error(`line ${line}: ${msg}`);
  };
  const interpolate = (v: string): string => {
    if (!v.includes('$')) return v;
    const r = interpolateString(v, resolve);
    if (r.errors.length > 0) fail(r.errors[0]!);
    return r.value;
  };
  while (i < src.length) {
    const eol = src.indexOf('\n', i) === -1 ? src.length : src.indexOf('\n', i);
    const raw = src.slice(i, eol);
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) {
      i = eol + 1;
      line++;
      continue;
    }
    const m = /^\s*(?:export\s+)?([^\s=#]+)\s*(=?)/.exec(raw)!;
    const key = m?.[1];
    if (!key || !ENV_KEY.test(key)) fail(`invalid variable name ${JSON.stringify(key ?? trimmed)}`);
    if (m[2] !== '=') {
      if (raw.slice(m[0].length).trim() !== '') fail(`expected "=" after ${key}`);
      const v = lookup?.(key!);
      if (v !== undefined) out[key!] = v;
      i = eol + 1;
      line++;
      continue;
    }
    let j = i + m[0].length;
    while (j < eol && (src[j] === ' ' || src[j] === '\t')) j++;
    const quote = src[j];
    if (quote === "'" || quote === '"') {
      const startLine = line;
      let k = j + 1;
      let value = '';
      for (; k < src.length; k++) {
        const c = src[k]!;
        if (c === '\n') line++;
        if (c === quote) break;
        if (quote === '"' && c === '\\' && k + 1 < src.length) {
          const n = src[++k]!;
          value += n === 'n' ? '\n' : n === 'r' ? '\r' : n === 't' ? '\t' : n === '$' ? '$$' : n;
          continue;
        }
        value += quote === '"' && c === '$' ? '$' : c;
      }
      if (k >= src.length) {
        line = startLine;
        fail(`unterminated ${quote === '"' ? 'double' : 'single'} quote`);
      }
      const restEnd = src.indexOf('\n', k) === -1 ? src.length : src.indexOf('\n', k);
      const rest = src.slice(k + 1, restEnd).trim();
      if (rest !== '' && !rest.startsWith('#')) fail(`unexpected text after the closing quote: ${JSON.stringify(rest)}`);
      out[key!] = quote === '"' ? interpolate(value) : value;
      i = restEnd + 1;
      line++;
      continue;
    }
    let value = src.slice(j, eol);
    const comment = /\s#/.exec(value);
    if (comment) value = value.slice(0, comment.index);
    out[key!] = interpolate(value.trim());
    i = eol + 1;
    line++;
  }
  return out;
}
