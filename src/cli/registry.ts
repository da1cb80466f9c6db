/**
 * `baton registry login|ls|logout`: logins to private registries, kept by
 * the cluster as secrets (api/registries.ts). The password comes from
 * standard input (--password-stdin) or -p, as with `docker login`; the
 * server tries it against the registry before keeping it.
 */
import type { Command } from 'commander';
import { BatonError } from '../base/errors.js';
import { renderOne, table } from './output.js';
import { client, out } from './common.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export function registerRegistryCommands(program: Command): void {
  const reg = program.command('registry').description('log in to private registries: services pull with these logins (x-baton.pull_secret, apply --with-registry-auth)');
  reg
    .command('login <server>')
    .description('keep a login to a registry (host[:port]); the registry is asked first, so a wrong password is said now')
    .requiredOption('-u, --username <user>', 'the user name')
    .option('-p, --password <password>', 'the password (visible to other users of this machine: prefer --password-stdin)')
    .option('--password-stdin', 'read the password from standard input')
    .action(async (server: string, o: { username: string; password?: string; passwordStdin?: boolean }, cmd: Command) => {
      if (o.password !== undefined && o.passwordStdin) throw new BatonError('BATON_ERR_BAD_REQUEST', '--password and --password-stdin are exclusive');
      const password = o.passwordStdin ? await readStdin() : o.password;
      if (!password) throw new BatonError('BATON_ERR_BAD_REQUEST', 'give the password with --password-stdin (or -p)');
      const { api, g } = client(cmd);
      const r = await api.call<{ server: string; secret: string }>('POST', '/api/v1/registries', { serveraddress: server, username: o.username, password });
      if (g.output !== 'table') return out(renderOne(g.output, r));
      out(`logged in to ${r.server} (kept as secret ${r.secret}); a service pulls with it through x-baton.pull_secret: ${r.secret}, or baton apply --with-registry-auth`);
    });
  reg
    .command('ls')
    .description('the registries this cluster is logged in to (never the passwords)')
    .action(async (_o, cmd: Command) => {
      const { api, g } = client(cmd);
      const r = await api.call<{ items: { server: string; secret: string; updatedAt: string }[] }>('GET', '/api/v1/registries');
      if (g.output !== 'table') return out(renderOne(g.output, r.items));
      out(table(['SERVER', 'SECRET', 'SINCE'], r.items.map((l) => [l.server, l.secret, l.updatedAt])));
    });
  reg
    .command('logout <server>')
    .description("forget a registry's login (refused while a service pulls with it)")
    .action(async (server: string, _o, cmd: Command) => {
      const { api } = client(cmd);
      await api.call('DELETE', `/api/v1/registries/${encodeURIComponent(server)}`);
      out(`logged out of ${server}`);
    });
}
