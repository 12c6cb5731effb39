/**
 * Wiring: one node:http server with
 *   /v1/*     the embedded local fine-tuning service (only when no upstream is configured)
 *   /health   liveness
 *   /ready    readiness: the upstream answers
 *   /graphql  the GraphQL API (graphql-yoga; GraphiQL on a browser GET)
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type { GraphQLError } from 'graphql/index.js';
import type { Plugin } from 'graphql-yoga';
import { type Config, describeBackend } from './config.js';
import { startEmbedded } from './http/embedded.js';
import { createJsonFastPath } from './http/fast-path.js';
import { attachGraphQLWebSocket } from './http/websocket.js';
import { createYogaServer } from './http/yoga.js';
import { JobWatchRegistry, liveOptionsFromEnv, type LiveJobs, type LiveOptions } from './live/index.js';
import { createLogger, type Logger } from './log.js';
import type { GraphQLContext } from './resolvers/context.js';
import { Upstream, type FetchLike } from './upstream/client.js';
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
}

function json(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const logger = createLogger(config.logLevel, opts.logStream);
  const embedded = config.backend.kind === 'embedded' ? await startEmbedded(config) : undefined;

  const upstream = new Upstream({
    // The embedded service is called in-process (no socket); the host below is never contacted.
    baseURL: embedded ? 'http://embedded.invalid/v1' : config.backend.baseURL!,
    fetch: embedded
      ? (((input: string | URL | Request, init?: RequestInit) =>
          Promise.resolve(embedded.fetch(new Request(input, init)))) as FetchLike)
      : undefined,
    timeoutMs: config.upstream.timeoutMs,
    readRetries: config.upstream.readRetries,
    connections: config.upstream.connections,
    finishedJobCacheSize: config.finishedJobCacheSize,
    logger,
  });

  const live = new JobWatchRegistry<RawJob, RawEvent>({ ...liveOptionsFromEnv(), ...opts.live, logger });
  const yoga = createYogaServer(config, upstream, logger, {
    ...opts,
    extendContext: (ctx) => {
      ctx.live = live;
      opts.extendContext?.(ctx);
    },
  });
  const v1 = embedded ? getRequestListener((req) => embedded.fetch(req)) : undefined;
  const fastPath = config.fastPath ? createJsonFastPath(yoga, logger) : undefined;

  const ready = async (res: ServerResponse) => {
    try {
      await upstream.forCredential(config.backend.apiKey).listJobs({ limit: 1 });
      json(res, 200, { status: 'ready' });
    } catch (err) {
      const code = (err as GraphQLError).extensions?.code ?? 'UPSTREAM_UNAVAILABLE';
      json(res, 503, { status: 'unavailable', code });
    }
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    if (v1 && (url === '/v1' || url.startsWith('/v1/') || url.startsWith('/v1?'))) {
      void v1(req, res);
      return;
    }
    const path = url.split('?', 1)[0];
    if (path === '/health') return json(res, 200, { status: 'ok' });
    if (path === '/ready') return void ready(res);
    if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(302, { location: '/graphql' });
      res.end();
      return;
    }
    if (fastPath && path === '/graphql' && fastPath(req, res)) return;
    void yoga(req, res);
  };

  const httpServer = createServer({ keepAliveTimeout: 65_000 }, handler);

  const wsHandle = attachGraphQLWebSocket(httpServer, yoga);
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
  const startupLine = `GraphQL API at ${url}/graphql (GraphiQL in a browser); backend: ${describeBackend(config, url)}`;

  let closed = false;
  return {
    url,
    port,
    httpServer,
    upstream,
    logger,
    startupLine,
    live,
    async close() {
      if (closed) return;
      closed = true;
      // Websocket clients are told 1001 (going away) and can reconnect elsewhere; then the pollers stop.
      await wsHandle.dispose();
      await live.close();
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
      await upstream.close();
      await embedded?.close();
    },
  };
}
