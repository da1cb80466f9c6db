import { describe, expect, it } from 'vitest';
import { EXEC_HIGH_WATER_BYTES, holdWhileQueued } from '../src/base/execProtocol.js';

/** A source as exec's are (a command's output stream, the agent's socket): it counts its pauses and resumes. */
function source() {
  const s = { paused: false, pauses: 0, resumes: 0, pause: () => ((s.paused = true), s.pauses++), resume: () => ((s.paused = false), s.resumes++) };
  return s;
}

const until = async (what: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('holdWhileQueued (exec backpressure, agent and server)', () => {
  it('pauses the source while the socket holds more than the mark, once, and resumes it under half', async () => {
    const socket = { bufferedAmount: EXEC_HIGH_WATER_BYTES };
    const src = source();
    holdWhileQueued(socket, src, () => false);
    expect(src.pauses).toBe(0); // at the mark, not over it
    socket.bufferedAmount = EXEC_HIGH_WATER_BYTES + 1;
    holdWhileQueued(socket, src, () => false);
    holdWhileQueued(socket, src, () => false);
    expect(src).toMatchObject({ paused: true, pauses: 1 });
    // Drained to just over half: still held.
    socket.bufferedAmount = EXEC_HIGH_WATER_BYTES / 2 + 1;
    await new Promise((r) => setTimeout(r, 50));
    expect(src.paused).toBe(true);
    socket.bufferedAmount = EXEC_HIGH_WATER_BYTES / 2;
    await until(() => !src.paused);
    expect(src.resumes).toBe(1);
    // Held again later, the same source pauses again.
    socket.bufferedAmount = 2 * EXEC_HIGH_WATER_BYTES;
    holdWhileQueued(socket, src, () => false);
    expect(src.pauses).toBe(2);
  });

  it('resumes a held source when its socket is gone, whatever it still holds', async () => {
    const socket = { bufferedAmount: 4 * EXEC_HIGH_WATER_BYTES };
    const src = source();
    let gone = false;
    holdWhileQueued(socket, src, () => gone);
    expect(src.paused).toBe(true);
    gone = true;
    await until(() => !src.paused);
    expect(src.resumes).toBe(1);
  });
});
