import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { classifyUpstreamError } from '../errors.js';
import { isTerminal, stableStringify } from '../poller.js';
import { backoffDelay, nextTick } from '../schedule.js';
import type { LiveEvent, LiveJob, LiveUpstream } from '../types.js';
import type { JobKeys, Scripts } from './redis.js';
import { type ClusterOptions, type ClusterState, parseState } from './types.js';

export type LeaderEnd =
  /** The job is terminal and `end` was published. */
  | 'ended'
  /** A fatal upstream error was published. */
  | 'fatal'
  /** Another instance holds the lease now (or it could not be renewed in time). */
  | 'lost'
  /** Nobody watches the job any more. */
  | 'idle'
  /** This instance is shutting down. */
  | 'closed';

export interface LeaderHost {
  /** Local subscribers of the job. */
  readonly refs: number;
  /** Called once when the leader stops. */
  leaderDone(leader: JobLeader, why: LeaderEnd): void;
}

export const newEpoch = () => randomBytes(8).toString('hex');

export function jobHash(job: unknown): string {
  return createHash('sha256').update(stableStringify(job)).digest('base64url').slice(0, 22);
}

/**
 * The poller of one (credential, job) on the instance that holds its Redis lease.
 *
 * It resumes from the state in Redis (the last published event id and sequence number, the last job state's
 * hash and version), or makes the first baseline. Each tick retrieves the job and walks the events newest first
 * down to the last published id, like the single-process poller; what it publishes goes through a Lua script
 * that checks it still holds the lease and that the state is the one it walked from, updates the state and
 * PUBLISHes in one step: a leader that lost its lease (a long pause) can never publish twice or out of order.
 *
 * The lease is renewed every leaseMs/3 (compare-and-renew); when it is lost, the leader stops at once. While
 * the instance has no subscriber of its own, the leader goes on only as long as another instance has (presence).
 */
export class JobLeader<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> {
  private stopped = false;
  private busy = false;
  private dueTick = false;
  private tickDueAt: number | undefined;
  private backingOff = false;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private lastRenewed = Date.now();
  private reloadJob = false;
  /** The next tick takes the job from the state (a mutation just put it there) instead of retrieving it. */
  private skipRetrieve = false;
  private loaded = false;
  private sawActive = false;
  private finalSweepDone = false;
  private ending = false;
  private phaseShifted = false;
  private status: string | undefined;
  private state!: ClusterState;

  constructor(
    private readonly host: LeaderHost,
    private readonly redis: Redis,
    private readonly scripts: Scripts,
    private readonly keys: JobKeys,
    readonly jobId: string,
    private readonly upstream: LiveUpstream<J, E>,
    private readonly opts: ClusterOptions,
    /** For logs: the watch key (credential hash and job id). */
    private readonly name: string,
  ) {}

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Takes over: starts renewing the lease and polls at once (the first poll loads or makes the state). */
  start(): void {
    this.renewTimer = setInterval(() => void this.renew(), Math.max(50, Math.floor(this.opts.leaseMs / 3)));
    this.dueTick = true;
    this.kick();
  }

  /** A mutation's state was published (by any instance): walk the events now, without retrieving the job. */
  poke(): void {
    if (this.stopped) return;
    this.reloadJob = true;
    this.skipRetrieve = true;
    this.dueTick = true;
    this.backingOff = false;
    this.clearTimer();
    this.kick();
  }

  /** The instance lost its last subscriber: go on only if another instance still has some. */
  async checkIdle(): Promise<void> {
    if (this.stopped || this.host.refs > 0) return;
    const count = Number(await this.scripts.run('presenceCount', [this.keys.presence], []).catch(() => 1));
    if (count === 0 && this.host.refs === 0 && !this.stopped) await this.stop('idle', true, true);
  }

  /** Stops polling; `release` gives the lease back (compare-and-delete), `announce` tells the others at once. */
  async stop(why: LeaderEnd, release: boolean, announce: boolean): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimer();
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = undefined;
    if (why === 'lost') this.opts.observer?.leaseLost?.();
    if (release) {
      await this.scripts
        .run('release', [this.keys.lease], [this.opts.instanceId, this.keys.ctl, announce ? JSON.stringify({ kind: 'released' }) : ''])
        .catch((err: unknown) => this.opts.logger?.warn({ poller: this.name, error: describe(err) }, 'live: could not release a lease'));
    }
    this.host.leaderDone(this, why);
  }

  private async renew(): Promise<void> {
    if (this.stopped) return;
    try {
      const ok = await this.scripts.run<number>('renew', [this.keys.lease, this.keys.state], [this.opts.instanceId, this.opts.leaseMs, this.opts.stateTtlMs]);
      if (this.stopped) return;
      if (ok === 1) this.lastRenewed = Date.now();
      else await this.lose('lease taken over');
    } catch (err) {
      if (this.stopped) return;
      // Redis unreachable: the lease may expire under us; stop before another instance can take it.
      if (Date.now() - this.lastRenewed > this.opts.leaseMs * 0.8) await this.lose(`lease not renewed: ${describe(err)}`);
    }
  }

  private async lose(why: string): Promise<void> {
    this.opts.logger?.warn({ poller: this.name, why }, 'live: lost the poller lease');
    await this.stop('lost', false, false);
  }

  private async load(): Promise<boolean> {
    const state = parseState(await this.redis.hgetall(this.keys.state));
    if (!state) return false;
    this.state = state;
    return true;
  }

  /** A new baseline: the newest event id now (nothing before it is published), under a new epoch. */
  private async baseline(force: boolean): Promise<boolean> {
    const page = await this.upstream.listEvents(this.jobId, { limit: 1 });
    if (this.stopped) return false;
    const cursor = page.data[0]?.id ?? null;
    const epoch = newEpoch();
    const r = await this.scripts.run<string>(
      'init',
      [this.keys.lease, this.keys.state],
      [this.opts.instanceId, epoch, cursor ?? '', cursor === null ? '0' : '1', this.opts.stateTtlMs, this.keys.events, force ? '1' : '0'],
    );
    if (this.stopped) return false;
    if (r === 'lost') {
      await this.lose('lease lost while making the baseline');
      return false;
    }
    if (r === 'exists') return this.load();
    this.state = { epoch, seq: 0, cursor, version: 0, jobHash: '', notify: '0', ended: false };
    return true;
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
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
    if (this.busy || this.stopped) return;
    void this.loop();
  }

  private async loop(): Promise<void> {
    this.busy = true;
    try {
      while (!this.stopped && !this.backingOff && this.dueTick) {
        this.dueTick = false;
        const dueAt = this.tickDueAt ?? Date.now();
        this.tickDueAt = undefined;
        this.opts.observer?.pollLag?.(Math.max(0, Date.now() - dueAt));
        try {
          const ok = await this.tick();
          if (this.stopped) return;
          this.failures = 0;
          if (ok) this.afterTick(dueAt);
          else this.schedule(this.opts.pollIntervalMs);
          if (this.host.refs === 0) await this.checkIdle();
        } catch (err) {
          if (this.stopped) return;
          this.onError(err);
        }
      }
      if (this.ending && !this.stopped) {
        const r = await this.scripts
          .run<string>('publishEnd', [this.keys.lease, this.keys.state], [this.opts.instanceId, this.state.epoch, this.keys.events, this.keys.job])
          .catch((err: unknown) => {
            this.onError(err);
            return 'error';
          });
        if (r === 'ok') await this.stop('ended', true, false);
        else if (r === 'lost') await this.lose('lease lost before the end');
        else if (r === 'missing' || r === 'stale') {
          // The state was reset under us: walk again from the new baseline, then end.
          this.ending = false;
          this.finalSweepDone = false;
          await this.load().catch(() => false);
          this.dueTick = true;
          if (!this.stopped) queueMicrotask(() => this.kick());
        }
      }
    } finally {
      this.busy = false;
    }
  }

  /** One poll: the job, then its new events. False when the leader stopped during it. */
  private async tick(): Promise<boolean> {
    if (!this.loaded || this.reloadJob) {
      const first = !this.loaded;
      this.reloadJob = false;
      if (!(await this.load()) && !(await this.baseline(false))) return false;
      if (this.stopped) return false;
      this.loaded = true;
      if (first && this.state.ended) {
        // Finished earlier: subscribers read `ended` from the state. Nothing to poll; leave quietly.
        await this.stop('ended', true, false);
        return false;
      }
    }
    if (this.skipRetrieve && this.state.job) {
      this.skipRetrieve = false;
      this.status = (JSON.parse(this.state.job) as J).status;
      if (!isTerminal(this.status)) this.sawActive = true;
      return this.walk();
    }
    this.skipRetrieve = false;
    const notify = this.state.notify;
    const job = await this.upstream.retrieveJob(this.jobId);
    if (this.stopped) return false;
    this.status = job.status;
    if (!isTerminal(job.status)) this.sawActive = true;
    const hash = jobHash(job);
    if (hash !== this.state.jobHash) {
      const [r, version] = await this.scripts.run<[string, number?]>(
        'publishJob',
        [this.keys.lease, this.keys.state],
        [this.opts.instanceId, this.state.epoch, notify, hash, JSON.stringify(job), this.opts.stateTtlMs, this.keys.job],
      );
      if (this.stopped) return false;
      if (r === 'ok') {
        this.state.version = Number(version);
        this.state.jobHash = hash;
      } else if (r === 'same') {
        this.state.jobHash = hash;
      } else if (r === 'lost') {
        await this.lose('lease lost before publishing a job state');
        return false;
      } else if (r === 'missing') {
        this.opts.logger?.warn({ poller: this.name }, 'live: job state vanished from Redis; new baseline');
        if (!(await this.baseline(true))) return false;
      } else {
        // A mutation's state came in meanwhile: ours may be older. Take the state's; the next poll looks again.
        if (!(await this.load()) && !(await this.baseline(true))) return false;
        this.status = this.state.job ? (JSON.parse(this.state.job) as J).status : this.status;
      }
    }
    return this.walk();
  }

  /** Events newer than the last published one, newest first until it is met; published oldest first. */
  private async walk(): Promise<boolean> {
    const cursor = this.state.cursor;
    const fresh: E[] = []; // newest first
    let met = cursor === null;
    let after: string | undefined;
    outer: for (;;) {
      const page = await this.upstream.listEvents(this.jobId, { after, limit: this.opts.eventsPageSize });
      if (this.stopped) return false;
      for (const ev of page.data) {
        if (cursor !== null && ev.id === cursor) {
          met = true;
          break outer;
        }
        fresh.push(ev);
      }
      const last = page.data[page.data.length - 1];
      if (!page.has_more || !last) break;
      after = last.id;
    }
    if (!met) {
      // The last published event is gone upstream (should not happen: events are never deleted). A new baseline
      // (new epoch) rather than re-sending the whole history; subscribers resynchronise.
      this.opts.logger?.warn({ poller: this.name }, 'live: last published event not found upstream; new baseline');
      return this.baseline(true);
    }
    if (fresh.length === 0) return true;
    const events = fresh.reverse();
    const newCursor = events[events.length - 1]!.id;
    const [r, last] = await this.scripts.run<[string, number?]>(
      'publishEvents',
      [this.keys.lease, this.keys.state],
      [this.opts.instanceId, this.state.epoch, this.state.seq, newCursor, events.length, JSON.stringify(events), this.opts.stateTtlMs, this.keys.events],
    );
    if (this.stopped) return false;
    if (r === 'ok') {
      this.state.seq = Number(last);
      this.state.cursor = newCursor;
      return true;
    }
    if (r === 'lost') {
      await this.lose('lease lost before publishing events');
      return false;
    }
    // The state changed under us (reset, or another writer): reload and walk again at the next poll.
    this.opts.logger?.warn({ poller: this.name, result: r }, 'live: state changed under the poller; reloading');
    if (!(await this.load())) return this.baseline(true);
    return true;
  }

  /** Schedules the next poll or the last sweep, or marks the end (see nextTick). */
  private afterTick(dueAt: number): void {
    const next = nextTick(
      {
        dueAt,
        status: this.status,
        terminal: isTerminal(this.status),
        sawActive: this.sawActive,
        finalSweepDone: this.finalSweepDone,
        phaseShifted: this.phaseShifted,
      },
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
      void this.scripts
        .run(
          'publishError',
          [this.keys.lease],
          [this.opts.instanceId, this.keys.events, this.keys.job, JSON.stringify({ kind: 'error', code: kind.code, message: kind.message })],
        )
        .catch(() => undefined)
        .then(() => this.stop('fatal', true, false));
      return;
    }
    this.failures++;
    const delay = backoffDelay(this.failures, kind.retryAfterMs, this.opts);
    this.opts.logger?.warn({ poller: this.name, failures: this.failures, retryInMs: Math.round(delay), error: describe(err) }, 'live poll failed; backing off');
    this.backingOff = true;
    this.schedule(delay);
  }
}

export function describe(err: unknown): string {
  const e = err as { status?: number; name?: string; code?: string; message?: string } | null;
  if (e && typeof e.status === 'number') return `HTTP ${e.status}`;
  return e?.code ?? e?.name ?? 'error';
}
