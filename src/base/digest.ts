/**
 * digestStream: a pass-through stream that takes the sha256 and size of
 * what flows through it, and fails (with `tooLarge()`) once more than
 * maxBytes have passed, so a body is checked while it is written, never
 * held whole.
 */
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';

export interface DigestStream {
  stream: Transform;
  /** "sha256:<hex>" of what passed; call once it has ended. */
  digest(): string;
  size(): number;
}

export function digestStream(maxBytes = Infinity, tooLarge: () => Error = () => new Error(`more than ${maxBytes} bytes`)): DigestStream {
  const hash = createHash('sha256');
  let size = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > maxBytes) return done(tooLarge());
      hash.update(chunk);
      done(null, chunk);
    },
  });
  return { stream, digest: () => `sha256:${hash.digest('hex')}`, size: () => size };
}
