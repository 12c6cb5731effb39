/**
 * The upstream client: the official `openai` SDK, one client per credential (a small LRU), sharing one
 * keep-alive connection pool. Each call has a time budget; reads retry (dropped connections, 5xx, 429s with a
 * short Retry-After) with full-jitter backoff; creates and state changes are never sent twice blindly (see
 * retry.ts). createJob with an idempotency key is idempotent here, whatever the upstream does with the key
 * (see createJob and idempotency.ts).
 *
 * Finished jobs (succeeded, failed, cancelled) never change, so they are cached per credential in a
 * bounded LRU, with their events pages, checkpoints pages and training metrics.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import OpenAI, { toStreamingFile } from 'openai';
import type { StreamingFileInput } from 'openai/core/uploads';
import { Agent } from 'undici';
import type { Logger } from '../log.js';
import { credentialHash } from '../util/credential-hash.js';
import { NodeHeaders } from '../util/node-headers.js';
import { ConflictError, mapUpstreamError, type MapOptions, UnauthenticatedError, ValidationError } from './errors.js';
import { fingerprintOf, type IdempotencyStore, idempotencyStoreKey, InMemoryIdempotencyStore } from './idempotency.js';
import { classifyFailure, DEFAULT_RETRY_POLICY, nextDelay, type RetryPolicy, sleep } from './retry.js';
import { isTerminal, type Page, type RawCheckpoint, type RawEvent, type RawFile, type RawJob } from './types.js';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** The upstream calls one request may make (src/resolvers/call-budget.ts): `spend` counts one, or throws past the limit. */
export interface CallBudget {
  spend(): void;
}

export interface UpstreamOptions {
  baseURL: string;
  /** A fetch to use instead of the pooled one (the embedded service is called in-process this way). */
  fetch?: FetchLike;
  /** Budget of one call, all attempts included (UPSTREAM_TIMEOUT_MS). Default 30 s. */
  timeoutMs?: number;
  /** Retries of reads, 429s and connections never made (UPSTREAM_READ_RETRIES). Default 3. */
  readRetries?: number;
  /** Longest Retry-After waited for (UPSTREAM_RETRY_AFTER_MAX_MS). Default 5 s. */
  retryAfterMaxMs?: number;
  /** Backoff base and ceiling in ms (defaults 100 and 2000). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  connections?: number;
  /** Wraps the fetch every call goes through (metrics: src/http/metrics.ts counts calls by route and status). */
  wrapFetch?: (fetch: FetchLike) => FetchLike;
  /** Idempotency keys of createJob. Default: an in-memory store (one process). */
  idempotencyStore?: IdempotencyStore<RawJob>;
  /** How long idempotency keys are kept (IDEMPOTENCY_TTL_MS). Default 24 h. */
  idempotencyTtlMs?: number;
  /**
   * Tag idempotent creates with metadata `gateway_idempotency_key` (a hash), so that a create whose response was
   * lost can be found upstream instead of being sent again. Default true (IDEMPOTENCY_METADATA_TAG=0 turns it off).
   */
  idempotencyTag?: boolean;
  /** Finished jobs kept (per all credentials); each also holds a few pages. 0 disables. */
  finishedJobCacheSize?: number;
  /** Upper bound of the finished-job cache in (JSON) bytes. Default 64 MiB. */
  finishedCacheMaxBytes?: number;
  logger?: Logger;
}

/** Sent with the lean reads (the SDK sends its own on writes). */
const USER_AGENT = 'finetune-graphql';

/**
 * A query string as the SDK writes it: null/undefined/empty values left out, objects as `key[sub]=value`
 * (`metadata[team]=nlp`, the form OpenAI documents for the metadata filter).
 */
export function queryString(query: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    if (typeof value === 'object') {
      for (const [sub, v] of Object.entries(value as Record<string, unknown>)) {
        if (v !== undefined && v !== null) parts.push(`${encodeURIComponent(key)}%5B${encodeURIComponent(sub)}%5D=${encodeURIComponent(String(v))}`);
      }
    } else {
      parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`);
    }
  }
  return parts.join('&');
}

/** Metadata key of the tag of idempotent creates (see createJob). */
export const IDEMPOTENCY_TAG_KEY = 'gateway_idempotency_key';
/** OpenAI allows 16 metadata pairs. */
const MAX_METADATA_KEYS = 16;

const CREATE_MAP: MapOptions = { fieldPrefix: 'input', defaultField: 'input' };

/** Per-attempt request options for the SDK: what is left of the call's budget, and no SDK retries. */
type CallOptions = { timeout: number; maxRetries: 0 };
type Call<T> = (client: OpenAI, options: CallOptions) => Promise<T>;

function headersObject(h: RequestInit['headers']): Record<string, string> {
  if (!h) return {};
  if (h instanceof Headers) {
    const out: Record<string, string> = {};
    h.forEach((v, k) => (out[k] = v));
    return out;
  }
  if (Array.isArray(h)) return Object.fromEntries(h);
  return h as Record<string, string>;
}

/**
 * A fetch for the SDK over undici's `request` on a keep-alive pool: several times cheaper per call than
 * WHATWG fetch, which matters because every GraphQL request on a live job makes at least one upstream call.
 * Strings and bytes are sent as they are. Other bodies are streamed, never buffered: a ReadableStream or async
 * iterable (the SDK's streamed multipart uploads, see uploadFile) goes to undici as it is, chunk by chunk as the
 * upstream takes them; FormData and Blobs are encoded lazily by the platform's Response (same realm as the SDK's
 * FormData), which also gives the multipart Content-Type with its boundary.
 */
function pooledFetch(agent: Agent): FetchLike {
  return async (input, init = {}) => {
    let body = init.body as BodyInit | AsyncIterable<Uint8Array> | null | undefined;
    const headers = headersObject(init.headers);
    if (body != null && typeof body !== 'string' && !(body instanceof Uint8Array) && !isStreamBody(body)) {
      const encoded = new Response(body as BodyInit);
      const type = encoded.headers.get('content-type');
      if (type) {
        for (const k of Object.keys(headers)) if (k.toLowerCase() === 'content-type') delete headers[k];
        headers['content-type'] = type;
      }
      body = encoded.body;
    }
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    // Split origin and path without a URL parse (the SDK builds absolute http(s) URLs).
    const slash = url.indexOf('/', url.indexOf('//') + 2);
    const res = await agent.request({
      origin: slash === -1 ? url : url.slice(0, slash),
      path: slash === -1 ? '/' : url.slice(slash),
      method: (init.method ?? 'GET') as 'GET',
      headers,
      // undici reads (async) iterables as they are (documented for Dispatcher.request; its types say Readable).
      body: body as string | Uint8Array | Readable | undefined,
      signal: init.signal ?? undefined,
    });
    const bytes = res.statusCode === 204 || res.statusCode === 304 ? null : Buffer.from(await res.body.arrayBuffer());
    return new BufferedResponse(res.statusCode, res.headers, bytes, url) as unknown as Response;
  };
}

/** A body undici can read chunk by chunk as it is (a web ReadableStream or an async iterable of bytes). */
function isStreamBody(body: object): body is AsyncIterable<Uint8Array> {
  return Symbol.asyncIterator in body && !(body instanceof Blob) && !(body instanceof FormData);
}

/**
 * The part of the Fetch `Response` the SDK reads (status, headers, json/text/arrayBuffer, body), over a fully
 * buffered body. Creating a WHATWG Response (and its ReadableStream) per upstream call is a measurable cost.
 */
class BufferedResponse {
  readonly ok: boolean;
  readonly headers: NodeHeaders;
  readonly statusText = '';
  readonly redirected = false;
  readonly type = 'basic';
  bodyUsed = false;
  constructor(
    readonly status: number,
    rawHeaders: Record<string, string | string[] | undefined>,
    private readonly bytes: Buffer | null,
    readonly url: string,
  ) {
    this.ok = status >= 200 && status < 300;
    this.headers = new NodeHeaders(rawHeaders);
  }
  get body(): ReadableStream<Uint8Array> | null {
    if (!this.bytes) return null;
    const bytes = this.bytes;
    return new ReadableStream({
      start(c) {
        c.enqueue(new Uint8Array(bytes));
        c.close();
      },
    });
  }
  async text(): Promise<string> {
    this.bodyUsed = true;
    return this.bytes ? this.bytes.toString('utf8') : '';
  }
  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
  async arrayBuffer(): Promise<ArrayBuffer> {
    this.bodyUsed = true;
    const b = this.bytes ?? Buffer.alloc(0);
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
  }
  async blob(): Promise<Blob> {
    return new Blob([await this.arrayBuffer()]);
  }
  clone(): BufferedResponse {
    return new BufferedResponse(this.status, Object.fromEntries(this.headers.entries()), this.bytes, this.url);
  }
}

export class Upstream {
  readonly baseURL: string;
  private readonly agent?: Agent;
  private readonly fetch: FetchLike;

  private readonly clients = new LRUCache<string, UpstreamApi>({ max: 256 });
  /** Finished-job data of every credential; keys start with the credential's hash. */
  readonly finished?: LRUCache<string, object>;
  readonly policy: RetryPolicy;
  readonly idempotency: IdempotencyStore<RawJob>;
  /** Idempotent creates running in this process, by store key: repeats wait for them. */
  readonly creating = new Map<string, { fingerprint: string; result: Promise<RawJob> }>();

  constructor(private readonly opts: UpstreamOptions) {
    this.baseURL = opts.baseURL.replace(/\/+$/, '');
    this.policy = {
      timeoutMs: opts.timeoutMs ?? DEFAULT_RETRY_POLICY.timeoutMs,
      maxRetries: opts.readRetries ?? DEFAULT_RETRY_POLICY.maxRetries,
      retryAfterMaxMs: opts.retryAfterMaxMs ?? DEFAULT_RETRY_POLICY.retryAfterMaxMs,
      backoffBaseMs: opts.backoffBaseMs ?? DEFAULT_RETRY_POLICY.backoffBaseMs,
      backoffMaxMs: opts.backoffMaxMs ?? DEFAULT_RETRY_POLICY.backoffMaxMs,
    };
    this.idempotency = opts.idempotencyStore ?? new InMemoryIdempotencyStore<RawJob>();
    if (opts.fetch) {
      this.fetch = opts.fetch;
    } else {
      const agent = new Agent({
        connections: opts.connections ?? 64,
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 120_000,
      });
      this.agent = agent;
      this.fetch = pooledFetch(agent);
    }
    if (opts.wrapFetch) this.fetch = opts.wrapFetch(this.fetch);
    const size = opts.finishedJobCacheSize ?? 1000;
    if (size > 0) {
      // Bounded both in entries and in (approximate JSON) bytes: events pages of long jobs can be large.
      this.finished = new LRUCache<string, object>({
        max: size * 8,
        maxSize: opts.finishedCacheMaxBytes ?? 64 * 1024 * 1024,
        sizeCalculation: (value) => Math.max(1, JSON.stringify(value).length),
      });
    }
  }

  /** The API for one credential. Clients are cached per credential; nothing is shared across credentials. */
  forCredential(credential: string): UpstreamApi {
    let api = this.clients.get(credential);
    if (!api) {
      api = new UpstreamApi(this, credential, this.opts, this.fetch);
      this.clients.set(credential, api);
    }
    return api;
  }

  /**
   * Closes the connection pool, letting calls in flight end for up to `graceMs` before aborting them, and the
   * idempotency store.
   */
  async close(graceMs = 2_000): Promise<void> {
    this.clients.clear();
    this.finished?.clear();
    if (this.agent) {
      let timer: NodeJS.Timeout | undefined;
      const graceful = await Promise.race([this.agent.close().then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), graceMs)))]);
      clearTimeout(timer);
      if (!graceful) await this.agent.destroy().catch(() => undefined);
    }
    await this.idempotency.close();
  }
}

export class UpstreamApi {
  readonly client: OpenAI | null;
  /** A hash of the credential: the partition key of caches (the credential itself is never stored as a key). */
  readonly credentialId: string;
  private readonly secrets: string[];
  private readonly policy: RetryPolicy;
  /**
   * Event and checkpoint ids seen in pages → their job id. The upstream has no endpoint to fetch one event or
   * checkpoint by id, so `node(id)` finds them through the job they were seen with.
   */
  private readonly childIndex = new LRUCache<string, string>({ max: 5_000 });
  /** Headers of the lean reads (see get). */
  private readonly readHeaders: Record<string, string>;
  /** The logger of the request this view serves (see forRequest). */
  private readonly requestLog?: () => Logger | undefined;
  /** The upstream calls the request this view serves may still make (see forRequest). */
  private readonly callBudget?: CallBudget;
  /** The per-credential API itself, also when seen through a request's view (a stable key for caches). */
  readonly root: UpstreamApi = this;

  constructor(
    private readonly upstream: Upstream,
    /** Never logged nor returned; used for the SDK and for idempotency store keys (hashed). */
    private readonly credential: string,
    private readonly opts: UpstreamOptions,
    private readonly fetchImpl: FetchLike,
  ) {
    this.readHeaders = { authorization: `Bearer ${credential}`, accept: 'application/json', 'user-agent': USER_AGENT };
    this.credentialId = credentialHash(credential);
    this.policy = upstream.policy;
    let host = '';
    try {
      host = new URL(upstream.baseURL).host;
    } catch {
      /* the base URL was validated by config */
    }
    this.secrets = [credential, upstream.baseURL, host].filter((s) => s.length >= 4);
    // The SDK refuses an empty key; such a request is answered UNAUTHENTICATED without an upstream call.
    this.client = credential
      ? new OpenAI({
          apiKey: credential,
          baseURL: upstream.baseURL,
          fetch: fetchImpl as never,
          maxRetries: 0,
          timeout: this.policy.timeoutMs,
          logLevel: 'off',
        })
      : null;
  }

  /**
   * This API as seen by one request: the same client, caches and pool, with the request's logger (its lines carry
   * the request id) and its call budget: each call (read or write, its retries included) spends one before anything
   * is sent, and `spend` throws once the request has made its allowed number; cache hits spend nothing. A prototype
   * view, so nothing but the logger and the budget is per request.
   */
  forRequest(log: () => Logger | undefined, callBudget?: CallBudget): UpstreamApi {
    const view = Object.create(this) as { requestLog?: () => Logger | undefined; callBudget?: CallBudget };
    view.requestLog = log;
    view.callBudget = callBudget;
    return view as unknown as UpstreamApi;
  }

  private get log(): Logger | undefined {
    return this.requestLog?.() ?? this.opts.logger;
  }

  private sdk(): OpenAI {
    if (!this.client) throw new UnauthenticatedError('No API key is configured for the fine-tuning API.');
    return this.client;
  }

  private map(err: unknown, opts: MapOptions = {}): Error {
    return mapUpstreamError(err, { ...opts, secrets: this.secrets });
  }

  /**
   * One logical call: attempts within the call's time budget, retried as retry.ts decides for `mode` (reads retry
   * anything transient; writes only what certainly did not reach the upstream: 429s, refused connections).
   */
  private async call<T>(fn: Call<T>, mode: 'read' | 'write', opts: MapOptions = {}, deadline = Date.now() + this.policy.timeoutMs): Promise<T> {
    const client = this.sdk();
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - Date.now();
      if (remaining < 1) throw this.map(new OpenAI.APIConnectionTimeoutError(), opts);
      try {
        return await fn(client, { timeout: remaining, maxRetries: 0 });
      } catch (err) {
        const delay = nextDelay(this.policy, err, mode, attempt, deadline - Date.now());
        if (delay === undefined) throw this.map(err, opts);
        this.log?.debug(
          { attempt: attempt + 1, failure: classifyFailure(err), status: (err as { status?: number }).status, retryInMs: Math.round(delay) },
          'upstream call failed; retrying',
        );
        await sleep(delay);
      }
    }
  }

  private read<T>(fn: Call<T>, opts: MapOptions = {}, deadline?: number): Promise<T> {
    const refused = this.spendCall();
    return refused ?? this.call(fn, 'read', opts, deadline);
  }

  private write<T>(fn: Call<T>, opts: MapOptions = {}): Promise<T> {
    const refused = this.spendCall();
    return refused ?? this.call(fn, 'write', opts);
  }

  /** Spends one call of the request's budget; a rejection once it is used up (no extra promise on the hot path). */
  private spendCall(): Promise<never> | undefined {
    if (!this.callBudget) return undefined;
    try {
      this.callBudget.spend();
      return undefined;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * A read: GET of a JSON resource on the same pool as the SDK, with what the SDK does for one (bearer auth, the
   * attempt's timeout, non-2xx answers and failed connections as the SDK's own error classes through
   * `APIError.generate`, so error mapping and retries are exactly those of the SDK's calls) and without its
   * per-call machinery: header merging, request-log formatting that runs even when logging is off, an
   * AbortController and timer, response wrappers. That machinery costs about twice a bare request on the pool
   * (bench/upstream-read.ts), and every GraphQL request on a live job makes at least one read. Writes, uploads
   * and file contents go through the SDK.
   */
  private async get<T>(path: string, query: Record<string, unknown> | undefined, o: CallOptions): Promise<T> {
    const qs = query ? queryString(query) : '';
    const url = `${this.upstream.baseURL}${path}${qs ? `?${qs}` : ''}`;
    let status: number;
    let headers: Headers;
    let text: string;
    // The attempt's timeout, as the SDK sets it (undici's own headers/body timeouts are too coarse: ~1 s ticks).
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), o.timeout);
    try {
      const res = await this.fetchImpl(url, { method: 'GET', headers: this.readHeaders, signal: controller.signal });
      status = res.status;
      headers = res.headers;
      text = await res.text();
    } catch (err) {
      // As the SDK tells them apart (client.mjs makeRequest): aborts and anything that says it timed out.
      const e = err as { name?: string; cause?: unknown };
      if (e?.name === 'AbortError' || e?.name === 'TimeoutError' || /timed? ?out/i.test(`${String(err)}${e?.cause ? String(e.cause) : ''}`)) {
        throw new OpenAI.APIConnectionTimeoutError();
      }
      throw new OpenAI.APIConnectionError({ message: 'Connection error.', cause: err instanceof Error ? err : undefined });
    } finally {
      clearTimeout(timer);
    }
    if (status < 200 || status >= 300) {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      throw OpenAI.APIError.generate(status, json as object | undefined, json === undefined ? text : undefined, headers);
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      // A 2xx that is not JSON: the answer of something that is not the fine-tuning API.
      throw new OpenAI.APIConnectionError({ message: 'The upstream answered with something other than JSON.', cause: err as Error });
    }
  }

  indexChild(childId: string, jobId: string): void {
    this.childIndex.set(childId, jobId);
  }

  jobIdOfChild(childId: string): string | undefined {
    return this.childIndex.get(childId);
  }

  // ---- finished-job cache --------------------------------------------------------------------------------

  private key(kind: string, id: string) {
    return `${this.credentialId}\u0000${kind}\u0000${id}`;
  }

  cachedJob(id: string): RawJob | undefined {
    return this.upstream.finished?.get(this.key('job', id)) as RawJob | undefined;
  }

  /** Remember a job if it is finished (it will never change). */
  noteJob(job: RawJob): RawJob {
    if (this.upstream.finished && isTerminal(job)) this.upstream.finished.set(this.key('job', job.id), job);
    return job;
  }

  /**
   * `fn`'s result, cached when `job` was already finished when observed (so the data fetched after it is final).
   */
  async finishedOr<T extends object>(job: RawJob, kind: string, fn: () => Promise<T>): Promise<T> {
    const cache = this.upstream.finished;
    if (!cache || !isTerminal(job)) return fn();
    const key = this.key(kind, `${job.id}\u0000`);
    const hit = cache.get(key) as T | undefined;
    if (hit) return hit;
    const value = await fn();
    cache.set(key, value);
    return value;
  }

  // ---- jobs ----------------------------------------------------------------------------------------------

  async retrieveJob(id: string): Promise<RawJob> {
    const hit = this.cachedJob(id);
    if (hit) return hit;
    const job = await this.read((_, o) => this.get<RawJob>(`/fine_tuning/jobs/${encodeURIComponent(id)}`, undefined, o), {
      resource: `fine-tuning job ${id}`,
      defaultField: 'id',
    });
    return this.noteJob(job);
  }

  async listJobs(params: { after?: string | null; limit: number; metadata?: Record<string, string> | null }) {
    const page = await this.read(
      (_, o) => this.get<Page<RawJob>>('/fine_tuning/jobs', { limit: params.limit, after: params.after, metadata: params.metadata }, o),
      { defaultField: 'after' },
    );
    const data = page.data;
    for (const job of data) this.noteJob(job);
    return { data, has_more: page.has_more } satisfies Page<RawJob>;
  }

  async listEvents(jobId: string, params: { after?: string | null; limit: number }): Promise<Page<RawEvent>> {
    const page = await this.read(
      (_, o) => this.get<Page<RawEvent>>(`/fine_tuning/jobs/${encodeURIComponent(jobId)}/events`, { limit: params.limit, after: params.after }, o),
      { resource: `fine-tuning job ${jobId}`, defaultField: 'after' },
    );
    return { data: page.data, has_more: page.has_more };
  }

  async listCheckpoints(jobId: string, params: { after?: string | null; limit: number }): Promise<Page<RawCheckpoint>> {
    const page = await this.read(
      (_, o) => this.get<Page<RawCheckpoint>>(`/fine_tuning/jobs/${encodeURIComponent(jobId)}/checkpoints`, { limit: params.limit, after: params.after }, o),
      { resource: `fine-tuning job ${jobId}`, defaultField: 'after' },
    );
    return { data: page.data, has_more: page.has_more };
  }

  /**
   * Creates a job. Without an idempotency key: sent once (again only after a 429 or a refused connection, which
   * certainly did nothing), so an ambiguous failure (dropped connection, 5xx, timeout) is reported, never doubled.
   *
   * With a key, idempotent on this side whatever the upstream does with `Idempotency-Key` (which is sent too):
   * - the key is claimed in the IdempotencyStore (per credential, 24 h); a repeat gets the first job back (the
   *   job as the create returned it, without an upstream call); the same key with other input is a
   *   ValidationError on `input.idempotencyKey`; concurrent repeats wait for the first and get its outcome;
   * - the job is tagged with metadata `gateway_idempotency_key` (a hash of credential and key), so after an
   *   ambiguous failure the gateway looks the job up (list filtered by that metadata) before sending the create
   *   again: a create whose response was lost is found, not doubled. If the budget runs out first, the key is kept
   *   as `unknown` and the client's next repeat does the lookup. Without room for the tag (16 metadata pairs
   *   already) or with IDEMPOTENCY_METADATA_TAG=0, ambiguous failures are not retried.
   * Remaining window: a create that times out here and lands upstream only after the next repeat's lookup.
   */
  async createJob(body: Record<string, unknown>, idempotencyKey?: string | null): Promise<RawJob> {
    if (!idempotencyKey) {
      const job = await this.write((c, o) => c.fineTuning.jobs.create(body as never, o), CREATE_MAP);
      return this.noteJob(job as unknown as RawJob);
    }
    return this.noteJob(await this.idempotentCreate(body, idempotencyKey));
  }

  private async idempotentCreate(body: Record<string, unknown>, key: string): Promise<RawJob> {
    const up = this.upstream;
    const storeKey = idempotencyStoreKey(this.credential, key);
    const fingerprint = fingerprintOf(body);
    const deadline = Date.now() + this.policy.timeoutMs;
    const reused = () =>
      new ValidationError(
        'This idempotencyKey was already used with different input; use a new key for a different job (keys are kept 24 h).',
        'input.idempotencyKey',
      );
    for (let poll = 0; ; poll++) {
      const local = up.creating.get(storeKey);
      if (local) {
        if (local.fingerprint !== fingerprint) throw reused();
        return local.result; // the first request's outcome, job or error
      }
      const owner = randomUUID();
      const claim = await up.idempotency.claim(storeKey, {
        fingerprint,
        owner,
        leaseMs: this.policy.timeoutMs + 5_000,
        ttlMs: this.opts.idempotencyTtlMs ?? 24 * 60 * 60 * 1000,
      });
      if (claim.claimed) {
        const result = this.createClaimed(storeKey, owner, body, key, claim.attempted, deadline);
        up.creating.set(storeKey, { fingerprint, result });
        try {
          return await result;
        } finally {
          if (up.creating.get(storeKey)?.result === result) up.creating.delete(storeKey);
        }
      }
      const record = claim.record;
      if (record.fingerprint !== fingerprint) throw reused();
      if (record.state === 'done' && record.result) return record.result;
      // Held by a request that has not registered here yet, or by another process: wait for it.
      const wait = Math.min(500, 10 * 2 ** poll);
      if (Date.now() + wait >= deadline) {
        throw new ConflictError('A create with this idempotencyKey is still in progress; repeat it in a moment to get its job.');
      }
      await sleep(wait);
    }
  }

  /** The create itself, for the holder of the key; see createJob. */
  private async createClaimed(
    storeKey: string,
    owner: string,
    body: Record<string, unknown>,
    key: string,
    attempted: boolean,
    deadline: number,
  ): Promise<RawJob> {
    const store = this.upstream.idempotency;
    const { sendBody, tag } = this.tagged(body, storeKey);
    /** A create may have reached the upstream (an earlier holder's, or one of ours that failed ambiguously). */
    let mayExist = attempted;
    let done = false;
    try {
      for (let attempt = 0; ; attempt++) {
        if (mayExist && tag) {
          const found = await this.findTagged(tag, deadline);
          if (found) {
            await store.complete(storeKey, owner, found);
            done = true;
            return found;
          }
        }
        const remaining = deadline - Date.now();
        if (remaining < 1) throw this.map(new OpenAI.APIConnectionTimeoutError(), CREATE_MAP);
        try {
          const job = (await this.sdk().fineTuning.jobs.create(sendBody as never, {
            timeout: remaining,
            maxRetries: 0,
            // The OpenAI client does not send the SDK's idempotencyKey option, so the header is set here.
            headers: { 'Idempotency-Key': key },
          })) as unknown as RawJob;
          await store.complete(storeKey, owner, job);
          done = true;
          return job;
        } catch (err) {
          const kind = classifyFailure(err);
          if (kind === 'ambiguous' || kind === 'timeout') mayExist = true;
          // Ambiguous failures are retried only when the lookup above can tell whether the job exists.
          const delay = nextDelay(this.policy, err, tag ? 'read' : 'write', attempt, deadline - Date.now());
          if (delay === undefined) throw this.map(err, CREATE_MAP);
          this.log?.warn({ attempt: attempt + 1, failure: kind, retryInMs: Math.round(delay) }, 'idempotent create failed; retrying');
          await sleep(delay);
        }
      }
    } finally {
      if (!done) await store.release(storeKey, owner, mayExist ? 'unknown' : 'forget').catch(() => undefined);
    }
  }

  /** The body with the idempotency tag in its metadata, when there is room for it (and tagging is on). */
  private tagged(body: Record<string, unknown>, storeKey: string): { sendBody: Record<string, unknown>; tag?: string } {
    if (this.opts.idempotencyTag === false) return { sendBody: body };
    const metadata = (body.metadata ?? {}) as Record<string, string>;
    if (typeof metadata !== 'object' || IDEMPOTENCY_TAG_KEY in metadata || Object.keys(metadata).length >= MAX_METADATA_KEYS) {
      return { sendBody: body };
    }
    const tag = createHash('sha256').update('tag\u0000').update(storeKey).digest('base64url').slice(0, 32);
    return { sendBody: { ...body, metadata: { ...metadata, [IDEMPOTENCY_TAG_KEY]: tag } }, tag };
  }

  /** The job created with this tag, if the upstream has one (a read, retried, within the create's budget). */
  private async findTagged(tag: string, deadline: number): Promise<RawJob | undefined> {
    const page = await this.read(
      (_, o) => this.get<Page<RawJob>>('/fine_tuning/jobs', { limit: 10, metadata: { [IDEMPOTENCY_TAG_KEY]: tag } }, o),
      CREATE_MAP,
      deadline,
    );
    // A job older than the keys' lifetime belongs to an expired key: a repeat after it is a new create.
    const since = Date.now() / 1000 - (this.opts.idempotencyTtlMs ?? 24 * 60 * 60 * 1000) / 1000;
    return page.data.find((j) => j.metadata?.[IDEMPOTENCY_TAG_KEY] === tag && (j.created_at ?? 0) >= since);
  }

  async changeJob(action: 'cancel' | 'pause' | 'resume', id: string): Promise<RawJob> {
    const job = await this.write((c, o) => c.fineTuning.jobs[action](id, o), {
      resource: `fine-tuning job ${id}`,
      defaultField: 'id',
    });
    return this.noteJob(job as unknown as RawJob);
  }

  // ---- files ---------------------------------------------------------------------------------------------

  async retrieveFile(id: string): Promise<RawFile> {
    return this.read((_, o) => this.get<RawFile>(`/files/${encodeURIComponent(id)}`, undefined, o), {
      resource: `file ${id}`,
      defaultField: 'id',
    });
  }

  async listFiles(params: { after?: string | null; limit: number; purpose?: string | null }): Promise<Page<RawFile>> {
    const page = await this.read((_, o) => this.get<Page<RawFile>>('/files', { limit: params.limit, after: params.after, purpose: params.purpose }, o), {
      defaultField: 'after',
    });
    return { data: page.data, has_more: page.has_more };
  }

  /**
   * Uploads a file without copying it: the multipart part arrives as the server's File ponyfill, whose bytes are
   * the chunks the multipart parser read, and they are streamed from there to the upstream (the SDK's
   * toStreamingFile encodes the multipart body lazily, sent chunked), so an upload costs its size once in memory.
   * Each attempt reads a fresh stream of the same chunks (a write is retried after a 429 or a refused connection).
   */
  async uploadFile(file: File, purpose: string): Promise<RawFile> {
    const name = file.name || 'upload';
    const type = file.type || 'application/octet-stream';
    return (await this.write(
      (c, o) => c.files.create({ file: toStreamingFile(file.stream() as StreamingFileInput, name, { type }), purpose: purpose as never }, o),
      { defaultField: 'file' },
    )) as unknown as RawFile;
  }

  async deleteFile(id: string): Promise<{ id: string; deleted: boolean }> {
    return (await this.write((c, o) => c.files.delete(id, o), { resource: `file ${id}`, defaultField: 'id' })) as {
      id: string;
      deleted: boolean;
    };
  }

  async fileContent(id: string): Promise<string> {
    return this.read(
      async (c, o) => {
        const res = await c.files.content(id, o);
        return res.text();
      },
      { resource: `file ${id}`, defaultField: 'id' },
    );
  }
}
