/**
 * Test helpers for task networks: what agents leave up when they stop (their
 * bridges and task-network tables, so their tasks run on) is taken down by
 * the test that started them. A bridge's alias names its cluster
 * (`baton <cluster> <node>`); a table's name starts with the cluster's.
 */
import { deleteBridge, ifName } from '../../src/agent/net/plumbing.js';
import { netTableName } from '../../src/agent/net/netTable.js';
import { run } from '../../src/agent/nft.js';
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
  const prefix = netTableName('x', clusterId).slice(0, -1);
  const tables = (await run(['list', 'tables'])).stdout.split('\n');
  for (const t of tables) {
    const m = /^table (ip|bridge) (\S+)$/.exec(t.trim());
    if (m && m[2]!.startsWith(prefix)) await run(['delete', 'table', m[1]!, m[2]!]);
  }
}
