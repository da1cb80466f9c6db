/**
 * Client contexts, the way kubectl uses its kubeconfig: named (server, token,
 * cluster CA) entries in $BATON_HOME/contexts.yaml (default ~/.baton), one of them current,
 * chosen per call with --context or BATON_CONTEXT.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { yaml } from './yaml.js';
import { BatonError } from '../base/errors.js';

export interface ContextEntry {
  server: string;
  token: string;
  /** PEM of the cluster CA (clustering issue). */
  ca?: string;
  /** The data directory of the `baton up` that wrote it: `baton down` stops that one. */
  dataDir?: string;
}

export interface ContextFile {
  current?: string;
  contexts: Record<string, ContextEntry>;
}

export function batonHome(): string {
  return process.env.BATON_HOME || join(homedir(), '.baton');
}

export function contextsPath(): string {
  return join(batonHome(), 'contexts.yaml');
}

export function readContexts(): ContextFile {
  const p = contextsPath();
  if (!existsSync(p)) return { contexts: {} };
  try {
    const v = yaml().parse(readFileSync(p, 'utf8')) ?? {};
    return { current: v.current, contexts: v.contexts ?? {} };
  } catch (e) {
    throw new BatonError('BATON_ERR_BAD_REQUEST', `${p} is not valid YAML: ${(e as Error).message}`);
  }
}

export function writeContexts(f: ContextFile): void {
  const p = contextsPath();
  mkdirSync(dirname(p), { recursive: true, mode: 0o700 });
  const tmp = `${p}.${process.pid}.tmp`;
  writeFileSync(tmp, yaml().stringify(f), { mode: 0o600 });
  renameSync(tmp, p);
}

export function saveContext(name: string, entry: ContextEntry, makeCurrent: boolean): void {
  const f = readContexts();
  f.contexts[name] = entry;
  if (makeCurrent || !f.current) f.current = name;
  writeContexts(f);
}

/** resolveTarget picks server, token and CA: flags first, then environment, then the chosen context. */
export function resolveTarget(flags: { server?: string; token?: string; context?: string; ca?: string }): { server: string; token: string; ca?: string } {
  const f = readContexts();
  const name = flags.context || process.env.BATON_CONTEXT || f.current;
  const ctx = name ? f.contexts[name] : undefined;
  if ((flags.context || process.env.BATON_CONTEXT) && !ctx) {
    throw new BatonError('BATON_ERR_NOT_FOUND', `context "${name}" not found in ${contextsPath()}; see baton context ls`);
  }
  const server = flags.server ?? process.env.BATON_SERVER ?? ctx?.server;
  const token = flags.token ?? process.env.BATON_TOKEN ?? ctx?.token;
  if (!server) throw new BatonError('BATON_ERR_BAD_REQUEST', 'no server: run `baton up`, or pass --server and --token, or pick a context (baton context ls)');
  const caFile = flags.ca ?? process.env.BATON_CA;
  let ca = ctx?.ca;
  if (caFile) {
    if (!existsSync(caFile)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--ca ${caFile}: no such file`);
    ca = readFileSync(caFile, 'utf8');
  }
  return { server, token: token ?? '', ca };
}
