/** VERSION is Baton's version; agents and servers compare it at registration. */
export const VERSION = '0.1.0';

/**
 * compatible reports whether an agent at `agent` may join a server at
 * `server`: same major, and for 0.x the same minor (semver's rule for
 * pre-1.0 releases, where a minor bump may break the wire).
 */
export function compatible(server: string, agent: string): boolean {
  const [sM, sm] = server.split('.').map(Number);
  const [aM, am] = agent.split('.').map(Number);
  if (!Number.isFinite(aM) || !Number.isFinite(am)) return false;
  if (sM !== aM) return false;
  return sM !== 0 || sm === am;
}
