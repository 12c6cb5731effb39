/**
 * The service's environment variables, read by its CLI (main.ts) and by nothing else in this package: the library
 * (createEmulator) takes options. A program embedding the service may pass its own environment through
 * optionsFromEnv to offer the same variables (the gateway's embedded mode does).
 *
 *   EMULATOR_DB                        SQLite path or :memory: (default: options.ts DEFAULT_DB_PATH)
 *   EMULATOR_STEP_MS                   wall time of one training step (default 200)
 *   EMULATOR_MAX_UPLOAD_BYTES          upload size cap (default 64 MiB)
 *   EMULATOR_FAULTS                    fault injection, a JSON object of FaultOptions, e.g. '{"errorRate":0.2,"seed":1}'
 *   EMULATOR_HONOUR_IDEMPOTENCY_KEYS   0 ignores Idempotency-Key, like an upstream without support (default 1)
 */
import { type FaultOptions, validateFaults } from './faults.js';
import type { EmulatorOptions } from './options.js';

export type Environment = Readonly<Record<string, string | undefined>>;

function nonNegative(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${raw}`);
  return n;
}

/** The options that `env`'s EMULATOR_* variables set (unset or empty ones are left out, so defaults apply). */
export function optionsFromEnv(env: Environment): EmulatorOptions {
  const opts: EmulatorOptions = {};
  if (env.EMULATOR_DB) opts.dbPath = env.EMULATOR_DB;
  if (env.EMULATOR_STEP_MS) opts.stepMs = nonNegative('EMULATOR_STEP_MS', env.EMULATOR_STEP_MS);
  if (env.EMULATOR_MAX_UPLOAD_BYTES) opts.maxUploadBytes = nonNegative('EMULATOR_MAX_UPLOAD_BYTES', env.EMULATOR_MAX_UPLOAD_BYTES);
  const faults = faultsFromEnv(env.EMULATOR_FAULTS);
  if (faults) opts.faults = faults;
  if (env.EMULATOR_HONOUR_IDEMPOTENCY_KEYS === '0') opts.honourIdempotencyKeys = false;
  return opts;
}

/** `EMULATOR_FAULTS` (a JSON object of FaultOptions); undefined when unset or empty. */
export function faultsFromEnv(raw: string | undefined): FaultOptions | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error('EMULATOR_FAULTS must be a JSON object, e.g. {"errorRate":0.2,"seed":1}');
  }
  try {
    return validateFaults(parsed);
  } catch (err) {
    throw new Error(`EMULATOR_FAULTS: ${(err as Error).message}`);
  }
}
