/**
 * The agent's probe runner against real sockets on 127.0.0.1: HTTP and TCP
 * probes, retries, start_period, and the bound on probes in flight. (Exec
 * probes run through the Docker driver: test/docker.driver.test.ts and
 * test/e2e/recovery.test.ts.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer as createHttp, type Server as HttpServer } from 'node:http';
import { createServer as createTcp, type Server as TcpServer } from 'node:net';
import { systemClock } from '../src/base/clock.js';
import { DockerDriver } from '../src/agent/docker/dockerDriver.js';
import { HealthMonitor, probeOnce } from '../src/agent/health.js';
import type { HealthcheckSpec } from '../src/api/types.js';

const driver = new DockerDriver();
const handle = { driver: 'docker', version: 1, id: 'unused', name: 'unused' };
const spec = (over: Partial<HealthcheckSpec>): HealthcheckSpec => ({ test: [], intervalMs: 50, timeoutMs: 500, retries: 2, startPeriodMs: 0, ...over });
const listen = async <S extends HttpServer | TcpServer>(s: S): Promise<number> => {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as { port: number }).port;
};
const until = async (what: string, ok: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('probes', () => {
  const servers: (HttpServer | TcpServer)[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  });

  it('HTTP: 2xx and 3xx pass, other statuses and silence fail with what happened; the container port maps to its host port', async () => {
    const http = createHttp((req, res) => {
      if (req.url === '/slow') return; // never answers
      res.statusCode = req.url === '/ok' ? 200 : req.url === '/moved' ? 302 : 503;
      res.end(req.url === '/ok' ? 'fine' : 'down for maintenance');
    });
    servers.push(http);
    const port = await listen(http);
    const target = { handle, image: 'x', address: '127.0.0.1', ports: [{ target: 8080, hostPort: port }] };
    expect(await probeOnce(driver, spec({ http: { path: '/ok', port: 8080 } }), target)).toEqual({ exitCode: 0, output: '' });
    expect((await probeOnce(driver, spec({ http: { path: '/moved', port: 8080 } }), target)).exitCode).toBe(0);
    expect(await probeOnce(driver, spec({ http: { path: '/bad', port: 8080 } }), target)).toEqual({ exitCode: 1, output: `GET http://127.0.0.1:${port}/bad: HTTP 503 down for maintenance` });
    expect(await probeOnce(driver, spec({ http: { path: '/slow', port: 8080 }, timeoutMs: 200 }), target)).toEqual({ exitCode: 1, output: `GET http://127.0.0.1:${port}/slow: no answer within 200 ms` });
  });

  it('TCP: a connect passes, a refused one fails', async () => {
    const tcp = createTcp((c) => c.end());
    servers.push(tcp);
    const port = await listen(tcp);
    const target = { handle, image: 'x', address: '127.0.0.1', ports: [] };
    expect(await probeOnce(driver, spec({ tcp: { port } }), target)).toEqual({ exitCode: 0, output: '' });
    await new Promise((r) => tcp.close(r));
    servers.pop();
    expect(await probeOnce(driver, spec({ tcp: { port } }), target)).toEqual({ exitCode: 1, output: `connect 127.0.0.1:${port}: ECONNREFUSED` });
  });
});

describe('HealthMonitor', () => {
  const servers: (HttpServer | TcpServer)[] = [];
  let monitor: HealthMonitor | undefined;
  afterEach(async () => {
    monitor?.close();
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  });

  it('decides at once after start, fails only after `retries` failures in a row, and passes again on one success', async () => {
    let up = true;
    const http = createHttp((_req, res) => {
      res.statusCode = up ? 200 : 500;
      res.end();
    });
    servers.push(http);
    const port = await listen(http);
    const changes: string[] = [];
    monitor = new HealthMonitor(driver, systemClock, (t) => changes.push(`${t}:${monitor!.verdict(t).healthy}`));
    const started = Date.now();
    monitor.watch('t1', 'run-1', { live: spec({ http: { path: '/', port }, intervalMs: 60_000, retries: 3 }) }, { handle, image: 'x', address: '127.0.0.1', ports: [] });
    // The first probe runs right away, not after the (one minute) interval.
    await until('healthy', () => monitor!.verdict('t1').healthy === true);
    expect(Date.now() - started).toBeLessThan(30_000);
    monitor.close();

    monitor = new HealthMonitor(driver, systemClock, (t) => changes.push(`${t}:${monitor!.verdict(t).healthy}`));
    monitor.watch('t2', 'run-1', { live: spec({ http: { path: '/', port }, intervalMs: 30, retries: 3 }) }, { handle, image: 'x', address: '127.0.0.1', ports: [] });
    await until('healthy', () => monitor!.verdict('t2').healthy === true);
    up = false;
    await until('unhealthy', () => monitor!.verdict('t2').healthy === false);
    expect(monitor.verdict('t2').output).toMatch(/HTTP 500/);
    up = true;
    await until('healthy again', () => monitor!.verdict('t2').healthy === true);
    expect(changes).toEqual(['t1:true', 't2:true', 't2:false', 't2:true']);
  });

  it('does not count failures during start_period until the probe has passed', async () => {
    let up = false;
    const http = createHttp((_req, res) => {
      res.statusCode = up ? 200 : 500;
      res.end();
    });
    servers.push(http);
    const port = await listen(http);
    monitor = new HealthMonitor(driver, systemClock, () => {});
    monitor.watch('t', 'run-1', { live: spec({ http: { path: '/', port }, intervalMs: 20, retries: 1, startPeriodMs: 60_000 }) }, { handle, image: 'x', address: '127.0.0.1', ports: [] });
    await new Promise((r) => setTimeout(r, 300));
    expect(monitor.verdict('t')).toEqual({});
    up = true;
    await until('healthy', () => monitor!.verdict('t').healthy === true);
    up = false;
    // Once it has passed, a failure counts even inside the start period.
    await until('unhealthy', () => monitor!.verdict('t').healthy === false);
  });

  it('keeps at most maxInFlight probes running at once; a new run of a task starts over, unwatch stops it', async () => {
    let now = 0;
    let peak = 0;
    let served = 0;
    const http = createHttp((_req, res) => {
      now++;
      peak = Math.max(peak, now);
      setTimeout(() => {
        now--;
        served++;
        res.end();
      }, 30);
    });
    servers.push(http);
    const port = await listen(http);
    monitor = new HealthMonitor(driver, systemClock, () => {}, 2);
    for (let i = 0; i < 6; i++) monitor.watch(`t${i}`, 'run-1', { live: spec({ http: { path: '/', port }, intervalMs: 10 }), ready: spec({ http: { path: '/', port }, intervalMs: 10 }) }, { handle, image: 'x', address: '127.0.0.1', ports: [] });
    await until('every task decided', () => [0, 1, 2, 3, 4, 5].every((i) => monitor!.verdict(`t${i}`).healthy === true && monitor!.verdict(`t${i}`).ready === true));
    expect(peak).toBe(2);
    monitor.unwatch('t0');
    expect(monitor.verdict('t0')).toEqual({});
    monitor.watch('t1', 'run-2', { live: spec({ http: { path: '/', port }, intervalMs: 10 }) }, { handle, image: 'x', address: '127.0.0.1', ports: [] });
    expect(monitor.verdict('t1')).toEqual({});
    monitor.close();
    const after = served;
    await new Promise((r) => setTimeout(r, 200));
    // Probes already in flight finish; none starts after close.
    expect(served - after).toBeLessThanOrEqual(2);
  });
});
