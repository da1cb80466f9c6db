/**
 * What every command group of the CLI shares: the global flags, the API
 * client they make, output, and the ls/inspect pair driven by the KINDS table.
 */
import type { Command } from 'commander';
import { ApiClient } from '../api/client.js';
import { tlsTransport, withTransport } from '../api/tls.js';
import type { Column, KindInfo } from '../api/kinds.js';
import { BatonError } from '../base/errors.js';
import { resolveTarget } from './context.js';
import { render, renderOne, type Format } from './output.js';

export interface Globals {
  output: Format;
  server?: string;
  token?: string;
  context?: string;
  ca?: string;
}

/** withEtcdFlags adds the flags that reach etcd (endpoints, TLS files) and name the cluster key. */
export function withEtcdFlags(c: Command, clusterKeyHelp: string): Command {
  return c
    .option('--etcd-endpoints <urls>', 'etcd client URLs, comma-separated (http://127.0.0.1:2379,...); https with --etcd-ca')
    .option('--etcd-ca <file>', "CA certificate of the etcd members' certificates")
    .option('--etcd-cert <file>', 'client certificate for etcd')
    .option('--etcd-key <file>', 'client key for etcd')
    .option('--cluster-key <file>', clusterKeyHelp);
}

/**
 * clientFor: the API client for these target flags (then the environment, then the context), and
 * the resolved target; close ends its connections.
 */
export function clientFor(flags: Pick<Globals, 'server' | 'token' | 'context' | 'ca'>, o: { timeoutMs?: number } = {}): { api: ApiClient; target: ReturnType<typeof resolveTarget>; close: () => Promise<void> } {
  const t = resolveTarget(flags);
  // With the context's CA, trust only the cluster; without one, the system's roots.
  const transport = t.ca ? tlsTransport({ caPem: t.ca }) : undefined;
  // With several servers, a silent one (paused, cut off) is left after 10 s rather than the default 30 s.
  const timeoutMs = o.timeoutMs ?? (t.server.includes(',') ? 10_000 : undefined);
  const api = new ApiClient(withTransport({ server: t.server, token: t.token, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }, transport));
  return { api, target: t, close: async () => void (await transport?.close()) };
}

export function client(cmd: Command): { api: ApiClient; g: Globals } {
  const g = cmd.optsWithGlobals() as Globals;
  return { api: clientFor(g).api, g };
}

/** labelMap reads key=value flags into labels. */
export function labelMap(list: string[], flag: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const l of list) {
    const i = l.indexOf('=');
    if (i <= 0) throw new BatonError('BATON_ERR_BAD_REQUEST', `${flag} ${l}: must look like key=value`);
    labels[l.slice(0, i)] = l.slice(i + 1);
  }
  return labels;
}

export function out(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : s + '\n');
}

/**
 * addKindCommands adds `ls` and `inspect` for a kind, driven by its row in
 * the KINDS table; `columns` may add to the table what other objects say.
 */
export function addKindCommands(group: Command, kind: KindInfo, columns: (api: ApiClient) => Promise<Column<any>[]> = async () => kind.columns): void {
  const noun = kind.kind.toLowerCase();
  group
    .command('ls')
    .description(`list ${kind.plural}`)
    .action(async (_o, cmd: Command) => {
      const { api, g } = client(cmd);
      const r = await api.list<unknown>(kind);
      out(render(g.output, r.items, g.output === 'table' ? await columns(api) : kind.columns));
    });
  group
    .command('inspect <name>')
    .description(`show a ${noun} in full`)
    .action(async (name: string, _o, cmd: Command) => {
      const { api, g } = client(cmd);
      out(renderOne(g.output === 'table' ? 'yaml' : g.output, await api.get(kind, name)));
    });
}
