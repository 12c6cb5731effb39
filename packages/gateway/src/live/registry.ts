import { credentialHash } from '../util/credential-hash.js';
import { setMaxListeners } from 'node:events';
import { createPubSub, Repeater, type PubSub, type PubSubEventTarget } from 'graphql-yoga';
import { LiveFailure } from './errors.js';
import { isTerminal, JobPoller } from './poller.js';
import { type InboxTarget, SubscriberInbox } from './inbox.js';
import { pace } from './pace.js';
import { CredentialCounter, ReplaySlots, tooManyReplays, tooManyWatchedJobs } from './replay.js';
import type { LiveEvent, LiveJob, LiveMessage, LiveOptions, LiveScope, LiveStats } from './types.js';

/**
 * The pub/sub's topics: `live:<credentialHash>:<jobId>:job` (job states) and
 * `live:<credentialHash>:<jobId>:events` (event batches); `end` and `error` go to both. Two topics,
 * so that a job-state change is not dispatched to every events subscriber (and the reverse).
 */
export type LiveTopics<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> = { live: [key: string, message: LiveMessage<J, E>] };
export type LivePubSub<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> = PubSub<LiveTopics<J, E>>;
/** The event target under the pub/sub: in-process by default; `@graphql-yoga/redis-event-target` fans out across instances. */
export type LiveEventTarget<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> = PubSubEventTarget<LiveTopics<J, E>>;

/**
 * Live job streams. The GraphQL subscription fields only talk to this interface, so the
 * in-process implementation below can be replaced (or wrapped) by one that coordinates several
 * instances (a Redis lease per (credential, job) deciding who polls, fan-out over Redis pub/sub).
 */
export interface LiveJobs<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> {
  /** Each new event of the job, oldest first, exactly once; with `after`, first every event since it. */
  jobEvents(scope: LiveScope<J, E>, jobId: string, after?: string | null): AsyncIterableIterator<E | LiveFailure>;
  /** The job's current state, then every changed state; completes at a terminal state. */
  jobUpdates(scope: LiveScope<J, E>, jobId: string): AsyncIterableIterator<J | LiveFailure>;
  /** Pushes a state obtained elsewhere (a mutation's result) to the job's subscribers at once. */
  notifyJobChanged(credential: string, job: J): void;
  stats(): LiveStats;
  /** Stops every poller and ends every stream (with SHUTTING_DOWN). */
  close(): Promise<void>;
}

export const DEFAULT_LIVE_OPTIONS: LiveOptions = {
  pollIntervalMs: 1000,
  slowFactor: 3,
  maxBackoffMs: 30_000,
  eventsPageSize: 100,
  maxBacklog: 10_000,
  maxWatchedJobsPerCredential: 50,
  maxReplayEvents: 10_000,
  maxConcurrentReplays: 32,
};

/** Reads POLL_INTERVAL_MS and POLL_MAX_BACKOFF_MS (positive integers) over the defaults. */
export function liveOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<LiveOptions> {
  const out: Partial<LiveOptions> = {};
  const interval = positiveInt(env.POLL_INTERVAL_MS, 'POLL_INTERVAL_MS');
  if (interval !== undefined) out.pollIntervalMs = interval;
  const backoff = positiveInt(env.POLL_MAX_BACKOFF_MS, 'POLL_MAX_BACKOFF_MS');
  if (backoff !== undefined) out.maxBackoffMs = backoff;
  return out;
}

function positiveInt(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer (milliseconds), got "${raw}"`);
  return n;
}

// Poller keys name the credential by its hash (src/util/credential-hash.ts), never the credential itself.
export { credentialHash };

export function watchKey(credential: string, jobId: string): string {
  return `${credentialHash(credential)}:${jobId}`;
}

/**
 * The in-process registry of pollers, keyed by `<credentialHash>:<jobId>`. A poller starts with
 * its first subscriber and stops when the last one leaves (the stream's `return()`, which
 * graphql-ws and yoga's SSE call when a client completes or its connection drops). Pollers
 * publish through a yoga pub/sub (`createPubSub`, which accepts a distributed event target such
 * as `@graphql-yoga/redis-event-target`); each stream filters what it has already delivered by
 * sequence number (events) or version (job states).
 *
 * Per credential, at most maxWatchedJobsPerCredential pollers and maxConcurrentReplays replays run
 * at once; a stream past either gets LIMIT_EXCEEDED at once, and the credential's other streams go
 * on. Long deliveries (replays, large batches) are paced (pace.ts), so they never hold the event loop.
 */
export class JobWatchRegistry<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> implements LiveJobs<J, E> {
  readonly options: LiveOptions;
  private readonly pubsub: LivePubSub<J, E>;
  private readonly target: LiveEventTarget<J, E>;
  private readonly pollers = new Map<string, JobPoller<J, E>>();
  /** Pollers per credential hash (maxWatchedJobsPerCredential), and the function that gives each one back. */
  private readonly watched = new CredentialCounter();
  private readonly unwatch = new Map<JobPoller<J, E>, () => void>();
  /** Replays running per credential hash (maxConcurrentReplays). */
  private readonly replays = new ReplaySlots();
  /** Enders of the live streams, so close() can end them. */
  private readonly streams = new Set<(failure: LiveFailure) => void>();
  private closed = false;

  /**
   * `eventTarget`: where messages are published (through yoga's `createPubSub`) and listened to;
   * pass `@graphql-yoga/redis-event-target`'s to fan out across instances.
   */
  constructor(options: Partial<LiveOptions> & { eventTarget?: LiveEventTarget<J, E> } = {}) {
    const { eventTarget, ...rest } = options;
    this.options = { ...DEFAULT_LIVE_OPTIONS, ...stripUndefined(rest) };
    this.target = eventTarget ?? (unlimitedEventTarget() as LiveEventTarget<J, E>);
    this.pubsub = createPubSub<LiveTopics<J, E>>({ eventTarget: this.target });
  }

  stats(): LiveStats {
    let subscribers = 0;
    for (const p of this.pollers.values()) subscribers += p.refs;
    return { pollers: this.pollers.size, subscribers };
  }

  notifyJobChanged(credential: string, job: J): void {
    this.pollers.get(watchKey(credential, job.id))?.notify(job);
  }

  async close(): Promise<void> {
    this.closed = true;
    // Replays waiting for a slot wake and find the server closed.
    this.replays.clear();
    const failure = new LiveFailure('SHUTTING_DOWN', 'The server is shutting down; reconnect (with `after` for events) to resume.');
    for (const end of [...this.streams]) end(failure);
    for (const p of this.pollers.values()) p.stop();
    this.pollers.clear();
    this.unwatch.clear();
    this.watched.clear();
  }

  jobUpdates(scope: LiveScope<J, E>, jobId: string): AsyncIterableIterator<J | LiveFailure> {
    return new Repeater<J | LiveFailure>(async (push, stop) => {
      const stream = this.open(scope, jobId, 'job', stop);
      if (stream instanceof LiveFailure) return void (await push(stream), stop());
      try {
        let version = 0;
        /** Pushes a state newer than the last one delivered; false once the stream must end. */
        const deliver = async (job: J, v: number): Promise<boolean> => {
          if (v <= version) return true;
          version = v;
          await push(job);
          return !isTerminal(job.status) && !stream.stopped;
        };
        const current = stream.poller.currentJob();
        if (current && !(await deliver(current.job, current.version))) return;
        for (;;) {
          const msg = await stream.take();
          if (!msg || msg.kind === 'end') break;
          if (msg.kind === 'error') return void (await push(new LiveFailure(msg.code, msg.message)));
          if (msg.kind === 'job' && !(await deliver(msg.job, msg.version))) return;
        }
        if (stream.failure) await push(stream.failure);
      } finally {
        stream.close();
        stop();
      }
    });
  }

  jobEvents(scope: LiveScope<J, E>, jobId: string, after?: string | null): AsyncIterableIterator<E | LiveFailure> {
    return new Repeater<E | LiveFailure>(async (push, stop) => {
      // A replay holds one of the credential's replay slots until its last event is delivered.
      let releaseReplay: (() => void) | undefined;
      if (after != null) {
        // Beyond MAX_CONCURRENT_REPLAYS running, it waits for a slot (a bounded number may wait).
        releaseReplay = await this.replays.acquire(credentialHash(scope.credential), this.options.maxConcurrentReplays, stop);
        if (!releaseReplay) {
          if (this.closed) return void (await push(this.closedFailure()), stop());
          return void (await push(this.refuse(tooManyReplays(this.options.maxConcurrentReplays))), stop());
        }
      }
      const stream = this.open(scope, jobId, 'events', stop);
      if (stream instanceof LiveFailure) return void (releaseReplay?.(), await push(stream), stop());
      try {
        // `seq`: the sequence number of the last event this subscriber has; the poller's live
        // batches carry numbers, so the replay/live seam neither repeats nor skips an event.
        let seq: number;
        if (after != null) {
          const replay = await stream.until(stream.poller.requestReplay(after));
          if (!replay) {
            if (stream.failure) await push(stream.failure);
            return;
          }
          if (!replay.ok) return void (await push(this.refuse(replay.failure)));
          // Paced (pace.ts): a long replay, times many subscribers, must not hold the event loop.
          for (const ev of replay.events) {
            await push(ev);
            if (stream.stopped || stream.failure) break;
            const p = pace();
            if (p) await p;
          }
          releaseReplay?.();
          if (stream.stopped) return;
          seq = replay.seq;
        } else {
          seq = stream.poller.currentSeq();
        }
        for (;;) {
          const msg = await stream.take();
          if (!msg || msg.kind === 'end') break;
          if (msg.kind === 'error') return void (await push(new LiveFailure(msg.code, msg.message)));
          if (msg.kind !== 'events') continue;
          for (let i = 0; i < msg.events.length; i++) {
            const s = msg.firstSeq + i;
            if (s <= seq) continue;
            seq = s;
            await push(msg.events[i]!);
            if (stream.stopped) return;
            if (stream.failure) break;
            const p = pace();
            if (p) await p;
          }
        }
        if (stream.failure) await push(stream.failure);
      } finally {
        releaseReplay?.();
        stream.close();
        stop();
      }
    });
  }

  private publish(key: string, msg: LiveMessage<J, E>): void {
    if (msg.kind !== 'events') this.pubsub.publish('live', `${key}:job`, msg);
    if (msg.kind !== 'job') this.pubsub.publish('live', `${key}:events`, msg);
  }

  private closedFailure(): LiveFailure {
    return new LiveFailure('SHUTTING_DOWN', 'The server is shutting down.');
  }

  /** A failure that ends a stream, counted (observer.refused) when a limit refused it. */
  private refuse(failure: LiveFailure): LiveFailure {
    if (failure.limit) this.options.observer?.refused?.(failure.limit);
    return failure;
  }

  /** Forgets a poller (finished or stopped), giving its credential's watched-job unit back. */
  private drop(key: string, poller: JobPoller<J, E>): void {
    if (this.pollers.get(key) === poller) this.pollers.delete(key);
    this.unwatch.get(poller)?.();
    this.unwatch.delete(poller);
  }

  /**
   * Subscribes to the job's topic (synchronously, before anything is awaited, so no message
   * published from now on is missed) and takes a reference on its poller, starting it if needed.
   * A failure instead when the registry is closed, or when a new poller would take the credential
   * past maxWatchedJobsPerCredential (a job it already watches is always open to more streams).
   */
  private open(scope: LiveScope<J, E>, jobId: string, kind: 'job' | 'events', stop: PromiseLike<unknown> & (() => void)): LiveStream<J, E> | LiveFailure {
    if (this.closed) return this.closedFailure();
    const hash = credentialHash(scope.credential);
    const key = `${hash}:${jobId}`;
    // The topic as createPubSub names it (`<routingKey>:<id>`).
    const topic = `live:${key}:${kind}`;
    let poller = this.pollers.get(key);
    let fresh = false;
    if (!poller || poller.isFinished) {
      if (poller) this.drop(key, poller);
      const release = this.watched.take(hash, this.options.maxWatchedJobsPerCredential);
      if (!release) return this.refuse(tooManyWatchedJobs(this.options.maxWatchedJobsPerCredential));
      poller = new JobPoller<J, E>(
        key,
        jobId,
        scope.upstream,
        this.options,
        (msg) => this.publish(key, msg),
        (done) => this.drop(key, done),
      );
      this.pollers.set(key, poller);
      this.unwatch.set(poller, release);
      fresh = true;
    }
    poller.refs++;
    const stream = new LiveStream(poller, this.target, topic, stop, this.options.maxBacklog, () => {
      this.streams.delete(endStream);
      const p = stream.poller;
      p.refs--;
      if (p.refs <= 0) {
        p.stop();
        this.drop(key, p);
      }
    });
    const endStream = (failure: LiveFailure) => stream.fail(failure);
    this.streams.add(endStream);
    if (fresh) poller.start();
    return stream;
  }
}

/**
 * One subscriber's side of a topic: a listener on the pub/sub's event target appends messages to an
 * inbox at once (no per-subscriber repeater or pump), so a slow client never backs up the pub/sub;
 * past `maxBacklog` queued events the stream ends with SLOW_CONSUMER (the client reconnects with
 * `after` and loses nothing).
 */
class LiveStream<J extends LiveJob, E extends LiveEvent> extends SubscriberInbox<LiveMessage<J, E>> {
  constructor(
    readonly poller: JobPoller<J, E>,
    target: LiveEventTarget<J, E>,
    topic: string,
    stop: PromiseLike<unknown>,
    maxBacklog: number,
    onClose: () => void,
  ) {
    super(target as unknown as InboxTarget, topic, stop, maxBacklog, onClose);
  }
}

/** Node warns past 10 listeners per event type on an EventTarget; a popular job has thousands. */
function unlimitedEventTarget(): EventTarget {
  const target = new EventTarget();
  setMaxListeners(0, target);
  return target;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
