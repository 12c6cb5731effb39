/**
 * When a job poller polls next: the policy shared by the single-process poller (poller.ts) and the cluster's
 * lease holder (cluster/leader.ts), which each keep their own timer and state.
 */
import type { LiveOptions } from './types.js';

/** Statuses polled `slowFactor` times less often: nothing moves quickly in them. */
export const SLOW_STATUSES: ReadonlySet<string> = new Set(['validating_files', 'queued', 'paused']);

export type NextTick = { kind: 'poll' | 'sweep'; delayMs: number } | { kind: 'end' };

/**
 * What follows a successful tick: the next poll, a last sweep, or the end. Fixed rate on a grid: the next tick is
 * due one interval after this one was due (not after it ended, nor after a late timer fired), so a job costs
 * exactly one poll per interval and a late tick does not push the following ones back. After a long stall the grid
 * restarts from now (no burst of polls). A terminal job gets one last sweep for events written just after its
 * status, when the poller saw it active. The first interval gets a random extra of up to one interval (the first
 * tick ran at once, as subscribers want the current state; this spreads the later ones).
 */
export function nextTick(
  tick: { dueAt: number; status: string | undefined; terminal: boolean; sawActive: boolean; finalSweepDone: boolean; phaseShifted: boolean },
  opts: Pick<LiveOptions, 'pollIntervalMs' | 'slowFactor'>,
  now = Date.now(),
): NextTick {
  const delay = (interval: number) => {
    const at = tick.dueAt + interval;
    return at < now - interval ? 0 : Math.max(0, at - now);
  };
  if (tick.terminal) return tick.sawActive && !tick.finalSweepDone ? { kind: 'sweep', delayMs: delay(opts.pollIntervalMs) } : { kind: 'end' };
  const slow = tick.status !== undefined && SLOW_STATUSES.has(tick.status);
  let interval = slow ? opts.pollIntervalMs * opts.slowFactor : opts.pollIntervalMs;
  if (!tick.phaseShifted) interval += Math.random() * opts.pollIntervalMs;
  return { kind: 'poll', delayMs: delay(interval) };
}

/**
 * The wait before retrying after failure number `failures` (1, 2, …): exponential up to maxBackoffMs with "equal
 * jitter" (half fixed, half random, so that many pollers do not retry in lockstep), and at least a Retry-After
 * within the cap.
 */
export function backoffDelay(failures: number, retryAfterMs: number | undefined, opts: Pick<LiveOptions, 'pollIntervalMs' | 'maxBackoffMs'>): number {
  const base = Math.min(opts.maxBackoffMs, opts.pollIntervalMs * 2 ** (failures - 1));
  const delay = base / 2 + Math.random() * (base / 2);
  return retryAfterMs !== undefined ? Math.max(delay, Math.min(retryAfterMs, opts.maxBackoffMs)) : delay;
}
