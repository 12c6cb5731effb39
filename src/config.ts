/**
 * Server configuration from the environment.
 *
 * Backends (see README):
 * - nothing set: the embedded local fine-tuning service, mounted at `/v1` on this server, used with LOCAL_API_KEY;
 * - OPENAI_BASE_URL (+ OPENAI_API_KEY): any OpenAI-compatible server, e.g. a standalone `npm run emulator`;
 * - OPENAI_API_KEY alone: api.openai.com.
 */

/** The documented key of the embedded local service. It is not a secret: the local service accepts any key. */
export const LOCAL_API_KEY = 'sk-local-dev';
export const OPENAI_DEFAULT_BASE_URL = 'https://api.openai.com/v1';

export type BackendKind = 'embedded' | 'custom' | 'openai';

export interface Config {
  port: number;
  host: string;
  backend: {
    kind: BackendKind;
    /** Upstream base URL ending in /v1. For `embedded` it is filled in once the server listens. */
    baseURL?: string;
    /** The credential every request uses (auth modes come later). Never logged, never returned. */
    apiKey: string;
  };
  /** Options of the embedded local service (only used when backend.kind is `embedded`). */
  emulator: { dbPath?: string; stepMs?: number };
  upstream: {
    /** Per-call timeout in milliseconds. */
    timeoutMs: number;
    /** Retries for reads (creates are never retried blindly). */
    readRetries: number;
    /** Keep-alive connections to the upstream. */
    connections: number;
  };
  /** Finished jobs (and their events, checkpoints, metrics) kept per credential. 0 disables the cache. */
  finishedJobCacheSize: number;
  /** Use graphql-jit to execute operations. */
  jit: boolean;
  /** Serve non-browser JSON POSTs without yoga's Fetch-API layer (same envelop plugins). */
  fastPath: boolean;
  logLevel: string;
  graphiql: boolean;
}

function int(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer`);
  return n;
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
  return {
    port: int(env.PORT, 4000, 'PORT'),
    host: env.HOST || '127.0.0.1',
    backend,
    emulator: {
      dbPath: env.EMULATOR_DB || undefined,
      stepMs: env.EMULATOR_STEP_MS ? int(env.EMULATOR_STEP_MS, 200, 'EMULATOR_STEP_MS') : undefined,
    },
    upstream: {
      timeoutMs: int(env.UPSTREAM_TIMEOUT_MS, 30_000, 'UPSTREAM_TIMEOUT_MS'),
      readRetries: int(env.UPSTREAM_READ_RETRIES, 2, 'UPSTREAM_READ_RETRIES'),
      connections: int(env.UPSTREAM_CONNECTIONS, 64, 'UPSTREAM_CONNECTIONS'),
    },
    finishedJobCacheSize: int(env.FINISHED_JOB_CACHE_SIZE, 1000, 'FINISHED_JOB_CACHE_SIZE'),
    jit: env.GRAPHQL_JIT !== '0',
    fastPath: env.GRAPHQL_FAST_PATH !== '0',
    logLevel: env.LOG_LEVEL || 'info',
    graphiql: env.GRAPHIQL !== '0',
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
