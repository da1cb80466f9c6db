/** HTTP helpers for end-to-end tests that reach tasks through the mesh. */
import { request as httpRequest } from 'node:http';

/** getBody makes one HTTP request on a new connection and returns the body (or the error's code). */
export function getBody(host: string, port: number, path = '/id', timeoutMs = 10_000): Promise<{ ok: boolean; body: string }> {
  return new Promise((resolve) => {
    const req = httpRequest({ host, port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ ok: res.statusCode === 200, body: body.trim() }));
      res.on('error', (e) => resolve({ ok: false, body: String(e) }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: Error & { code?: string }) => resolve({ ok: false, body: e.code ?? e.message }));
    req.end();
  });
}
