/**
 * Reading container usage from cgroup files, for both layouts, on file trees
 * shaped as the kernel lays them out (this machine has only one of them).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cgroupPathsOf, readCgroup } from '../src/agent/docker/cgroup.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'baton-cgroup-'));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

describe('cgroup usage', () => {
  it('v2 (unified): cpu.stat usage_usec, memory.current less inactive_file, memory.max', () => {
    const id = 'docker-abc.scope';
    const root = tree({
      'proc/42/cgroup': `0::/system.slice/${id}\n`,
      [`sys/system.slice/${id}/cpu.stat`]: 'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n',
      [`sys/system.slice/${id}/memory.current`]: '10485760\n',
      [`sys/system.slice/${id}/memory.stat`]: 'anon 6291456\nfile 4194304\nactive_file 1048576\ninactive_file 3145728\n',
      [`sys/system.slice/${id}/memory.max`]: '67108864\n',
    });
    const p = cgroupPathsOf(42, join(root, 'sys'), join(root, 'proc'));
    expect(p?.unified).toBe(join(root, 'sys/system.slice', id));
    expect(readCgroup(p!)).toEqual({ cpuSeconds: 2.5, memoryBytes: 10485760 - 3145728, memoryLimitBytes: 67108864 });
    writeFileSync(join(root, 'sys/system.slice', id, 'memory.max'), 'max\n');
    expect(readCgroup(p!).memoryLimitBytes).toBe(0);
  });

  it('v1 (and hybrid): cpuacct.usage in ns, memory.usage_in_bytes less total_inactive_file, no limit as 0', () => {
    const root = tree({
      'proc/7/cgroup': '12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/docker/abc\n',
      'sys/cpu,cpuacct/docker/abc/cpuacct.usage': '1500000000\n',
      'sys/memory/docker/abc/memory.usage_in_bytes': '8388608\n',
      'sys/memory/docker/abc/memory.stat': 'cache 4096\ntotal_inactive_file 1048576\n',
      'sys/memory/docker/abc/memory.limit_in_bytes': '9223372036854771712\n',
      // Hybrid: the unified tree has no controllers, so v1 answers.
      'sys/unified/docker/abc/cgroup.procs': '7\n',
    });
    const p = cgroupPathsOf(7, join(root, 'sys'), join(root, 'proc'));
    expect(p).toEqual({ cpuacct: join(root, 'sys/cpu,cpuacct/docker/abc'), memory: join(root, 'sys/memory/docker/abc') });
    expect(readCgroup(p!)).toEqual({ cpuSeconds: 1.5, memoryBytes: 8388608 - 1048576, memoryLimitBytes: 0 });
  });

  it('no readable cgroup (process gone, other namespace): undefined, and the caller asks the engine', () => {
    const root = tree({ 'proc/9/cgroup': '0::/gone\n' });
    expect(cgroupPathsOf(9, join(root, 'sys'), join(root, 'proc'))).toBeUndefined();
    expect(cgroupPathsOf(10, join(root, 'sys'), join(root, 'proc'))).toBeUndefined();
  });
});
