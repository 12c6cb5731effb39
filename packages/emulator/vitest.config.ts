import { defineProject } from 'vitest/config';

export default defineProject({
  test: {
    name: 'emulator',
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One line when OpenAI's spec is not found: its checks are skipped (test/kit/spec.ts).
    globalSetup: ['test/kit/spec-notice.ts'],
  },
});
