/**
 * PortAllocator hands out host ports from the agent's --port-range. With host
 * networking every task binds a real host port, so agents on one host must
 * have disjoint ranges, and a port some other program holds is skipped (a
 * trial bind on the agent's address tells).
 */
import { createServer } from 'node:net';

export class PortAllocator {
  private used = new Set<number>();
  private next: number;

  constructor(
    private readonly range: [number, number],
    private readonly address: string,
    /** Trial-bind each port before handing it out (off for simulated nodes, whose tasks bind nothing). */
    private readonly probe = true,
  ) {
    this.next = range[0];
  }

  /** reserve marks ports as taken (adopted containers). */
  reserve(ports: number[]): void {
    for (const p of ports) this.used.add(p);
  }

  release(ports: number[]): void {
    for (const p of ports) this.used.delete(p);
  }

  /** allocate returns n free ports, or throws when the range is exhausted. */
  async allocate(n: number): Promise<number[]> {
    const out: number[] = [];
    const [lo, hi] = this.range;
    const size = hi - lo + 1;
    for (let tried = 0; out.length < n && tried < size; tried++) {
      const p = this.next;
      this.next = p >= hi ? lo : p + 1;
      if (this.used.has(p)) continue;
      if (this.probe && !(await this.bindable(p))) continue;
      this.used.add(p);
      out.push(p);
    }
    if (out.length < n) {
      this.release(out);
      throw new Error(`port range ${lo}-${hi} is exhausted (${this.used.size} in use)`);
    }
    return out;
  }

  /**
   * claim takes fixed ports (Compose `mode: host` publishing): they are the
   * task's whatever the range, so one held by another task or by another
   * program is an error that names it.
   */
  async claim(ports: number[]): Promise<void> {
    const taken: number[] = [];
    for (const p of ports) {
      const busy = this.used.has(p) ? 'by another task on this node' : this.probe && !(await this.bindable(p)) ? `by another program on ${this.address}` : undefined;
      if (busy) {
        this.release(taken);
        throw new Error(`host port ${p} is in use ${busy}`);
      }
      this.used.add(p);
      taken.push(p);
    }
  }

  private bindable(port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen({ port, host: this.address, exclusive: true }, () => s.close(() => resolve(true)));
    });
  }
}

/** parsePortRange reads "A-B". */
export function parsePortRange(s: string): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`--port-range must look like 20000-20999, got "${s}"`);
  const lo = Number(m[1]);
  const hi = Number(m[2]);
  if (lo < 1 || hi > 65535 || lo > hi) throw new Error(`--port-range ${s} is not a valid range of ports`);
  return [lo, hi];
}
