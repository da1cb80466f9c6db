/**
 * Plumbing of task networks, CNI-style, done by the agent itself with
 * iproute2: one Linux bridge per node (in the agent's own network
 * namespace) holding the node's task range, and per task a veth pair whose
 * inner end is `eth0` in the task's namespace (its pause container's) with
 * the task's address, and whose outer end is a port of the bridge.
 *
 * Why not Docker's bridge networks: the namespace a task lives in must be
 * joined to the node the agent runs on, and in the multi-host test harness
 * each agent runs in a namespace of its own while every node shares one
 * engine; a veth made by the agent lands where the agent is. It also keeps
 * addresses Baton's own (allocated from the cluster's ranges, kept across an
 * engine restart) and lets one agent plumb containers of any engine.
 *
 * Every argument is built here from typed values: interface names are
 * derived (hex digests), addresses are parsed as IPv4, and `ip` is spawned
 * with an argument vector, never through a shell.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { contains, formatCidr, intToIp, overlaps, parseCidr, type Cidr } from '../../base/cidr.js';

// The range helpers moved to base/ (the server allocates node ranges with them); re-exported for this module's users.
export { contains, formatCidr, intToIp, ipToInt, parseCidr, type Cidr } from '../../base/cidr.js';

const IP = '/usr/sbin/ip';
const NSENTER = '/usr/bin/nsenter';

export class PlumbingError extends Error {
  constructor(
    readonly command: string,
    readonly stderr: string,
  ) {
    super(`${command}: ${stderr.trim() || 'failed'}`);
  }
}

/** run spawns cmd with an argument vector (never a shell) and gives its exit code and output. */
export function run(cmd: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', (e) => resolve({ code: -1, stdout, stderr: e.message }));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** must runs cmd as run does and returns its output; a failure throws a PlumbingError with its stderr. */
export async function must(cmd: string, args: readonly string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new PlumbingError(`${cmd.split('/').pop()} ${args.join(' ')}`, r.stderr);
  return r.stdout;
}

/** Runs `ip` inside the network namespace of process `pid` (a task's pause container). */
function inNs(pid: number, args: readonly string[]): Promise<string> {
  return must(NSENTER, ['-t', String(checkPid(pid)), '-n', IP, ...args]);
}

function checkPid(pid: number): number {
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`not a process id: ${pid}`);
  return pid;
}

/** ifName derives an interface name (at most 15 characters, as the kernel allows) from a prefix and a key. */
export function ifName(prefix: 'bt' | 'vb', key: string): string {
  return prefix + createHash('sha256').update(key).digest('hex').slice(0, 12);
}

export interface BridgeOptions {
  /** The bridge's name (ifName('bt', cluster + node)). */
  name: string;
  /** The node's task range; the bridge takes its first address and is every task's gateway. */
  range: Cidr;
  /** Whose bridge it is (its alias). */
  owner?: { cluster: string; node: string };
}

/** gatewayOf: the first address of a range, the bridge's own. */
export function gatewayOf(range: Cidr): string {
  return intToIp(range.base + 1);
}

const ROUTE_TYPES = new Set(['unicast', 'local', 'broadcast', 'multicast', 'anycast', 'blackhole', 'unreachable', 'prohibit', 'throw', 'nat']);

/**
 * routesInto lists the routes (as `ip -4 route show` prints them) whose
 * destination overlaps `range`; the default route is no such route.
 */
export function routesInto(routes: string, range: Cidr): string[] {
  return routes
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => {
      const words = l.split(/\s+/);
      // A route may start with its type (local, broadcast, blackhole, …): the destination follows it.
      const dest = ROUTE_TYPES.has(words[0]!) ? words[1] : words[0];
      if (!dest || dest === 'default') return false;
      let r: Cidr;
      try {
        r = parseCidr(dest.includes('/') ? dest : `${dest}/32`);
      } catch {
        return false;
      }
      return overlaps(r, range);
    });
}

/**
 * foreignRoutes lists the routes that reach into `range` through anything
 * but `bridge`: a network this machine already has there. A bridge over it
 * would take that network's traffic (and send packets meant for it
 * nowhere), so a task range must be free.
 */
export function foreignRoutes(routes: string, range: Cidr, bridge: string): string[] {
  return routesInto(routes, range).filter((l) => !new RegExp(`\\bdev ${bridge}\\b`).test(l));
}

/** ensureBridge makes the node's bridge with its gateway address, or finds it made; idempotent. It refuses a range this machine already routes elsewhere. */
export async function ensureBridge(b: BridgeOptions): Promise<void> {
  const taken = foreignRoutes(await must(IP, ['-4', 'route', 'show', 'table', 'all']), b.range, b.name);
  if (taken.length) throw new PlumbingError(`task range ${formatCidr(b.range)}`, `this machine already routes into it (${taken.join('; ')}): choose another --cluster-cidr`);
  const have = await run(IP, ['-o', 'link', 'show', 'dev', b.name]);
  if (have.code !== 0) await must(IP, ['link', 'add', 'name', b.name, 'type', 'bridge']);
  const addr = `${gatewayOf(b.range)}/${b.range.prefix}`;
  const addrs = await must(IP, ['-o', '-4', 'addr', 'show', 'dev', b.name]);
  if (!addrs.includes(` ${addr} `)) await must(IP, ['addr', 'replace', addr, 'dev', b.name]);
  // Its alias says whose it is (`baton <cluster> <node>`), for an operator's `ip link` and for tests that take it down.
  if (b.owner && OWNER_WORD.test(b.owner.cluster) && OWNER_WORD.test(b.owner.node)) await must(IP, ['link', 'set', 'dev', b.name, 'alias', `baton ${b.owner.cluster} ${b.owner.node}`]);
  await must(IP, ['link', 'set', 'dev', b.name, 'up']);
}

const OWNER_WORD = /^[A-Za-z0-9._-]{1,100}$/;

export async function deleteBridge(name: string): Promise<void> {
  await run(IP, ['link', 'del', 'dev', name]);
}

export interface Attachment {
  /** The bridge to attach to. */
  bridge: BridgeOptions;
  /** The outer end's name (ifName('vb', task uid)). */
  hostIf: string;
  /** The process whose network namespace is the task's (its pause container's PID 1). */
  pid: number;
  /** The task's address, inside bridge.range. */
  address: string;
  /** Ranges the task reaches through its gateway (the cluster's task and service ranges); with egress, a default route too. */
  routes: Cidr[];
  egress: boolean;
}

/**
 * attach joins a task's namespace to the bridge: the veth pair, the task's
 * address on eth0, loopback up, and its routes through the gateway. Run
 * again on a namespace already joined (an agent restart), it only checks;
 * on a new namespace of the same task (its pause container restarted with
 * the engine), it plumbs the same address again.
 */
export async function attach(a: Attachment): Promise<void> {
  if (!contains(a.bridge.range, a.address)) throw new Error(`${a.address} is not in the node's range ${formatCidr(a.bridge.range)}`);
  const inside = await run(NSENTER, ['-t', String(checkPid(a.pid)), '-n', IP, '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
  if (inside.code === 0 && inside.stdout.includes(` ${a.address}/${a.bridge.range.prefix} `)) return;
  // A stale outer end (its namespace died with the old pause container) goes first.
  await run(IP, ['link', 'del', 'dev', a.hostIf]);
  // The node may still hold a neighbour entry for this address from a task that had it before (another MAC).
  await run(IP, ['neigh', 'flush', 'to', a.address, 'dev', a.bridge.name]);
  await must(IP, ['link', 'add', 'name', a.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(a.pid)]);
  await must(IP, ['link', 'set', 'dev', a.hostIf, 'master', a.bridge.name]);
  // Hairpin: where br_netfilter is loaded, a packet a task sends to a VIP that lands on the task itself is DNATed in the
  // bridge's own path and must leave by the port it came in (Kubernetes' bridge plugin sets hairpinMode for the same reason).
  await must(IP, ['link', 'set', 'dev', a.hostIf, 'type', 'bridge_slave', 'hairpin', 'on']);
  await must(IP, ['link', 'set', 'dev', a.hostIf, 'up']);
  await inNs(a.pid, ['link', 'set', 'dev', 'lo', 'up']);
  await inNs(a.pid, ['addr', 'add', `${a.address}/${a.bridge.range.prefix}`, 'dev', 'eth0']);
  await inNs(a.pid, ['link', 'set', 'dev', 'eth0', 'up']);
  const gw = gatewayOf(a.bridge.range);
  if (a.egress) await inNs(a.pid, ['route', 'replace', 'default', 'via', gw, 'dev', 'eth0']);
  else for (const r of a.routes) if (!(r.base === a.bridge.range.base && r.prefix === a.bridge.range.prefix)) await inNs(a.pid, ['route', 'replace', formatCidr(r), 'via', gw, 'dev', 'eth0']);
}

/** detach removes a task's outer end (its pair goes with it); nothing to do if it is gone. */
export async function detach(hostIf: string): Promise<void> {
  await run(IP, ['link', 'del', 'dev', hostIf]);
}

/** routesIn lists a namespace's IPv4 routes as `ip route` prints them (tests read it: no default route off the machine). */
export async function routesIn(pid: number): Promise<string[]> {
  return (await inNs(pid, ['-4', 'route', 'show'])).split('\n').filter(Boolean);
}
