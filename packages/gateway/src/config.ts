/**
 * Server configuration from the environment.
 *
 * Backends (see README):
 * - nothing set: the embedded local fine-tuning service, mounted at `/v1` on this server, used with LOCAL_API_KEY;
 * - OPENAI_BASE_URL (+ OPENAI_API_KEY): any OpenAI-compatible server, e.g. a standalone `npm run emulator`;
 * - OPENAI_API_KEY alone: api.openai.com.
 */

import { isIP } from 'node:net';
import { type AuthConfig, type GatewayToken, hashToken, SCOPES, type Scope } from './http/auth.js';

/** The documented key of the embedded local service. It is not a secret: the local service accepts any key. */
export const LOCAL_API_KEY = 'sk-local-dev';
export const OPENAI_DEFAULT_BASE_URL = 'https://api.openai.com/v1';

export type BackendKind = 'embedded' | 'custom' | 'openai';

/** Query limits (GraphQL Armor) and request size limits. */
export interface Limits {
  /** Deepest field nesting of an operation. */
  maxDepth: number;
  /** Aliases per operation. */
  maxAliases: number;
  /** Static cost (objects 2, scalars 1, ×1.5 per level of depth). */
  maxCost: number;
  /** Lexical tokens of a document. */
  maxTokens: number;
  /** Directives per operation. */
  maxDirectives: number;
  /** JSON (and every non-multipart) request body, in bytes. */
  maxBodyBytes: number;
  /** One uploaded file, in bytes (a multipart request may be this plus 1 MiB). */
  maxUploadBytes: number;
  /**
   * GraphQL requests (HTTP requests to /graphql and websocket subscribe frames) per credential per minute
   * (RATE_LIMIT_PER_MINUTE; a GATEWAY_TOKENS entry may set its own `ratePerMinute`). 0 turns the limit off.
   */
  rateLimitPerMinute: number;
  /** Operations open at once on one websocket (MAX_SUBSCRIPTIONS_PER_SOCKET). */
  maxSubscriptionsPerSocket: number;
  /** Distinct jobs one credential may watch at once (MAX_WATCHED_JOBS_PER_CREDENTIAL); each is one poller. */
  maxWatchedJobsPerCredential: number;
  /** Longest replay of a subscription's `after` (MAX_REPLAY_EVENTS): an `after` further back is refused. */
  maxReplayEvents: number;
  /** Replays (subscriptions with `after`) one credential may have running at once (MAX_CONCURRENT_REPLAYS). */
  maxConcurrentReplays: number;
  /** Ids in one `nodes(ids:)` (GRAPHQL_MAX_NODES). */
  maxNodes: number;
  /** Upstream calls one GraphQL request may make, estimated before it runs and counted while it runs (GRAPHQL_MAX_UPSTREAM_CALLS). */
  maxUpstreamCalls: number;
  /** Nesting depth of a JSON-scalar input value (GRAPHQL_MAX_JSON_DEPTH). */
  maxJsonDepth: number;
  /** Serialised size of a JSON-scalar input value, in bytes (GRAPHQL_MAX_JSON_BYTES). */
  maxJsonBytes: number;
  /** Uploads (multipart requests) processed at once; further ones wait, their bodies unread (MAX_CONCURRENT_UPLOADS). */
  maxConcurrentUploads: number;
  /** Bytes queued for one streaming client (websocket or SSE) before it is cut as a slow consumer (STREAM_MAX_BUFFER_BYTES). */
  maxStreamBufferBytes: number;
  /** An HTTP response whose client has taken none of its waiting bytes for this long is cut (STREAM_STALL_TIMEOUT_MS). */
  streamStallTimeoutMs: number;
  /** Time to receive a whole request, body included (REQUEST_TIMEOUT_MS); slow clients are cut (408). */
  requestTimeoutMs: number;
  /** Time to receive a request's headers (HEADERS_TIMEOUT_MS). */
  headersTimeoutMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxDepth: 12,
  maxAliases: 15,
  maxCost: 5000,
  maxTokens: 2000,
  maxDirectives: 20,
  maxBodyBytes: 1024 * 1024,
  maxUploadBytes: 64 * 1024 * 1024,
  rateLimitPerMinute: 3000,
  maxSubscriptionsPerSocket: 100,
  maxWatchedJobsPerCredential: 50,
  maxReplayEvents: 10_000,
  maxConcurrentReplays: 32,
  maxNodes: 100,
  maxUpstreamCalls: 100,
  maxJsonDepth: 16,
  maxJsonBytes: 64 * 1024,
  maxConcurrentUploads: 2,
  maxStreamBufferBytes: 4 * 1024 * 1024,
  streamStallTimeoutMs: 30_000,
  requestTimeoutMs: 120_000,
  headersTimeoutMs: 10_000,
};

export interface Config {
  port: number;
  host: string;
  backend: {
    kind: BackendKind;
    /** Upstream base URL ending in /v1. For `embedded` it is filled in once the server listens. */
    baseURL?: string;
    /** The server's upstream credential (AUTH_MODE tokens/none; passthrough uses the client's). Never logged, never returned. */
    apiKey: string;
  };
  /** Options of the embedded local service (only used when backend.kind is `embedded`). */
  emulator: {
    /**
     * The EMULATOR_* variables (EMULATOR_DB, EMULATOR_STEP_MS, EMULATOR_FAULTS, …), read by the local service's own
     * options parser (optionsFromEnv of @finetune-graphql/emulator) when it starts embedded.
     */
    env: Readonly<Record<string, string>>;
  };
  upstream: {
    /** Budget of one upstream call, retries included, in milliseconds (UPSTREAM_TIMEOUT_MS, default 30 s). */
    timeoutMs: number;
    /** Retries of reads, 429s and refused connections (creates are never retried blindly). Default 3. */
    readRetries: number;
    /** Keep-alive connections to the upstream. */
    connections: number;
    /** Longest Retry-After waited for before answering RATE_LIMITED (UPSTREAM_RETRY_AFTER_MAX_MS, default 5 s). */
    retryAfterMaxMs: number;
    /** How long createFineTuningJob's idempotency keys are kept (IDEMPOTENCY_TTL_MS, default 24 h). */
    idempotencyTtlMs: number;
    /** Tag idempotent creates with metadata so a lost response can be looked up (IDEMPOTENCY_METADATA_TAG, default 1). */
    idempotencyTag: boolean;
  };
  /** Graceful shutdown: longest wait for in-flight requests (SHUTDOWN_TIMEOUT_MS, default 8 s; the process exits by 10 s). */
  shutdownTimeoutMs: number;
  /** One JSON access line per request (ACCESS_LOG, default 1). */
  accessLog: boolean;
  /** Finished jobs (and their events, checkpoints, metrics) kept per credential. 0 disables the cache. */
  finishedJobCacheSize: number;
  /** Use graphql-jit to execute operations. */
  jit: boolean;
  /** Serve non-browser JSON POSTs without yoga's Fetch-API layer (same envelop plugins). */
  fastPath: boolean;
  logLevel: string;
  /** GraphiQL on a browser GET (default on; with NODE_ENV=production only when GRAPHIQL=1). */
  graphiql: boolean;
  /** NODE_ENV=production: field suggestions hidden, unexpected errors masked, GraphiQL off by default. */
  production: boolean;
  auth: AuthConfig;
  /** Origins allowed to call the API cross-origin (CORS_ORIGINS); empty: none (same-origin GraphiQL still works). */
  corsOrigins: string[];
  /** Host names answered besides the loopback ones in AUTH_MODE=none (ALLOWED_HOSTS; see src/http/browser-guard.ts). */
  allowedHosts: string[];
  limits: Limits;
  /**
   * Cluster mode (REDIS_URL): live-update fan-out over Redis pub/sub, one poller per job across instances (a Redis
   * lease), shared idempotency keys (src/live/cluster). Undefined: everything stays in this process.
   */
  redis?: RedisConfig;
  /** GET /metrics for Prometheus (METRICS, default 1). */
  metrics: boolean;
  /** How often the busiest client-chosen operation names get the metrics' label slots again (METRICS_LABEL_WINDOW_MS, 60 s). */
  metricsLabelWindowMs: number;
  /** /ready answers from its last upstream check for this long (READY_CACHE_MS, default 2 s): it is no amplifier. */
  readyCacheMs: number;
  /** Who may call the embedded local service's /v1 from outside (see loadEmbeddedV1). */
  embeddedV1: EmbeddedV1Access;
}

/**
 * The embedded local service's `/v1` routes, as seen from outside the process (the gateway itself calls the
 * service in-process and never needs them):
 * - `open`: any local client, with any key (AUTH_MODE=none on a loopback address: the gateway has no
 *   authentication that /v1 could bypass);
 * - `keys`: only requests whose bearer key is one of EMBEDDED_V1_KEYS (explicitly exposed);
 * - `closed`: 404 for everything (AUTH_MODE tokens or passthrough without EMBEDDED_V1_KEYS), so that nobody gets
 *   past the gateway's authentication through /v1.
 */
export type EmbeddedV1Access = { mode: 'open' } | { mode: 'keys'; keys: string[] } | { mode: 'closed' };

/** EMBEDDED_V1_KEYS (comma-separated) and the auth mode decide /v1's access; see EmbeddedV1Access. */
export function loadEmbeddedV1(env: NodeJS.ProcessEnv, backend: BackendKind, host: string): EmbeddedV1Access {
  const raw = env.EMBEDDED_V1_KEYS?.trim();
  const keys = raw
    ? raw
        .split(',')
        .map((k) => k.trim())
        .filter(Boolean)
    : [];
  for (const k of keys) {
    if (k.length < 16 || k.length > 512 || !/^[\x21-\x7e]+$/.test(k)) {
      throw new Error('EMBEDDED_V1_KEYS: each key must be 16–512 printable characters without spaces (comma-separated)');
    }
  }
  if (backend !== 'embedded') return { mode: 'closed' };
  if (keys.length > 0) return { mode: 'keys', keys };
  const authMode = env.AUTH_MODE?.trim().toLowerCase() || (env.GATEWAY_TOKENS?.trim() ? 'tokens' : 'none');
  if (authMode === 'none') {
    // loadAuth refuses AUTH_MODE=none on other addresses; this is the same rule for /v1, said again where it matters.
    if (!isLoopbackHost(host)) throw new Error(`The embedded local service's /v1 would be open on HOST=${host}: set EMBEDDED_V1_KEYS, or bind to 127.0.0.1.`);
    return { mode: 'open' };
  }
  return { mode: 'closed' };
}

export interface RedisConfig {
  /** REDIS_URL (redis:// or rediss://); may hold a password, so it is never logged. */
  url: string;
  /** REDIS_KEY_PREFIX (default `ftgql:`): every key and channel starts with it. */
  keyPrefix: string;
  /** INSTANCE_ID (default `<hostname>-<pid>-<random>`): this instance's name in leases and presence. */
  instanceId?: string;
  /** LIVE_LEASE_MS (default 5000, at least twice POLL_INTERVAL_MS): a dead poller's job is taken over within it. */
  leaseMs?: number;
}

/** REDIS_URL and friends; undefined without REDIS_URL. */
export function loadRedisConfig(env: NodeJS.ProcessEnv): RedisConfig | undefined {
  const url = env.REDIS_URL?.trim();
  if (!url) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('REDIS_URL is not a valid URL (expected redis://host:6379 or rediss://…)');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new Error('REDIS_URL must be a redis:// or rediss:// URL');
  const keyPrefix = env.REDIS_KEY_PREFIX ?? 'ftgql:';
  if (!/^[A-Za-z0-9_:.-]{0,100}$/.test(keyPrefix)) throw new Error('REDIS_KEY_PREFIX may only hold A-Z a-z 0-9 _ : . - (at most 100)');
  const instanceId = env.INSTANCE_ID?.trim() || undefined;
  if (instanceId !== undefined && !/^[A-Za-z0-9_.:-]{1,100}$/.test(instanceId)) throw new Error('INSTANCE_ID may only hold A-Z a-z 0-9 _ . : - (at most 100)');
  const leaseMs = env.LIVE_LEASE_MS ? positive(env.LIVE_LEASE_MS, 5_000, 'LIVE_LEASE_MS') : undefined;
  return { url, keyPrefix, instanceId, leaseMs };
}

function int(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer`);
  return n;
}

function positive(value: string | undefined, fallback: number, name: string): number {
  const n = int(value, fallback, name);
  if (n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
}

/** 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z) and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

const MIN_TOKEN_LENGTH = 16;

/** GATEWAY_TOKENS: a JSON array of {"token": "…", "scopes": ["read", "write"], "name"?: "…"}. */
export function parseGatewayTokens(raw: string | undefined): GatewayToken[] {
  const fail = (why: string): never => {
    throw new Error(
      `GATEWAY_TOKENS ${why}. Expected a JSON array such as [{"token":"<at least ${MIN_TOKEN_LENGTH} characters>","scopes":["read","write"],"name":"ci"}].`,
    );
  };
  if (raw === undefined || raw.trim() === '') fail('is not set (AUTH_MODE=tokens needs at least one token)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw!);
  } catch {
    fail('is not valid JSON');
  }
  if (!Array.isArray(parsed) || parsed.length === 0) fail('must be a non-empty JSON array');
  const seen = new Set<string>();
  const names = new Set<string>();
  return (parsed as unknown[]).map((entry, i) => {
    if (!entry || typeof entry !== 'object' || Array.isArray(entry)) fail(`[${i}] is not an object`);
    const { token, scopes, name, ratePerMinute, ...rest } = entry as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length) fail(`[${i}] has unknown key(s) ${extra.map((k) => JSON.stringify(k)).join(', ')}`);
    if (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH || token.length > 512 || !/^[\x21-\x7e]+$/.test(token)) {
      fail(`[${i}].token must be a string of ${MIN_TOKEN_LENGTH}–512 printable characters without spaces`);
    }
    if (seen.has(token as string)) fail(`[${i}].token is listed twice`);
    seen.add(token as string);
    if (!Array.isArray(scopes) || scopes.length === 0 || !scopes.every((s) => SCOPES.includes(s as Scope))) {
      fail(`[${i}].scopes must be a non-empty array of ${SCOPES.map((s) => `"${s}"`).join(', ')}`);
    }
    const label = name === undefined ? String(i) : typeof name === 'string' ? name : '';
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(label)) fail(`[${i}].name must be 1–64 characters of A-Z a-z 0-9 _ . -`);
    if (names.has(label)) fail(`[${i}].name ${JSON.stringify(label)} is used twice`);
    names.add(label);
    if (ratePerMinute !== undefined && (typeof ratePerMinute !== 'number' || !Number.isInteger(ratePerMinute) || ratePerMinute < 0)) {
      fail(`[${i}].ratePerMinute must be a non-negative integer (0: unlimited)`);
    }
    return {
      name: label,
      hash: hashToken(token as string),
      scopes: new Set(scopes as Scope[]),
      ...(ratePerMinute !== undefined ? { ratePerMinute: ratePerMinute as number } : {}),
    };
  });
}

/**
 * AUTH_MODE, with the default: `tokens` when GATEWAY_TOKENS is set, otherwise `none` on a loopback HOST (so
 * `npm start` just works locally). On any other address the server refuses to start without authentication.
 */
export function loadAuth(env: NodeJS.ProcessEnv, host: string): AuthConfig {
  const raw = env.AUTH_MODE?.trim().toLowerCase() || undefined;
  const mode = raw ?? (env.GATEWAY_TOKENS?.trim() ? 'tokens' : isLoopbackHost(host) ? 'none' : undefined);
  if (mode === undefined) {
    throw new Error(
      `Refusing to start without authentication on HOST=${host}, which is not a loopback address: set AUTH_MODE=tokens (with GATEWAY_TOKENS) or AUTH_MODE=passthrough, or bind to 127.0.0.1.`,
    );
  }
  switch (mode) {
    case 'none':
      if (!isLoopbackHost(host)) {
        throw new Error(
          `AUTH_MODE=none is only allowed on a loopback address (127.0.0.1, ::1, localhost), not HOST=${host}: use AUTH_MODE=tokens or AUTH_MODE=passthrough.`,
        );
      }
      return { mode: 'none' };
    case 'passthrough':
      return { mode: 'passthrough' };
    case 'tokens':
      return { mode: 'tokens', tokens: parseGatewayTokens(env.GATEWAY_TOKENS) };
    default:
      throw new Error(`AUTH_MODE must be one of tokens, passthrough, none (got ${JSON.stringify(env.AUTH_MODE)})`);
  }
}

/** ALLOWED_HOSTS: comma-separated host names (no scheme, no port), e.g. `my-laptop.local,dev.internal`. */
export function parseAllowedHosts(raw: string | undefined): string[] {
  if (!raw || raw.trim() === '') return [];
  return raw
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)
    .map((h) => {
      if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(h) || h.length > 253) {
        throw new Error(`ALLOWED_HOSTS: ${JSON.stringify(h)} is not a host name such as dev.example.com (no scheme, no port)`);
      }
      return h;
    });
}

/** CORS_ORIGINS: comma-separated origins such as https://app.example.com,http://localhost:5173. */
export function parseCorsOrigins(raw: string | undefined): string[] {
  if (!raw || raw.trim() === '') return [];
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((o) => {
      let url: URL;
      try {
        url = new URL(o);
      } catch {
        throw new Error(`CORS_ORIGINS: ${JSON.stringify(o)} is not an origin such as https://app.example.com`);
      }
      if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== o.replace(/\/$/, '')) {
        throw new Error(`CORS_ORIGINS: ${JSON.stringify(o)} is not an origin (scheme://host[:port], no path)`);
      }
      return url.origin;
    });
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const baseURL = env.OPENAI_BASE_URL?.trim() || undefined;
  const apiKey = env.OPENAI_API_KEY;
  let backend: Config['backend'];
  if (baseURL) {
    let parsed: URL;
    try {
      parsed = new URL(baseURL);
    } catch {
      throw new Error('OPENAI_BASE_URL is not a valid URL');
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new Error('OPENAI_BASE_URL must be an http(s) URL');
    }
    backend = { kind: 'custom', baseURL: baseURL.replace(/\/+$/, ''), apiKey: apiKey ?? LOCAL_API_KEY };
  } else if (apiKey !== undefined && apiKey !== '') {
    backend = { kind: 'openai', baseURL: OPENAI_DEFAULT_BASE_URL, apiKey };
  } else {
    backend = { kind: 'embedded', apiKey: LOCAL_API_KEY };
  }
  const host = env.HOST || '127.0.0.1';
  const production = env.NODE_ENV === 'production';
  return {
    port: int(env.PORT, 4000, 'PORT'),
    host,
    backend,
    emulator: {
      env: Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[0].startsWith('EMULATOR_') && e[1] !== undefined)),
    },
    upstream: {
      timeoutMs: int(env.UPSTREAM_TIMEOUT_MS, 30_000, 'UPSTREAM_TIMEOUT_MS'),
      readRetries: int(env.UPSTREAM_READ_RETRIES, 3, 'UPSTREAM_READ_RETRIES'),
      connections: int(env.UPSTREAM_CONNECTIONS, 64, 'UPSTREAM_CONNECTIONS'),
      retryAfterMaxMs: int(env.UPSTREAM_RETRY_AFTER_MAX_MS, 5_000, 'UPSTREAM_RETRY_AFTER_MAX_MS'),
      idempotencyTtlMs: int(env.IDEMPOTENCY_TTL_MS, 24 * 60 * 60 * 1000, 'IDEMPOTENCY_TTL_MS'),
      idempotencyTag: env.IDEMPOTENCY_METADATA_TAG !== '0',
    },
    shutdownTimeoutMs: int(env.SHUTDOWN_TIMEOUT_MS, 8_000, 'SHUTDOWN_TIMEOUT_MS'),
    accessLog: env.ACCESS_LOG !== '0',
    finishedJobCacheSize: int(env.FINISHED_JOB_CACHE_SIZE, 1000, 'FINISHED_JOB_CACHE_SIZE'),
    jit: env.GRAPHQL_JIT !== '0',
    fastPath: env.GRAPHQL_FAST_PATH !== '0',
    logLevel: env.LOG_LEVEL || 'info',
    graphiql: production ? env.GRAPHIQL === '1' : env.GRAPHIQL !== '0',
    production,
    auth: loadAuth(env, host),
    corsOrigins: parseCorsOrigins(env.CORS_ORIGINS),
    allowedHosts: parseAllowedHosts(env.ALLOWED_HOSTS),
    redis: loadRedisConfig(env),
    metrics: env.METRICS !== '0',
    metricsLabelWindowMs: positive(env.METRICS_LABEL_WINDOW_MS, 60_000, 'METRICS_LABEL_WINDOW_MS'),
    limits: {
      maxDepth: positive(env.GRAPHQL_MAX_DEPTH, DEFAULT_LIMITS.maxDepth, 'GRAPHQL_MAX_DEPTH'),
      maxAliases: int(env.GRAPHQL_MAX_ALIASES, DEFAULT_LIMITS.maxAliases, 'GRAPHQL_MAX_ALIASES'),
      maxCost: positive(env.GRAPHQL_MAX_COST, DEFAULT_LIMITS.maxCost, 'GRAPHQL_MAX_COST'),
      maxTokens: positive(env.GRAPHQL_MAX_TOKENS, DEFAULT_LIMITS.maxTokens, 'GRAPHQL_MAX_TOKENS'),
      maxDirectives: int(env.GRAPHQL_MAX_DIRECTIVES, DEFAULT_LIMITS.maxDirectives, 'GRAPHQL_MAX_DIRECTIVES'),
      maxBodyBytes: positive(env.MAX_BODY_BYTES, DEFAULT_LIMITS.maxBodyBytes, 'MAX_BODY_BYTES'),
      maxUploadBytes: positive(env.MAX_UPLOAD_BYTES, DEFAULT_LIMITS.maxUploadBytes, 'MAX_UPLOAD_BYTES'),
      rateLimitPerMinute: int(env.RATE_LIMIT_PER_MINUTE, DEFAULT_LIMITS.rateLimitPerMinute, 'RATE_LIMIT_PER_MINUTE'),
      maxSubscriptionsPerSocket: positive(env.MAX_SUBSCRIPTIONS_PER_SOCKET, DEFAULT_LIMITS.maxSubscriptionsPerSocket, 'MAX_SUBSCRIPTIONS_PER_SOCKET'),
      maxWatchedJobsPerCredential: positive(env.MAX_WATCHED_JOBS_PER_CREDENTIAL, DEFAULT_LIMITS.maxWatchedJobsPerCredential, 'MAX_WATCHED_JOBS_PER_CREDENTIAL'),
      maxReplayEvents: positive(env.MAX_REPLAY_EVENTS, DEFAULT_LIMITS.maxReplayEvents, 'MAX_REPLAY_EVENTS'),
      maxConcurrentReplays: positive(env.MAX_CONCURRENT_REPLAYS, DEFAULT_LIMITS.maxConcurrentReplays, 'MAX_CONCURRENT_REPLAYS'),
      maxNodes: positive(env.GRAPHQL_MAX_NODES, DEFAULT_LIMITS.maxNodes, 'GRAPHQL_MAX_NODES'),
      maxUpstreamCalls: positive(env.GRAPHQL_MAX_UPSTREAM_CALLS, DEFAULT_LIMITS.maxUpstreamCalls, 'GRAPHQL_MAX_UPSTREAM_CALLS'),
      maxJsonDepth: positive(env.GRAPHQL_MAX_JSON_DEPTH, DEFAULT_LIMITS.maxJsonDepth, 'GRAPHQL_MAX_JSON_DEPTH'),
      maxJsonBytes: positive(env.GRAPHQL_MAX_JSON_BYTES, DEFAULT_LIMITS.maxJsonBytes, 'GRAPHQL_MAX_JSON_BYTES'),
      maxConcurrentUploads: positive(env.MAX_CONCURRENT_UPLOADS, DEFAULT_LIMITS.maxConcurrentUploads, 'MAX_CONCURRENT_UPLOADS'),
      maxStreamBufferBytes: positive(env.STREAM_MAX_BUFFER_BYTES, DEFAULT_LIMITS.maxStreamBufferBytes, 'STREAM_MAX_BUFFER_BYTES'),
      streamStallTimeoutMs: positive(env.STREAM_STALL_TIMEOUT_MS, DEFAULT_LIMITS.streamStallTimeoutMs, 'STREAM_STALL_TIMEOUT_MS'),
      requestTimeoutMs: positive(env.REQUEST_TIMEOUT_MS, DEFAULT_LIMITS.requestTimeoutMs, 'REQUEST_TIMEOUT_MS'),
      headersTimeoutMs: positive(env.HEADERS_TIMEOUT_MS, DEFAULT_LIMITS.headersTimeoutMs, 'HEADERS_TIMEOUT_MS'),
    },
    readyCacheMs: int(env.READY_CACHE_MS, 2_000, 'READY_CACHE_MS'),
    embeddedV1: loadEmbeddedV1(env, backend.kind, host),
  };
}

/** A human description of the backend for the start-up line. Never contains the key nor a configured URL. */
export function describeBackend(config: Config, ownUrl: string): string {
  switch (config.backend.kind) {
    case 'embedded':
      return `embedded local fine-tuning service at ${ownUrl}/v1 (no key or network needed)`;
    case 'custom':
      return 'OpenAI-compatible server set by OPENAI_BASE_URL';
    case 'openai':
      return 'api.openai.com (OPENAI_API_KEY)';
  }
}
