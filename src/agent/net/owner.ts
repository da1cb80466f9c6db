/**
 * TableOwner says which process made an agent's nftables table (nft.ts): its
 * pid, that process's start time (a pid is reused; pid and start time
 * together are not), the boot it ran in and its pid namespace (a pid means
 * nothing across either). It travels in the table's comment, so any process
 * on the host can tell whether the table's agent still runs
 * (net/tables.ts sweeps the tables of agents that are gone).
 *
 * The comment is written from integers and a boot id only, and read back
 * into the same, never used as text.
 */
import { readFileSync, readlinkSync } from 'node:fs';

/** TableOwner: the process that made a table, as the kernel knows it. */
export interface TableOwner {
  pid: number;
  /** The process's start time, in clock ticks since boot (/proc/<pid>/stat, field 22). */
  start: number;
  /** /proc/sys/kernel/random/boot_id of the boot it ran in. */
  boot: string;
  /** The inode of its pid namespace. */
  pidns: number;
}

const BOOT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const COMMENT = /^baton-agent pid=(\d{1,10}) start=(\d{1,20}) boot=([0-9a-f-]{36}) pidns=(\d{1,20})$/;

/** count reads a non-negative integer written in decimal; undefined for anything else. */
export function count(text: string): number | undefined {
  const n = Number(text);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** ownerComment is the comment a table of `owner` carries (at most 128 characters, nft's limit). */
export function ownerComment(owner: TableOwner): string {
  const { pid, start, boot, pidns } = owner;
  if (![pid, start, pidns].every((n) => Number.isSafeInteger(n) && n >= 0) || !BOOT_ID.test(boot)) throw new Error(`not a table owner: ${JSON.stringify(owner)}`);
  return `baton-agent pid=${pid} start=${start} boot=${boot} pidns=${pidns}`;
}

/** parseOwnerComment reads an owner back from a table's comment; undefined when it is not one. */
export function parseOwnerComment(text: string): TableOwner | undefined {
  const m = COMMENT.exec(text);
  if (!m) return undefined;
  const pid = count(m[1]!);
  const start = count(m[2]!);
  const pidns = count(m[4]!);
  if (pid === undefined || start === undefined || pidns === undefined || !BOOT_ID.test(m[3]!)) return undefined;
  return { pid, start, boot: m[3]!, pidns };
}

/** startTime: a process's start time in clock ticks since boot, or undefined when there is no such process. */
function startTime(pid: number | 'self'): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold anything: count the fields after the last ')'.
  return count(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '');
}

function bootId(): string {
  const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  if (!BOOT_ID.test(id)) throw new Error(`unexpected boot id "${id}"`);
  return id;
}

function pidNamespace(): number {
  const m = /^pid:\[(\d+)\]$/.exec(readlinkSync('/proc/self/ns/pid'));
  const n = m ? count(m[1]!) : undefined;
  if (n === undefined) throw new Error('cannot read this process pid namespace');
  return n;
}

/** selfOwner: this process, as the owner of the tables it makes. */
export function selfOwner(): TableOwner {
  const start = startTime('self');
  if (start === undefined) throw new Error('cannot read /proc/self/stat');
  return { pid: process.pid, start, boot: bootId(), pidns: pidNamespace() };
}

/**
 * ownerGone: the owner's process no longer runs (another boot, or its pid is
 * free or held by a later process); false when it runs or this process
 * cannot tell (another pid namespace).
 */
export function ownerGone(owner: TableOwner, here: TableOwner): boolean {
  if (owner.boot !== here.boot) return true;
  if (owner.pidns !== here.pidns) return false;
  return startTime(owner.pid) !== owner.start;
}
