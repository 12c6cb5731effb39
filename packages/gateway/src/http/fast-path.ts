/**
 * The JSON fast path for GraphQL POSTs (see createJsonFastPath), and how it streams a subscription's answer
 * (see pipeStream).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type DocumentNode, type ExecutionResult, getOperationAST, GraphQLError } from 'graphql/index.js';
import { DEFAULT_LIMITS } from '../config.js';
import { type Logger, requestIdOf } from '../log.js';
import { NodeHeaders } from '../util/node-headers.js';
import { bodyTooLarge, securityOf, type YogaServer } from './yoga.js';

/** Hooks for metrics (all optional). */
export interface FastPathObserver {
  /** A stream cut by a limit (streamBuffer: STREAM_MAX_BUFFER_BYTES). */
  refused?(limit: string): void;
}

/**
 * The JSON fast path: `POST /graphql` with a JSON body (from scripts, servers and browsers alike: GraphiQL's
 * queries, a front-end app's) runs through yoga's envelop (the same plugins: parser/validation cache,
 * graphql-jit, error masking, context) without yoga's Fetch-API request/response layer, which costs several
 * times the GraphQL work itself here. Browsers get yoga's own CORS headers for their Origin. Everything else
 * (GraphiQL's page, GET, multipart uploads, SSE, subscriptions, CORS preflights) goes to yoga.
 * Set GRAPHQL_FAST_PATH=0 to send every request to yoga.
 *
 * A subscription in a plain JSON POST is answered by yoga as a stream (text/event-stream), which this path
 * passes on with backpressure (pipeStream): nothing more is taken from the stream while the client's socket is
 * full, and a client with more than limits.maxStreamBufferBytes unsent is cut.
 */
export function createJsonFastPath(yoga: YogaServer, logger: Logger, observer: FastPathObserver = {}) {
  const send = (res: ServerResponse, status: number, body: string, contentType: string) => {
    res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const requestErrors = (res: ServerResponse, status: number, errors: readonly { message: string }[], ct: string) =>
    send(res, ct.startsWith('application/json') ? 200 : status, JSON.stringify({ errors: errors.map(errorJson) }), ct);

  /** Documents (the parser cache's objects, so the same one each time a query repeats) known to be valid. */
  const validDocuments = new WeakSet<DocumentNode>();

  const limits = securityOf(yoga)?.limits ?? DEFAULT_LIMITS;
  // The same body limit as yoga's path (src/http/yoga.ts, MAX_BODY_BYTES).
  const maxBody = limits.maxBodyBytes;

  /**
   * Lets yoga answer a request whose body was already read, through its Fetch API: rare cases (errors), and
   * subscriptions, which yoga answers as a stream.
   */
  const delegate = async (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const headers: [string, string][] = [];
    for (const [k, v] of Object.entries(req.headers)) {
      if (v === undefined || k === 'content-length' || k === 'transfer-encoding' || k === 'connection') continue;
      headers.push([k, Array.isArray(v) ? v.join(', ') : v]);
    }
    const response = await yoga.fetch(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/graphql'}`, { method: 'POST', headers, body }, {
      req,
      res,
    } as never);
    const outHeaders: Record<string, string> = {};
    response.headers.forEach((v, k) => (outHeaders[k] = v));
    const type = response.headers.get('content-type') ?? '';
    if (response.body && (type.startsWith('text/event-stream') || type.startsWith('multipart/mixed'))) {
      // A stream (yoga answers a subscription in a plain JSON POST over SSE).
      res.writeHead(response.status, outHeaders);
      const outcome = await pipeStream(response.body, res, limits.maxStreamBufferBytes);
      if (outcome.slowConsumer) {
        observer.refused?.('streamBuffer');
        logger.warn(
          { reqId: requestIdOf(req), unsentBytes: outcome.unsentBytes, limit: limits.maxStreamBufferBytes },
          'stream client too slow: unsent bytes over STREAM_MAX_BUFFER_BYTES; connection cut (SLOW_CONSUMER)',
        );
      }
      return;
    }
    const out = Buffer.from(await response.arrayBuffer());
    res.writeHead(response.status, { ...outHeaders, 'content-length': out.length });
    res.end(out);
  };
  const corsHeaders = securityOf(yoga)?.corsHeaders;

  return (req: IncomingMessage, res: ServerResponse): boolean => {
    if (req.method !== 'POST') return false;
    const type = req.headers['content-type'];
    if (!type || !type.startsWith('application/json')) return false;
    const accept = req.headers.accept ?? '';
    // SSE subscriptions are yoga's (others are handed to it once the operation is known).
    if (accept.includes('text/event-stream')) return false;
    const origin = req.headers.origin;
    if (origin !== undefined) {
      // A browser. A JSON POST always passes CSRF prevention (its content type forces a preflight); CORS
      // headers are yoga's own for this origin (none unless it is in CORS_ORIGINS).
      if (!corsHeaders) return false;
      const cors = corsHeaders(origin);
      if (cors) for (const [k, v] of Object.entries(cors)) res.setHeader(k, v);
    }
    // GraphQL over HTTP: answer application/graphql-response+json when the client accepts it first.
    const ct =
      accept.includes('application/graphql-response+json') &&
      (!accept.includes('application/json') || accept.indexOf('application/graphql-response+json') < accept.indexOf('application/json'))
        ? 'application/graphql-response+json; charset=utf-8'
        : 'application/json; charset=utf-8';

    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    // A client that goes away mid-body: nothing to answer.
    req.on('error', () => undefined);
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBody) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => {
      // 413 whatever the Accept header (as yoga answers).
      if (tooLarge) return send(res, 413, JSON.stringify({ errors: [errorJson(bodyTooLarge(maxBody))] }), ct);
      void (async () => {
        const raw = Buffer.concat(chunks, size);
        let params: { query?: unknown; variables?: unknown; operationName?: unknown; extensions?: unknown };
        try {
          params = JSON.parse(raw.toString('utf8'));
        } catch {
          return delegate(req, res, raw);
        }
        // Anything but a plain request (bad JSON, a batch, a missing or mistyped parameter, an unknown one) is
        // answered by yoga itself, so that both paths give the same status, headers and errors.
        if (!isPlainParams(params)) return delegate(req, res, raw);
        const operationName = typeof params.operationName === 'string' ? params.operationName : undefined;
        const request = { method: 'POST', url: req.url, headers: new NodeHeaders(req.headers) };
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
        // A document that passed validation once is valid for good (one schema, fixed rules); yoga's cache would
        // answer the same, but only after running every plugin's validation hooks (~10 µs per request).
        if (!validDocuments.has(document)) {
          const errors = validate(schema, document);
          if (errors.length > 0) return requestErrors(res, 400, errors, ct);
          validDocuments.add(document);
        }
        const operation = getOperationAST(document, operationName);
        if (!operation || operation.operation === 'subscription') return delegate(req, res, raw);
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
        if (result.errors?.length) {
          // Errors may ask for an HTTP status and headers (the auth gate: 401/403 with WWW-Authenticate), as in yoga.
          const { status, headers } = httpOfErrors(result.errors, ct.startsWith('application/json'));
          if (status !== 200 || headers) {
            res.writeHead(status, { ...headers, 'content-type': ct, 'content-length': Buffer.byteLength(body) });
            res.end(body);
            return;
          }
        }
        send(res, 200, body, ct);
      })().catch((err: unknown) => {
        logger.error({ err, reqId: requestIdOf(req) }, 'unexpected error in the JSON fast path');
        if (!res.headersSent) requestErrors(res, 500, [{ message: 'Unexpected error.' }], ct);
        else res.destroy();
      });
    });
    return true;
  };
}

/**
 * Writes a stream's chunks to `res` with backpressure, then ends it: when the socket is full (`write` returns
 * false) nothing more is read from the stream until it drains, so a client that reads slowly holds the
 * server's streams back (a subscription's events then wait in the live layer, whose backlog is bounded) rather than
 * filling the server's memory. If a write still leaves more than `maxUnsentBytes` unsent, the client is cut
 * (the connection is destroyed: an HTTP stream has no way to say why once it has started). As a socket reports
 * itself full from 16 KiB on, that takes one chunk larger than the limit, or a limit below 16 KiB. The stream
 * is cancelled when the client goes away or is cut, which ends the subscription behind it.
 */
export async function pipeStream(
  body: ReadableStream<Uint8Array>,
  res: ServerResponse,
  maxUnsentBytes: number,
): Promise<{ slowConsumer: boolean; unsentBytes?: number }> {
  const reader = body.getReader();
  const cancel = () => void reader.cancel().catch(() => undefined);
  res.once('close', cancel);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      if (res.write(value)) continue;
      if (res.writableLength > maxUnsentBytes) {
        const unsentBytes = res.writableLength;
        res.destroy();
        return { slowConsumer: true, unsentBytes };
      }
      await drainOrClose(res);
      if (res.destroyed) break;
    }
    if (!res.destroyed) res.end();
    return { slowConsumer: false };
  } catch (err) {
    // The stream failed (yoga ends a failing subscription with an error event first, so this is rare): cut.
    res.destroy();
    throw err;
  } finally {
    res.off('close', cancel);
    if (res.destroyed) cancel();
  }
}

/** Resolves when `res` can take more data, or has closed. */
function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

const PARAMS = new Set(['query', 'variables', 'operationName', 'extensions']);
const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A JSON body the fast path serves: an object with a string query and well-typed optional parameters only. */
function isPlainParams(p: unknown): p is { query: string; variables?: Record<string, unknown> | null; operationName?: string | null } {
  if (!isObject(p)) return false;
  const params = p as Record<string, unknown>;
  for (const key of Object.keys(params)) if (params[key] != null && !PARAMS.has(key)) return false;
  if (typeof params.query !== 'string') return false;
  if (params.variables != null && !isObject(params.variables)) return false;
  if (params.operationName != null && typeof params.operationName !== 'string') return false;
  if (params.extensions != null && !isObject(params.extensions)) return false;
  return true;
}

/**
 * The status and headers errors ask for in `extensions.http` (the highest status wins), as yoga reads them:
 * a `spec` status (GraphQL over HTTP) does not apply to application/json answers.
 */
function httpOfErrors(errors: readonly unknown[], applicationJson: boolean): { status: number; headers?: Record<string, string> } {
  let status = 0;
  let headers: Record<string, string> | undefined;
  for (const err of errors) {
    const http = (err as GraphQLError).extensions?.http as { status?: number; spec?: boolean; headers?: Record<string, string> } | undefined;
    if (!http) continue;
    if (http.headers) headers = { ...headers, ...http.headers };
    if (applicationJson && http.spec) continue;
    if (http.status && http.status > status) status = http.status;
  }
  return { status: status || 200, headers };
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
