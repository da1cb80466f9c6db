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

describe('readCompose: the local driver\'s options', () => {
  /** mounts reads one service mounting volume `v` (short syntax) and the long syntax, with `v` declared as given. */
  const withVolume = (decl: string, mount = 'v:/data') => read(`services:\n  web:\n    image: x\n    volumes: ["${mount}"]\nvolumes:\n  v:\n${decl.replace(/^/gm, '    ')}\n`);

  it('binds the device of a type: none, o: bind volume, as a bind mount is', () => {
    for (const o of ['bind', 'rbind']) {
      const r = withVolume(`driver: local\ndriver_opts:\n  type: none\n  o: ${o}\n  device: /srv/data/`);
      expect(r.errors).toEqual([]);
      expect(r.services[0]!.spec.container.mounts).toEqual([{ type: 'bind', source: '/srv/data', target: '/data', readOnly: false }]);
    }
    const ro = withVolume('driver_opts: {type: none, o: bind, device: /srv/data}', 'v:/data:ro');
    expect(ro.services[0]!.spec.container.mounts).toEqual([{ type: 'bind', source: '/srv/data', target: '/data', readOnly: true }]);
    const long = read('services:\n  web:\n    image: x\n    volumes: [{type: volume, source: v, target: /data}]\nvolumes:\n  v: {driver_opts: {type: none, o: bind, device: /srv/data}}\n');
    expect(long.services[0]!.spec.container.mounts).toEqual([{ type: 'bind', source: '/srv/data', target: '/data', readOnly: false }]);
  });

  it('makes a type: tmpfs volume a tmpfs mount with its size and mode', () => {
    const r = withVolume('driver: local\ndriver_opts:\n  type: tmpfs\n  device: tmpfs\n  o: "size=64m,mode=1777,uid=1000"', 'v:/scratch:ro');
    expect(r.errors).toEqual([]);
    const c = r.services[0]!.spec.container;
    expect(c.mounts).toEqual([]);
    expect(c.tmpfs).toEqual(['/scratch:size=67108864,mode=1777,uid=1000,ro']);
    const bare = withVolume('driver_opts: {type: tmpfs, device: tmpfs}');
    expect(bare.services[0]!.spec.container.mounts).toEqual([{ type: 'tmpfs', target: '/data', readOnly: false }]);
  });

  it.each([
    [
      'driver_opts: {type: nfs, o: "addr=10.0.0.1,rw", device: ":/exports/data"}',
      'volumes.v.driver_opts.type',
      '`volumes.v.driver_opts.type` (type nfs) is not supported by Baton yet: remote filesystems are not supported: whichever node runs the task would mount the share itself, with no one to see it fail or to unmount it; mount it on the nodes and bind its path (type: none, o: bind, device: <path>)',
    ],
    [
      'driver_opts: {type: cifs, o: "username=u,password=p", device: "//host/share"}',
      'volumes.v.driver_opts.type',
      '`volumes.v.driver_opts.type` (type cifs) is not supported by Baton yet: remote filesystems are not supported: whichever node runs the task would mount the share itself, with no one to see it fail or to unmount it; mount it on the nodes and bind its path (type: none, o: bind, device: <path>)',
    ],
    [
      'driver_opts: {type: ext4, device: /dev/sdb1}',
      'volumes.v.driver_opts.type',
      "`volumes.v.driver_opts.type` (type ext4) is not supported by Baton yet: Baton reads the local driver's bind (type: none, o: bind, device: <absolute path>) and tmpfs (type: tmpfs, o: size=…,mode=…) options only",
    ],
    [
      'driver_opts: {type: none, o: bind, device: /srv, size: 1}',
      'volumes.v.driver_opts.size',
      "`volumes.v.driver_opts.size` (option size) is not supported by Baton yet: Baton reads the local driver's bind (type: none, o: bind, device: <absolute path>) and tmpfs (type: tmpfs, o: size=…,mode=…) options only",
    ],
    ['driver_opts: {type: none, o: bind, device: ./data}', 'volumes.v.driver_opts.device', 'a bind volume\'s device is the host path to bind, absolute (the engine resolves nothing against the file), got "./data"'],
    ['driver_opts: {type: none, o: bind}', 'volumes.v.driver_opts.device', 'a bind volume\'s device is the host path to bind, absolute (the engine resolves nothing against the file), got ""'],
    ['driver_opts: {type: none, o: "bind,uid=1000", device: /srv}', 'volumes.v.driver_opts.o', 'a bind volume (type none) takes o: bind (or rbind), got "bind,uid=1000"; make it read-only where a service mounts it (:ro)'],
    ['driver_opts: {type: tmpfs, o: "size=64m,exec"}', 'volumes.v.driver_opts.o', 'tmpfs option "exec": Baton passes size=<bytes>, mode=<octal>, uid=<n> and gid=<n>'],
    ['driver_opts: {type: tmpfs, o: "mode=rwx"}', 'volumes.v.driver_opts.o', 'mode must be an octal file mode such as 1777, got "rwx"'],
    ['driver_opts: {type: tmpfs, o: "size=lots"}', 'volumes.v.driver_opts.o', expect.stringContaining('lots')],
    ['external: true\ndriver_opts: {type: none, o: bind, device: /srv}', 'volumes.v.driver_opts', 'an external volume was made outside this file, with its own options; remove driver_opts or external'],
  ])('refuses %s', (decl, path, message) => {
    const r = withVolume(decl);
    expect(r.services).toEqual([]);
    expect(r.errors).toEqual([{ path, message, line: expect.any(Number) }]);
  });

  it('keeps a refused volume a plain named volume under --ignore-unsupported, with a warning', () => {
    const r = read('services:\n  web: {image: x, volumes: ["v:/data"]}\nvolumes:\n  v: {driver_opts: {type: nfs, device: ":/x"}}\n', { ignoreUnsupported: true });
    expect(r.errors).toEqual([]);
    expect(r.warnings.map((w) => w.path)).toEqual(['volumes.v.driver_opts.type']);
    expect(r.services[0]!.spec.container.mounts).toEqual([{ type: 'volume', source: 'app_v', target: '/data', readOnly: false }]);
  });
});
