/**
 * The nftables tables of agents that are gone, with real agents and the
 * real kernel: a `baton server` and agents n2 and n3 (127.0.0.2–3) routing
 * a published port in the kernel, each in a table of its own that names its
 * owner, swept every 500 ms.
 *
 * - kill -9 of both agents leaves both tables, and n3's keeps capturing its
 *   published port; the restarted n2 removes n3's at once, and n2 alone
 *   removes n3's again after n3 is restarted and killed once more;
 * - a table of another cluster (its owner as dead) is never touched;
 * - `baton node rm` of a live node: its agent deletes its own table as it is
 *   cut off, and exits.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { rulesetText, tableName } from '../../src/agent/nft.js';
import { parseOwnerComment, selfOwner, type TableOwner } from '../../src/agent/net/owner.js';
import { eventually, stopProc, TEST_IMAGE } from '../helpers/proc.js';
import { live, TestCluster } from '../helpers/cluster.js';

const execFileP = promisify(execFile);
const HEARTBEAT_MS = 300;
const SWEEP_MS = 500;
/** Goal: a dead agent's table is gone within a sweep or two of another agent running; deadline ≥5× that with an agent's start. */
const SWEPT_DEADLINE_MS = 15_000;
/** Outside every agent's port range (42400–42799 here). */
const PUBLISHED = 42990;

/** table: the listing of one table, or undefined when there is none. */
async function table(name: string): Promise<string | undefined> {
  return execFileP('/usr/sbin/nft', ['list', 'table', 'ip', name]).then((r) => r.stdout, () => undefined);
}

function ownerOf(listing: string | undefined): TableOwner | undefined {
  const m = listing && /comment "([^"]*)"/.exec(listing);
  return m ? parseOwnerComment(m[1]!) : undefined;
}

/** connects: a TCP connection to host:port opens (resolves true) or is refused (false). */
function connects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, timeout: 3000 });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('timeout', () => s.destroy(new Error('connect timed out')));
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNREFUSED' ? resolve(false) : reject(e)));
  });
}

describe('nftables tables of agents that are gone', () => {
  const c = new TestCluster('baton-tables-', { heartbeatIntervalMs: HEARTBEAT_MS, nodeDownAfterMs: 120_000, bookmarkIntervalMs: 1000 }, 42000, { agentArgs: ['--mesh-sweep', `${SWEEP_MS}ms`] });
  let foreign = '';
  const t = (n: string) => tableName(n, c.clusterId);

  beforeAll(() => c.start(['n2', 'n3']), 90_000);
  afterAll(async () => {
    await c.stop();
    for (const name of [foreign, t('n2'), t('n3')]) if (name) await execFileP('/usr/sbin/nft', ['delete', 'table', 'ip', name]).catch(() => {});
  }, 60_000);

  it('a table left by kill -9 keeps its port captured until the restarted agent, or another agent of the cluster, removes it; another cluster’s is never touched', async () => {
    await c.apply('tbl', `services:
  web:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "exec httpd -f -p $$BATON_HOST_IP:$$PORT -h /"]
    ports: ["${PUBLISHED}:8080"]
    deploy:
      replicas: 2
`);
    await eventually(async () => expect(live(await c.tasksOf('tbl_web'))).toHaveLength(2), 30_000);
    // Each agent routes the published port on its address in the kernel, in its own table that names it.
    await eventually(async () => {
      for (const n of ['n2', 'n3']) {
        const listing = await table(t(n));
        expect(listing).toContain(`ip daddr ${TestCluster.addr(n)} tcp dport ${PUBLISHED}`);
        expect(ownerOf(listing)?.pid).toBe(c.agents.get(n)!.child.pid);
      }
    }, 15_000);

    // Another cluster's table on this host, whose owner is gone too: not this cluster's to sweep.
    const child = spawn('sleep', ['30']);
    await new Promise((r) => child.once('spawn', r));
    const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    const dead: TableOwner = { ...selfOwner(), pid: child.pid!, start: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) };
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    foreign = tableName('n3', `${c.clusterId[0] === 'f' ? 'e' : 'f'}${c.clusterId.slice(1)}`);
    const route = { service: 'x', address: '127.0.0.3', port: PUBLISHED + 1, endpoints: [{ task: 'x', address: '127.0.0.3', port: PUBLISHED + 2 }] };
    await new Promise<void>((resolve, reject) => {
      const p = spawn('/usr/sbin/nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nft exited ${code}`))));
      p.stdin!.end(rulesetText(foreign, [route], dead).text);
    });

    // kill -9 of both agents: nothing removes their tables, and n3's still captures its published port.
    for (const n of ['n2', 'n3']) await stopProc(c.agents.get(n)!, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 4 * SWEEP_MS));
    expect(await table(t('n2'))).toBeDefined();
    expect(await table(t('n3'))).toBeDefined();
    expect(await connects('127.0.0.3', PUBLISHED)).toBe(true);

    // The restarted n2 replaces its own table and removes n3's at its first sweep.
    const n2 = c.startAgent('n2');
    await eventually(async () => {
      expect(await table(t('n3'))).toBeUndefined();
      expect(ownerOf(await table(t('n2')))?.pid).toBe(n2.child.pid);
    }, SWEPT_DEADLINE_MS);
    // Nothing listens on n3's address now: its port is no longer taken.
    expect(await connects('127.0.0.3', PUBLISHED)).toBe(false);

    // n3 back, then killed again: n2's periodic sweep removes its table.
    let n3 = c.startAgent('n3');
    await eventually(async () => expect(ownerOf(await table(t('n3')))?.pid).toBe(n3.child.pid), SWEPT_DEADLINE_MS);
    await eventually(async () => expect(await table(t('n3'))).toContain(`tcp dport ${PUBLISHED}`), 15_000);
    await stopProc(n3, 'SIGKILL');
    await eventually(async () => expect(await table(t('n3'))).toBeUndefined(), SWEPT_DEADLINE_MS);
    expect(await table(t('n2'))).toBeDefined();
    expect(ownerOf(await table(foreign))).toEqual(dead);
    n3 = c.startAgent('n3');
    await eventually(async () => expect(await c.state('n3')).toBe('ready'), 30_000);
  });

  it('baton node rm: the removed agent deletes its own table as it is cut off, and exits', async () => {
    const n3 = c.agents.get('n3')!;
    await eventually(async () => expect(ownerOf(await table(t('n3')))?.pid).toBe(n3.child.pid), SWEPT_DEADLINE_MS);
    const r = await c.baton(['node', 'rm', 'n3', '--force']);
    expect(r.code, r.stderr).toBe(0);
    const exited = await Promise.race([n3.exited.then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), 30_000))]);
    expect(exited).toBe(true);
    c.agents.delete('n3'); // it exited as it should: nothing to report at the end
    expect(await table(t('n3'))).toBeUndefined();
    // The sweep of n2 never took the foreign table, dead owner and all.
    expect(await table(foreign)).toBeDefined();
  });
});
