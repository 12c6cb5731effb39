import { classifyUpstreamError, LiveFailure } from './errors.js';
import { EventsWalk, EventWindow, reachTargets } from './replay.js';
import { backoffDelay, nextTick } from './schedule.js';
import type { LiveEvent, LiveJob, LiveMessage, LiveOptions, LiveUpstream } from './types.js';

export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);
export function isTerminal(status: string | undefined): boolean {
  return status !== undefined && TERMINAL_STATUSES.has(status);
}

/** JSON with object keys sorted, so two equal upstream objects serialise identically. */
export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const sorted: Record<string, unknown> = {};
      for (const k of Object.keys(v as object).sort()) sorted[k] = (v as Record<string, unknown>)[k];
      return sorted;
    }
    return v;
  });
}

export type ReplayResult<E extends LiveEvent = LiveEvent> = { ok: true; events: E[]; seq: number } | { ok: false; failure: LiveFailure };

interface PendingReplay<E extends LiveEvent> {
  after: string;
  resolve(result: ReplayResult<E>): void;
}

/**
 * One poller per (credential, job), shared by all of its subscribers.
 *
 * Each tick retrieves the job (publishing it when its serialisation changed), then reads the first
 * page of events, newest first, and walks further pages only until it meets the newest event id it
 * has already seen (its cursor): the events before that id are new and are published oldest first,
 * each with the next sequence number. A subscriber with `after` asks for a replay, served by the
 * same walk (which then goes back to that id, at most maxReplayEvents events: see replay.ts), so
 * the seam between replay and live events is a sequence number, and nothing is delivered twice or
 * lost. Replays that arrive together share one walk.
 *
 * Ticks are serialised (never two upstream walks at once). Interval: `pollIntervalMs`, times
 * `slowFactor` while validating/queued/paused; on errors an exponential back-off with jitter
 * (streams stay open; since the next walk goes back to the cursor, an outage leaves no gap). Once
 * the job is terminal it does one last sweep for late events (when it saw the job before it was
 * terminal), publishes `end` and finishes. `stop()` (last subscriber gone) clears its timer at once;
 * an upstream call in flight is then ignored.
 */
export class JobPoller<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> {
  /** Subscriber count, kept by the registry. */
  refs = 0;

  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private finished = false;
  private busy = false;
  /** A job tick (retrieve + walk) is due. */
  private dueTick = false;
  /** The next due tick may skip the retrieve: a fresh job state was just handed in by notify(). */
  private skipRetrieve = false;
  private backingOff = false;
  private failures = 0;
  private pendingReplays: PendingReplay<E>[] = [];
  /** When the tick about to run was due (set by the timer); ticks kicked otherwise are due when they start. */
  private tickDueAt: number | undefined;

  /** Newest event id seen; undefined before the first walk, null when the job had no events then. */
  private cursor: string | null | undefined;
  /** Ids of the newest events read by walks, kept once a replay needed them (see replay.ts); its top is the cursor. */
  private readonly window: EventWindow;
  private seq = 0;

  private job: J | undefined;
  private jobSerial: string | undefined;
  private jobVersion = 0;
  /** Bumped by notify(): a retrieve that started before it carries an older state and is ignored. */
  private notifyEpoch = 0;
  /** The job was seen non-terminal: when it turns terminal, sweep once more for late events. */
  private sawActive = false;
  /** The second tick is shifted by a random part of the interval, so that pollers do not tick together. */
  private phaseShifted = false;
  private finalSweepDone = false;
  private ending = false;

  constructor(
    readonly key: string,
    readonly jobId: string,
    private readonly upstream: LiveUpstream<J, E>,
    private readonly opts: LiveOptions,
    private readonly publish: (msg: LiveMessage<J, E>) => void,
    /** Called once when the poller finishes by itself (terminal job or fatal error). */
    private readonly onFinished: (poller: JobPoller<J, E>) => void,
  ) {
    this.window = new EventWindow(opts.maxReplayEvents + 1);
  }

  /** Starts polling at once. */
  start(): void {
    this.dueTick = true;
    this.kick();
  }

  /** Stops all work now: no timer is left, an upstream call in flight is ignored. */
  stop(): void {
    this.stopped = true;
    this.clearTimer();
    const replays = this.pendingReplays.splice(0);
    for (const r of replays) r.resolve({ ok: false, failure: new LiveFailure('SHUTTING_DOWN', 'The live stream was stopped.') });
  }

  get isFinished(): boolean {
    return this.finished || this.stopped;
  }

  /** Sequence number of the last published event. */
  currentSeq(): number {
    return this.seq;
  }

  /** The newest known state of the job, with its version, if any tick has fetched it yet. */
  currentJob(): { job: J; version: number } | undefined {
    return this.job ? { job: this.job, version: this.jobVersion } : undefined;
  }

  /**
   * Every event after `after`, oldest first, plus the sequence number they bring the subscriber up
   * to: live events with a higher number are the ones it still needs. Resolves with a failure:
   * BAD_USER_INPUT when the job has no event with that id, LIMIT_EXCEEDED when it is more than
   * maxReplayEvents events back.
   */
  requestReplay(after: string): Promise<ReplayResult<E>> {
    return new Promise((resolve) => {
      if (this.isFinished) {
        resolve({ ok: false, failure: new LiveFailure('SHUTTING_DOWN', 'The live stream was stopped.') });
        return;
      }
      this.pendingReplays.push({ after, resolve });
      if (!this.backingOff) this.kick();
    });
  }

  /**
   * A fresh job state from elsewhere (a cancel, pause or resume made through this server):
   * published at once, then an immediate walk picks up the events that came with it.
   */
  notify(job: J): void {
    if (this.isFinished || job.id !== this.jobId) return;
    this.notifyEpoch++;
    this.applyJob(job);
    this.dueTick = true;
    this.skipRetrieve = true;
    this.backingOff = false;
    this.clearTimer();
    this.kick();
  }

  private clearTimer(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private schedule(delayMs: number): void {
    this.clearTimer();
    if (this.stopped) return;
    const dueAt = Date.now() + delayMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.tickDueAt = dueAt;
      this.backingOff = false;
      this.dueTick = true;
      this.kick();
    }, delayMs);
  }

  private kick(): void {
    if (this.busy || this.isFinished) return;
    void this.loop();
  }

  private async loop(): Promise<void> {
    this.busy = true;
    try {
      while (!this.isFinished && !this.backingOff && (this.dueTick || this.pendingReplays.length > 0)) {
        const tick = this.dueTick;
        const retrieve = tick && !this.skipRetrieve;
        this.dueTick = false;
        this.skipRetrieve = false;
        const replays = this.pendingReplays.splice(0);
        const dueAt = (tick ? this.tickDueAt : undefined) ?? Date.now();
        if (tick) this.tickDueAt = undefined;
        if (tick) this.opts.observer?.pollLag?.(Math.max(0, Date.now() - dueAt));
        try {
          if (retrieve) {
            const epoch = this.notifyEpoch;
            const job = await this.upstream.retrieveJob(this.jobId);
            if (this.isFinished) return;
            if (epoch === this.notifyEpoch) this.applyJob(job);
          }
          await this.walk(replays);
          if (this.isFinished) return;
          this.failures = 0;
          if (tick) this.afterTick(dueAt);
        } catch (err) {
          if (this.isFinished) return;
          this.pendingReplays.unshift(...replays);
          this.onError(err);
        }
      }
      if (this.ending && !this.isFinished && this.pendingReplays.length === 0) this.finish({ kind: 'end' });
    } finally {
      this.busy = false;
    }
  }

  /** Schedules the next poll or the last sweep, or marks the end (see nextTick). */
  private afterTick(dueAt: number): void {
    const status = this.job?.status;
    const next = nextTick(
      { dueAt, status, terminal: isTerminal(status), sawActive: this.sawActive, finalSweepDone: this.finalSweepDone, phaseShifted: this.phaseShifted },
      this.opts,
    );
    if (next.kind === 'end') {
      this.ending = true;
      return;
    }
    if (next.kind === 'sweep') this.finalSweepDone = true;
    else this.phaseShifted = true;
    this.schedule(next.delayMs);
  }

  private onError(err: unknown): void {
    const kind = classifyUpstreamError(err);
    if (kind.fatal) {
      const failure = new LiveFailure(kind.code, kind.message);
      for (const r of this.pendingReplays.splice(0)) r.resolve({ ok: false, failure });
      this.finish({ kind: 'error', code: kind.code, message: kind.message });
      return;
    }
    this.failures++;
    const delay = backoffDelay(this.failures, kind.retryAfterMs, this.opts);
    this.opts.logger?.warn({ poller: this.key, failures: this.failures, retryInMs: Math.round(delay), error: describe(err) }, 'live poll failed; backing off');
    this.backingOff = true;
    this.schedule(delay);
  }

  private applyJob(job: J): void {
    if (!isTerminal(job.status)) this.sawActive = true;
    const serial = stableStringify(job);
    if (serial === this.jobSerial) return;
    this.jobSerial = serial;
    this.job = job;
    this.jobVersion++;
    this.publish({ kind: 'job', version: this.jobVersion, job });
  }

  /**
   * Reads events newest first down to the cursor, publishes the new ones oldest first, then serves the replays:
   * each `after` is walked down to (never further than maxReplayEvents events), or refused without walking when
   * the window of ids already read, or one check at the upstream, shows that it is no event of the job
   * (BAD_USER_INPUT) or too far back (LIMIT_EXCEEDED). See replay.ts.
   */
  private async walk(replays: PendingReplay<E>[]): Promise<void> {
    const cursor = this.cursor;

    if (cursor === undefined && replays.length === 0) {
      // First walk, nobody needs history: only learn the newest id (the baseline).
      const page = await this.upstream.listEvents(this.jobId, { limit: 1 });
      if (this.isFinished) return;
      this.cursor = page.data[0]?.id ?? null;
      return;
    }

    // Down to the cursor (all the way when the job had no events at the baseline; the first page when this walk,
    // made for a replay, is the baseline).
    const walk = new EventsWalk<E>(this.upstream, this.jobId, this.opts.eventsPageSize);
    do {
      await walk.next();
      if (this.isFinished) return;
    } while (!walk.exhausted && typeof cursor === 'string' && walk.indexOf(cursor) < 0);

    let fresh: E[];
    if (cursor === undefined)
      fresh = []; // baseline walk (made for a replay): nothing is "new" yet
    else if (cursor === null)
      fresh = walk.events.slice(); // the job had no events at the baseline
    else {
      const at = walk.indexOf(cursor);
      if (at >= 0) fresh = walk.events.slice(0, at);
      else {
        // The cursor vanished upstream (should not happen: events are never deleted). Re-baseline
        // rather than re-send the whole history.
        this.opts.logger?.warn({ poller: this.key }, 'live poll: last seen event not found upstream; re-baselining');
        this.window.clear();
        fresh = [];
      }
    }
    if (walk.length > 0) this.cursor = walk.events[0]!.id;
    else if (this.cursor === undefined) this.cursor = null;

    if (fresh.length > 0) {
      const events = fresh.slice().reverse();
      const firstSeq = this.seq + 1;
      this.seq += events.length;
      this.publish({ kind: 'events', firstSeq, events });
    }

    if (replays.length === 0) {
      // Keep the window (if a replay started one) anchored at the cursor.
      if (this.window.size > 0) this.window.merge(walk);
      return;
    }
    const reached = await reachTargets(
      { upstream: this.upstream, jobId: this.jobId, maxReplayEvents: this.opts.maxReplayEvents, window: this.window, stopped: () => this.isFinished },
      walk,
      replays.map((r) => r.after),
    );
    if (!reached) return;
    for (const r of replays) {
      const at = reached.get(r.after)!;
      if (typeof at !== 'number') r.resolve({ ok: false, failure: at });
      else r.resolve({ ok: true, events: walk.events.slice(0, at).reverse(), seq: this.seq });
    }
  }

  private finish(msg: LiveMessage<J, E>): void {
    if (this.finished) return;
    this.finished = true;
    this.clearTimer();
    if (!this.stopped) this.publish(msg);
    this.onFinished(this);
  }
}

function describe(err: unknown): string {
  const e = err as { status?: number; name?: string; code?: string } | null;
  if (e && typeof e.status === 'number') return `HTTP ${e.status}`;
  return e?.code ?? e?.name ?? 'error';
}
