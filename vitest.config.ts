import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two cores here: run test files two at a time so that timing-sensitive suites stay stable.
    maxWorkers: 2,
    // The secret-leak check of the whole suite: every test file's responses, websocket frames and logs are
    // teed and searched for the run's keys and tokens (test/security/leak-tee.ts).
    globalSetup: ['test/security/leak-global.ts'],
    setupFiles: ['test/security/leak-tee.ts'],
  },
});
