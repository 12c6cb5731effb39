/**
 * The upstream client: the official `openai` SDK, one client per credential (a small LRU), sharing one
 * keep-alive connection pool. Reads retry (connection failures, timeouts, 5xx, short 429s) with backoff
 * and jitter; creates and state changes are never retried blindly (only with a caller's idempotency key).
 *
 * Finished jobs (succeeded, failed, cancelled) never change, so they are cached per credential in a
 * bounded LRU, with their events pages, checkpoints pages and training metrics.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import OpenAI, { toFile } from 'openai';
import { Agent } from 'undici';
import type { Logger } from '../log.js';
import { isRetryable, mapUpstreamError, type MapOptions, retryAfterMs, UnauthenticatedError } from './errors.js';
import { isTerminal, type Page, type RawCheckpoint, type RawEvent, type RawFile, type RawJob } from './types.js';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface UpstreamOptions {
  baseURL: string;
  /** A fetch to use instead of the pooled one (the embedded service is called in-process this way). */
  fetch?: FetchLike;
  timeoutMs?: number;
  readRetries?: number;
  connections?: number;
  /** Finished jobs kept (per all credentials); each also holds a few pages. 0 disables. */
  finishedJobCacheSize?: number;
  /** Upper bound of the finished-job cache in (JSON) bytes. Default 64 MiB. */
  finishedCacheMaxBytes?: number;
  logger?: Logger;
}

/** Longest Retry-After a read waits for by itself before reporting RATE_LIMITED to the client. */
const MAX_RETRY_AFTER_WAIT_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
 * Bodies other than strings/bytes (multipart uploads) are encoded by the platform's Response first.
 */
function pooledFetch(agent: Agent): FetchLike {
  return async (input, init = {}) => {
    let body = init.body as BodyInit | null | undefined;
    const headers = headersObject(init.headers);
    if (body != null && typeof body !== 'string' && !(body instanceof Uint8Array)) {
      // FormData (uploads), Blob, streams: serialized by the platform's own Response (same realm as the SDK's FormData).
      const encoded = new Response(body);
      const type = encoded.headers.get('content-type');
      if (type) {
        for (const k of Object.keys(headers)) if (k.toLowerCase() === 'content-type') delete headers[k];
        headers['content-type'] = type;
      }
      body = Buffer.from(await encoded.arrayBuffer());
    }
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    // Split origin and path without a URL parse (the SDK builds absolute http(s) URLs).
    const slash = url.indexOf('/', url.indexOf('//') + 2);
    const res = await agent.request({
      origin: slash === -1 ? url : url.slice(0, slash),
      path: slash === -1 ? '/' : url.slice(slash),
      method: (init.method ?? 'GET') as 'GET',
      headers,
      body: body as string | Uint8Array | undefined,
      signal: init.signal ?? undefined,
    });
    const bytes = res.statusCode === 204 || res.statusCode === 304 ? null : Buffer.from(await res.body.arrayBuffer());
    return new BufferedResponse(res.statusCode, res.headers, bytes, url) as unknown as Response;
  };
}

/** Read-only headers over undici's header object (lower-case names). */
class BufferedHeaders {
  constructor(private readonly raw: Record<string, string | string[] | undefined>) {}
  get(name: string): string | null {
    const v = this.raw[name.toLowerCase()];
    return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
  }
  has(name: string): boolean {
    return this.raw[name.toLowerCase()] !== undefined;
  }
  forEach(fn: (value: string, key: string) => void): void {
    for (const k of Object.keys(this.raw)) if (this.raw[k] !== undefined) fn(this.get(k)!, k);
  }
  *entries(): IterableIterator<[string, string]> {
    for (const k of Object.keys(this.raw)) if (this.raw[k] !== undefined) yield [k, this.get(k)!];
  }
  *keys(): IterableIterator<string> {
    for (const [k] of this.entries()) yield k;
  }
  *values(): IterableIterator<string> {
    for (const [, v] of this.entries()) yield v;
  }
  [Symbol.iterator]() {
    return this.entries();
  }
}

/**
 * The part of the Fetch `Response` the SDK reads (status, headers, json/text/arrayBuffer, body), over a fully
 * buffered body. Creating a WHATWG Response (and its ReadableStream) per upstream call is a measurable cost.
 */
class BufferedResponse {
  readonly ok: boolean;
  readonly headers: BufferedHeaders;
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
    this.headers = new BufferedHeaders(rawHeaders);
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

  constructor(private readonly opts: UpstreamOptions) {
    this.baseURL = opts.baseURL.replace(/\/+$/, '');
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
    const size = opts.finishedJobCacheSize ?? 1000;
    if (size > 0) {
      // Bounded both in entries and in (approximate JSON) bytes: events pages of long jobs can be large.
      this.finished = new LRUCache<string, object>({
        max: size * 8,
        maxSize: (opts.finishedCacheMaxBytes ?? 64 * 1024 * 1024),
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

  async close(): Promise<void> {
    this.clients.clear();
    this.finished?.clear();
    await this.agent?.close();
  }
}

export class UpstreamApi {
  readonly client: OpenAI | null;
  /** A hash of the credential: the partition key of caches (the credential itself is never stored as a key). */
  readonly credentialId: string;
  private readonly secrets: string[];
  private readonly readRetries: number;
  /**
   * Event and checkpoint ids seen in pages → their job id. The upstream has no endpoint to fetch one event or
   * checkpoint by id, so `node(id)` finds them through the job they were seen with.
   */
  private readonly childIndex = new LRUCache<string, string>({ max: 5_000 });

  constructor(
    private readonly upstream: Upstream,
    credential: string,
    opts: UpstreamOptions,
    fetchImpl: FetchLike,
  ) {
    this.credentialId = createHash('sha256').update(credential).digest('base64url').slice(0, 22);
    this.readRetries = opts.readRetries ?? 2;
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
          timeout: opts.timeoutMs ?? 30_000,
          logLevel: 'off',
        })
      : null;
  }

  private sdk(): OpenAI {
    if (!this.client) throw new UnauthenticatedError('No API key is configured for the fine-tuning API.');
    return this.client;
  }

  private map(err: unknown, opts: MapOptions = {}): Error {
    return mapUpstreamError(err, { ...opts, secrets: this.secrets });
  }

  /** A read, retried on connection failures, timeouts, 5xx and short 429s, with exponential backoff and jitter. */
  private async read<T>(fn: (client: OpenAI) => Promise<T>, opts: MapOptions = {}): Promise<T> {
    const client = this.sdk();
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(client);
      } catch (err) {
        if (attempt >= this.readRetries || !isRetryable(err)) throw this.map(err, opts);
        let delay = Math.min(2000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2);
        if (err instanceof OpenAI.APIError && err.status === 429) {
          const after = retryAfterMs(err.headers) ?? delay;
          if (after > MAX_RETRY_AFTER_WAIT_MS) throw this.map(err, opts);
          delay = Math.max(delay, after);
        }
        await sleep(delay);
      }
    }
  }

  /** A write: one attempt, or retries only when the caller gave an idempotency key. */
  private async write<T>(fn: (client: OpenAI) => Promise<T>, opts: MapOptions, idempotent: boolean): Promise<T> {
    if (idempotent) return this.read(fn, opts);
    try {
      return await fn(this.sdk());
    } catch (err) {
      throw this.map(err, opts);
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
    const job = (await this.read((c) => c.fineTuning.jobs.retrieve(id), {
      resource: `fine-tuning job ${id}`,
      defaultField: 'id',
    })) as unknown as RawJob;
    return this.noteJob(job);
  }

  async listJobs(params: { after?: string | null; limit: number; metadata?: Record<string, string> | null }) {
    const page = await this.read(
      (c) =>
        c.fineTuning.jobs.list({
          limit: params.limit,
          ...(params.after ? { after: params.after } : {}),
          ...(params.metadata ? { metadata: params.metadata } : {}),
        }),
      { defaultField: 'after' },
    );
    const data = page.data as unknown as RawJob[];
    for (const job of data) this.noteJob(job);
    return { data, has_more: page.has_more } satisfies Page<RawJob>;
  }

  async listEvents(jobId: string, params: { after?: string | null; limit: number }): Promise<Page<RawEvent>> {
    const page = await this.read(
      (c) =>
        c.fineTuning.jobs.listEvents(jobId, {
          limit: params.limit,
          ...(params.after ? { after: params.after } : {}),
        }),
      { resource: `fine-tuning job ${jobId}`, defaultField: 'after' },
    );
    return { data: page.data as unknown as RawEvent[], has_more: page.has_more };
  }

  async listCheckpoints(jobId: string, params: { after?: string | null; limit: number }): Promise<Page<RawCheckpoint>> {
    const page = await this.read(
      (c) =>
        c.fineTuning.jobs.checkpoints.list(jobId, {
          limit: params.limit,
          ...(params.after ? { after: params.after } : {}),
        }),
      { resource: `fine-tuning job ${jobId}`, defaultField: 'after' },
    );
    return { data: page.data as unknown as RawCheckpoint[], has_more: page.has_more };
  }

  async createJob(body: Record<string, unknown>, idempotencyKey?: string | null): Promise<RawJob> {
    const job = await this.write(
      (c) =>
        c.fineTuning.jobs.create(body as never, {
          // The OpenAI client does not send the SDK's idempotencyKey option, so the header is set here.
          ...(idempotencyKey ? { headers: { 'Idempotency-Key': idempotencyKey } } : {}),
        }),
      { fieldPrefix: 'input', defaultField: 'input' },
      Boolean(idempotencyKey),
    );
    return this.noteJob(job as unknown as RawJob);
  }

  async changeJob(action: 'cancel' | 'pause' | 'resume', id: string): Promise<RawJob> {
    const job = await this.write(
      (c) => c.fineTuning.jobs[action](id),
      { resource: `fine-tuning job ${id}`, defaultField: 'id' },
      false,
    );
    return this.noteJob(job as unknown as RawJob);
  }

  // ---- files ---------------------------------------------------------------------------------------------

  async retrieveFile(id: string): Promise<RawFile> {
    return (await this.read((c) => c.files.retrieve(id), {
      resource: `file ${id}`,
      defaultField: 'id',
    })) as unknown as RawFile;
  }

  async listFiles(params: { after?: string | null; limit: number; purpose?: string | null }): Promise<Page<RawFile>> {
    const page = await this.read(
      (c) =>
        c.files.list({
          limit: params.limit,
          ...(params.after ? { after: params.after } : {}),
          ...(params.purpose ? { purpose: params.purpose } : {}),
        }),
      { defaultField: 'after' },
    );
    return { data: page.data as unknown as RawFile[], has_more: page.has_more };
  }

  async uploadFile(file: File, purpose: string): Promise<RawFile> {
    // The multipart part arrives as the server's File ponyfill; the SDK wants its own file-like object.
    const upload = await toFile(Buffer.from(await file.arrayBuffer()), file.name || 'upload', {
      type: file.type || 'application/octet-stream',
    });
    return (await this.write((c) => c.files.create({ file: upload, purpose: purpose as never }), { defaultField: 'file' }, false)) as unknown as RawFile;
  }

  async deleteFile(id: string): Promise<{ id: string; deleted: boolean }> {
    return (await this.write((c) => c.files.delete(id), { resource: `file ${id}`, defaultField: 'id' }, false)) as {
      id: string;
      deleted: boolean;
    };
  }

  async fileContent(id: string): Promise<string> {
    return this.read(
      async (c) => {
        const res = await c.files.content(id);
        return res.text();
      },
      { resource: `file ${id}`, defaultField: 'id' },
    );
  }
}
