/**
 * Cluster mode (REDIS_URL): what several instances behind a load balancer share through Redis.
 *   - live: subscription fan-out over Redis pub/sub and one poller per (credential, job) in the cluster (jobs.ts);
 *   - idempotency: createFineTuningJob's idempotency keys (src/upstream/idempotency-redis.ts);
 *   - check(): Redis reachability for /ready.
 * The finished-job response cache stays per process on purpose: finished jobs never change, so a per-process
 * copy is never stale, and a hit costs nothing, where a Redis tier would add a round trip and a JSON decode to
 * every hit to save one upstream read per job and instance.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { LiveEvent, LiveJob, LiveLogger, LiveOptions } from '../types.js';
import { RedisIdempotencyStore } from '../../upstream/idempotency-redis.js';
import { ClusterLiveJobs, DEFAULT_LEASE_MS } from './jobs.js';
import { createRedisClient } from './redis.js';
import type { ClusterObserver } from './types.js';

export { ClusterLiveJobs, DEFAULT_LEASE_MS } from './jobs.js';
export type { ClusterObserver, ClusterOptions } from './types.js';

export interface ClusterConfig {
  /** REDIS_URL (redis:// or rediss://, may hold a password: never logged). */
  url: string;
  /** REDIS_KEY_PREFIX, default `ftgql:`: keys and channels of one deployment (or one test run). */
  keyPrefix: string;
  /** INSTANCE_ID; default `<hostname>-<pid>-<random>`. */
  instanceId?: string;
  /** LIVE_LEASE_MS; default 5000 (and at least twice the poll interval). */
  leaseMs?: number;
}

export interface CheckResult {
  ok: boolean;
  latencyMs?: number;
  error?: string;
}

export interface Cluster<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent, R = unknown> {
  instanceId: string;
  redis: Redis;
  subscriber: Redis;
  live: ClusterLiveJobs<J, E>;
  idempotency: RedisIdempotencyStore<R>;
  /** PING within `timeoutMs` (default 1000). */
  check(timeoutMs?: number): Promise<CheckResult>;
  /** Closes the Redis connections (after live.close() and the upstream's store). */
  close(): Promise<void>;
}

export function defaultInstanceId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export function createCluster<J extends LiveJob, E extends LiveEvent, R = unknown>(
  config: ClusterConfig,
  live: Partial<LiveOptions>,
  logger?: LiveLogger & { error?(obj: object, msg?: string): void },
  observer?: ClusterObserver,
): Cluster<J, E, R> {
  const instanceId = config.instanceId || defaultInstanceId();
  let lastErrorLog = 0;
  const onError = (err: Error) => {
    // ioredis reconnects by itself; say so at most every 5 s. The message names host:port, never the password.
    const now = Date.now();
    if (now - lastErrorLog < 5_000) return;
    lastErrorLog = now;
    logger?.warn({ error: (err as { code?: string }).code ?? err.message }, 'redis: connection error; reconnecting');
  };
  const redis = createRedisClient({ url: config.url, name: `ftgql-${instanceId}`, onError });
  const subscriber = createRedisClient({ url: config.url, name: `ftgql-${instanceId}-sub`, onError, subscriber: true });
  const pollIntervalMs = live.pollIntervalMs ?? 1000;
  const leaseMs = Math.max(config.leaseMs ?? DEFAULT_LEASE_MS, 2 * pollIntervalMs);
  const jobs = new ClusterLiveJobs<J, E>(redis, subscriber, {
    ...live,
    instanceId,
    keyPrefix: config.keyPrefix,
    leaseMs,
    logger,
    observer,
  });
  const idempotency = new RedisIdempotencyStore<R>(redis, config.keyPrefix);
  let closed = false;
  return {
    instanceId,
    redis,
    subscriber,
    live: jobs,
    idempotency,
    async check(timeoutMs = 1_000) {
      if (redis.status !== 'ready') return { ok: false, error: `not connected (${redis.status})` };
      const t0 = performance.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([redis.ping(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), timeoutMs)))]);
        return { ok: true, latencyMs: Math.round((performance.now() - t0) * 100) / 100 };
      } catch (err) {
        return { ok: false, error: err instanceof Error ? err.message : 'error' };
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await jobs.close();
      await Promise.all(
        [redis, subscriber].map((c) =>
          c.status === 'ready'
            ? c.quit().then(
                () => undefined,
                () => c.disconnect(),
              )
            : Promise.resolve(c.disconnect()),
        ),
      );
    },
  };
}
