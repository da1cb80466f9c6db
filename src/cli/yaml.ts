/**
 * The yaml library, loaded on first use. Most CLI verbs read or print YAML
 * (contexts.yaml, `-o yaml`), but the long-running `baton agent` and
 * `baton server` never do, and loading it at start cost each of them about
 * 3.5 MiB of memory of its own for nothing (bench:footprint).
 */
import { createRequire } from 'node:module';

type Yaml = typeof import('yaml');

let loaded: Yaml | undefined;

/** yaml: the library (parse, stringify), required the first time it is asked for. */
export function yaml(): Yaml {
  return (loaded ??= createRequire(import.meta.url)('yaml') as Yaml);
}
