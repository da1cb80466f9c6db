/**
 * The sweep of agents' nftables tables left by agents that are gone.
 *
 * An agent deletes its table when it stops; one killed with -9 cannot, and
 * its table (DNAT rules for every port it published) would capture that
 * traffic for good. Each table carries its owner in its comment
 * (net/owner.ts), so any agent of the cluster on the host lists the
 * cluster's tables (`baton_<cluster8>_*`) every `sweepMs` and deletes those
 * whose owner is gone; a restarted agent does so at once. A table it cannot
 * judge (no owner comment, or an owner in another pid namespace) is left
 * alone, and so is every other cluster's.
 *
 * Nothing read back is pasted into nft's input: a table name is used only
 * if it is what tableName() makes, and a table is deleted by the handle it
 * was judged under, so one that a restarted agent made anew under the same
 * name in the meantime is not.
 */
import { run, tableName } from '../nft.js';
import { count, ownerGone, parseOwnerComment, selfOwner, type TableOwner } from './owner.js';

/** What tableName() makes: nothing else is ever handed to nft. */
const TABLE_NAME = /^baton_[a-zA-Z0-9_]{1,114}$/;

/** A table as the sweep judged it. */
interface Listed {
  name: string;
  handle: number;
  owner?: TableOwner;
}

/** clusterTables lists this host's tables of the cluster (`ip` family), each with its handle and owner. */
async function clusterTables(cluster: string): Promise<Listed[]> {
  const prefix = tableName('', cluster);
  const r = await run(['list', 'tables', 'ip']);
  if (r.code !== 0) throw new Error(`nft list tables: ${r.stderr.trim() || `exit ${r.code}`}`);
  const out: Listed[] = [];
  for (const line of r.stdout.split('\n')) {
    const name = /^table ip (\S+)$/.exec(line.trim())?.[1];
    if (!name || !name.startsWith(prefix) || !TABLE_NAME.test(name)) continue;
    // -a: the handle; -t: no set elements. A table gone since the listing is simply skipped.
    const t = await run(['-a', '-t', 'list', 'table', 'ip', name]);
    if (t.code !== 0) continue;
    const handle = count(/^table ip \S+ \{ # handle (\d{1,10})$/m.exec(t.stdout)?.[1] ?? '');
    if (handle === undefined) continue;
    const comment = /^\s*comment "([^"]*)"\s*$/m.exec(t.stdout)?.[1];
    out.push({ name, handle, owner: comment === undefined ? undefined : parseOwnerComment(comment) });
  }
  return out;
}

/**
 * sweepTables deletes the cluster's tables whose owner is gone, except
 * `own`; it returns the names it deleted. Tables without an owner it can
 * read, and every other cluster's, are never touched.
 */
export async function sweepTables(cluster: string, own: string, here: TableOwner = selfOwner()): Promise<string[]> {
  const removed: string[] = [];
  for (const t of await clusterTables(cluster)) {
    if (t.name === own || !t.owner || !ownerGone(t.owner, here)) continue;
    const r = await run(['delete', 'table', 'ip', 'handle', String(t.handle)]);
    if (r.code === 0) removed.push(t.name);
  }
  return removed;
}

/** TableSweeper runs sweepTables at once and then every everyMs, until stopped. */
export class TableSweeper {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly cluster: string,
    private readonly own: string,
    private readonly everyMs: number,
    private readonly onSweep: (removed: string[], err?: Error) => void,
  ) {}

  start(): void {
    this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private tick(): void {
    if (this.stopped) return;
    this.running = sweepTables(this.cluster, this.own)
      .then((removed) => this.onSweep(removed), (err: Error) => this.onSweep([], err))
      .finally(() => {
        this.running = undefined;
        if (this.stopped) return;
        this.timer = setTimeout(() => this.tick(), this.everyMs);
        this.timer.unref();
      });
  }
}
