/**
 * Test helpers for task networks: what an agent leaves up when it stops
 * (its bridge and its mapping table, so its tasks run on) is taken down by
 * the test that started it.
 */
import { deleteBridge, ifName } from '../../src/agent/net/plumbing.js';
import { netTableName } from '../../src/agent/net/netTable.js';
import { run } from '../../src/agent/nft.js';

/** removeNodeNetwork deletes node `node`'s bridge and task-network table of cluster `clusterId`; nothing to do when they are gone. */
export async function removeNodeNetwork(clusterId: string, node: string): Promise<void> {
  await deleteBridge(ifName('bt', `${clusterId}/${node}`));
  await run(['delete', 'table', 'ip', netTableName(node, clusterId)]);
  await run(['delete', 'table', 'bridge', netTableName(node, clusterId)]);
}
