/**
 * The GraphQL context: one per request (per subscription for websockets). Everything that touches the
 * upstream is keyed by `credential`, which src/http/auth.ts picks per request from AUTH_MODE: the server's
 * key (tokens, none) or the caller's own key (passthrough). A request whose authentication failed gets an
 * empty credential and no scopes: every field refuses it, and the upstream client refuses an empty key
 * without calling out.
 */
import { initContextCache } from '@pothos/core';
import type { AuthResult, RequestAuth, Scope } from '../http/auth.js';
import type { Logger } from '../log.js';
import type { Upstream, UpstreamApi } from '../upstream/client.js';
import { RequestCallBudget } from './call-budget.js';
import { RequestLoaders } from './loaders.js';

/**
 * Extension point for other modules (declaration merging), e.g. src/live adds its `pubsub`:
 *   declare module '../resolvers/context.js' { interface ContextExtensions { pubsub: MyPubSub } }
 */
// biome-ignore lint/suspicious/noEmptyInterface: an extension point, filled by declaration merging
export interface ContextExtensions {}

export interface GraphQLContext extends Partial<ContextExtensions> {
  /** The upstream credential of this request. Never logged, never returned. */
  credential: string;
  /** The upstream API bound to `credential` (and to `calls`). */
  api: UpstreamApi;
  /** The upstream calls this request has made and may make (GRAPHQL_MAX_UPSTREAM_CALLS); absent: unbounded. */
  calls?: RequestCallBudget;
  /** Per-request loaders (events/checkpoints pages, metrics); jobs and files load through Pothos loadables. */
  loaders: RequestLoaders;
  auth: RequestAuth;
  /** The request's logger (its reqId and principal bound), made when a first line is written. */
  log(): Logger | undefined;
}

const ALL_SCOPES: ReadonlySet<Scope> = new Set<Scope>(['read', 'write']);
const NO_SCOPES: ReadonlySet<Scope> = new Set<Scope>();

/**
 * A context for `credential` with every scope (the server's own key, or tests). `auth` may narrow it:
 * pass an AuthResult from src/http/auth.ts. With `maxUpstreamCalls`, the request's upstream view refuses every
 * call past that many (see call-budget.ts).
 */
export function createContext(upstream: Upstream, credential: string | AuthResult, logger?: Logger, reqId?: string, maxUpstreamCalls?: number): GraphQLContext {
  let auth: RequestAuth;
  let key: string;
  if (typeof credential === 'string') {
    key = credential;
    auth = { authenticated: true, scopes: ALL_SCOPES, principalId: 'anonymous' };
  } else if (credential.ok) {
    key = credential.principal.credential;
    auth = {
      authenticated: true,
      scopes: credential.principal.scopes,
      principalId: credential.principal.id,
      ...(credential.principal.ratePerMinute !== undefined ? { ratePerMinute: credential.principal.ratePerMinute } : {}),
    };
  } else {
    key = '';
    auth = { authenticated: false, scopes: NO_SCOPES, principalId: 'unauthenticated', failure: credential.message };
  }
  let child: Logger | undefined;
  const log = () => {
    if (!logger || child) return child ?? logger;
    const bindings: Record<string, string> = {};
    if (reqId) bindings.reqId = reqId;
    if (auth.principalId !== 'anonymous') bindings.principal = auth.principalId;
    child = Object.keys(bindings).length ? logger.child(bindings) : logger;
    return child;
  };
  const calls = maxUpstreamCalls === undefined ? undefined : new RequestCallBudget(maxUpstreamCalls);
  const api = upstream.forCredential(key).forRequest(log, calls);
  return {
    ...initContextCache(),
    credential: key,
    api,
    calls,
    loaders: new RequestLoaders(api),
    auth,
    log,
  };
}

/**
 * Fresh per-execution state for a subscription's next event (see src/http/plugins/use-per-event-context.ts):
 * loaders, Pothos' context caches and the upstream-call allowance.
 */
export function renewForNextEvent(ctx: GraphQLContext): void {
  Object.assign(ctx, initContextCache());
  ctx.loaders = new RequestLoaders(ctx.api);
  ctx.calls?.reset();
}
