/**
 * The yoga server: schema, GraphiQL, error masking and the envelop plugins. HTTP routing lives in src/app.ts.
 *
 * Security (issue 5), in the order a request meets it:
 * - CORS: only origins in CORS_ORIGINS get CORS headers (none by default; same-origin GraphiQL needs none);
 * - CSRF: a browser's cross-site "simple" request (GET, or a POST that is multipart, form-encoded or text/plain)
 *   must carry `x-graphql-yoga-csrf` (or `apollo-require-preflight`, `graphql-preflight`) — yoga's CSRF plugin;
 * - request size: JSON and other non-multipart bodies up to limits.maxBodyBytes (as in the fast path), multipart
 *   bodies up to limits.maxUploadBytes + 1 MiB, one file of at most limits.maxUploadBytes; before yoga, at most
 *   limits.maxConcurrentUploads multipart requests at once (src/http/upload-gate.ts, wired in src/app.ts);
 * - GraphQL Armor at parse/validation: max tokens, depth, aliases, directives and cost; field suggestions are
 *   hidden in production;
 * - authentication (src/http/auth.ts) in the context; the operation gate before execution; Pothos scope-auth
 *   on every root field;
 * - before execution, with the variables known (src/http/plugins): JSON-scalar inputs' depth and size
 *   (use-json-limits.ts), then the ids of `nodes` and the upstream calls the operation would make
 *   (use-upstream-cost.ts); the context's call budget refuses any call past the same limit while it runs.
 * The envelop plugins (armor, codes, gate, limits, masking) also run for the JSON fast path and graphql-ws, which
 * call `getEnveloped()`; the HTTP-only plugins (CORS, CSRF, body size) have their equivalents there.
 */
import { useGraphQlJit } from '@envelop/graphql-jit';
import { EnvelopArmor } from '@escape.tech/graphql-armor';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { renderGraphiQL } from '@graphql-yoga/render-graphiql';
import { createFetch } from '@whatwg-node/fetch';
import { type CORSOptions, getCORSHeadersByRequestAndOptions } from '@whatwg-node/server';
import {
  type ASTVisitor,
  type ExecutionArgs,
  type ExecutionResult,
  getOperationAST,
  getVariableValues,
  GraphQLError,
  Kind,
  type ValidationContext,
} from 'graphql/index.js';
import { createGraphQLError, createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import type { Config, Limits } from '../config.js';
import { type Logger, requestIdOf } from '../log.js';
import { MAX_PAGE_SIZE } from '../resolvers/connections.js';
import { createContext, type GraphQLContext } from '../resolvers/context.js';
import { EXAMPLES } from '../schema/examples.js';
import { getSchema } from '../schema/index.js';
import type { Upstream } from '../upstream/client.js';
import { sanitizeMessage } from '../upstream/errors.js';
import { type AuthResult, type Authenticator, createAuthenticator, operationAuthError } from './auth.js';
import { useJsonLimits } from './plugins/use-json-limits.js';
import { usePerEventContext } from './plugins/use-per-event-context.js';
import { useUpstreamCost } from './plugins/use-upstream-cost.js';

export type YogaServer = YogaServerInstance<Record<string, unknown>, GraphQLContext>;

export interface YogaOptions {
  /** Extra yoga/envelop plugins. */
  plugins?: Plugin<GraphQLContext>[];
  /** Adds request-independent values to every context (e.g. the live registry). */
  extendContext?: (ctx: GraphQLContext) => void;
}

/** What the other transports (fast path, graphql-ws) need to apply the same rules as yoga. */
export interface YogaSecurity {
  authenticator: Authenticator;
  limits: Limits;
  logger: Logger;
  /** The CORS headers yoga adds to the answer of an actual (not preflight) request with this Origin, or null. */
  corsHeaders(origin: string): Record<string, string> | null;
}
const security = new WeakMap<object, YogaSecurity>();

/** The authenticator and limits of a yoga server made by createYogaServer. */
export function securityOf(yoga: object): YogaSecurity | undefined {
  return security.get(yoga);
}

/** Headers that mark a request as deliberately made by script (they force a CORS preflight in browsers). */
export const CSRF_HEADERS = ['x-graphql-yoga-csrf', 'apollo-require-preflight', 'graphql-preflight'];

/** Message and code of a body over the size limit (the fast path answers the same). */
export const bodyTooLarge = (limit: number) =>
  createGraphQLError(`Request body is too large: at most ${limit} bytes.`, {
    extensions: { code: 'REQUEST_ENTITY_TOO_LARGE', http: { status: 413 } },
  });

/** A copy of `err` with more extensions (some errors, graphql-jit's, cannot be changed in place). */
function withExtensions(err: GraphQLError, extensions: Record<string, unknown>): GraphQLError {
  return new GraphQLError(err.message, {
    nodes: err.nodes,
    source: err.source,
    positions: err.positions,
    path: err.path,
    originalError: err.originalError ?? undefined,
    extensions: { ...err.extensions, ...extensions },
  });
}

/**
 * `first` written as a literal outside 0–MAX_PAGE_SIZE is reported while validating the document (with the
 * same message as the argument validation at execution, which handles variables), because GraphQL Armor's
 * cost rule multiplies by literal `first` values and would otherwise report only a cost overrun.
 */
function firstArgumentRule(context: ValidationContext): ASTVisitor {
  return {
    Argument(node) {
      if (node.name.value !== 'first' || node.value.kind !== Kind.INT) return;
      const n = Number(node.value.value);
      if (n < 0 || n > MAX_PAGE_SIZE) {
        context.reportError(
          new GraphQLError(`first: must be between 0 and ${MAX_PAGE_SIZE}`, {
            nodes: [node],
            extensions: { code: 'BAD_USER_INPUT', field: 'first' },
          }),
        );
      }
    },
  };
}

/**
 * Parse and validation errors get a code: GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, or (from GraphQL
 * Armor's rules) QUERY_LIMIT_EXCEEDED with `limit` naming which one. An out-of-range literal `first` hides the
 * cost overrun it causes.
 */
function useErrorCodes(): Plugin {
  // graphql-js's parse and validation errors have a mutable extensions object.
  const tag = (err: unknown, code: string) => {
    if (err instanceof GraphQLError && err.extensions && !err.extensions.code) (err.extensions as Record<string, unknown>).code = code;
  };
  /**
   * Variable coercion errors (no path, raised before execution) get BAD_USER_INPUT and the field: the path in
   * the variable (`input.hyperparameters.nEpochs`) or `$name`. graphql-jit words them after the innermost
   * field ("$nEpochs"), so they are recomputed with graphql-js, whose messages give the whole path.
   */
  const tagResult = (result: unknown, args: ExecutionArgs): ExecutionResult | undefined => {
    const r = result as ExecutionResult | null;
    const isCoercion = (err: GraphQLError) => !err.path && !err.extensions?.code && /^Variable "\$/.test(err.message);
    if (!r?.errors?.length || !r.errors.some(isCoercion)) return undefined;
    let coercion: readonly GraphQLError[] = r.errors.filter(isCoercion);
    const operation = getOperationAST(args.document, args.operationName ?? undefined);
    if (operation) {
      const exact = getVariableValues(args.schema, operation.variableDefinitions ?? [], (args.variableValues ?? {}) as Record<string, unknown>, {
        maxErrors: 20,
      });
      if (exact.errors?.length) coercion = exact.errors;
    }
    const tagged = coercion.map((err) => {
      const at = /^Variable "\$[A-Za-z_][A-Za-z0-9_]*" got invalid value .*? at "([^"]+)"/.exec(err.message)?.[1];
      const variable = /^Variable "\$([A-Za-z_][A-Za-z0-9_]*)"/.exec(err.message)?.[1];
      // GraphQL over HTTP: 400 for application/graphql-response+json, 200 for application/json (`spec`).
      return withExtensions(err, { code: 'BAD_USER_INPUT', field: at ?? `$${variable}`, http: { spec: true, status: 400 } });
    });
    return { ...r, errors: [...tagged, ...r.errors.filter((e) => !isCoercion(e))] };
  };
  return {
    onParse:
      () =>
      ({ result }) =>
        tag(result, 'GRAPHQL_PARSE_FAILED'),
    onExecute: ({ args }) => ({
      onExecuteDone: ({ result, setResult }) => {
        const tagged = tagResult(result, args);
        if (tagged) setResult(tagged);
      },
    }),
    onSubscribe: ({ args }) => ({
      onSubscribeResult: ({ result, setResult }) => {
        const tagged = tagResult(result, args);
        if (tagged) setResult(tagged);
      },
    }),
    // Errors of the request itself (yoga's path only; the fast path hands such requests to yoga): a code, and
    // 400 unless yoga chose a status.
    onResultProcess: ({ result, setResult }) => {
      if (!result || Array.isArray(result) || Symbol.asyncIterator in (result as object)) return;
      const r = result as ExecutionResult;
      if (r.data !== undefined && r.data !== null) return;
      if (!r.errors?.some((e) => e instanceof GraphQLError && !e.extensions?.code)) return;
      setResult({
        ...r,
        errors: r.errors.map((e) =>
          e instanceof GraphQLError && !e.extensions?.code ? withExtensions(e, { http: { status: 400 }, ...e.extensions, code: 'BAD_REQUEST' }) : e,
        ),
      } as never);
    },
    onValidate: ({ addValidationRule }) => {
      addValidationRule(firstArgumentRule);
      return ({ result, setResult }) => {
        for (const err of result) tag(err, 'GRAPHQL_VALIDATION_FAILED');
        const badFirst = result.some((e) => e.extensions?.code === 'BAD_USER_INPUT' && e.extensions?.field === 'first');
        if (badFirst) setResult(result.filter((e) => e.extensions?.limit !== 'cost'));
      };
    },
  };
}

/**
 * GraphQL Armor with our limits. A rejection is reported as a validation error (Armor's default throws out of
 * graphql-js's validate, which servers turn into a 500), says which limit (extensions.limit) and drops the
 * misleading "Syntax Error:" prefix. The token limit applies while parsing (a parse error).
 */
function armorPlugins(config: Config): Plugin[] {
  const { limits } = config;
  const onReject = (limit: string, report: boolean) => [
    (ctx: ValidationContext | null, err: GraphQLError) => {
      err.message = err.message.replace(/^Syntax Error: /, '');
      Object.assign(err.extensions as Record<string, unknown>, { code: 'QUERY_LIMIT_EXCEEDED', limit });
      if (report) ctx?.reportError(err);
    },
  ];
  const armor = new EnvelopArmor({
    maxTokens: { n: limits.maxTokens, onReject: onReject('tokens', false), propagateOnRejection: true },
    maxDepth: { n: limits.maxDepth, onReject: onReject('depth', true), propagateOnRejection: false, flattenFragments: true },
    maxAliases: { n: limits.maxAliases, onReject: onReject('aliases', true), propagateOnRejection: false },
    maxDirectives: { n: limits.maxDirectives, onReject: onReject('directives', true), propagateOnRejection: false },
    costLimit: { maxCost: limits.maxCost, onReject: onReject('cost', true), propagateOnRejection: false },
    // Field suggestions ("Did you mean …?") describe the schema to a prober; hidden in production.
    blockFieldSuggestion: { enabled: config.production },
  });
  return armor.protect().plugins as Plugin[];
}

/** An error of ours or of GraphQL itself (shown as it is); anything else is a bug, masked and logged. */
function isExpected(error: unknown): boolean {
  if (!(error instanceof GraphQLError)) return false;
  const original = error.originalError;
  return original === undefined || original === null || original instanceof GraphQLError || Boolean(error.extensions?.code);
}

/**
 * Logs the unexpected errors of a result through the request's logger (its reqId), before yoga's masking (a later
 * plugin) replaces them with "Unexpected error.". Results of queries, mutations and each subscription event.
 */
function useUnexpectedErrorLog(): Plugin<GraphQLContext> {
  const logErrors = (ctx: GraphQLContext, result: unknown) => {
    const errors = (result as ExecutionResult | null)?.errors;
    if (!errors?.length) return;
    for (const error of errors) {
      if (!isExpected(error)) ctx.log()?.error({ err: (error as GraphQLError).originalError ?? error }, 'unexpected error in a resolver');
    }
  };
  const onResult =
    (ctx: GraphQLContext) =>
    ({ result }: { result: unknown }) => {
      if (result && typeof result === 'object' && Symbol.asyncIterator in result) return { onNext: ({ result: r }: { result: unknown }) => logErrors(ctx, r) };
      logErrors(ctx, result);
      return undefined;
    };
  return {
    onExecute: ({ args }) => ({ onExecuteDone: onResult(args.contextValue) as never }),
    onSubscribe: ({ args }) => ({ onSubscribeResult: onResult(args.contextValue) as never }),
  };
}

/** A POST with a content type no parser takes gets a 415 that says what to send (yoga's has no body). */
function useUnsupportedMediaType(): Plugin {
  return {
    onRequestParse({ request, requestParser }) {
      if (requestParser || request.method !== 'POST') return;
      const type = request.headers.get('content-type');
      throw createGraphQLError(
        `Unsupported Content-Type ${type ? JSON.stringify(type.split(';')[0]) : '(none)'}: send application/json, or multipart/form-data for uploads.`,
        { extensions: { code: 'UNSUPPORTED_MEDIA_TYPE', http: { status: 415 } } },
      );
    },
  };
}

/** Refuses an operation whose caller lacks its scope before anything executes (see operationAuthError). */
function useOperationGate(): Plugin<GraphQLContext> {
  const check = ({
    args,
    setResultAndStopExecution,
  }: {
    args: { document: never; operationName?: string | null; contextValue: GraphQLContext };
    setResultAndStopExecution: (r: never) => void;
  }) => {
    const error = operationAuthError(args.document, args.operationName, args.contextValue.auth);
    if (error) setResultAndStopExecution({ errors: [error] } as never);
  };
  return { onExecute: check as never, onSubscribe: check as never };
}

/** A document with one operation (see the graphql-jit plugin in createYogaServer). */
function singleOperation(args: ExecutionArgs): boolean {
  let operations = 0;
  for (const d of args.document.definitions) if (d.kind === Kind.OPERATION_DEFINITION && ++operations > 1) return false;
  return true;
}

/** Past this many times the limit, an oversized body is no longer drained. */
const DRAIN_LIMIT_FACTOR = 16;

/** Non-multipart bodies up to maxBodyBytes, counted while streaming too (chunked bodies have no Content-Length). */
function useBodyLimit(limit: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      const type = request.headers.get('content-type') ?? '';
      if (request.method !== 'POST' || type.toLowerCase().startsWith('multipart/form-data')) return;
      const length = request.headers.get('content-length');
      if (length !== null && /^\d+$/.test(length) && Number(length) > limit) throw bodyTooLarge(limit);
      if (!requestParser || !request.body) return;
      const parse = requestParser;
      setRequestParser(async (req) => {
        const reader = req.body!.getReader();
        const chunks: Uint8Array[] = [];
        let size = 0;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          size += value.byteLength;
          if (size <= limit) chunks.push(value);
          else if (size > DRAIN_LIMIT_FACTOR * limit) {
            // Far too large: stop reading (the client may then see the connection reset).
            await reader.cancel().catch(() => undefined);
            break;
          }
          // Otherwise keep reading and dropping: a client that sends its whole body before reading the answer
          // (most do) would wait forever for a server that stopped reading.
        }
        if (size > limit) throw bodyTooLarge(limit);
        return parse(new fetchAPI.Request(req.url, { method: req.method, headers: req.headers, body: Buffer.concat(chunks) }));
      });
    },
  };
}

/**
 * yoga's CSRF prevention, for requests from browsers other than same-origin ones (CSRF is a browser attack:
 * a request with neither an Origin nor a Sec-Fetch-Site header was not sent by a web page).
 */
function useCsrf(): Plugin {
  const inner = useCSRFPrevention({ requestHeaders: CSRF_HEADERS }) as Plugin;
  return {
    onRequestParse(payload) {
      const site = payload.request.headers.get('sec-fetch-site');
      if (site === 'same-origin') return;
      if (site === null && !payload.request.headers.has('origin')) return;
      try {
        return inner.onRequestParse!(payload);
      } catch {
        throw createGraphQLError(
          `A cross-site browser request with a simple content type (or a GET) needs one of the headers ${CSRF_HEADERS.join(', ')} (CSRF prevention); JSON POSTs need none.`,
          { extensions: { code: 'CSRF_HEADER_REQUIRED', http: { status: 403 } } },
        );
      }
    },
  };
}

export function createYogaServer(config: Config, upstream: Upstream, logger: Logger, opts: YogaOptions = {}): YogaServer {
  const secrets = [config.backend.apiKey, config.backend.baseURL ?? ''].filter((s) => s.length >= 4);
  const authenticator = createAuthenticator(config.auth, config.backend.apiKey);
  const { limits } = config;
  const corsOrigins = new Set(config.corsOrigins);
  /** CORS_ORIGINS: only listed origins get CORS headers (none by default). */
  const corsOptions = (request: { headers: { get(name: string): string | null } }): CORSOptions => {
    const origin = request.headers.get('origin');
    if (origin === null || !corsOrigins.has(origin)) return false;
    return {
      origin: [origin],
      credentials: false,
      methods: ['GET', 'POST', 'OPTIONS'],
      allowedHeaders: ['authorization', 'content-type', 'accept', ...CSRF_HEADERS],
      maxAge: 600,
    };
  };
  const yoga = createYoga<Record<string, unknown>, GraphQLContext>({
    schema: getSchema(),
    graphqlEndpoint: '/graphql',
    landingPage: false,
    // One file per request, of at most maxUploadBytes; the whole multipart body at most that plus 1 MiB. The
    // parsed file keeps the parser's chunks (no copy) and is streamed from them to the upstream
    // (UpstreamApi.uploadFile); how many are parsed at once is src/http/upload-gate.ts's business.
    fetchAPI: createFetch({
      formDataLimits: { fileSize: limits.maxUploadBytes, files: 1, fieldSize: limits.maxBodyBytes, fields: 16, parts: 32 },
    }) as never,
    maxRequestBodySize: limits.maxUploadBytes + 1024 * 1024,
    batching: false,
    cors: corsOptions,
    logging: {
      debug: (...a: unknown[]) => logger.debug({ yoga: a.map(String) }, 'yoga'),
      info: (...a: unknown[]) => logger.info({ yoga: a.map(String) }, 'yoga'),
      warn: (...a: unknown[]) => logger.warn({ yoga: a.map(String) }, 'yoga'),
      error: (...a: unknown[]) => logger.error({ yoga: a.map(String) }, 'yoga'),
    },
    // GraphiQL with its scripts and styles inlined (@graphql-yoga/render-graphiql): the page works with no network,
    // where yoga's default page loads them from a CDN.
    renderGraphiQL,
    graphiql: config.graphiql
      ? {
          title: 'Fine-tuning GraphQL API',
          // Subscriptions in GraphiQL go over the graphql-ws websocket on /graphql. When clients must
          // authenticate, over SSE instead: it sends the Authorization header set in GraphiQL's headers editor,
          // which GraphiQL does not put into the websocket's connectionParams.
          subscriptionsProtocol: config.auth.mode === 'none' ? 'WS' : 'SSE',
          defaultQuery: EXAMPLES[0]!.query,
          defaultTabs: EXAMPLES.map((e) => ({
            query: e.query,
            variables: e.variables ? JSON.stringify(e.variables, null, 2) : null,
          })),
        }
      : false,
    context: (initial) => {
      // graphql-ws authenticated the connection in connection_init (src/http/websocket.ts); HTTP and SSE
      // requests carry an Authorization header.
      const fromSocket = (initial as { wsAuth?: AuthResult }).wsAuth;
      const request = (initial as { request?: { headers?: { get(name: string): string | null } } }).request;
      const auth = fromSocket ?? authenticator.fromHeader(request?.headers?.get('authorization'));
      const ctx = createContext(upstream, auth, logger, requestIdOf((initial as { req?: unknown }).req), limits.maxUpstreamCalls);
      opts.extendContext?.(ctx);
      return ctx;
    },
    maskedErrors: {
      // Unexpected errors are logged (with the request's id) by useUnexpectedErrorLog, which sees them first.
      maskError(error) {
        if (isExpected(error)) {
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
        return new GraphQLError('Unexpected error.', {
          nodes: error instanceof GraphQLError ? error.nodes : undefined,
          path: error instanceof GraphQLError ? error.path : undefined,
          extensions: { code: 'INTERNAL_SERVER_ERROR' },
        });
      },
    },
    plugins: [
      useCsrf(),
      useUnsupportedMediaType(),
      useBodyLimit(limits.maxBodyBytes),
      ...armorPlugins(config),
      useErrorCodes(),
      useUnexpectedErrorLog(),
      useOperationGate(),
      // graphql-jit caches its compiled query by document alone, whatever the operation: a document with several
      // operations (GraphiQL's example tabs) would run the first one compiled for every other. Those go to graphql-js.
      ...(config.jit ? [useGraphQlJit({}, { enableIf: singleOperation }) as Plugin<GraphQLContext>] : []),
      ...(opts.plugins ?? []),
      // After the others (metrics, rate limit): a refusal here is still counted, and a rate-limited request costs no estimate.
      useJsonLimits(limits),
      useUpstreamCost(limits),
      usePerEventContext(),
    ],
  });
  security.set(yoga, {
    authenticator,
    limits,
    logger,
    // yoga's own function (@whatwg-node/server), so that the fast path answers browsers with the same headers.
    corsHeaders: (origin) => {
      const request = { headers: { get: (name: string) => (name.toLowerCase() === 'origin' ? origin : null) } };
      return getCORSHeadersByRequestAndOptions(request as never, corsOptions(request));
    },
  });
  return yoga;
}
