/**
 * Volumes (src/manifest/compose/volumes.ts): binds, named, anonymous and
 * tmpfs mounts, and what is refused.
 */
import { describe, it, expect } from 'vitest';
import { read, errorsOf } from '../helpers/compose.js';

describe('readCompose: supported keys', () => {
  it('reads volumes: binds relative to baseDir, declared named volumes, anonymous volumes, tmpfs', () => {
    const r = read(
      [
        'services:',
        '  web:',
        '    image: nginx',
        '    volumes:',
        '      - .:/code',
        '      - ./conf:/etc/app:ro',
        '      - ~/cache:/cache',
        '      - /abs:/abs:rw',
        '      - data:/data',
        '      - ext:/ext',
        '      - named:/named',
        '      - /anon',
        '      - {type: bind, source: ./src, target: /src, read_only: true}',
        '      - {type: volume, source: data, target: /data2}',
        '      - {type: volume, target: /anon2}',
        '      - {type: tmpfs, target: /tmp}',
        '      - {type: tmpfs, target: /run, tmpfs: {size: 64m, mode: 01777}}',
        'volumes:',
        '  data:',
        '  ext: {external: true}',
        '  named: {name: custom-name}',
      ].join('\n'),
      { stack: 'st', env: { HOME: '/home/me' } },
    );
    expect(r.errors).toEqual([]);
    const c = r.services[0]!.spec.container;
    expect(c.mounts).toEqual([
      { type: 'bind', source: '/srv/app', target: '/code', readOnly: false },
      { type: 'bind', source: '/srv/app/conf', target: '/etc/app', readOnly: true },
      { type: 'bind', source: '/home/me/cache', target: '/cache', readOnly: false },
      { type: 'bind', source: '/abs', target: '/abs', readOnly: false },
      { type: 'volume', source: 'st_data', target: '/data', readOnly: false },
      { type: 'volume', source: 'ext', target: '/ext', readOnly: false },
      { type: 'volume', source: 'custom-name', target: '/named', readOnly: false },
      { type: 'volume', target: '/anon', readOnly: false },
      { type: 'bind', source: '/srv/app/src', target: '/src', readOnly: true },
      { type: 'volume', source: 'st_data', target: '/data2', readOnly: false },
      { type: 'volume', target: '/anon2', readOnly: false },
      { type: 'tmpfs', target: '/tmp', readOnly: false },
    ]);
    expect(c.tmpfs).toEqual(['/run:size=67108864,mode=1777']);
  });

  it('refuses undeclared named volumes and duplicate targets', () => {
    expect(errorsOf('volumes: ["data:/data"]')).toEqual(['services.web.volumes[0]: volume "data" is not declared under the top-level `volumes`']);
    expect(errorsOf('volumes: ["/a:/x", "/b:/x"]')).toEqual(['services.web.volumes[1]: mount target /x is already used by services.web.volumes[0]']);
  });
});
