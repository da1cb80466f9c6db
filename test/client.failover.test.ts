/**
 * A client that knows several servers (servers sharing one store) goes on
 * to the next when one gives no answer: a closed port, or one that accepts
 * the connection and never answers (a paused server), within its timeout;
 * it stays with the one that answered. An answer, even an error, is final:
 * a request is never sent twice because a server said no. Real sockets.
 */
import { createServer as createHttp, type Server as HttpServer } from 'node:http';
import { createServer as createTcp, type Server as TcpServer, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../src/api/client.js';
import { Informer } from '../src/api/informer.js';
import { serviceKind } from '../src/api/kinds.js';
import { isBatonError } from '../src/base/errors.js';

const closers: (() => void)[] = [];
afterAll(() => {
  for (const c of closers) c();
});

async function listen(s: HttpServer | TcpServer): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as { port: number }).port;
}

/** answering: a server that answers GET /api/v1/info with its name, and 422 to anything else. */
async function answering(name: string, hits: string[]): Promise<{ url: string; close(): void }> {
  const s = createHttp((req, res) => {
    hits.push(`${name} ${req.method} ${req.url}`);
    if (req.url === '/api/v1/info') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name }));
    res.writeHead(422, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'BATON_ERR_VALIDATION', message: `refused by ${name}` } }));
  });
  const port = await listen(s);
  const close = () => {
    s.closeAllConnections();
    s.close();
  };
  closers.push(close);
  return { url: `http://127.0.0.1:${port}`, close };
}

describe('ApiClient with several servers', () => {
  it('fails over past a closed port and a server that never answers, stays with the one that answered, and never resends an answered request', async () => {
    // A closed port: bind one, note it, close it.
    const gone = createTcp();
    const closedPort = await listen(gone);
    await new Promise<void>((r) => gone.close(() => r()));
    // A server that takes connections and says nothing (as a SIGSTOPped one does).
    const held: Socket[] = [];
    const mute = createTcp((sock) => held.push(sock));
    const mutePort = await listen(mute);
    closers.push(() => {
      for (const s of held) s.destroy();
      mute.close();
    });
    const hits: string[] = [];
    const c = await answering('c', hits);
    const api = new ApiClient({ server: `http://127.0.0.1:${closedPort},http://127.0.0.1:${mutePort},${c.url}`, timeoutMs: 300 });
    expect(api.servers).toHaveLength(3);
    const started = Date.now();
    expect(await api.call<{ name: string }>('GET', '/api/v1/info')).toEqual({ name: 'c' });
    expect(Date.now() - started).toBeLessThan(5 * 300 + 1000);
    expect(api.server).toBe(c.url);
    // Straight to c from now on.
    expect(await api.call<{ name: string }>('GET', '/api/v1/info')).toEqual({ name: 'c' });
    expect(hits).toEqual(['c GET /api/v1/info', 'c GET /api/v1/info']);
    // An error answer is an answer: no other server is asked.
    const err = await api.call('POST', '/api/v1/stacks/x/apply', {}).catch((e) => e);
    expect(isBatonError(err) && err.code).toBe('BATON_ERR_VALIDATION');
    expect(hits.filter((h) => h.startsWith('c POST'))).toHaveLength(1);
    // c goes away and a answers on the first port: the client finds it.
    c.close();
    const a = await answering('a', hits);
    const api2 = new ApiClient({ server: `${c.url},${a.url}`, timeoutMs: 300 });
    expect(await api2.call<{ name: string }>('GET', '/api/v1/info')).toEqual({ name: 'a' });
    expect(api2.server).toBe(a.url);
    // With none answering, the error names the last server tried.
    a.close();
    const none = await api2.call('GET', '/api/v1/info').catch((e) => e);
    expect(isBatonError(none) && none.code).toBe('BATON_ERR_UNAVAILABLE');
  }, 30_000);

  it('moves an informer\'s watch to the next server when the client does: a watch held on a server that went silent is opened again there', async () => {
    /** A server that lists one service and holds a watch; `mute` makes it stop answering anything (a paused server). */
    const watcher = async (name: string) => {
      const state = { mute: false, watches: 0, lists: 0, streams: [] as import('node:http').ServerResponse[] };
      const s = createHttp((req, res) => {
        if (state.mute) return; // the connection stays open; nothing is ever said
        const u = new URL(req.url!, 'http://x');
        if (u.pathname === '/api/v1/info') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name }));
        if (u.searchParams.get('watch') === 'true') {
          state.watches++;
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          res.flushHeaders();
          state.streams.push(res);
          return;
        }
        state.lists++;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ items: [{ metadata: { name: 'web', resourceVersion: '5' } }], metadata: { resourceVersion: '5', storeEpoch: 'e1' } }));
      });
      const port = await listen(s);
      closers.push(() => {
        s.closeAllConnections();
        s.close();
      });
      return { url: `http://127.0.0.1:${port}`, state };
    };
    const a = await watcher('a');
    const b = await watcher('b');
    const api = new ApiClient({ server: `${a.url},${b.url}`, timeoutMs: 300 });
    const seen: string[] = [];
    const inf = new Informer(api, serviceKind, { onEvent: (type, o) => seen.push(`${type} ${o.metadata.name}`), retry: { initialMs: 50, maxMs: 200 } });
    inf.start();
    try {
      await expect.poll(() => a.state.watches, { timeout: 5000 }).toBe(1);
      // a stops answering: its watch stays open and silent. The next call times out there and moves the client to b.
      a.state.mute = true;
      expect(await api.call<{ name: string }>('GET', '/api/v1/info')).toEqual({ name: 'b' });
      // The informer watches again, on b, from the revision it had (no list: b never got one).
      await expect.poll(() => b.state.watches, { timeout: 5000 }).toBe(1);
      b.state.streams[0]!.write(JSON.stringify({ type: 'MODIFIED', object: { metadata: { name: 'web', resourceVersion: '6' } } }) + '\n');
      await expect.poll(() => seen, { timeout: 5000 }).toContain('MODIFIED web');
      expect(inf.revision).toBe('6');
      expect(b.state.lists).toBe(0);
    } finally {
      await inf.stop();
    }
  }, 30_000);
});
