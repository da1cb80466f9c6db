/**
 * Blobs: build contexts (Compose `build:`), kept by the servers as files,
 * named by their digest (api/build.ts). Not in the store: etcd refuses a
 * request over 1.5 MiB and caps its database at 2 GiB, and a blob never
 * changes, so it needs no consensus, only copies.
 *
 * - A blob is written to a temporary file while its sha256 and size are
 *   checked, then renamed into `<data dir>/server/blobs/<hex>`: a reader
 *   never finds half a blob, and a body that is not what its name says is
 *   refused.
 * - Servers sharing a store copy every blob a client uploads to the others
 *   before the upload is answered (each, bounded; one that is down gets it
 *   later), and a server asked for a blob it lacks fetches it from one that
 *   has it. So every server serves every blob, and losing the server that
 *   took an upload loses nothing. Servers call each other with their client
 *   certificate (CN baton-server), which no node can hold.
 * - sweep deletes the blobs no service's spec (or previous spec, for a
 *   rollback) names once they are older than a grace period, which covers
 *   an upload whose apply has not come yet.
 */
import { randomBytes } from 'node:crypto';
import { digestStream } from '../base/digest.js';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { createSecureContext } from 'node:tls';
import { Agent as Dispatcher } from 'undici';
import type { Logger } from 'pino';
import { BatonError } from '../base/errors.js';
import type { ServerRecord } from './heartbeats.js';
import { buildImageProblem, buildSpecSchema } from '../api/build.js';

export interface BlobsOptions {
  /** The largest blob taken. */
  maxBytes: number;
  log: Logger;
  /** Servers sharing a store: the live servers, this one included, and this one's name. */
  peers?: { list: () => Promise<ServerRecord[]>; self: string; tls: { caPem: string; certPem: string; keyPem: string } };
  /** How long a peer call may take (default 60 s). */
  peerTimeoutMs?: number;
}

const HEX = /^[0-9a-f]{64}$/;

/** hexOf: the hex of a "sha256:<hex>" digest (validated by the route's schema already; checked again, as it becomes a file name). */
function hexOf(digest: string): string {
  const hex = digest.startsWith('sha256:') ? digest.slice(7) : '';
  if (!HEX.test(hex)) throw new BatonError('BATON_ERR_BAD_REQUEST', `${digest} is not a sha256 digest`);
  return hex;
}

/**
 * checkBuilds refuses specs with a build whose image is not the one the
 * build makes (so no build overwrites another image on a node), or whose
 * context no live server has (the client uploads it before the apply): a
 * 422 naming each one's path.
 */
export async function checkBuilds(blobs: Blobs, items: { path: string; container: unknown }[]): Promise<void> {
  const details: { path: string; message: string }[] = [];
  for (const { path, container } of items) {
    const c = container as { image?: unknown; build?: unknown } | undefined;
    const build = buildSpecSchema.safeParse(c?.build);
    if (!build.success) continue; // absent, or the spec's schema says what is wrong with it
    const problem = typeof c!.image === 'string' ? buildImageProblem(c!.image, build.data) : undefined;
    if (problem) details.push({ path: `${path}.image`, message: problem });
    if (!(await blobs.ensure(build.data.context))) details.push({ path: `${path}.build.context`, message: `build context ${build.data.context} is on no server: upload it first (baton apply does)` });
  }
  if (details.length) throw new BatonError('BATON_ERR_VALIDATION', 'a build is invalid', details);
}

export class Blobs {
  private readonly dir: string;
  private readonly dispatcher: Dispatcher | undefined;
  /** Fetches from peers in flight, so concurrent askers share one. */
  private readonly fetching = new Map<string, Promise<boolean>>();

  constructor(
    dataDir: string,
    private readonly o: BlobsOptions,
  ) {
    this.dir = join(dataDir, 'blobs');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (o.peers) this.dispatcher = new Dispatcher({ connect: { secureContext: createSecureContext({ ca: o.peers.tls.caPem, cert: o.peers.tls.certPem, key: o.peers.tls.keyPem }) }, keepAliveTimeout: 10_000 });
  }

  private file(digest: string): string {
    return join(this.dir, hexOf(digest));
  }

  /** size is the blob's size when this server has it. */
  size(digest: string): number | undefined {
    try {
      return statSync(this.file(digest)).size;
    } catch {
      return undefined;
    }
  }

  /** open reads a blob this server has. */
  open(digest: string): Readable {
    return createReadStream(this.file(digest));
  }

  /**
   * receive writes `body` as blob `digest`, refusing it (and keeping
   * nothing) when it is larger than the limit or its bytes are not what
   * the digest says. A blob already here is read to the end and kept as it is.
   */
  async receive(digest: string, body: Readable): Promise<{ size: number }> {
    const dest = this.file(digest);
    const tmp = join(this.dir, `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    const max = this.o.maxBytes;
    const check = digestStream(max, () => new BatonError('BATON_ERR_TOO_LARGE', `the blob is larger than ${max} bytes, the limit of a build context`));
    try {
      await pipeline(body, check.stream, createWriteStream(tmp, { mode: 0o600 }));
      const got = check.digest();
      if (got !== digest) throw new BatonError('BATON_ERR_BAD_REQUEST', `the body's digest is ${got}, not ${digest}: nothing was kept`);
      renameSync(tmp, dest);
      return { size: check.size() };
    } catch (err) {
      try {
        unlinkSync(tmp);
      } catch {
        /* not written */
      }
      throw err;
    }
  }

  /** ensure: this server has the blob afterwards, fetched from another server when it had not; false when no live server has it. */
  async ensure(digest: string): Promise<boolean> {
    if (this.size(digest) !== undefined) return true;
    if (!this.o.peers) return false;
    let p = this.fetching.get(digest);
    if (!p) {
      p = this.fetchFromPeers(digest).finally(() => this.fetching.delete(digest));
      this.fetching.set(digest, p);
    }
    return p;
  }

  private async others(): Promise<ServerRecord[]> {
    const peers = this.o.peers;
    if (!peers) return [];
    try {
      return (await peers.list()).filter((s) => s.name !== peers.self);
    } catch (err) {
      this.o.log.warn({ err: String(err) }, 'could not list the other servers');
      return [];
    }
  }

  private async fetchFromPeers(digest: string): Promise<boolean> {
    for (const s of await this.others()) {
      try {
        const r = await this.dispatcher!.request({ ...this.target(s.url, digest), method: 'GET', headersTimeout: this.timeout(), bodyTimeout: this.timeout() });
        if (r.statusCode !== 200) {
          await r.body.dump();
          continue;
        }
        await this.receive(digest, Readable.from(r.body));
        this.o.log.info({ digest, from: s.name }, 'fetched a blob from another server');
        return true;
      } catch (err) {
        this.o.log.warn({ digest, from: s.name, err: String(err) }, 'could not fetch a blob from another server');
      }
    }
    return false;
  }

  /** replicate copies a blob to every other live server; which did not take it is logged, and they fetch it when asked. */
  async replicate(digest: string): Promise<void> {
    const size = this.size(digest);
    if (size === undefined) return;
    await Promise.all(
      (await this.others()).map(async (s) => {
        try {
          const r = await this.dispatcher!.request({
            ...this.target(s.url, digest),
            method: 'PUT',
            headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
            body: this.open(digest),
            headersTimeout: this.timeout(),
            bodyTimeout: this.timeout(),
          });
          await r.body.dump();
          if (r.statusCode >= 300) throw new Error(`HTTP ${r.statusCode}`);
        } catch (err) {
          this.o.log.warn({ digest, to: s.name, err: String(err) }, 'could not copy a blob to another server; it fetches it when asked');
        }
      }),
    );
  }

  private target(url: string, digest: string): { origin: string; path: string } {
    const u = new URL(url);
    return { origin: u.origin, path: `${u.pathname.replace(/\/+$/, '')}/api/v1/blobs/${digest}` };
  }

  private timeout(): number {
    return this.o.peerTimeoutMs ?? 60_000;
  }

  /**
   * sweep deletes every blob not in `referenced` whose file is older than
   * graceMs (temporary files of uploads that died too); returns how many.
   */
  sweep(referenced: ReadonlySet<string>, now: number, graceMs: number): number {
    let removed = 0;
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return 0;
    }
    for (const name of names) {
      if (!name.startsWith('.tmp-') && (!HEX.test(name) || referenced.has(`sha256:${name}`))) continue;
      const p = join(this.dir, name);
      try {
        if (now - statSync(p).mtimeMs < graceMs) continue;
        unlinkSync(p);
        removed++;
      } catch {
        /* gone already */
      }
    }
    return removed;
  }

  has(digest: string): boolean {
    return existsSync(this.file(digest));
  }

  async close(): Promise<void> {
    await this.dispatcher?.close().catch(() => {});
  }
}
