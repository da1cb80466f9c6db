/**
 * Test helpers for task networks: what agents leave up when they stop (their
 * bridges and task-network tables, so their tasks run on) is taken down by
 * the test that started them. A bridge's alias names its cluster
 * (`baton <cluster> <node>`); a table's name starts with the cluster's.
 */
import { deleteBridge, ifName } from '../../src/agent/net/plumbing.js';
import { netTableName } from '../../src/agent/net/netTable.js';
import { run, tableName } from '../../src/agent/nft.js';
import { overlaps, parseCidr } from '../../src/base/cidr.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** removeNodeNetwork deletes node `node`'s bridge and task-network tables of cluster `clusterId`; nothing to do when they are gone. */
export async function removeNodeNetwork(clusterId: string, node: string): Promise<void> {
  await deleteBridge(ifName('bt', `${clusterId}/${node}`));
  await run(['delete', 'table', 'ip', netTableName(node, clusterId)]);
  await run(['delete', 'table', 'bridge', netTableName(node, clusterId)]);
}

/** removeClusterNetworks deletes every bridge and task-network table of cluster `clusterId` on this machine. */
export async function removeClusterNetworks(clusterId: string): Promise<void> {
  if (!clusterId) return;
  const links = (await execFileP('/usr/sbin/ip', ['-d', '-o', 'link', 'show', 'type', 'bridge'])).stdout.split('\n');
  for (const l of links) {
    const m = /^\d+: (bt[0-9a-f]{12})[:@].* alias baton (\S+) \S+/.exec(l);
    if (m && m[2] === clusterId) await deleteBridge(m[1]!);
  }
  // Its task-network tables, and the mesh tables that agents killed with -9 could not delete.
  const prefixes = [netTableName('x', clusterId).slice(0, -1), tableName('', clusterId)];
  const tables = (await run(['list', 'tables'])).stdout.split('\n');
  for (const t of tables) {
    const m = /^table (ip|bridge) (\S+)$/.exec(t.trim());
    if (m && prefixes.some((p) => m[2]!.startsWith(p))) await run(['delete', 'table', m[1]!, m[2]!]);
  }
}

/**
 * staleClusters lists the clusters whose bridges hold addresses in `cidr`.
 * Each test file's clusters take a /16 of their own (TestCluster.clusterCidr)
 * and a file's runs never overlap, so such a bridge was left by an earlier
 * run of the same file that was killed before it could take its network
 * down; a new cluster's agents would refuse that range ("this machine
 * already routes into it") and run no task.
 */
export async function staleClusters(cidr: string): Promise<string[]> {
  const range = parseCidr(cidr);
  const found = new Set<string>();
  const links = (await execFileP('/usr/sbin/ip', ['-d', '-o', 'link', 'show', 'type', 'bridge'])).stdout.split('\n');
  for (const l of links) {
    const m = /^\d+: (bt[0-9a-f]{12})[:@].* alias baton (\S+) \S+/.exec(l);
    if (!m) continue;
    const addrs = (await execFileP('/usr/sbin/ip', ['-o', '-4', 'addr', 'show', 'dev', m[1]!]).catch(() => ({ stdout: '' }))).stdout;
    for (const a of addrs.matchAll(/ inet (\d+\.\d+\.\d+\.\d+\/\d+) /g)) if (overlaps(parseCidr(a[1]!), range)) found.add(m[2]!);
  }
  return [...found];
}
