/**
 * Shell completion. `baton completion bash|zsh` prints a script that the
 * shell sources; on every Tab the script runs `baton __complete WORDS…`
 * (the words typed after `baton`, the last one being the word under the
 * cursor, maybe empty), which answers one candidate per line.
 *
 * The candidates come from the commander program itself (commands, their
 * flags, a flag's choices), so they never drift from what the CLI accepts,
 * and for an argument that names an object, from the cluster the command
 * would talk to (the same --server/--context/--token words, or the current
 * context): services, tasks, nodes, stacks, secrets, configs, tokens. The
 * cluster is asked with a short deadline and any failure answers nothing:
 * a completion never prints an error into the command line being typed.
 * Where a file is wanted (`apply -f`, `secret create NAME FILE`), the answer
 * is the one line FILES, and the script lets the shell complete paths
 * (cobra's ShellCompDirectiveDefault does the same).
 */
import type { Command, Option } from 'commander';
import { ApiClient } from '../api/client.js';
import { configKind, nodeKind, secretKind, serviceKind, taskKind } from '../api/kinds.js';
import type { Service, Task, Node } from '../api/types.js';
import { readContexts } from './context.js';
import { clientFor } from './common.js';
import { KUBECTL_KINDS } from './get.js';

/** The one-line answer that asks the shell to complete file names. */
export const FILES = '__files__';
/** How long a completion waits for the cluster. */
const CLUSTER_DEADLINE_MS = 2000;

type Source = 'services' | 'tasks' | 'nodes' | 'stacks' | 'secrets' | 'configs' | 'tokens' | 'registries' | 'contexts' | 'files' | 'kinds' | 'roles';

/**
 * ARGUMENTS: what each command's positional arguments name, by command path
 * and argument index (the last entry repeats for a variadic argument).
 * A command missing here completes nothing for its arguments.
 */
const ARGUMENTS: Record<string, Source[][]> = {
  'stack rm': [['stacks']],
  'secret inspect': [['secrets']],
  'secret update': [['secrets'], ['files']],
  'secret rm': [['secrets']],
  'secret create': [[], ['files']],
  'config inspect': [['configs']],
  'config update': [['configs'], ['files']],
  'config rm': [['configs']],
  'config create': [[], ['files']],
  get: [['kinds']],
  'service inspect': [['services']],
  'service ps': [['services']],
  'service scale': [['services']],
  'service history': [['services']],
  'service rollback': [['services']],
  'service restart': [['services']],
  'service pause': [['services']],
  'service resume': [['services']],
  'service promote': [['services']],
  'service rollout-status': [['services']],
  'service rm': [['services']],
  'service logs': [['services', 'tasks']],
  logs: [['services', 'tasks']],
  'job ps': [['services']],
  'job logs': [['services', 'tasks']],
  'node inspect': [['nodes']],
  'node update': [['nodes']],
  'node taint': [['nodes'], []],
  'node rm': [['nodes']],
  explain: [['tasks', 'services']],
  'join-token': [['roles']],
  'token revoke': [['tokens']],
  'quota set': [['stacks']],
  'quota rm': [['stacks']],
  'endpoints inspect': [['services']],
  'snapshot save': [['files']],
  'snapshot restore': [['files']],
  'context use': [['contexts']],
  exec: [['tasks', 'services'], []],
  'registry logout': [['registries']],
};

/** The global flags that choose the cluster, as typed on the line. */
interface Target {
  server?: string;
  token?: string;
  context?: string;
  ca?: string;
}

/** visible: a command's subcommands a user may type (not this hidden one, not commander's implicit help). */
function subcommands(cmd: Command): Command[] {
  return cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
}

/** optionsOf: the flags a command accepts, its own and every parent's (commander takes a parent's anywhere). */
function optionsOf(cmd: Command): Option[] {
  const out: Option[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) out.push(...c.options.filter((o) => !o.hidden));
  return out;
}

function findOption(cmd: Command, flag: string): Option | undefined {
  return optionsOf(cmd).find((o) => o.long === flag || o.short === flag);
}

function takesValue(o: Option): boolean {
  return o.required || o.optional;
}

/** pathOf: a command's words after `baton` (`service ps`). */
function pathOf(cmd: Command): string {
  const words: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) words.unshift(c.name());
  return words.join(' ');
}

/** What the words before the cursor leave to complete. */
type Want = { kind: 'command'; cmd: Command } | { kind: 'value'; cmd: Command; option: Option } | { kind: 'argument'; cmd: Command; index: number };

/** parseLine reads the words before the cursor as commander would: commands, flags (and their values), arguments. */
function parseLine(program: Command, done: string[]): { want: Want; target: Target } {
  let cmd = program;
  let args = 0;
  const target: Target = {};
  for (let i = 0; i < done.length; i++) {
    const w = done[i]!;
    if (w === '--') {
      args = Infinity;
      continue;
    }
    if (w.startsWith('-') && w.length > 1 && args !== Infinity) {
      const eq = w.indexOf('=');
      const flag = eq > 0 ? w.slice(0, eq) : w;
      const o = findOption(cmd, flag);
      if (!o || !takesValue(o)) continue;
      let value: string | undefined;
      if (eq > 0) value = w.slice(eq + 1);
      else if (i + 1 < done.length) value = done[++i];
      else return { want: { kind: 'value', cmd, option: o }, target };
      const key = o.attributeName() as keyof Target;
      if (value !== undefined && (key === 'server' || key === 'token' || key === 'context' || key === 'ca')) target[key] = value;
      continue;
    }
    const sub = args === 0 ? subcommands(cmd).find((c) => c.name() === w || c.aliases().includes(w)) : undefined;
    if (sub) cmd = sub;
    else args++;
  }
  if (subcommands(cmd).length && args === 0) return { want: { kind: 'command', cmd }, target };
  return { want: { kind: 'argument', cmd, index: args }, target };
}

/** clusterClient: the client the completed command would use, with a short deadline; undefined when there is no cluster to ask. */
function clusterClient(target: Target): ApiClient | undefined {
  try {
    return clientFor(target, { timeoutMs: CLUSTER_DEADLINE_MS }).api;
  } catch {
    return undefined;
  }
}

async function fromSource(source: Source, target: Target): Promise<string[]> {
  switch (source) {
    case 'files':
      return [FILES];
    case 'kinds':
      return [...new Set(Object.keys(KUBECTL_KINDS))];
    case 'roles':
      return ['worker'];
    case 'contexts':
      return Object.keys(readContexts().contexts ?? {});
  }
  const api = clusterClient(target);
  if (!api) return [];
  switch (source) {
    case 'services':
      return (await api.list<Service>(serviceKind)).items.map((s) => s.metadata.name);
    case 'tasks':
      return (await api.list<Task>(taskKind, { fieldSelector: { 'status.state': 'running' } })).items.map((t) => t.metadata.name);
    case 'nodes':
      return (await api.list<Node>(nodeKind)).items.map((n) => n.metadata.name);
    case 'stacks':
      return (await api.stacks()).items.map((s) => s.name);
    case 'secrets':
      return (await api.list<{ metadata: { name: string } }>(secretKind)).items.map((s) => s.metadata.name);
    case 'configs':
      return (await api.list<{ metadata: { name: string } }>(configKind)).items.map((s) => s.metadata.name);
    case 'tokens':
      return (await api.call<{ items: { name?: string }[] }>('GET', '/api/v1/tokens')).items.flatMap((t) => (t.name ? [t.name] : []));
    case 'registries':
      return (await api.call<{ items: { server: string }[] }>('GET', '/api/v1/registries')).items.map((l) => l.server);
  }
}

/** valueCandidates: what may follow a flag that takes a value. */
async function valueCandidates(o: Option, target: Target): Promise<string[]> {
  if (o.argChoices?.length) return o.argChoices;
  const name = o.attributeName();
  if (name === 'context') return fromSource('contexts', target);
  if (name === 'stack' || name === 'namespace') return fromSource('stacks', target);
  if (name === 'node') return fromSource('nodes', target);
  if (name === 'service') return fromSource('services', target);
  // A flag whose value is a path (<file>, <dir>, <path>): the shell completes it.
  if (/<(file|dir|path)[^>]*>|\[(file|dir|path)[^\]]*\]/.test(o.flags)) return [FILES];
  return [];
}

/**
 * complete answers the candidates for the last of `words` (the word under
 * the cursor), given the words before it, filtered by what is typed of it.
 */
export async function complete(program: Command, words: string[]): Promise<string[]> {
  const current = words.at(-1) ?? '';
  const { want, target } = parseLine(program, words.slice(0, -1));
  let all: string[];
  if (want.kind === 'value') all = await valueCandidates(want.option, target);
  else if (current.startsWith('-')) {
    all = [...optionsOf(want.cmd).flatMap((o) => (o.long ? [o.long] : o.short ? [o.short] : [])), '--help'];
  } else if (want.kind === 'command') all = subcommands(want.cmd).map((c) => c.name());
  else {
    const spec = ARGUMENTS[pathOf(want.cmd)];
    const sources = spec ? (spec[Math.min(want.index, spec.length - 1)] ?? []) : [];
    // A variadic argument repeats its last entry; a fixed one past its count takes nothing.
    const variadic = want.cmd.registeredArguments.at(-1)?.variadic;
    const used = spec && want.index >= spec.length && !variadic ? [] : sources;
    all = (await Promise.all(used.map((s) => fromSource(s, target).catch(() => [])))).flat();
    const declared = want.cmd.registeredArguments[Math.min(want.index, want.cmd.registeredArguments.length - 1)];
    if (declared?.argChoices && (want.index < want.cmd.registeredArguments.length || declared.variadic)) all.push(...declared.argChoices);
  }
  if (all.includes(FILES)) return [FILES];
  return [...new Set(all)].filter((c) => c.startsWith(current)).sort();
}

/** The bash script: completes with what `baton __complete` answers, or file names when it answers FILES. */
const BASH = `# baton completion for bash: source <(baton completion bash)
_baton_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}"
  local IFS=$'\\n'
  local out
  out=$("\${COMP_WORDS[0]}" __complete "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return 0
  if [[ "$out" == "${FILES}" ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
    compopt -o filenames 2>/dev/null
  else
    COMPREPLY=($out)
  fi
}
complete -F _baton_complete baton
`;

/** The zsh script (a compdef function): the same protocol, file names through _files. */
const ZSH = `#compdef baton
# baton completion for zsh: source <(baton completion zsh)   (after compinit)
_baton() {
  local -a out
  out=("\${(@f)$("\${words[1]}" __complete "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if [[ "\${out[1]}" == "${FILES}" ]]; then
    _files
  elif (( \${#out} )) && [[ -n "\${out[1]}" ]]; then
    compadd -Q -- "\${out[@]}"
  fi
}
if (( $+functions[compdef] )); then compdef _baton baton; fi
`;

export function completionScript(shell: 'bash' | 'zsh'): string {
  return shell === 'bash' ? BASH : ZSH;
}
