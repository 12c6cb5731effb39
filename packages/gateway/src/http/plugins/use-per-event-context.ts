/**
 * A subscription's selection runs once per event, with the context made when the subscription started. What a
 * context caches belongs to one execution: the per-request loaders (events and checkpoints pages, metrics), Pothos'
 * loadable caches (jobs and files by id) and the upstream-call allowance. Left alone they would make every event of
 * `fineTuningJobUpdated { events metrics }` repeat what was loaded for the first one; so after each event the
 * context gets fresh ones (renewForNextEvent), and the next event reads the upstream as it is then.
 */
import type { Plugin } from 'graphql-yoga';
import { type GraphQLContext, renewForNextEvent } from '../../resolvers/context.js';

export function usePerEventContext(): Plugin<GraphQLContext> {
  return {
    onSubscribe({ args }) {
      const ctx = args.contextValue;
      return { onSubscribeResult: () => ({ onNext: () => renewForNextEvent(ctx) }) };
    },
  };
}
