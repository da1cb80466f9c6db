/**
 * The mesh's kernel fast path against the real kernel: a table of its own
 * (a unique node name), DNAT round robin to two HTTP servers on loopback,
 * connection counts from the rule counters, an atomic replace that keeps the
 * counts, and a table that is gone after close.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createServer, request, type Server } from 'node:http';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NftPath, rulesetText, tableName } from '../src/agent/nft.js';

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
    expect(text).toMatch(/ip daddr 127\.0\.0\.9 tcp dport 80 goto route_0/);
    expect(text).toMatch(/numgen inc mod 1 vmap \{ 0 : goto ep_0_0 \}/);
    expect(text).toMatch(/meta l4proto tcp counter dnat to 127\.0\.0\.3:20001/);
    expect([...chains]).toEqual([['ep_0_0', { service: 's', task: 't1' }]]);
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
    await path.close();
    expect(await tables()).not.toContain(tableName(node, 'cafe0123-test'));
    await expect(get('127.0.0.29', 18999)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
