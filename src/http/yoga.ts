/**
 * The yoga server: schema, GraphiQL, error masking and the envelop plugins. HTTP routing lives in src/app.ts.
 */
import { useGraphQlJit } from '@envelop/graphql-jit';
import { GraphQLError } from 'graphql/index.js';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { createContext, type GraphQLContext } from '../resolvers/context.js';
import { EXAMPLES } from '../schema/examples.js';
import { getSchema } from '../schema/index.js';
import type { Upstream } from '../upstream/client.js';
import { sanitizeMessage } from '../upstream/errors.js';

export type YogaServer = YogaServerInstance<Record<string, unknown>, GraphQLContext>;

export interface YogaOptions {
  /** Extra yoga/envelop plugins. */
  plugins?: Plugin<GraphQLContext>[];
  /** Adds request-independent values to every context (e.g. the live registry). */
  extendContext?: (ctx: GraphQLContext) => void;
}

export function createYogaServer(
  config: Config,
  upstream: Upstream,
  logger: Logger,
  opts: YogaOptions = {},
): YogaServer {
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

