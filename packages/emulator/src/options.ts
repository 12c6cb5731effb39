/** Options of the local fine-tuning service, with their defaults. */
import type { FaultKind, FaultOptions } from './faults.js';

export interface RequestInfo {
  method: string;
  /** Path as requested, e.g. "/v1/fine_tuning/jobs/ftjob-abc". */
  path: string;
  /** Route pattern, e.g. "GET /v1/fine_tuning/jobs/:id" ("GET <unmatched>" when no route matched). */
  route: string;
  status: number;
  /** Organization of the caller, when the key was valid. */
  orgId?: string;
  /** The fault injected into this request, if any (see faults.ts); `status` is 0 when nothing was answered. */
  fault?: FaultKind;
}

export type { FaultKind, FaultOptions } from './faults.js';

/**
 * The database when `dbPath` is not given (the standalone `npm run emulator` without $EMULATOR_DB). The service
 * embedded in the gateway's `npm start` passes its own default (packages/gateway/src/http/embedded.ts), so that
 * both can run at once.
 */
export const DEFAULT_DB_PATH = './data/emulator.db';

export interface EmulatorOptions {
  /**
   * SQLite path or ':memory:'. Default: ./data/emulator.db. A file is held by one service at a time: opening one
   * that another service holds throws DatabaseInUseError (store.ts).
   */
  dbPath?: string;
  /** Wall time of one training step in ms. Default 200. */
  stepMs?: number;
  /** Called once per request, after the response is ready. */
  onRequest?: (info: RequestInfo) => void;
  /** Upload size cap in bytes. Default 64 MiB. */
  maxUploadBytes?: number;
  /** SQLite synchronous level. NORMAL survives SIGKILL; FULL also survives power loss. Default NORMAL. */
  synchronous?: 'NORMAL' | 'FULL';
  /** How long idempotency keys are kept, in ms. Default 24 h. */
  idempotencyTtlMs?: number;
  /** Fault injection (see faults.ts), off by default. */
  faults?: FaultOptions;
  /**
   * Honour `Idempotency-Key` on POSTs (default true). With
   * false the header is ignored, like an upstream without idempotency support, so each repeat creates again.
   */
  honourIdempotencyKeys?: boolean;
}

export interface ResolvedOptions {
  dbPath: string;
  stepMs: number;
  onRequest?: (info: RequestInfo) => void;
  maxUploadBytes: number;
  synchronous: 'NORMAL' | 'FULL';
  idempotencyTtlMs: number;
  faults?: FaultOptions;
  honourIdempotencyKeys: boolean;
  /** validating_files lasts this long (scales with stepMs). */
  validationMs: number;
  /** queued lasts this long (scales with stepMs). */
  queueMs: number;
}

function positiveNumber(name: string, v: unknown): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${String(v)}`);
  return n;
}

export function resolveOptions(opts: EmulatorOptions = {}): ResolvedOptions {
  const stepMs = positiveNumber('stepMs', opts.stepMs ?? 200);
  return {
    dbPath: opts.dbPath ?? DEFAULT_DB_PATH,
    stepMs,
    onRequest: opts.onRequest,
    maxUploadBytes: positiveNumber('maxUploadBytes', opts.maxUploadBytes ?? 64 * 1024 * 1024),
    synchronous: opts.synchronous ?? 'NORMAL',
    idempotencyTtlMs: opts.idempotencyTtlMs ?? 24 * 60 * 60 * 1000,
    faults: opts.faults,
    honourIdempotencyKeys: opts.honourIdempotencyKeys ?? true,
    validationMs: 5 * stepMs,
    queueMs: 5 * stepMs,
  };
}
