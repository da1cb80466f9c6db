/**
 * The mesh's HAProxy data path against the host's real HAProxy: TCP
 * servers on loopback stand for endpoints (each answers with its name, or
 * with the PROXY protocol header it was sent), the client dials the
 * frontend HAProxy listens on.
 *
 * - round robin and least connections, the PROXY protocol v1 and v2;
 * - an endpoint added at run time: no reload (the worker's PID stays), and
 *   least_conn still knows the connection open on the first endpoint;
 * - an endpoint removed: its open connection runs on, no new one reaches
 *   it, and once it closed the server is deleted with its counts kept;
 * - a new frontend reloads, and the counts of the replaced worker stay;
 * - bad input (an address that is not IPv4) changes nothing;
 * - HAProxy dies with its agent even on kill -9 (setpriv's death signal),
 *   and one left by an earlier agent on the same data dir is stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { findHaproxy, HaproxyPath, type WantedFrontend } from '../src/agent/net/haproxy.js';
import { parseProc, parseStats, renderConfig, statsCounts } from '../src/agent/net/haproxyConfig.js';
import { eventually } from './helpers/proc.js';

const silent = pino({ level: 'silent' });
const ADDR = '127.0.0.1';

/** A backend: answers each line with `name\n` (so a connection can stay open); `seen` holds every connection's bytes. */
function backend(name: string): Promise<{ server: Server; port: number; seen: Buffer[]; open: Set<Socket> }> {
  const seen: Buffer[] = [];
  const open = new Set<Socket>();
  const server = createServer((s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => {});
    const i = seen.push(Buffer.alloc(0)) - 1;
    s.on('data', (d) => {
      seen[i] = Buffer.concat([seen[i]!, d]);
      // One answer per line the client sent (a PROXY v2 header holds newlines too: only what ends the bytes counts).
      if (seen[i]!.at(-1) === 0x0a) s.write(`${name}\n`);
    });
  });
  return new Promise((resolve) => server.listen(0, ADDR, () => resolve({ server, port: (server.address() as { port: number }).port, seen, open })));
}

/** ask opens a connection, sends a line, and returns the first line answered (closing unless `keep`). */
function ask(port: number, keep = false): Promise<{ answer: string; sock: Socket }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, ADDR);
    let b = '';
    sock.on('error', reject);
    sock.on('data', (d) => {
      b += d;
      const i = b.indexOf('\n');
      if (i < 0) return;
      if (!keep) sock.end();
      resolve({ answer: b.slice(0, i), sock });
    });
    sock.write('hello\n');
  });
}

const master = (dir: string) => Number(readFileSync(join(dir, 'haproxy', 'haproxy.pid'), 'utf8').trim());
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// scripts/setup.sh installs HAProxy: without it this fails rather than skips.
describe('HaproxyPath (the host\'s HAProxy)', () => {
  const dirs: string[] = [];
  const paths: HaproxyPath[] = [];
  const backends: Awaited<ReturnType<typeof backend>>[] = [];
  const children: ChildProcess[] = [];
  let h: HaproxyPath;
  let dir: string;

  beforeAll(async () => {
    for (const n of ['a', 'b', 'c']) backends.push(await backend(n));
    dir = mkdtempSync(join(tmpdir(), 'baton-haproxy-'));
    dirs.push(dir);
    const opened = await HaproxyPath.open({ dataDir: dir, log: silent, connectTimeoutMs: 500 });
    if (typeof opened === 'string') throw new Error(opened);
    h = opened;
    paths.push(h);
  }, 30_000);

  afterAll(async () => {
    for (const p of paths) await p.close();
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const b of backends) {
      for (const s of b.open) s.destroy();
      b.server.close();
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const ep = (i: number) => ({ task: `task-${'abc'[i]}`, address: ADDR, port: backends[i]!.port });
  const fe = (over: Partial<WantedFrontend> = {}): WantedFrontend => ({ key: '127.0.0.1:1', service: 'svc', address: ADDR, algorithm: 'round_robin', proxyProtocol: 'off', endpoints: [ep(0), ep(1)], ...over });
  const workerPid = async () => parseProc(await cliOf(dir, 'show proc'))!.current[0];

  it('balances round robin over the endpoints of a frontend it listens on', async () => {
    const { live, err } = await h.prepare([fe()]);
    expect(err).toBeUndefined();
    const at = live.get('127.0.0.1:1')!;
    expect(at.address).toBe(ADDR);
    const answers: string[] = [];
    for (let i = 0; i < 6; i++) answers.push((await ask(at.port)).answer);
    expect(answers.filter((a) => a === 'a')).toHaveLength(3);
    expect(answers.filter((a) => a === 'b')).toHaveLength(3);
  });

  it('adds an endpoint at run time without a reload, and least_conn still sees the connection already open', async () => {
    const lc = fe({ algorithm: 'least_conn' });
    const { live } = await h.prepare([lc]);
    await h.finish([lc]);
    const port = live.get('127.0.0.1:1')!.port;
    // Pin one endpoint with a connection that stays open.
    const pinned = await ask(port, true);
    const before = await workerPid();
    const more = fe({ algorithm: 'least_conn', endpoints: [ep(0), ep(1), ep(2)] });
    const r = await h.prepare([more]);
    expect(r.err).toBeUndefined();
    await h.finish([more]);
    expect(await workerPid()).toBe(before);
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++) {
      seen.add((await ask(port)).answer);
      // HAProxy counts a connection until it has closed both sides: wait until it counts the pinned one alone, or two closing
      // ones would tie with it.
      await eventually(async () => expect((await h.counts()).get('svc')!.total.active).toBe(1), 10_000);
    }
    expect(seen.has(pinned.answer)).toBe(false);
    expect(seen.size).toBe(2);
    pinned.sock.destroy();
  });

  it('drains an endpoint that leaves: its open connection runs on, new ones go elsewhere, and its counts stay once it is deleted', async () => {
    const all = fe({ endpoints: [ep(0), ep(1), ep(2)] });
    const { live } = await h.prepare([all]);
    const port = live.get('127.0.0.1:1')!.port;
    let open: { answer: string; sock: Socket } | undefined;
    for (let i = 0; i < 3 && open?.answer !== 'c'; i++) {
      open?.sock.destroy();
      open = await ask(port, true);
    }
    expect(open!.answer).toBe('c');
    const countsBefore = (await h.counts()).get('svc')!.byTask.get('task-c')!.connections;
    expect(countsBefore).toBeGreaterThan(0);
    const two = fe({ endpoints: [ep(0), ep(1)] });
    await h.prepare([two]);
    expect(await h.finish([two])).toBeUndefined();
    for (let i = 0; i < 6; i++) expect((await ask(port)).answer).not.toBe('c');
    // The drained connection still works.
    const again = await new Promise<string>((resolve) => {
      open!.sock.once('data', (d) => resolve(String(d).trim()));
      open!.sock.write('still there?\n');
    });
    expect(again).toBe('c');
    open!.sock.destroy();
    await eventually(async () => {
      await h.finish([two]);
      expect(await cliOf(dir, `@!${await workerPid()} show stat`)).not.toMatch(/^b0,s2,/m);
    }, 10_000);
    expect((await h.counts()).get('svc')!.byTask.get('task-c')!.connections).toBe(countsBefore);
  });

  it('writes the PROXY protocol header with the client address (v1 and v2), through a reload that keeps the counts', async () => {
    const before = await workerPid();
    const counted = (await h.counts()).get('svc')!.total.connections;
    const frontends = [fe({ endpoints: [ep(0)] }), fe({ key: '127.0.0.1:2', service: 'p1', proxyProtocol: 'v1', endpoints: [ep(1)] }), fe({ key: '127.0.0.1:3', service: 'p2', proxyProtocol: 'v2', endpoints: [ep(2)] })];
    const { live, err } = await h.prepare(frontends);
    expect(err).toBeUndefined();
    expect(await workerPid()).not.toBe(before);
    expect((await h.counts()).get('svc')!.total.connections).toBe(counted);
    const client = await ask(live.get('127.0.0.1:2')!.port);
    const v1 = backends[1]!.seen.at(-1)!.toString();
    expect(v1).toBe(`PROXY TCP4 127.0.0.1 127.0.0.1 ${client.sock.localPort} ${live.get('127.0.0.1:2')!.port}\r\nhello\n`);
    await ask(live.get('127.0.0.1:3')!.port);
    const v2 = backends[2]!.seen.at(-1)!;
    expect(v2.subarray(0, 12)).toEqual(Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]));
    expect(v2.subarray(16, 20)).toEqual(Buffer.from([127, 0, 0, 1]));
    expect(v2.subarray(-6).toString()).toBe('hello\n');
    // Frontends that go are removed by finish (a reload), after the kernel stopped sending there.
    expect(await h.finish([frontends[0]!])).toBeUndefined();
    await expect(ask(live.get('127.0.0.1:2')!.port)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('refuses an endpoint that is not an IPv4 address and keeps what it served', async () => {
    const port = (await h.prepare([fe({ endpoints: [ep(0)] })])).live.get('127.0.0.1:1')!.port;
    const pid = await workerPid();
    const bad = fe({ endpoints: [ep(0), { task: 'evil', address: '127.0.0.1:80 check\nfrontend x', port: 80 }] });
    const r = await h.prepare([bad]);
    expect(r.err).toMatch(/endpoint "evil": address .* is not an IPv4 address/);
    expect(await workerPid()).toBe(pid);
    expect((await ask(port)).answer).toBe('a');
    expect(readFileSync(join(dir, 'haproxy', 'haproxy.cfg'), 'utf8')).not.toContain('frontend x');
  });

  it('dies with its agent, even one killed with -9', async () => {
    const d = mkdtempSync(join(tmpdir(), 'baton-haproxy-'));
    dirs.push(d);
    // The built module (npm test builds first), in a plain Node process: the agent's stand-in.
    const script = `import { HaproxyPath } from ${JSON.stringify(join(process.cwd(), 'dist/src/agent/net/haproxy.js'))};
const log = { info() {}, warn() {}, debug() {}, error() {} };
const h = await HaproxyPath.open({ dataDir: ${JSON.stringify(d)}, log, connectTimeoutMs: 500 });
if (typeof h === 'string') { console.error(h); process.exit(1); }
console.log('up');
setInterval(() => {}, 1000);`;
    writeFileSync(join(d, 'agent.mjs'), script);
    const child = spawn(process.execPath, [join(d, 'agent.mjs')], { stdio: ['ignore', 'pipe', 'inherit'], cwd: process.cwd() });
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (x) => String(x).includes('up') && resolve());
      child.once('exit', (code) => reject(new Error(`the agent stand-in exited with ${code}`)));
    });
    const pid = master(d);
    expect(alive(pid)).toBe(true);
    child.kill('SIGKILL');
    await eventually(() => expect(alive(pid)).toBe(false), 10_000);
  }, 30_000);

  it('stops the HAProxy an earlier agent on the same data dir left running', async () => {
    const d = mkdtempSync(join(tmpdir(), 'baton-haproxy-'));
    dirs.push(d);
    mkdirSync(join(d, 'haproxy'));
    const cfg = join(d, 'haproxy', 'haproxy.cfg');
    writeFileSync(cfg, renderConfig([], { connectTimeoutMs: 500, drainMs: 1000, idleSocket: join(d, 'haproxy', 'idle.sock') }).text);
    // Detached, without a death signal: as if an agent's HAProxy outlived it.
    const left = spawn(findHaproxy()!, ['-W', '-db', '-f', cfg, '-p', join(d, 'haproxy', 'haproxy.pid')], { stdio: 'ignore', detached: true });
    children.push(left);
    await eventually(() => expect(master(d)).toBe(left.pid), 10_000);
    const opened = await HaproxyPath.open({ dataDir: d, log: silent, connectTimeoutMs: 500 });
    if (typeof opened === 'string') throw new Error(opened);
    paths.push(opened);
    await eventually(() => expect(alive(left.pid!)).toBe(false), 10_000);
    expect(master(d)).not.toBe(left.pid);
  }, 30_000);
});

describe('HAProxy configuration and statistics', () => {
  it('names frontends, backends and servers by index only, and maps statistics back to services and tasks', () => {
    const { text, index } = renderConfig([{ key: 'k', service: 'shop_web"; x', address: '127.0.0.5', port: 4000, algorithm: 'least_conn', proxyProtocol: 'v2', endpoints: [{ task: 't; rm', address: '10.1.0.2', port: 80 }] }], { connectTimeoutMs: 2000, drainMs: 60_000, idleSocket: '/run/x/idle.sock' });
    expect(text).not.toContain('shop_web');
    expect(text).not.toContain('rm');
    expect(text).toContain('frontend f0\n  bind 127.0.0.5:4000\n  default_backend b0\nbackend b0\n  balance leastconn\n  server s0 10.1.0.2:80 send-proxy-v2\n');
    const rows = parseStats('# pxname,svname,scur,stot,bin,bout,econ,wretr,wredis,ctime,ctime_max\nb0,s0,1,5,100,200,0,1,0,3,9\nb0,BACKEND,1,6,100,200,1,1,0,3,9\n');
    const counts = statsCounts(rows, index).get('shop_web"; x')!;
    expect(counts.total).toMatchObject({ connections: 6, active: 1, bytesIn: 100, bytesOut: 200, dropped: 1, retries: 1, errors: 1 });
    expect(counts.byTask.get('t; rm')).toMatchObject({ connections: 5, errors: 1, connectMsSum: 15, connectMsMax: 9 });
  });

  it('refuses a port that is not an integer, naming the frontend', () => {
    expect(() => renderConfig([{ key: 'k', service: 's', address: '127.0.0.5', port: 70000, algorithm: 'round_robin', proxyProtocol: 'off', endpoints: [] }], { connectTimeoutMs: 2000, drainMs: 1000, idleSocket: '/tmp/i.sock' })).toThrow(/service "s" \(k\): port 70000 is not an integer/);
  });

  it('reads show proc', () => {
    const p = parseProc('#<PID>          <type>          <reloads>       <uptime>        <version>\n8188            master          2 [failed: 1]   0d00h10m19s     2.6.12\n# workers\n9482            worker          0               0d00h00m00s     2.6.12\n# old workers\n9374            worker          1               0d00h00m08s     2.6.12\n# programs\n');
    expect(p).toEqual({ reloads: 2, failed: 1, current: [9482], old: [9374] });
  });
});

/** cliOf sends one command to the master CLI of the HAProxy in `dir`. */
function cliOf(dir: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(join(dir, 'haproxy', 'master.sock'));
    let out = '';
    c.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('close', () => resolve(out));
    c.end(command + '\n');
  });
}
