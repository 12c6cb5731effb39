/**
 * createFineTuningJob's idempotency keys in Redis (cluster mode, REDIS_URL), shared by every instance: a key used
 * on one instance and repeated on another gets the same job. Same semantics as InMemoryIdempotencyStore
 * (src/upstream/idempotency.ts); each operation is one Lua script, so it is atomic across instances:
 *   claim     SET NX PX ttl of a pending record (the first claim), else the takeover of an expired lease or of an
 *             `unknown` outcome with the same fingerprint, else the record as it is;
 *   complete  compare-and-set by owner to `done` with the result (the job as the create returned it);
 *   release   compare-and-delete (`forget`) or compare-and-set to `unknown`, by owner.
 * Waiting for another holder's outcome is the caller's polling (UpstreamApi.idempotentCreate re-claims with
 * backoff until the record is done or the lease expires). Lease times use the Redis server's clock.
 *
 * Stored under <prefix>idem:<store key>, where the store key is already a hash of (credential, client key): neither
 * the credential nor the client's key is ever in Redis. Records expire with their TTL (IDEMPOTENCY_TTL_MS, 24 h).
 * A record's `result` JSON is written by the scripts as given, never decoded and re-encoded in Lua (cjson would
 * turn empty arrays into objects).
 */
import type { Redis } from 'ioredis';
import { UpstreamUnavailableError } from './errors.js';
import type { ClaimRequest, ClaimResult, IdempotencyRecord, IdempotencyStore } from './idempotency.js';

/** Longest wait for one Redis command of a create: a stalled Redis must not hold the client for the whole stall. */
export const REDIS_COMMAND_TIMEOUT_MS = 2_000;

/** `op`, or a rejection once REDIS_COMMAND_TIMEOUT_MS have passed. */
function withTimeout<T>(op: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('redis command timed out')), REDIS_COMMAND_TIMEOUT_MS);
    timer.unref();
  });
  return Promise.race([op(), timeout]).finally(() => clearTimeout(timer));
}

/**
 * Redis unreachable or stalled: the create is refused before anything is sent upstream (a repeat with the same key
 * is safe). A claim that times out but still lands in Redis leaves a pending record whose lease runs out; the next
 * holder then looks for the job before creating.
 */
async function guarded<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await withTimeout(op);
  } catch {
    throw new UpstreamUnavailableError(
      'The idempotency-key store (Redis) is unreachable; nothing was created. Repeat the request with the same idempotencyKey in a moment.',
    );
  }
}

/**
 * After the create: the job exists whatever Redis does now, so a failure or a stall here is not the client's
 * error. The record stays pending until its lease ends; a repeat then finds the job by its tag.
 */
async function afterCreate(op: () => Promise<unknown>): Promise<void> {
  await withTimeout(op).catch(() => undefined);
}

const NOW = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const CLAIM = `
${NOW}
local function pending(fp, owner, createdAt)
  return '{"state":"pending","fingerprint":' .. cjson.encode(fp) .. ',"owner":' .. cjson.encode(owner) ..
    ',"leaseUntil":' .. string.format('%d', now + tonumber(ARGV[3])) .. ',"createdAt":' .. string.format('%d', createdAt) .. '}'
end
if redis.call('SET', KEYS[1], pending(ARGV[1], ARGV[2], now), 'NX', 'PX', ARGV[4]) then return {1, 0} end
local v = redis.call('GET', KEYS[1])
local r = cjson.decode(v)
if r.fingerprint == ARGV[1] and (r.state == 'unknown' or (r.state == 'pending' and (tonumber(r.leaseUntil) or 0) <= now)) then
  redis.call('SET', KEYS[1], pending(r.fingerprint, ARGV[2], tonumber(r.createdAt) or now), 'KEEPTTL')
  return {1, 1}
end
return {0, v}`;

const COMPLETE = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local r = cjson.decode(v)
if r.owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], '{"state":"done","fingerprint":' .. cjson.encode(r.fingerprint) .. ',"createdAt":' ..
  string.format('%d', tonumber(r.createdAt) or 0) .. ',"result":' .. ARGV[2] .. '}', 'KEEPTTL')
return 1`;

const RELEASE = `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local r = cjson.decode(v)
if r.owner ~= ARGV[1] or r.state ~= 'pending' then return 0 end
if ARGV[2] == 'forget' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('SET', KEYS[1], '{"state":"unknown","fingerprint":' .. cjson.encode(r.fingerprint) .. ',"createdAt":' ..
  string.format('%d', tonumber(r.createdAt) or 0) .. '}', 'KEEPTTL')
return 1`;

type ScriptFn = (key: string, ...args: (string | number)[]) => Promise<unknown>;

export class RedisIdempotencyStore<T = unknown> implements IdempotencyStore<T> {
  private readonly fns: { claim: ScriptFn; complete: ScriptFn; release: ScriptFn };

  /** `redis` is shared (the cluster closes it); `prefix` is the deployment's key prefix (REDIS_KEY_PREFIX). */
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    redis.defineCommand('ftgqlIdemClaim', { numberOfKeys: 1, lua: CLAIM });
    redis.defineCommand('ftgqlIdemComplete', { numberOfKeys: 1, lua: COMPLETE });
    redis.defineCommand('ftgqlIdemRelease', { numberOfKeys: 1, lua: RELEASE });
    const r = redis as unknown as Record<string, ScriptFn>;
    this.fns = {
      claim: r.ftgqlIdemClaim!.bind(redis),
      complete: r.ftgqlIdemComplete!.bind(redis),
      release: r.ftgqlIdemRelease!.bind(redis),
    };
  }

  private k(key: string): string {
    return `${this.prefix}idem:${key}`;
  }

  async get(key: string): Promise<IdempotencyRecord<T> | undefined> {
    const v = await guarded(() => this.redis.get(this.k(key)));
    return v ? (JSON.parse(v) as IdempotencyRecord<T>) : undefined;
  }

  async claim(key: string, req: ClaimRequest): Promise<ClaimResult<T>> {
    const [claimed, rest] = (await guarded(() =>
      this.fns.claim(this.k(key), req.fingerprint, req.owner, Math.max(1, Math.round(req.leaseMs)), Math.max(1, Math.round(req.ttlMs))),
    )) as [number, number | string];
    if (claimed === 1) return { claimed: true, attempted: rest === 1 };
    return { claimed: false, record: JSON.parse(String(rest)) as IdempotencyRecord<T> };
  }

  async complete(key: string, owner: string, result: T): Promise<void> {
    await afterCreate(() => this.fns.complete(this.k(key), owner, JSON.stringify(result)));
  }

  async release(key: string, owner: string, outcome: 'forget' | 'unknown'): Promise<void> {
    await afterCreate(() => this.fns.release(this.k(key), owner, outcome));
  }

  /** The connection belongs to the cluster, which closes it. */
  async close(): Promise<void> {}
}
