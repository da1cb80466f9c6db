/**
 * The bounds a manifest's YAML is read within, the same for Compose files
 * and Kubernetes manifests, so a hostile file is refused with a clear error
 * in bounded memory and time instead of exhausting the reader:
 *
 * - its size: at most MAX_MANIFEST_BYTES (the API takes no larger request);
 * - its nesting: at most MAX_YAML_DEPTH levels of mappings and sequences
 *   (real files stay under 20). Flow collections (`[[[[...`) are counted on
 *   the text before the recursive parser sees it; block nesting, after it
 *   (a file must be megabytes long to nest deep enough in blocks to hurt the
 *   parser, and that is caught too);
 * - its aliases: an alias expands at most MAX_ALIAS_COUNT times in all
 *   (yaml's maxAliasCount), which stops the "billion laughs".
 */

export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
export const MAX_YAML_DEPTH = 64;
export const MAX_ALIAS_COUNT = 1000;

/** textProblem: the size, or the flow nesting, a file's text goes past (and the line), before it is parsed. */
export function textProblem(text: string): { message: string; line?: number } | undefined {
  if (Buffer.byteLength(text, 'utf8') > MAX_MANIFEST_BYTES) return { message: `the file is larger than ${MAX_MANIFEST_BYTES / 2 ** 20} MiB` };
  let depth = 0;
  let line = 1;
  let quote: string | undefined;
  let comment = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
      comment = false;
      continue;
    }
    if (comment) continue;
    if (quote) {
      if (c === quote && !(quote === '"' && text[i - 1] === '\\')) quote = undefined;
      continue;
    }
    if (c === '"' || (c === "'" && /[\s[{,:]/.test(text[i - 1] ?? ' '))) quote = c;
    else if (c === '#' && /\s/.test(text[i - 1] ?? ' ')) comment = true;
    else if (c === '[' || c === '{') {
      if (++depth > MAX_YAML_DEPTH) return { message: nestingMessage(), line };
    } else if ((c === ']' || c === '}') && depth > 0) depth--;
  }
  return undefined;
}

/** valueTooDeep: whether a parsed value nests past MAX_YAML_DEPTH (walked without recursion). */
export function valueTooDeep(v: unknown): boolean {
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    if (d >= MAX_YAML_DEPTH) return true;
    for (const y of Array.isArray(x) ? x : Object.values(x)) if (y !== null && typeof y === 'object') stack.push([y, d + 1]);
  }
  return false;
}

export function nestingMessage(): string {
  return `the file nests mappings and sequences deeper than ${MAX_YAML_DEPTH} levels`;
}

/** parserProblem: what to say when the YAML parser itself gave up (its stack ran out on a deep file). */
export function parserMessage(message: string): string {
  if (/call stack/i.test(message)) return nestingMessage();
  if (/alias count/i.test(message)) return `its aliases expand past ${MAX_ALIAS_COUNT} nodes (an alias bomb: ${message})`;
  return message;
}
