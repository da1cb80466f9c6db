/**
 * The pause image: what holds a task's network namespace while its
 * containers come and go (Kubernetes' pause container, Nomad's network
 * group). A task's containers join the namespace of its pause container, so
 * a restart in place keeps the task's address, and the several containers of
 * a pod share one.
 *
 * No registry is assumed reachable, so the agent builds the image itself, on
 * its own engine: a root filesystem holding one static executable of a few
 * bytes, generated here, that blocks in pause(2) for ever. It needs no libc,
 * no shell and no signal handling: as PID 1 of its own PID namespace it
 * ignores every catchable signal, so its container is created with
 * StopSignal SIGKILL and stops at once.
 */
import { pack } from 'tar-stream';

/** The image the agent builds and runs; the tag changes whenever its content does. */
export const PAUSE_IMAGE = 'baton/pause:1';
export const PAUSE_LABEL = 'baton.pause';

/**
 * pauseExecutable is a static ELF64 executable for x86-64 Linux:
 *
 *     _start:  mov  eax, 34      ; pause
 *              syscall
 *              jmp  _start
 *
 * laid out as an ELF header, one PT_LOAD program header and the code,
 * loaded at 0x400000. Other architectures get no executable (undefined):
 * their agents need --pause-image.
 */
export function pauseExecutable(arch: string = process.arch): Buffer | undefined {
  if (arch !== 'x64') return undefined;
  return elfExecutable(Buffer.from([0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7]));
}

/**
 * elfExecutable lays out x86-64 machine code as a static ELF64 executable:
 * an ELF header, one PT_LOAD program header and the code, loaded at
 * 0x400000 and entered at its first byte. `memSize` (at least the file's
 * size) gives the segment zero-filled memory beyond the file, and makes it
 * writable as well as executable, for code that needs buffers.
 */
export function elfExecutable(code: Buffer, memSize?: number): Buffer {
  const base = 0x400000n;
  const ehsize = 64;
  const phsize = 56;
  const size = ehsize + phsize + code.length;
  const b = Buffer.alloc(size);
  // e_ident: magic, 64-bit, little-endian, version 1, System V ABI.
  b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0);
  b.writeUInt16LE(2, 16); // e_type: EXEC
  b.writeUInt16LE(0x3e, 18); // e_machine: x86-64
  b.writeUInt32LE(1, 20); // e_version
  b.writeBigUInt64LE(base + BigInt(ehsize + phsize), 24); // e_entry
  b.writeBigUInt64LE(BigInt(ehsize), 32); // e_phoff
  b.writeBigUInt64LE(0n, 40); // e_shoff
  b.writeUInt32LE(0, 48); // e_flags
  b.writeUInt16LE(ehsize, 52); // e_ehsize
  b.writeUInt16LE(phsize, 54); // e_phentsize
  b.writeUInt16LE(1, 56); // e_phnum
  b.writeUInt16LE(0, 58); // e_shentsize
  b.writeUInt16LE(0, 60); // e_shnum
  b.writeUInt16LE(0, 62); // e_shstrndx
  const ph = ehsize;
  b.writeUInt32LE(1, ph); // p_type: LOAD
  b.writeUInt32LE(memSize === undefined ? 5 : 7, ph + 4); // p_flags: R + X (+ W with memory of its own)
  b.writeBigUInt64LE(0n, ph + 8); // p_offset
  b.writeBigUInt64LE(base, ph + 16); // p_vaddr
  b.writeBigUInt64LE(base, ph + 24); // p_paddr
  b.writeBigUInt64LE(BigInt(size), ph + 32); // p_filesz
  b.writeBigUInt64LE(BigInt(Math.max(size, memSize ?? 0)), ph + 40); // p_memsz
  b.writeBigUInt64LE(0x1000n, ph + 48); // p_align
  code.copy(b, ehsize + phsize);
  return b;
}

/** pauseRootfs is the image's root filesystem as a tar stream: /pause, and the directories the engine mounts over. */
export function pauseRootfs(executable: Buffer): NodeJS.ReadableStream {
  const p = pack();
  for (const dir of ['dev', 'proc', 'sys', 'etc']) p.entry({ name: dir, type: 'directory', mode: 0o755, uid: 0, gid: 0 });
  p.entry({ name: 'pause', mode: 0o755, uid: 0, gid: 0 }, executable);
  p.finalize();
  return p as unknown as NodeJS.ReadableStream;
}

/** How to run the image (the pause container itself is created with StopSignal SIGKILL: an import cannot set it). */
export const PAUSE_IMAGE_CHANGES = ['CMD ["/pause"]', `LABEL ${PAUSE_LABEL}=1`];
