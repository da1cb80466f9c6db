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
