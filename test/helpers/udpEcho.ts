/**
 * A UDP "who answered" server for tests: the test image (static busybox) has
 * no UDP server applet, and nothing may be pulled, so this builds one the
 * way the agent builds its pause image: a static x86-64 executable of a few
 * hundred bytes, written out here, added to the busybox image by a
 * `docker commit`.
 *
 * `/udpecho TAG` binds 0.0.0.0:7 (UDP) and answers every datagram with TAG
 * followed by the datagram (`sendmsg` of two pieces), so a test tells which
 * task answered and that its own payload came back.
 */
import Docker from 'dockerode';
import { pack } from 'tar-stream';
import { elfExecutable } from '../../src/agent/net/pauseImage.js';

export const UDP_ECHO_IMAGE = 'baton-test/udpecho:1';
export const UDP_ECHO_PORT = 7;

/** Fixed addresses in the executable's zero-filled memory (one RWX segment at 0x400000, 8 KiB). */
const ADDR = 0x401000; // sockaddr_in to bind
const PEER = 0x401010; // the sender's sockaddr_in
const PLEN = 0x401020; // its length
const MSG = 0x401040; // struct msghdr for sendmsg
const IOV = 0x401080; // two struct iovec: the tag, the datagram
const BUF = 0x401100; // the datagram (2 KiB)

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return [...b];
};

/** udpEchoExecutable is the ELF file; the comments give each instruction. */
export function udpEchoExecutable(port = UDP_ECHO_PORT): Buffer {
  const head: number[] = [
    // r13 = argv[1] (or 0), r14 = its length
    0x4c, 0x8b, 0x6c, 0x24, 0x10, //          mov r13, [rsp+16]
    0x45, 0x31, 0xf6, //                      xor r14d, r14d
    0x4d, 0x85, 0xed, //                      test r13, r13
    0x74, 0x0d, //                            jz +13 (past the strlen loop)
    0x43, 0x80, 0x7c, 0x35, 0x00, 0x00, //   .len: cmp byte [r13+r14], 0
    0x74, 0x05, //                            je +5
    0x49, 0xff, 0xc6, //                      inc r14
    0xeb, 0xf3, //                            jmp .len
    // fd = socket(AF_INET, SOCK_DGRAM, 0), kept in r12
    0xbf, ...u32(2), //                       mov edi, 2
    0xbe, ...u32(2), //                       mov esi, 2
    0x31, 0xd2, //                            xor edx, edx
    0xb8, ...u32(41), //                      mov eax, 41 (socket)
    0x0f, 0x05, //                            syscall
    0x41, 0x89, 0xc4, //                      mov r12d, eax
    // bind(fd, {AF_INET, htons(port), 0.0.0.0}, 16)
    0xc7, 0x04, 0x25, ...u32(ADDR), 0x02, 0x00, (port >> 8) & 0xff, port & 0xff, // mov dword [ADDR], family | port
    0x44, 0x89, 0xe7, //                      mov edi, r12d
    0xbe, ...u32(ADDR), //                    mov esi, ADDR
    0xba, ...u32(16), //                      mov edx, 16
    0xb8, ...u32(49), //                      mov eax, 49 (bind)
    0x0f, 0x05, //                            syscall
    // msghdr: name = PEER (16 bytes), iov = IOV (2 entries); iov[0] = the tag, iov[1].base = BUF
    0x48, 0xc7, 0x04, 0x25, ...u32(MSG), ...u32(PEER), //      mov qword [MSG], PEER
    0x48, 0xc7, 0x04, 0x25, ...u32(MSG + 8), ...u32(16), //    mov qword [MSG+8], 16
    0x48, 0xc7, 0x04, 0x25, ...u32(MSG + 16), ...u32(IOV), //  mov qword [MSG+16], IOV
    0x48, 0xc7, 0x04, 0x25, ...u32(MSG + 24), ...u32(2), //    mov qword [MSG+24], 2
    0x4c, 0x89, 0x2c, 0x25, ...u32(IOV), //                    mov [IOV], r13
    0x4c, 0x89, 0x34, 0x25, ...u32(IOV + 8), //                mov [IOV+8], r14
    0x48, 0xc7, 0x04, 0x25, ...u32(IOV + 16), ...u32(BUF), //  mov qword [IOV+16], BUF
  ];
  const loop: number[] = [
    // n = recvfrom(fd, BUF, 2048, 0, PEER, &PLEN)
    0xc7, 0x04, 0x25, ...u32(PLEN), ...u32(16), // mov dword [PLEN], 16
    0x44, 0x89, 0xe7, //                      mov edi, r12d
    0xbe, ...u32(BUF), //                     mov esi, BUF
    0xba, ...u32(2048), //                    mov edx, 2048
    0x45, 0x31, 0xd2, //                      xor r10d, r10d
    0x41, 0xb8, ...u32(PEER), //              mov r8d, PEER
    0x41, 0xb9, ...u32(PLEN), //              mov r9d, PLEN
    0xb8, ...u32(45), //                      mov eax, 45 (recvfrom)
    0x0f, 0x05, //                            syscall
    0x85, 0xc0, //                            test eax, eax
  ];
  const send: number[] = [
    0x48, 0x89, 0x04, 0x25, ...u32(IOV + 24), // mov [IOV+24], rax (iov[1].len = n)
    0x44, 0x89, 0xe7, //                      mov edi, r12d
    0xbe, ...u32(MSG), //                     mov esi, MSG
    0x31, 0xd2, //                            xor edx, edx
    0xb8, ...u32(46), //                      mov eax, 46 (sendmsg)
    0x0f, 0x05, //                            syscall
  ];
  // js back to the loop on a failed recvfrom; after sendmsg, jmp back to it.
  const jsBack = -(loop.length + 2);
  const jmpBack = -(loop.length + 2 + send.length + 2);
  const code = Buffer.from([...head, ...loop, 0x78, jsBack & 0xff, ...send, 0xeb, jmpBack & 0xff]);
  if (jmpBack < -128) throw new Error('udpecho: loop too long for a short jump');
  // One segment at 0x400000, 8 KiB of it zero-filled and writable for the buffers above.
  return elfExecutable(code, 0x2000);
}

/**
 * ensureUdpEchoImage builds UDP_ECHO_IMAGE from `base` (busybox, so `sh`
 * is there for `$HOSTNAME`) plus /udpecho, when it is missing. The
 * container used to build it is labelled and removed.
 */
export async function ensureUdpEchoImage(docker: Docker, base: string, label: Record<string, string>): Promise<void> {
  if (process.arch !== 'x64') throw new Error('the UDP echo test server is an x86-64 executable');
  try {
    await docker.getImage(UDP_ECHO_IMAGE).inspect();
    return;
  } catch {
    /* build it */
  }
  const c = await docker.createContainer({ Image: base, Cmd: ['true'], Labels: label, HostConfig: { NetworkMode: 'none' } });
  try {
    const tar = pack();
    tar.entry({ name: 'udpecho', mode: 0o755, uid: 0, gid: 0 }, udpEchoExecutable());
    tar.finalize();
    await c.putArchive(tar as unknown as NodeJS.ReadableStream, { path: '/' });
    const [repo, tag] = UDP_ECHO_IMAGE.split(':') as [string, string];
    await c.commit({ repo, tag });
  } finally {
    await c.remove({ force: true });
  }
}
