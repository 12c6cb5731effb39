/**
 * Subscriptions: live events and job states, served over graphql-ws (`/graphql`, subprotocol
 * graphql-transport-ws) and over SSE (POST /graphql with `Accept: text/event-stream`).
 * The work happens in src/live: one shared poller per (credential, job).
 */
import { type LiveJobs, type LiveScope, type LiveUpstream, isLiveFailure, type LiveFailure, openAiLiveUpstream } from '../live/index.js';
import type { GraphQLContext } from '../resolvers/context.js';
import { expectId } from '../resolvers/ids.js';
import type { UpstreamApi } from '../upstream/client.js';
import type { RawEvent, RawJob } from '../upstream/types.js';
import { ApiError, UnauthenticatedError, ValidationError } from '../upstream/errors.js';
import type { GraphQLResolveInfo } from 'graphql/index.js';
import { builder } from './builder.js';
import { EventRef, JobRef } from './types.js';

declare module '../resolvers/context.js' {
  interface ContextExtensions {
    /** Live job streams (src/live); one registry per server. */
    live: LiveJobs<RawJob, RawEvent>;
  }
}

const liveUpstreams = new WeakMap<UpstreamApi, LiveUpstream<RawJob, RawEvent>>();

/**
 * The credential and raw upstream of this subscription. Polls use the SDK client directly, not the
 * per-request loaders or the finished-job cache: a poll must see the upstream's current state.
 */
function scopeOf(ctx: GraphQLContext): { live: LiveJobs<RawJob, RawEvent>; scope: LiveScope<RawJob, RawEvent> } {
  if (!ctx.live) throw new ApiError('Live updates are not enabled on this server.', 'INTERNAL_SERVER_ERROR');
  const client = ctx.api.client;
  if (!client) throw new UnauthenticatedError('No API key is configured for the fine-tuning API.');
  // Keyed by the credential's API (ctx.api is this request's view of it).
  let upstream = liveUpstreams.get(ctx.api.root);
  if (!upstream) {
    // The SDK's typings and RawJob/RawEvent describe the same JSON objects (RawJob is the looser view).
    upstream = openAiLiveUpstream(client) as unknown as LiveUpstream<RawJob, RawEvent>;
    liveUpstreams.set(ctx.api.root, upstream);
  }
  return { live: ctx.live, scope: { credential: ctx.credential, upstream } };
}

/**
 * The field's own argument values, read from the operation. graphql-jit (used by this server)
 * passes the operation's *variables* as a subscribe resolver's `args` (graphql-jit issue #183),
 * which breaks literal arguments and renamed variables; reading the AST works with and without it.
 * Only ID/String arguments are needed here.
 */
function fieldArgs(info: GraphQLResolveInfo): Record<string, string | null | undefined> {
  const out: Record<string, string | null | undefined> = {};
  for (const arg of info.fieldNodes[0]?.arguments ?? []) {
    const v = arg.value;
    if (v.kind === 'Variable') {
      const value = info.variableValues[v.name.value];
      out[arg.name.value] = value == null ? (value as null | undefined) : String(value);
    } else if (v.kind === 'StringValue' || v.kind === 'IntValue') out[arg.name.value] = v.value;
    else if (v.kind === 'NullValue') out[arg.name.value] = null;
  }
  return out;
}

/** A stream item that is a failure becomes this event's GraphQL error; the stream then completes. */
function unwrap<T>(payload: T | LiveFailure): T {
  if (isLiveFailure(payload)) throw payload.toGraphQLError();
  return payload;
}

builder.subscriptionType({
  description:
    'Live updates, over graphql-ws (websocket, subprotocol graphql-transport-ws, on /graphql) or SSE (POST /graphql with Accept: text/event-stream). However many clients watch a job, the server polls the upstream once per interval for it. Needs the `read` scope.',
  authScopes: { read: true },
  fields: (t) => ({
    fineTuningJobEvents: t.field({
      type: EventRef,
      description:
        'Each new event of the job, oldest first, exactly once. With `after` (the id of an event you already have, e.g. the newest from `fineTuningJob { events(first: 1) }`), first every event since that one, so a client that reconnects misses nothing; without it, the events that appear from now on. Completes once the job is terminal and its last events are delivered. An `after` that is not an event of this job is a BAD_USER_INPUT error. Limits (LIMIT_EXCEEDED, with `extensions.limit`: replayEvents, concurrentReplays or watchedJobs; the message names the variable): a replay reaches at most MAX_REPLAY_EVENTS events back (default 10000; read older ones with `fineTuningJob { events }`); at most MAX_CONCURRENT_REPLAYS subscriptions with `after` per credential replay at once (default 32; a reconnect storm after a server restart fits); at most MAX_WATCHED_JOBS_PER_CREDENTIAL distinct jobs are watched per credential at once (default 50; more subscriptions to a job already watched are not limited by it).',
      args: {
        jobId: t.arg.id({ required: true, description: 'The job (ftjob-…).' }),
        after: t.arg.id({ required: false, description: 'The id of the last event the client has (ftevent-…).' }),
      },
      subscribe: (_root, _args, ctx, info) => {
        const args = fieldArgs(info);
        const jobId = expectId(String(args.jobId ?? ''), 'FineTuningJob', 'jobId');
        const after = args.after ?? null;
        if (after !== null && (after.length === 0 || after.length > 200 || !/^[A-Za-z0-9_\-:.]+$/.test(after))) {
          throw new ValidationError(`"${after.slice(0, 80)}" is not an event id.`, 'after');
        }
        const { live, scope } = scopeOf(ctx);
        return live.jobEvents(scope, jobId, after);
      },
      resolve: (payload) => unwrap<RawEvent>(payload),
    }),
    fineTuningJobUpdated: t.field({
      type: JobRef,
      description:
        "The job's current state first, then the job again whenever any of its fields changes (status, trainedTokens, fineTunedModel, estimatedFinish, …); a cancel, pause or resume made through this server arrives at once. Completes at a terminal state (SUCCEEDED, FAILED, CANCELLED). Counts towards MAX_WATCHED_JOBS_PER_CREDENTIAL like `fineTuningJobEvents` (LIMIT_EXCEEDED beyond it).",
      args: {
        id: t.arg.id({ required: true, description: 'The job (ftjob-…).' }),
      },
      subscribe: (_root, _args, ctx, info) => {
        const jobId = expectId(String(fieldArgs(info).id ?? ''), 'FineTuningJob', 'id');
        const { live, scope } = scopeOf(ctx);
        return live.jobUpdates(scope, jobId);
      },
      resolve: (payload) => unwrap<RawJob>(payload),
    }),
  }),
});
