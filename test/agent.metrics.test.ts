/**
 * The agent's /metrics over its real HTTPS listener (a node certificate of a
 * real server's CA): open by default, as cAdvisor's port is; with
 * --metrics-auth token, only for a scraper sending the token, others get a
 * 401 that says what to send. And the agent's flags refuse a token setting
 * that could not work, saying why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { AgentListener } from '../src/agent/listener.js';
import { LogStore } from '../src/agent/logs.js';
import { joinCluster } from '../src/agent/join.js';
import { agentOptions, type AgentFlags } from '../src/cli/daemon.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';
import type { Transport } from '../src/api/tls.js';

describe("the agent's /metrics", () => {
  let s: MemoryServer;
  let dir: string;
  let t: Transport;
  const listeners: AgentListener[] = [];

  const listen = async (metricsToken?: string) => {
    const c = await joinCluster({ server: s.server.url, token: s.server.joinToken, name: `m${listeners.length}`, address: '127.0.0.1' });
    const metrics = new Registry();
    metrics.setDefaultLabels({ node: 'm' });
    const l = new AgentListener({ address: '127.0.0.1', port: 0, node: 'm', tls: c, logs: new LogStore({ dir: join(dir, `logs${listeners.length}`) }), metrics, ...(metricsToken ? { metricsToken } : {}) });
    await l.start();
    listeners.push(l);
    return (headers: Record<string, string> = {}) => t.fetch(`https://127.0.0.1:${l.port}/metrics`, { headers, ...t.init } as RequestInit);
  };

  beforeAll(async () => {
    s = await memoryServer('baton-metrics-', {});
    dir = mkdtempSync(join(tmpdir(), 'baton-metrics-'));
    t = s.transport();
  });
  afterAll(async () => {
    for (const l of listeners) await l.stop();
    await s?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is open by default', async () => {
    const get = await listen();
    expect((await get()).status).toBe(200);
  });

  it('wants the scrape token with --metrics-auth token, and says what to send', async () => {
    const get = await listen('scrape-token-0123456789');
    const none = await get();
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect((await none.json()).error).toMatchObject({ code: 'BATON_ERR_UNAUTHORIZED', message: expect.stringContaining('Authorization: Bearer <token>') });
    expect((await get({ authorization: 'Bearer scrape-token-01234567890' })).status).toBe(401);
    expect((await get({ authorization: 'Bearer scrape-token-0123456789' })).status).toBe(200);
  });

  it('refuses a token setting that could not work, saying why', () => {
    const flags = (f: Partial<AgentFlags>) => () => agentOptions({ name: 'n', address: '127.0.0.1', dataDir: dir, pull: 'never', portRange: '20000-20099', dockerSocket: '/nonexistent.sock', ...f } as AgentFlags, undefined, undefined);
    expect(flags({ metricsAuth: 'token' })).toThrow('--metrics-auth token needs --metrics-token-file FILE');
    writeFileSync(join(dir, 'short'), 'abc\n');
    expect(flags({ metricsAuth: 'token', metricsTokenFile: join(dir, 'short') })).toThrow('the token must be at least 16 characters');
    expect(flags({ metricsAuth: 'token', metricsTokenFile: join(dir, 'missing') })).toThrow(`--metrics-token-file ${join(dir, 'missing')}: ENOENT`);
    expect(flags({ metricsTokenFile: join(dir, 'short') })).toThrow('--metrics-token-file is read with --metrics-auth token');
    writeFileSync(join(dir, 'good'), 'scrape-token-0123456789\n');
    expect(flags({ metricsAuth: 'token', metricsTokenFile: join(dir, 'good') })()).toMatchObject({ metricsToken: 'scrape-token-0123456789' });
  });
});
