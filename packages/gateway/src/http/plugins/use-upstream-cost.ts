/**
 * The upstream work of one GraphQL request, bounded before it starts (GRAPHQL_MAX_UPSTREAM_CALLS,
 * GRAPHQL_MAX_NODES).
 *
 * Before an operation executes (or a subscription starts), when its variables are known, its upstream calls are
 * estimated (src/resolvers/upstream-cost.ts: `first: $n` counts as `$n`, nested connections multiply, every
 * `metrics`, file and node lookup counts); over `maxUpstreamCalls` it is refused with QUERY_LIMIT_EXCEEDED
 * (`limit: "upstreamCalls"`, `estimate`, `max`) and nothing is sent upstream. A `nodes(ids:)` with more than
 * `maxNodes` ids is refused the same way with BAD_USER_INPUT on `ids`, whether the ids are a literal or a
 * variable. GraphQL Armor's static cost rule (src/http/yoga.ts) still runs at validation; it sees literals only.
 *
 * An envelop hook, so it runs for yoga's HTTP path, the JSON fast path and graphql-ws alike. The request's call
 * budget (src/resolvers/call-budget.ts) enforces the same limit on the calls really made; for a subscription,
 * whose selection runs once per event, it is renewed after each event (use-per-event-context.ts).
 */
import type { DocumentNode, ExecutionArgs, ExecutionResult } from 'graphql/index.js';
import { GraphQLError } from 'graphql/index.js';
import type { Plugin } from 'graphql-yoga';
import type { Limits } from '../../config.js';
import type { GraphQLContext } from '../../resolvers/context.js';
import { type CostEstimate, costDependsOnVariables, estimateUpstreamCalls } from '../../resolvers/upstream-cost.js';

/** The refusal of an operation whose estimate is over the limit. */
export function tooManyUpstreamCalls(estimate: number, max: number): GraphQLError {
  return new GraphQLError(
    `This request would make up to ${estimate} upstream calls; one request may make at most ${max}. Ask for smaller pages (first) or fewer nested lists and per-item fields (metrics, files, events), or split the request.`,
    { extensions: { code: 'QUERY_LIMIT_EXCEEDED', limit: 'upstreamCalls', estimate, max, http: { spec: true, status: 400 } } },
  );
}

type Hook = {
  args: ExecutionArgs & { contextValue: GraphQLContext };
  setResultAndStopExecution: (result: ExecutionResult) => void;
};

export function useUpstreamCost(limits: Pick<Limits, 'maxUpstreamCalls' | 'maxNodes'>): Plugin<GraphQLContext> {
  const costLimits = { maxNodes: limits.maxNodes };
  /**
   * Estimates by document (the parser cache's objects) and operation name, for documents whose estimate no
   * variable changes (most: `fineTuningJob(id: $id) { … }`); null for the others, estimated each time. A cached
   * estimate skips the coercion of the variables here: execution still refuses those it cannot coerce.
   */
  const constant = new WeakMap<DocumentNode, Map<string, CostEstimate> | null>();
  const estimate = (args: ExecutionArgs): CostEstimate => {
    let byName = constant.get(args.document);
    if (byName === undefined) constant.set(args.document, (byName = costDependsOnVariables(args.document) ? null : new Map()));
    if (byName === null) return estimateUpstreamCalls(args as never, costLimits);
    const key = args.operationName ?? '';
    const found = byName.get(key);
    if (found) return found;
    const outcome = estimateUpstreamCalls(args as never, costLimits);
    // Errors (these variables cannot be coerced) are this request's own.
    if ('calls' in outcome) byName.set(key, outcome);
    return outcome;
  };
  const check = ({ args, setResultAndStopExecution }: Hook): void => {
    const outcome = estimate(args);
    if ('errors' in outcome) setResultAndStopExecution({ errors: outcome.errors });
    else if (outcome.calls > limits.maxUpstreamCalls) {
      setResultAndStopExecution({ errors: [tooManyUpstreamCalls(outcome.calls, limits.maxUpstreamCalls)] });
    }
  };
  return {
    onExecute: check as never,
    // Each event of a subscription runs the selection anew, with its own allowance (use-per-event-context.ts).
    onSubscribe: check as never,
  };
}
