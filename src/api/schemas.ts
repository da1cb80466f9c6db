/**
 * Zod schemas for what clients may write. The server validates every spec it
 * is sent (the CLI's Compose reader is only one client), and turns each zod
 * issue into an ErrorDetail with its path, so a bad request lists every
 * problem at once.
 */
import { z } from 'zod';
import type { ErrorDetail } from '../base/errors.js';
import { buildSpecSchema } from './buildSchema.js';
import { isLoopbackIP, isWildcardIP, parseIP } from './hostIp.js';
import { MAIN_CONTAINER, SPREAD_PREFERENCE, wholeMillicores } from './types.js';

const name = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, 'must start with a letter or digit and contain only letters, digits, "_", "." or "-" (at most 63)');
const nonNegInt = z.number().int().min(0);
const ms = nonNegInt;
const port = z.number().int().min(1).max(65535);
const probe = z.object({
  test: z.array(z.string()),
  http: z.object({ path: z.string().startsWith('/'), port }).optional(),
  tcp: z.object({ port }).optional(),
  intervalMs: ms,
  timeoutMs: ms,
  retries: nonNegInt,
  startPeriodMs: ms,
  startIntervalMs: ms.optional(),
});

/** A network's full name (`<stack>_<key>`, or an external network's own); the Compose reader checks names with it too. */
export const networkNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'a network name: letters, digits, _ . - (at most 63)');
/** A name the node's DNS answers (a network alias): labels of letters, digits and "-", separated by dots. */
export const dnsNameSchema = z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, 'a DNS name').max(253);
/** The most networks a service joins, and the most aliases it has on one. */
export const MAX_SERVICE_NETWORKS = 32;
/** A task's sidecars, and its init containers, at most (Kubernetes sets no limit; a pod with more is not one task). */
export const MAX_POD_CONTAINERS = 16;
export const MAX_NETWORK_ALIASES = 32;

export const labelsSchema = z.record(z.string(), z.string());

/**
 * A secret or config as a file in the container: an absolute path without
 * "." or ".." segments (it becomes a bind mount's target), an owner and a
 * mode; `hash` is the server's to fill in.
 */
export const fileRefSchema = z
  .object({
    source: name,
    target: z
      .string()
      .max(4096)
      .regex(/^\/[^\0]*$/, 'an absolute path')
      .refine((p) => !p.split('/').some((seg) => seg === '.' || seg === '..'), 'no "." or ".." segments'),
    uid: z.number().int().min(0).max(2 ** 31 - 1),
    gid: z.number().int().min(0).max(2 ** 31 - 1),
    mode: z.number().int().min(0).max(0o777),
    hash: z.string().regex(/^[0-9a-f]{64}$/).optional(),
  })
  .strict();

export const containerSpecSchema = z.object({
  image: z.string().min(1),
  command: z.array(z.string()).optional(),
  entrypoint: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()),
  labels: labelsSchema,
  user: z.string().optional(),
  workingDir: z.string().optional(),
  readOnly: z.boolean(),
  capAdd: z.array(z.string()),
  capDrop: z.array(z.string()),
  tmpfs: z.array(z.string()),
  ulimits: z.record(z.string(), z.object({ soft: z.number().int(), hard: z.number().int() })),
  sysctls: z.record(z.string(), z.string()),
  extraHosts: z.array(z.string()),
  hostname: z.string().optional(),
  init: z.boolean(),
  stopSignal: z.string().optional(),
  stopGracePeriodMs: ms,
  healthcheck: probe.optional(),
  readiness: probe.optional(),
  preStop: z
    .object({ command: z.array(z.string()).min(1).max(256).optional(), sleepMs: ms.optional() })
    .strict()
    .refine((h) => (h.command === undefined) !== (h.sleepMs === undefined), 'give a command or a sleep')
    .optional(),
  pullPolicy: z.enum(['always', 'missing', 'never']).optional(),
  mounts: z.array(
    z
      .object({
        type: z.enum(['bind', 'volume', 'tmpfs', 'task']),
        source: z.string().optional(),
        target: z.string().min(1),
        readOnly: z.boolean(),
      })
      // A task directory's name becomes a directory of the agent's: a DNS label, nothing else.
      .refine((m) => m.type !== 'task' || (m.source !== undefined && CONTAINER_NAME.test(m.source)), { message: "a task directory's source must be a lowercase DNS label (an emptyDir's name)", path: ['source'] }),
  ),
  networkMode: z.enum(['bridge', 'host', 'none']),
  secrets: z.array(fileRefSchema).max(100).optional(),
  pullSecret: z.object({ source: name }).strict().optional(),
  configs: z.array(fileRefSchema).max(100).optional(),
  // The server also checks that a built image is tagged with its build's hash (blobs.ts: checkBuilds).
  build: buildSpecSchema.optional(),
});

/** A container's name inside its task: a DNS label, as Kubernetes names them. */
const CONTAINER_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const containerName = z
  .string()
  .regex(CONTAINER_NAME, 'must be a lowercase DNS label (a-z, 0-9 and -, at most 63)');

const amounts = z.object({
  cpus: z
    .number()
    .min(0)
    .refine(wholeMillicores, 'cpus must be whole millicores (at most three decimals)'),
  memoryBytes: nonNegInt,
});

const resources = z.object({ reservations: amounts, limits: amounts.extend({ pids: nonNegInt.optional() }) });

/** A count of tasks, or a percentage of the replicas ("25%"). */
const budgetAmount = z.union([z.number().int().min(0).max(100_000), z.string().regex(/^(100|[1-9]?[0-9])%$/, 'a percentage from 0% to 100%')]);

const podContainer = z.object({ name: containerName, container: containerSpecSchema, resources }).strict();

const updateConfig = z.object({
  parallelism: nonNegInt,
  delayMs: ms,
  failureAction: z.enum(['pause', 'continue', 'rollback']),
  monitorMs: ms,
  minReadyMs: ms.optional(),
  maxFailureRatio: z.number().min(0).max(1),
  order: z.enum(['stop-first', 'start-first']),
  progressDeadlineMs: ms.optional(),
});

export const serviceSpecSchema = z.object({
  stack: z.string(),
  shortName: z.string(),
  mode: z.enum(['replicated', 'global', 'replicated-job', 'global-job']),
  replicas: z.number().int().min(0).max(100_000),
  container: containerSpecSchema,
  ports: z.array(
    z.object({
      target: z.number().int().min(1).max(65535),
      published: z.number().int().min(1).max(65535).optional(),
      protocol: z.enum(['tcp', 'udp']),
      mode: z.enum(['ingress', 'host']),
      name: z.string().optional(),
      hostIP: z.union([z.ipv4(), z.ipv6()], { error: 'must be an IPv4 or IPv6 address' }).optional(),
    }),
  ),
  expose: z.array(z.number().int().min(1).max(65535)),
  vipPorts: z
    .array(z.object({ port, target: port }).strict())
    .max(1024)
    .optional(),
  networks: z
    .array(z.object({ name: networkNameSchema, aliases: z.array(dnsNameSchema).max(MAX_NETWORK_ALIASES) }))
    .max(MAX_SERVICE_NETWORKS)
    .optional(),
  resources,
  restartPolicy: z.object({
    condition: z.enum(['any', 'on-failure', 'none']),
    delayMs: ms,
    maxDelayMs: ms,
    factor: z.number().min(1).max(10).optional(),
    maxAttempts: nonNegInt,
    windowMs: ms,
  }),
  placement: z.object({
    constraints: z.array(z.string()),
    preferences: z.array(z.string().regex(SPREAD_PREFERENCE, 'a spread preference is node.labels.<key>, node.id, node.hostname or node.name')).optional(),
    maxReplicasPerNode: z.number().int().min(1).optional(),
    strategy: z.enum(['spread', 'binpack']).optional(),
    priority: z.number().int().min(-1_000_000).max(1_000_000).optional(),
    affinity: z.array(z.object({ service: z.string().min(1), required: z.boolean() })).optional(),
    antiAffinity: z.array(z.object({ service: z.string().min(1), required: z.boolean() })).optional(),
    tolerations: z.array(z.object({ key: z.string().optional(), operator: z.enum(['Equal', 'Exists']), value: z.string().optional(), effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional() })).optional(),
  }),
  update: updateConfig.optional(),
  rollbackConfig: updateConfig.optional(),
  canary: z.object({ count: z.number().int().min(1).max(100_000), autoPromoteMs: ms.optional() }).optional(),
  forceUpdate: nonNegInt.optional(),
  autoscale: z
    .object({
      min: z.number().int().min(0).max(100_000),
      max: z.number().int().min(1).max(100_000),
      cpu: z.number().positive().optional(),
      memory: z.number().positive().optional(),
      rps: z.number().positive().optional(),
      concurrency: z.number().positive().optional(),
      scaleUp: z.object({ stabilizationMs: ms, step: z.number().int().min(1).optional() }),
      scaleDown: z.object({ stabilizationMs: ms, step: z.number().int().min(1).optional() }),
    })
    .refine((a) => a.min <= a.max, 'min must not be above max')
    .optional(),
  job: z.object({ completions: z.number().int().min(1).max(100_000), parallelism: z.number().int().min(1).max(100_000), backoffLimit: nonNegInt, ttlAfterFinishedMs: ms.optional() }).optional(),
  revisionHistoryLimit: z.number().int().min(0).max(1000).optional(),
  schedule: z
    .object({
      cron: z.string().min(1),
      timeZone: z.string().optional(),
      concurrency: z.enum(['allow', 'forbid', 'replace']),
      successfulHistory: nonNegInt,
      failedHistory: nonNegInt,
    })
    .optional(),
  dependsOn: z
    .array(z.object({ service: name, condition: z.enum(['service_started', 'service_healthy', 'service_completed_successfully']), required: z.boolean() }).strict())
    .max(100)
    .optional(),
  stateful: z
    .object({
      ordered: z.boolean(),
      volumes: z.array(z.object({ name: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'a volume claim name').max(63), target: z.string().startsWith('/'), readOnly: z.boolean(), container: containerName.optional() }).strict()).max(32),
    })
    .strict()
    .optional(),
  disruptionBudget: z
    .object({ minAvailable: budgetAmount.optional(), maxUnavailable: budgetAmount.optional() })
    .strict()
    .refine((b) => (b.minAvailable === undefined) !== (b.maxUnavailable === undefined), 'give one of minAvailable and maxUnavailable')
    .optional(),
  containerName: containerName.optional(),
  sidecars: z.array(podContainer).max(MAX_POD_CONTAINERS).optional(),
  initContainers: z.array(podContainer).max(MAX_POD_CONTAINERS).optional(),
  x: z.record(z.string(), z.unknown()),
}).superRefine((s, ctx) => {
  // A task's containers share its network namespace: its own (bridge) or the node's (host); with none each would have a loopback of its own.
  if ((s.sidecars?.length || s.initContainers?.length) && s.container.networkMode === 'none') ctx.addIssue({ code: 'custom', path: ['sidecars'], message: "a task's containers share its network namespace; networkMode none gives each container a loopback of its own" });
  const seen = new Set([s.containerName ?? MAIN_CONTAINER]);
  for (const [key, list] of [['sidecars', s.sidecars], ['initContainers', s.initContainers]] as const) {
    (list ?? []).forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: [key, i, 'name'], message: `another container of the task is named "${c.name}"` });
      seen.add(c.name);
      if (c.container.networkMode !== s.container.networkMode) ctx.addIssue({ code: 'custom', path: [key, i, 'container', 'networkMode'], message: `must be the main container's (${s.container.networkMode}): a task's containers share one network namespace` });
      if (c.container.build) ctx.addIssue({ code: 'custom', path: [key, i, 'container', 'build'], message: 'only the main container is built from a context' });
    });
  }
  // UDP reaches a task only through its own namespace (the node's DNAT, the mesh's relay); a host-networked program would have to bind the published port itself.
  s.ports.forEach((p, i) => {
    if (p.protocol === 'udp' && s.container.networkMode !== 'bridge') ctx.addIssue({ code: 'custom', path: ['ports', i, 'protocol'], message: `a UDP port needs the task's own network namespace; networkMode is ${s.container.networkMode}` });
    // A host-networked program binds its ports itself, wherever it likes; a `mode: host` mapping onto an address only some nodes own would need its task placed there.
    if (p.hostIP !== undefined && !isWildcardIP(p.hostIP) && p.mode === 'host' && (s.container.networkMode !== 'bridge' || !isLoopbackIP(p.hostIP) || parseIP(p.hostIP)?.length !== 4))
      ctx.addIssue({ code: 'custom', path: ['ports', i, 'hostIP'], message: s.container.networkMode !== 'bridge' ? `a host address needs the task's own network namespace; networkMode is ${s.container.networkMode}` : 'a mode: host port may be bound to an IPv4 loopback address only (publish it through the mesh, mode ingress, to bind it to one node\'s address)' });
  });
});

const taintEffect = z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']);
export const nodeSpecSchema = z.object({
  availability: z.enum(['active', 'pause', 'drain']),
  taints: z.array(z.object({ key: z.string().min(1), value: z.string().optional(), effect: taintEffect })).optional(),
});

export const objectNameSchema = name;

/** zodDetails turns a zod error into ErrorDetails rooted at `prefix` (none: the issue's own path, or "body" for the whole). */

// ---------------------------------------------------------------- routing-mesh revisions (deregistration)
/** A store revision as the API writes one (resourceVersion): decimal digits. */
const revision = z.string().regex(/^[0-9]{1,15}$/, 'must be a store revision (decimal digits, as a resourceVersion)');

/** The body of `POST /nodes/<node>/mesh`: the Endpoints revision the node's routing mesh has applied. */
export const meshReportSchema = z.object({ endpointsRevision: revision });

/** The query of `GET /endpoints/-/applied`: the revision to wait for, and for how long at most. */
export const endpointsAppliedQuerySchema = z
  .object({
    revision,
    timeoutMs: z
      .string()
      .regex(/^[0-9]{1,5}$/, 'must be whole milliseconds')
      .transform(Number)
      .pipe(z.number().max(60_000, 'must be at most 60000 (a minute)'))
      .optional(),
  })
  .strict();

/** zodDetails turns a zod error into ErrorDetails rooted at `prefix`. */
export function zodDetails(err: z.ZodError, prefix: string): ErrorDetail[] {
  return err.issues.map((i) => ({
    path: [...(prefix ? [prefix] : []), ...i.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))].join('.').replace(/\.\[/g, '[') || 'body',
    message: i.message,
  }));
}

// ---------------------------------------------------------------- what agents report

/** An IPv4 or IPv6 address, in its text form (never a name: rulesets and dials take it as it is). */
export const ipSchema = z.union([z.ipv4(), z.ipv6()], { error: 'must be an IPv4 or IPv6 address' });
const isoTime = z.string().max(40).refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 time');
/** Bounds on what one report may carry: an engine's error text is cut to TEXT_MAX by the agent before it is sent. */
export const REPORT_TEXT_MAX = 4096;
const text = z.string().max(REPORT_TEXT_MAX);

export const TASK_STATES = ['pending', 'assigned', 'preparing', 'starting', 'running', 'complete', 'failed', 'shutdown', 'rejected', 'orphaned'] as const;

/**
 * taskStatusReportSchema is a task status as a node's agent reports it:
 * every field typed and bounded, unknown fields refused, and none of the
 * fields the server owns (the scheduler's decision, a pending reason).
 * hostIP must also be an address of the reporting node (checked by the
 * route against the node's registration): Endpoints are built from it.
 */
export const taskStatusReportSchema = z
  .object({
    state: z.enum(TASK_STATES),
    message: text,
    error: text.optional(),
    exitCode: z.number().int().min(-2147483648).max(4294967295).optional(),
    containerId: z.string().max(128).regex(/^[A-Za-z0-9_.:-]*$/, 'must be an engine container id').optional(),
    handle: z.string().max(REPORT_TEXT_MAX).optional(),
    hostIP: ipSchema.optional(),
    taskIP: z.ipv4({ error: 'must be an IPv4 address' }).optional(),
    ports: z.array(z.object({ target: port, hostPort: port, published: port.optional(), protocol: z.literal('udp').optional() }).strict()).max(1024),
    restartCount: z.number().int().min(0).max(1e9),
    healthy: z.boolean().optional(),
    ready: z.boolean().optional(),
    nextRestartAt: isoTime.optional(),
    readyAt: isoTime.optional(),
    startedAt: isoTime.optional(),
    finishedAt: isoTime.optional(),
    timestamp: isoTime,
    containers: z
      .array(
        z
          .object({
            name: containerName,
            role: z.enum(['init', 'main', 'sidecar']),
            state: z.enum(['waiting', 'running', 'exited']),
            exitCode: z.number().int().min(-2147483648).max(4294967295).optional(),
            restartCount: z.number().int().min(0).max(1e9),
            ready: z.boolean().optional(),
            message: text.optional(),
          })
          .strict(),
      )
      .max(2 * MAX_POD_CONTAINERS + 1)
      .optional(),
  })
  .strict();

const statusItem = <S extends z.ZodType>(status: S) =>
  z
    .object({
      name: z.string().min(1).max(253),
      uid: z.string().max(64).optional(),
      statusVersion: z.string().regex(/^\d{1,15}$/).optional(),
      status,
    })
    .strict();

export const newEventSchema = z
  .object({
    type: z.enum(['Normal', 'Warning']),
    reason: z.string().min(1).max(128),
    message: z.string().max(REPORT_TEXT_MAX),
    kind: z.string().min(1).max(64),
    name: z.string().min(1).max(253),
    uid: z.string().max(64).optional(),
    node: z.string().max(253).optional(),
    service: z.string().max(253).optional(),
    source: z.string().max(253),
  })
  .strict();

/** The body of POST /tasks/-/status: at most 1,000 statuses and 1,000 events (an agent flushes fewer). */
export const taskStatusBatchSchema = z
  .object({
    items: z.array(statusItem(taskStatusReportSchema)).max(1000),
    events: z.array(newEventSchema).max(1000).optional(),
  })
  .strict();

/** The body of PUT /tasks/:name/status. */
export const taskStatusPutSchema = z
  .object({
    metadata: z.object({ uid: z.string().max(64).optional(), statusVersion: z.string().regex(/^\d{1,15}$/).optional() }).optional(),
    status: taskStatusReportSchema,
  })
  .strict();

// ---------------------------------------------------------------- joining

/**
 * joinRequestSchema is the body of POST /join, the one call that comes
 * without credentials: every field bounded, so a stranger cannot make the
 * server hold more than a CSR's worth of text per attempt. (The route also
 * refuses the server's own identity as a name: tls.ts, which names it, is
 * not for the browser, and this file is.)
 */
export const joinRequestSchema = z.object({
  name,
  /** The node's address goes into its certificate, and it registers only at that address: an IP, as task reports and mesh rules need. */
  address: z.union([z.ipv4(), z.ipv6()], { error: 'must be the IP address this node is reached at' }),
  /** A PEM CSR for a P-256 key is under 1 KiB; 16 KiB leaves room for long names. */
  csr: z.string().min(1).max(16 * 1024),
  nonce: z.string().min(1).max(128),
  proof: z.string().regex(/^[0-9a-f]{64}$/, 'must be the hex HMAC-SHA256 of the nonce and the CSR'),
});

export type JoinRequest = z.infer<typeof joinRequestSchema>;

/** The largest secret or config, Swarm's limit (500 KiB): the reader, the API and the server hold to it. */
export const MAX_FILE_BYTES = 500 * 1024;

/** A secret's or config's content as base64: MAX_FILE_BYTES is at most this many characters. */
export const fileDataSchema = z
  .string()
  .max(Math.ceil(MAX_FILE_BYTES / 3) * 4 + 4, 'at most 500 KiB')
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64');
export const fileLabelsSchema = z.record(z.string().max(253), z.string().max(1024)).optional();
export const fileInputSchema = z.object({ name: objectNameSchema, data: fileDataSchema, labels: fileLabelsSchema }).strict();
