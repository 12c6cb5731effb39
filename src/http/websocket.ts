/**
 * graphql-ws (subprotocol graphql-transport-ws) on /graphql of the same HTTP server, with yoga's envelop
 * (context, plugins, masked errors), as in yoga's graphql-ws recipe.
 *
 * Authentication happens once per connection, in `connection_init`: connectionParams
 * `{ authorization: "Bearer …" }` (`Authorization` is accepted too). A missing or wrong token closes the socket
 * with 4403 Forbidden (graphql-ws's code for a refused connection_init); a subscribe before the
 * acknowledgement is closed by graphql-ws with 4401 Unauthorized. Each operation then passes the same gate as
 * over HTTP (UNAUTHENTICATED / FORBIDDEN as an `error` message) and Pothos scope-auth.
 */
import type { Server } from 'node:http';
import { GraphQLError } from 'graphql/index.js';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { DEFAULT_LIMITS } from '../config.js';
import type { GraphQLContext } from '../resolvers/context.js';
import { type AuthResult, createAuthenticator, operationAuthError } from './auth.js';
import type { BrowserGuard } from './browser-guard.js';
import { securityOf, type YogaServer } from './yoga.js';

export function attachGraphQLWebSocket(httpServer: Server, yoga: YogaServer, guard?: BrowserGuard) {
  const sec = securityOf(yoga);
  // A yoga server not made by createYogaServer has no auth configured: behave as AUTH_MODE=none.
  const authenticator = sec?.authenticator ?? createAuthenticator({ mode: 'none' }, '');
  const maxPayload = sec?.limits.maxBodyBytes ?? DEFAULT_LIMITS.maxBodyBytes;
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
  // A frame that breaks the websocket protocol (too large, bad UTF-8, unmasked, …) is the client's fault: ws
  // closes the socket itself (1009, 1007, 1002, …). graphql-ws would print it to stderr as an internal error;
  // it is logged here as a warning instead.
  wsServer.on('connection', (socket) => {
    const emit = socket.emit.bind(socket) as (event: string | symbol, ...args: unknown[]) => boolean;
    socket.emit = ((event: string | symbol, ...args: unknown[]) => {
      const code = (args[0] as { code?: unknown } | undefined)?.code;
      if (event === 'error' && typeof code === 'string' && code.startsWith('WS_ERR_')) {
        sec?.logger.warn({ code }, 'websocket client broke the protocol; closed');
        return true;
      }
      return emit(event, ...args);
    }) as typeof socket.emit;
  });
  const authOf = new WeakMap<object, AuthResult>();
  type EnvelopedRoot = { execute: (args: unknown) => unknown; subscribe: (args: unknown) => unknown };
  return useServer(
    {
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args) as never,
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args) as never,
      onConnect: (ctx) => {
        const result = authenticator.fromConnectionParams(ctx.connectionParams);
        if (!result.ok) {
          // graphql-ws would close with "Forbidden"; say why (a close reason is at most 123 bytes).
          ctx.extra.socket.close(4403, `Forbidden: ${result.reason === 'missing' ? 'no bearer token in connectionParams.authorization' : result.reason === 'malformed' ? 'malformed bearer token' : 'invalid bearer token'}`);
          return false;
        }
        authOf.set(ctx, result);
        return true;
      },
      onSubscribe: async (ctx, _id, params) => {
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
      },
    },
    wsServer,
  );
}
