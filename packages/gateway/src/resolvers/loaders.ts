/**
 * Per-request loaders for pages that hang off a job: events and checkpoints pages (keyed by job, cursor and
 * size) and the training metrics. One request never asks the upstream twice for the same page; pages of a
 * finished job are also kept across requests by the upstream cache (per credential).
 */
import DataLoader from 'dataloader';
import type { UpstreamApi } from '../upstream/client.js';
import type { Page, RawCheckpoint, RawEvent, RawJob } from '../upstream/types.js';

type PageKey = { job: RawJob; after: string | null; limit: number };
const pageKey = (k: PageKey) => `${k.job.id}\u0000${k.after ?? ''}\u0000${k.limit}`;

export class RequestLoaders {
  private eventsLoader?: DataLoader<PageKey, Page<RawEvent>, string>;
  private checkpointsLoader?: DataLoader<PageKey, Page<RawCheckpoint>, string>;
  readonly metrics = new Map<string, Promise<unknown>>();

  constructor(private readonly api: UpstreamApi) {}

  eventsPage(job: RawJob, after: string | null, limit: number): Promise<Page<RawEvent>> {
    this.eventsLoader ??= new DataLoader(
      async (keys) =>
        Promise.all(
          keys.map((k) =>
            this.api
              .finishedOr(k.job, `events\u0000${k.after ?? ''}\u0000${k.limit}`, () => this.api.listEvents(k.job.id, { after: k.after, limit: k.limit }))
              .then((page) => {
                for (const e of page.data) this.api.indexChild(e.id, k.job.id);
                return page;
              })
              .catch((e: Error) => e),
          ),
        ),
      { cacheKeyFn: pageKey },
    );
    return this.eventsLoader.load({ job, after, limit });
  }

  checkpointsPage(job: RawJob, after: string | null, limit: number): Promise<Page<RawCheckpoint>> {
    this.checkpointsLoader ??= new DataLoader(
      async (keys) =>
        Promise.all(
          keys.map((k) =>
            this.api
              .finishedOr(k.job, `checkpoints\u0000${k.after ?? ''}\u0000${k.limit}`, () =>
                this.api.listCheckpoints(k.job.id, { after: k.after, limit: k.limit }),
              )
              .then((page) => {
                for (const c of page.data) this.api.indexChild(c.id, k.job.id);
                return page;
              })
              .catch((e: Error) => e),
          ),
        ),
      { cacheKeyFn: pageKey },
    );
    return this.checkpointsLoader.load({ job, after, limit });
  }
}
