/**
 * The cluster's state as a whole: snapshots (save, restore into SQLite or
 * etcd), the move from SQLite to etcd, and client contexts.
 */
import { chmodSync, copyFileSync, createWriteStream, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import { BatonError } from '../base/errors.js';
import { batonHome, contextsPath, readContexts, writeContexts } from './context.js';
import { renderOne, table } from './output.js';
import { client, out, withEtcdFlags, type Globals } from './common.js';

export function registerStateCommands(program: Command): void {
  // ------------------------------------------------------------ snapshots
  const snapshot = program.command('snapshot').description('back up and restore the cluster state');
  snapshot
    .command('save <file>')
    .description('write an online backup of the store (SQLite) to FILE')
    .action(async (file: string, _o, cmd: Command) => {
      const { api } = client(cmd);
      const res = await api.raw('GET', '/api/v1/snapshot', undefined, new AbortController().signal);
      // The snapshot holds the whole cluster state (the CA's key, token hashes): only its owner may read it.
      await pipeline(Readable.from(res.body ?? []), createWriteStream(file, { mode: 0o600 }));
      chmodSync(file, 0o600);
      out(`snapshot written to ${file}`);
    });
  withEtcdFlags(snapshot.command('restore <file>'), "the key the snapshot's cluster was sealed with (its servers' --cluster-key)")
    .description("replace the state of a stopped server with a snapshot (SQLite), or write it into etcd (--store etcd)")
    .option('--data-dir <dir>', 'server data directory', batonHome())
    .option('--store <backend>', 'sqlite (the server in --data-dir) or etcd (the store of servers that are all stopped)', 'sqlite')
    .option('--replace', 'etcd: overwrite the state already there (every server stopped)')
    .action(async (file: string, o) => {
      if (o.store === 'etcd') {
        const { restoreIntoEtcd } = await import('./migrate.js');
        const r = await restoreIntoEtcd(file, o);
        out(`restored ${file} into etcd: ${r.keys} keys, ${r.events} events, store epoch ${r.epoch}; start the servers again`);
        return;
      }
      if (o.store !== 'sqlite') throw new BatonError('BATON_ERR_BAD_REQUEST', `--store must be sqlite or etcd, got "${o.store}"`);
      const { SqliteStore } = await import('../store/sqlite/sqliteStore.js');
      const { lockDir } = await import('../base/lock.js');
      const dir = join(resolve(o.dataDir), 'server');
      const release = lockDir(dir, 'baton snapshot restore');
      try {
        const dest = join(dir, 'state.db');
        if (existsSync(dest)) copyFileSync(dest, `${dest}.before-restore`);
        await SqliteStore.restore(resolve(file), dest);
      } finally {
        release();
      }
      out(`restored ${file} into ${dir}; start the server again`);
    });

  withEtcdFlags(program.command('migrate'), 'the key every server will share (the CA is sealed with it in etcd)')
    .description("move a stopped server's (or baton up's) SQLite state into an empty etcd; containers keep running, and agents reconnect to a server on etcd at the same address")
    .option('--data-dir <dir>', "the server's (or baton up's) data directory", batonHome())
    .option('--to <backend>', 'where to move the state (etcd)', 'etcd')
    .option('--init-cluster-key', 'make --cluster-key first')
    .action(async (o) => {
      if (o.to !== 'etcd') throw new BatonError('BATON_ERR_BAD_REQUEST', `--to must be etcd, got "${o.to}"`);
      const { migrateToEtcd } = await import('./migrate.js');
      const { result, dir, endpoints } = await migrateToEtcd(o);
      out(
        `moved ${result.keys} keys and ${result.events} events from ${join(dir, 'state.db')} (revision ${result.revision}) to etcd at ${endpoints.join(',')}; store epoch ${result.epoch}\n` +
          `next: start a server on etcd with this data directory at the old address, so the agents reconnect:\n` +
          `  baton server --data-dir ${resolve(o.dataDir)} --listen HOST:PORT --store etcd --etcd-endpoints ${endpoints.join(',')} --cluster-key ${resolve(o.clusterKey)}\n` +
          `and the agent of baton up: baton agent --data-dir ${join(resolve(o.dataDir), 'agent')} --address ADDRESS`,
      );
    });

  // ------------------------------------------------------------ contexts
  const context = program.command('context').description('manage client contexts');
  context
    .command('ls')
    .description('list contexts')
    .action(async (_o, cmd: Command) => {
      const g = cmd.optsWithGlobals() as Globals;
      const f = readContexts();
      const rows = Object.entries(f.contexts).map(([n, c]) => [n === f.current ? `${n} *` : n, c.server]);
      out(g.output === 'table' ? table(['NAME', 'SERVER'], rows) : renderOne(g.output, { current: f.current, contexts: Object.fromEntries(Object.entries(f.contexts).map(([n, c]) => [n, { server: c.server }])) }));
    });
  context
    .command('use <name>')
    .description('make a context the current one')
    .action(async (name: string) => {
      const f = readContexts();
      if (!f.contexts[name]) throw new BatonError('BATON_ERR_NOT_FOUND', `context "${name}" not found in ${contextsPath()}`);
      f.current = name;
      writeContexts(f);
      out(`now using context "${name}"`);
    });
}
