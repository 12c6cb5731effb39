/**
 * The embedded local fine-tuning service (the @finetune-graphql/emulator package), served at /v1 when no upstream
 * is configured.
 */
import type { Emulator, RequestListener } from '@finetune-graphql/emulator';
import type { Config } from '../config.js';

/**
 * The embedded service's database when EMULATOR_DB is unset. It differs from the standalone `npm run emulator`'s
 * ./data/emulator.db so that both commands can run side by side: a database file is held by one service at a time,
 * and startServer fails with the local service's DatabaseInUseError when another one holds it.
 */
export const EMBEDDED_DB_PATH = './data/embedded.db';

export interface EmbeddedService {
  /** The service in-process, as a fetch handler (the gateway's upstream client calls it without a socket). */
  fetch: Emulator['fetch'];
  /** The service as a node:http listener, for /v1 from outside. */
  listener: RequestListener;
  close(): Promise<void>;
}

export async function startEmbedded(config: Config): Promise<EmbeddedService> {
  // Imported lazily: a server with a configured upstream never loads the local service (nor opens its database).
  const { createEmulator, optionsFromEnv, requestListener } = await import('@finetune-graphql/emulator');
  const options = optionsFromEnv(config.emulator.env);
  const emulator = createEmulator({ ...options, dbPath: options.dbPath ?? EMBEDDED_DB_PATH });
  emulator.start();
  return { fetch: emulator.fetch, listener: requestListener(emulator), close: () => emulator.close() };
}
