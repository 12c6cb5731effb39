/** Options of the local fine-tuning service, with their defaults. */

export interface RequestInfo {
  method: string;
  /** Path as requested, e.g. "/v1/fine_tuning/jobs/ftjob-abc". */
  path: string;
  /** Route pattern, e.g. "GET /v1/fine_tuning/jobs/:id" ("GET <unmatched>" when no route matched). */
  route: string;
  status: number;
  /** Organization of the caller, when the key was valid. */
  orgId?: string;
}

/**
 * Fault injection, for a later issue (error rate, latency, 429 with Retry-After, 500, dropped connections).
 * Accepted and kept on the emulator today, but nothing reads it yet.
 */
export interface FaultOptions {
  /** Share of requests (0–1) that fail. */
  errorRate?: number;
  /** Extra latency per request, in ms (a fixed value or a [min, max] range). */
  latencyMs?: number | [number, number];
  /** Status of injected failures: 429 (with Retry-After) or 500. */
  status?: 429 | 500;
  retryAfterSeconds?: number;
  /** Share of requests (0–1) whose connection is dropped without a response. */
  dropRate?: number;
  /** Only requests whose route matches (e.g. "GET /v1/fine_tuning/jobs/:id"). */
  routes?: string[];
}

export interface EmulatorOptions {
  /** SQLite path or ':memory:'. Default: $EMULATOR_DB or ./data/emulator.db. */
  dbPath?: string;
  /** Wall time of one training step in ms. Default: $EMULATOR_STEP_MS or 200. */
  stepMs?: number;
  /** Called once per request, after the response is ready. */
  onRequest?: (info: RequestInfo) => void;
  /** Upload size cap in bytes. Default: $EMULATOR_MAX_UPLOAD_BYTES or 64 MiB. */
  maxUploadBytes?: number;
  /** SQLite synchronous level. NORMAL survives SIGKILL; FULL also survives power loss. Default NORMAL. */
  synchronous?: 'NORMAL' | 'FULL';
  /** How long idempotency keys are kept, in ms. Default 24 h. */
  idempotencyTtlMs?: number;
  /** Reserved for fault injection (see FaultOptions); not applied yet. */
  faults?: FaultOptions;
}

export interface ResolvedOptions {
  dbPath: string;
  stepMs: number;
  onRequest?: (info: RequestInfo) => void;
  maxUploadBytes: number;
  synchronous: 'NORMAL' | 'FULL';
  idempotencyTtlMs: number;
  faults?: FaultOptions;
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
  const stepMs = positiveNumber('stepMs', opts.stepMs ?? process.env.EMULATOR_STEP_MS ?? 200);
  return {
    dbPath: opts.dbPath ?? process.env.EMULATOR_DB ?? './data/emulator.db',
    stepMs,
    onRequest: opts.onRequest,
    maxUploadBytes: positiveNumber(
      'maxUploadBytes',
      opts.maxUploadBytes ?? process.env.EMULATOR_MAX_UPLOAD_BYTES ?? 64 * 1024 * 1024,
    ),
    synchronous: opts.synchronous ?? 'NORMAL',
    idempotencyTtlMs: opts.idempotencyTtlMs ?? 24 * 60 * 60 * 1000,
    faults: opts.faults,
    validationMs: 5 * stepMs,
    queueMs: 5 * stepMs,
  };
}
