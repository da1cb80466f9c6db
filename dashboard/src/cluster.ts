/** What every page of a signed-in session shares: the cluster's info and the live nodes and services. */
import { createContext, useContext } from 'react';
import type { ClusterInfo, Node, Service } from '../../src/api/types.ts';
import type { InformerState } from './data.ts';

export interface ClusterData {
  info: ClusterInfo;
  nodes: InformerState<Node>;
  services: InformerState<Service>;
}

export const ClusterContext = createContext<ClusterData | null>(null);

export function useCluster(): ClusterData {
  const c = useContext(ClusterContext);
  if (!c) throw new Error('useCluster outside the shell');
  return c;
}

/**
 * mayDeploy: whether the signed-in token may change the services of a stack
 * (scale them): an admin anywhere, a deployer in its stacks. The server
 * judges every call by its access table; this only keeps the page from
 * offering what it would refuse.
 */
export function mayDeploy(info: ClusterInfo, stack: string): boolean {
  const c = info.caller;
  return c?.role === 'admin' || (c?.role === 'deployer' && (c.stacks ?? []).includes(stack));
}

/** callerText: who is signed in, in words ("ci, deployer in shop, web"). */
export function callerText(info: ClusterInfo): string {
  const c = info.caller;
  if (!c) return 'signed in';
  return `${c.name}, ${c.role}${c.role === 'deployer' ? ` in ${(c.stacks ?? []).join(', ')}` : ''}`;
}
