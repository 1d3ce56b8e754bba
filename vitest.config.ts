import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests start real processes; two cores cannot run many of them at once.
    maxWorkers: 2,
    // Bounds, not waits: a test ends as soon as it is done. They are this long because on a loaded
    // 2-core machine (the suite beside two busy processes) starting a proxy and its backends can take
    // tens of seconds, and a test that fails only under load is a defect (issue 13).
    testTimeout: 60_000,
    hookTimeout: 90_000,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
