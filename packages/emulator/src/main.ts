/**
 * The local fine-tuning service on its own: `npm run emulator`.
 *   PORT (default 4010), HOST (default 127.0.0.1), and the EMULATOR_* variables of env.ts: EMULATOR_DB (default
 *   ./data/emulator.db), EMULATOR_STEP_MS (default 200), EMULATOR_MAX_UPLOAD_BYTES, EMULATOR_FAULTS (fault
 *   injection, a JSON object of FaultOptions, e.g. '{"errorRate":0.2,"seed":1}'; see faults.ts),
 *   EMULATOR_HONOUR_IDEMPOTENCY_KEYS (default 1; 0 ignores Idempotency-Key like an upstream without support).
 * Closes cleanly on SIGTERM/SIGINT. If it cannot start (e.g. another local service holds the database file, see
 * store.ts), it prints one line "Cannot start: …" on stderr and exits 1.
 */
import { createServer } from 'node:http';
import { optionsFromEnv } from './env.js';
import { describeFaults } from './faults.js';
import { createEmulator, type Emulator, requestListener } from './index.js';

const port = Number(process.env.PORT ?? 4010);
const host = process.env.HOST ?? '127.0.0.1';

function cannotStart(err: unknown): never {
  process.stderr.write(`Cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

let emulator: Emulator;
try {
  emulator = createEmulator(optionsFromEnv(process.env));
} catch (err) {
  cannotStart(err);
}
const server = createServer(requestListener(emulator));
server.keepAliveTimeout = 65_000;
server.once('error', cannotStart); // e.g. the port is taken

server.listen(port, host, () => {
  const address = server.address();
  const actualPort = typeof address === 'object' && address ? address.port : port;
  emulator.start();
  const { dbPath, stepMs, faults, honourIdempotencyKeys } = emulator.options;
  const extra = `${faults ? `, faults: ${describeFaults(faults)}` : ''}${honourIdempotencyKeys ? '' : ', Idempotency-Key ignored'}`;
  process.stdout.write(`fine-tuning emulator listening on http://${host}:${actualPort}/v1 (db ${dbPath}, step ${stepMs} ms${extra})\n`);
});

let stopping = false;
function shutdown(): void {
  if (stopping) return;
  stopping = true;
  const force = setTimeout(() => process.exit(1), 5000);
  force.unref();
  // Requests held by injected hangs are dropped, so that the close below does not wait for them.
  emulator.setFaults(undefined);
  server.close(() => {
    void emulator.close().then(() => process.exit(0));
  });
  server.closeIdleConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
