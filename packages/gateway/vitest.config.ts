import { defineProject } from 'vitest/config';

/**
 * Test files that measure time or memory under load (a server's latency while another client floods it, RSS
 * while uploads or slow readers pile up). Run beside the rest of the suite on a 2-core machine they measure the
 * other test files instead, so `npm test` runs them afterwards, one file at a time (the `gateway-timing` project
 * of the root's vitest.config.ts).
 */
export const TIMING = [
  'test/live/limits.test.ts',
  'test/security/websocket-flood.test.ts',
  'test/hardening/backpressure.test.ts',
  'test/hardening/uploads-memory.test.ts',
  'test/hardening/slow-clients.test.ts',
  'test/cluster/fanout.test.ts',
];

/** What the gateway's projects share. */
export const shared = {
  testTimeout: 60_000,
  hookTimeout: 60_000,
  pool: 'forks' as const,
  // The secret-leak check of the whole suite: every test file's responses, websocket frames and logs are
  // teed and searched for the run's keys and tokens (test/security/leak-tee.ts).
  globalSetup: ['test/security/leak-global.ts'],
  setupFiles: ['test/security/leak-tee.ts'],
};

// This package's suite on its own (`npm test` in this directory), every file including the timing ones.
export default defineProject({
  test: { ...shared, name: 'gateway', include: ['test/**/*.test.ts'] },
});
