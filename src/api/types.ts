/**
 * Baton's API resource types. Runtime-neutral: imported by the server, the
 * agent, the CLI and the dashboard. All durations are milliseconds and all
 * sizes are bytes, so nothing downstream re-parses "10s" or "512M".
 *
 * One file per part, re-exported here so that every import stays
 * `api/types.js`:
 * - types/meta.ts: the envelope every resource shares (metadata, owners);
 * - types/container.ts: a container's spec, resources, placement, restarts;
 * - types/service.ts: services, their status and revisions;
 * - types/task.ts: tasks, their spec and status;
 * - types/endpoints.ts: routing settings and endpoint addresses;
 * - types/node.ts: nodes, taints and tolerations;
 * - types/wire.ts: events, lists and watch events, errors, apply, logs, usage.
 */
export * from './types/meta.js';
export * from './types/container.js';
export * from './types/service.js';
export * from './types/task.js';
export * from './types/endpoints.js';
export * from './types/node.js';
export * from './types/wire.js';
