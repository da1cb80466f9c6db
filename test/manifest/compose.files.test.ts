/**
 * Secrets and configs in Compose files (src/manifest/compose/files.ts): the
 * top-level definitions, each service's references, and the errors, none of
 * which ever shows a content.
 */
import { describe, expect, it } from 'vitest';
import { read } from '../helpers/compose.js';

const files: Record<string, Buffer> = {
  '/srv/app/db_password.txt': Buffer.from('s3cr3t-value\n'),
  '/srv/app/nginx.conf': Buffer.from('server { listen 80; }\n'),
  '/srv/app/big.bin': Buffer.alloc(500 * 1024 + 1, 1),
};
const readFileBytes = (p: string): Buffer => {
  const f = files[p];
  if (!f) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
  return f;
};
const opts = { readFileBytes, env: { API_KEY: 'from-the-environment' }, stack: 'shop' };

describe('Compose secrets and configs', () => {
  it('reads definitions from a file, the environment and inline content, names them by stack, and gives services their references', () => {
    const r = read(
      `services:
  web:
    image: nginx
    secrets:
      - db_password
      - source: api_key
        target: api.key
        uid: "103"
        gid: "104"
        mode: 0440
      - source: shared
        target: /etc/shared.pem
    configs:
      - nginx_conf
      - source: inline
        target: /etc/app/app.ini
        mode: 0o600
secrets:
  db_password:
    file: ./db_password.txt
  api_key:
    environment: API_KEY
  shared:
    external: true
    name: org_shared
configs:
  nginx_conf:
    file: nginx.conf
  inline:
    content: |
      [app]
      debug = false
`,
      opts,
    );
    expect(r.errors).toEqual([]);
    const c = r.services[0]!.spec.container;
    expect(c.secrets).toEqual([
      { source: 'shop_db_password', target: '/run/secrets/db_password', uid: 0, gid: 0, mode: 0o444 },
      { source: 'shop_api_key', target: '/run/secrets/api.key', uid: 103, gid: 104, mode: 0o440 },
      { source: 'org_shared', target: '/etc/shared.pem', uid: 0, gid: 0, mode: 0o444 },
    ]);
    expect(c.configs).toEqual([
      { source: 'shop_nginx_conf', target: '/nginx_conf', uid: 0, gid: 0, mode: 0o444 },
      { source: 'shop_inline', target: '/etc/app/app.ini', uid: 0, gid: 0, mode: 0o600 },
    ]);
    // The contents to create go with the apply; an external one is the cluster's already.
    const decoded = (xs: { name: string; data: string }[]) => Object.fromEntries(xs.map((x) => [x.name, Buffer.from(x.data, 'base64').toString('utf8')]));
    expect(decoded(r.secrets)).toEqual({ shop_db_password: 's3cr3t-value\n', shop_api_key: 'from-the-environment' });
    expect(decoded(r.configs)).toEqual({ shop_nginx_conf: 'server { listen 80; }\n', shop_inline: '[app]\ndebug = false\n' });
    // The content is in no spec.
    expect(JSON.stringify(r.services)).not.toContain('s3cr3t');
  });

  it('says what is wrong and where, applies nothing, and never shows a content', () => {
    const r = read(
      `services:
  web:
    image: nginx
    secrets:
      - missing
      - source: db
        mode: 999
      - source: db
        target: ../../etc/passwd
      - source: env
        uid: root
secrets:
  db:
    file: ./db_password.txt
  gone:
    file: ./nope.txt
  big:
    file: ./big.bin
  env:
    environment: NOT_SET
  both:
    file: ./db_password.txt
    environment: API_KEY
  ext:
    external: true
    file: ./db_password.txt
`,
      opts,
    );
    const errs = r.errors.map((e) => `${e.path}${e.line ? ` (line ${e.line})` : ''}: ${e.message}`);
    expect(r.services).toEqual([]);
    expect(r.secrets).toEqual([]);
    expect(errs).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^services\.web\.secrets\[0\] \(line 5\): secret "missing" is not defined/),
        expect.stringMatching(/^services\.web\.secrets\[1\]\.mode \(line 7\): must be a file mode/),
        expect.stringMatching(/^services\.web\.secrets\[2\]\.target \(line 9\): "\.\.\/\.\.\/etc\/passwd" is not a usable path/),
        expect.stringMatching(/^services\.web\.secrets\[3\]\.uid \(line 11\): must be a numeric id/),
        expect.stringMatching(/^secrets\.gone\.file \(line 16\): \/srv\/app\/nope\.txt does not exist/),
        expect.stringMatching(/^secrets\.big\.file \(line 18\): the secret is 512001 bytes; the limit is 512000/),
        expect.stringMatching(/^secrets\.env\.environment \(line 20\): variable NOT_SET is not set/),
        expect.stringMatching(/^secrets\.both \(line 21\): give one of file, environment, not several/),
        expect.stringMatching(/^secrets\.ext \(line 24\): an external secret has no file/),
      ]),
    );
    expect(errs.join('\n')).not.toContain('s3cr3t');
    expect(errs.join('\n')).not.toContain('from-the-environment');
  });

  it('refuses content for a secret (configs only) and two references to one target', () => {
    const r = read(
      `services:
  web:
    image: nginx
    configs:
      - source: a
        target: /etc/x
      - source: b
        target: /etc/x
configs:
  a: {content: "1"}
  b: {content: "2"}
secrets:
  s: {content: "x"}
`,
      opts,
    );
    const errs = r.errors.map((e) => `${e.path}: ${e.message}`);
    expect(errs).toEqual(expect.arrayContaining([expect.stringMatching(/^services\.web\.configs\[1\]: two configs go to \/etc\/x/), expect.stringMatching(/^secrets\.s/)]));
  });
});
