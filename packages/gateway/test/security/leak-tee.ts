/**
 * Secret-leak check for the WHOLE test suite (a vitest setup file: it runs before every test file, in that
 * file's worker; see vitest.config.ts).
 *
 * It tees, inside the worker process:
 *   - every HTTP response that any in-process server sends (status line headers and body chunks, SSE too),
 *     except the upstream REST API under /v1 (the local service and fake upstreams, which receive keys by design);
 *   - every frame a server-side websocket sends (and close reasons);
 *   - every log line: string writes to any non-socket Writable (pino's streams in tests, vitest's console),
 *     process.stdout/stderr, and pino's default destination (sonic-boom);
 *   - the stdout/stderr of child processes spawned by tests (servers, the standalone local service, browsers).
 * and it learns the secrets of the run as they appear:
 *   - the bearer value of every request any in-process HTTP server receives (gateway tokens and client keys on
 *     our server; the server's upstream key on the local service or a fake upstream);
 *   - the authorization of every graphql-ws connection_init a client sends;
 *   - OPENAI_API_KEY and GATEWAY_TOKENS tokens given to spawned processes or registered by test helpers
 *     (registerSecret, used by test/helpers/server.ts for every server it starts).
 * After the file's tests (an afterAll that runs last), no secret may appear in any teed text; otherwise the
 * file fails, naming where. Totals go to LEAK_TEE_DIR for the summary printed by test/security/leak-global.ts.
 *
 * Not secrets: the embedded service's documented local key (sk-local-dev) and values shorter than 8 characters.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, inject } from 'vitest';
import { findLeaks, resetTee, teeStats } from './leak-state.js';

declare module 'vitest' {
  export interface ProvidedContext {
    leakTeeDir: string;
  }
}

resetTee();
const file = (expect.getState().testPath as string | undefined) ?? 'unknown';

// Registered before the test file's own hooks, so it runs after them (hooks run in stack order): the servers
// a file closes in its afterAll have logged their last line by then.
afterAll(() => {
  const leaks = findLeaks();
  const stats = teeStats();
  let dir: string | undefined;
  try {
    dir = inject('leakTeeDir');
  } catch {
    dir = undefined;
  }
  if (dir) {
    writeFileSync(
      join(dir, `stats-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.json`),
      JSON.stringify({ file, ...stats, leaks: leaks.map((l) => ({ channel: l.channel, secretHint: l.secretHint })) }),
    );
  }
  if (leaks.length) {
    throw new Error(
      `A secret leaked into ${leaks.map((l) => l.channel).join(', ')}:\n` +
        leaks.map((l) => `  [${l.channel}] secret ${l.secretHint}: …${l.context}…`).join('\n'),
    );
  }
});
