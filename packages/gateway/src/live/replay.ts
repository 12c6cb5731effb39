/**
 * Replays (`fineTuningJobEvents(after:)`), shared by the single-process poller (poller.ts) and cluster mode
 * (cluster/jobs.ts): what one subscriber can make the server read from the upstream and hold for it is bounded.
 *
 *   - EventsWalk reads a job's events newest first, one page at a time.
 *   - EventWindow remembers, per poller (per watch in cluster mode), the ids of the job's newest events that walks
 *     have read: at most maxReplayEvents + 1 of them, contiguous down from the newest one read.
 *   - reachTargets() finishes a walk for a set of `after` ids: it walks on only for an id that the window holds, or
 *     that the upstream confirms is an event of the job (one call, `after=<id>&limit=1`, which the upstream refuses
 *     with 400 for an id that is not), and never further than maxReplayEvents events down. An id that is no event
 *     of the job is refused with BAD_USER_INPUT, one further back than maxReplayEvents with LIMIT_EXCEEDED.
 *
 * Cost of one `after` that is not an event of the job: the pages down to the poller's cursor (one, shared with the
 * poll and the other replays) plus that one check; none at all once the window reaches the job's first event. An
 * upstream that accepted any `after` would cost one walk of at most (maxReplayEvents + 1) / pageSize pages per
 * poller, after which the window (then full or complete) answers.
 */
import { classifyUpstreamError, LiveFailure } from './errors.js';
import type { LiveEvent, LiveUpstream } from './types.js';

/** A job's events read newest first, page by page (`after` = the last id of the previous page). */
export class EventsWalk<E extends LiveEvent = LiveEvent> {
  /** The events read so far, newest first. */
  readonly events: E[] = [];
  /** The walk reached the job's first event. */
  exhausted = false;
  private readonly index = new Map<string, number>();
  private after: string | undefined;

  constructor(
    private readonly upstream: LiveUpstream<any, E>,
    private readonly jobId: string,
    private readonly pageSize: number,
  ) {}

  get length(): number {
    return this.events.length;
  }

  /** Reads the next page (one upstream call), unless the first event was reached. */
  async next(): Promise<void> {
    if (this.exhausted) return;
    const page = await this.upstream.listEvents(this.jobId, { after: this.after, limit: this.pageSize });
    for (const ev of page.data) {
      if (!this.index.has(ev.id)) this.index.set(ev.id, this.events.length);
      this.events.push(ev);
    }
    const last = page.data[page.data.length - 1];
    if (!page.has_more || !last) this.exhausted = true;
    else this.after = last.id;
  }

  /** Position of the event `id` (0: the newest), or -1 if the walk has not met it. */
  indexOf(id: string): number {
    return this.index.get(id) ?? -1;
  }
}

/**
 * The ids of a run of a job's events, contiguous down from `top` (the newest one a walk read), at most `capacity`
 * (maxReplayEvents + 1) of them. Invariant kept by its users: every walk that is judged against it has read down to
 * `top` (or further than `capacity` events), so an id newer than `top` was met by the walk itself. Then an id that
 * the walk did not meet and the window does not hold is no event of the job when the window is `complete`, and is
 * more than maxReplayEvents events back when the window is `full`.
 */
export class EventWindow {
  /** Oldest first. */
  private ids: string[] = [];
  private readonly known = new Set<string>();
  /** The window reaches the job's first event. */
  complete = false;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.ids.length;
  }

  get top(): string | undefined {
    return this.ids[this.ids.length - 1];
  }

  get full(): boolean {
    return this.ids.length >= this.capacity;
  }

  has(id: string): boolean {
    return this.known.has(id);
  }

  clear(): void {
    this.ids = [];
    this.known.clear();
    this.complete = false;
  }

  /**
   * Takes in what a walk read (newest first, from the job's newest event at the time). A walk that met `top` extends
   * the window both ways; one that did not, but read further than the window could reach (or to the first event),
   * replaces it; a shorter one (it stopped at what it was looking for) leaves it as it is.
   */
  merge(walk: EventsWalk<LiveEvent>): void {
    const top = this.top;
    const at = top === undefined ? -1 : walk.indexOf(top);
    if (at < 0) {
      if (top === undefined || walk.exhausted || walk.length >= this.capacity) this.reset(walk);
      return;
    }
    const below = at + this.ids.length;
    if (walk.exhausted && walk.length < below) {
      this.reset(walk); // the history changed under us
      return;
    }
    const newer: string[] = [];
    for (let i = at - 1; i >= 0; i--) newer.push(walk.events[i]!.id);
    if (walk.length > below) {
      const older: string[] = [];
      for (let i = walk.length - 1; i >= below; i--) older.push(walk.events[i]!.id);
      this.ids = older.concat(this.ids);
      for (const id of older) this.known.add(id);
    }
    for (const id of newer) {
      this.ids.push(id);
      this.known.add(id);
    }
    if (walk.exhausted) this.complete = true;
    this.trim();
  }

  private reset(walk: EventsWalk<LiveEvent>): void {
    this.clear();
    for (let i = walk.length - 1; i >= 0; i--) {
      const id = walk.events[i]!.id;
      this.ids.push(id);
      this.known.add(id);
    }
    this.complete = walk.exhausted;
    this.trim();
  }

  private trim(): void {
    const extra = this.ids.length - this.capacity;
    if (extra <= 0) return;
    for (const id of this.ids.splice(0, extra)) this.known.delete(id);
    this.complete = false;
  }
}

/** Whether `id` is an event of the job: one upstream call (`after=<id>&limit=1`), refused (4xx) when it is not. */
export async function isEventOf(upstream: LiveUpstream<any, LiveEvent>, jobId: string, id: string): Promise<boolean> {
  try {
    await upstream.listEvents(jobId, { after: id, limit: 1 });
    return true;
  } catch (err) {
    if (classifyUpstreamError(err).fatal) return false;
    throw err;
  }
}

export interface ReachOptions {
  upstream: LiveUpstream<any, any>;
  jobId: string;
  maxReplayEvents: number;
  window: EventWindow;
  /** True once the caller no longer needs the result (then no further upstream call is made). */
  stopped(): boolean;
}

/** Where a target is: its position in the walk (the replay is the events before it), or why it cannot be replayed. */
export type Reached = number | LiveFailure;

/**
 * Walks on (`walk` has read at least down to the window's top, or its first page when the window is empty) until
 * each target is met or known to be out of reach, then resolves each one. Undefined when stopped meanwhile.
 * Upstream calls: at most one check per target the window cannot place, and pages down to maxReplayEvents events.
 */
export async function reachTargets<E extends LiveEvent>(
  o: ReachOptions,
  walk: EventsWalk<E>,
  targets: Iterable<string>,
): Promise<Map<string, Reached> | undefined> {
  const { window, maxReplayEvents: max } = o;
  window.merge(walk);
  const out = new Map<string, Reached>();
  const needed: string[] = [];
  for (const t of new Set(targets)) {
    if (walk.indexOf(t) >= 0) continue;
    if (window.has(t)) needed.push(t);
    else if (walk.exhausted || window.complete) out.set(t, notAnEvent(o.jobId, t));
    else {
      const real = await isEventOf(o.upstream, o.jobId, t);
      if (o.stopped()) return undefined;
      if (!real) out.set(t, notAnEvent(o.jobId, t));
      else if (window.full || walk.length > max) out.set(t, tooFarBack(max));
      else needed.push(t);
    }
  }
  while (!walk.exhausted && walk.length <= max && needed.some((t) => walk.indexOf(t) < 0)) {
    await walk.next();
    if (o.stopped()) return undefined;
  }
  window.merge(walk);
  for (const t of new Set(targets)) {
    if (out.has(t)) continue;
    const i = walk.indexOf(t);
    out.set(t, i > max ? tooFarBack(max) : i >= 0 ? i : walk.exhausted ? notAnEvent(o.jobId, t) : tooFarBack(max));
  }
  return out;
}

export function notAnEvent(jobId: string, after: string): LiveFailure {
  return new LiveFailure('BAD_USER_INPUT', `after: the job ${jobId} has no event with id "${after}".`, 'after');
}

export function tooFarBack(max: number): LiveFailure {
  return new LiveFailure(
    'LIMIT_EXCEEDED',
    `after: that event is more than ${max} events back; a replay is at most ${max} events (MAX_REPLAY_EVENTS). ` +
      'Read older events with the `events` connection of `fineTuningJob`, then subscribe with a newer `after`.',
    'after',
    'replayEvents',
  );
}

/**
 * Counts per credential hash (jobs watched, replays running), for the per-credential limits. `take` returns the
 * function that gives the unit back (idempotent), or undefined when the credential is at `max`.
 */
export class CredentialCounter {
  private readonly counts = new Map<string, number>();

  count(hash: string): number {
    return this.counts.get(hash) ?? 0;
  }

  take(hash: string, max: number): (() => void) | undefined {
    const n = this.count(hash);
    if (n >= max) return undefined;
    this.counts.set(hash, n + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = this.count(hash) - 1;
      if (left > 0) this.counts.set(hash, left);
      else this.counts.delete(hash);
    };
  }

  clear(): void {
    this.counts.clear();
  }
}

export function tooManyWatchedJobs(max: number): LiveFailure {
  return new LiveFailure(
    'LIMIT_EXCEEDED',
    `Too many jobs watched at once with this credential: at most ${max} (MAX_WATCHED_JOBS_PER_CREDENTIAL). ` +
      'End a subscription to another job first; more subscriptions to a job already watched are not limited by this.',
    undefined,
    'watchedJobs',
  );
}

/** Replays that may wait for a slot, per credential, for each one MAX_CONCURRENT_REPLAYS lets run. */
export const REPLAY_WAITERS_PER_SLOT = 8;

export function tooManyReplays(max: number): LiveFailure {
  return new LiveFailure(
    'LIMIT_EXCEEDED',
    `Too many replays (subscriptions with \`after\`) at once with this credential: ${max} run at a time ` +
      `(MAX_CONCURRENT_REPLAYS) and ${max * REPLAY_WAITERS_PER_SLOT} more may wait for them. Retry once some have caught up.`,
    'after',
    'concurrentReplays',
  );
}

/**
 * Replay slots per credential hash: `max` replays run at once, later ones wait in arrival order (a reconnect storm
 * after a restart is served, a few at a time) up to `max` × REPLAY_WAITERS_PER_SLOT; beyond that, none is given.
 */
export class ReplaySlots {
  private readonly running = new CredentialCounter();
  private readonly waiting = new Map<string, (() => void)[]>();

  /**
   * Resolves with the function that gives the slot back, once one is free; undefined at once when too many wait,
   * or when `abandoned` settles first (the subscriber left while waiting).
   */
  async acquire(hash: string, max: number, abandoned: PromiseLike<unknown>): Promise<(() => void) | undefined> {
    const release = this.running.take(hash, max);
    if (release) return this.handing(hash, release);
    const queue = this.waiting.get(hash) ?? [];
    if (queue.length >= max * REPLAY_WAITERS_PER_SLOT) return undefined;
    this.waiting.set(hash, queue);
    let wake!: () => void;
    const woken = new Promise<void>((r) => (wake = r));
    queue.push(wake);
    const leave = () => {
      const i = queue.indexOf(wake);
      if (i !== -1) queue.splice(i, 1);
      if (queue.length === 0 && this.waiting.get(hash) === queue) this.waiting.delete(hash);
    };
    const outcome = await Promise.race([woken.then(() => 'woken' as const), Promise.resolve(abandoned).then(() => 'abandoned' as const)]);
    leave();
    if (outcome === 'abandoned') {
      // Woken in the same turn as abandoned: pass the slot on rather than keep it.
      return undefined;
    }
    const taken = this.running.take(hash, max);
    return taken ? this.handing(hash, taken) : this.acquire(hash, max, abandoned);
  }

  /** The slot's release, which also wakes the first waiter of the credential. */
  private handing(hash: string, release: () => void): () => void {
    let given = false;
    return () => {
      if (given) return;
      given = true;
      release();
      this.waiting.get(hash)?.[0]?.();
    };
  }

  clear(): void {
    this.running.clear();
    for (const queue of this.waiting.values()) for (const wake of queue) wake();
    this.waiting.clear();
  }
}
