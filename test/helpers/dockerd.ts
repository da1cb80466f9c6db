/**
 * PrivateDockerd: a dockerd of the test's own (its own --data-root,
 * --exec-root, --pidfile and unix socket under one temp dir; no bridge, no
 * iptables), so a test may kill -9 an engine without touching the shared one
 * at /var/run/docker.sock. The test image is loaded into it from the shared
 * engine (`docker save | docker load`, no registry).
 *
 * Everything it leaves is removed in cleanup(): its containers, the daemon
 * (by the PID it started), the containerd shims that outlived a killed
 * daemon and their containers' processes (found in /proc by the temp dir in
 * their command line, killed by PID), its mounts and its directory.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readdirSync, readFileSync, writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TEST_IMAGE } from './proc.js';

const pexec = promisify(execFile);

/** How long a (re)started daemon may take to answer (it restores its containers first). */
const READY_MS = 60_000;

export class PrivateDockerd {
  readonly dir: string;
  readonly socket: string;
  private child?: ChildProcess;
  private exited?: Promise<void>;

  constructor(prefix: string) {
    // Under /tmp, short: the exec root holds unix sockets (108 bytes at most in a path).
    this.dir = mkdtempSync(join('/tmp', prefix));
    this.socket = join(this.dir, 'docker.sock');
    // An empty configuration: a host's /etc/docker/daemon.json (hosts, bridge) must not apply.
    writeFileSync(join(this.dir, 'daemon.json'), '{}\n');
  }

  get host(): string {
    return `unix://${this.socket}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** start runs the daemon (again, on the same directories) and waits until it answers. */
  async start(): Promise<void> {
    const log = openSync(join(this.dir, 'dockerd.log'), 'a');
    const child = spawn(
      'dockerd',
      [
        '--config-file', join(this.dir, 'daemon.json'),
        '--data-root', join(this.dir, 'root'),
        '--exec-root', join(this.dir, 'exec'),
        '--pidfile', join(this.dir, 'docker.pid'),
        '-H', this.host,
        '--bridge=none', '--iptables=false', '--ip6tables=false',
        '--log-level', 'warn',
      ],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', () => r()));
    const deadline = Date.now() + READY_MS;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`dockerd exited (${child.exitCode}):\n${this.logTail()}`);
      try {
        await this.docker(['version', '--format', '{{.Server.Version}}']);
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`dockerd did not answer within ${READY_MS} ms: ${(e as Error).message}\n${this.logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** loadTestImage copies the test image from the shared engine (no registry is reachable). */
  async loadTestImage(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const save = spawn('docker', ['save', TEST_IMAGE], { stdio: ['ignore', 'pipe', 'inherit'] });
      const load = spawn('docker', ['-H', this.host, 'load', '-q'], { stdio: ['pipe', 'ignore', 'inherit'] });
      save.stdout!.pipe(load.stdin!);
      save.once('error', reject);
      load.once('error', reject);
      load.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`docker load exited ${code}`))));
    });
  }

  /** kill9 kills the daemon with SIGKILL, as a crash would (its containerd dies with it; shims and containers live on). */
  async kill9(): Promise<void> {
    if (!this.running) return;
    this.child!.kill('SIGKILL');
    await this.exited;
  }

  docker(args: string[]): Promise<string> {
    return pexec('docker', ['-H', this.host, ...args], { timeout: 60_000 }).then((r) => r.stdout.trim());
  }

  /** cleanup removes every container, stops the daemon by PID, then whatever it left: processes, mounts, files. */
  async cleanup(): Promise<void> {
    if (this.running) {
      const ids = (await this.docker(['ps', '-aq']).catch(() => '')).split('\n').filter(Boolean);
      if (ids.length) await this.docker(['rm', '-f', '-v', ...ids]).catch(() => {});
      this.child!.kill('SIGTERM');
      const stopped = await Promise.race([this.exited!.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 20_000))]);
      if (!stopped) await this.kill9();
    }
    for (const pid of leftovers(this.dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    // dockerd bind-mounts its data root and keeps a netns mount; deepest first.
    const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m === this.dir || m.startsWith(this.dir + '/'));
    for (const m of mounts.sort((a, b) => b.length - a.length)) await pexec('umount', ['-l', m]).catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }

  private logTail(): string {
    try {
      return readFileSync(join(this.dir, 'dockerd.log'), 'utf8').split('\n').slice(-20).join('\n');
    } catch {
      return '';
    }
  }
}

/**
 * leftovers: the PIDs of processes whose command line names `dir` (the
 * containerd shims of this daemon, a containerd that outlived it) and all
 * their descendants (the containers' processes), children first.
 */
export function leftovers(dir: string): number[] {
  const parent = new Map<number, number>();
  const roots: number[] = [];
  for (const e of readdirSync('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces: fields after the last ')'.
      parent.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (cmd.some((a) => a === dir || a.startsWith(dir + '/'))) roots.push(pid);
    } catch {
      /* exited while listed */
    }
  }
  const out: number[] = [];
  const visit = (pid: number) => {
    for (const [child, p] of parent) if (p === pid) visit(child);
    out.push(pid);
  };
  for (const r of roots) visit(r);
  return [...new Set(out)];
}
