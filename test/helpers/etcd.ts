/**
 * EtcdCluster: an etcd cluster of the test's own (Debian's etcd at
 * /usr/bin/etcd), its members on 127.0.0.1 with their own data dirs, started
 * and stopped by PID so a test can kill -9, SIGSTOP and restart one member.
 *
 * Ports come from a base the test file chooses, so files never share a
 * cluster: member i listens for clients on base + 10·i and for peers on
 * base + 10·i + 1 (base 31379: clients 31379, 31389, 31399; peers 31380,
 * 31390, 31400). Bases stay below the kernel's ephemeral ports (32768 on):
 * a member restarted on its port found it taken by some connection's local
 * end there (the HA test saw "bind: address already in use").
 *
 * Timings are short so tests run in seconds: a 50 ms heartbeat and 500 ms
 * election timeout make etcd's smallest lease TTL 1 s (it is 1.5 × the
 * election timeout, rounded up to a second), and a quiet watch hears a
 * progress notification every `progressNotifyMs`. Data dirs go to /dev/shm
 * when the machine has it: every etcd write is an fsync, which on a shared
 * disk would be most of the run time, and a member's durability is not what
 * these tests are about.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EtcdClusterOptions {
  /** Member i: client port base + 10·i, peer port base + 10·i + 1. */
  basePort: number;
  members?: number;
  heartbeatMs?: number;
  electionMs?: number;
  /** --experimental-watch-progress-notify-interval. */
  progressNotifyMs?: number;
  /** Where the temp dir goes (default /dev/shm when present, else the OS temp dir). */
  dataRoot?: string;
  /**
   * Serve clients over TLS with this certificate (PEM) and ask them for one
   * the CA signed; the harness's own health checks present `client` (peers
   * stay plain on loopback).
   */
  tls?: { ca: string; cert: string; key: string; client: { cert: string; key: string } };
}

/** READY_MS bounds how long a cluster (or a restarted member) may take to be healthy. */
const READY_MS = 30_000;

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  child?: ChildProcess;
  exited?: Promise<void>;
  stopped: boolean;
}

export class EtcdCluster {
  readonly dir: string;
  readonly progressNotifyMs: number;
  private readonly members: Member[];
  private readonly heartbeatMs: number;
  private readonly electionMs: number;
  private readonly tls?: { ca: string; cert: string; key: string; client: { cert: string; key: string } };

  constructor(opts: EtcdClusterOptions) {
    const root = opts.dataRoot ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
    this.dir = mkdtempSync(join(root, 'baton-etcd-'));
    this.heartbeatMs = opts.heartbeatMs ?? 50;
    this.electionMs = opts.electionMs ?? 500;
    this.progressNotifyMs = opts.progressNotifyMs ?? 200;
    if (opts.tls) {
      this.tls = { ca: join(this.dir, 'ca.pem'), cert: join(this.dir, 'server.pem'), key: join(this.dir, 'server-key.pem'), client: opts.tls.client };
      writeFileSync(this.tls.ca, opts.tls.ca);
      writeFileSync(this.tls.cert, opts.tls.cert);
      writeFileSync(this.tls.key, opts.tls.key, { mode: 0o600 });
    }
    this.members = Array.from({ length: opts.members ?? 3 }, (_, i) => ({
      name: `m${i}`,
      clientPort: opts.basePort + 10 * i,
      peerPort: opts.basePort + 10 * i + 1,
      stopped: false,
    }));
  }

  /** endpoints are the members' client URLs, in member order. */
  get endpoints(): string[] {
    return this.members.map((m) => `${this.scheme}://127.0.0.1:${m.clientPort}`);
  }

  private get scheme(): string {
    return this.tls ? 'https' : 'http';
  }

  /** pid is member i's process id while it runs. */
  pid(i: number): number | undefined {
    const m = this.member(i);
    return m.child && m.child.exitCode === null && m.child.signalCode === null ? m.child.pid : undefined;
  }

  /** start runs every member and waits until each says it is healthy (it has a leader). */
  async start(): Promise<void> {
    // A member left over from a run that died would answer on these ports and pass for ours.
    for (const m of this.members) {
      for (const port of [m.clientPort, m.peerPort]) {
        if (await listening(port)) throw new Error(`port ${port} on 127.0.0.1 is in use: another etcd (or test) holds this file's port base`);
      }
    }
    for (let i = 0; i < this.members.length; i++) this.spawn(i);
    // A test process that ends without cleanup() (a crash, a worker torn down) still takes its members and their data with it.
    process.once('exit', this.onExit);
    await Promise.all(this.members.map((_, i) => this.waitHealthy(i)));
  }

  private readonly onExit = () => {
    for (const m of this.members) if (m.child && m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  };

  /** kill sends `signal` to member i and, unless it was SIGSTOP, waits for it to exit. */
  async kill(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const m = this.member(i);
    if (!m.child || this.pid(i) === undefined) return;
    if (m.stopped) process.kill(m.child.pid!, 'SIGCONT');
    m.stopped = false;
    m.child.kill(signal);
    await m.exited;
  }

  /** pause stops member i with SIGSTOP: it keeps its sockets open and answers nothing. */
  pause(i: number): void {
    const pid = this.pid(i);
    if (pid === undefined) throw new Error(`etcd member ${i} is not running`);
    process.kill(pid, 'SIGSTOP');
    this.member(i).stopped = true;
  }

  /** resume continues member i after pause(). */
  resume(i: number): void {
    const pid = this.pid(i);
    if (pid === undefined) throw new Error(`etcd member ${i} is not running`);
    process.kill(pid, 'SIGCONT');
    this.member(i).stopped = false;
  }

  /** restart starts member i again on its data dir (after kill) and waits until it is healthy. */
  async restart(i: number): Promise<void> {
    if (this.pid(i) !== undefined) await this.kill(i);
    this.spawn(i);
    await this.waitHealthy(i);
  }

  /** log is member i's output so far (for a failure message). */
  log(i: number): string {
    try {
      return readFileSync(join(this.dir, `${this.member(i).name}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  /** cleanup kills every member by its PID and removes the data dirs. */
  async cleanup(): Promise<void> {
    process.off('exit', this.onExit);
    await Promise.all(this.members.map((_, i) => this.kill(i)));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private member(i: number): Member {
    const m = this.members[i];
    if (!m) throw new Error(`no etcd member ${i}`);
    return m;
  }

  private spawn(i: number): void {
    const m = this.member(i);
    const dataDir = join(this.dir, m.name);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const cluster = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(',');
    const log = openSync(join(this.dir, `${m.name}.log`), 'a');
    const child = spawn(
      '/usr/bin/etcd',
      [
        '--name', m.name,
        '--data-dir', dataDir,
        '--listen-client-urls', `${this.scheme}://127.0.0.1:${m.clientPort}`,
        '--advertise-client-urls', `${this.scheme}://127.0.0.1:${m.clientPort}`,
        ...(this.tls ? ['--cert-file', this.tls.cert, '--key-file', this.tls.key, '--trusted-ca-file', this.tls.ca, '--client-cert-auth'] : []),
        '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
        '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
        '--initial-cluster', cluster,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', this.dir,
        '--heartbeat-interval', String(this.heartbeatMs),
        '--election-timeout', String(this.electionMs),
        '--experimental-watch-progress-notify-interval', `${this.progressNotifyMs}ms`,
        // Clients may ping every 500 ms (the default refuses pings closer than 5 s), so a test's store notices a stopped member fast.
        '--grpc-keepalive-min-time', '500ms',
        '--logger', 'zap',
        '--log-outputs', 'stderr',
      ],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    m.child = child;
    m.stopped = false;
    m.exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  }

  /** healthy asks a member's /health (over TLS with the CA as client, when it has TLS): true once it has a leader. */
  private healthy(m: Member): Promise<boolean> {
    return new Promise((resolve) => {
      const tls = this.tls ? { ca: readFileSync(this.tls.ca), cert: this.tls.client.cert, key: this.tls.client.key } : {};
      const req = (this.tls ? httpsGet : httpGet)(`${this.scheme}://127.0.0.1:${m.clientPort}/health`, { timeout: 1000, ...tls, ...(this.tls ? { servername: 'localhost' } : {}) }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(res.statusCode === 200 && /"health":\s*"true"/.test(body)));
        res.on('error', () => resolve(false));
      });
      req.on('timeout', () => req.destroy());
      // Not listening yet.
      req.on('error', () => resolve(false));
    });
  }

  private async waitHealthy(i: number): Promise<void> {
    const m = this.member(i);
    const deadline = Date.now() + READY_MS;
    while (Date.now() < deadline) {
      if (this.pid(i) === undefined) throw new Error(`etcd member ${m.name} exited:\n${this.log(i).slice(-4000)}`);
      if (await this.healthy(m)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd member ${m.name} not healthy within ${READY_MS} ms:\n${this.log(i).slice(-4000)}`);
  }
}

/** listening tells whether something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
