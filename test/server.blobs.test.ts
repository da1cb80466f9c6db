/**
 * Build contexts on the servers (blobs.ts, routes/blobs.ts), over real TLS
 * on the memory store: an upload is checked against its digest and kept
 * whole or not at all; an apply naming a context no server has is refused
 * with its path; a node reads a context only while a task of its own is
 * built from it; servers sharing a store copy each upload to the others and
 * fetch what they lack from one that has it; unreferenced blobs are swept.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, unlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { ApiClient } from '../src/api/client.js';
import { taskKind } from '../src/api/kinds.js';
import { buildImage } from '../src/api/build.js';
import type { BuildSpec, Task } from '../src/api/types.js';
import { withTransport, tlsTransport } from '../src/api/tls.js';
import { isBatonError } from '../src/base/errors.js';
import { Blobs } from '../src/server/blobs.js';
import { BatonServer } from '../src/server/server.js';
import { ClusterKey } from '../src/server/clusterKey.js';
import { MemoryStore } from '../src/store/memory/memoryStore.js';
import { MemoryEventStore } from '../src/store/memory/memoryEventStore.js';
import { serviceSpec } from './fixtures.js';
import { eventually } from './helpers/proc.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => (isBatonError(e) ? { code: e.code, message: e.message, details: e.details } : e));
const CONTEXT = Buffer.from('a build context: any bytes will do for the servers\n'.repeat(100));
const DIGEST = digestOf(CONTEXT);

function builtSpec(stack: string, shortName: string, context: string, node: string) {
  const build: BuildSpec = { context, size: CONTEXT.length, dockerfile: 'Dockerfile', args: {}, labels: {} };
  const spec = serviceSpec({ stack, shortName, replicas: 1 });
  spec.placement = { ...spec.placement, constraints: [`node.name == ${node}`] };
  spec.container = { ...spec.container, image: buildImage(`${stack}_${shortName}`, build), build };
  return spec;
}

describe('build contexts on one server', () => {
  let m: MemoryServer;
  const nodes: Record<string, ApiClient> = {};

  beforeAll(async () => {
    m = await memoryServer('baton-blobs-', { heartbeatIntervalMs: 500 });
    for (const [name, address] of [['b1', '127.0.0.2'], ['b2', '127.0.0.3']] as const) nodes[name] = await m.node(name, address);
  });
  afterAll(async () => {
    await m?.stop();
  });

  it('keeps an upload only when its bytes are what its digest says', async () => {
    expect(await failure(m.api.blobStat(DIGEST))).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    const wrong = digestOf(Buffer.from('something else'));
    expect(await failure(m.api.putBlob(wrong, CONTEXT))).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', message: expect.stringContaining('nothing was kept') });
    expect(await failure(m.api.blobStat(wrong))).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    expect(await failure(m.api.call('PUT', '/api/v1/blobs/sha256:abc', CONTEXT))).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [expect.objectContaining({ path: 'params.digest' })] });
    // JSON is not a blob's body.
    expect(await failure(m.api.call('PUT', `/api/v1/blobs/${DIGEST}`, { data: 'x' }))).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [expect.objectContaining({ path: 'body' })] });
    expect(await m.api.putBlob(DIGEST, CONTEXT)).toEqual({ digest: DIGEST, size: CONTEXT.length });
    expect(await m.api.blobStat(DIGEST)).toEqual({ digest: DIGEST, size: CONTEXT.length });
    // A node may not upload.
    expect(await failure(nodes.b1!.putBlob(DIGEST, CONTEXT))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
  });

  it('refuses an apply whose build context no server has, naming its path', async () => {
    const missing = digestOf(Buffer.from('never uploaded'));
    const res = await failure(m.api.apply('blobs', { services: [{ name: 'blobs_web', spec: builtSpec('blobs', 'web', missing, 'b1'), labels: {} }], prune: false, dryRun: false }));
    expect(res).toMatchObject({ code: 'BATON_ERR_VALIDATION', details: [{ path: 'services[0].spec.container.build.context', message: expect.stringContaining('is on no server') }] });
    // An image that is not the build's own tag is refused: a build may not overwrite another image on a node.
    const spec = builtSpec('blobs', 'web', DIGEST, 'b1');
    expect(await failure(m.api.apply('blobs', { services: [{ name: 'blobs_web', spec: { ...spec, container: { ...spec.container, image: 'nginx:latest' } }, labels: {} }], prune: false, dryRun: false }))).toMatchObject({
      code: 'BATON_ERR_VALIDATION',
      details: [{ path: 'services[0].spec.container.image', message: expect.stringContaining("tagged with its build's hash") }],
    });
  });

  it('gives a context only to a node with a task built from it', async () => {
    await m.api.apply('blobs', { services: [{ name: 'blobs_web', spec: builtSpec('blobs', 'web', DIGEST, 'b1'), labels: {} }], prune: false, dryRun: false });
    await eventually(async () => expect((await m.api.list<Task>(taskKind)).items.some((t) => t.spec.serviceName === 'blobs_web' && t.spec.nodeName === 'b1')).toBe(true), 10_000);
    const chunks: Buffer[] = [];
    for await (const c of await nodes.b1!.blob(DIGEST, AbortSignal.timeout(10_000))) chunks.push(Buffer.from(c));
    expect(Buffer.concat(chunks).equals(CONTEXT)).toBe(true);
    expect(await failure(nodes.b2!.blob(DIGEST, AbortSignal.timeout(10_000)))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN', message: `node b2 runs no task built from ${DIGEST}` });
  });
});

describe('build contexts on servers sharing a store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-blobs-ha-'));
  const servers: BatonServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  it('copy an upload to every live server, and fetch what one lacks from another', async () => {
    const keyFile = join(dir, 'cluster.key');
    ClusterKey.create(keyFile);
    const store = new MemoryStore();
    const events = new MemoryEventStore();
    const start = async (name: string) => {
      const s = await BatonServer.start({ dataDir: join(dir, name), listen: '127.0.0.1:0', store, events, logLevel: 'silent', clusterKeyFile: keyFile, election: { identity: name, ttlSeconds: 1 }, timings: { heartbeatIntervalMs: 200 } });
      servers.push(s);
      return s;
    };
    const [a, b] = [await start('a'), await start('b')];
    const admin = (s: BatonServer) => new ApiClient(withTransport({ server: s.url, token: s.adminToken }, tlsTransport({ caPem: s.caPem })));
    const file = (s: string) => join(dir, s, 'server', 'blobs', DIGEST.slice(7));
    // Each knows the other before the upload.
    await eventually(async () => expect((await admin(a).info()).servers?.length).toBe(2), 10_000);
    await admin(a).putBlob(DIGEST, CONTEXT);
    expect(existsSync(file('a'))).toBe(true);
    expect(existsSync(file('b'))).toBe(true);

    // b lost its copy: asked, it fetches it from a.
    unlinkSync(file('b'));
    expect(await admin(b).blobStat(DIGEST)).toEqual({ digest: DIGEST, size: CONTEXT.length });
    expect(existsSync(file('b'))).toBe(true);

    // A server that came later serves it too, and a digest no server has is a 404 everywhere.
    const c = await start('c');
    await eventually(async () => expect((await admin(c).info()).servers?.length).toBe(3), 10_000);
    expect(await admin(c).blobStat(DIGEST)).toEqual({ digest: DIGEST, size: CONTEXT.length });
    expect(await failure(admin(c).blobStat(digestOf(Buffer.from('nowhere'))))).toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    // A server's certificate is for blobs, not for the rest of the API.
    const asServer = new ApiClient(withTransport({ server: a.url }, tlsTransport({ caPem: a.caPem, certPem: a.pki.client.certPem, keyPem: a.pki.client.keyPem })));
    expect(await failure(asServer.call('GET', '/api/v1/services'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
  }, 60_000);
});

describe('Blobs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-blobs-unit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const blobs = new Blobs(dir, { maxBytes: 1000, log: pino({ level: 'silent' }) });

  it('refuses a blob over the limit and keeps nothing of it', async () => {
    const big = Buffer.alloc(1001, 1);
    await expect(blobs.receive(digestOf(big), Readable.from([big]))).rejects.toMatchObject({ code: 'BATON_ERR_TOO_LARGE' });
    expect(readdirSync(join(dir, 'blobs'))).toEqual([]);
  });

  it('sweeps what nothing names once it is older than the grace period', async () => {
    const keep = Buffer.from('keep');
    const old = Buffer.from('old');
    const young = Buffer.from('young');
    for (const x of [keep, old, young]) await blobs.receive(digestOf(x), Readable.from([x]));
    const hour = Date.now() - 3_600_000;
    for (const x of [keep, old]) utimesSync(join(dir, 'blobs', digestOf(x).slice(7)), hour / 1000, hour / 1000);
    expect(blobs.sweep(new Set([digestOf(keep)]), Date.now(), 60_000)).toBe(1);
    expect(readdirSync(join(dir, 'blobs')).sort()).toEqual([digestOf(keep).slice(7), digestOf(young).slice(7)].sort());
  });
});
