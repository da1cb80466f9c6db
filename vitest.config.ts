import { defineConfig } from 'vitest/config';

// Docker-backed tests share one dockerd, so files run one at a time; the
// default reporter prints each file's duration.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
