/**
 * `npm start`: the GraphQL API. SIGTERM / SIGINT shut it down gracefully (src/app.ts close(): stop accepting,
 * websockets closed with 1001, pollers stopped, in-flight requests finished, upstream pool and database
 * closed) and the process exits 0; it is forced out (exit 1) if that takes more than 10 s. A second signal
 * exits at once.
 */
import { loadConfig } from './config.js';
import { startServer } from './app.js';

const FORCE_EXIT_MS = 10_000;

let server: Awaited<ReturnType<typeof startServer>>;
try {
  server = await startServer(loadConfig());
} catch (err) {
  console.error(`Cannot start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
console.log(server.startupLine);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) {
      server.logger.warn({ signal }, 'shutdown: second signal; exiting now');
      process.exit(1);
    }
    stopping = true;
    server.logger.info({ signal }, 'shutdown: signal received');
    const force = setTimeout(() => {
      server.logger.error({ signal }, `shutdown: not done after ${FORCE_EXIT_MS / 1000} s; exiting`);
      process.exit(1);
    }, FORCE_EXIT_MS);
    force.unref();
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        server.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
