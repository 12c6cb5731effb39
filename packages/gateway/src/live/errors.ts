import { GraphQLError } from 'graphql/index.js';
import type { LiveErrorCode } from './types.js';

/**
 * A failure delivered through a stream. Streams yield it as an item (rather than throwing from
 * `next()`), and the subscription field's `resolve` turns it into a GraphQL error, so that every
 * transport (graphql-ws, SSE) reports it the same way: `{ data: null, errors: [{ message,
 * extensions: { code } }] }`, after which the stream completes. `field` names the argument at fault, `limit` the
 * limit that refused the stream (LIMIT_EXCEEDED: replayEvents, concurrentReplays, watchedJobs); both go to `extensions`.
 */
export class LiveFailure {
  constructor(
    readonly code: LiveErrorCode,
    readonly message: string,
    readonly field?: string,
    readonly limit?: string,
  ) {}

  toGraphQLError(): GraphQLError {
    return new GraphQLError(this.message, {
      extensions: { code: this.code, ...(this.field ? { field: this.field } : {}), ...(this.limit ? { limit: this.limit } : {}) },
    });
  }
}

export function isLiveFailure(value: unknown): value is LiveFailure {
  return value instanceof LiveFailure;
}

/**
 * Sorts an upstream error into fatal (the stream cannot go on: unknown job, bad key) or transient
 * (back off and retry: network errors, timeouts, 429, 5xx). Understands the openai SDK's errors
 * (`status`) and GraphQL-style errors (`extensions.code`). Messages stay generic: the upstream's
 * URL, headers and key never leak into them.
 */
export function classifyUpstreamError(err: unknown): { fatal: true; code: LiveErrorCode; message: string } | { fatal: false; retryAfterMs?: number } {
  const e = err as { status?: unknown; extensions?: { code?: unknown; retryAfter?: unknown }; headers?: unknown } | null;
  const status = typeof e?.status === 'number' ? e.status : undefined;
  const code = typeof e?.extensions?.code === 'string' ? e.extensions.code : undefined;
  if (status === 404 || code === 'NOT_FOUND') return { fatal: true, code: 'NOT_FOUND', message: 'No such fine-tuning job.' };
  if (status === 401 || code === 'UNAUTHENTICATED') return { fatal: true, code: 'UNAUTHENTICATED', message: 'The upstream rejected the credential.' };
  if (status === 403 || code === 'FORBIDDEN') return { fatal: true, code: 'FORBIDDEN', message: 'Not allowed to read this fine-tuning job.' };
  if (status === 400 || status === 422 || code === 'BAD_USER_INPUT')
    return { fatal: true, code: 'BAD_USER_INPUT', message: 'The upstream rejected the request for this job id.' };
  return { fatal: false, retryAfterMs: retryAfterMs(e) };
}

function retryAfterMs(e: { extensions?: { retryAfter?: unknown }; headers?: unknown } | null): number | undefined {
  const ext = e?.extensions?.retryAfter;
  if (typeof ext === 'number' && Number.isFinite(ext)) return ext * 1000;
  const headers = e?.headers as { get?: (name: string) => string | null } | Record<string, string> | undefined;
  let raw: string | null | undefined;
  if (headers && typeof (headers as { get?: unknown }).get === 'function') raw = (headers as { get(n: string): string | null }).get('retry-after');
  else if (headers && typeof headers === 'object') raw = (headers as Record<string, string>)['retry-after'];
  if (raw == null) return undefined;
  const secs = Number(raw);
  return Number.isFinite(secs) ? secs * 1000 : undefined;
}
