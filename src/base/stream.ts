/**
 * writeOrWait writes a chunk to a stream (an HTTP response) and, when its
 * buffer is full, returns a promise that settles once it drains or closes:
 * a slow reader slows its own writer, and memory stays bounded. Undefined
 * means "go on", so a hot loop awaits only when it must.
 */
export function writeOrWait(out: NodeJS.WritableStream & { destroyed?: boolean; off?: (e: string, f: () => void) => unknown }, chunk: string): Promise<void> | undefined {
  if (out.destroyed || out.write(chunk)) return undefined;
  return new Promise((resolve) => {
    const done = () => {
      out.removeListener('drain', done);
      out.removeListener('close', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
  });
}
