/** What the live module needs of a job: the rest of the upstream object is passed through untouched. */
export interface LiveJob {
  id: string;
  status: string;
}

/** What the live module needs of an event. */
export interface LiveEvent {
  id: string;
}

/**
 * The two upstream reads a poller needs, for one credential. The GraphQL API's upstream client
 * (the official `openai` SDK, one client per credential) is adapted to this in `upstream.ts`;
 * tests and the bench can pass anything with the same shape.
 *
 * Polls must go straight to the upstream: never through a per-request DataLoader or cache.
 */
export interface LiveUpstream<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> {
  retrieveJob(jobId: string): Promise<J>;
  /** One page of the job's events, newest first; `after` is the id of the last event of the previous page. */
  listEvents(jobId: string, query: { after?: string; limit: number }): Promise<EventsPage<E>>;
}

export interface EventsPage<E extends LiveEvent = LiveEvent> {
  data: E[];
  has_more: boolean;
}

/** Who is watching: the credential the upstream calls are made with, and the upstream for it. */
export interface LiveScope<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> {
  /** The upstream credential (API key). Only its hash is kept in keys; it is never logged. */
  credential: string;
  upstream: LiveUpstream<J, E>;
}

/**
 * What a poller publishes on its topic (`live:<credentialHash>:<jobId>`) through the pub/sub.
 * Everything is plain JSON, so the same messages can later travel over Redis pub/sub.
 */
export type LiveMessage<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> =
  /** The job changed (a stable serialisation of the upstream object differs); `version` counts changes. */
  | { kind: 'job'; version: number; job: J }
  /** New events, oldest first; the i-th one has sequence number `firstSeq + i`. */
  | { kind: 'events'; firstSeq: number; events: E[] }
  /** The job is terminal and its last events were published: streams complete. */
  | { kind: 'end' }
  /** A failure that ends every stream of this poller (unknown job, revoked key, shutdown). */
  | { kind: 'error'; code: LiveErrorCode; message: string };

export type LiveErrorCode =
  | 'NOT_FOUND'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'BAD_USER_INPUT'
  | 'SLOW_CONSUMER'
  | 'LIMIT_EXCEEDED'
  | 'SHUTTING_DOWN'
  | 'UPSTREAM_UNAVAILABLE';

/** Minimal logger shape (pino's is compatible). */
export interface LiveLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface LiveOptions {
  /** Poll interval for a running job, in ms. Default 1000 (env POLL_INTERVAL_MS). */
  pollIntervalMs: number;
  /** Multiplier of the interval while the job is validating_files, queued or paused. Default 3. */
  slowFactor: number;
  /** Cap of the exponential back-off after upstream errors, in ms. Default 30000 (env POLL_MAX_BACKOFF_MS). */
  maxBackoffMs: number;
  /** Page size of events walks (the upstream caps it at 100). Default 100. */
  eventsPageSize: number;
  /** A subscriber that falls this many events behind is ended with SLOW_CONSUMER. Default 10000. */
  maxBacklog: number;
  /** Distinct jobs one credential may watch at once (MAX_WATCHED_JOBS_PER_CREDENTIAL); beyond, LIMIT_EXCEEDED. Default 50. */
  maxWatchedJobsPerCredential: number;
  /** Longest replay for an `after` (MAX_REPLAY_EVENTS): an `after` further back is refused. Default 10000. */
  maxReplayEvents: number;
  /** Replays one credential may have running at once (MAX_CONCURRENT_REPLAYS); beyond, LIMIT_EXCEEDED. Default 32. */
  maxConcurrentReplays: number;
  logger?: LiveLogger;
  /**
   * Metrics hooks (src/http/metrics.ts): how late each poll started against the time it was due; a subscription
   * refused by a limit, named as in `extensions.limit` (watchedJobs, replayEvents,
   * concurrentReplays).
   */
  observer?: { pollLag?(ms: number): void; refused?(limit: string): void };
}

export interface LiveStats {
  /** Active pollers (one per watched (credential, job)). */
  pollers: number;
  /** Active subscriptions (streams) over all pollers. */
  subscribers: number;
}
