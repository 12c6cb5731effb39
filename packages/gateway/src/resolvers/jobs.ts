/** Data fetching for jobs, their events and checkpoints. */
import type { GraphQLContext } from './context.js';
import { forwardConnection, type ForwardArgs } from './connections.js';
import { NotFoundError } from '../upstream/errors.js';
import type { RawCheckpoint, RawEvent, RawJob } from '../upstream/types.js';

/** DataLoader batch function for jobs: one retrieve per distinct id (finished jobs come from the cache). */
export function loadJobs(ctx: GraphQLContext, ids: readonly string[]): Promise<(RawJob | Error)[]> {
  return Promise.all(ids.map((id) => ctx.api.retrieveJob(id).catch((e: Error) => e)));
}

export function jobsConnection(ctx: GraphQLContext, args: ForwardArgs & { metadata?: Record<string, string> | null }) {
  return forwardConnection(args, (p) => ctx.api.listJobs({ ...p, metadata: args.metadata }));
}

export function eventsConnection(ctx: GraphQLContext, job: RawJob, args: ForwardArgs) {
  return forwardConnection(args, (p) => ctx.loaders.eventsPage(job, p.after, p.limit));
}

export function checkpointsConnection(ctx: GraphQLContext, job: RawJob, args: ForwardArgs) {
  return forwardConnection(args, (p) => ctx.loaders.checkpointsPage(job, p.after, p.limit));
}

/** Walks every page of a job's events (100 at a time, through the request's loader), newest first. */
export async function allEvents(ctx: GraphQLContext, job: RawJob): Promise<RawEvent[]> {
  const out: RawEvent[] = [];
  let after: string | null = null;
  for (;;) {
    const page = await ctx.loaders.eventsPage(job, after, 100);
    out.push(...page.data);
    if (!page.has_more || page.data.length === 0) return out;
    after = page.data[page.data.length - 1]!.id;
  }
}

async function allCheckpoints(ctx: GraphQLContext, job: RawJob): Promise<RawCheckpoint[]> {
  const out: RawCheckpoint[] = [];
  let after: string | null = null;
  for (;;) {
    const page = await ctx.loaders.checkpointsPage(job, after, 100);
    out.push(...page.data);
    if (!page.has_more || page.data.length === 0) return out;
    after = page.data[page.data.length - 1]!.id;
  }
}

const unseen = (kind: string, id: string) =>
  new NotFoundError(
    `No ${kind} ${id} is known here. The upstream has no endpoint to fetch one ${kind} by id, so open it through its job's ${kind === 'event' ? 'events' : 'checkpoints'} first.`,
  );

/** node(ftevent-…): found through the job it was listed with (see UpstreamApi.indexChild). */
export async function findEvent(ctx: GraphQLContext, id: string): Promise<RawEvent> {
  const jobId = ctx.api.jobIdOfChild(id);
  if (!jobId) throw unseen('event', id);
  const job = await ctx.api.retrieveJob(jobId);
  const found = (await allEvents(ctx, job)).find((e) => e.id === id);
  if (!found) throw new NotFoundError(`No such event: ${id}`);
  return found;
}

export async function findCheckpoint(ctx: GraphQLContext, id: string): Promise<RawCheckpoint> {
  const jobId = ctx.api.jobIdOfChild(id);
  if (!jobId) throw unseen('checkpoint', id);
  const job = await ctx.api.retrieveJob(jobId);
  const found = (await allCheckpoints(ctx, job)).find((c) => c.id === id);
  if (!found) throw new NotFoundError(`No such checkpoint: ${id}`);
  return found;
}
