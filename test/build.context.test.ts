/**
 * Build contexts (src/cli/buildContext.ts, src/api/build.ts): the archive
 * depends on names, contents and modes only; .dockerignore as Docker reads
 * it; the Dockerfile always goes; the cap and a missing context are errors
 * that name the key and line; a built image's name follows its build hash.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extract } from 'tar-stream';
import { packContext, OUTSIDE_DOCKERFILE } from '../src/cli/buildContext.js';
import { buildHash, buildImage, buildImageProblem, buildRepository } from '../src/api/build.js';
import { containerSpecSchema } from '../src/api/schemas.js';
import { defaultContainerSpec, type BuildSpec } from '../src/api/types.js';
import type { LocalBuild } from '../src/manifest/compose/build.js';
import { isBatonError } from '../src/base/errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'baton-ctx-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const local = (o: Partial<LocalBuild> = {}): LocalBuild => ({ contextDir: join(dir, 'app'), dockerfile: { path: 'Dockerfile' }, args: {}, labels: {}, keyPath: 'services.web.build', line: 7, ...o });

function tree() {
  mkdirSync(join(dir, 'app', 'src'), { recursive: true });
  mkdirSync(join(dir, 'app', 'node_modules', 'x'), { recursive: true });
  writeFileSync(join(dir, 'app', 'Dockerfile'), 'FROM baton-test/busybox:latest\nCOPY src /src\n');
  writeFileSync(join(dir, 'app', 'src', 'index.html'), 'hello\n');
  writeFileSync(join(dir, 'app', 'src', 'run.sh'), '#!/bin/sh\n');
  chmodSync(join(dir, 'app', 'src', 'run.sh'), 0o755);
  writeFileSync(join(dir, 'app', 'node_modules', 'x', 'big.js'), 'x'.repeat(1000));
  writeFileSync(join(dir, 'app', 'secret.env'), 'A=1\n');
  symlinkSync('index.html', join(dir, 'app', 'src', 'link.html'));
}

/** entries lists an archive's entries: name, type, mode, and a file's text. */
async function entries(data: Buffer): Promise<{ name: string; type: string; mode: number; text?: string; linkname?: string; mtime: number; uid: number }[]> {
  const ex = extract();
  const out: { name: string; type: string; mode: number; text?: string; linkname?: string; mtime: number; uid: number }[] = [];
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        out.push({ name: h.name, type: h.type ?? 'file', mode: h.mode ?? 0, mtime: h.mtime?.getTime() ?? -1, uid: h.uid ?? -1, ...(h.type === 'file' ? { text: Buffer.concat(chunks).toString() } : {}), ...(h.linkname ? { linkname: h.linkname } : {}) });
        next();
      });
      stream.resume();
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  ex.end(data);
  await done;
  return out;
}

describe('packContext', () => {
  it('packs names, contents and modes only, in byte order, so the digest is the files', async () => {
    tree();
    const a = await packContext(local());
    const list = await entries(a.data);
    expect(list.map((e) => e.name)).toEqual(['Dockerfile', 'node_modules', 'node_modules/x', 'node_modules/x/big.js', 'secret.env', 'src', 'src/index.html', 'src/link.html', 'src/run.sh']);
    expect(list.every((e) => e.mtime === 0 && e.uid === 0)).toBe(true);
    expect(list.find((e) => e.name === 'src/run.sh')!.mode).toBe(0o755);
    expect(list.find((e) => e.name === 'src/link.html')).toMatchObject({ type: 'symlink', linkname: 'index.html' });
    expect(a.dockerfile).toBe('Dockerfile');
    expect(a.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    // Times and a second packing change nothing; a content does.
    utimesSync(join(dir, 'app', 'src', 'index.html'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect((await packContext(local())).digest).toBe(a.digest);
    writeFileSync(join(dir, 'app', 'src', 'index.html'), 'hello!\n');
    expect((await packContext(local())).digest).not.toBe(a.digest);
  });

  it('leaves out what .dockerignore names, with its exceptions, but always sends the Dockerfile', async () => {
    tree();
    writeFileSync(join(dir, 'app', '.dockerignore'), '# deps\nnode_modules\n*.env\nsrc/*\n!src/index.html\nDockerfile\n');
    const names = (await entries((await packContext(local())).data)).map((e) => e.name);
    expect(names).toEqual(['.dockerignore', 'Dockerfile', 'src', 'src/index.html']);
  });

  it('adds a Dockerfile from outside the context, or an inline one, under its own name', async () => {
    tree();
    writeFileSync(join(dir, 'Dockerfile.prod'), 'FROM scratch\n');
    const outside = await packContext(local({ dockerfile: { path: join(dir, 'Dockerfile.prod') } }));
    expect(outside.dockerfile).toBe(OUTSIDE_DOCKERFILE);
    expect((await entries(outside.data)).find((e) => e.name === OUTSIDE_DOCKERFILE)!.text).toBe('FROM scratch\n');
    const inline = await packContext(local({ dockerfile: { inline: 'FROM busybox\n' } }));
    expect((await entries(inline.data)).find((e) => e.name === OUTSIDE_DOCKERFILE)!.text).toBe('FROM busybox\n');
    // A Dockerfile in a subdirectory of the context stays where it is.
    mkdirSync(join(dir, 'app', 'docker'));
    writeFileSync(join(dir, 'app', 'docker', 'Dockerfile'), 'FROM x\n');
    expect((await packContext(local({ dockerfile: { path: 'docker/Dockerfile' } }))).dockerfile).toBe('docker/Dockerfile');
  });

  it('refuses a missing context or Dockerfile, and a context over the cap, naming the key and line', async () => {
    const problem = async (b: LocalBuild, max?: number) => {
      try {
        await packContext(b, max);
      } catch (e) {
        if (isBatonError(e)) return e.details[0];
        throw e;
      }
      return undefined;
    };
    expect(await problem(local())).toMatchObject({ path: 'services.web.build.context', line: 7, message: expect.stringContaining('does not exist') });
    tree();
    expect(await problem(local({ dockerfile: { path: 'Nope' } }))).toMatchObject({ path: 'services.web.build.dockerfile', line: 7 });
    expect(await problem(local(), 500)).toMatchObject({ path: 'services.web.build.context', message: expect.stringContaining('once .dockerignore has excluded') });
    writeFileSync(join(dir, 'app', '.dockerignore'), 'node_modules\n');
    expect(await problem(local(), 500)).toBeUndefined();
  });
});

describe('built image names', () => {
  const b: BuildSpec = { context: `sha256:${'a'.repeat(64)}`, size: 10, dockerfile: 'Dockerfile', args: { B: '2', A: '1' }, labels: {} };

  it('tag an image with its build hash, which every parameter changes and key order does not', () => {
    expect(buildImage('shop_web', b)).toBe(`shop_web:${buildHash(b).slice(0, 12)}`);
    expect(buildHash({ ...b, args: { A: '1', B: '2' } })).toBe(buildHash(b));
    for (const change of [{ args: { A: '1' } }, { target: 'x' }, { dockerfile: 'D2' }, { labels: { l: '' } }, { network: 'none' as const }, { context: `sha256:${'b'.repeat(64)}` }]) {
      expect(buildHash({ ...b, ...change })).not.toBe(buildHash(b));
    }
  });

  it('use a repository Docker accepts', () => {
    expect(buildRepository('My_Stack_Web.App')).toBe('my_stack_web.app');
    expect(buildRepository('a__b--c..d')).toBe('a__b-c.d');
    expect(buildRepository('_x_')).toBe('x');
  });

  it('are checked: a build cannot name another image, nor a path outside its context', () => {
    const good = { ...defaultContainerSpec(buildImage('shop_web', b)), build: b };
    expect(containerSpecSchema.safeParse(good).success).toBe(true);
    expect(buildImageProblem(good.image, b)).toBeUndefined();
    expect(buildImageProblem('nginx:latest', b)).toMatch(/tagged with its build's hash: "nginx:[0-9a-f]{12}"/);
    expect(buildImageProblem(`Shop:${buildHash(b).slice(0, 12)}`, b)).toMatch(/lowercase/);
    expect(containerSpecSchema.safeParse({ ...good, build: { ...b, dockerfile: '../etc/passwd' } }).success).toBe(false);
    expect(containerSpecSchema.safeParse({ ...good, build: { ...b, context: 'sha256:xyz' } }).success).toBe(false);
    expect(containerSpecSchema.safeParse({ ...good, build: { ...b, size: 65 * 1024 * 1024 } }).success).toBe(false);
  });
});
