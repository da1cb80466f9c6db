/**
 * Who may do what, and what they did: `baton token create|ls|revoke`
 * (API tokens with a role: admin, deployer in its stacks, viewer) and
 * `baton audit` (every request that asked to change something), and
 * `baton quota set|ls|rm` (what a stack's services may ask for together).
 */
import { Command, Option } from 'commander';
import { BatonError } from '../base/errors.js';
import { sleep } from '../base/clock.js';
import { parseBytes, parseDurationMs } from '../manifest/units.js';
import { bytes } from '../api/kinds.js';
import type { QuotaView } from '../api/quotas.js';
import { client, out } from './common.js';
import { renderOne, table } from './output.js';

export function registerAccessCommands(program: Command): void {
  // Tokens with roles: who may do what (admin, deployer in its stacks, viewer).
  const tokenCmd = program.command('token').description('API tokens with roles: admin (everything), deployer (apply, scale, roll out, logs in its stacks; reads the rest), viewer (reads)');
  tokenCmd
    .command('create <name>')
    .description('make a token and print it (the only time it is shown)')
    .addOption(new Option('--role <role>', 'what it may do').choices(['admin', 'deployer', 'viewer']).makeOptionMandatory())
    .option('--stacks <a,b>', 'the stacks a deployer acts in (comma-separated)')
    .option('--ttl <duration>', 'how long it is valid (e.g. 30d, 12h); default: until revoked')
    .option('--description <text>', 'what it is for')
    .option('-q, --quiet', 'print only the token')
    .action(async (name: string, o, cmd: Command) => {
      const { api, g } = client(cmd);
      let ttlMs: number | undefined;
      if (o.ttl !== undefined) {
        // Days as well as Go's units (a token's life is counted in days).
        const days = /^(\d+)d$/.exec(String(o.ttl));
        const r = days ? { ok: true as const, value: Number(days[1]) * 86_400_000 } : parseDurationMs(String(o.ttl), '--ttl');
        if (!r.ok || !(r.value > 0)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--ttl must be a duration such as 30d or 12h, got "${o.ttl}"`);
        ttlMs = r.value;
      }
      const stacks = o.stacks === undefined ? undefined : String(o.stacks).split(',').map((x) => x.trim()).filter(Boolean);
      const r = await api.call<{ name: string; role: string; stacks?: string[]; expiresAt?: string; token: string }>('POST', '/api/v1/tokens', { name, role: o.role, ...(stacks ? { stacks } : {}), ...(ttlMs !== undefined ? { ttlMs } : {}), ...(o.description ? { description: String(o.description) } : {}) });
      if (o.quiet) return out(r.token);
      if (g.output !== 'table') return out(renderOne(g.output, r));
      out(`token ${r.name}: ${r.role}${r.stacks ? ` in ${r.stacks.join(', ')}` : ''}${r.expiresAt ? `, until ${r.expiresAt}` : ''}\n\n    ${r.token}\n\nIt is shown only now. Use it with --token, BATON_TOKEN, or a context (baton context add NAME --server URL --token TOKEN).`);
    });
  tokenCmd
    .command('ls')
    .description('list the tokens (never their secrets)')
    .action(async (_o, cmd: Command) => {
      const { api, g } = client(cmd);
      const r = await api.call<{ items: { name?: string; role: string; stacks?: string[]; expiresAt?: string; createdAt: string; description: string }[] }>('GET', '/api/v1/tokens');
      if (g.output !== 'table') return out(renderOne(g.output, r.items));
      out(table(['NAME', 'ROLE', 'STACKS', 'EXPIRES', 'CREATED', 'DESCRIPTION'], r.items.map((t) => [t.name ?? '-', t.role, t.stacks?.join(',') ?? '*', t.expiresAt ?? 'never', t.createdAt, t.description])));
    });
  tokenCmd
    .command('revoke <name>')
    .description('revoke a token: refused at once by the server that answers, by every server within 5 s')
    .action(async (name: string, _o, cmd: Command) => {
      const { api } = client(cmd);
      await api.call('DELETE', `/api/v1/tokens/${encodeURIComponent(name)}`);
      out(`token ${name} revoked`);
    });

  program
    .command('audit')
    .description('the audit log: every request that asked to change something, by a token or by no one (who, role, route, object, result, address, time)')
    .option('-f, --follow', 'keep printing new entries')
    .option('--user <name>', "only this token's (its name, or token <id>)")
    .option('--since <when>', 'only entries since a duration ago (10m, 2h) or a time (RFC 3339)')
    .option('--limit <n>', 'the newest N entries', '100')
    .action(async (o, cmd: Command) => {
      const { api, g } = client(cmd);
      if (!/^\d+$/.test(String(o.limit)) || Number(o.limit) < 1) throw new BatonError('BATON_ERR_BAD_REQUEST', `--limit must be a number of entries, got "${o.limit}"`);
      type Entry = { id: string; time: string; user: string; role: string; method: string; route: string; object: string; status: number; error?: string; address: string };
      const fetchSince = async (since: string | undefined, limit: number) => {
        const q = new URLSearchParams({ limit: String(limit), ...(o.user ? { user: String(o.user) } : {}), ...(since ? { since } : {}) });
        return (await api.call<{ items: Entry[] }>('GET', `/api/v1/audit?${q}`)).items;
      };
      const row = (e: Entry) => [e.time, e.user, e.role, e.method, e.route, e.object || '-', `${e.status}${e.error ? ` ${e.error}` : ''}`, e.address];
      const headers = ['TIME', 'USER', 'ROLE', 'METHOD', 'ROUTE', 'OBJECT', 'RESULT', 'ADDRESS'];
      let items = await fetchSince(o.since, Number(o.limit));
      if (!o.follow) return out(g.output === 'table' ? table(headers, items.map(row)) : renderOne(g.output, items));
      out(table(headers, items.map(row)));
      const seen = new Set(items.map((e) => e.id));
      let last = items.at(-1)?.time ?? new Date().toISOString();
      for (;;) {
        await sleep(1000);
        items = (await fetchSince(last, 10_000)).filter((e) => !seen.has(e.id));
        for (const e of items) {
          seen.add(e.id);
          out(row(e).join('   '));
          last = e.time;
        }
      }
    });

  registerQuotaCommands(program);
}

function registerQuotaCommands(program: Command): void {
  const quotaCmd = program.command('quota').description("stacks' quotas: the most tasks, CPUs and memory a stack's services may ask for together (Kubernetes' ResourceQuota)");
  quotaCmd
    .command('set <stack>')
    .description('set a stack\'s quota (replacing its limits): apply, scale and the autoscaler stay within it')
    .option('--cpus <n>', 'CPUs its tasks may reserve in all (e.g. 4, 0.5)')
    .option('--memory <size>', 'memory its tasks may reserve in all (e.g. 8GiB, 512m)')
    .option('--tasks <n>', 'tasks it may run at once')
    .action(async (stack: string, o, cmd: Command) => {
      const { api, g } = client(cmd);
      const hard: { cpus?: number; memoryBytes?: number; tasks?: number } = {};
      if (o.cpus !== undefined) {
        if (!/^\d+(\.\d{1,3})?$/.test(String(o.cpus))) throw new BatonError('BATON_ERR_BAD_REQUEST', `--cpus must be a number of CPUs with at most three decimals, got "${o.cpus}"`);
        hard.cpus = Number(o.cpus);
      }
      if (o.memory !== undefined) {
        const r = parseBytes(String(o.memory), '--memory');
        if (!r.ok) throw new BatonError('BATON_ERR_BAD_REQUEST', `--memory: ${r.error.message}`);
        hard.memoryBytes = r.value;
      }
      if (o.tasks !== undefined) {
        if (!/^\d+$/.test(String(o.tasks))) throw new BatonError('BATON_ERR_BAD_REQUEST', `--tasks must be a whole number, got "${o.tasks}"`);
        hard.tasks = Number(o.tasks);
      }
      if (Object.keys(hard).length === 0) throw new BatonError('BATON_ERR_BAD_REQUEST', 'say what the quota limits: --cpus, --memory and/or --tasks');
      const q = await api.call<QuotaView>('PUT', `/api/v1/quotas/${encodeURIComponent(stack)}`, hard);
      if (g.output !== 'table') return out(renderOne(g.output, q));
      out(`quota of stack ${stack}: ${quotaCells(q).join(', ')}`);
    });
  quotaCmd
    .command('ls')
    .description("every quota, with what its stack uses now (used/limit)")
    .action(async (_o, cmd: Command) => {
      const { api, g } = client(cmd);
      const r = await api.call<{ items: QuotaView[] }>('GET', '/api/v1/quotas');
      if (g.output !== 'table') return out(renderOne(g.output, r.items));
      out(table(['STACK', 'TASKS', 'CPUS', 'MEMORY', 'SET BY', 'UPDATED'], r.items.map((q) => [q.stack, ...quotaCells(q, true), q.updatedBy ?? '-', q.updatedAt])));
    });
  quotaCmd
    .command('rm <stack>')
    .description("remove a stack's quota")
    .action(async (stack: string, _o, cmd: Command) => {
      const { api } = client(cmd);
      await api.call('DELETE', `/api/v1/quotas/${encodeURIComponent(stack)}`);
      out(`quota of stack ${stack} removed`);
    });
}

/** quotaCells: used/limit of tasks, CPUs and memory ("-" for what is not limited). */
function quotaCells(q: QuotaView, bare = false): string[] {
  const cell = (used: string, hard: string | undefined, what: string) => (hard === undefined ? (bare ? `${used}/-` : `${what} not limited (${used} used)`) : bare ? `${used}/${hard}` : `${what} ${used} of ${hard} used`);
  return [
    cell(String(q.used.tasks), q.hard.tasks === undefined ? undefined : String(q.hard.tasks), 'tasks'),
    cell(String(q.used.cpus), q.hard.cpus === undefined ? undefined : String(q.hard.cpus), 'cpus'),
    cell(bytes(q.used.memoryBytes), q.hard.memoryBytes === undefined ? undefined : bytes(q.hard.memoryBytes), 'memory'),
  ];
}
