/**
 * The Redis side of cluster mode: clients, key names and the Lua scripts that make each step atomic.
 *
 * Keys of one watched job (credential hash `h`, job id `j`); the `{h:j}` hash tag keeps them in one slot, so the
 * scripts that touch several of them also work on a Redis Cluster:
 *   <prefix>live:{h:j}:lease     the poller lease: the leader's instance id, PX leaseMs
 *   <prefix>live:{h:j}:state     hash: epoch, seq, cursor, hasCursor (the last published event), version, jobHash,
 *                                job (the last published job state, JSON), notify (mutations seen), ended
 *   <prefix>live:{h:j}:presence  sorted set: instance id -> expiry (ms, Redis clock) of the instances with subscribers
 * and the pub/sub channels <prefix>live:{h:j}:events, :job (stream messages) and :ctl (poke, released).
 * Only hashes of credentials appear here: never a key or token, in names or values.
 */
import { Redis, type RedisOptions } from 'ioredis';

export interface JobKeys {
  lease: string;
  state: string;
  presence: string;
  events: string;
  job: string;
  ctl: string;
}

export function jobKeys(prefix: string, credentialHash: string, jobId: string): JobKeys {
  const base = `${prefix}live:{${credentialHash}:${jobId}}`;
  return {
    lease: `${base}:lease`,
    state: `${base}:state`,
    presence: `${base}:presence`,
    events: `${base}:events`,
    job: `${base}:job`,
    ctl: `${base}:ctl`,
  };
}

/** Milliseconds on the Redis server's clock (one clock for every instance). */
const NOW = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const SCRIPTS = {
  /** KEYS lease; ARGV id, leaseMs → -1 when held by `id` now, else the lease's remaining ms. */
  acquire: {
    keys: 1,
    lua: `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return -1 end
local t = redis.call('PTTL', KEYS[1])
if t < 0 then t = 0 end
return t`,
  },
  /** Compare-and-renew. KEYS lease, state; ARGV id, leaseMs, stateTtlMs → 1, or 0 when `id` lost the lease. */
  renew: {
    keys: 2,
    lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1`,
  },
  /** Compare-and-delete. KEYS lease; ARGV id, ctlChannel, message ('' publishes nothing) → 1 if released. */
  release: {
    keys: 1,
    lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 1`,
  },
  /**
   * A new baseline (epoch), for the lease holder. KEYS lease, state; ARGV id, epoch, cursor, hasCursor ('1'/'0'),
   * stateTtlMs, eventsChannel, force ('1' replaces an existing state) → 'ok' | 'exists' | 'lost'.
   */
  init: {
    keys: 2,
    lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lost' end
if ARGV[7] ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then return 'exists' end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'epoch', ARGV[2], 'seq', 0, 'cursor', ARGV[3], 'hasCursor', ARGV[4], 'version', 0, 'jobHash', '', 'notify', 0, 'ended', 0)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local cursor = 'null'
if ARGV[4] == '1' then cursor = cjson.encode(ARGV[3]) end
redis.call('PUBLISH', ARGV[6], '{"kind":"state","epoch":' .. cjson.encode(ARGV[2]) .. ',"seq":0,"cursor":' .. cursor .. '}')
return 'ok'`,
  },
  /**
   * New events, fenced by the lease and by the state the leader walked from. KEYS lease, state; ARGV id, epoch,
   * expectSeq, newCursor, count, eventsJson (an array, oldest first), stateTtlMs, eventsChannel
   * → {'ok', lastSeq} | {'lost'} | {'missing'} | {'stale'}.
   */
  publishEvents: {
    keys: 2,
    lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'lost'} end
local st = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
if not st[1] then return {'missing'} end
if st[1] ~= ARGV[2] or st[2] ~= ARGV[3] then return {'stale'} end
local first = tonumber(st[2]) + 1
local last = tonumber(st[2]) + tonumber(ARGV[5])
redis.call('HSET', KEYS[2], 'seq', last, 'cursor', ARGV[4], 'hasCursor', '1')
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('PUBLISH', ARGV[8], '{"kind":"events","epoch":' .. cjson.encode(ARGV[2]) .. ',"firstSeq":' .. string.format('%d', first) .. ',"events":' .. ARGV[6] .. '}')
return {'ok', last}`,
  },
  /**
   * A job state seen by the leader, unless a mutation's state came in since the leader read `notify` (its retrieve
   * may be older). KEYS lease, state; ARGV id, epoch, expectNotify, jobHash, jobJson, stateTtlMs, jobChannel
   * → {'ok', version} | {'same'} | {'lost'} | {'missing'} | {'stale'}.
   */
  publishJob: {
    keys: 2,
    lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'lost'} end
local st = redis.call('HMGET', KEYS[2], 'epoch', 'notify', 'jobHash', 'version')
if not st[1] then return {'missing'} end
if st[1] ~= ARGV[2] or st[2] ~= ARGV[3] then return {'stale'} end
if st[3] == ARGV[4] then return {'same'} end
local v = tonumber(st[4]) + 1
redis.call('HSET', KEYS[2], 'jobHash', ARGV[4], 'job', ARGV[5], 'version', v)
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[7], '{"kind":"job","epoch":' .. cjson.encode(ARGV[2]) .. ',"version":' .. string.format('%d', v) .. ',"hash":' .. cjson.encode(ARGV[4]) .. ',"job":' .. ARGV[5] .. '}')
return {'ok', v}`,
  },
  /**
   * A job state from a mutation, from any instance: published at once when it differs, and the leader is poked
   * to poll now. KEYS state; ARGV jobHash, jobJson, stateTtlMs, jobChannel, ctlChannel → 1 if published.
   */
  notifyJob: {
    keys: 1,
    lua: `
local st = redis.call('HMGET', KEYS[1], 'epoch', 'jobHash', 'version')
local published = 0
if st[1] and st[2] ~= ARGV[1] then
  local v = tonumber(st[3]) + 1
  redis.call('HSET', KEYS[1], 'jobHash', ARGV[1], 'job', ARGV[2], 'version', v)
  redis.call('HINCRBY', KEYS[1], 'notify', 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PUBLISH', ARGV[4], '{"kind":"job","epoch":' .. cjson.encode(st[1]) .. ',"version":' .. string.format('%d', v) .. ',"hash":' .. cjson.encode(ARGV[1]) .. ',"job":' .. ARGV[2] .. '}')
  published = 1
end
redis.call('PUBLISH', ARGV[5], '{"kind":"poke"}')
return published`,
  },
  /** The job is terminal and its last events are out. KEYS lease, state; ARGV id, epoch, eventsChannel, jobChannel. */
  publishEnd: {
    keys: 2,
    lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'lost' end
local st = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
if not st[1] then return 'missing' end
if st[1] ~= ARGV[2] then return 'stale' end
redis.call('HSET', KEYS[2], 'ended', '1')
local msg = '{"kind":"end","epoch":' .. cjson.encode(st[1]) .. ',"seq":' .. st[2] .. '}'
redis.call('PUBLISH', ARGV[3], msg)
redis.call('PUBLISH', ARGV[4], msg)
return 'ok'`,
  },
  /** A fatal failure for every stream of the job. KEYS lease; ARGV id, eventsChannel, jobChannel, message. */
  publishError: {
    keys: 1,
    lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PUBLISH', ARGV[2], ARGV[4])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`,
  },
  /** This instance has subscribers of the job until now + ttl. KEYS presence; ARGV member, ttlMs. */
  presenceTouch: {
    keys: 1,
    lua: `
${NOW}
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1`,
  },
  /** Instances that still have subscribers of the job. KEYS presence. */
  presenceCount: {
    keys: 1,
    lua: `
${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])`,
  },
} as const;

export type ScriptName = keyof typeof SCRIPTS;

/** The scripts, loaded once per client (EVALSHA, with ioredis falling back to EVAL after a script flush). */
export class Scripts {
  constructor(private readonly redis: Redis) {
    for (const [name, s] of Object.entries(SCRIPTS)) redis.defineCommand(name, { numberOfKeys: s.keys, lua: s.lua });
  }

  run<T = unknown>(name: ScriptName, keys: string[], args: (string | number)[]): Promise<T> {
    const fn = (this.redis as unknown as Record<string, (...a: (string | number)[]) => Promise<T>>)[name]!;
    return fn.call(this.redis, ...keys, ...args);
  }
}

export interface RedisClientOptions {
  url: string;
  /** Name shown by CLIENT LIST (never the URL, which may hold a password). */
  name: string;
  /** Called on connection errors (ioredis reconnects by itself). */
  onError?: (err: Error) => void;
}

/**
 * An ioredis client for REDIS_URL (redis:// or rediss://). Commands fail after a few reconnect attempts rather
 * than waiting forever while Redis is down; the client keeps reconnecting in the background.
 */
export function createRedisClient(opts: RedisClientOptions & { subscriber?: boolean }): Redis {
  const options: RedisOptions = {
    connectionName: opts.name,
    connectTimeout: 2_000,
    maxRetriesPerRequest: opts.subscriber ? null : 2,
    retryStrategy: (times) => Math.min(100 * times, 2_000),
    // On a subscriber connection, nothing but (UN)SUBSCRIBE/PING may follow a SUBSCRIBE. ioredis writes a SUBSCRIBE
    // issued while the connection is still in its handshake at once (pub/sub commands are allowed while Redis is
    // loading), ahead of the ready check's INFO and of CLIENT SETINFO (sent after an asynchronous read of its
    // package.json); Redis refuses those in subscriber mode, ioredis drops the connection, and the subscriptions
    // are lost (seen under load, for subscriptions made just after start). So: no ready check and no client info
    // on the subscriber (the ready check only matters for data commands while Redis loads its dataset).
    enableReadyCheck: !opts.subscriber,
    disableClientInfo: true,
  };
  const client = new Redis(opts.url, options);
  client.on('error', (err: Error) => opts.onError?.(err));
  return client;
}
