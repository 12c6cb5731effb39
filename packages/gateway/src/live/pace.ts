/**
 * Delivery pacing, shared by the single-process registry and cluster mode. A stream delivers its items through a
 * chain of promises (the stream's push, the transport's `for await`, the event's execution, the socket write) that
 * never returns to the event loop by itself: a replay of thousands of events, times many subscribers, would keep
 * timers, health checks, other clients and a shutdown signal waiting until the last one is written. Every stream
 * calls `pace()` after each item it delivers; once the items delivered since the event loop last turned (by all
 * streams together) exceed a small budget, it yields a macrotask (`setImmediate`), so that I/O runs between batches.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Items delivered, by all streams together, before the event loop gets a turn (a few milliseconds of work). */
export const TURN_BUDGET = 32;

let spent = 0;
let resetScheduled = false;

/**
 * Counts one delivered item. Undefined while the budget of this turn of the event loop lasts; past it, a promise to
 * await that resolves on the next turn (after pending I/O). Call as `const p = pace(); if (p) await p;`, so the
 * common case costs no extra promise.
 */
export function pace(): Promise<void> | undefined {
  spent++;
  if (!resetScheduled) {
    resetScheduled = true;
    setImmediate(() => {
      spent = 0;
      resetScheduled = false;
    });
  }
  return spent > TURN_BUDGET ? (nextTurn() as Promise<void>) : undefined;
}
