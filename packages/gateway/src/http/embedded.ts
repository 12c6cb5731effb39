/**
 * The embedded local fine-tuning service, served at /v1 when no upstream is configured.
 */
import type { Config } from '../config.js';

/**
 * The embedded service's database when EMULATOR_DB is unset. It differs from the standalone `npm run emulator`'s
 * ./data/emulator.db so that both commands can run side by side: a database file is held by one service at a time,
 * and startServer fails with the emulator's DatabaseInUseError when another one holds it.
 */
export const EMBEDDED_DB_PATH = './data/embedded.db';

export interface EmbeddedService {
  fetch(req: Request): Response | Promise<Response>;
  start?(): void;
  close(): Promise<void>;
}

export async function startEmbedded(config: Config): Promise<EmbeddedService> {
  // Imported lazily: a server with a configured upstream never opens the local database.
  const { createEmulator } = (await import('../emulator/index.js')) as {
    createEmulator(opts: { dbPath?: string; stepMs?: number }): EmbeddedService;
  };
  const emulator = createEmulator({ dbPath: config.emulator.dbPath ?? EMBEDDED_DB_PATH, stepMs: config.emulator.stepMs });
  emulator.start?.();
  return emulator;
}

