/**
 * Upstream failures → GraphQL errors with `extensions.code`.
 *
 * 400/422 → BAD_USER_INPUT (a ValidationError naming the field), 401 → UNAUTHENTICATED, 403 → FORBIDDEN,
 * 404 → NOT_FOUND, 409 → CONFLICT, 429 → RATE_LIMITED (+ extensions.retryAfter in seconds),
 * 5xx, timeouts and connection failures → UPSTREAM_UNAVAILABLE.
 *
 * Messages are written here or sanitized: the upstream's URL, headers and API key never reach a client.
 */
import { GraphQLError } from 'graphql/index.js';
import OpenAI from 'openai';

export type ErrorCode =
  | 'BAD_USER_INPUT'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'RATE_LIMITED'
  | 'UPSTREAM_UNAVAILABLE'
  | 'INTERNAL_SERVER_ERROR';

/** Base of every error this server raises on purpose. */
export class ApiError extends GraphQLError {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode, extensions: Record<string, unknown> = {}) {
    super(message, { extensions: { code, ...extensions } });
    this.code = code;
    this.name = 'ApiError';
  }
}

/** Input that is wrong: names the field (a dotted path such as `input.hyperparameters.nEpochs`). */
export class ValidationError extends ApiError {
  readonly field: string;
  constructor(message: string, field: string) {
    super(message, 'BAD_USER_INPUT', { field });
    this.field = field;
    this.name = 'ValidationError';
  }
}

export class NotFoundError extends ApiError {
  constructor(message: string) {
    super(message, 'NOT_FOUND');
    this.name = 'NotFoundError';
  }
}

/** The operation conflicts with the resource's state (for example cancelling a finished job). */
export class ConflictError extends ApiError {
  constructor(message: string) {
    super(message, 'CONFLICT');
    this.name = 'ConflictError';
  }
}

export class UnauthenticatedError extends ApiError {
  constructor(message = 'The fine-tuning API rejected the credential (missing, malformed or revoked API key).') {
    super(message, 'UNAUTHENTICATED');
  }
}

export class ForbiddenError extends ApiError {
  constructor(message = 'The credential is not allowed to perform this operation.') {
    super(message, 'FORBIDDEN');
  }
}

export class RateLimitedError extends ApiError {
  readonly retryAfter: number;
  constructor(retryAfter: number) {
    super(`The fine-tuning API is rate limiting requests; retry after ${retryAfter} s.`, 'RATE_LIMITED', {
      retryAfter,
    });
    this.retryAfter = retryAfter;
  }
}

export class UpstreamUnavailableError extends ApiError {
  constructor(message = 'The fine-tuning API is unavailable; try again later.', status?: number) {
    super(message, 'UPSTREAM_UNAVAILABLE', status ? { upstreamStatus: status } : {});
  }
}

const URL_RE = /\b(?:https?|wss?):\/\/[^\s'"<>)]+/gi;
const KEY_RE = /\b(?:sk|rk|pk|sess)-[A-Za-z0-9_\-*.]{3,}/g;
const BEARER_RE = /\bBearer\s+\S+/gi;

/**
 * Removes URLs, anything shaped like an API key, bearer tokens and the given secrets from an upstream message.
 * Used for the upstream's own explanations (400/404/409), which are useful to users but not trusted.
 */
export function sanitizeMessage(message: string, secrets: readonly string[] = []): string {
  let out = message;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('[redacted]');
  out = out.replace(URL_RE, '[url]').replace(BEARER_RE, 'Bearer [redacted]').replace(KEY_RE, '[redacted]');
  out = out.replace(/\s+/g, ' ').trim();
  if (out.length > 500) out = `${out.slice(0, 497)}...`;
  return out;
}

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** `hyperparameters.n_epochs` → `hyperparameters.nEpochs`, `training_file` → `trainingFile`. */
export function fieldFromParam(param: string | null | undefined, prefix = '', fallback = ''): string {
  if (!param) return fallback;
  const path = param
    .replace(/\[(\d+)\]/g, '.$1')
    .replace(/\[([^\]]+)\]/g, '.$1')
    .split('.')
    .filter(Boolean)
    .map(camel)
    .join('.');
  if (path === 'fineTuningJobId' || path === 'fileId') return fallback || 'id';
  return prefix ? `${prefix}.${path}` : path;
}

/** Milliseconds from retry-after-ms or Retry-After (seconds or HTTP date); undefined when the upstream gave none. */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  const ms = headers?.get('retry-after-ms');
  if (ms && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const value = headers?.get('retry-after');
  if (value) {
    const n = Number(value);
    if (Number.isFinite(n)) return Math.max(0, n * 1000);
    const date = Date.parse(value);
    if (!Number.isNaN(date)) return Math.max(0, date - now);
  }
  return undefined;
}

/** Whole seconds to wait (for extensions.retryAfter); 1 when the upstream gave none. */
export function retryAfterSeconds(headers: Headers | undefined, now = Date.now()): number {
  const ms = retryAfterMs(headers, now);
  return ms === undefined ? 1 : Math.ceil(ms / 1000);
}

export interface MapOptions {
  /** Strings that must never appear in a message (the credential, the base URL). */
  secrets?: readonly string[];
  /** Prefix for fields named by a 400 (`input` for createFineTuningJob). */
  fieldPrefix?: string;
  /** Field to name when the upstream does not say which one is wrong. */
  defaultField?: string;
  /** What was asked for, for a 404 message (e.g. `fine-tuning job ftjob-…`). */
  resource?: string;
}

export function mapUpstreamError(err: unknown, opts: MapOptions = {}): Error {
  if (err instanceof ApiError) return err;
  const secrets = opts.secrets ?? [];
  if (err instanceof OpenAI.APIConnectionTimeoutError) {
    return new UpstreamUnavailableError('The fine-tuning API did not answer in time; try again later.');
  }
  if (err instanceof OpenAI.APIUserAbortError) {
    return new UpstreamUnavailableError('The call to the fine-tuning API was aborted.');
  }
  if (err instanceof OpenAI.APIConnectionError) {
    return new UpstreamUnavailableError('The fine-tuning API could not be reached; try again later.');
  }
  if (err instanceof OpenAI.APIError) {
    const status = err.status ?? 0;
    const body = (err.error ?? {}) as { message?: unknown };
    const raw = typeof body.message === 'string' ? body.message : '';
    const message = sanitizeMessage(raw, secrets);
    // OpenAI answers 400 `invalid_job_status` for an impossible transition (cancel a finished job, …).
    if (status === 409 || (status === 400 && err.code === 'invalid_job_status')) {
      return new ConflictError(message || 'The operation conflicts with the current state.');
    }
    if (status === 400 || status === 422 || status === 413 || status === 415) {
      const field = fieldFromParam(err.param, opts.fieldPrefix, opts.defaultField ?? 'input');
      return new ValidationError(message || 'The fine-tuning API rejected the input.', field);
    }
    if (status === 401) return new UnauthenticatedError();
    if (status === 403) return new ForbiddenError();
    if (status === 404) return new NotFoundError(message || `No such ${opts.resource ?? 'object'}.`);
    if (status === 429) return new RateLimitedError(retryAfterSeconds(err.headers));
    if (status >= 500 || status === 408) {
      return new UpstreamUnavailableError(`The fine-tuning API failed (HTTP ${status}); try again later.`, status);
    }
    return new ValidationError(message || `The fine-tuning API refused the request (HTTP ${status}).`, opts.defaultField ?? 'input');
  }
  return err instanceof Error ? err : new Error(String(err));
}
