/**
 * The V8 flags a Baton server runs with where Baton launches it (`baton up
 * -d`), and that an operator gives a server launched by hand or by an init
 * system through NODE_OPTIONS (README: "Running a server"). V8 reads them
 * when the process starts: `v8.setFlagsFromString` after that leaves the
 * heap as it is, and re-executing ourselves would leave an orphan behind
 * a parent killed by PID, so Baton never re-executes.
 *
 * - `--max-semi-space-size=64` (MiB; Node 20's default is 16): the server
 *   allocates many short-lived objects per request and watch event, and a
 *   larger young generation lets them die there instead of being promoted
 *   and collected by the old generation's mark-compact (bench:scheduler
 *   prints its own A/B; docs/scale.md).
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64'];

/** withServerFlags is `env` with SERVER_NODE_FLAGS added to NODE_OPTIONS (a flag the operator set already stays as set). */
export function withServerFlags(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const have = (env.NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
  const add = SERVER_NODE_FLAGS.filter((f) => !have.some((h) => h.split('=')[0] === f.split('=')[0]));
  return add.length ? { ...env, NODE_OPTIONS: [...have, ...add].join(' ') } : env;
}
