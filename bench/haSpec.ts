/**
 * The service bench:ha scales: a Compose file of one service read by
 * Baton's own reader (what `baton apply` sends), so the bench writes what a
 * user's apply would.
 */
import { readCompose } from '../src/manifest/compose/index.js';

/** serviceSpecFor is stack `stack`'s service `name` with `replicas` replicas, as the API's apply takes it. */
export function serviceSpecFor(stack: string, name: string, replicas: number) {
  const r = readCompose(`services:\n  ${name}:\n    image: busybox\n    command: ["sleep", "3600"]\n    network_mode: host\n    deploy:\n      replicas: ${replicas}\n`, { fileName: 'bench-ha.yaml', baseDir: '/', env: {}, stack });
  if (r.errors.length) throw new Error(`bench:ha's service does not read: ${r.errors.map((e) => e.message).join('; ')}`);
  const s = r.services[0]!;
  return { name: s.name, spec: s.spec, labels: s.labels };
}
