/**
 * The agent's credentials across its life, in-process against a real server
 * (memory store) and the real dockerd: the first start joins with the token,
 * a later start needs no token, the certificate is renewed automatically at
 * two thirds of its life (the agent's clock is moved forward), and an agent
 * whose certificate expired while it was away says how to join again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatonServer } from '../src/server/server.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { ApiClient } from '../src/api/client.js';
import { nodeKind } from '../src/api/kinds.js';
import type { Node } from '../src/api/types.js';
import { tlsTransport, withTransport, type Transport } from '../src/api/tls.js';
import { Agent } from '../src/agent/agent.js';
import { DockerDriver } from '../src/agent/docker/dockerDriver.js';
import { certInfo } from '../src/base/pki.js';
import type { Clock } from '../src/base/clock.js';
import { systemClock } from '../src/base/clock.js';

const DAY = 86_400_000;

describe('agent credentials: join, restart, renewal, expiry', () => {
  let server: BatonServer;
  let api: ApiClient;
  let tls: Transport;
  let dir: string;
  let offset = 0;
  const clock: Clock = { now: () => Date.now() + offset, setTimeout: systemClock.setTimeout };
  const agents: Agent[] = [];

  const agent = (joinToken?: string) => {
    const a = new Agent({
      server: server.url,
      joinToken,
      name: 'cred',
      address: '127.0.0.6',
      dataDir: join(dir, 'agent'),
      driver: new DockerDriver(),
      portRange: [26500, 26599],
      pull: 'never',
      logLevel: 'silent',
      // Joining is what is tested here: no task network (a bridge it would leave up on the default range).
      taskNetwork: false,
      clock,
      certCheckMs: 100,
    });
    agents.push(a);
    return a;
  };
  const state = async () => (await api.get<Node>(nodeKind, 'cred')).status.state;
  const until = async (fn: () => Promise<boolean>, ms: number) => {
    const end = Date.now() + ms;
    while (!(await fn().catch(() => false))) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baton-agentjoin-'));
    server = await BatonServer.start({ dataDir: join(dir, 'server'), listen: '127.0.0.1:0', store: new MemoryStore(), events: new MemoryEventStore(), logLevel: 'silent', timings: { heartbeatIntervalMs: 200 } });
    tls = tlsTransport({ caPem: server.caPem });
    api = new ApiClient(withTransport({ server: server.url, token: server.adminToken }, tls));
  });

  afterAll(async () => {
    for (const a of agents) await a.stop().catch(() => {});
    await tls.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to start without a join when the node has never joined', async () => {
    const a = new Agent({ name: 'never', address: '127.0.0.7', dataDir: join(dir, 'never'), driver: new DockerDriver(), portRange: [26600, 26699], pull: 'never', logLevel: 'silent', taskNetwork: false });
    await expect(a.start()).rejects.toMatchObject({ message: expect.stringMatching(/has not joined a cluster yet: pass --join https:\/\/SERVER:7400 --token TOKEN/) });
  });

  it('joins with the token on first start, and restarts from its data dir without one', async () => {
    const a = agent(server.joinToken);
    await a.start();
    await until(async () => (await state()) === 'ready', 10_000);
    const first = readFileSync(join(dir, 'agent/pki/node.crt'), 'utf8');
    await a.stop();
    const b = agent(undefined);
    await b.start();
    await until(async () => (await state()) === 'ready', 10_000);
    expect(readFileSync(join(dir, 'agent/pki/node.crt'), 'utf8')).toBe(first);
  });

  it('renews its certificate at two thirds of its life and keeps working', async () => {
    const before = certInfo(readFileSync(join(dir, 'agent/pki/node.crt'), 'utf8'));
    offset = 61 * DAY; // past 2/3 of 90 days, for the agent only
    await until(async () => certInfo(readFileSync(join(dir, 'agent/pki/node.crt'), 'utf8')).serial !== before.serial, 10_000);
    offset = 0;
    const after = certInfo(readFileSync(join(dir, 'agent/pki/node.crt'), 'utf8'));
    expect(after.commonName).toBe('cred');
    expect(after.notAfter.getTime()).toBeGreaterThanOrEqual(before.notAfter.getTime());
    const ev = (await api.events({ limit: 100 })).items.filter((e) => e.reason === 'CertificateRenewed');
    expect(ev.map((e) => e.name)).toContain('cred');
    // Heartbeats keep arriving over the new certificate.
    const beat = Date.parse((await api.get<Node>(nodeKind, 'cred')).status.lastHeartbeat!);
    await until(async () => Date.parse((await api.get<Node>(nodeKind, 'cred')).status.lastHeartbeat!) > beat, 5000);
    expect(await state()).toBe('ready');
  });

  it('says how to join again when its certificate expired while it was away', async () => {
    for (const a of agents.splice(0)) await a.stop();
    offset = 100 * DAY;
    try {
      await expect(agent(undefined).start()).rejects.toMatchObject({ message: expect.stringMatching(/certificate has expired .* join again: baton agent --join https:\/\/127\.0\.0\.1:\d+ --token TOKEN/) });
    } finally {
      offset = 0;
    }
  });
});
