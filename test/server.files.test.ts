/**
 * Secrets and configs on the server (files.ts, routes/files.ts), over real
 * TLS on the memory store: created, listed without their content, used by
 * services (which take their hash), given a new content (which rolls those
 * services), kept sealed in the store, and read only by a node that runs a
 * task using them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../src/api/client.js';
import { secretKind, serviceKind, taskKind } from '../src/api/kinds.js';
import type { Secret, Service, Task } from '../src/api/types.js';
import { serviceSpec } from './fixtures.js';
import { isBatonError } from '../src/base/errors.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const SECRET = 'hunter2-very-secret';

describe('secrets and configs on the server', () => {
  let m: MemoryServer;
  const nodes: Record<string, ApiClient> = {};
  const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => (isBatonError(e) ? { code: e.code, message: e.message, details: e.details } : e));

  beforeAll(async () => {
    m = await memoryServer('baton-files-', { heartbeatIntervalMs: 500 });
    for (const [name, address] of [['f1', '127.0.0.2'], ['f2', '127.0.0.3']] as const) nodes[name] = await m.node(name, address);
  });
  afterAll(async () => {
    await m?.stop();
  });

  it('creates a secret, shows its hash and size and never its content, and refuses a second one by that name', async () => {
    const created = await m.api.call<Secret>('POST', '/api/v1/secrets', { name: 'db', data: b64(SECRET) });
    expect(created.spec).toEqual({ hash: expect.stringMatching(/^[0-9a-f]{64}$/), size: SECRET.length });
    const listed = await m.api.list<Secret>(secretKind);
    expect(listed.items.map((s) => s.metadata.name)).toEqual(['db']);
    expect(JSON.stringify(listed)).not.toContain(SECRET);
    expect(JSON.stringify(await m.api.get(secretKind, 'db'))).not.toContain(b64(SECRET));
    expect(await failure(m.api.call('POST', '/api/v1/secrets', { name: 'db', data: b64('x') }))).toMatchObject({ code: 'BATON_ERR_ALREADY_EXISTS' });
    expect(await failure(m.api.call('POST', '/api/v1/secrets', { name: 'big', data: 'not base64!' }))).toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [expect.objectContaining({ path: 'body.data' })] });
    // Sealed in the store: no value holds the content, in clear or in base64.
    const all = await m.server.store.range('');
    for (const kv of all.kvs) {
      expect(kv.value).not.toContain(SECRET);
      expect(kv.value).not.toContain(b64(SECRET));
    }
  });

  it('applies a stack whose config it defines and whose secret exists: the service takes their hashes; an unknown one is refused with its path', async () => {
    const spec = serviceSpec({ stack: 'files', shortName: 'web', replicas: 1 });
    spec.placement = { ...spec.placement, constraints: ['node.name == f1'] };
    spec.container = { ...spec.container, secrets: [{ source: 'db', target: '/run/secrets/db', uid: 0, gid: 0, mode: 0o400 }], configs: [{ source: 'files_conf', target: '/etc/app.conf', uid: 0, gid: 0, mode: 0o444 }] };
    const res = await m.api.apply('files', { services: [{ name: 'files_web', spec, labels: {} }], prune: false, dryRun: false, configs: [{ name: 'files_conf', data: b64('port = 80\n') }] });
    expect(res.files).toEqual([{ kind: 'config', name: 'files_conf', action: 'create' }]);
    const svc = await m.api.get<Service>(serviceKind, 'files_web');
    const db = await m.api.get<Secret>(secretKind, 'db');
    expect(svc.spec.container.secrets![0]!.hash).toBe(db.spec.hash);
    expect(svc.spec.container.configs![0]!.hash).toMatch(/^[0-9a-f]{64}$/);

    const bad = { ...spec, container: { ...spec.container, secrets: [{ source: 'nope', target: '/run/secrets/nope', uid: 0, gid: 0, mode: 0o400 }] } };
    expect(await failure(m.api.apply('files', { services: [{ name: 'files_bad', spec: { ...bad, shortName: 'bad' }, labels: {} }], prune: false, dryRun: false }))).toMatchObject({
      code: 'BATON_ERR_VALIDATION',
      details: [{ path: 'services.bad.secrets[0].source', message: expect.stringMatching(/secret "nope" does not exist/) }],
    });
  });

  it('gives a content only to the node whose task uses it', async () => {
    const task = await waitFor(async () => (await m.api.list<Task>(taskKind)).items.find((t) => t.spec.serviceName === 'files_web' && t.spec.nodeName === 'f1'));
    expect(task.spec.container.secrets![0]!.source).toBe('db');
    const got = await nodes.f1!.call<{ data: string; hash: string }>('GET', '/api/v1/nodes/f1/secrets/db');
    expect(Buffer.from(got.data, 'base64').toString()).toBe(SECRET);
    expect(await failure(nodes.f2!.call('GET', '/api/v1/nodes/f2/secrets/db'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN', message: 'node f2 runs no task that uses secret "db"' });
    expect(await failure(nodes.f2!.call('GET', '/api/v1/nodes/f1/secrets/db'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    expect(await failure(m.api.call('GET', '/api/v1/nodes/f1/secrets/db'))).toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    expect((await nodes.f1!.call<{ data: string }>('GET', '/api/v1/nodes/f1/configs/files_conf')).data).toBe(b64('port = 80\n'));
  });

  it('rolls the services that use a secret when it gets a new content, and keeps one in use from removal', async () => {
    const before = await m.api.get<Service>(serviceKind, 'files_web');
    const r = await m.api.call<Secret & { rolled: string[] }>('PUT', '/api/v1/secrets/db', { data: b64('a new one') });
    expect(r.rolled).toEqual(['files_web']);
    const after = await m.api.get<Service>(serviceKind, 'files_web');
    expect(after.metadata.generation).toBe(before.metadata.generation + 1);
    expect(after.spec.container.secrets![0]!.hash).toBe(r.spec.hash);
    // The same content again changes nothing.
    expect((await m.api.call<{ rolled: string[] }>('PUT', '/api/v1/secrets/db', { data: b64('a new one') })).rolled).toEqual([]);
    expect(await failure(m.api.call('DELETE', '/api/v1/secrets/db'))).toMatchObject({ code: 'BATON_ERR_CONFLICT', message: 'secret "db" is in use by files_web: remove it from them first' });
    await m.api.call('DELETE', '/api/v1/services/files_web');
    await m.api.call('DELETE', '/api/v1/secrets/db');
    expect((await m.api.list(secretKind)).items).toEqual([]);
    expect(await m.server.store.get('/baton/filedata/secrets/db')).toBeUndefined();
  });
});

async function waitFor<T>(fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}
