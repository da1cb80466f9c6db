/**
 * probeRegistry asks a registry whether it takes a login, as `docker login`
 * does: the registry API's base (`GET /v2/`) with the credentials, by the
 * scheme its challenge asks for (Basic, or a Bearer token from its realm,
 * Docker Hub's way); without credentials, whether it wants some. The server
 * tries a login with it before keeping it; an agent asks it why a pull
 * failed when the engine's words do not say (dockerd falls back to plain
 * HTTP for a loopback registry and reports only that last attempt). What it
 * says is one of:
 *
 *   ok           the registry took the credentials (or wants none)
 *   refused      it answered and refused them, or wants some (401 or 403)
 *   unreachable  nothing answered (refused, no such host, timed out, TLS)
 *
 * HTTPS first; a registry on a loopback address is not held to its
 * certificate and may answer plain HTTP, as dockerd treats 127.0.0.0/8 as
 * an insecure registry. The password goes only to the registry (and its
 * token realm), never to a log.
 */
import { Agent, request, type Dispatcher } from 'undici';
import { isIP } from 'node:net';

export type RegistryVerdict = { ok: true } | { ok: false; why: 'refused' | 'unreachable'; message: string };

const TIMEOUT_MS = 10_000;

function isLoopback(server: string): boolean {
  const host = server.startsWith('[') ? server.slice(1, server.indexOf(']')) : server.replace(/:\d+$/, '');
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** The challenge of a 401: its scheme and parameters (realm, service, scope). */
function challenge(header: string | string[] | undefined): { scheme: string; params: Record<string, string> } | undefined {
  const h = Array.isArray(header) ? header[0] : header;
  if (!h) return undefined;
  const m = /^(\w+)\s*(.*)$/.exec(h.trim());
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!.toLowerCase()] = p[2]!;
  return { scheme: m[1]!.toLowerCase(), params };
}

async function get(url: string, dispatcher: Dispatcher, authorization?: string): Promise<{ status: number; challenge: ReturnType<typeof challenge> }> {
  const r = await request(url, { method: 'GET', dispatcher, headers: authorization ? { authorization } : {}, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
  await r.body.dump();
  return { status: r.statusCode, challenge: challenge(r.headers['www-authenticate']) };
}

function unreachable(server: string, e: unknown): RegistryVerdict {
  const err = e as { code?: string; cause?: { code?: string; message?: string }; message?: string };
  const code = err.cause?.code ?? err.code;
  return { ok: false, why: 'unreachable', message: `cannot reach registry ${server}: ${code ?? err.cause?.message ?? err.message ?? 'no answer'}` };
}

export async function probeRegistry(server: string, login?: { username: string; password: string }): Promise<RegistryVerdict> {
  const loopback = isLoopback(server);
  const dispatcher = new Agent({ connect: { rejectUnauthorized: !loopback, timeout: TIMEOUT_MS } });
  const basic = login ? `Basic ${Buffer.from(`${login.username}:${login.password}`).toString('base64')}` : undefined;
  try {
    let base = `https://${server}/v2/`;
    let first: Awaited<ReturnType<typeof get>>;
    try {
      first = await get(base, dispatcher);
    } catch (e) {
      if (!loopback) return unreachable(server, e);
      base = `http://${server}/v2/`;
      try {
        first = await get(base, dispatcher);
      } catch (e2) {
        return unreachable(server, e2);
      }
    }
    const refused = (status: number): RegistryVerdict => ({ ok: false, why: 'refused', message: login ? `registry ${server} refused these credentials (HTTP ${status}): check the user name and password` : `registry ${server} wants credentials (HTTP ${status})` });
    if (first.status !== 401) {
      if (first.status >= 200 && first.status < 300) return { ok: true };
      return { ok: false, why: 'unreachable', message: `registry ${server} answered HTTP ${first.status} at /v2/: it does not look like a registry` };
    }
    if (!basic) return refused(first.status);
    const c = first.challenge;
    if (c?.scheme === 'bearer' && c.params.realm) {
      // Docker Hub's way: a token from the realm, for the service, with the credentials.
      const realm = new URL(c.params.realm);
      if (c.params.service) realm.searchParams.set('service', c.params.service);
      const t = await get(realm.toString(), dispatcher, basic).catch((e: unknown) => e as Error);
      if (t instanceof Error) return unreachable(`${server} (its token service ${realm.host})`, t);
      return t.status >= 200 && t.status < 300 ? { ok: true } : refused(t.status);
    }
    const again = await get(base, dispatcher, basic);
    return again.status >= 200 && again.status < 300 ? { ok: true } : refused(again.status);
  } catch (e) {
    return unreachable(server, e);
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
}
