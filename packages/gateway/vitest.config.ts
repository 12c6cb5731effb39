import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Test files that measure time or memory under load (a server's latency while another client floods it, RSS
 * while uploads or slow readers pile up). Run beside the rest of the suite on a 2-core machine they measure the
 * other test files instead, so `npm test` runs them afterwards, one file at a time (the `timing` project).
 */
const TIMING = [
  'test/live/limits.test.ts',
  'test/security/websocket-flood.test.ts',
  'test/hardening/backpressure.test.ts',
  'test/hardening/uploads-memory.test.ts',
  'test/hardening/slow-clients.test.ts',
  'test/cluster/fanout.test.ts',
];

/** What both projects share. */
const shared = {
  testTimeout: 60_000,
  hookTimeout: 60_000,
  pool: 'forks' as const,
  // Two cores here: run test files two at a time so that timing-sensitive suites stay stable.
  maxWorkers: 2,
  // The secret-leak check of the whole suite: every test file's responses, websocket frames and logs are
  // teed and searched for the run's keys and tokens (test/security/leak-tee.ts).
  globalSetup: ['test/security/leak-global.ts'],
  setupFiles: ['test/security/leak-tee.ts'],
};

export default defineConfig({
  test: {
    ...shared,
    projects: [
      { test: { ...shared, name: 'suite', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...TIMING] } },
      { test: { ...shared, name: 'timing', include: TIMING, fileParallelism: false } },
    ],
  },
});
