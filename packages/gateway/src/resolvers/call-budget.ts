/**
 * The upstream calls one GraphQL request may make (GRAPHQL_MAX_UPSTREAM_CALLS): the runtime side of the bound.
 * src/http/plugins/use-upstream-cost.ts refuses a request whose estimate is over the limit before it runs; this
 * budget counts the calls it really makes (each read or write through the request's UpstreamApi view, retries of
 * one call included; finished-job cache hits cost nothing) and refuses every call past the limit, so the bound
 * holds where the estimate is low (an events walk longer than one page, a job with several results files).
 * A subscription's budget is per event: the plugin resets it after each event.
 */
import { GraphQLError } from 'graphql/index.js';
import type { CallBudget } from '../upstream/client.js';

/** A field that would have needed an upstream call past the request's limit. */
export class UpstreamCallLimitError extends GraphQLError {
  constructor(max: number) {
    super(
      `This request has made the ${max} upstream calls one request may make; this field was not loaded. Ask for smaller pages or fewer nested lists, or split the request.`,
      { extensions: { code: 'QUERY_LIMIT_EXCEEDED', limit: 'upstreamCalls', max } },
    );
    this.name = 'UpstreamCallLimitError';
  }
}

export class RequestCallBudget implements CallBudget {
  private used = 0;

  constructor(readonly max: number) {}

  /** Counts one call, or throws UpstreamCallLimitError (and sends nothing) when `max` were made already. */
  spend(): void {
    if (this.used >= this.max) throw new UpstreamCallLimitError(this.max);
    this.used++;
  }

  /** A new allowance (a subscription's next event). */
  reset(): void {
    this.used = 0;
  }
}
