/**
 * Wiring: one node:http server with
 *   /v1/*     the embedded local fine-tuning service (only when no upstream is configured; open only with AUTH_MODE=none on
 *             loopback, else 404 unless EMBEDDED_V1_KEYS lists the caller's key: see embeddedV1Refusal)
 *   /health   liveness
 *   /ready    readiness: the upstream answers, and Redis in cluster mode (503 while shutting down or if one fails),
 *             from one check per READY_CACHE_MS however many ask
 *   /metrics  Prometheus metrics (src/http/metrics.ts; METRICS=0 turns it off)
 *   /graphql  the GraphQL API (graphql-yoga; GraphiQL on a browser GET)
 *
 * Every request gets a request id (a sane incoming x-request-id, else a new UUID), returned as x-request-id and
 * carried by the log lines written for it (src/log.ts), and one access line when it ends.
 *
 * close() shuts down gracefully: stop accepting connections, close websockets with 1001 (going away), stop the
 * live pollers (which ends SSE streams), let in-flight requests finish (until SHUTDOWN_TIMEOUT_MS, then cut
 * them), close the upstream pool and the local database. Each phase is logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { type DocumentNode, getOperationAST } from 'graphql/index.js';
import type { Plugin } from 'graphql-yoga';
import { type Config, describeBackend, type EmbeddedV1Access } from './config.js';
import { startEmbedded } from './http/embedded.js';
import { createJsonFastPath } from './http/fast-path.js';
import { createMetrics, type Metrics, readiness, runCheck } from './http/metrics.js';
import { createAuthenticator } from './http/auth.js';
import { createBrowserGuard } from './http/browser-guard.js';
import { startStallSweep } from './http/stall-guard.js';
import { createRequestRateLimiter, useRateLimit } from './http/plugins/use-rate-limit.js';
import { createUploadGate } from './http/upload-gate.js';
import { attachGraphQLWebSocket } from './http/websocket.js';
import { createYogaServer } from './http/yoga.js';
import { JobWatchRegistry, liveOptionsFromEnv, type LiveJobs, type LiveOptions } from './live/index.js';
import { type Cluster, createCluster } from './live/cluster/index.js';
import { createLogger, type Logger, requestIdFrom, setRequestId } from './log.js';
import type { GraphQLContext } from './resolvers/context.js';
import { type FetchLike, Upstream, type UpstreamOptions } from './upstream/client.js';
import type { RawEvent, RawJob } from './upstream/types.js';

export interface RunningServer {
  /** http://host:port (no trailing slash). */
  url: string;
  port: number;
  httpServer: Server;
  upstream: Upstream;
  logger: Logger;
  /** A line for people: where GraphQL is and which backend is used (never the key). */
  startupLine: string;
  /** Live updates: the shared job pollers behind the subscriptions. */
  live: LiveJobs<RawJob, RawEvent>;
  /** Cluster mode (REDIS_URL): the Redis connections, this instance's id, the shared stores. */
  cluster?: Cluster<RawJob, RawEvent, RawJob>;
  /** The Prometheus registry behind /metrics (unless METRICS=0). */
  metrics?: Metrics;
  /** Graceful shutdown (see the top of this file); the same promise on every call. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Extra yoga/envelop plugins (e.g. live updates). */
  plugins?: Plugin<GraphQLContext>[];
  /** Adds request-independent values to every context (e.g. a pubsub). */
  extendContext?: (ctx: GraphQLContext) => void;
  /** Where logs go (default stdout); tests capture them. */
  logStream?: NodeJS.WritableStream;
  /** Live-updates options, over POLL_INTERVAL_MS / POLL_MAX_BACKOFF_MS from the environment. */
  live?: Partial<LiveOptions>;
  /** Upstream client options over the config's (e.g. a shared idempotency store, backoff for tests). */
  upstream?: Partial<Omit<UpstreamOptions, 'baseURL' | 'fetch' | 'logger'>>;
}

/** Per-request facts for the access line, set by the envelop plugin below. */
interface RequestFacts {
  operation?: string;
  operationType?: string;
}
const requestFacts = new WeakMap<IncomingMessage, RequestFacts>();

/** Notes the operation's name and type on the HTTP request it came with (access lines; never variables). */
function noteOperation(contextValue: unknown, document: DocumentNode, operationName: string | null | undefined): void {
  const req = (contextValue as { req?: IncomingMessage } | null)?.req;
  if (!req || typeof req !== 'object') return;
  const op = getOperationAST(document, operationName);
  requestFacts.set(req, { operation: op?.name?.value ?? operationName ?? undefined, operationType: op?.operation });
}

const operationNamePlugin: Plugin<GraphQLContext> = {
  onExecute({ args }) {
    noteOperation(args.contextValue, args.document, args.operationName);
  },
  onSubscribe({ args }) {
    noteOperation(args.contextValue, args.document, args.operationName);
  },
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

function json(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** An OpenAI-style error envelope (what an OpenAI client expects from /v1). */
function openAiError(res: ServerResponse, e: { status: number; message: string; code: string }) {
  json(res, e.status, { error: { message: e.message, type: 'invalid_request_error', param: null, code: e.code } });
}

const NO_V1 = { status: 404, code: 'not_found', message: 'Not found: this server does not expose a local fine-tuning service at /v1.' };

/**
 * Why a request to the embedded /v1 is refused, if it is (see EmbeddedV1Access in src/config.ts): with AUTH_MODE
 * tokens or passthrough /v1 is not exposed unless EMBEDDED_V1_KEYS lists the caller's key, so that the gateway's
 * authentication has no side door.
 */
function embeddedV1Refusal(access: EmbeddedV1Access, authorization: string | undefined) {
  if (access.mode === 'open') return undefined;
  if (access.mode === 'closed') {
    return {
      status: 404,
      code: 'not_found',
      message:
        'Not found: the embedded local fine-tuning service is not exposed at /v1 while the gateway requires authentication (set EMBEDDED_V1_KEYS to expose it with its own keys).',
    };
  }
  const key = /^Bearer (\S+)$/i.exec(authorization ?? '')?.[1];
  if (key !== undefined && access.keys.some((k) => safeEqual(k, key))) return undefined;
  return { status: 401, code: 'invalid_api_key', message: 'Incorrect API key provided: /v1 accepts only the keys listed in EMBEDDED_V1_KEYS.' };
}

function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

/** A readiness answer shared by every caller for `ttlMs` (and while it is being computed). */
function cachedReadiness<T>(check: () => Promise<T>, ttlMs: number): () => Promise<T> {
  let last: { at: number; result: Promise<T> } | undefined;
  return () => {
    const now = Date.now();
    if (!last || now - last.at >= ttlMs) {
      const result = check();
      last = { at: now, result };
      // Computed from the answer's end, so a slow check is not repeated back to back.
      void result.finally(() => {
        if (last?.result === result) last.at = Date.now();
      });
    }
    return last.result;
  };
}

export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const logger = createLogger(config.logLevel, opts.logStream);
  const embedded = config.backend.kind === 'embedded' ? await startEmbedded(config) : undefined;
  const metrics = config.metrics ? createMetrics({ labelWindowMs: config.metricsLabelWindowMs }) : undefined;
  const liveOptions: Partial<LiveOptions> = {
    maxWatchedJobsPerCredential: config.limits.maxWatchedJobsPerCredential,
    maxReplayEvents: config.limits.maxReplayEvents,
    maxConcurrentReplays: config.limits.maxConcurrentReplays,
    ...liveOptionsFromEnv(),
    ...opts.live,
    logger,
    observer: metrics?.live,
  };
  // Cluster mode: Redis connects in the background; /ready reports it until it answers.
  const cluster = config.redis ? createCluster<RawJob, RawEvent, RawJob>(config.redis, liveOptions, logger, metrics?.live) : undefined;

  const upstream = new Upstream({
    // The embedded service is called in-process (no socket); the host below is never contacted.
    baseURL: embedded ? 'http://embedded.invalid/v1' : config.backend.baseURL!,
    fetch: embedded
      ? (((input: string | URL | Request, init?: RequestInit) => Promise.resolve(embedded.fetch(new Request(input, init)))) as FetchLike)
      : undefined,
    timeoutMs: config.upstream.timeoutMs,
    readRetries: config.upstream.readRetries,
    retryAfterMaxMs: config.upstream.retryAfterMaxMs,
    idempotencyTtlMs: config.upstream.idempotencyTtlMs,
    idempotencyTag: config.upstream.idempotencyTag,
    connections: config.upstream.connections,
    finishedJobCacheSize: config.finishedJobCacheSize,
    idempotencyStore: cluster?.idempotency,
    wrapFetch: metrics?.wrapFetch,
    ...opts.upstream,
    logger,
  });

  const live: LiveJobs<RawJob, RawEvent> = cluster ? cluster.live : new JobWatchRegistry<RawJob, RawEvent>(liveOptions);
  metrics?.setLive(cluster ? cluster.live : live);
  const yoga = createYogaServer(config, upstream, logger, {
    ...opts,
    plugins: [
      operationNamePlugin,
      ...(metrics ? [metrics.plugin] : []),
      useRateLimit(createRequestRateLimiter({ redis: cluster?.redis, keyPrefix: config.redis?.keyPrefix }), config.limits.rateLimitPerMinute),
      ...(opts.plugins ?? []),
    ],
    extendContext: (ctx) => {
      ctx.live = live;
      opts.extendContext?.(ctx);
    },
  });
  const v1 = embedded?.listener;
  const refused = { refused: (limit: string) => metrics?.refused(limit) };
  const fastPath = config.fastPath ? createJsonFastPath(yoga, logger, refused) : undefined;
  const uploadAuth = createAuthenticator(config.auth, config.backend.apiKey);
  // Uploads hold their file in memory: MAX_CONCURRENT_UPLOADS at once, the others wait unread (src/http/upload-gate.ts).
  const uploads = createUploadGate({
    maxConcurrent: config.limits.maxConcurrentUploads,
    maxWaitMs: Math.floor(config.limits.requestTimeoutMs / 2),
    drainBytes: config.limits.maxUploadBytes + 1024 * 1024,
    registry: metrics?.registry,
    // No or a wrong token: answered at once (as the operation gate would, after parsing the whole file).
    refuseCaller: (req) => {
      const who = uploadAuth.fromHeader(req.headers.authorization);
      return who.ok ? undefined : { status: 401, headers: { 'www-authenticate': 'Bearer' }, message: who.message, code: 'UNAUTHENTICATED' };
    },
  });

  /** Set by close(): /ready answers 503, responses ask clients to close their connection. */
  let draining = false;
  /** Responses not yet finished (for the drain). */
  const inflight = new Set<ServerResponse>();
  let drained: (() => void) | undefined;

  // /ready answers from one upstream check per READY_CACHE_MS, however many ask (it needs no authentication, so it
  // must not turn each request into an upstream call made with the server's key).
  const readinessCheck = cachedReadiness(
    () =>
      readiness(
        {
          upstream: () =>
            runCheck(() => upstream.forCredential(config.backend.apiKey).listJobs({ limit: 1 }), 'UPSTREAM_UNAVAILABLE', config.upstream.timeoutMs),
          ...(cluster ? { redis: () => runCheck(() => cluster.check(), 'REDIS_UNAVAILABLE', 2_000) } : {}),
        },
        cluster !== undefined,
      ),
    config.readyCacheMs,
  );
  const ready = async (res: ServerResponse) => {
    if (draining) return json(res, 503, { status: 'shutting down' });
    const { status, body } = await readinessCheck();
    json(res, status, body);
  };

  const route = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (url === '/v1' || url.startsWith('/v1/') || url.startsWith('/v1?')) {
      const refused = v1 ? embeddedV1Refusal(config.embeddedV1, req.headers.authorization) : undefined;
      if (!v1 || refused) return openAiError(res, refused ?? NO_V1);
      v1(req, res);
      return;
    }
    const path = url.split('?', 1)[0];
    if (path === '/health') return json(res, 200, { status: 'ok' });
    if (path === '/ready') return void ready(res);
    if (path === '/metrics' && metrics && (req.method === 'GET' || req.method === 'HEAD')) return void metrics.serve(res);
    if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(302, { location: '/graphql' });
      res.end();
      return;
    }
    if (fastPath && path === '/graphql' && fastPath(req, res)) return;
    if (path === '/graphql' && uploads.isUpload(req)) return uploads.admit(req, res, () => void yoga(req, res));
    void yoga(req, res);
  };

  const accessLog = (reqId: string, req: IncomingMessage, status: number, started: bigint, extra: Record<string, unknown> = {}) => {
    if (!config.accessLog || !logger.isLevelEnabled('info')) return;
    const facts = requestFacts.get(req);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    logger.info(
      {
        reqId,
        method: req.method,
        path: q === -1 ? url : url.slice(0, q),
        status,
        durationMs: Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100,
        ...(facts?.operation ? { operation: facts.operation } : {}),
        ...(facts?.operationType ? { operationType: facts.operationType } : {}),
        ...extra,
      },
      'request',
    );
  };

  const guard = createBrowserGuard({ authMode: config.auth.mode, allowedHosts: config.allowedHosts, corsOrigins: config.corsOrigins });

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const started = process.hrtime.bigint();
    const reqId = requestIdFrom(req.headers['x-request-id']);
    res.setHeader('x-request-id', reqId);
    if (draining) res.setHeader('connection', 'close');
    inflight.add(res);
    res.once('close', () => {
      inflight.delete(res);
      accessLog(reqId, req, res.statusCode, started, res.writableFinished ? {} : { aborted: true });
      metrics?.observeHttp(req, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
      if (draining) {
        // Keep-alive sockets that just became idle are closed at once while draining.
        setImmediate(() => httpServer.closeIdleConnections());
        if (inflight.size === 0) drained?.();
      }
    });
    // The GraphQL context finds the id here (src/log.ts).
    setRequestId(req, reqId);
    const refused = guard.refuseHost(req.headers.host);
    if (refused) return json(res, 403, { errors: [{ message: refused, extensions: { code: 'HOST_NOT_ALLOWED' } }] });
    route(req, res);
  };

  // Slow clients (slowloris) are cut: headers within HEADERS_TIMEOUT_MS, the whole request within REQUEST_TIMEOUT_MS.
  const httpServer = createServer(
    {
      keepAliveTimeout: 65_000,
      headersTimeout: config.limits.headersTimeoutMs,
      requestTimeout: config.limits.requestTimeoutMs,
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(config.limits.headersTimeoutMs / 4))),
    },
    handler,
  );

  // Websocket upgrades: an access line when the socket closes; tracked so a shutdown can cut stragglers.
  const upgraded = new Set<Duplex>();
  httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    const started = process.hrtime.bigint();
    const reqId = requestIdFrom(req.headers['x-request-id']);
    // Lines written for this connection's operations carry it (the graphql-ws context reads it).
    setRequestId(req, reqId);
    upgraded.add(socket);
    socket.once('close', () => {
      upgraded.delete(socket);
      accessLog(reqId, req, 101, started, { websocket: true });
    });
  });

  const wsHandle = attachGraphQLWebSocket(httpServer, yoga, guard, refused);
  // Responses whose client has stopped reading are cut after STREAM_STALL_TIMEOUT_MS (src/http/stall-guard.ts).
  const stalls = startStallSweep(inflight, config.limits.streamStallTimeoutMs, (res, unsentBytes) => {
    metrics?.refused('streamStall');
    logger.warn(
      { reqId: res.getHeader('x-request-id'), unsentBytes, limit: config.limits.streamStallTimeoutMs },
      'client stopped reading: nothing sent for STREAM_STALL_TIMEOUT_MS; connection cut (SLOW_CONSUMER)',
    );
  });
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  const { port } = httpServer.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;
  const startupLine = `GraphQL API at ${url}/graphql (GraphiQL in a browser); backend: ${describeBackend(config, url)}; auth: ${config.auth.mode}${config.redis ? '; cluster mode (Redis)' : ''}`;

  let closing: Promise<void> | undefined;
  const shutdown = async () => {
    const t0 = Date.now();
    const deadline = t0 + config.shutdownTimeoutMs;
    const phase = (msg: string, extra: Record<string, unknown> = {}) => logger.info({ phase: msg, elapsedMs: Date.now() - t0, ...extra }, `shutdown: ${msg}`);
    draining = true;
    stalls.stop();
    // 1. No new connections; idle keep-alive sockets go now, busy ones after their response (Connection: close).
    const serverClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
    httpServer.closeIdleConnections();
    for (const res of inflight) if (!res.headersSent) res.setHeader('connection', 'close');
    phase('stopped accepting connections', { inflight: inflight.size, websockets: upgraded.size });

    // 2. Websocket clients are told 1001 (going away) and can reconnect elsewhere.
    const wsCount = upgraded.size;
    const wsClosed = await Promise.race([Promise.resolve(wsHandle.dispose()).then(() => true), sleep(Math.max(0, deadline - Date.now())).then(() => false)]);
    if (!wsClosed) for (const socket of upgraded) socket.destroy();
    phase(wsClosed ? 'websockets closed with 1001' : 'websockets did not close in time; cut', { websockets: wsCount });

    // 3. The pollers stop; subscription streams still open (SSE) end with SHUTTING_DOWN.
    const pollers = live.stats().pollers;
    await live.close();
    phase('live pollers stopped', { pollers });

    // 4. In-flight requests finish, until the deadline.
    if (inflight.size > 0) {
      const finished = await Promise.race([
        new Promise<boolean>((resolve) => (drained = () => resolve(true))),
        sleep(Math.max(0, deadline - Date.now())).then(() => false),
      ]);
      if (finished) phase('in-flight requests finished');
      else logger.warn({ phase: 'deadline', elapsedMs: Date.now() - t0, cut: inflight.size }, 'shutdown: deadline reached; cutting the remaining requests');
    } else {
      phase('no requests in flight');
    }
    httpServer.closeAllConnections();
    for (const socket of upgraded) socket.destroy();
    await serverClosed;
    phase('http server closed');

    // 5. Upstream connections, then the local service and its database.
    // Calls still in flight (a poll that outlived its stream) get a little time, then are aborted.
    await upstream.close(Math.min(2_000, Math.max(100, deadline + 1_000 - Date.now())));
    phase('upstream pool closed');
    if (embedded) {
      await embedded.close();
      phase('local service and database closed');
    }
    if (cluster) {
      await cluster.close();
      phase('redis connections closed');
    }
    logger.info({ phase: 'done', elapsedMs: Date.now() - t0 }, 'shutdown: done');
  };

  return {
    url,
    port,
    httpServer,
    upstream,
    logger,
    startupLine,
    live,
    cluster,
    metrics,
    close() {
      closing ??= shutdown();
      return closing;
    },
  };
}
