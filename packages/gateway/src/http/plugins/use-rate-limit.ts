/**
 * Fair use per credential: every GraphQL operation (an HTTP request to /graphql, an SSE subscription, each
 * graphql-ws subscribe) takes one point of its caller's budget of RATE_LIMIT_PER_MINUTE (or the GATEWAY_TOKENS
 * entry's own `ratePerMinute`). Over it the operation is refused before anything runs: HTTP 429 with
 * `Retry-After`, and a GraphQL error with code RATE_LIMITED, `retryAfter` (seconds) and `limit: 'rate'`.
 *
 * The counting is rate-limiter-flexible's: a fixed one-minute window per key, in memory for one process, in
 * Redis in cluster mode (one budget across instances) with a 200 ms timeout and an in-memory limiter as
 * insurance, so a Redis stall neither blocks requests nor lifts the limit.
 *
 * The key is the principal (`token:<name>`, `key:<hash>` in passthrough, `anonymous` with AUTH_MODE=none),
 * never the credential itself. Unauthenticated requests are refused earlier by the operation gate and cost
 * nothing upstream.
 */
import type { Redis } from 'ioredis';
import { GraphQLError } from 'graphql/index.js';
import type { Plugin } from 'graphql-yoga';
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes, RLWrapperTimeouts } from 'rate-limiter-flexible';
import type { GraphQLContext } from '../../resolvers/context.js';

const WINDOW_SECONDS = 60;
const REDIS_TIMEOUT_MS = 200;

export interface RequestRateLimiter {
  /** Takes one point of `key`'s budget of `perMinute`: undefined when allowed, else milliseconds until one is free. */
  take(key: string, perMinute: number): Promise<number | undefined>;
}

/** One limiter per budget size (tokens may have their own); in Redis when `redis` is given. */
export function createRequestRateLimiter(opts: { redis?: Redis; keyPrefix?: string } = {}): RequestRateLimiter {
  const limiters = new Map<number, RateLimiterAbstract | RLWrapperTimeouts>();
  const limiterFor = (points: number) => {
    let limiter = limiters.get(points);
    if (!limiter) {
      const memory = new RateLimiterMemory({ points, duration: WINDOW_SECONDS, keyPrefix: `rate${points}` });
      limiter = opts.redis
        ? new RLWrapperTimeouts({
            limiter: new RateLimiterRedis({
              storeClient: opts.redis,
              points,
              duration: WINDOW_SECONDS,
              keyPrefix: `${opts.keyPrefix ?? ''}rate:${points}`,
              rejectIfRedisNotReady: true,
              insuranceLimiter: memory,
            }),
            timeoutMs: REDIS_TIMEOUT_MS,
            insuranceLimiter: memory,
          })
        : memory;
      limiters.set(points, limiter);
    }
    return limiter;
  };
  return {
    async take(key, perMinute) {
      try {
        await limiterFor(perMinute).consume(key, 1);
        return undefined;
      } catch (res) {
        if (res instanceof RateLimiterRes) return Math.max(1, res.msBeforeNext);
        // A store failure with no insurance left: let the request through rather than fail it.
        return undefined;
      }
    },
  };
}

/** The RATE_LIMITED error: status 429 and Retry-After for HTTP, the same code and retryAfter everywhere. */
export function rateLimitedError(retryMs: number, perMinute: number): GraphQLError {
  const retryAfter = Math.max(1, Math.ceil(retryMs / 1000));
  return new GraphQLError(
    `Rate limit exceeded: at most ${perMinute} GraphQL operations per minute for this client (RATE_LIMIT_PER_MINUTE); retry in ${retryAfter} s.`,
    {
      extensions: {
        code: 'RATE_LIMITED',
        limit: 'rate',
        retryAfter,
        http: { status: 429, headers: { 'Retry-After': String(retryAfter) } },
      },
    },
  );
}

/**
 * The plugin: placed after the operation gate, so only authenticated operations are counted.
 * `defaultPerMinute` 0 (and a token's `ratePerMinute` 0) means unlimited.
 */
export function useRateLimit(limiter: RequestRateLimiter, defaultPerMinute: number): Plugin<GraphQLContext> {
  // Not an async function: with no limit to check it returns nothing, and envelop stays on its synchronous path.
  const check = ({ args, setResultAndStopExecution }: { args: { contextValue: GraphQLContext }; setResultAndStopExecution: (result: never) => void }) => {
    const { auth } = args.contextValue;
    if (!auth.authenticated) return;
    const perMinute = auth.ratePerMinute ?? defaultPerMinute;
    if (!perMinute) return;
    return limiter.take(auth.principalId, perMinute).then((retryMs) => {
      if (retryMs !== undefined) setResultAndStopExecution({ errors: [rateLimitedError(retryMs, perMinute)] } as never);
    });
  };
  return { onExecute: check as never, onSubscribe: check as never };
}
