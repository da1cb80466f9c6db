/**
 * Paths and issues (src/manifest/compose/issues.ts): key paths as messages
 * show them, and Ctx, which collects a read's issues and applies the key
 * policy table.
 */
import { describe, it, expect } from 'vitest';
import { formatKeyPath } from '../../src/manifest/compose/index.js';

describe('readCompose: validation', () => {
  it('formats key paths', () => {
    expect(formatKeyPath(['services', 'web', 'ports', 0])).toBe('services.web.ports[0]');
    expect(formatKeyPath(['services', 'web', 'labels', 'com.example.a'])).toBe('services.web.labels["com.example.a"]');
  });
});
