/**
 * The JSON fast path for non-browser GraphQL POSTs (see createJsonFastPath).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type DocumentNode, type ExecutionResult, getOperationAST, GraphQLError } from 'graphql/index.js';
import type { Logger } from '../log.js';
import type { YogaServer } from './yoga.js';

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
export function createJsonFastPath(yoga: YogaServer, logger: Logger) {
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

