/**
 * Live job streams across several instances on one Redis (REDIS_URL): the same `LiveJobs` interface as the
 * single-process JobWatchRegistry, with
 *   - fan-out through Redis pub/sub (`@graphql-yoga/redis-event-target` as the event target): every subscriber, on
 *     any instance, listens on the job's channels;
 *   - one poller per (credential, job) in the whole cluster: the instance holding the job's Redis lease
 *     (src/live/cluster/leader.ts). Every instance with subscribers of the job tries to take the lease, at once
 *     and then every interval (sooner when the lease is about to expire or is released), so when the leader dies
 *     another one takes over within the lease time and resumes from the last published event kept in Redis;
 *   - a presence per (job, instance) in Redis, so that a leader whose own subscribers left goes on exactly as long
 *     as another instance has some;
 *   - sequence numbers per (credential, job) kept in Redis, so a subscriber dedupes across a handover and notices a
 *     gap (then it catches up from the upstream); replays with `after` are served on any instance: the upstream is
 *     walked from `after` down to the last published id read from Redis, and the live stream continues from that
 *     id's sequence number, so the seam neither repeats nor skips an event;
 *   - the limits of the single-process registry, counted per instance: per credential, at most
 *     maxWatchedJobsPerCredential jobs with local subscribers and maxConcurrentReplays replays at once, and no replay
 *     longer than maxReplayEvents (each watch keeps its own window of event ids, replay.ts); deliveries are paced.
 * The poller's upstream calls use the credential of a subscriber on the leader's instance (only instances with
 * subscribers take the lease); Redis only ever sees its hash.
 */
import { setMaxListeners } from 'node:events';
import { createRedisEventTarget } from '@graphql-yoga/redis-event-target';
import type { Redis } from 'ioredis';
import { Repeater } from 'graphql-yoga';
import { classifyUpstreamError, LiveFailure } from '../errors.js';
import { type InboxTarget, SubscriberInbox } from '../inbox.js';
import { pace } from '../pace.js';
import { isTerminal } from '../poller.js';
import { credentialHash, DEFAULT_LIVE_OPTIONS, type LiveJobs } from '../registry.js';
import {
  CredentialCounter,
  ReplaySlots,
  EventsWalk,
  EventWindow,
  reachTargets,
  type Reached,
  tooFarBack,
  tooManyReplays,
  tooManyWatchedJobs,
} from '../replay.js';
import type { LiveEvent, LiveJob, LiveScope, LiveStats } from '../types.js';
import { describe, JobLeader, jobHash, type LeaderEnd, type LeaderHost } from './leader.js';
import { type JobKeys, jobKeys, Scripts } from './redis.js';
import { type ClusterMessage, type ClusterOptions, type ClusterState, type ControlMessage, parseState } from './types.js';

type Target = ReturnType<typeof createRedisEventTarget<CustomEvent>>;
type Listener = (event: CustomEvent) => void;

export const DEFAULT_LEASE_MS = 5_000;

export class ClusterLiveJobs<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> implements LiveJobs<J, E> {
  readonly options: ClusterOptions;
  readonly scripts: Scripts;
  readonly target: Target;
  private readonly watches = new Map<string, Watch<J, E>>();
  private readonly streams = new Set<(failure: LiveFailure) => void>();
  private readonly open_ = new Set<ClusterStream<J, E>>();
  /** Upstream walks in flight, shared by the streams that need the same one (see catchUp). */
  private readonly walks = new Map<string, Promise<Walk<E>>>();
  /** Jobs with local subscribers per credential hash (maxWatchedJobsPerCredential, per instance). */
  readonly watched = new CredentialCounter();
  /** Replays running on this instance per credential hash (maxConcurrentReplays, per instance). */
  private readonly replays = new ReplaySlots();
  private subscriptions = 0;
  private closed = false;

  constructor(
    readonly redis: Redis,
    readonly subscriber: Redis,
    options: Partial<ClusterOptions> & Pick<ClusterOptions, 'instanceId' | 'keyPrefix'>,
  ) {
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<ClusterOptions>;
    const merged = { ...DEFAULT_LIVE_OPTIONS, leaseMs: DEFAULT_LEASE_MS, ...defined };
    this.options = {
      ...merged,
      instanceId: options.instanceId,
      keyPrefix: options.keyPrefix,
      presenceTtlMs: defined.presenceTtlMs ?? merged.leaseMs,
      stateTtlMs: defined.stateTtlMs ?? merged.leaseMs * 3,
    } as ClusterOptions;
    this.scripts = new Scripts(redis);
    // redis-event-target does not handle the promises of its (UN)SUBSCRIBE and PUBLISH calls; one rejected by a
    // closed connection (shutdown) would be an unhandled rejection. These thin clients swallow them (a failed
    // SUBSCRIBE is noticed through Watch.ready; ioredis resubscribes after reconnects).
    const subscribeClient = {
      on: (event: string, listener: (...args: unknown[]) => void) => {
        subscriber.on(event, listener);
        return subscribeClient;
      },
      subscribe: (...channels: string[]) => subscriber.subscribe(...channels).catch(() => undefined),
      unsubscribe: (...channels: string[]) => subscriber.unsubscribe(...channels).catch(() => undefined),
    };
    const publishClient = { publish: (channel: string, message: string) => redis.publish(channel, message).catch(() => 0) };
    this.target = createRedisEventTarget<CustomEvent>({
      publishClient: publishClient as unknown as Redis,
      subscribeClient: subscribeClient as unknown as Redis,
    });
    // ioredis warns past 10 listeners of one event; redis-event-target registers one 'message' listener.
    setMaxListeners(0, subscriber);
    // After a reconnect (ioredis resubscribes by itself), messages published meanwhile are lost: once the
    // resubscription is in effect (a PING queued behind it answered), every stream compares itself with the state.
    let connected = false;
    subscriber.on('ready', () => {
      if (!connected) return void (connected = true);
      subscriber.ping().then(
        () => {
          for (const s of this.open_) s.nudge();
        },
        () => undefined,
      );
    });
  }

  stats(): LiveStats {
    let pollers = 0;
    for (const w of this.watches.values()) if (w.leading) pollers++;
    return { pollers, subscribers: this.subscriptions };
  }

  /** Jobs this instance watches (has subscribers of, or polls). */
  watchCount(): number {
    return this.watches.size;
  }

  notifyJobChanged(credential: string, job: J): void {
    if (this.closed) return;
    const keys = jobKeys(this.options.keyPrefix, credentialHash(credential), job.id);
    this.scripts
      .run('notifyJob', [keys.state], [jobHash(job), JSON.stringify(job), this.options.stateTtlMs, keys.job, keys.ctl])
      .catch((err: unknown) => this.options.logger?.warn({ error: describe(err) }, 'live: could not publish a job state'));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Replays waiting for a slot wake and find the server closed.
    this.replays.clear();
    const failure = new LiveFailure('SHUTTING_DOWN', 'The server is shutting down; reconnect (with `after` for events) to resume.');
    for (const end of [...this.streams]) end(failure);
    // Leases are given back and announced, so that another instance takes over at once.
    await Promise.all([...this.watches.values()].map((w) => w.close(true)));
    this.watches.clear();
  }

  // ---- streams ---------------------------------------------------------------------------------------------------

  jobEvents(scope: LiveScope<J, E>, jobId: string, after?: string | null): AsyncIterableIterator<E | LiveFailure> {
    return new Repeater<E | LiveFailure>(async (push, stop) => {
      // A replay holds one of the credential's replay slots (on this instance) until it has caught up.
      let releaseReplay: (() => void) | undefined;
      if (after != null) {
        // Beyond MAX_CONCURRENT_REPLAYS running, it waits for a slot (a bounded number may wait).
        releaseReplay = await this.replays.acquire(credentialHash(scope.credential), this.options.maxConcurrentReplays, stop);
        if (!releaseReplay) {
          if (this.closed) return void (await push(closedFailure()), stop());
          return void (await push(this.refuse(tooManyReplays(this.options.maxConcurrentReplays))), stop());
        }
      }
      const stream = this.open(scope, jobId, 'events', stop);
      if (stream instanceof LiveFailure) return void (releaseReplay?.(), await push(stream), stop());
      /** Sequence number of the last event of the stream (delivered, or skipped as the client has it). */
      let seq = 0;
      let epoch: string | undefined;
      /** Id of the event with sequence number `seq` (null: none; the job had no event at the baseline). */
      let lastId: string | null = null;
      /** The client already has the events up to this one (an `after` newer than the last published event). */
      let skipUntil: string | undefined;

      const deliver = async (ev: E): Promise<boolean> => {
        if (skipUntil !== undefined) {
          if (ev.id === skipUntil) skipUntil = undefined;
          return true;
        }
        await push(ev);
        if (stream.stopped || stream.failure) return false;
        // Paced (pace.ts): a long replay or batch, times many subscribers, must not hold the event loop.
        const p = pace();
        if (p) await p;
        return !stream.stopped && !stream.failure;
      };

      /**
       * Catches up from `from` (an event id the client has; null: from the job's first event) to the state's last
       * published event, then continues from its sequence number. False once the stream must end.
       */
      const sync = async (from: string | null, state: ClusterState, isAfter: boolean): Promise<boolean> => {
        if (!isAfter) this.options.observer?.resync?.();
        for (let attempt = 0; ; attempt++) {
          let result: CatchUp<E> | LiveFailure | undefined;
          try {
            result = await stream.until(this.catchUp(scope, jobId, stream.watch, from, state, isAfter));
          } catch (err) {
            const kind = classifyUpstreamError(err);
            if (kind.fatal) result = new LiveFailure(kind.code, kind.message);
            else {
              const delay = Math.min(this.options.maxBackoffMs, this.options.pollIntervalMs * 2 ** attempt);
              this.options.logger?.warn({ error: describe(err), retryInMs: delay }, 'live: catching up failed; retrying');
              if (!(await stream.until(sleep(delay).then(() => true)))) return false;
              continue;
            }
          }
          if (result === undefined) return false;
          if (result instanceof LiveFailure) {
            await push(this.refuse(result));
            return false;
          }
          if (result.skipUntil !== undefined && skipUntil === undefined) skipUntil = result.skipUntil;
          for (const ev of result.events) if (!(await deliver(ev))) return false;
          epoch = state.epoch;
          seq = state.seq;
          lastId = result.lastId;
          return true;
        }
      };

      const run = async (): Promise<void> => {
        const ready = await stream.until(stream.watch.ready);
        if (ready === undefined) return;
        if (!ready) return void (await push(unavailable()));
        let state = await stream.until(this.readState(stream.watch.keys));
        if (state === undefined && (stream.stopped || stream.failure)) return;
        // No baseline yet: the leader (maybe this instance) is making it; its `state` message comes first.
        while (!state) {
          const msg = await stream.take();
          if (!msg) return;
          if (msg.kind === 'error') return void (await push(new LiveFailure(msg.code, msg.message)));
          if (msg.kind === 'state') state = { epoch: msg.epoch, seq: msg.seq, cursor: msg.cursor, version: 0, jobHash: '', notify: '0', ended: false };
        }
        if (after != null) {
          const synced = await sync(after, state, true);
          releaseReplay?.();
          if (!synced) return;
        } else {
          epoch = state.epoch;
          seq = state.seq;
          lastId = state.cursor;
        }
        if (state.ended) return;

        for (;;) {
          const msg = await stream.take();
          if (!msg) return;
          if (msg.kind === 'error') return void (await push(new LiveFailure(msg.code, msg.message)));
          if (msg.kind === 'job') continue;
          if (msg.kind === 'check') {
            const fresh = await stream.until(this.readState(stream.watch.keys));
            if (fresh && (fresh.epoch !== epoch || fresh.seq > seq) && !(await sync(lastId, fresh, false))) return;
            if (fresh?.ended) return;
            continue;
          }
          if (msg.kind === 'state') {
            if (msg.epoch !== epoch) {
              // The state in Redis was reset (lost, or re-baselined): catch up from the last event against it.
              const fresh = await stream.until(this.readState(stream.watch.keys));
              if (fresh && !(await sync(lastId, fresh, false))) return;
              if (fresh?.ended) return;
            }
            continue;
          }
          if (msg.kind === 'end') {
            if (msg.epoch !== epoch || msg.seq > seq) {
              const fresh = await stream.until(this.readState(stream.watch.keys));
              if (fresh) await sync(lastId, fresh, false);
            }
            return;
          }
          // events
          if (msg.epoch !== epoch || msg.firstSeq > seq + 1) {
            // A gap (messages lost while the Redis connection was down) or a new epoch: catch up from the upstream.
            const fresh = await stream.until(this.readState(stream.watch.keys));
            if (!fresh) {
              if (stream.stopped || stream.failure) return;
              continue;
            }
            if (!(await sync(lastId, fresh, false))) return;
            if (fresh.ended) return;
            if (msg.epoch !== epoch) continue;
          }
          for (let i = 0; i < msg.events.length; i++) {
            const s = msg.firstSeq + i;
            if (s <= seq) continue;
            seq = s;
            lastId = msg.events[i]!.id;
            if (!(await deliver(msg.events[i]!))) return;
          }
        }
      };

      try {
        await run();
        if (stream.failure) await push(stream.failure);
      } catch (err) {
        // Redis unreachable (a command failed after its retries).
        this.options.logger?.warn({ error: describe(err) }, 'live: events stream failed');
        await push(unavailable());
      } finally {
        releaseReplay?.();
        stream.close();
        stop();
      }
    });
  }

  jobUpdates(scope: LiveScope<J, E>, jobId: string): AsyncIterableIterator<J | LiveFailure> {
    return new Repeater<J | LiveFailure>(async (push, stop) => {
      const stream = this.open(scope, jobId, 'job', stop);
      if (stream instanceof LiveFailure) return void (await push(stream), stop());
      let epoch: string | undefined;
      let version = 0;
      let lastHash: string | undefined;
      /** Pushes a state newer than the last one delivered; false once the stream must end. */
      const deliver = async (job: J, hash: string, ep: string, v: number): Promise<boolean> => {
        if (ep === epoch && v <= version) return true;
        epoch = ep;
        version = v;
        if (hash === lastHash) return true;
        lastHash = hash;
        await push(job);
        return !isTerminal(job.status) && !stream.stopped;
      };
      const run = async (): Promise<void> => {
        const ready = await stream.until(stream.watch.ready);
        if (ready === undefined) return;
        if (!ready) return void (await push(unavailable()));
        const state = await stream.until(this.readState(stream.watch.keys));
        if (state?.job && !(await deliver(JSON.parse(state.job) as J, state.jobHash, state.epoch, state.version))) return;
        for (;;) {
          const msg = await stream.take();
          if (!msg) return;
          if (msg.kind === 'error') return void (await push(new LiveFailure(msg.code, msg.message)));
          if (msg.kind === 'job') {
            if (!(await deliver(msg.job, msg.hash, msg.epoch, msg.version))) return;
          } else if (msg.kind === 'check') {
            const st = await stream.until(this.readState(stream.watch.keys));
            if (st?.job && !(await deliver(JSON.parse(st.job) as J, st.jobHash, st.epoch, st.version))) return;
          } else if (msg.kind === 'end') {
            // The terminal state normally came just before; if its message was lost, take it from the state.
            const last = await stream.until(this.readState(stream.watch.keys));
            if (last?.job && last.jobHash !== lastHash) await push(JSON.parse(last.job) as J);
            return;
          }
        }
      };
      try {
        await run();
        if (stream.failure) await push(stream.failure);
      } catch (err) {
        this.options.logger?.warn({ error: describe(err) }, 'live: job stream failed');
        await push(unavailable());
      } finally {
        stream.close();
        stop();
      }
    });
  }

  private async readState(keys: JobKeys): Promise<ClusterState | undefined> {
    return parseState(await this.redis.hgetall(keys.state));
  }

  /**
   * The events after `from` up to the state's last published event (`cursor`), oldest first, from one upstream
   * walk newest first down to `from` (bounded: see walkTo). Streams needing the same walk share it: a walk for
   * (from, cursor) started after `cursor` was published, so it contains `cursor` if `cursor` is newer than `from`.
   * When it does not, the client is ahead of the published stream (`from` is newer than `cursor`): nothing to
   * replay, and the live events up to `from` are skipped.
   */
  private async catchUp(
    scope: LiveScope<J, E>,
    jobId: string,
    watch: Watch<J, E>,
    from: string | null,
    state: ClusterState,
    isAfter: boolean,
  ): Promise<CatchUp<E> | LiveFailure> {
    const id = `${watch.keys.state}\u0000${from ?? ''}\u0000${state.cursor ?? ''}`;
    let walk = this.walks.get(id);
    if (!walk) {
      walk = this.walkTo(scope, jobId, watch.window, from).finally(() => this.walks.delete(id));
      this.walks.set(id, walk);
    }
    const { walk: read, at } = await walk;
    if (typeof at !== 'number') return isAfter ? at : lostTrack();
    const newer = read.events.slice(0, at);
    const cursor = state.cursor;
    const i = cursor === null ? -1 : newer.findIndex((e) => e.id === cursor);
    if (i >= 0) return { events: newer.slice(i).reverse(), lastId: cursor };
    if (from === null && cursor !== null) return lostTrack();
    return { events: [], lastId: cursor, skipUntil: from !== null && from !== cursor ? from : undefined };
  }

  /**
   * Reads the job's events newest first down to `from` (null: down to the first event), never further than
   * maxReplayEvents events: first down to `from` or the watch's window top (one page when the window is empty),
   * then on only for an id the window holds or the upstream confirms (replay.ts). `at`: the position of `from`
   * (the events before it are newer), or why it is out of reach.
   */
  private async walkTo(scope: LiveScope<J, E>, jobId: string, window: EventWindow, from: string | null): Promise<Walk<E>> {
    const max = this.options.maxReplayEvents;
    const walk = new EventsWalk<E>(scope.upstream, jobId, this.options.eventsPageSize);
    if (from === null) {
      do await walk.next();
      while (!walk.exhausted && walk.length <= max && !this.closed);
      return { walk, at: walk.exhausted ? walk.length : tooFarBack(max) };
    }
    const top = window.top;
    do await walk.next();
    while (!walk.exhausted && walk.indexOf(from) < 0 && top !== undefined && walk.indexOf(top) < 0 && walk.length <= max && !this.closed);
    const reached = await reachTargets({ upstream: scope.upstream, jobId, maxReplayEvents: max, window, stopped: () => this.closed }, walk, [from]);
    return { walk, at: reached?.get(from) ?? closedFailure() };
  }

  /** A failure that ends a stream, counted (observer.refused) when a limit refused it. */
  private refuse(failure: LiveFailure): LiveFailure {
    if (failure.limit) this.options.observer?.refused?.(failure.limit);
    return failure;
  }

  /**
   * Subscribes the stream's listener (synchronously) and takes a reference on the job's watch. A failure instead
   * when closed, or when the credential's local subscribers already watch maxWatchedJobsPerCredential other jobs
   * on this instance (a job they already watch is always open to more streams).
   */
  private open(scope: LiveScope<J, E>, jobId: string, kind: 'events' | 'job', stop: PromiseLike<unknown>): ClusterStream<J, E> | LiveFailure {
    if (this.closed) return closedFailure();
    const hash = credentialHash(scope.credential);
    const key = `${hash}:${jobId}`;
    let watch = this.watches.get(key);
    const usable = watch !== undefined && !watch.isClosed && !watch.broken;
    if (!usable || watch!.refs === 0) {
      if (this.watched.count(hash) >= this.options.maxWatchedJobsPerCredential) {
        return this.refuse(tooManyWatchedJobs(this.options.maxWatchedJobsPerCredential));
      }
    }
    if (!watch || !usable) {
      watch = new Watch<J, E>(this, key, jobKeys(this.options.keyPrefix, hash, jobId), jobId, scope, () => {
        if (this.watches.get(key) === watch) this.watches.delete(key);
      });
      this.watches.set(key, watch);
    }
    const w = watch;
    const topic = kind === 'events' ? w.keys.events : w.keys.job;
    this.subscriptions++;
    const stream = new ClusterStream<J, E>(w, this.target, topic, stop, this.options.maxBacklog, () => {
      this.streams.delete(end);
      this.open_.delete(stream);
      this.subscriptions--;
      w.dropRef();
    });
    const end = (failure: LiveFailure) => stream.fail(failure);
    this.streams.add(end);
    this.open_.add(stream);
    w.addRef();
    return stream;
  }
}

interface CatchUp<E> {
  events: E[];
  lastId: string | null;
  skipUntil?: string;
}

interface Walk<E extends LiveEvent> {
  walk: EventsWalk<E>;
  /** Position of `from` in the walk (the events before it are newer; for null, the walk's length), or why not. */
  at: Reached;
}

/**
 * One (credential, job) on this instance while it has subscribers of it (or polls it): keeps the job's channels
 * subscribed, refreshes this instance's presence, and competes for the lease.
 */
class Watch<J extends LiveJob, E extends LiveEvent> implements LeaderHost {
  refs = 0;
  /** Ids of the job's newest events read by this instance's replay walks (replay.ts). */
  readonly window: EventWindow;
  /** Gives back this watch's unit of its credential's watched jobs (held while it has local subscribers). */
  private unwatch: (() => void) | undefined;
  /** Resolves once this instance's subscription to the job's channels is confirmed by Redis. */
  readonly ready: Promise<boolean>;
  private leader: JobLeader<J, E> | undefined;
  private closed = false;
  private acquiring = false;
  private leadTimer: NodeJS.Timeout | undefined;
  private presenceTimer: NodeJS.Timeout | undefined;
  private readonly keepers: [string, Listener][];

  constructor(
    private readonly owner: ClusterLiveJobs<J, E>,
    readonly name: string,
    readonly keys: JobKeys,
    readonly jobId: string,
    private readonly scope: LiveScope<J, E>,
    private readonly onClosed: () => void,
  ) {
    this.window = new EventWindow(owner.options.maxReplayEvents + 1);
    // One listener per channel for the watch's lifetime keeps the channels subscribed while streams come and go,
    // so a new stream's listener is live at once (redis-event-target dispatches to every local listener).
    const noop: Listener = () => undefined;
    const ctl: Listener = (event) => this.control(event.detail as ControlMessage);
    this.keepers = [
      [keys.events, noop],
      [keys.job, noop],
      [keys.ctl, ctl],
    ];
    for (const [topic, l] of this.keepers) owner.target.addEventListener(topic, l as EventListener);
    // SUBSCRIBE again (a no-op for Redis) to learn when the subscription is in effect. While Redis is down the
    // command waits in ioredis's queue: streams give up after a while (UPSTREAM_UNAVAILABLE) and the next stream
    // gets a new watch.
    let timer: NodeJS.Timeout | undefined;
    this.ready = Promise.race([
      owner.subscriber.subscribe(keys.events, keys.job, keys.ctl).then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(2_000, owner.options.leaseMs)))),
    ]).then((ok) => {
      clearTimeout(timer);
      if (!ok) this.broken = true;
      return ok;
    });
  }

  /** Its channel subscription failed: new streams get a new watch. */
  broken = false;

  get isClosed(): boolean {
    return this.closed;
  }

  get leading(): boolean {
    return this.leader !== undefined && !this.leader.isStopped;
  }

  addRef(): void {
    this.refs++;
    if (this.refs !== 1) return;
    // open() checked the limit; the unit is taken here so that the count follows refs exactly.
    this.unwatch = this.owner.watched.take(credentialHash(this.scope.credential), Infinity);
    this.touchPresence();
    const every = Math.max(50, Math.floor(this.owner.options.presenceTtlMs / 3));
    this.presenceTimer = setInterval(() => this.touchPresence(), every);
    if (!this.leader) void this.tryLead();
  }

  dropRef(): void {
    this.refs--;
    if (this.refs > 0) return;
    this.unwatch?.();
    this.unwatch = undefined;
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.presenceTimer = undefined;
    this.clearLeadTimer();
    this.owner.redis.zrem(this.keys.presence, this.owner.options.instanceId).catch(() => undefined);
    if (this.leader) {
      // Go on polling for the other instances' subscribers, if there are any.
      void this.leader.checkIdle();
    } else {
      void this.close(false);
    }
  }

  leaderDone(leader: JobLeader<J, E>, why: LeaderEnd): void {
    if (this.leader !== leader) return;
    this.leader = undefined;
    if (why === 'closed' || this.closed) return;
    if (this.refs === 0) {
      void this.close(false);
      return;
    }
    // Subscribers are still here: keep competing for the lease (after `ended` or `fatal`, their streams are
    // ending; a new leader would find the job ended or report the failure again).
    this.scheduleLead(this.owner.options.pollIntervalMs);
  }

  private control(msg: ControlMessage | null): void {
    if (!msg || this.closed) return;
    if (msg.kind === 'poke') this.leader?.poke();
    else if (msg.kind === 'released' && !this.leader && this.refs > 0) void this.tryLead();
  }

  private touchPresence(): void {
    const { options, scripts } = this.owner;
    scripts.run('presenceTouch', [this.keys.presence], [options.instanceId, options.presenceTtlMs]).catch(() => undefined);
  }

  private clearLeadTimer(): void {
    if (this.leadTimer) clearTimeout(this.leadTimer);
    this.leadTimer = undefined;
  }

  private scheduleLead(delayMs: number): void {
    this.clearLeadTimer();
    if (this.closed || this.refs === 0) return;
    this.leadTimer = setTimeout(() => {
      this.leadTimer = undefined;
      void this.tryLead();
    }, delayMs);
  }

  /** SET NX PX: this instance polls the job if nobody else does; otherwise it tries again later. */
  private async tryLead(): Promise<void> {
    if (this.leader || this.closed || this.refs === 0 || this.acquiring) return;
    this.acquiring = true;
    this.clearLeadTimer();
    const { options, scripts } = this.owner;
    let remaining: number;
    try {
      // Lead only once this instance hears the job's channels (its own leader's first messages included).
      if (!(await this.ready)) {
        this.acquiring = false;
        return;
      }
      remaining = Number(await scripts.run('acquire', [this.keys.lease], [options.instanceId, options.leaseMs]));
    } catch {
      remaining = options.pollIntervalMs;
    } finally {
      this.acquiring = false;
    }
    if (this.closed || this.refs === 0) {
      if (remaining === -1) await scripts.run('release', [this.keys.lease], [options.instanceId, this.keys.ctl, '']).catch(() => undefined);
      return;
    }
    if (remaining !== -1) {
      // Every interval, or just after the holder's lease expires if that comes first.
      this.scheduleLead(Math.max(5, Math.min(options.pollIntervalMs, remaining + 5)));
      return;
    }
    options.observer?.leaseAcquired?.();
    options.logger?.debug({ poller: this.name, instance: options.instanceId }, 'live: took the poller lease');
    this.leader = new JobLeader<J, E>(this, this.owner.redis, scripts, this.keys, this.jobId, this.scope.upstream, options, this.name);
    this.leader.start();
  }

  /** Stops everything of this watch; `release` gives a held lease back and tells the others. */
  async close(release: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unwatch?.();
    this.unwatch = undefined;
    this.clearLeadTimer();
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.presenceTimer = undefined;
    for (const [topic, l] of this.keepers) this.owner.target.removeEventListener(topic, l as EventListener);
    this.onClosed();
    const leader = this.leader;
    this.leader = undefined;
    await Promise.all([
      leader?.stop('closed', true, release),
      this.refs > 0 ? this.owner.redis.zrem(this.keys.presence, this.owner.options.instanceId).catch(() => undefined) : undefined,
    ]);
  }
}

/**
 * One subscriber's side of a channel: the listener appends messages to an inbox at once (a slow client never backs
 * up the others); past `maxBacklog` queued events the stream ends with SLOW_CONSUMER.
 */
class ClusterStream<J extends LiveJob, E extends LiveEvent> extends SubscriberInbox<ClusterMessage<J, E>> {
  constructor(
    readonly watch: Watch<J, E>,
    target: Target,
    topic: string,
    stop: PromiseLike<unknown>,
    maxBacklog: number,
    onClose: () => void,
  ) {
    super(target as unknown as InboxTarget, topic, stop, maxBacklog, onClose);
  }

  /** Asks the stream to compare itself with the state in Redis (after a reconnect). */
  nudge(): void {
    this.push({ kind: 'check' } as ClusterMessage<J, E>);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function closedFailure(): LiveFailure {
  return new LiveFailure('SHUTTING_DOWN', 'The server is shutting down.');
}

function lostTrack(): LiveFailure {
  return new LiveFailure('UPSTREAM_UNAVAILABLE', "The live stream lost track of the job's events; reconnect with `after` to resume.");
}

function unavailable(): LiveFailure {
  return new LiveFailure(
    'UPSTREAM_UNAVAILABLE',
    'Live updates are unavailable right now (the coordination store is unreachable); reconnect with `after` to resume.',
  );
}
