/** The version skew rule between servers and agents (Kubernetes' policy: an agent one minor behind works, a newer one does not). */
import { describe, expect, it } from 'vitest';
import { compatible, VERSION } from '../src/base/version.js';

describe('version skew', () => {
  it('lets an agent of the same minor or one before it join, and refuses newer, older and other majors', () => {
    expect(compatible('0.2.0', '0.2.5')).toBe(true);
    expect(compatible('0.2.3', '0.1.0')).toBe(true);
    expect(compatible('0.2.0', '0.3.0')).toBe(false);
    expect(compatible('0.3.0', '0.1.9')).toBe(false);
    expect(compatible('1.4.0', '1.3.2')).toBe(true);
    expect(compatible('1.4.0', '1.5.0')).toBe(false);
    expect(compatible('1.0.0', '0.9.0')).toBe(false);
    expect(compatible('0.2.0', 'x.y')).toBe(false);
    expect(compatible(VERSION, VERSION)).toBe(true);
  });
});
