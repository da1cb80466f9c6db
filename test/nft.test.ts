/**
 * The mesh's kernel fast path against the real kernel: a table of its own
 * (a unique node name), DNAT round robin to two HTTP servers on loopback,
 * connection counts from the rule counters, an atomic replace that keeps the
 * counts, and a table that is gone after close. Its owner in its comment,
 * read back as numbers; the sweep of tables whose owner is gone, which
 * never touches a live owner's, an unreadable one's or another cluster's;
 * and a ruleset that refuses anything but IPv4 addresses and integer ports.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createServer, request, type Server } from 'node:http';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { spawn } from 'node:child_process';
import { NftPath, rulesetText, tableName, type KernelRoute } from '../src/agent/nft.js';
import { parseCidr } from '../src/base/cidr.js';
import { ownerComment, ownerGone, parseOwnerComment, selfOwner, type TableOwner } from '../src/agent/net/owner.js';
import { sweepTables, type Listed } from '../src/agent/net/tables.js';

const execFileP = promisify(execFile);
const tables = async () => (await execFileP('/usr/sbin/nft', ['list', 'tables'])).stdout;
const get = (host: string, port: number) =>
  new Promise<string>((resolve, reject) => {
    const req = request({ host, port, path: '/', agent: false }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve(b));
    });
    req.on('error', reject);
    req.end();
  });

describe('NftPath', () => {
  const servers: Server[] = [];
  const node = `test-${process.pid}`;
  afterAll(async () => {
    for (const s of servers) s.close();
    await execFileP('/usr/sbin/nft', ['delete', 'table', 'ip', tableName(node, 'cafe0123-test')]).catch(() => {});
  });

  it('renders one chain per route and per endpoint', () => {
    const { text, chains } = rulesetText('baton_x', [{ service: 's', address: '127.0.0.9', port: 80, endpoints: [{ task: 't1', address: '127.0.0.3', port: 20001 }] }]);
    expect(text).toMatch(/ip daddr 127\.0\.0\.9 tcp dport 80 goto route_0_0/);
    expect(text).toMatch(/numgen inc mod 1 vmap \{ 0 : goto ep_0_0_0 \}/);
    expect(text).toMatch(/meta l4proto tcp counter dnat to 127\.0\.0\.3:20001/);
    expect([...chains]).toEqual([['ep_0_0_0', { service: 's', task: 't1' }]]);
  });

  it('masquerades only the connections it DNATs to another node, and not those of this node\'s tasks', () => {
    const routes: KernelRoute[] = [
      { service: 's', address: '192.0.2.2', port: 8080, endpoints: [{ task: 't1', address: '10.42.1.5', port: 80 }] },
      { service: 'idle', address: '192.0.2.2', port: 8081, endpoints: [] },
    ];
    const { text } = rulesetText('baton_x', routes, undefined, { taskRange: parseCidr('10.42.0.0/24') });
    expect(text).toMatch(/type nat hook postrouting priority srcnat; policy accept;\n\s+ct status dnat oifname != "lo" ip saddr != 10\.42\.0\.0\/24 ip daddr != 10\.42\.0\.0\/24 goto remote\n/);
    // One rule per listener with endpoints, matched on the connection's original destination: no other DNAT is masqueraded.
    expect(text.match(/chain remote \{\n([^}]*)\}/)![1]!.trim().split('\n').map((l) => l.trim())).toEqual(['meta l4proto tcp ct original ip daddr 192.0.2.2 ct original proto-dst 8080 masquerade']);
    // Without a task network, every connection sent to another node (not over loopback) is.
    expect(rulesetText('baton_x', routes).text).toMatch(/ct status dnat oifname != "lo" goto remote\n/);
  });

  it('DNATs round robin in the kernel, counts connections across replacements, and removes its table on close', async () => {
    const port = 29000 + (process.pid % 500);
    for (const host of ['127.0.0.21', '127.0.0.22']) {
      const s = createServer((_q, r) => r.end(host));
      await new Promise<void>((r) => s.listen(port, host, r));
      servers.push(s);
    }
    const k = await NftPath.open(node, 'cafe0123-test');
    expect(k).toBeInstanceOf(NftPath);
    const path = k as NftPath;
    expect(await tables()).toContain(tableName(node, 'cafe0123-test'));
    const route = { service: 'web', address: '127.0.0.29', port: 18999, endpoints: [{ task: 'a', address: '127.0.0.21', port }, { task: 'b', address: '127.0.0.22', port }] };
    expect(await path.sync([route])).toBeUndefined();
    const seen = [];
    for (let i = 0; i < 10; i++) seen.push(await get('127.0.0.29', 18999));
    expect(seen.filter((h) => h === '127.0.0.21')).toHaveLength(5);
    expect(seen.filter((h) => h === '127.0.0.22')).toHaveLength(5);
    // Replaced by a table with one endpoint: counts carry over.
    expect(await path.sync([{ ...route, endpoints: [route.endpoints[1]!] }])).toBeUndefined();
    expect(await get('127.0.0.29', 18999)).toBe('127.0.0.22');
    const counts = await path.counts();
    expect(counts.get('web')).toEqual({ total: 11, byTask: new Map([['a', 5], ['b', 6]]) });
    // A swap adds the next generation's chains and deletes the last one's once its counts are read: only one is left.
    const chainNames = async () => [...(await execFileP('/usr/sbin/nft', ['list', 'table', 'ip', tableName(node, 'cafe0123-test')])).stdout.matchAll(/chain ((?:route|ep)_\d+_[\d_]+) \{/g)].map((m) => m[1]!.replace(/^(route|ep)_\d+_/, '$1_'));
    expect((await chainNames()).sort()).toEqual(['ep_0_0', 'route_0']);

    // Connections made while the routes change again and again are all counted: none falls between a read and a swap.
    let made = 0;
    let stop = false;
    const load = (async () => {
      while (!stop) {
        await get('127.0.0.29', 18999);
        made++;
      }
    })();
    for (let i = 0; i < 30; i++) expect(await path.sync([{ ...route, endpoints: i % 2 ? route.endpoints : [route.endpoints[0]!] }])).toBeUndefined();
    stop = true;
    await load;
    expect(made).toBeGreaterThan(0);
    expect((await path.counts()).get('web')!.total).toBe(11 + made);
    await path.close();
    expect(await tables()).not.toContain(tableName(node, 'cafe0123-test'));
    await expect(get('127.0.0.29', 18999)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('rulesetText', () => {
  const route: KernelRoute = { service: 'web', address: '127.0.0.9', port: 80, endpoints: [{ task: 't1', address: '127.0.0.3', port: 20001 }] };

  it('refuses an address that is not IPv4 and a port that is not an integer in 1..65535, naming the route', () => {
    expect(() => rulesetText('baton_x', [{ ...route, address: '1.2.3.4 ; flush ruleset' }])).toThrow(
      'kernel route of service "web": address "1.2.3.4 ; flush ruleset" is not an IPv4 address',
    );
    expect(() => rulesetText('baton_x', [{ ...route, endpoints: [{ task: 't1', address: '127.0.0.3:1 }', port: 1 }] }])).toThrow(
      'kernel route of service "web", endpoint "t1": address "127.0.0.3:1 }" is not an IPv4 address',
    );
    expect(() => rulesetText('baton_x', [{ ...route, port: 80.5 }])).toThrow('kernel route of service "web": port 80.5 is not an integer in 1..65535');
    expect(() => rulesetText('baton_x', [{ ...route, port: '80' as unknown as number }])).toThrow('kernel route of service "web": port "80" is not an integer in 1..65535');
    expect(() => rulesetText('baton_x', [{ ...route, endpoints: [{ task: 't1', address: '127.0.0.3', port: 65536 }] }])).toThrow(/endpoint "t1": port 65536 is not an integer in 1\.\.65535/);
    expect(() => rulesetText('baton_x', [{ ...route, port: 0 }])).toThrow(/port 0 is not/);
    expect(() => rulesetText('baton_x; flush ruleset', [route])).toThrow(/table name .* is not one tableName\(\) makes/);
    expect(rulesetText('baton_x', [route]).text).toMatch(/dnat to 127\.0\.0\.3:20001/);
  });

  it('writes the owner in the table comment, and reads it back as numbers and a boot id', () => {
    const me = selfOwner();
    expect(me.pid).toBe(process.pid);
    const text = rulesetText('baton_x', [route], me).text;
    const comment = /comment "([^"]*)"/.exec(text)![1]!;
    expect(comment.length).toBeLessThanOrEqual(128);
    expect(parseOwnerComment(comment)).toEqual(me);
    expect(ownerGone(me, me)).toBe(false);
    for (const bad of ['', 'baton-agent pid=1', `${comment} x`, comment.replace(/pid=\d+/, 'pid=1e3'), comment.replace(/boot=\S+/, 'boot=../../x')]) expect(parseOwnerComment(bad)).toBeUndefined();
    expect(() => ownerComment({ ...me, pid: 1.5 })).toThrow(/not a table owner/);
    expect(() => ownerComment({ ...me, boot: 'x" ; flush ruleset ; "' })).toThrow(/not a table owner/);
  });
});

describe('sweepTables against the real kernel', () => {
  const nft = (args: string[]) => execFileP('/usr/sbin/nft', args);
  const cluster = `c${process.pid.toString(16).padStart(7, '0')}`.slice(0, 8) + '-test';
  const other = `d${process.pid.toString(16).padStart(7, '0')}`.slice(0, 8) + '-test';
  const made: string[] = [];
  const route: KernelRoute = { service: 'web', address: '127.0.0.29', port: 18998, endpoints: [{ task: 'a', address: '127.0.0.21', port: 18997 }] };
  /** load makes a table as an agent of `owner` would (no owner: a table without a comment). */
  const load = async (name: string, owner?: TableOwner) => {
    made.push(name);
    await new Promise<void>((resolve, reject) => {
      const p = spawn('/usr/sbin/nft', ['-f', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nft exited ${code}`))));
      p.stdin!.end(rulesetText(name, [route], owner).text);
    });
  };
  afterAll(async () => {
    for (const t of made) await nft(['delete', 'table', 'ip', t]).catch(() => {});
  });

  it('deletes the cluster tables whose owner is gone, and no other', async () => {
    // An owner that ran and is gone: a child process, read while it lived.
    const child = spawn('sleep', ['30']);
    await new Promise((r) => child.once('spawn', r));
    const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    const me = selfOwner();
    const dead: TableOwner = { ...me, pid: child.pid!, start: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) };
    expect(ownerGone(dead, me)).toBe(false);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(ownerGone(dead, me)).toBe(true);

    const t = (node: string, c = cluster) => tableName(node, c);
    await load(t('dead'), dead);
    await load(t('reused'), { ...me, start: me.start + 1 }); // this pid, a later process: not the owner
    await load(t('oldboot'), { ...me, boot: '00000000-0000-0000-0000-000000000000' });
    await load(t('live'), me);
    await load(t('otherns'), { ...dead, pidns: me.pidns + 1 }); // cannot tell: left alone
    await load(t('nocomment'));
    await load(t('self'), dead); // the sweeper's own table is never its to judge
    await load(t('dead', other), dead);

    expect((await sweepTables(cluster, t('self'))).sort()).toEqual([t('dead'), t('oldboot'), t('reused')].sort());
    const left = (await nft(['list', 'tables', 'ip'])).stdout;
    for (const gone of [t('dead'), t('reused'), t('oldboot')]) expect(left).not.toContain(gone);
    for (const kept of [t('live'), t('otherns'), t('nocomment'), t('self'), t('dead', other)]) expect(left).toContain(kept);
    // A second sweep finds nothing more.
    expect(await sweepTables(cluster, t('self'))).toEqual([]);
  });

  it('a sweep that keeps what it read judges a known table without reading it again, and never by a stale entry', async () => {
    const me = selfOwner();
    /** ownerProc: a live child process as a table owner, and a way to end it. */
    const ownerProc = async () => {
      const child = spawn('sleep', ['30']);
      await new Promise((r) => child.once('spawn', r));
      const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const owner: TableOwner = { ...me, pid: child.pid!, start: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) };
      const end = async () => {
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
      };
      return { owner, end };
    };
    // A cluster of its own: the first test leaves tables in `cluster`.
    const mine = `e${process.pid.toString(16).padStart(7, '0')}`.slice(0, 8) + '-test';
    const t = (node: string) => tableName(node, mine);
    const known = new Map<string, Listed>();
    const a = await ownerProc();
    const b = await ownerProc();
    await load(t('k-gone'), a.owner);
    await load(t('k-remade'), b.owner);
    await load(t('k-self'), me);
    expect(await sweepTables(mine, t('k-self'), me, known)).toEqual([]);
    // Both are known now, with their handles; the sweeper's own table is not read at all.
    expect([...known.keys()]).toEqual(expect.arrayContaining([t('k-gone'), t('k-remade')]));
    expect(known.has(t('k-self'))).toBe(false);
    // k-remade is made anew by a live process under the same name; then both first owners end.
    await nft(['delete', 'table', 'ip', t('k-remade')]);
    await load(t('k-remade'), me);
    await a.end();
    await b.end();
    // k-gone goes on what was known; the remade table is judged by its old entry, whose handle is gone: nothing deleted.
    expect(await sweepTables(mine, t('k-self'), me, known)).toEqual([t('k-gone')]);
    expect(known.has(t('k-remade'))).toBe(false);
    // The next sweep reads it again, and keeps it: its owner runs.
    expect(await sweepTables(mine, t('k-self'), me, known)).toEqual([]);
    const left = (await nft(['list', 'tables', 'ip'])).stdout;
    expect(left).toContain(t('k-remade'));
    expect(left).not.toContain(t('k-gone'));
    expect(known.get(t('k-remade'))?.owner).toEqual(me);
  });

  it('NftPath writes its owner, this process, into its table', async () => {
    const k = (await NftPath.open('owned', cluster)) as NftPath;
    made.push(k.table);
    const listed = (await nft(['list', 'table', 'ip', k.table])).stdout;
    expect(parseOwnerComment(/comment "([^"]*)"/.exec(listed)![1]!)).toEqual(selfOwner());
    // A route it must refuse leaves the table empty (the userspace proxy carries on) and says why.
    expect(await k.sync([route])).toBeUndefined();
    expect((await nft(['list', 'table', 'ip', k.table])).stdout).toMatch(/dnat to 127\.0\.0\.21:18997/);
    expect(await k.sync([{ ...route, address: '1.2.3.4 ; flush ruleset' }])).toMatch(/is not an IPv4 address/);
    expect((await nft(['list', 'table', 'ip', k.table])).stdout).not.toMatch(/dnat to/);
    await k.close();
  });
});
