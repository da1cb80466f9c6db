/**
 * bench:chaos — the bench's own dockerd (PrivateEngine): started on
 * directories under the bench's temp dir, killed with SIGKILL and started
 * again on the same directories for the dockerd-restart fault, and cleaned
 * up at the end with every process, mount and file it left.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { leftovers } from '../test/helpers/dockerd.js';
import { OwnChild, refuseWhenClosing } from './chaosProcs.js';
import { DOCKER, exec, log, oneLine, sleep } from './lib.js';

/** How long a (re)started dockerd may take to answer (it restores its containers first). */
const ENGINE_READY_MS = 60_000;

/**
 * PrivateEngine is a dockerd of the bench's own (as test/helpers/dockerd.ts
 * does for the tests): its data root, exec root, pidfile, config and log
 * under `dir`, its socket beside it (so that the agents' command lines,
 * which name the socket, are not taken for its leftovers), no bridge, no
 * iptables. kill9() and start() again on the same directories are the
 * dockerd-restart fault (its containerd dies with it; shims and
 * containers live on until it is back); cleanup() removes everything it
 * left.
 */
export class PrivateEngine extends OwnChild {
  constructor(
    readonly dir: string,
    readonly socket: string,
  ) {
    super();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'daemon.json'), '{}\n');
  }

  get host(): string {
    return `unix://${this.socket}`;
  }

  async start(): Promise<void> {
    // A dockerd killed with -9 takes its containerd with it (Pdeathsig), which is then init's to reap. This
    // machine's PID 1 reaps late (seconds), and dockerd takes the pid in containerd's pidfile for a live
    // containerd while it is a zombie: it waits on its socket and gives up ("timeout waiting for containerd
    // to start"). A pidfile naming a dead process is stale; an init that reaps would have made it so.
    for (const f of [join(this.dir, 'exec', 'containerd', 'containerd.pid'), join(this.dir, 'docker.pid')]) {
      const pid = Number(readFileOr(f).trim());
      if (pid > 0 && !processAlive(pid)) {
        log(`${f} names pid ${pid}, which is dead (a zombie not yet reaped by init, or gone): removing the stale pidfile`);
        rmSync(f, { force: true });
      }
    }
    refuseWhenClosing('dockerd');
    const out = openSync(join(this.dir, 'dockerd.log'), 'a');
    const child = spawn(
      '/usr/sbin/dockerd',
      ['--config-file', join(this.dir, 'daemon.json'), '--data-root', join(this.dir, 'root'), '--exec-root', join(this.dir, 'exec'), '--pidfile', join(this.dir, 'docker.pid'), '-H', this.host, '--bridge=none', '--iptables=false', '--ip6tables=false', '--log-level', 'warn'],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    this.track(child);
    child.once('error', (e) => log(`dockerd: ${e.message}`));
    const deadline = Date.now() + ENGINE_READY_MS;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the private dockerd exited (${child.exitCode ?? child.signalCode}):\n${this.logTail()}`);
      const r = await this.docker(['version', '--format', '{{.Server.Version}}'], 5000);
      if (r.code === 0) return;
      if (Date.now() > deadline) throw new Error(`the private dockerd did not answer within ${ENGINE_READY_MS / 1000} s: ${oneLine(r.stderr)}\n${this.logTail()}`);
      await sleep(200);
    }
  }

  /** loadImage copies an image from the shared engine (docker save | docker load). */
  async loadImage(image: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const save = spawn(DOCKER, ['save', image], { stdio: ['ignore', 'pipe', 'pipe'] });
      const load = spawn(DOCKER, ['-H', this.host, 'load', '-q'], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      save.stderr!.on('data', (d) => (err += d));
      load.stderr!.on('data', (d) => (err += d));
      save.stdout!.pipe(load.stdin!);
      save.once('error', reject);
      load.once('error', reject);
      load.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`docker load exited ${code}: ${oneLine(err)}`))));
    });
  }

  docker(args: string[], timeoutMs = 30_000) {
    return exec(DOCKER, ['-H', this.host, ...args], { timeoutMs });
  }

  /** cleanup removes every container, stops the daemon by its PID, then what it left: processes, mounts, files (not `dir` itself). */
  async cleanup(): Promise<void> {
    if (this.running) {
      const ids = (await this.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
      if (ids.length) {
        const r = await this.docker(['rm', '-f', '-v', ...ids], 120_000);
        log(`removed ${ids.length} container(s) from the private dockerd${r.code ? ` (docker rm: ${oneLine(r.stderr)})` : ''}`);
      }
      this.expectExit = true;
      log(`stopping the private dockerd (SIGTERM pid ${this.child!.pid})`);
      this.child!.kill('SIGTERM');
      const stopped = await Promise.race([this.exited!.then(() => true), sleep(20_000).then(() => false)]);
      if (!stopped) await this.kill9();
    }
    const left = leftovers(this.dir);
    if (left.length) log(`killing ${left.length} process(es) the private dockerd left (containerd, shims, container processes): ${left.join(' ')}`);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone already */
      }
    }
    // dockerd bind-mounts its data root and keeps netns and overlay mounts; deepest first.
    const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m === this.dir || m.startsWith(this.dir + '/'));
    for (const m of mounts.sort((a, b) => b.length - a.length)) await exec('/usr/bin/umount', ['-l', m]).catch(() => undefined);
  }

  logTail(): string {
    try {
      return readFileSync(join(this.dir, 'dockerd.log'), 'utf8').split('\n').slice(-20).join('\n');
    } catch {
      return '';
    }
  }
}

function readFileOr(f: string): string {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}

/** processAlive: the process exists and is not a zombie. */
function processAlive(pid: number): boolean {
  const stat = readFileOr(`/proc/${pid}/stat`);
  if (!stat) return false;
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] !== 'Z';
}

