/**
 * Logs, metrics, top and events on a real cluster: a server and two agent
 * processes (127.0.0.2, 127.0.0.3) on the real dockerd.
 */
import { createHash } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import parsePrometheus from 'parse-prometheus-text-format';
import { tlsTransport } from '../../src/api/tls.js';
import type { Node, TopResponse } from '../../src/api/types.js';
import { nodeKind } from '../../src/api/kinds.js';
import { TestCluster, live } from '../helpers/cluster.js';
import { docker, eventually, freePort, startProc, stopProc, waitOutput, getOnce } from '../helpers/proc.js';

const IMAGE = 'baton-test/busybox:latest';
const LINES = 50_000;
/** Each line: "line <i> " + 90 x's: about 5 MB in all. */
const PAD = 'x'.repeat(90);
const expected = Array.from({ length: LINES }, (_, i) => `line ${i} ${PAD}`);

type Family = { name: string; type: string; metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string> }[] };

describe('observability', () => {
  // A node is Down only after 30 s: the agent-restart test kills an agent and starts it again, which takes
  // seconds on a loaded machine, and its task must stay on that node (not be replaced elsewhere) meanwhile.
  const c = new TestCluster('baton-obs-', { heartbeatIntervalMs: 300, nodeDownAfterMs: 30_000, bookmarkIntervalMs: 1000, usageBucketMs: 500 }, 37000);

  beforeAll(async () => {
    await c.start(['n2', 'n3']);
  }, 120_000);
  afterAll(async () => {
    await c.stop();
  }, 60_000);

  it('a task writes 5 MB: every line arrives, in order (count and checksum), stdout and stderr apart', async () => {
    await c.apply(
      'obs',
      `services:
  chatty:
    image: ${IMAGE}
    command: ["sh", "-c", "i=0; while [ $$i -lt ${LINES} ]; do echo \\"line $$i ${PAD}\\"; i=$$((i+1)); done; echo to-stderr >&2; exec sleep 3600"]
`,
    );
    const want = createHash('sha256').update(expected.join('\n') + '\n').digest('hex');
    let got: string[] = [];
    await eventually(async () => {
      const r = await c.baton(['logs', 'obs_chatty']);
      expect(r.code, r.stderr).toBe(0);
      got = r.stdout.split('\n').filter(Boolean);
      expect(got.length).toBe(LINES);
      expect(r.stderr).toMatch(/\| to-stderr/);
    }, 60_000);
    // Every line is prefixed with its task and node, as docker service logs does.
    const task = (await c.tasksOf('obs_chatty'))[0]!;
    expect(got[0]).toMatch(new RegExp(`^${task.metadata.name.replace(/\./g, '\\.')}@n[23]    \\| line 0 x+$`));
    const texts = got.map((l) => l.slice(l.indexOf('| ') + 2));
    expect(createHash('sha256').update(texts.join('\n') + '\n').digest('hex')).toBe(want);

    // tail, grep, timestamps, since.
    // The last 4 records: the last stdout lines, and the stderr line among them or not (the engine reads the two pipes apart).
    const tail = await c.baton(['logs', 'obs_chatty', '--tail', '4']);
    const tailOut = tail.stdout.trim().split('\n').map((l) => l.slice(l.indexOf('| ') + 2));
    expect(tailOut).toEqual(expected.slice(-tailOut.length));
    expect(tailOut.length + (tail.stderr.includes('| to-stderr') ? 1 : 0)).toBe(4);
    const grep = await c.baton(['logs', 'obs_chatty', '--grep', '^line 4999[0-9] ']);
    expect(grep.stdout.trim().split('\n')).toHaveLength(10);
    const ts = await c.baton(['logs', 'obs_chatty', '--tail', '1', '-t']);
    expect(ts.stdout + ts.stderr).toMatch(/\| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (line 49999 x+|to-stderr)\n$/);
    const since = await c.baton(['logs', 'obs_chatty', '--since', '2099-01-01T00:00:00Z']);
    expect(since.stdout).toBe('');
    const bad = await c.baton(['logs', 'obs_chatty', '--grep', '(']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/--grep/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  }, 180_000);

  it('follows new lines and new tasks; logs outlive the removed containers, merged in time order across tasks and nodes', async () => {
    await c.apply(
      'obs2',
      `services:
  ticker:
    image: ${IMAGE}
    command: ["sh", "-c", "i=0; while true; do echo \\"tick $$i from $$BATON_SLOT\\"; i=$$((i+1)); sleep 0.1; done"]
`,
    );
    await eventually(async () => expect(live(await c.tasksOf('obs2_ticker'))).toHaveLength(1), 30_000);
    const f = startProc(['logs', '-f', 'obs2_ticker', '--tail', '0'], c.env);
    try {
      await waitOutput(f, /tick \d+ from 1/, 15_000);
      const r = await c.baton(['service', 'scale', 'obs2_ticker=2']);
      expect(r.code, r.stderr).toBe(0);
      // The task that starts later (slot 2, maybe on the other node) shows up in the same follow.
      await waitOutput(f, /tick \d+ from 2/, 30_000);
    } finally {
      await stopProc(f);
    }
    const tasks = await c.tasksOf('obs2_ticker');
    expect(tasks.length).toBe(2);
    const names = tasks.map((t) => t.metadata.name);
    const r = await c.baton(['stack', 'rm', 'obs2']);
    expect(r.code, r.stderr).toBe(0);
    await eventually(async () => expect(await c.running('obs2_ticker')).toHaveLength(0), 30_000);
    await eventually(async () => expect((await docker(['ps', '-aq', '--filter', `label=baton.cluster=${c.clusterId}`, '--filter', 'label=baton.service=obs2_ticker'])).trim()).toBe(''), 30_000);
    // The containers are gone; their logs are not: by service and by task.
    const bySvc = await c.baton(['logs', 'obs2_ticker']);
    expect(bySvc.code, bySvc.stderr).toBe(0);
    for (const n of names) expect(bySvc.stdout).toContain(`${n}@`);
    const byTask = await c.baton(['logs', names[0]!, '--tail', '2']);
    expect(byTask.stdout.trim().split('\n')).toHaveLength(2);
    expect(byTask.stdout).toMatch(/tick \d+ from [12]/);
    // One time order across both tasks (and nodes), their lines interleaved; --no-merge keeps each task's lines together.
    const rows = (out: string) => out.trim().split('\n').map((l) => ({ who: l.slice(0, l.indexOf(' ')), time: l.slice(l.indexOf('| ') + 2, l.indexOf('| ') + 32) }));
    const switches = (rs: { who: string }[]) => rs.filter((r, i) => i > 0 && r.who !== rs[i - 1]!.who).length;
    const merged = rows((await c.baton(['logs', 'obs2_ticker', '-t'])).stdout);
    expect(merged.length).toBeGreaterThan(10);
    for (let i = 1; i < merged.length; i++) expect(merged[i]!.time >= merged[i - 1]!.time, `${merged[i - 1]!.time} then ${merged[i]!.time}`).toBe(true);
    expect(switches(merged)).toBeGreaterThan(2);
    const grouped = rows((await c.baton(['logs', 'obs2_ticker', '-t', '--no-merge'])).stdout);
    expect(grouped).toHaveLength(merged.length);
    expect(switches(grouped)).toBe(1);
  }, 120_000);

  it('an agent restart loses and repeats no line; a container restart keeps its lines', async () => {
    await c.apply(
      'obs5',
      `services:
  count:
    image: ${IMAGE}
    command: ["sh", "-c", "i=0; while [ $$i -lt 60 ]; do echo \\"n $$i\\"; i=$$((i+1)); sleep 0.05; done; exit 1"]
    deploy: { restart_policy: { condition: on-failure, delay: 100ms } }
`,
    );
    const t = await eventually(async () => {
      const ts = live(await c.tasksOf('obs5_count'));
      expect(ts).toHaveLength(1);
      return ts[0]!;
    }, 30_000);
    const node = t.spec.nodeName;
    // Kill the agent mid-stream, let the container write on, start the agent again.
    await stopProc(c.agents.get(node)!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 1500));
    c.startAgent(node);
    // The container ends (exit 1) and restarts in place: the second run's lines follow the first's.
    await eventually(async () => {
      const r = await c.baton(['logs', t.metadata.name]);
      const ns = r.stdout.split('\n').filter(Boolean).map((l) => Number(/\| n (\d+)$/.exec(l)?.[1]));
      expect(ns.length).toBeGreaterThanOrEqual(120);
      expect(ns.slice(0, 120)).toEqual([...Array.from({ length: 60 }, (_, i) => i), ...Array.from({ length: 60 }, (_, i) => i)]);
    }, 60_000);
    expect((await c.baton(['stack', 'rm', 'obs5'])).code).toBe(0);
  }, 120_000);

  it('serves Prometheus metrics on the server and on every agent, and usage in top', async () => {
    await c.apply(
      'obs3',
      `services:
  web:
    image: ${IMAGE}
    command: ["sh", "-c", "echo hello > /tmp/index.html; exec httpd -f -p $$PORT -h /tmp"]
    ports: ["37990:80"]
    deploy: { replicas: 2 }
`,
    );
    await eventually(async () => expect(live(await c.tasksOf('obs3_web')).filter((t) => t.status.ready !== false)).toHaveLength(2), 30_000);
    // Traffic through the routing mesh, to be counted.
    await eventually(async () => {
      const res = await fetch('http://127.0.0.2:37990/', { signal: AbortSignal.timeout(2000) });
      expect(await res.text()).toContain('hello');
    }, 15_000);
    // Ten requests, each on its own connection (the kernel path counts connections).
    for (let i = 0; i < 10; i++) await getOnce('http://127.0.0.2:37990/');

    // Server: admin token required; the text parses.
    const tls = tlsTransport({ caPem: readFileSync(join(c.dir, 'server/server/ca.crt'), 'utf8') });
    const anon = await tls.fetch(`${c.url}/metrics`, tls.init as RequestInit);
    expect(anon.status).toBe(401);
    await anon.body?.cancel();
    const res = await c.api.raw('GET', '/metrics');
    let text = '';
    for await (const chunk of res.body!) text += Buffer.from(chunk).toString();
    const fams = parsePrometheus(text) as Family[];
    const fam = (n: string) => fams.find((f) => f.name === n);
    expect(fam('baton_api_requests_total')?.type).toBe('COUNTER');
    expect(fam('baton_api_request_duration_seconds')?.type).toBe('HISTOGRAM');
    expect(fam('baton_nodes')!.metrics.find((m) => m.labels?.state === 'ready')?.value).toBe('2');
    expect(Number(fam('baton_tasks')!.metrics.find((m) => m.labels?.state === 'running' && m.labels?.desired === 'running')?.value)).toBeGreaterThanOrEqual(2);
    expect(Number(fam('baton_scheduler_placements_total')!.metrics.find((m) => m.labels?.result === 'placed')?.value)).toBeGreaterThanOrEqual(2);
    expect(fam('baton_scheduler_pass_duration_seconds')?.type).toBe('HISTOGRAM');
    expect(fam('baton_controller_reconcile_duration_seconds')!.metrics.length).toBeGreaterThan(0);
    expect(fam('baton_controller_queue_depth')!.metrics.map((m) => m.labels?.controller)).toContain('service');
    expect(Number(fam('baton_watches')!.metrics.find((m) => m.labels?.kind === 'tasks')?.value)).toBeGreaterThanOrEqual(2);

    // Agents: per-task CPU and memory from the cgroup, and the mesh's counters (the request above went through n2's mesh).
    const n2 = await c.api.get<Node>(nodeKind, 'n2');
    expect(n2.status.agentPort).toBeGreaterThan(0);
    try {
      const agentText = await eventually(async () => {
        const r = await tls.fetch(`https://127.0.0.2:${n2.status.agentPort}/metrics`, tls.init as RequestInit);
        const t = await r.text();
        expect(t).toMatch(/baton_task_memory_bytes\{task="obs3_web/);
        // Every one of the ten connections is counted (the kernel path's counters are read live, carried across table swaps).
        const conns = (parsePrometheus(t) as Family[]).find((f) => f.name === 'baton_mesh_connections_total')?.metrics.filter((m) => m.labels?.service === 'obs3_web') ?? [];
        expect(conns.reduce((a, m) => a + Number(m.value), 0), t.split('\n').filter((l) => l.startsWith('baton_mesh_')).join('\n')).toBeGreaterThanOrEqual(10);
        return t;
      }, 20_000);
      const af = parsePrometheus(agentText) as Family[];
      expect(af.find((f) => f.name === 'baton_task_cpu_seconds_total')!.metrics.some((m) => Number(m.value) > 0)).toBe(true);
      // Logs on the listener are for the server only.
      const denied = await tls.fetch(`https://127.0.0.2:${n2.status.agentPort}/logs?service=obs3_web`, tls.init as RequestInit);
      expect(denied.status).toBe(403);
    } finally {
      await tls.close();
    }

    // top: every running task with its memory, nodes with their sums.
    const top = await eventually(async () => {
      const t = await c.api.top();
      expect(t.tasks.filter((x) => x.service === 'obs3_web')).toHaveLength(2);
      return t as TopResponse;
    }, 20_000);
    expect(top.tasks.every((t) => t.memoryBytes > 0)).toBe(true);
    expect(top.nodes.find((n) => n.name === 'n2')!.memoryBytes).toBeGreaterThan(0);
    const cli = await c.baton(['top', '--once']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/obs3_web\.\d\.\w+ +obs3_web +n[23]/);
    // The service's history has requests per second for the dashboard's charts.
    await eventually(async () => {
      const s = await c.api.serviceStats('obs3_web');
      expect(s.points.some((p) => p.tasks === 2 && p.memoryBytes > 0)).toBe(true);
      expect(s.points.some((p) => p.requestsPerSecond > 0)).toBe(true);
    }, 20_000);
  }, 120_000);

  it('lets a real Prometheus find and scrape every agent and every task that serves metrics; promtool passes both outputs; the Grafana dashboard names only real metrics', async () => {
    await c.apply(
      'obs5',
      `services:
  exporter:
    image: ${IMAGE}
    command: ["sh", "-c", "mkdir -p /www && printf '# HELP demo_up A task that serves metrics.\\n# TYPE demo_up gauge\\ndemo_up 1\\n' > /www/metrics && exec httpd -f -p 9100 -h /www"]
    x-baton:
      metrics: { port: 9100, path: /metrics }
`,
    );
    await eventually(async () => expect(live(await c.tasksOf('obs5_exporter')).filter((t) => t.status.state === 'running')).toHaveLength(1), 30_000);
    const dir = mkdtempSync(join(c.dir, 'prom-'));
    const ca = join(c.dir, 'server/server/ca.crt');
    writeFileSync(join(dir, 'token'), c.env.BATON_TOKEN!, { mode: 0o600 });
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global: { scrape_interval: 1s, scrape_timeout: 1s }
scrape_configs:
  - job_name: baton
    tls_config: { ca_file: ${ca} }
    http_sd_configs:
      - url: ${c.url}/api/v1/sd/prometheus
        refresh_interval: 1s
        authorization: { type: Bearer, credentials_file: ${join(dir, "token")} }
        tls_config: { ca_file: ${ca} }
`,
    );
    const port = await freePort();
    const prom = spawn('/usr/bin/prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let promLog = '';
    prom.stderr!.on('data', (d: Buffer) => (promLog += d.toString()));
    const api = async <T,>(path: string): Promise<T> => {
      const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(3000) });
      return ((await r.json()) as { data: T }).data;
    };
    try {
      // Its targets page: both agents (https, the cluster CA) and the task (http, its own address), all up.
      type Target = { labels: Record<string, string>; scrapeUrl: string; health: string; lastError: string };
      const targets = await eventually(async () => {
        const t = (await api<{ activeTargets: Target[] }>('/api/v1/targets')).activeTargets;
        expect(t.map((x) => `${x.labels.baton_role}/${x.labels.baton_node}/${x.health}/${x.lastError}`).sort(), promLog).toEqual(['agent/n2/up/', 'agent/n3/up/', expect.stringMatching(/^task\/n[23]\/up\/$/)]);
        return t;
      }, 60_000);
      const task = targets.find((t) => t.labels.baton_role === 'task')!;
      expect(task.labels).toMatchObject({ baton_stack: 'obs5', baton_service: 'obs5_exporter', baton_slot: '1' });
      expect(task.scrapeUrl).toMatch(/^http:\/\/10\.137\.\d+\.\d+:9100\/metrics$/);
      expect(targets.filter((t) => t.labels.baton_role === 'agent').every((t) => t.scrapeUrl.startsWith('https://127.0.0.'))).toBe(true);
      // What it scraped is queryable, labelled by task.
      await eventually(async () => {
        const r = await api<{ result: { metric: Record<string, string> }[] }>('/api/v1/query?query=demo_up');
        expect(r.result.map((x) => x.metric.baton_service)).toEqual(['obs5_exporter']);
      }, 30_000);

      // promtool lints the exposition format of the server's and an agent's /metrics.
      const tls = tlsTransport({ caPem: readFileSync(ca, 'utf8') });
      const n2 = await c.api.get<Node>(nodeKind, 'n2');
      let agentText: string;
      try {
        agentText = await (await tls.fetch(`https://127.0.0.2:${n2.status.agentPort}/metrics`, tls.init as RequestInit)).text();
      } finally {
        await tls.close();
      }
      const res = await c.api.raw('GET', '/metrics');
      let serverText = '';
      for await (const chunk of res.body!) serverText += Buffer.from(chunk).toString();
      for (const text of [serverText, agentText]) {
        const lint = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
        expect(lint.status, `${lint.stdout}${lint.stderr}`).toBe(0);
      }

      // The Grafana dashboard: it parses, every query is valid PromQL (Prometheus evaluates it), and every metric it names is served.
      const served = new Set([...(parsePrometheus(serverText) as Family[]), ...(parsePrometheus(agentText) as Family[])].map((f) => f.name));
      const dash = JSON.parse(readFileSync(new URL('../../contrib/grafana/baton.json', import.meta.url), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
      const exprs = dash.panels.flatMap((p) => p.targets.map((t) => t.expr));
      expect(exprs.length).toBeGreaterThanOrEqual(10);
      for (const expr of exprs) {
        const names = [...expr.matchAll(/\bbaton_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
        expect(names.length, expr).toBeGreaterThan(0);
        for (const n of names) expect(served, `${n} in ${expr}`).toContain(n);
        const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(3000) });
        expect(((await r.json()) as { status: string }).status, expr).toBe('success');
      }
    } finally {
      prom.kill('SIGTERM');
      await new Promise((r) => (prom.exitCode !== null ? r(null) : prom.once('exit', r)));
    }
  }, 180_000);

  it('records state changes as events, filtered by service, node and type', async () => {
    await c.apply(
      'obs4',
      `services:
  crash:
    image: ${IMAGE}
    command: ["sh", "-c", "sleep 0.3; exit 3"]
    deploy: { restart_policy: { condition: on-failure, max_attempts: 1 } }
`,
    );
    await eventually(async () => {
      const r = await c.api.events({ service: 'obs4_crash' });
      const reasons = r.items.map((e: { reason: string }) => e.reason);
      for (const want of ['DeployStarted', 'TaskStarted', 'TaskCrashed', 'TaskRestarted', 'TaskFailed', 'Rescheduled']) expect(reasons).toContain(want);
    }, 30_000);
    const warn = await c.baton(['events', '--service', 'obs4_crash', '--type', 'warning']);
    expect(warn.stdout).toMatch(/TaskCrashed/);
    expect(warn.stdout).not.toMatch(/TaskStarted/);
    const failed = await c.baton(['events', '--type', 'TaskFailed', '--node', 'n2']);
    expect(failed.code).toBe(0);
    for (const line of failed.stdout.trim().split('\n').slice(1)) if (line) expect(line).toMatch(/TaskFailed/);
    // obs3 finished its deploy in the test before.
    const done = await c.api.events({ service: 'obs3_web', type: 'DeployFinished' });
    expect(done.items.length).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
