/** Key paths as every message of the Compose reader shows them. */

import type { PathSegment } from './interpolate.js';

const SIMPLE_KEY = /^[A-Za-z0-9_-]+$/;

/**
 * formatKeyPath renders a key path the way every Baton message shows it:
 * `services.web.ports[0]`, with keys that hold dots or spaces quoted
 * (`labels["com.example.a"]`) so the path stays unambiguous.
 */
export function formatKeyPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (SIMPLE_KEY.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}
