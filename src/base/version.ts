/** VERSION is Baton's version; agents and servers compare it at registration. */
export const VERSION = '0.2.0';

/**
 * compatible reports whether an agent at `agent` may join a server at
 * `server`, by Kubernetes' skew policy: same major, and the agent's minor the
 * server's or one before it, never newer. Servers are upgraded first, one at
 * a time, then agents; an agent one minor behind keeps working meanwhile.
 * (A newer agent may rely on what an older server does not have.)
 */
export function compatible(server: string, agent: string): boolean {
  const [sM, sm] = server.split('.').map(Number);
  const [aM, am] = agent.split('.').map(Number);
  if (!Number.isInteger(aM) || !Number.isInteger(am) || !Number.isInteger(sM) || !Number.isInteger(sm)) return false;
  if (sM !== aM) return false;
  return am === sm || am === sm! - 1;
}
