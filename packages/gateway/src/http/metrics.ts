/**
 * Observability: `/metrics` for Prometheus and the checks behind `/ready`.
 *
 * Series (one prom-client registry per server):
 *   ftgql_graphql_operations_total{operationType,operationName}
 *                                               operations run (queries, mutations, subscriptions as they start);
 *   ftgql_graphql_operation_duration_seconds{operationType,operationName}
 *                                               queries and mutations, from execution start to result;
 *   ftgql_graphql_errors_total{operationType,operationName,code}
 *                                               errors in results by extensions.code, and documents refused by the
 *                                               parser (GRAPHQL_PARSE_FAILED) or validation (GRAPHQL_VALIDATION_FAILED).
 *                                               Envelop hooks (operationPlugin below), so they count the JSON fast
 *                                               path (src/http/fast-path.ts), yoga's path and graphql-ws alike.
 *                                               Not @graphql-yoga/plugin-prometheus: its generic label handling cost
 *                                               ~7% of the CPU of a GraphQL request (npm run bench:graphql profile).
 *   ftgql_http_requests_total{method,route,status}, ftgql_http_request_duration_seconds{method,route}
 *                                               every HTTP request, whichever path served it (observed in app.ts).
 *                                               yoga's own graphql_yoga_http_duration is off: it is an HTTP-level
 *                                               hook that the fast path does not run, so it would miss most requests.
 *   ftgql_upstream_requests_total{method,route,status}, ftgql_upstream_request_duration_seconds{method,route}
 *                                               calls to the fine-tuning API (each attempt; status "error" when no
 *                                               response came); routes with ids replaced by {id}.
 *   ftgql_live_pollers, ftgql_live_subscriptions, ftgql_live_watched_jobs
 *                                               jobs polled by this instance, open subscription streams, jobs watched.
 *   ftgql_live_poll_lag_seconds                 how late each poll started against its due time.
 *   ftgql_live_lease_acquired_total, ftgql_live_lease_lost_total   (cluster mode) poller leases taken and lost.
 *   ftgql_live_resyncs_total                    (cluster mode) streams that caught up from the upstream after a gap
 *                                               (messages lost while a Redis connection was down) or a reset state.
 *   process_* / nodejs_*                        prom-client's default metrics.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type DocumentNode, type ExecutionResult, getOperationAST, type GraphQLError, Kind, parse } from 'graphql/index.js';
import type { Plugin } from 'graphql-yoga';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { LiveStats } from '../live/types.js';
import { EXAMPLES } from '../schema/examples.js';
import { OperationNameLabels } from './operation-labels.js';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface LiveGauges {
  stats(): LiveStats;
  watchCount?(): number;
}

export interface Metrics {
  registry: Registry;
  /** The envelop/yoga plugin (add it to yoga's plugins). */
  plugin: Plugin<any>;
  /** Counts one HTTP request of this server (call when its response closed). */
  observeHttp(req: IncomingMessage, status: number, seconds: number): void;
  /** A fetch that counts each upstream call by route and status. */
  wrapFetch(fetch: FetchLike): FetchLike;
  /** Hooks for the live module (poll lag, leases). */
  live: { pollLag(ms: number): void; leaseAcquired(): void; leaseLost(): void; resync(): void; refused(limit: string): void };
  /** The live module whose gauges are read at each scrape. */
  setLive(live: LiveGauges): void;
  /** An operation or stream refused or cut by a limit outside GraphQL execution (named as in `extensions.limit`). */
  refused(limit: string): void;
  /** Answers GET /metrics. */
  serve(res: ServerResponse): Promise<void>;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const LAG_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Path segments of the fine-tuning API kept as they are in route labels; anything else is an id. */
const STATIC_SEGMENTS = new Set([
  'v1',
  'fine_tuning',
  'jobs',
  'events',
  'checkpoints',
  'checkpoint',
  'permissions',
  'files',
  'content',
  'cancel',
  'pause',
  'resume',
  'models',
  'uploads',
  'parts',
  'complete',
]);

/** `/v1/fine_tuning/jobs/ftjob-abc/events?limit=1` → `/v1/fine_tuning/jobs/{id}/events` (bounded label values). */
export function upstreamRoute(url: string): string {
  // The path of an absolute URL (the SDK's), without a URL parse per call.
  const start = url.indexOf('//');
  const slash = start === -1 ? url.indexOf('/') : url.indexOf('/', start + 2);
  if (slash === -1) return '/';
  let end = url.length;
  const q = url.indexOf('?', slash);
  if (q !== -1) end = q;
  const h = url.indexOf('#', slash);
  if (h !== -1 && h < end) end = h;
  let route = '';
  for (let i = slash + 1; i <= end; ) {
    let j = url.indexOf('/', i);
    if (j === -1 || j > end) j = end;
    const seg = url.slice(i, j);
    route += seg === '' || STATIC_SEGMENTS.has(seg) ? `/${seg}` : '/{id}';
    i = j + 1;
  }
  return route || '/';
}

/** This server's routes, as labels. */
export function serverRoute(url: string | undefined): string {
  const path = (url ?? '/').split('?', 1)[0]!;
  if (path === '/graphql' || path === '/health' || path === '/ready' || path === '/metrics' || path === '/') return path;
  if (path === '/v1' || path.startsWith('/v1/')) return '/v1';
  return 'other';
}

/** `labelWindowMs`: how often the busiest client-chosen operation names are chosen again (default 60 s). */
export function createMetrics(opts: { labelWindowMs?: number } = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const plugin = operationPlugin(registry, opts.labelWindowMs);

  const httpRequests = new Counter({
    name: 'ftgql_http_requests_total',
    help: 'HTTP requests served, by route (fast path and yoga alike)',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: 'ftgql_http_request_duration_seconds',
    help: 'Time to serve an HTTP request (until its response closed)',
    labelNames: ['method', 'route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const upstreamRequests = new Counter({
    name: 'ftgql_upstream_requests_total',
    help: 'Calls to the fine-tuning API (each attempt), by route and status ("error": no response)',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const upstreamDuration = new Histogram({
    name: 'ftgql_upstream_request_duration_seconds',
    help: 'Duration of calls to the fine-tuning API',
    labelNames: ['method', 'route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const pollLag = new Histogram({
    name: 'ftgql_live_poll_lag_seconds',
    help: 'How late a live poll started against the time it was due',
    buckets: LAG_BUCKETS,
    registers: [registry],
  });
  const leasesAcquired = new Counter({
    name: 'ftgql_live_lease_acquired_total',
    help: 'Poller leases this instance took (cluster mode)',
    registers: [registry],
  });
  const leasesLost = new Counter({
    name: 'ftgql_live_lease_lost_total',
    help: 'Poller leases this instance lost before giving them back (cluster mode)',
    registers: [registry],
  });

  const resyncs = new Counter({
    name: 'ftgql_live_resyncs_total',
    help: 'Subscription streams that caught up from the upstream after a gap or a reset state (cluster mode)',
    registers: [registry],
  });

  const limitRefusals = new Counter({
    name: 'ftgql_limit_refusals_total',
    help: 'Operations and streams refused or cut by a limit outside GraphQL execution (subscriptionsPerSocket, streamBuffer, streamStall, watchedJobs, replayEvents, concurrentReplays)',
    labelNames: ['limit'] as const,
    registers: [registry],
  });

  let live: LiveGauges | undefined;
  new Gauge({
    name: 'ftgql_live_pollers',
    help: 'Jobs polled by this instance (one poller per credential and job)',
    registers: [registry],
    collect() {
      this.set(live?.stats().pollers ?? 0);
    },
  });
  new Gauge({
    name: 'ftgql_live_subscriptions',
    help: 'Open subscription streams on this instance',
    registers: [registry],
    collect() {
      this.set(live?.stats().subscribers ?? 0);
    },
  });
  new Gauge({
    name: 'ftgql_live_watched_jobs',
    help: 'Jobs this instance has subscribers of or polls',
    registers: [registry],
    collect() {
      this.set(live?.watchCount?.() ?? live?.stats().pollers ?? 0);
    },
  });

  return {
    registry,
    plugin,
    observeHttp(req, status, seconds) {
      const route = serverRoute(req.url);
      const method = req.method ?? 'GET';
      httpRequests.inc({ method, route, status: String(status) });
      httpDuration.observe({ method, route }, seconds);
    },
    wrapFetch(fetch) {
      return async (input, init) => {
        const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
        const method = (init?.method ?? (typeof input === 'object' && 'method' in input ? input.method : 'GET')).toUpperCase();
        const route = upstreamRoute(url);
        const t0 = performance.now();
        let status = 'error';
        try {
          const res = await fetch(input, init);
          status = String(res.status);
          return res;
        } finally {
          upstreamRequests.inc({ method, route, status });
          upstreamDuration.observe({ method, route }, (performance.now() - t0) / 1000);
        }
      };
    },
    live: {
      pollLag: (ms) => pollLag.observe(ms / 1000),
      leaseAcquired: () => leasesAcquired.inc(),
      leaseLost: () => leasesLost.inc(),
      resync: () => resyncs.inc(),
      refused: (limit) => limitRefusals.inc({ limit }),
    },
    refused: (limit) => limitRefusals.inc({ limit }),
    setLive(l) {
      live = l;
    },
    async serve(res) {
      const text = await registry.metrics();
      res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
      res.end(text);
    },
  };
}

/** At most this many error codes get a label value (codes come from our own errors, but stay bounded). */
const MAX_CODE_LABELS = 50;
const CODE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

function boundedCode(seen = new Set<string>()): (value: string | undefined, fallback: string) => string {
  return (value, fallback) => {
    if (value === undefined) return fallback;
    if (seen.has(value)) return value;
    if (!CODE_NAME.test(value) || seen.size >= MAX_CODE_LABELS) return 'other';
    seen.add(value);
    return value;
  };
}

/** The operation names of the schema's examples (GraphiQL's tabs, docs/examples.graphql): always labelled. */
function exampleOperationNames(): string[] {
  const names: string[] = [];
  for (const e of EXAMPLES) {
    for (const def of parse(e.query).definitions) if (def.kind === Kind.OPERATION_DEFINITION && def.name) names.push(def.name.value);
  }
  return names;
}

type OperationLabels = { operationType: string; operationName: string };

/** The envelop plugin behind the ftgql_graphql_* series (see the top of this file). */
function operationPlugin(registry: Registry, labelWindowMs?: number): Plugin<any> {
  const operations = new Counter({
    name: 'ftgql_graphql_operations_total',
    help: 'GraphQL operations run (subscriptions counted as they start)',
    labelNames: ['operationType', 'operationName'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'ftgql_graphql_operation_duration_seconds',
    help: 'Time to execute a GraphQL query or mutation (from execution start to result)',
    labelNames: ['operationType', 'operationName'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const errors = new Counter({
    name: 'ftgql_graphql_errors_total',
    help: 'GraphQL errors in results, by extensions.code; GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED for refused documents',
    labelNames: ['operationType', 'operationName', 'code'] as const,
    registers: [registry],
  });
  /** Error codes with a label value of their own (INTERNAL_SERVER_ERROR is the fallback, so it is one too). */
  const codes = new Set<string>(['INTERNAL_SERVER_ERROR', 'GRAPHQL_PARSE_FAILED', 'GRAPHQL_VALIDATION_FAILED']);
  // Client-chosen names: the examples' always, and the busiest others per window (src/http/operation-labels.ts).
  const names = new OperationNameLabels({
    reserved: exampleOperationNames(),
    windowMs: labelWindowMs,
    onDropped: (dropped) => {
      for (const operationName of dropped) {
        for (const operationType of ['query', 'mutation', 'subscription']) {
          operations.remove({ operationType, operationName });
          duration.remove({ operationType, operationName });
          for (const c of codes) errors.remove({ operationType, operationName, code: c });
        }
      }
    },
  });
  const name = (value: string | undefined, fallback: string) => (value === undefined ? fallback : names.label(value));
  const code = boundedCode(codes);
  /** Per document and operation name (documents come from yoga's parser cache, so they repeat): its type and name. */
  const opCache = new WeakMap<DocumentNode, Map<string | undefined, { type: string; name?: string; labels?: OperationLabels; generation: number }>>();
  const labelsOf = (document: DocumentNode, operationName?: string | null): OperationLabels => {
    let byName = opCache.get(document);
    if (!byName) opCache.set(document, (byName = new Map()));
    const key = operationName ?? undefined;
    let entry = byName.get(key);
    if (!entry) {
      const op = getOperationAST(document, operationName);
      entry = { type: op?.operation ?? 'unknown', name: op?.name?.value, generation: -1 };
      byName.set(key, entry);
    }
    // Every use counts towards the busiest names; the label value is chosen again when the set of names changed.
    const chosen = name(entry.name, 'anonymous');
    if (!entry.labels || entry.labels.operationName !== chosen || entry.generation !== names.generation) {
      entry.labels = { operationType: entry.type, operationName: chosen };
      entry.generation = names.generation;
    }
    return entry.labels;
  };
  const countErrors = (labels: OperationLabels, list: readonly GraphQLError[] | undefined) => {
    if (!list) return;
    for (const err of list) {
      const c = err.extensions?.code;
      errors.inc({ ...labels, code: code(typeof c === 'string' ? c : undefined, 'INTERNAL_SERVER_ERROR') });
    }
  };
  const isResult = (r: unknown): r is ExecutionResult => typeof r === 'object' && r !== null && !(Symbol.asyncIterator in r);
  return {
    onParse() {
      return ({ result }) => {
        if (result instanceof Error) errors.inc({ operationType: 'unknown', operationName: 'anonymous', code: 'GRAPHQL_PARSE_FAILED' });
      };
    },
    onValidate({ params }) {
      return ({ valid }) => {
        if (!valid) errors.inc({ ...labelsOf(params.documentAST), code: 'GRAPHQL_VALIDATION_FAILED' });
      };
    },
    onExecute({ args }) {
      const labels = labelsOf(args.document, args.operationName);
      operations.inc(labels);
      const t0 = performance.now();
      return {
        onExecuteDone({ result }) {
          duration.observe(labels, (performance.now() - t0) / 1000);
          if (isResult(result)) countErrors(labels, result.errors);
        },
      };
    },
    onSubscribe({ args }) {
      const labels = labelsOf(args.document, args.operationName);
      operations.inc(labels);
      return {
        onSubscribeResult({ result }) {
          if (isResult(result)) countErrors(labels, result.errors);
        },
        onSubscribeError({ error }) {
          const c = (error as GraphQLError | undefined)?.extensions?.code;
          errors.inc({ ...labels, code: code(typeof c === 'string' ? c : undefined, 'INTERNAL_SERVER_ERROR') });
        },
      };
    },
  };
}

// ---- /ready ------------------------------------------------------------------------------------------------------

export interface CheckResult {
  ok: boolean;
  latencyMs?: number;
  /** An error code (UPSTREAM_UNAVAILABLE, UNAUTHENTICATED, …); never a URL or a key. */
  code?: string;
  error?: string;
}

/** Runs a check within `timeoutMs`; a throw or a timeout is a failure with `code`. */
export async function runCheck(fn: () => Promise<unknown>, code: string, timeoutMs: number): Promise<CheckResult> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const r = await Promise.race([
      fn(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })), timeoutMs))),
    ]);
    const ms = Math.round((performance.now() - t0) * 100) / 100;
    if (r && typeof r === 'object' && 'ok' in r && (r as CheckResult).ok === false) return { ...(r as CheckResult), code: (r as CheckResult).code ?? code };
    return { ok: true, latencyMs: ms };
  } catch (err) {
    // The upstream client's errors carry a GraphQL code (UPSTREAM_UNAVAILABLE, UNAUTHENTICATED, …).
    const e = err as { extensions?: { code?: unknown }; code?: unknown };
    const timeout = e?.code === 'TIMEOUT';
    return { ok: false, code: typeof e?.extensions?.code === 'string' ? e.extensions.code : code, ...(timeout ? { error: 'timeout' } : {}) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The body of /ready: `{ status: 'ready' | 'unavailable', code?, checks }` (503 when any check fails); `code` is the
 * first failing check's. A single-process server that is ready answers `{ status: 'ready' }` as before, unless
 * `verbose` (cluster mode, where there is more than one thing to check).
 */
export async function readiness(
  checks: Record<string, () => Promise<CheckResult>>,
  verbose: boolean,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const names = Object.keys(checks);
  const results = await Promise.all(names.map((n) => checks[n]!()));
  const out: Record<string, CheckResult> = {};
  names.forEach((n, i) => (out[n] = results[i]!));
  const failed = results.find((r) => !r.ok);
  if (failed) return { status: 503, body: { status: 'unavailable', code: failed.code, checks: out } };
  return { status: 200, body: verbose ? { status: 'ready', checks: out } : { status: 'ready' } };
}
