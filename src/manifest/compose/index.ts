/**
 * The Compose reader: a Compose file's text in, Baton ServiceSpecs out, with
 * every problem reported at once as an ErrorDetail (key path + YAML line).
 * Pure apart from reading env_file files through opts.readFile.
 *
 * Pipeline: YAML (anchors, merge keys) → Kubernetes refusal → interpolation →
 * Compose Specification schema (ajv) → key policy table → translation.
 * Any error means no services: a half-read file is never applied.
 *
 * This file is the reader's public API and nothing else; one module per
 * concern does the work:
 *
 *   read.ts        readCompose: the pipeline, and issues → ErrorDetails
 *   yamlAst.ts     a key path's line; Compose's !reset and !override tags
 *   schema.ts      the Compose Specification (compose-spec.json) and its messages
 *   dotenv.ts      the .env / env_file format
 *   issues.ts      Ctx: the issues of one read, and the policy table applied
 *   keyPolicy.ts   the key policy table: what is refused or only warned about, and why
 *   topLevel.ts    top-level keys and declared volumes
 *   networks.ts    networks, network_mode, links, endpoint_mode, published ports
 *   services.ts    one service → one ServiceSpec (deploy, placement)
 *   container.ts   environment, ulimits, extra_hosts, healthcheck, pull_policy
 *   ports.ts       ports and expose
 *   volumes.ts     volumes and tmpfs mounts
 *   resources.ts   resources, update_config/rollback_config, restart policies
 *   build.ts       build: the context, Dockerfile and arguments (the CLI packs the context)
 *   xBaton.ts      the x-baton extension
 *   values.ts      value helpers (booleans, numbers, durations, sizes, lists, commands)
 */

export { formatKeyPath } from '../keyPath.js';
export { parseDotEnv } from './dotenv.js';
export { COMPOSE_KEY_POLICY, type KeyPolicy } from './keyPolicy.js';
export { readCompose } from './read.js';
export { constraintProblem } from './services.js';
export { STACK_LABEL, type ComposeReadOptions, type ComposeResult, type ComposeService } from './types.js';
export type { LocalBuild } from './build.js';
export { X_BATON_KEYS, type XBatonKey, type XProbe } from './xBaton.js';
