/**
 * The `baton` command line. One commander program; each verb is a thin layer
 * over the typed ApiClient, and every failure is one line on stderr with a
 * non-zero exit (a stack trace only with BATON_DEBUG=1).
 */
import { Argument, Command, Option } from 'commander';
import { join } from 'node:path';
import { endpointsKind, nodeKind, revisionKind, serviceColumnsWithVip, serviceKind, taskKind, eventKind } from '../api/kinds.js';
import type { Endpoints, Node, Revision, SchedulingDecision, Service, Task } from '../api/types.js';
import { isJob, isTerminal } from '../api/types.js';
import { BatonError, formatDetails, isBatonError } from '../base/errors.js';
import { sleep } from '../base/clock.js';
import { VERSION } from '../base/version.js';
import { batonHome, readContexts, resolveTarget, writeContexts } from './context.js';
import { render, renderOne, table, taskTable } from './output.js';
import { addKindCommands, client, labelMap, out, withEtcdFlags, type Globals } from './common.js';
import { registerFileCommands } from './fileCommands.js';
import { registerStateCommands } from './stateCommands.js';
import { converged, progress, registerApply } from './apply.js';
import { registerGet } from './get.js';
import { DEFAULT_CLUSTER_CIDR, DEFAULT_NODE_CIDR_SIZE, DEFAULT_SERVICE_CIDR, MAX_NODE_CIDR_SIZE } from '../server/ipam.js';
import { registerAccessCommands } from './access.js';
import { registerExec } from './exec.js';
import { registerRegistryCommands } from './registry.js';

const CLUSTER_CIDR_HELP = "the IPv4 range every node's task range is taken from";
const SERVICE_CIDR_HELP = 'the IPv4 range service VIPs are taken from (apart from the cluster CIDR)';
const NODE_CIDR_SIZE_HELP = `prefix length of each node's task range (longer than the cluster CIDR's, at most ${MAX_NODE_CIDR_SIZE})`;

/** daemon loads the server and agent code only for the commands that run them, so client verbs start fast. */
function daemon() {
  return import('./daemon.js');
}

function addAgentFlags(c: Command, defaults: { portRange: string; address: string }): Command {
  return c
    .option('--name <name>', 'node name (default: the hostname)')
    .option('--address <ip>', 'address tasks bind to and peers reach this node at', defaults.address)
    .option('--cpus <n>', 'CPU capacity to offer (default: detected)')
    .option('--memory <bytes>', 'memory capacity to offer, e.g. 8g (default: detected)')
    .option('--label <k=v...>', 'node label (repeatable)')
    .option('--port-range <a-b>', 'host ports for task ports; agents on one host must not overlap', defaults.portRange)
    .option('--vip-range <cidr>', "loopback range for this node's service VIPs, 127.X.Y.0/24 or 127.X.0.0/16 (default: from --address)")
    .addOption(new Option('--mesh-kernel <mode>', 'route plain round-robin services with nftables DNAT when possible').choices(['on', 'off']).default('on'))
    .addOption(new Option('--mesh-userspace <proxy>', "which proxy carries the published ports the kernel does not route (least_conn, the PROXY protocol) while their service has endpoints: the host's HAProxy (when installed) or Baton's Node proxy").choices(['haproxy', 'node']).default('haproxy'))
    .option('--mesh-proxy-drain <duration>', "how long HAProxy's workers replaced by a change of routes may serve their open connections", '30m')
    .option('--dns-upstream <servers>', "where the node's resolver sends names outside the cluster: nameservers (ip or ip:port, comma-separated) or none (default: the node's own, from /etc/resolv.conf)")
    .option('--cluster-domain <domain>', 'the cluster domain: <service>.<stack>.svc.<domain> resolves in tasks', 'cluster.local')
    .addOption(new Option('--egress <mode>', "whether tasks in their own namespace reach outside the cluster's ranges: nat (masqueraded to the node's address) or none").choices(['nat', 'none']).default('nat'))
    .option('--mesh-sweep <duration>', "how often the nftables tables of this cluster's agents that are gone are removed from the host", '10s')
    .addOption(new Option('--pull <policy>', 'image pull policy').choices(['never', 'missing', 'always']).default('missing'))
    .option('--docker-socket <path>', 'Docker engine socket', '/var/run/docker.sock')
    .option('--engine-timeout <duration>', 'how long one engine call (not a stream) may take before it fails and its task is retried', '2m')
    .option('--build-timeout <duration>', "how long fetching a service's build context and building its image may take", '30m')
    .option('--listen-port <port>', "the agent's HTTPS port on --address (the server reads logs there; /metrics for Prometheus)", '7950')
    .addOption(new Option('--metrics-auth <mode>', "who may read the agent's /metrics: anyone (none), or a scraper with the bearer token of --metrics-token-file (token)").choices(['none', 'token']).default('none'))
    .option('--metrics-token-file <file>', 'the file holding the bearer token a scraper sends to /metrics (--metrics-auth token; at least 16 characters)')
    .option('--log-max-size <bytes>', 'task output kept on this node, all tasks together', '100m')
    .option('--log-max-age <duration>', 'task output older than this is removed', '24h')
    .option('--stats-interval <duration>', "how often running tasks' CPU and memory are sampled", '2s')
    .option('--deregister-timeout <duration>', "how long a stopping task with ports may wait for every node's routing mesh to stop routing to it", '10s')
    .option('--log-level <level>', 'log level (debug, info, warn, error)', 'info');
}

export function buildProgram(): Command {
  const program = new Command('baton')
    .description('Baton: a container orchestrator. Start like Swarm, run like Kubernetes, scale like Nomad.')
    .version(VERSION)
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .option('--server <url>', 'API server URL (default: from the context)')
    .option('--token <token>', 'API token (default: from the context)')
    .option('--context <name>', 'context from contexts.yaml (or BATON_CONTEXT)')
    .option('--ca <file>', "the cluster CA certificate to trust (or BATON_CA; default: the context's)")
    .showHelpAfterError()
    .configureOutput({ outputError: (s, write) => write(s) });

  // ------------------------------------------------------------ processes
  addAgentFlags(
    program
      .command('up')
      .description('run a server and an agent in one process (a one-node cluster)')
      .option('-d, --detach', 'run in the background (PID file in the data dir)')
      .option('--data-dir <dir>', 'data directory', batonHome())
      .option('--listen <host:port>', 'API listen address', '127.0.0.1:7400')
      .option('--tls-san <name...>', "extra names or addresses for the API's TLS certificate")
      .option('--cluster-cidr <cidr>', CLUSTER_CIDR_HELP, DEFAULT_CLUSTER_CIDR)
      .option('--node-cidr-size <n>', NODE_CIDR_SIZE_HELP, String(DEFAULT_NODE_CIDR_SIZE))
      .option('--service-cidr <cidr>', SERVICE_CIDR_HELP, DEFAULT_SERVICE_CIDR)
      .option('--context-name <name>', 'name of the client context to write', 'default'),
    { portRange: '20000-20999', address: '127.0.0.1' },
  ).action(async (o) => (await daemon()).runUp({ ...o, context: o.contextName }, process.argv.slice(2)));

  program
    .command('down')
    .description('stop a background `baton up` (containers keep running): the current context\'s, or the one at --data-dir')
    .option('--data-dir <dir>', 'data directory (default: the current context\'s baton up, else BATON_HOME)')
    .action(async (o, cmd: Command) => (await daemon()).runDown({ ...o, context: cmd.optsWithGlobals().context }));

  const serverCmd = program
    .command('server')
    .description('run the control plane')
    .option('--data-dir <dir>', 'data directory', batonHome())
    .option('--listen <host:port>', 'API listen address', '127.0.0.1:7400')
    .option('--tls-san <name...>', "extra names or addresses for the API's TLS certificate")
    .option('--cluster-cidr <cidr>', CLUSTER_CIDR_HELP, DEFAULT_CLUSTER_CIDR)
    .option('--node-cidr-size <n>', NODE_CIDR_SIZE_HELP, String(DEFAULT_NODE_CIDR_SIZE))
    .option('--service-cidr <cidr>', SERVICE_CIDR_HELP, DEFAULT_SERVICE_CIDR)
    .option('--store <backend>', 'sqlite (this server alone, in its data directory) or etcd (several servers sharing it)', 'sqlite');
  withEtcdFlags(serverCmd, 'the key every server of the cluster shares (32 random bytes, hex, mode 0600): the CA is kept in the store sealed with it')
    .option('--init-cluster-key', 'make --cluster-key first (the first server of a new cluster); give the file to the others')
    .option('--name <name>', 'this server among several: shown as the leader (default: its listen address)')
    .option('--leader-ttl <duration>', 'how long a leader that stopped answering stays leader before another takes over', '3s')
    .option('--log-level <level>', 'log level', 'info')
    .action(async (o) => (await daemon()).runServer(o));

  addAgentFlags(
    program
      .command('agent')
      .description('run a node agent; the first start joins the cluster with --join and --token')
      .requiredOption('--data-dir <dir>', 'agent data directory (keeps the node identity)')
      .option('--join <url>', 'server to join, https://HOST:7400 (later starts remember it)')
      .option('--heartbeat <duration>', 'heartbeat interval, e.g. 2s (the server may stretch it in large clusters)'),
    { portRange: '21000-21999', address: '127.0.0.1' },
  ).action(async (o, cmd: Command) => {
    const g = cmd.optsWithGlobals();
    return (await daemon()).runAgent({ ...o, server: o.join ?? g.server, token: g.token });
  });

  program
    .command('sim')
    .description('run N simulated nodes in this process: real agents (join, heartbeats, status) whose tasks run without containers')
    .requiredOption('--join <url>', 'server to join, https://HOST:7400')
    .requiredOption('--nodes <n>', 'how many nodes')
    .option('--cpus <n>', 'CPU capacity of each node', '4')
    .option('--memory <bytes>', 'memory capacity of each node', '8g')
    .option('--label <k=v...>', 'label of every node (repeatable)')
    .option('--start-latency <duration>', 'how long a simulated task takes to start', '200ms')
    .option('--failure-rate <0..1>', 'probability that a started task exits with code 1 soon after', '0')
    .option('--data-dir <dir>', 'where the nodes keep their identities', join(batonHome(), 'sim'))
    .option('--name-prefix <p>', 'node names are <prefix><i>', 'sim-')
    .option('--concurrency <n>', 'nodes joining at once', '16')
    .option('--log-level <level>', 'log level', 'warn')
    .action(async (o, cmd: Command) => {
      const g = cmd.optsWithGlobals();
      const { runSim } = await import('./sim.js');
      await runSim({ ...o, token: g.token });
    });

  // ------------------------------------------------------------ apply & stacks
  registerApply(program);

  const stack = program.command('stack').description('manage stacks');
  stack
    .command('ls')
    .description('list stacks')
    .action(async (_o, cmd: Command) => {
      const { api, g } = client(cmd);
      const r = await api.stacks();
      out(g.output === 'table' ? table(['NAME', 'SERVICES', 'REPLICAS'], r.items.map((s) => [s.name, String(s.services), `${s.ready}/${s.replicas}`])) : renderOne(g.output, r.items));
    });
  stack
    .command('rm <name>')
    .description('remove a stack; its containers are stopped gracefully')
    .action(async (name: string, _o, cmd: Command) => {
      const { api } = client(cmd);
      const r = await api.removeStack(name);
      for (const s of r.removed) out(`removed service ${s}`);
    });

  // ------------------------------------------------------------ services
  registerFileCommands(program);
  registerGet(program);

  const service = program.command('service').description('manage services');
  // Each service's VIP is in its Endpoints.
  addKindCommands(service, serviceKind, async (api) => {
    const vips = new Map((await api.list<Endpoints>(endpointsKind)).items.map((e) => [e.metadata.name, e.spec.vip]));
    return serviceColumnsWithVip((name) => vips.get(name));
  });
  service
    .command('ps <name>')
    .description("list a service's tasks, with why a pending task is pending")
    .option('-a, --all', 'include stopped tasks (history)')
    .action(async (name: string, o, cmd: Command) => {
      const { api, g } = client(cmd);
      await api.get(serviceKind, name);
      const r = await api.tasks({ fieldSelector: { 'spec.serviceName': name } });
      const items = sortTasks(r.items).filter((t) => o.all || t.spec.desiredState === 'running' || !isTerminal(t.status.state));
      out(taskTable(g.output, items));
    });
  service
    .command('scale <assignments...>')
    .description('set replicas: baton service scale web=5 [api=2 ...]')
    .action(async (assignments: string[], _o, cmd: Command) => {
      const { api } = client(cmd);
      for (const a of assignments) {
        const m = /^([^=]+)=(\d+)$/.exec(a);
        if (!m) throw new BatonError('BATON_ERR_BAD_REQUEST', `"${a}" must look like SERVICE=REPLICAS`);
        await api.scale(m[1]!, Number(m[2]));
        out(`${m[1]} scaled to ${m[2]}`);
      }
    });
  service
    .command('history <name>')
    .description("a service's revisions (every spec it ran), newest last; * marks the one it runs")
    .action(async (name: string, _o, cmd: Command) => {
      const { api, g } = client(cmd);
      const svc = await api.get<Service>(serviceKind, name);
      const r = await api.list<Revision>(revisionKind, { fieldSelector: { 'spec.service': name } });
      const items = r.items.filter((x) => x.spec.serviceUid === svc.metadata.uid).sort((a, b) => a.spec.revision - b.spec.revision);
      if (g.output !== 'table') return out(render(g.output, items, revisionKind.columns));
      const cur = svc.status.rollout?.hash;
      out(table(['REVISION', 'IMAGE', 'CREATED', 'CAUSE', ''], items.map((x) => [String(x.spec.revision), x.spec.spec.container.image, x.metadata.creationTimestamp, x.spec.cause, x.spec.hash === cur ? `* ${svc.status.rollout!.state}` : ''])));
    });
  service
    .command('rollback <name>')
    .description('roll back to the previous revision (or --to N), at the pace of rollback_config')
    .option('--to <revision>', 'the revision to return to (baton service history)')
    .action(async (name: string, o, cmd: Command) => {
      const { api } = client(cmd);
      const to = o.to === undefined ? undefined : Number(o.to);
      if (to !== undefined && !(Number.isInteger(to) && to > 0)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--to must be a revision number, got "${o.to}"`);
      const r = await api.call<{ revision: number; image: string }>('POST', `/api/v1/services/${encodeURIComponent(name)}/rollback`, to === undefined ? {} : { to });
      out(`${name}: rolling back to revision ${r.revision} (${r.image}); follow it with baton service rollout-status ${name}`);
    });
  for (const [verb, what] of [
    ['restart', 'replace every task with a fresh one of the same spec, at the pace of update_config'],
    ['pause', 'start no further tasks of the running rollout'],
    ['resume', 'go on with a paused rollout (failures before now no longer count)'],
    ['promote', 'let a canary rollout go on to every task'],
  ] as const) {
    service
      .command(`${verb} <name>`)
      .description(what)
      .action(async (name: string, _o, cmd: Command) => {
        const { api } = client(cmd);
        await api.call('POST', `/api/v1/services/${encodeURIComponent(name)}/${verb}`, {});
        out(`${name}: ${({ restart: 'restarting', pause: 'rollout paused', resume: 'rollout resumed', promote: 'canaries promoted' } as const)[verb]}`);
      });
  }
  service
    .command('rollout-status <name>')
    .description('follow the rollout until it completes (exit 1 if it fails or rolls back)')
    .option('--timeout <seconds>', 'give up after this long', '600')
    .action(async (name: string, o, cmd: Command) => {
      const { api } = client(cmd);
      const deadline = Date.now() + Number(o.timeout) * 1000;
      let last = '';
      while (Date.now() < deadline) {
        const s = await api.get<Service>(serviceKind, name);
        const line = progress(s);
        if (line !== last) out((last = line));
        const c = converged(s);
        if (c === 'failed') throw new BatonError('BATON_ERR_CONFLICT', `the rollout of ${name} ${s.status.rollout!.state === 'rolled-back' ? 'was rolled back' : 'stopped'}: ${s.status.rollout!.message ?? `${s.status.rollout!.failed} task(s) failed`}`);
        if (c === 'yes') return out(`${name}: rollout to revision ${s.status.rollout?.revision ?? '?'} complete`);
        await sleep(500);
      }
      throw new BatonError('BATON_ERR_UNAVAILABLE', `the rollout of ${name} did not finish within ${o.timeout} s (last: ${last})`);
    });
  service
    .command('rm <names...>')
    .description('remove services')
    .action(async (names: string[], _o, cmd: Command) => {
      const { api } = client(cmd);
      for (const n of names) {
        await api.delete(serviceKind, n);
        out(`removed service ${n}`);
      }
    });

  const addLogsCommand = (parent: Command, name: string) =>
    parent
      .command(`${name} <service|task>`)
      .description("print a service's or task's logs from every node in time order, each line prefixed with its task (also of removed containers)")
      .option('-f, --follow', 'keep printing new lines, also of tasks that start later')
      .option('--tail <n>', 'only the last N lines of each task', 'all')
      .option('--since <when>', 'only lines since a duration ago (10m, 1h30m) or a time (RFC 3339)')
      .option('-t, --timestamps', 'print each line with its time')
      .option('--grep <regex>', 'only lines matching this regular expression')
      .option('-c, --container <name>', "one container of a task that runs several (a pod's sidecar or init container); a service's logs hold them all")
      .option('--no-merge', 'each node\'s lines as they come, grouped by task, instead of one time order across tasks and nodes (following: no watermark delay)')
      .action(async (target: string, o, cmd: Command) => {
        const { api } = client(cmd);
        if (o.tail !== 'all' && !/^\d+$/.test(o.tail)) throw new BatonError('BATON_ERR_BAD_REQUEST', `--tail must be a number of lines or "all", got "${o.tail}"`);
        if (o.grep) {
          try {
            new RegExp(o.grep);
          } catch (e) {
            throw new BatonError('BATON_ERR_BAD_REQUEST', `--grep: ${(e as Error).message}`);
          }
        }
        const { printLogs } = await import('./logs.js');
        await printLogs(api, target, { follow: Boolean(o.follow), tail: o.tail === 'all' ? undefined : Number(o.tail), since: o.since, grep: o.grep, timestamps: Boolean(o.timestamps), ...(o.merge === false ? { merge: false } : {}), ...(o.container ? { container: String(o.container) } : {}) });
      });
  addLogsCommand(program, 'logs');
  addLogsCommand(service, 'logs');

  program
    .command('autoscale')
    .description('autoscaled services: replicas, min and max, each metric against its target, and why')
    .command('ls')
    .action(async (_o, cmd: Command) => {
      const { api, g } = client(cmd);
      const r = await api.autoscale();
      if (g.output !== 'table') return out(g.output === 'json' ? JSON.stringify(r.items, null, 2) : render(g.output, r.items, []));
      const pct = (x: number) => `${Math.round(x * 100)}%`;
      out(
        table(
          ['SERVICE', 'REPLICAS', 'MIN', 'MAX', 'TARGETS', 'LAST SCALE', 'COLD START', 'WHY'],
          r.items.map((v) => [
            v.service,
            String(v.replicas),
            String(v.min),
            String(v.max),
            [v.targets.cpu !== undefined ? `cpu ${pct(v.targets.cpu)}` : '', v.targets.memory !== undefined ? `memory ${pct(v.targets.memory)}` : '', v.targets.rps !== undefined ? `rps ${v.targets.rps}` : '', v.targets.concurrency !== undefined ? `concurrency ${v.targets.concurrency}` : ''].filter(Boolean).join(', '),
            v.lastScaleTime ?? '-',
            v.lastColdStartMs !== undefined ? `${v.lastColdStartMs} ms` : '-',
            v.why.join('; '),
          ]),
        ),
      );
    });
  const jobCmd = program.command('job').description('jobs (deploy.mode replicated-job or global-job) and cron jobs (x-baton.schedule)');
  jobCmd
    .command('ls')
    .description('jobs and cron jobs with their completions, or their schedule')
    .action(async (_o, cmd: Command) => {
      const { api, g } = client(cmd);
      const items = (await api.services()).items.filter((s) => isJob(s.spec) || s.spec.schedule).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
      if (g.output !== 'table') return out(render(g.output, items, serviceKind.columns));
      out(
        table(
          ['NAME', 'MODE', 'STATE', 'COMPLETIONS', 'ACTIVE', 'FAILED', 'SCHEDULE'],
          items.map((s) => {
            const j = s.status.job;
            const c = s.status.cron;
            return s.spec.schedule
              ? [s.metadata.name, 'cron', c?.active.length ? `${c.active.length} run(s) active` : 'idle', '-', String(c?.active.length ?? 0), '-', `${s.spec.schedule.cron}${s.spec.schedule.timeZone ? ` (${s.spec.schedule.timeZone})` : ''}; next ${c?.nextScheduleTime ?? '-'}`]
              : [s.metadata.name, s.spec.mode, j?.state ?? 'pending', `${j?.succeeded ?? 0}/${j?.completions ?? s.spec.job?.completions ?? '?'}`, String(j?.active ?? 0), String(j?.failed ?? 0), s.metadata.labels?.['baton.cron'] ? `run of ${s.metadata.labels['baton.cron']}` : '-'];
          }),
        ),
      );
    });
  jobCmd
    .command('ps <name>')
    .description("a job's tasks, finished ones included (exit codes, where they ran)")
    .action(async (name: string, _o, cmd: Command) => {
      const { api, g } = client(cmd);
      await api.get(serviceKind, name);
      const r = await api.tasks({ fieldSelector: { 'spec.serviceName': name } });
      out(taskTable(g.output, sortTasks(r.items)));
    });
  addLogsCommand(jobCmd, 'logs');
  program
    .command('info')
    .description('the cluster: its id, version, store, revision, and which server leads (servers on etcd)')
    .action(async (_o, cmd: Command) => {
      const { api, g } = client(cmd);
      const i = await api.info();
      if (g.output === 'json' || g.output === 'yaml') return out(renderOne(g.output, i));
      out(`cluster ${i.clusterId}\nversion ${i.version} (API ${i.apiVersion})\nstore ${i.storeBackend}, revision ${i.revision}\nserver ${api.server}${i.leading === undefined ? '' : i.leading ? ' (the leader)' : ' (a follower)'}`);
      if (i.leader) out(`leader ${i.leader.identity} since ${i.leader.since} (term ${i.leader.term})`);
    });
  program
    .command('servers')
    .description('the live servers of a cluster on etcd (each one adds itself when it starts and leaves when it stops)')
    .option('--update-context', 'write their URLs into the current context, so the CLI fails over among them')
    .action(async (o: { updateContext?: boolean }, cmd: Command) => {
      const { api, g } = client(cmd);
      const i = await api.info();
      const servers = i.servers ?? [{ name: '(this server)', url: api.server }];
      const rows = servers.map((s) => [s.name, s.url, i.leader?.identity === s.name ? 'leader' : i.leader ? 'follower' : '']);
      out(g.output === 'table' ? table(['NAME', 'URL', 'ROLE'], rows) : renderOne(g.output, servers));
      if (o.updateContext) {
        const f = readContexts();
        const name = g.context ?? f.current;
        const ctx = name ? f.contexts[name] : undefined;
        if (!ctx) throw new BatonError('BATON_ERR_BAD_REQUEST', 'no current context to update (baton context ls)');
        ctx.server = servers.map((s) => s.url).join(',');
        writeContexts(f);
        out(`context "${name}" now lists ${servers.length} server(s): ${ctx.server}`);
      }
    });
  program
    .command('dashboard')
    .description("print the web dashboard's address and the token to sign in with")
    .action(async (_o, cmd: Command) => {
      const { api } = client(cmd);
      const t = resolveTarget(cmd.optsWithGlobals() as Globals);
      await api.info();
      out(`dashboard: ${t.server}/\nsign in with this token: ${t.token}\n(the server's certificate is from the cluster's own CA: trust it, or accept it in the browser)`);
    });
  program
    .command('top')
    .description('live CPU and memory of every node and running task (as their agents last sampled them)')
    .option('-w, --watch', 'refresh until interrupted (the default on a terminal)')
    .option('--once', 'print once and exit')
    .option('--interval <ms>', 'refresh interval in milliseconds', '2000')
    .action(async (o, cmd: Command) => {
      const { api, g } = client(cmd);
      const { printTop } = await import('./logs.js');
      await printTop(api, { watch: !o.once && (Boolean(o.watch) || Boolean(process.stdout.isTTY)), intervalMs: Math.max(200, Number(o.interval) || 2000), json: g.output === 'json' });
    });

  // ------------------------------------------------------------ nodes, tasks, events
  const node = program.command('node').description('manage nodes');
  addKindCommands(node, nodeKind);
  node
    .command('update <name>')
    .description('change labels or availability: active, pause (no new tasks), drain (move tasks away)')
    .option('--label-add <k=v...>', 'add or change a label (repeatable)')
    .option('--label-rm <key...>', 'remove a label (repeatable)')
    .addOption(new Option('--availability <a>', 'scheduling availability').choices(['active', 'pause', 'drain']))
    .action(async (name: string, o, cmd: Command) => {
      const { api, g } = client(cmd);
      const labelsAdd = labelMap((o.labelAdd as string[] | undefined) ?? [], '--label-add');
      if (!Object.keys(labelsAdd).length && !o.labelRm && !o.availability) throw new BatonError('BATON_ERR_BAD_REQUEST', 'nothing to change: pass --label-add, --label-rm or --availability');
      const n = await api.call<Node>('PATCH', `/api/v1/nodes/${encodeURIComponent(name)}`, { labelsAdd, labelsRemove: o.labelRm ?? [], availability: o.availability });
      if (g.output !== 'table') return out(renderOne(g.output, n));
      const labels = Object.entries(n.metadata.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-';
      out(`node ${name}: availability ${n.spec.availability}, labels ${labels}`);
    });
  node
    .command('taint <name> <taints...>')
    .description('add taints (key=value:Effect, Effect: NoSchedule, PreferNoSchedule, NoExecute), or remove them with a trailing "-" (key- or key:Effect-)')
    .action(async (name: string, taints: string[], _o, cmd: Command) => {
      const { api } = client(cmd);
      const remove = taints.filter((t) => t.endsWith('-')).map((t) => t.slice(0, -1));
      const add = taints.filter((t) => !t.endsWith('-'));
      const n = await api.call<Node>('PATCH', `/api/v1/nodes/${encodeURIComponent(name)}`, { taintsAdd: add, taintsRemove: remove });
      out(`node ${name}: taints ${(n.spec.taints ?? []).map((t) => `${t.key}${t.value !== undefined ? `=${t.value}` : ''}:${t.effect}`).join(', ') || 'none'}`);
    });
  node
    .command('rm <names...>')
    .description("remove nodes: revoke their certificates and replace their tasks elsewhere")
    .option('-f, --force', 'remove even a Ready node')
    .action(async (names: string[], o, cmd: Command) => {
      const { api } = client(cmd);
      for (const n of names) {
        const r = await api.call<{ revokedCertificates: string[]; orphanedTasks: number }>('DELETE', `/api/v1/nodes/${encodeURIComponent(n)}${o.force ? '?force=true' : ''}`);
        out(`removed node ${n} (${r.revokedCertificates.length} certificate(s) revoked, ${r.orphanedTasks} task(s) to replace)`);
      }
    });

  program
    .command('explain <name>')
    .description('why a task runs where it does, or why it is pending (NAME: a task or a service)')
    .option('--all-nodes', 're-run the filters now against every node')
    .action(async (name: string, o, cmd: Command) => {
      const { api, g } = client(cmd);
      let tasks: Task[];
      try {
        tasks = [await api.get<Task>(taskKind, name)];
      } catch (e) {
        if ((e as BatonError).code !== 'BATON_ERR_NOT_FOUND') throw e;
        await api.get(serviceKind, name).catch((x: BatonError) => {
          throw x.code === 'BATON_ERR_NOT_FOUND' ? new BatonError('BATON_ERR_NOT_FOUND', `no task or service named "${name}"`) : x;
        });
        tasks = sortTasks((await api.tasks({ fieldSelector: { 'spec.serviceName': name } })).items).filter((t) => t.spec.desiredState === 'running');
      }
      const q = o.allNodes ? '?allNodes=true' : '';
      const explained = await Promise.all(tasks.map((t) => api.call<Explanation>('GET', `/api/v1/tasks/${encodeURIComponent(t.metadata.name)}/explain${q}`).then((x) => ({ t, x }))));
      if (g.output !== 'table') return out(renderOne(g.output, explained.map(({ x }) => x)));
      for (const { t, x } of explained) out(formatExplanation(t, x));
    });

  program
    .command('join-token <role>')
    .description('print the token that joins a node (role: worker)')
    .option('--rotate', 'make a new token; the old one stops working for new joins')
    .option('-q, --quiet', 'print only the token')
    .action(async (role: string, o, cmd: Command) => {
      if (role !== 'worker') throw new BatonError('BATON_ERR_BAD_REQUEST', `join-token: role must be "worker" (a server joins through the store instead: baton server --store etcd --cluster-key FILE), got "${role}"`);
      const { api } = client(cmd);
      const r = o.rotate ? await api.call<{ token: string }>('POST', '/api/v1/join/token/rotate', {}) : await api.call<{ token: string }>('GET', '/api/v1/join/token');
      if (o.quiet) return out(r.token);
      if (o.rotate) out('Rotated: the previous token no longer joins new nodes; joined nodes are not affected.');
      out(`To add a worker node, run on it:\n\n    baton agent --join ${api.servers.join(',')} --token ${r.token} --address ADDRESS --data-dir DIR\n`);
    });

  registerAccessCommands(program);

  // Endpoints: what every node's routing mesh routes to (ready tasks, published ports, load-balancing settings).
  addKindCommands(program.command('endpoints').description("show services' routing: published ports and ready endpoints"), endpointsKind);

  program
    .command('ps')
    .description('list tasks of every service')
    .option('-a, --all', 'include stopped tasks (history)')
    .option('--node <name>', 'only tasks on this node')
    .action(async (o, cmd: Command) => {
      const { api, g } = client(cmd);
      const r = await api.tasks(o.node ? { fieldSelector: { 'spec.nodeName': o.node } } : {});
      const items = sortTasks(r.items).filter((t) => o.all || t.spec.desiredState === 'running' || !isTerminal(t.status.state));
      out(taskTable(g.output, items));
    });

  program
    .command('events')
    .description('show cluster events (newest last)')
    .option('-f, --follow', 'keep printing new events')
    .option('--service <name>', 'only events of this service')
    .option('--node <name>', 'only events of this node')
    .option('--type <type>', 'only events of this type (Normal, Warning) or reason (TaskCrashed, NodeNotReady, ...)')
    .option('--limit <n>', 'how many past events', '100')
    .action(async (o, cmd: Command) => {
      const { api, g } = client(cmd);
      const q = { service: o.service, node: o.node, type: o.type, limit: Number(o.limit) };
      if (!o.follow) {
        const r = await api.events(q);
        out(render(g.output, r.items, eventKind.columns));
        return;
      }
      for await (const e of api.watchEvents(q)) {
        const ev = e.object;
        out(g.output === 'table' ? eventKind.columns.map((c) => c.get(ev)).join('  ') : JSON.stringify(ev));
      }
    });

  registerStateCommands(program);
  registerExec(program);
  registerRegistryCommands(program);

  program
    .command('completion')
    .description('print the shell completion script: source <(baton completion bash), or zsh after compinit')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh']))
    .action(async (shell: 'bash' | 'zsh') => {
      const { completionScript } = await import('./completion.js');
      process.stdout.write(completionScript(shell));
    });
  return program;
}

interface Explanation {
  task: string;
  decision: (SchedulingDecision & { at: string }) | null;
  nodes?: { node: string; fits: boolean; reason?: string }[];
}

/** formatExplanation prints one task's scheduling decision for people. */
function formatExplanation(t: Task, x: Explanation): string {
  const lines: string[] = [];
  const where = t.spec.nodeName ? `${t.status.state} on ${t.spec.nodeName}` : `${t.status.state}${t.status.pendingReason ? `: ${t.status.pendingReason}` : ''}`;
  lines.push(`${t.metadata.name} (${where})`);
  const d = x.decision;
  if (!d) lines.push('  no scheduling decision recorded yet');
  else {
    lines.push(`  decided ${d.at}: ${d.evaluated} node(s) evaluated, ${d.feasible} feasible`);
    const filtered = Object.entries(d.filtered);
    if (filtered.length) lines.push(`  ruled out: ${filtered.map(([r, n]) => `${n} ${r}`).join(', ')}`);
    const classes = Object.entries(d.classFiltered ?? {});
    if (classes.length) lines.push(`  ruled out by node class: ${classes.map(([c, n]) => `${n} ${c}`).join('; ')}`);
    d.ranked.forEach((r, i) => lines.push(`  ${i === 0 ? 'ranked:' : '       '} ${i + 1}. ${r.node}  ${Object.entries(r.keys).map(([k, v]) => `${k}=${v}`).join(' ')}`));
  }
  if (x.nodes) {
    lines.push('  every node now:');
    for (const n of x.nodes) lines.push(`    ${n.node.padEnd(20)} ${n.fits ? 'fits' : `no: ${n.reason}`}`);
  }
  return lines.join('\n');
}

function sortTasks(ts: Task[]): Task[] {
  return [...ts].sort((a, b) => a.spec.serviceName.localeCompare(b.spec.serviceName) || a.spec.slot - b.spec.slot || b.metadata.creationTimestamp.localeCompare(a.metadata.creationTimestamp));
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  // What the completion scripts run on Tab: the words after `baton`, the last being the one under the cursor.
  if (argv[2] === '__complete') {
    const { complete } = await import('./completion.js');
    const words = argv.slice(3);
    const candidates = await complete(program, words.length ? words : ['']).catch(() => []);
    if (candidates.length) process.stdout.write(candidates.join('\n') + '\n');
    return;
  }
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    const err = e as Error & { code?: string; exitCode?: number };
    if (err.code?.startsWith('commander.')) {
      process.exitCode = err.exitCode ?? 1;
      return;
    }
    if (isBatonError(err)) {
      process.stderr.write(`error: ${err.message}\n`);
      if (err.details.length) process.stderr.write(formatDetails(err.details) + '\n');
    } else {
      process.stderr.write(`error: ${err.message}\n`);
    }
    if (process.env.BATON_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}
