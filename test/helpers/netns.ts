/**
 * NetnsHarness: test nodes on one machine whose traffic crosses real
 * interfaces, as the multi-host harness of issue 18 asks. Each node n gets
 * a network namespace of its own (`baton-t-<run>-<n>`) with `lo` up, IP
 * forwarding on, and one link: a veth (`eth0` inside) into a bridge the test
 * owns in the root namespace (`btt<run>`), at 100.127.0.<n>/24; the bridge
 * itself is 100.127.0.1, where the server and the test's clients live. No
 * default route, no NAT, no uplink: a packet can go only to another node of
 * the run or to the root namespace's bridge address.
 *
 * 100.127.0.0/24 is carrier-grade NAT space (RFC 6598) that nothing on this
 * machine uses; it exists only on the harness's own bridge while a run is
 * up, so one run at a time: up() refuses when the range is routed already,
 * after removing what earlier runs that are gone (no process in any of
 * their namespaces) left behind. down() deletes everything up() made and
 * may be called twice.
 *
 * Every name and address is built here from the run's random id and node
 * numbers; `ip` is spawned with an argument vector.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const pexec = promisify(execFile);
const IP = '/usr/sbin/ip';

/** The harness's link: the root namespace's bridge is .1, node n is .n. */
const PREFIX = '100.127.0';
export const HARNESS_GATEWAY = `${PREFIX}.1`;

const RUN = /^[0-9a-f]{6}$/;
const NS = /^baton-t-([0-9a-f]{6})-(\d{1,3})$/;

async function ip(args: string[]): Promise<string> {
  return (await pexec(IP, args, { timeout: 30_000 })).stdout;
}

/** ipQuiet runs ip and ignores a failure (something already gone). */
async function ipQuiet(args: string[]): Promise<void> {
  await ip(args).catch(() => {});
}

function checkNode(n: number): number {
  if (!Number.isInteger(n) || n < 2 || n > 254) throw new Error(`a harness node is numbered 2..254, got ${n}`);
  return n;
}

export class NetnsHarness {
  /** This run's id: it names the bridge and every namespace. */
  readonly run = randomBytes(3).toString('hex');
  readonly bridge = `btt${this.run}`;
  private readonly nodes = new Set<number>();
  private bridgeMade = false;

  /** ns is node n's network namespace. */
  ns(n: number): string {
    return `baton-t-${this.run}-${checkNode(n)}`;
  }

  /** address is node n's address on the harness link. */
  address(n: number): string {
    return `${PREFIX}.${checkNode(n)}`;
  }

  /** up makes the bridge and one namespace per node. */
  async up(nodes: readonly number[]): Promise<void> {
    await sweepGoneRuns();
    const routed = (await ip(['-4', 'route', 'show', `${PREFIX}.0/24`])).trim();
    if (routed) throw new Error(`${PREFIX}.0/24 is routed on this machine already (${routed}): another multi-host test runs, or left this behind`);
    await ip(['link', 'add', 'name', this.bridge, 'type', 'bridge']);
    this.bridgeMade = true;
    await ip(['addr', 'add', `${HARNESS_GATEWAY}/24`, 'dev', this.bridge]);
    await ip(['link', 'set', 'dev', this.bridge, 'up']);
    for (const n of nodes) await this.addNode(n);
  }

  private async addNode(n: number): Promise<void> {
    const ns = this.ns(n);
    const outer = `btv${this.run}${n}`;
    await ip(['netns', 'add', ns]);
    this.nodes.add(n);
    await ip(['link', 'add', 'name', outer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await ip(['link', 'set', 'dev', outer, 'master', this.bridge]);
    await ip(['link', 'set', 'dev', outer, 'up']);
    await ip(['-n', ns, 'link', 'set', 'dev', 'lo', 'up']);
    await ip(['-n', ns, 'addr', 'add', `${this.address(n)}/24`, 'dev', 'eth0']);
    await ip(['-n', ns, 'link', 'set', 'dev', 'eth0', 'up']);
    // A node forwards between its link and its tasks' bridge (a new namespace starts with forwarding off).
    await this.exec(n, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  }

  /** exec runs a command inside node n's namespace (with `input` on its stdin) and returns its output; it rejects with its stderr when it fails. */
  exec(n: number, argv: readonly string[], input?: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const p = spawn(IP, ['netns', 'exec', this.ns(n), ...argv], { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], timeout: 30_000 });
      let out = '';
      let err = '';
      p.stdout!.on('data', (d) => (out += d));
      p.stderr!.on('data', (d) => (err += d));
      p.on('error', reject);
      p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(' ')} in ${this.ns(n)}: ${err.trim() || `exit ${code}`}`))));
      if (p.stdin) {
        // A command that exits before reading all of its input says why by its exit code, not by EPIPE.
        p.stdin.on('error', () => {});
        p.stdin.end(input);
      }
    });
  }

  /**
   * wrap is the argument vector that runs argv inside node n's namespace.
   * `ip netns exec` execs the command (no fork), so the PID of what is
   * spawned with it is the command's own.
   */
  wrap(n: number, argv: readonly string[]): string[] {
    return [IP, 'netns', 'exec', this.ns(n), ...argv];
  }

  /** down deletes the namespaces (and with them their veths and whatever was made inside) and the bridge; again, it does nothing. */
  async down(): Promise<void> {
    for (const n of [...this.nodes]) {
      await ipQuiet(['link', 'del', 'dev', `btv${this.run}${n}`]);
      await ipQuiet(['netns', 'del', this.ns(n)]);
      this.nodes.delete(n);
    }
    if (this.bridgeMade) await ipQuiet(['link', 'del', 'dev', this.bridge]);
    this.bridgeMade = false;
  }
}

/**
 * sweepGoneRuns removes what earlier runs left when they were killed before
 * their down(): a run whose namespaces hold no process at all is gone.
 */
async function sweepGoneRuns(): Promise<void> {
  const byRun = new Map<string, string[]>();
  for (const line of (await ip(['netns', 'list'])).split('\n')) {
    const m = NS.exec(line.trim().split(/\s+/)[0] ?? '');
    if (m) byRun.set(m[1]!, [...(byRun.get(m[1]!) ?? []), m[0]]);
  }
  for (const line of (await ip(['-o', 'link', 'show', 'type', 'bridge'])).split('\n')) {
    const run = /^\d+:\s+btt([0-9a-f]{6}):/.exec(line)?.[1];
    if (run && !byRun.has(run)) byRun.set(run, []);
  }
  for (const [run, namespaces] of byRun) {
    if (!RUN.test(run)) continue;
    let live = false;
    for (const ns of namespaces) if ((await ip(['netns', 'pids', ns]).catch(() => '')).trim()) live = true;
    if (live) continue;
    for (const ns of namespaces) await ipQuiet(['netns', 'del', ns]);
    await ipQuiet(['link', 'del', 'dev', `btt${run}`]);
  }
}
