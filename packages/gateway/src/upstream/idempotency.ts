/**
 * The gateway's own idempotency keys for createFineTuningJob (see UpstreamApi.createJob), so that a repeated
 * create returns the first job even when the upstream ignores `Idempotency-Key`.
 *
 * A record is keyed by a hash of (credential, client key), never by either in clear, and holds a fingerprint of
 * the request (a hash of its canonical JSON body) and, once done, the result. States:
 *   pending  a request holds the key until `leaseUntil` (then another may take it over: its holder died);
 *   done     `result` is final; repeats get it back;
 *   unknown  a create was sent but its outcome was lost (dropped connection, timeout): the next holder first
 *            looks for the job upstream before creating again.
 *
 * The interface is async and small so that a shared implementation (Redis: SET NX PX for claim, a Lua
 * compare-and-set for complete/release) can replace the in-memory one behind it.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

export interface IdempotencyRecord<T = unknown> {
  state: 'pending' | 'done' | 'unknown';
  /** Hash of the request the key was first used with. */
  fingerprint: string;
  /** Holder of a pending record. */
  owner?: string;
  /** A pending record may be taken over after this time (ms since the epoch). */
  leaseUntil?: number;
  /** The result of a done record. */
  result?: T;
  /** When the key was first claimed (ms since the epoch). */
  createdAt: number;
}

export type ClaimResult<T = unknown> =
  /** The caller holds the key now. `attempted`: an earlier holder may have sent the create (look for it first). */
  | { claimed: true; attempted: boolean }
  /** Someone else holds it, it is done, or it was used with another fingerprint. */
  | { claimed: false; record: IdempotencyRecord<T> };

export interface ClaimRequest {
  fingerprint: string;
  /** A unique id of the claiming call. */
  owner: string;
  /** How long the claim holds before another call may take it over. */
  leaseMs: number;
  /** How long the key is kept (from its first claim). */
  ttlMs: number;
}

export interface IdempotencyStore<T = unknown> {
  get(key: string): Promise<IdempotencyRecord<T> | undefined>;
  /**
   * Takes `key` for `owner` when it is free, when its lease expired, or when its outcome is unknown and the
   * fingerprint is the same (a retry). Otherwise returns the record as it is. Atomic.
   */
  claim(key: string, req: ClaimRequest): Promise<ClaimResult<T>>;
  /** Stores the result (state done) if `owner` still holds the key. */
  complete(key: string, owner: string, result: T): Promise<void>;
  /**
   * Gives the key up: `forget` deletes it (the upstream certainly did nothing), `unknown` keeps it (with its
   * fingerprint) for the next attempt to reconcile. Only if `owner` still holds it.
   */
  release(key: string, owner: string, outcome: 'forget' | 'unknown'): Promise<void>;
  close(): Promise<void>;
}

/** Store key of a client's idempotency key: a hash of the credential and the key. */
export function idempotencyStoreKey(credential: string, key: string): string {
  return createHash('sha256').update('idempotency\u0000').update(credential).update('\u0000').update(key).digest('base64url');
}

/** JSON with object keys sorted: two encodings of one request hash the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v as object).sort()) out[k] = (v as Record<string, unknown>)[k];
      return out;
    }
    return v;
  });
}

export function fingerprintOf(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('base64url');
}

interface Entry<T> extends IdempotencyRecord<T> {
  /** Expiry of the whole record (createdAt + ttl). */
  expiresAt: number;
}

/**
 * One process's keys, in a bounded LRU (default 50,000 keys; the oldest are dropped first beyond that) with
 * each record's TTL checked on read. Not shared between processes, and gone with the process.
 *
 * Because it forgets (a restart, a crash, an evicted key), a key it does not know may still have been used: a
 * process killed mid-create leaves a job upstream that this store never heard of. So a first claim here is
 * `attempted: true`, and the holder looks for the job by its metadata tag before creating (one list call per new
 * key), which makes a repeat after a crash find the first job even when the upstream ignores Idempotency-Key.
 * The Redis store (idempotency-redis.ts) survives restarts and skips that lookup.
 */
export class InMemoryIdempotencyStore<T = unknown> implements IdempotencyStore<T> {
  private readonly entries: LRUCache<string, Entry<T>>;

  constructor(opts: { maxKeys?: number; now?: () => number } = {}) {
    this.entries = new LRUCache<string, Entry<T>>({ max: opts.maxKeys ?? 50_000 });
    if (opts.now) this.now = opts.now;
  }

  private now: () => number = () => Date.now();

  private live(key: string): Entry<T> | undefined {
    const e = this.entries.get(key);
    if (e && e.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  async get(key: string): Promise<IdempotencyRecord<T> | undefined> {
    const e = this.live(key);
    return e ? strip(e) : undefined;
  }

  async claim(key: string, req: ClaimRequest): Promise<ClaimResult<T>> {
    const now = this.now();
    const e = this.live(key);
    if (!e) {
      this.entries.set(key, {
        state: 'pending',
        fingerprint: req.fingerprint,
        owner: req.owner,
        leaseUntil: now + req.leaseMs,
        createdAt: now,
        expiresAt: now + req.ttlMs,
      });
      // Unknown here is not unknown everywhere: see the class comment.
      return { claimed: true, attempted: true };
    }
    const takeover = e.fingerprint === req.fingerprint && (e.state === 'unknown' || (e.state === 'pending' && (e.leaseUntil ?? 0) <= now));
    if (!takeover) return { claimed: false, record: strip(e) };
    // An expired lease: its holder may have sent the create before dying, so the next one looks first.
    e.state = 'pending';
    e.owner = req.owner;
    e.leaseUntil = now + req.leaseMs;
    return { claimed: true, attempted: true };
  }

  async complete(key: string, owner: string, result: T): Promise<void> {
    const e = this.live(key);
    if (!e || e.owner !== owner) return;
    e.state = 'done';
    e.result = result;
    e.owner = undefined;
    e.leaseUntil = undefined;
  }

  async release(key: string, owner: string, outcome: 'forget' | 'unknown'): Promise<void> {
    const e = this.live(key);
    if (!e || e.owner !== owner || e.state !== 'pending') return;
    if (outcome === 'forget') {
      this.entries.delete(key);
      return;
    }
    e.state = 'unknown';
    e.owner = undefined;
    e.leaseUntil = undefined;
  }

  async close(): Promise<void> {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}

function strip<T>(e: Entry<T>): IdempotencyRecord<T> {
  const { expiresAt: _expiresAt, ...record } = e;
  return { ...record };
}
