import { configDefaults, defineConfig } from 'vitest/config';
import { shared as gateway, TIMING } from './packages/gateway/vitest.config.js';

/**
 * `npm test`: both packages' suites (`vitest run --project emulator --project gateway`), then the gateway's files
 * that measure time or memory under load, one at a time (`--project gateway-timing`; see TIMING).
 */
export default defineConfig({
  test: {
    // Two cores here: run test files two at a time so that timing-sensitive suites stay stable.
    maxWorkers: 2,
    projects: [
      'packages/emulator',
      { test: { ...gateway, name: 'gateway', root: './packages/gateway', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...TIMING] } },
      { test: { ...gateway, name: 'gateway-timing', root: './packages/gateway', include: TIMING, fileParallelism: false } },
    ],
  },
});
