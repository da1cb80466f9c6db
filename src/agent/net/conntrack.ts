/**
 * Stale UDP flows. The kernel path DNATs the first datagram of a UDP flow and
 * conntrack keeps the choice for every later one, until the flow has been
 * idle for the UDP timeout (30 s): a client that keeps sending (a DNS client
 * reusing its port, a metrics agent, a game) stays pinned to an endpoint
 * that has left, for ever. kube-proxy deletes those entries when an endpoint
 * goes; so does the mesh, through conntrack-tools' `conntrack -D` (Debian's
 * `conntrack`), with nothing but checked addresses and port numbers as its
 * arguments (never a shell).
 *
 * Without the tool the flows still end once idle; the agent says so once.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isIPv4 } from 'node:net';

const CONNTRACK = '/usr/sbin/conntrack';

/** A flow that was DNATed from address:port to `to`. */
export interface StaleFlow {
  address: string;
  port: number;
  to: string;
}

export function conntrackAvailable(): boolean {
  return existsSync(CONNTRACK);
}

/** flowArgs is the argument vector deleting one route's UDP flows to one endpoint; it throws on what is not an address or a port. */
export function flowArgs(f: StaleFlow): string[] {
  if (!isIPv4(f.address) || !isIPv4(f.to)) throw new Error(`stale flow: ${JSON.stringify(f.address)} or ${JSON.stringify(f.to)} is not an IPv4 address`);
  if (!Number.isInteger(f.port) || f.port < 1 || f.port > 65535) throw new Error(`stale flow: port ${JSON.stringify(f.port)} is not an integer in 1..65535`);
  return ['-D', '-p', 'udp', '--orig-dst', f.address, '--orig-port-dst', String(f.port), '--dst-nat', f.to];
}

/** deleteFlows deletes each flow's entries; resolves with the errors (conntrack exits 1 when there was none to delete: not an error). */
export async function deleteFlows(flows: readonly StaleFlow[]): Promise<string[]> {
  const errors: string[] = [];
  for (const f of flows) {
    const args = flowArgs(f);
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const p = spawn(CONNTRACK, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr!.on('data', (d) => (stderr += d));
      p.on('error', (e) => resolve({ code: -1, stderr: e.message }));
      p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
    });
    if (r.code !== 0 && !/0 flow entries/.test(r.stderr)) errors.push(`conntrack ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
  }
  return errors;
}
