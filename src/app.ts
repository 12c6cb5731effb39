/**
 * Wiring: one node:http server with
 *   /v1/*     the embedded local fine-tuning service (only when no upstream is configured)
 *   /health   liveness
 *   /ready    readiness: the upstream answers
 *   /graphql  the GraphQL API (graphql-yoga; GraphiQL on a browser GET)
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { useGraphQlJit } from '@envelop/graphql-jit';
import { getRequestListener } from '@hono/node-server';
import { type DocumentNode, type ExecutionResult, getOperationAST, GraphQLError } from 'graphql/index.js';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { type Config, describeBackend } from './config.js';
import { createLogger, type Logger } from './log.js';
import { createContext, type GraphQLContext } from './resolvers/context.js';
import { EXAMPLES } from './schema/examples.js';
import { getSchema } from './schema/index.js';
import { Upstream, type FetchLike } from './upstream/client.js';
import { sanitizeMessage } from './upstream/errors.js';
import type { RawEvent, RawJob } from './upstream/types.js';
import { JobWatchRegistry, liveOptionsFromEnv, type LiveJobs, type LiveOptions } from './live/index.js';

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

interface EmbeddedService {
  fetch(req: Request): Response | Promise<Response>;
  start?(): void;
  close(): Promise<void>;
}

async function startEmbedded(config: Config): Promise<EmbeddedService> {
  // Imported lazily: a server with a configured upstream never opens the local database.
  const { createEmulator } = (await import('./emulator/index.js')) as {
    createEmulator(opts: { dbPath?: string; stepMs?: number }): EmbeddedService;
  };
  const emulator = createEmulator({ dbPath: config.emulator.dbPath, stepMs: config.emulator.stepMs });
  emulator.start?.();
  return emulator;
}

export function createYogaServer(
  config: Config,
  upstream: Upstream,
  logger: Logger,
  opts: StartOptions = {},
): YogaServerInstance<Record<string, unknown>, GraphQLContext> {
  const secrets = [config.backend.apiKey, config.backend.baseURL ?? ''].filter((s) => s.length >= 4);
  return createYoga<Record<string, unknown>, GraphQLContext>({
    schema: getSchema(),
    graphqlEndpoint: '/graphql',
    landingPage: false,
    logging: {
      debug: (...a: unknown[]) => logger.debug({ yoga: a.map(String) }, 'yoga'),
      info: (...a: unknown[]) => logger.info({ yoga: a.map(String) }, 'yoga'),
      warn: (...a: unknown[]) => logger.warn({ yoga: a.map(String) }, 'yoga'),
      error: (...a: unknown[]) => logger.error({ yoga: a.map(String) }, 'yoga'),
    },
    graphiql: config.graphiql
      ? {
          title: 'Fine-tuning GraphQL API',
          // Subscriptions in GraphiQL go over the graphql-ws websocket on /graphql.
          subscriptionsProtocol: 'WS',
          defaultQuery: EXAMPLES[0]!.query,
          defaultTabs: EXAMPLES.map((e) => ({
            query: e.query,
            variables: e.variables ? JSON.stringify(e.variables, null, 2) : null,
          })),
        }
      : false,
    context: () => {
      // Today every request uses the server's key; auth modes will pick the credential per request here.
      const ctx = createContext(upstream, config.backend.apiKey, logger);
      opts.extendContext?.(ctx);
      return ctx;
    },
    maskedErrors: {
      maskError(error) {
        const original = error instanceof GraphQLError ? error.originalError : undefined;
        const expected =
          error instanceof GraphQLError &&
          (original === undefined || original === null || original instanceof GraphQLError || error.extensions?.code);
        if (expected) {
          const e = error as GraphQLError;
          const message = sanitizeMessage(e.message, secrets);
          if (message === e.message) return e;
          return new GraphQLError(message, {
            nodes: e.nodes,
            source: e.source,
            positions: e.positions,
            path: e.path,
            extensions: e.extensions,
          });
        }
        logger.error({ err: original ?? error }, 'unexpected error in a resolver');
        return new GraphQLError('Unexpected error.', {
          nodes: error instanceof GraphQLError ? error.nodes : undefined,
          path: error instanceof GraphQLError ? error.path : undefined,
          extensions: { code: 'INTERNAL_SERVER_ERROR' },
        });
      },
    },
    plugins: [...(config.jit ? [useGraphQlJit() as Plugin<GraphQLContext>] : []), ...(opts.plugins ?? [])],
  });
}

/** Headers of a node request with the part of the Fetch `Headers` API that plugins and contexts use. */
class NodeRequestHeaders {
  constructor(private readonly raw: IncomingMessage['headers']) {}
  get(name: string): string | null {
    const v = this.raw[name.toLowerCase()];
    return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
  }
  has(name: string): boolean {
    return this.raw[name.toLowerCase()] !== undefined;
  }
  forEach(fn: (value: string, key: string) => void): void {
    for (const key of Object.keys(this.raw)) fn(this.get(key)!, key);
  }
  *entries(): IterableIterator<[string, string]> {
    for (const key of Object.keys(this.raw)) yield [key, this.get(key)!];
  }
  [Symbol.iterator]() {
    return this.entries();
  }
}

const MAX_JSON_BODY = 1024 * 1024;

/**
 * The JSON fast path: `POST /graphql` with a JSON body from a non-browser client (no Origin header) runs through
 * yoga's envelop (the same plugins: parser/validation cache, graphql-jit, error masking, context) without
 * yoga's Fetch-API request/response layer, which costs several times the GraphQL work itself here.
 * Everything else (GraphiQL, GET, multipart uploads, SSE, browsers with CORS) goes to yoga.
 * Set GRAPHQL_FAST_PATH=0 to send every request to yoga.
 */
function createJsonFastPath(yoga: YogaServerInstance<Record<string, unknown>, GraphQLContext>, logger: Logger) {
  const send = (res: ServerResponse, status: number, body: string, contentType: string) => {
    res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const requestErrors = (res: ServerResponse, status: number, errors: readonly { message: string }[], ct: string) =>
    send(res, ct.startsWith('application/json') ? 200 : status, JSON.stringify({ errors: errors.map(errorJson) }), ct);

  return (req: IncomingMessage, res: ServerResponse): boolean => {
    if (req.method !== 'POST' || req.headers.origin !== undefined) return false;
    const type = req.headers['content-type'];
    if (!type || !type.startsWith('application/json')) return false;
    const accept = req.headers.accept ?? '';
    if (accept.includes('text/event-stream') || accept.includes('multipart/mixed')) return false;
    // GraphQL over HTTP: answer application/graphql-response+json when the client accepts it first.
    const ct =
      accept.includes('application/graphql-response+json') &&
      (!accept.includes('application/json') ||
        accept.indexOf('application/graphql-response+json') < accept.indexOf('application/json'))
        ? 'application/graphql-response+json; charset=utf-8'
        : 'application/json; charset=utf-8';

    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    // A client that goes away mid-body: nothing to answer.
    req.on('error', () => undefined);
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_JSON_BODY) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      if (tooLarge) return requestErrors(res, 413, [{ message: 'Request body is too large.' }], ct);
      void (async () => {
        let params: { query?: unknown; variables?: unknown; operationName?: unknown; extensions?: unknown };
        try {
          params = JSON.parse(Buffer.concat(chunks, size).toString('utf8'));
        } catch {
          return requestErrors(res, 400, [{ message: 'POST body sent invalid JSON.' }], ct);
        }
        if (!params || typeof params !== 'object' || Array.isArray(params)) {
          return requestErrors(res, 400, [{ message: 'Expected a JSON object with a "query" (batching is not supported).' }], ct);
        }
        if (typeof params.query !== 'string') return requestErrors(res, 400, [{ message: 'Must provide query string.' }], ct);
        if (params.variables != null && (typeof params.variables !== 'object' || Array.isArray(params.variables))) {
          return requestErrors(res, 400, [{ message: 'Invalid "variables": expected an object.' }], ct);
        }
        const operationName = typeof params.operationName === 'string' ? params.operationName : undefined;
        const request = { method: 'POST', url: req.url, headers: new NodeRequestHeaders(req.headers) };
        const { parse, validate, contextFactory, execute, schema } = yoga.getEnveloped({
          request,
          params,
          req,
          res,
        } as never);
        let document: DocumentNode;
        try {
          document = parse(params.query);
        } catch (err) {
          if (err instanceof GraphQLError) return requestErrors(res, 400, [err], ct);
          throw err;
        }
        const errors = validate(schema, document);
        if (errors.length > 0) return requestErrors(res, 400, errors, ct);
        const operation = getOperationAST(document, operationName);
        if (!operation) return requestErrors(res, 400, [{ message: 'Could not determine what operation to execute.' }], ct);
        if (operation.operation === 'subscription') {
          return requestErrors(res, 400, [{ message: 'Subscriptions need Accept: text/event-stream (SSE) or a graphql-ws websocket.' }], ct);
        }
        const contextValue = await contextFactory();
        const result = (await execute({
          schema,
          document,
          operationName,
          variableValues: params.variables as Record<string, unknown> | undefined,
          contextValue,
        })) as ExecutionResult & { stringify?: (r: unknown) => string };
        const out: ExecutionResult = result.errors?.length ? { ...result, errors: result.errors.map(errorJson) as never } : result;
        const body = result.stringify && !result.errors?.length ? result.stringify(out) : JSON.stringify(out);
        send(res, 200, body, ct);
      })().catch((err: unknown) => {
        logger.error({ err }, 'unexpected error in the JSON fast path');
        if (!res.headersSent) requestErrors(res, 500, [{ message: 'Unexpected error.' }], ct);
        else res.destroy();
      });
    });
    return true;
  };
}

/** A GraphQL error as JSON, without yoga's internal extensions (http, unexpected). */
function errorJson(err: { message: string }) {
  const json: { message: string; extensions?: Record<string, unknown> } =
    err instanceof GraphQLError ? (err.toJSON() as { message: string; extensions?: Record<string, unknown> }) : { message: err.message };
  if (json.extensions) {
    const { http: _http, unexpected: _unexpected, ...extensions } = json.extensions;
    json.extensions = Object.keys(extensions).length ? extensions : undefined;
    if (!json.extensions) delete json.extensions;
  }
  return json;
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

  // graphql-ws (subprotocol graphql-transport-ws) on /graphql of the same server, with yoga's
  // envelop (context, plugins, masked errors), as in yoga's graphql-ws recipe.
  const wsServer = new WebSocketServer({ server: httpServer, path: '/graphql' });
  type EnvelopedRoot = { execute: (args: unknown) => unknown; subscribe: (args: unknown) => unknown };
  const wsHandle = useServer(
    {
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args) as never,
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args) as never,
      onSubscribe: async (ctx, _id, params) => {
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params,
        });
        let document;
        try {
          document = parse(params.query);
        } catch (err) {
          if (err instanceof GraphQLError) return [err];
          throw err;
        }
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        return {
          schema,
          operationName: params.operationName,
          document,
          variableValues: params.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe },
        };
      },
    },
    wsServer,
  );
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
