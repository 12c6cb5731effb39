/**
 * graphql-ws (subprotocol graphql-transport-ws) on /graphql of the same HTTP server, with yoga's envelop
 * (context, plugins, masked errors), as in yoga's graphql-ws recipe.
 *
 * Authentication happens once per connection, in `connection_init`: connectionParams
 * `{ authorization: "Bearer …" }` (`Authorization` is accepted too). A missing or wrong token closes the socket
 * with 4403 Forbidden (graphql-ws's code for a refused connection_init); a subscribe before the
 * acknowledgement is closed by graphql-ws with 4401 Unauthorized. Each operation then passes the same gate as
 * over HTTP (UNAUTHENTICATED / FORBIDDEN as an `error` message) and Pothos scope-auth.
 *
 * What one socket can make the server hold is bounded:
 * - operations open at once: at most limits.maxSubscriptionsPerSocket (MAX_SUBSCRIPTIONS_PER_SOCKET). One more
 *   gets an `error` message with code LIMIT_EXCEEDED at once, before anything is parsed, validated or built for
 *   it (a flood of refused frames costs a JSON parse and a small reply each); the socket's other operations go on;
 * - unsent bytes: graphql-ws waits for each message of an operation to be written before it takes the next one,
 *   so a client that reads slowly holds back its own streams (whose events then wait in the live layer's inbox,
 *   itself bounded). A socket whose unsent bytes still pass limits.maxStreamBufferBytes (STREAM_MAX_BUFFER_BYTES:
 *   many operations, many refusals) is closed with 1008 and a reason starting with SLOW_CONSUMER, and cut
 *   if its close does not complete within CLOSE_GRACE_MS (a client that does not read never sees the close frame).
 *   A client that stops reading altogether is also cut by graphql-ws's keep-alive (a ping every 12 s, cut when
 *   no pong came 12 s later);
 * - a client that goes away mid-delivery (EPIPE, ECONNRESET) and a frame that breaks the protocol are logged as
 *   one warning (JSON, no stack) rather than printed to stderr by graphql-ws.
 * The messages one turn of the event loop sends on a socket go out in one write (the socket is corked until the
 * next tick).
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import { GraphQLError } from 'graphql/index.js';
import type { Context, SubscribePayload } from 'graphql-ws';
import { type Extra, useServer } from 'graphql-ws/use/ws';
import { WebSocketServer, type WebSocket } from 'ws';
import { DEFAULT_LIMITS } from '../config.js';
import { requestIdOf } from '../log.js';
import type { GraphQLContext } from '../resolvers/context.js';
import { type AuthResult, createAuthenticator, operationAuthError } from './auth.js';
import type { BrowserGuard } from './browser-guard.js';
import { securityOf, type YogaServer } from './yoga.js';

/** How long a slow consumer's close may take before its socket is cut. */
const CLOSE_GRACE_MS = 2_000;

/** Close code of a slow consumer (policy violation; graphql-ws's client does not reconnect by itself after it). */
export const SLOW_CONSUMER_CLOSE_CODE = 1008;

/** Hooks for metrics (all optional). */
export interface WebSocketObserver {
  /** An operation or a socket refused by a limit (subscriptionsPerSocket, streamBuffer). */
  refused?(limit: string): void;
}

export function attachGraphQLWebSocket(httpServer: Server, yoga: YogaServer, guard?: BrowserGuard, observer: WebSocketObserver = {}) {
  const sec = securityOf(yoga);
  // A yoga server not made by createYogaServer has no auth configured: behave as AUTH_MODE=none.
  const authenticator = sec?.authenticator ?? createAuthenticator({ mode: 'none' }, '');
  const limits = sec?.limits ?? DEFAULT_LIMITS;
  const maxPayload = limits.maxBodyBytes;
  const maxOperations = limits.maxSubscriptionsPerSocket;
  const maxBuffered = limits.maxStreamBufferBytes;
  // One error for every refusal: building it (and its stack) per refused frame would be most of a refusal's cost.
  const tooManyOperations = [
    new GraphQLError(
      `Too many operations open on this websocket: at most ${maxOperations} at once (MAX_SUBSCRIPTIONS_PER_SOCKET). ` +
        'Complete one first, or open another connection.',
      { extensions: { code: 'LIMIT_EXCEEDED', limit: 'subscriptionsPerSocket', max: maxOperations } },
    ),
  ];
  // Frames larger than the HTTP body limit are refused by ws itself (close 1009).
  // Upgrades from other sites' pages, and (AUTH_MODE=none) for foreign host names, are refused with 403.
  const wsServer = new WebSocketServer({
    server: httpServer,
    path: '/graphql',
    maxPayload,
    verifyClient: guard
      ? (info: { origin?: string; req: { headers: { host?: string } } }, done: (ok: boolean, code?: number, message?: string) => void) =>
          guard.websocketAllowed(info.origin || undefined, info.req.headers.host) ? done(true) : done(false, 403, 'Forbidden')
      : undefined,
  });
  // Registered before graphql-ws's own listener, so each socket is wrapped before graphql-ws uses it.
  wsServer.on('connection', (socket, request) => guardSocket(socket, request));

  function guardSocket(socket: WebSocket, request: IncomingMessage) {
    const raw: Socket = request.socket;
    // The lines carry the id of the upgrade request (src/app.ts notes it), as those of the socket's operations do.
    const reqId = () => requestIdOf(request);
    // A frame that breaks the websocket protocol (too large, bad UTF-8, unmasked, …) is the client's fault: ws
    // closes the socket itself (1009, 1007, 1002, …). graphql-ws would print it to stderr as an internal error.
    const emit = socket.emit.bind(socket) as (event: string | symbol, ...args: unknown[]) => boolean;
    socket.emit = ((event: string | symbol, ...args: unknown[]) => {
      const code = (args[0] as { code?: unknown } | undefined)?.code;
      if (event === 'error' && typeof code === 'string' && code.startsWith('WS_ERR_')) {
        sec?.logger.warn({ reqId: reqId(), code }, 'websocket client broke the protocol; closed');
        return true;
      }
      return emit(event, ...args);
    }) as typeof socket.emit;

    // graphql-ws awaits each send; a failed write (the client went away mid-delivery) would reject out of its
    // message handler, which prints the error's stack to stderr. The socket is closing anyway: the failure is
    // logged once and the send reported done, after which graphql-ws sends nothing more (the socket is not open).
    let writeFailed = false;
    let cut = false;
    // The messages sent in one turn (e.g. the answers to a burst of frames) go out in one write: a write (a
    // system call) per message was most of the cost of refusing a flood of frames.
    let corked = false;
    const uncork = () => {
      corked = false;
      raw.uncork();
    };
    const send = socket.send.bind(socket) as (data: unknown, options: object, cb?: (err?: Error) => void) => void;
    socket.send = ((data: unknown, options?: object | ((err?: Error) => void), cb?: (err?: Error) => void) => {
      const callback = typeof options === 'function' ? options : cb;
      if (!corked && !raw.destroyed) {
        corked = true;
        raw.cork();
        process.nextTick(uncork);
      }
      send(data, typeof options === 'function' || !options ? {} : options, (err) => {
        if (err && !writeFailed && !cut) {
          writeFailed = true;
          sec?.logger.warn({ reqId: reqId(), code: (err as { code?: unknown }).code ?? err.message }, 'websocket client went away mid-delivery; closed');
        }
        callback?.();
      });
      if (!cut && socket.bufferedAmount > maxBuffered) cutSlowConsumer();
    }) as typeof socket.send;

    const cutSlowConsumer = () => {
      cut = true;
      observer.refused?.('streamBuffer');
      sec?.logger.warn(
        { reqId: reqId(), bufferedBytes: socket.bufferedAmount, limit: maxBuffered },
        'websocket client too slow: unsent bytes over STREAM_MAX_BUFFER_BYTES; closed (SLOW_CONSUMER)',
      );
      // At most 123 bytes.
      socket.close(SLOW_CONSUMER_CLOSE_CODE, `SLOW_CONSUMER: over STREAM_MAX_BUFFER_BYTES (${maxBuffered}) bytes unsent; reconnect with \`after\``);
      setTimeout(() => socket.terminate(), CLOSE_GRACE_MS).unref();
    };
  }

  const authOf = new WeakMap<object, AuthResult>();
  /** Ids of the operations each connection has open (accepted and not yet completed). */
  const openOf = new WeakMap<object, Set<string>>();
  type EnvelopedRoot = { execute: (args: unknown) => unknown; subscribe: (args: unknown) => unknown };

  /** Parse, validation, context and the operation gate of an operation within the socket's limit. */
  const prepare = async (ctx: Context<Record<string, unknown> | undefined, Extra>, params: SubscribePayload) => {
    const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
      ...ctx,
      req: ctx.extra.request,
      socket: ctx.extra.socket,
      params,
      wsAuth: authOf.get(ctx),
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
    const contextValue = (await contextFactory()) as unknown as GraphQLContext;
    const denied = operationAuthError(document, params.operationName, contextValue.auth, { http: false });
    if (denied) return [denied];
    return {
      schema,
      operationName: params.operationName,
      document,
      variableValues: params.variables,
      contextValue,
      rootValue: { execute, subscribe },
    };
  };

  return useServer(
    {
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args) as never,
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args) as never,
      onConnect: (ctx) => {
        const result = authenticator.fromConnectionParams(ctx.connectionParams);
        if (!result.ok) {
          // graphql-ws would close with "Forbidden"; say why (a close reason is at most 123 bytes).
          ctx.extra.socket.close(
            4403,
            `Forbidden: ${result.reason === 'missing' ? 'no bearer token in connectionParams.authorization' : result.reason === 'malformed' ? 'malformed bearer token' : 'invalid bearer token'}`,
          );
          return false;
        }
        authOf.set(ctx, result);
        openOf.set(ctx, new Set());
        return true;
      },
      onSubscribe: (ctx, id, params) => {
        const open = openOf.get(ctx)!;
        if (open.size >= maxOperations) {
          // graphql-ws forgets an operation that ended without completing (e.g. its subscribe threw): keep only
          // those it still has.
          for (const known of open) if (!(known in ctx.subscriptions)) open.delete(known);
          if (open.size >= maxOperations) {
            observer.refused?.('subscriptionsPerSocket');
            return tooManyOperations;
          }
        }
        open.add(id);
        return prepare(ctx, params).then(
          (result) => {
            if (Array.isArray(result)) open.delete(id);
            return result;
          },
          (err: unknown) => {
            open.delete(id);
            throw err;
          },
        );
      },
      onComplete: (ctx, id) => {
        openOf.get(ctx)?.delete(id);
      },
    },
    wsServer,
  );
}
