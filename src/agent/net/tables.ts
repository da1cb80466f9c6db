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
export interface Listed {
  name: string;
  handle: number;
  owner?: TableOwner;
}

/**
 * clusterTables lists this host's tables of the cluster (`ip` family) other
 * than `own`, each with its handle and owner. A table in `known` (what an
 * earlier listing read, by name) is not read again: one `nft list tables`
 * per sweep instead of one more per table. A table made anew under a known
 * name has another handle, so judging it by the old entry deletes nothing
 * (sweepTables then forgets the entry, and the next sweep reads it).
 */
async function clusterTables(cluster: string, own: string, known?: Map<string, Listed>): Promise<Listed[]> {
  const prefix = tableName('', cluster);
  const r = await run(['list', 'tables', 'ip']);
  if (r.code !== 0) throw new Error(`nft list tables: ${r.stderr.trim() || `exit ${r.code}`}`);
  const out: Listed[] = [];
  const listed = new Set<string>();
  for (const line of r.stdout.split('\n')) {
    const name = /^table ip (\S+)$/.exec(line.trim())?.[1];
    if (!name || name === own || !name.startsWith(prefix) || !TABLE_NAME.test(name)) continue;
    listed.add(name);
    const was = known?.get(name);
    if (was) {
      out.push(was);
      continue;
    }
    // -a: the handle; -t: no set elements. A table gone since the listing is simply skipped.
    const t = await run(['-a', '-t', 'list', 'table', 'ip', name]);
    if (t.code !== 0) continue;
    const handle = count(/^table ip \S+ \{ # handle (\d{1,10})$/m.exec(t.stdout)?.[1] ?? '');
    if (handle === undefined) continue;
    const comment = /^\s*comment "([^"]*)"\s*$/m.exec(t.stdout)?.[1];
    const table: Listed = { name, handle, owner: comment === undefined ? undefined : parseOwnerComment(comment) };
    // One without an owner is read again each time: a table made anew under its name may carry one.
    if (table.owner) known?.set(name, table);
    out.push(table);
  }
  if (known) for (const name of known.keys()) if (!listed.has(name)) known.delete(name);
  return out;
}

/**
 * sweepTables deletes the cluster's tables whose owner is gone, except
 * `own`; it returns the names it deleted. Tables without an owner it can
 * read, and every other cluster's, are never touched. `known` carries what
 * one sweep read to the next (TableSweeper).
 */
export async function sweepTables(cluster: string, own: string, here: TableOwner = selfOwner(), known?: Map<string, Listed>): Promise<string[]> {
  const removed: string[] = [];
  for (const t of await clusterTables(cluster, own, known)) {
    if (!t.owner || !ownerGone(t.owner, here)) continue;
    known?.delete(t.name);
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
  /** What the sweeps read of each table, by name. */
  private readonly known = new Map<string, Listed>();
  /** This process, as its tables name it. */
  private readonly here = selfOwner();

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
    this.running = sweepTables(this.cluster, this.own, this.here, this.known)
      .then((removed) => this.onSweep(removed), (err: Error) => this.onSweep([], err))
      .finally(() => {
        this.running = undefined;
        if (this.stopped) return;
        this.timer = setTimeout(() => this.tick(), this.everyMs);
        this.timer.unref();
      });
  }
}
