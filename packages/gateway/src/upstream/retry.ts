/**
 * When and how long to retry an upstream call.
 *
 * Every logical call (a read, a create, …) has one time budget, `timeoutMs` (UPSTREAM_TIMEOUT_MS, default 30 s):
 * each attempt gets what is left of it as its timeout, and no retry starts that could not finish within it. So a
 * call never takes longer than the budget, whatever the retries.
 *
 * Failures are sorted by what they say about the request:
 *   not_sent     the connection was never made (refused, DNS, connect timeout): nothing reached the upstream;
 *   rate_limited a 429: the upstream refused the request without doing it;
 *   ambiguous    5xx, 408, a connection dropped after the request was sent: it may or may not have been done;
 *   timeout      the budget ran out while waiting for an answer (ambiguous too, and nothing is left to retry with);
 *   final        4xx answers, aborts: retrying would not change the answer.
 * Reads retry not_sent, rate_limited and ambiguous failures. Writes (create, cancel, upload, …) retry only
 * not_sent and rate_limited ones: anything that may have reached the upstream is not sent again blindly (an
 * idempotent create is handled in client.ts, with its key).
 *
 * Waits: exponential backoff with full jitter (a uniform draw in [0, min(maxMs, baseMs · 2^attempt)), AWS's
 * "full jitter"), except after a 429 with Retry-After / retry-after-ms: that wait is honoured (plus up to 10 %
 * jitter) when it is at most `retryAfterMaxMs` (UPSTREAM_RETRY_AFTER_MAX_MS, default 5 s); a longer one is not
 * waited for: the call fails at once with RATE_LIMITED and `retryAfter`, and the client decides.
 */
import OpenAI from 'openai';
import { retryAfterMs } from './errors.js';

export interface RetryPolicy {
  /** Budget of one logical call (all attempts and waits), in ms. */
  timeoutMs: number;
  /** Retries after the first attempt (reads, 429s, connections never made). */
  maxRetries: number;
  /** Longest Retry-After waited for; a longer one fails the call with RATE_LIMITED at once. */
  retryAfterMaxMs: number;
  /** Backoff: base and ceiling of the exponential, in ms. */
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  timeoutMs: 30_000,
  maxRetries: 3,
  retryAfterMaxMs: 5_000,
  backoffBaseMs: 100,
  backoffMaxMs: 2_000,
};

export type FailureKind = 'not_sent' | 'rate_limited' | 'ambiguous' | 'timeout' | 'final';

/** Error codes of connections that were never established: the request cannot have reached the upstream. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

function causeCode(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (typeof e.code === 'string' && NOT_SENT_CODES.has(e.code)) return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

export function classifyFailure(err: unknown): FailureKind {
  if (err instanceof OpenAI.APIConnectionTimeoutError) return 'timeout';
  if (err instanceof OpenAI.APIUserAbortError) return 'final';
  if (err instanceof OpenAI.APIConnectionError) return causeCode(err) ? 'not_sent' : 'ambiguous';
  if (err instanceof OpenAI.APIError && typeof err.status === 'number') {
    if (err.status === 429) return 'rate_limited';
    if (err.status === 408 || err.status >= 500) return 'ambiguous';
  }
  return 'final';
}

/** `kind` may be retried in `mode` (before looking at time). */
export function mayRetry(kind: FailureKind, mode: 'read' | 'write'): boolean {
  if (kind === 'not_sent' || kind === 'rate_limited') return true;
  return mode === 'read' && kind === 'ambiguous';
}

/** Full-jitter exponential backoff before retry number `attempt + 1`. */
export function backoffMs(policy: RetryPolicy, attempt: number, random = Math.random): number {
  return random() * Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** attempt);
}

/**
 * How long to wait before the next attempt, or undefined when the call must fail now: no retries left, not
 * retryable in this mode, a Retry-After above the cap, or a wait that would not leave time for an attempt.
 */
export function nextDelay(policy: RetryPolicy, err: unknown, mode: 'read' | 'write', attempt: number, remainingMs: number): number | undefined {
  const kind = classifyFailure(err);
  if (attempt >= policy.maxRetries || !mayRetry(kind, mode)) return undefined;
  let delay = backoffMs(policy, attempt);
  if (kind === 'rate_limited') {
    const after = retryAfterMs((err as InstanceType<typeof OpenAI.APIError>).headers);
    if (after !== undefined) {
      if (after > policy.retryAfterMaxMs) return undefined;
      delay = after + Math.random() * after * 0.1;
    }
  }
  // Leave at least a little time for the attempt itself.
  if (delay + 10 >= remainingMs) return undefined;
  return delay;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
