/**
 * The embedded local fine-tuning service, served at /v1 when no upstream is configured.
 */
import type { Config } from '../config.js';

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
  const emulator = createEmulator({ dbPath: config.emulator.dbPath, stepMs: config.emulator.stepMs });
  emulator.start?.();
  return emulator;
}

