/**
 * The GraphQL context: one per request (per subscription for websockets). Everything that touches the
 * upstream is keyed by `credential`; today it is the server's configured key, later it may come from the
 * request (auth modes), and only `createContext`'s caller changes.
 */
import { initContextCache } from '@pothos/core';
import type { Logger } from '../log.js';
import type { Upstream, UpstreamApi } from '../upstream/client.js';
import { RequestLoaders } from './loaders.js';

/**
 * Extension point for other modules (declaration merging), e.g. src/live adds its `pubsub`:
 *   declare module '../resolvers/context.js' { interface ContextExtensions { pubsub: MyPubSub } }
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface ContextExtensions {}

export interface GraphQLContext extends Partial<ContextExtensions> {
  /** The upstream credential of this request. Never logged, never returned. */
  credential: string;
  /** The upstream API bound to `credential`. */
  api: UpstreamApi;
  /** Per-request loaders (events/checkpoints pages, metrics); jobs and files load through Pothos loadables. */
  loaders: RequestLoaders;
  logger?: Logger;
}

export function createContext(upstream: Upstream, credential: string, logger?: Logger): GraphQLContext {
  const api = upstream.forCredential(credential);
  return {
    ...initContextCache(),
    credential,
    api,
    loaders: new RequestLoaders(api),
    logger,
  };
}
