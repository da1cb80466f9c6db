/**
 * The .env format (src/manifest/compose/dotenv.ts): parseDotEnv, as the CLI
 * uses it for a stack's .env.
 */
import { describe, it, expect } from 'vitest';
import { parseDotEnv } from '../../src/manifest/compose/index.js';

describe('parseDotEnv', () => {
  it('reads the dotenv format', () => {
    const text = [
      '# comment',
      '',
      'A=1',
      'export B = two ',
      'C="quoted # not a comment"',
      "D='single $A'",
      'E=value # comment',
      'F="line1\\nline2"',
      'G="multi',
      'line"',
      'H=${A}-$B',
      'I="${A}x"',
      'J=',
      'K=a=b',
      'L=\'x\' # trailing',
    ].join('\r\n');
    expect(parseDotEnv(text)).toEqual({
      A: '1',
      B: 'two',
      C: 'quoted # not a comment',
      D: 'single $A',
      E: 'value',
      F: 'line1\nline2',
      G: 'multi\nline',
      H: '1-two',
      I: '1x',
      J: '',
      K: 'a=b',
      L: 'x',
    });
  });

  it('takes bare keys and unknown variables from the lookup', () => {
    const env: Record<string, string> = { FROM_ENV: 'e', OTHER: 'o' };
    expect(parseDotEnv('FROM_ENV\nMISSING\nX=${OTHER}', (n) => env[n])).toEqual({ FROM_ENV: 'e', X: 'o' });
  });

  it.each([
    ['A="open', 'line 1: unterminated double quote'],
    ['OK=1\nBAD KEY=1', 'line 2: expected "=" after BAD'],
    ['1A=x', 'line 1: invalid variable name "1A"'],
    ['A="x" y', 'line 1: unexpected text after the closing quote: "y"'],
    ['A=${B:?needed}', 'line 1: required variable B is missing a value: needed'],
  ])('refuses %j', (text, message) => {
    expect(() => parseDotEnv(text)).toThrow(message);
  });
});
