/** Shared pieces of the HTTP layer: the Hono env type, query parsing for lists, the error handler. */
import type { Context, Env } from 'hono';
import { ApiError, badRequest } from './errors.js';
import type { Scheduler } from './scheduler.js';
import type { ResolvedOptions } from './options.js';
import type { Store } from './store.js';
import type { ModelSupport } from './validate-create-job.js';

export interface EmulatorEnv extends Env {
  Variables: { orgId: string };
}

export interface RouteDeps {
  store: Store;
  scheduler: Scheduler;
  opts: ResolvedOptions;
  models: ModelSupport;
}

/**
 * `limit` from the query: absent → `def`; above `max` → `max`; below 1 or not an integer → 400 naming `limit`.
 */
export function parseLimit(raw: string | undefined, def: number, max: number): number {
  if (raw === undefined) return def;
  if (!/^[+-]?\d+$/.test(raw.trim())) {
    throw badRequest(`Invalid type for 'limit': expected an integer, but got '${raw}' instead.`, 'limit', 'invalid_type');
  }
  const n = Number(raw);
  if (n < 1) {
    throw badRequest(`Invalid 'limit': integer below minimum value. Expected a value >= 1, but got ${n} instead.`, 'limit', 'integer_below_min_value');
  }
  return Math.min(n, max);
}

export function unknownAfter(after: string, what: string): ApiError {
  return badRequest(`Invalid 'after': no ${what} with id '${after}' was found.`, 'after', 'invalid_value');
}

/** The error handler: ApiError → OpenAI's envelope; anything else → 500 without internals. */
export function errorResponse(err: unknown, c: Context, log: (msg: string, err?: unknown) => void): Response {
  if (err instanceof ApiError) {
    for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
    return c.json(err.toBody(), err.status as 400);
  }
  log(`unhandled error on ${c.req.method} ${c.req.path}`, err);
  return c.json(
    {
      error: {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        param: null,
        code: null,
      },
    },
    500,
  );
}
