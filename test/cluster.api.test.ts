/**
 * Joining and node identity over real TLS sockets (in-process server, memory
 * store): the join handshake and each way it is refused, what a node
 * certificate may do, token rotation, revocation closing an open watch,
 * expired certificates, node updates, and the heartbeat interval that grows
 * with the cluster. Every refusal leaves an Event and changes no node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatonServer } from '../src/server/server.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { ApiClient } from '../src/api/client.js';
import { nodeKind, taskKind } from '../src/api/kinds.js';
import type { Node, Task } from '../src/api/types.js';
import { tlsTransport, withTransport, type Transport } from '../src/api/tls.js';
import { joinCluster, type NodeCredentials } from '../src/agent/join.js';
import { generateKeyAndCsr, signCsr } from '../src/base/pki.js';
import { joinProof, parseJoinToken } from '../src/base/joinToken.js';
import { heartbeatInterval, statusFlushInterval, DEFAULT_TIMINGS } from '../src/server/controllers/context.js';

describe('joining a cluster (real TLS, memory store)', () => {
  let server: BatonServer;
  let api: ApiClient;
  let dir: string;
  const transports: Transport[] = [];

  const clientOf = (c: Pick<NodeCredentials, 'caPem' | 'certPem' | 'keyPem'>): ApiClient => {
    const t = tlsTransport(c);
    transports.push(t);
    return new ApiClient(withTransport({ server: server.url, timeoutMs: 5000 }, t));
  };
  const register = (c: ApiClient, name: string, address = '127.0.0.1') =>
    c.call('POST', '/api/v1/nodes/register', { name, address, hostname: name, agentVersion: '0.1.0', capacity: { cpus: 2, memoryBytes: 2 ** 30 }, portRange: [1, 2], engine: { ok: true, version: 'test' } });
  const events = async (reason: string) => (await api.events({ limit: 1000 })).items.filter((e) => e.reason === reason);
  const nodeNames = async () => (await api.nodes()).items.map((n) => n.metadata.name).sort();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'baton-cluster-'));
    server = await BatonServer.start({
      dataDir: dir,
      listen: '127.0.0.1:0',
      store: new MemoryStore(),
      events: new MemoryEventStore(),
      logLevel: 'silent',
      timings: { heartbeatIntervalMs: 200, bookmarkIntervalMs: 200, joinNonceTtlMs: 2000 },
    });
    const t = tlsTransport({ caPem: server.caPem });
    transports.push(t);
    api = new ApiClient(withTransport({ server: server.url, token: server.adminToken }, t));
  });

  afterAll(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('joins with the token: the certificate names the node and its address, and works for mutual TLS', async () => {
    const c = await joinCluster({ server: server.url, token: server.joinToken, name: 'j1', address: '127.0.0.2' });
    const { certInfo } = await import('../src/base/pki.js');
    const info = certInfo(c.certPem);
    expect(info).toMatchObject({ commonName: 'j1', sans: { ips: ['127.0.0.2'] }, usages: ['client', 'server'] });
    // 90 days by default.
    expect(Math.round((info.notAfter.getTime() - Date.now()) / 86_400_000)).toBe(90);
    await register(clientOf(c), 'j1', '127.0.0.2');
    // A node registers only at the address its certificate names: it cannot claim another node's.
    await expect(register(clientOf(c), 'j1', '127.0.0.3')).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN', message: 'node j1 may register only at 127.0.0.2', details: [{ path: 'body.address', message: expect.stringMatching(/not the address this node's certificate was issued for/) }] });
    expect(await nodeNames()).toContain('j1');
    expect((await events('NodeJoined')).map((e) => e.name)).toContain('j1');
  });

  it('refuses a wrong token, a replayed nonce and an expired nonce, each with an Event, and changes no node', async () => {
    const before = await nodeNames();
    const bad = `${server.joinToken.slice(0, -4)}AAAA`;
    await expect(joinCluster({ server: server.url, token: bad, name: 'x1', address: '127.0.0.9' })).rejects.toMatchObject({ code: 'BATON_ERR_JOIN_REFUSED', message: expect.stringMatching(/join token is wrong, was rotated/) });

    // Replay: the same nonce, proof and CSR sent twice.
    const { secret } = parseJoinToken(server.joinToken);
    const { nonce } = await api.call<{ nonce: string }>('POST', '/api/v1/join/nonce', {});
    const { csrPem } = await generateKeyAndCsr('x2');
    const body = { name: 'x2', address: '127.0.0.9', csr: csrPem, nonce, proof: joinProof(secret, nonce, csrPem) };
    await api.call('POST', '/api/v1/join', body);
    await expect(api.call('POST', '/api/v1/join', body)).rejects.toMatchObject({ code: 'BATON_ERR_JOIN_REFUSED', message: expect.stringMatching(/nonce was already used .* replayed/) });

    const old = await api.call<{ nonce: string }>('POST', '/api/v1/join/nonce', {});
    await new Promise((r) => setTimeout(r, 2100));
    const late = await generateKeyAndCsr('x3');
    await expect(api.call('POST', '/api/v1/join', { name: 'x3', address: '127.0.0.9', csr: late.csrPem, nonce: old.nonce, proof: joinProof(secret, old.nonce, late.csrPem) })).rejects.toMatchObject({ message: expect.stringMatching(/nonce expired/) });

    const refused = (await events('JoinRefused')).map((e) => e.message).join('\n');
    expect(refused).toMatch(/x1 .* wrong join token/);
    expect(refused).toMatch(/x2 .* replayed/);
    expect(refused).toMatch(/x3 .* expired nonce/);
    expect(await nodeNames()).toEqual(before); // x2 got a certificate but never registered
  });

  it('refuses a request that is not a CSR, and one whose signature does not verify, saying which', async () => {
    const { secret } = parseJoinToken(server.joinToken);
    const join = async (name: string, csr: string) => {
      const { nonce } = await api.call<{ nonce: string }>('POST', '/api/v1/join/nonce', {});
      return api.call('POST', '/api/v1/join', { name, address: '127.0.0.9', csr, nonce, proof: joinProof(secret, nonce, csr) });
    };
    await expect(join('x4', 'hello')).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', message: expect.stringMatching(/csr refused: not a PEM certificate request/) });
    // The last byte of the DER is the signature's: flip it and the CSR still parses, but no longer verifies.
    const { csrPem } = await generateKeyAndCsr('x5');
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1]! ^= 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(join('x5', tampered)).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', message: expect.stringMatching(/csr refused: CSR signature does not verify/) });
  });

  it('refuses a CA that does not match the token before sending anything', async () => {
    const other = parseJoinToken(server.joinToken);
    const forged = `BATON-1-${'ab'.repeat(32)}-${other.secret}`;
    await expect(joinCluster({ server: server.url, token: forged, name: 'x4', address: '127.0.0.9' })).rejects.toMatchObject({ code: 'BATON_ERR_TLS', message: expect.stringMatching(/presents CA sha256:.* but the join token pins sha256:abababab.*nothing was sent/) });
    expect((await events('JoinRefused')).some((e) => e.name === 'x4')).toBe(false);
  });

  it('refuses a name held by a live node, and allows taking over a dead one (revoking the old certificate)', async () => {
    const a = await joinCluster({ server: server.url, token: server.joinToken, name: 'held', address: '127.0.0.3' });
    const aApi = clientOf(a);
    await register(aApi, 'held', '127.0.0.3');
    await expect(joinCluster({ server: server.url, token: server.joinToken, name: 'held', address: '127.0.0.4' })).rejects.toMatchObject({ code: 'BATON_ERR_JOIN_REFUSED', message: expect.stringMatching(/node name held is held by a live node at 127.0.0.3/) });
    expect((await api.get<Node>(nodeKind, 'held')).status.address).toBe('127.0.0.3');
    // Once it stops beating (3 × 200 ms), the name can be taken over.
    await new Promise((r) => setTimeout(r, 800));
    await joinCluster({ server: server.url, token: server.joinToken, name: 'held', address: '127.0.0.4' });
    await expect(aApi.call('POST', '/api/v1/nodes/held/heartbeat', {})).rejects.toMatchObject({ code: 'BATON_ERR_UNAUTHORIZED', message: expect.stringMatching(/revoked/) });
  });

  it('lets a node certificate act only for its own node', async () => {
    const c = clientOf(await joinCluster({ server: server.url, token: server.joinToken, name: 'me', address: '127.0.0.5' }));
    await register(c, 'me', '127.0.0.5');
    await expect(register(c, 'j1')).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN', message: 'node me may not act for node j1' });
    await expect(c.call('POST', '/api/v1/nodes/j1/heartbeat', {})).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    await expect(c.tasks()).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN', message: expect.stringMatching(/only its own tasks/) });
    // Every Node it may read (its task network routes to other nodes' tasks), but not change.
    expect((await c.list<Node>(nodeKind)).items.map((n) => n.metadata.name)).toContain('me');
    await expect(c.call('PATCH', '/api/v1/nodes/me', { spec: { availability: 'drain' } })).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    await expect(c.get(nodeKind, 'me')).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN', message: 'a node certificate may not call GET /api/v1/nodes/:name' });
    await expect(c.call('GET', '/api/v1/join/token')).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    expect((await c.tasks({ fieldSelector: { 'spec.nodeName': 'me' } })).items).toEqual([]);
  });

  it('rotates the token: the old one stops joining, joined nodes keep working', async () => {
    const c = clientOf(await joinCluster({ server: server.url, token: server.joinToken, name: 'before', address: '127.0.0.6' }));
    const old = server.joinToken;
    const { token } = await api.call<{ token: string }>('POST', '/api/v1/join/token/rotate', {});
    expect(token).not.toBe(old);
    expect(parseJoinToken(token).caFingerprint).toBe(parseJoinToken(old).caFingerprint);
    await expect(joinCluster({ server: server.url, token: old, name: 'after', address: '127.0.0.7' })).rejects.toMatchObject({ code: 'BATON_ERR_JOIN_REFUSED' });
    await joinCluster({ server: server.url, token, name: 'after', address: '127.0.0.7' });
    await register(c, 'before', '127.0.0.6');
    expect((await events('JoinTokenRotated')).length).toBe(1);
  });

  it('revokes on node rm: an open watch is closed and the next request refused', async () => {
    const c = clientOf(await joinCluster({ server: server.url, token: server.joinToken, name: 'gone', address: '127.0.0.8' }));
    await register(c, 'gone', '127.0.0.8');
    await expect(api.call('DELETE', '/api/v1/nodes/gone')).rejects.toMatchObject({ code: 'BATON_ERR_CONFLICT', message: expect.stringMatching(/is Ready; drain it/) });
    const list = await c.tasks({ fieldSelector: { 'spec.nodeName': 'gone' } });
    let ended = false;
    const watching = (async () => {
      for await (const _ of c.watch<Task>(taskKind, { resourceVersion: list.metadata.resourceVersion, fieldSelector: { 'spec.nodeName': 'gone' } })) void _;
    })()
      .catch(() => {})
      .finally(() => (ended = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(ended).toBe(false);
    const r = await api.call<{ revokedCertificates: string[] }>('DELETE', '/api/v1/nodes/gone?force=true');
    expect(r.revokedCertificates).toHaveLength(1);
    await watching;
    expect(ended).toBe(true);
    const err = await c.call('POST', '/api/v1/nodes/gone/heartbeat', {}).catch((e) => e);
    expect(err).toMatchObject({ code: 'BATON_ERR_UNAUTHORIZED', details: [{ path: 'certificate', message: 'revoked' }] });
    expect((await events('CertificateRefused')).some((e) => /gone.*revoked/.test(e.message))).toBe(true);
    expect(await nodeNames()).not.toContain('gone');
  });

  it('refuses an expired certificate with a message that says what to do, and an Event', async () => {
    const ca = { certPem: server.caPem, keyPem: readFileSync(join(dir, 'server', 'ca.key'), 'utf8') };
    const k = await generateKeyAndCsr('old');
    const cert = await signCsr(ca, k.csrPem, { commonName: 'old', usage: 'both', notBefore: new Date(Date.now() - 3 * 86_400_000), days: 1 });
    const c = clientOf({ caPem: server.caPem, certPem: cert.certPem, keyPem: k.keyPem });
    await expect(c.call('POST', '/api/v1/nodes/old/heartbeat', {})).rejects.toMatchObject({ code: 'BATON_ERR_UNAUTHORIZED', message: expect.stringMatching(/certificate has expired.*join it again with a token/) });
    expect((await events('CertificateRefused')).some((e) => /old.*expired/.test(e.message))).toBe(true);
  });

  it('renews a certificate over mutual TLS', async () => {
    const c = await joinCluster({ server: server.url, token: server.joinToken, name: 'renew', address: '127.0.0.10' });
    const cl = clientOf(c);
    await register(cl, 'renew', '127.0.0.10');
    const { renewCertificate } = await import('../src/agent/join.js');
    const next = await renewCertificate(cl, c);
    expect(next.certPem).not.toBe(c.certPem);
    await register(clientOf(next), 'renew', '127.0.0.10');
  });

  it('updates labels and availability; drain records when it started', async () => {
    const n = await api.call<Node>('PATCH', '/api/v1/nodes/j1', { labelsAdd: { zone: 'a', 'disk.type': 'ssd' }, availability: 'drain' });
    expect(n.metadata.labels).toMatchObject({ zone: 'a', 'disk.type': 'ssd' });
    expect(n.spec.availability).toBe('drain');
    expect(Date.parse(n.metadata.annotations!['baton.drain.startedAt']!)).toBeGreaterThan(Date.now() - 10_000);
    const m = await api.call<Node>('PATCH', '/api/v1/nodes/j1', { labelsRemove: ['zone'], availability: 'active' });
    expect(m.metadata.labels).toEqual({ 'disk.type': 'ssd' });
    expect(m.metadata.annotations?.['baton.drain.startedAt']).toBeUndefined();
    const bad = await api.call('PATCH', '/api/v1/nodes/j1', { labelsAdd: { '-x': 'y' }, availability: 'gone' }).catch((e) => e);
    expect(bad.code).toBe('BATON_ERR_BAD_REQUEST');
    expect(bad.details.map((d: { path: string }) => d.path)).toEqual(['body.labelsAdd.-x', 'body.availability']);
    expect((await api.get<Node>(nodeKind, 'j1')).metadata.labels).toEqual({ 'disk.type': 'ssd' });
  });

  it('taints and untaints a node, and refuses a malformed taint with its path', async () => {
    const n = await api.call<Node>('PATCH', '/api/v1/nodes/j1', { taintsAdd: ['gpu=true:NoSchedule', 'maint:NoExecute'] });
    expect(n.spec.taints).toEqual([{ key: 'gpu', value: 'true', effect: 'NoSchedule' }, { key: 'maint', effect: 'NoExecute' }]);
    const m = await api.call<Node>('PATCH', '/api/v1/nodes/j1', { taintsAdd: ['gpu=false:NoSchedule'], taintsRemove: ['maint'] });
    expect(m.spec.taints).toEqual([{ key: 'gpu', value: 'false', effect: 'NoSchedule' }]);
    const bad = await api.call('PATCH', '/api/v1/nodes/j1', { taintsAdd: ['gpu'] }).catch((e) => e);
    expect(bad).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [{ path: 'body.taintsAdd[0]', message: expect.stringMatching(/must look like key=value:Effect/) }] });
    expect((await api.call<Node>('PATCH', '/api/v1/nodes/j1', { taintsRemove: ['gpu:NoSchedule'] })).spec.taints).toBeUndefined();
    expect((await events('NodeUpdated')).some((e) => /taints none → gpu=true:NoSchedule,maint:NoExecute/.test(e.message))).toBe(true);
  });

  it('stretches the heartbeat interval so that the whole cluster beats at most maxHeartbeatsPerSecond', () => {
    const t = { ...DEFAULT_TIMINGS };
    expect(heartbeatInterval(t, 10)).toBe(2000);
    expect(heartbeatInterval(t, 100)).toBe(2000);
    expect(heartbeatInterval(t, 1000)).toBe(20_000); // 1000 nodes / 50 per s
    expect(heartbeatInterval(t, 5000)).toBe(100_000);
    expect(heartbeatInterval(t, 10, 5000)).toBe(5000); // an agent may ask for slower
  });

  it('stretches the agents\' status flush interval with the cluster, from 200 ms to at most 2 s', () => {
    const t = { ...DEFAULT_TIMINGS };
    expect(statusFlushInterval(t, 10)).toBe(200);
    expect(statusFlushInterval(t, 1000)).toBe(1000); // 1000 nodes / 1000 posts per s
    expect(statusFlushInterval(t, 5000)).toBe(2000);
    expect(statusFlushInterval(t, 50_000)).toBe(2000);
  });
});
