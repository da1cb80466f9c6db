/**
 * The manager role over real TLS, nodes joining for real and registering
 * with their own certificates: only the node whose agent the server runs
 * itself (BatonServer.hostsAgent, what `baton up` calls) is granted the
 * role its registration claims; any other claim, an admin's included, is
 * refused with a 403 that names the field, and nothing is written; a claim
 * left out makes the node a worker again; `node ls` shows the role.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../src/api/client.js';
import { nodeKind } from '../src/api/kinds.js';
import type { Node } from '../src/api/types.js';
import { withTransport } from '../src/api/tls.js';
import { joinCluster } from '../src/agent/join.js';
import { memoryServer, type MemoryServer } from './helpers/memoryServer.js';
import { registration } from './fixtures.js';

describe('node.role: the server grants manager to the agent it runs, and to no one else', () => {
  let ms: MemoryServer;
  const clients = new Map<string, ApiClient>();

  const register = (as: ApiClient, name: string, role?: string) => as.call<{ node: Node }>('POST', '/api/v1/nodes/register', registration(name, role === undefined ? {} : { role }));
  const roleColumn = (n: Node) => nodeKind.columns.find((c) => c.header === 'ROLE')!.get(n);

  beforeAll(async () => {
    ms = await memoryServer('baton-role-', {});
    // The server runs `up1`'s agent itself; `w1` is an agent like any other, on the same machine.
    ms.server.hostsAgent('up1');
    for (const name of ['up1', 'w1']) {
      const c = await joinCluster({ server: ms.server.url, token: ms.server.joinToken, name, address: '127.0.0.1' });
      clients.set(name, new ApiClient(withTransport({ server: ms.server.url }, ms.transport({ caPem: c.caPem, certPem: c.certPem, keyPem: c.keyPem }))));
    }
  });

  afterAll(() => ms.stop());

  it("grants the manager role to the server's own agent when it claims it", async () => {
    const { node } = await register(clients.get('up1')!, 'up1', 'manager');
    expect(node.status.role).toBe('manager');
    expect(roleColumn((await ms.api.get<Node>(nodeKind, 'up1')) as Node)).toBe('manager');
  });

  it('refuses the claim of any other node, and of an admin, writing nothing', async () => {
    await expect(register(clients.get('w1')!, 'w1', 'manager')).rejects.toMatchObject({
      code: 'BATON_ERR_FORBIDDEN',
      message: expect.stringMatching(/node w1 may not register as a manager: only a node that runs a server/),
      details: [{ path: 'body.role', message: 'leave role out, or use worker' }],
    });
    await expect(ms.api.get(nodeKind, 'w1')).rejects.toMatchObject({ code: 'BATON_ERR_NOT_FOUND' });
    // An admin may register a node by hand, but not make it a manager: the server has not seen a server there.
    await expect(register(ms.api, 'up1', 'manager')).rejects.toMatchObject({ code: 'BATON_ERR_FORBIDDEN' });
    const refused = (await ms.api.events({ limit: 1000 })).items.filter((e) => e.reason === 'RoleRefused');
    expect(refused.map((e) => e.name).sort()).toEqual(['up1', 'w1']);
  });

  it('makes a node that does not claim the role a worker, and a manager that stops claiming it a worker again', async () => {
    const { node } = await register(clients.get('w1')!, 'w1');
    expect(node.status.role).toBeUndefined();
    expect(roleColumn(node)).toBe('worker');
    expect((await register(clients.get('w1')!, 'w1', 'worker')).node.status.role).toBeUndefined();
    expect((await register(clients.get('up1')!, 'up1')).node.status.role).toBeUndefined();
    expect((await register(clients.get('up1')!, 'up1', 'manager')).node.status.role).toBe('manager');
  });

  it('refuses a role that is not manager or worker, saying where', async () => {
    await expect(register(clients.get('w1')!, 'w1', 'leader')).rejects.toMatchObject({ code: 'BATON_ERR_BAD_REQUEST', details: [{ path: 'body.role' }] });
  });
});
