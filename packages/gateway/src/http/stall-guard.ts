/**
 * Stalled HTTP clients (issue 10): a response whose client stops reading keeps its bytes, its socket and, for a
 * subscription stream (SSE, or a subscription in a plain JSON POST), its share of a poller. Backpressure stops
 * the server from producing more for it, but nothing else would ever end it. One sweep over the in-flight
 * responses (a timer, not one per request) cuts each response that has had bytes waiting to be sent and sent none
 * for `stallMs` (STREAM_STALL_TIMEOUT_MS): the connection is destroyed, which ends the subscription behind it.
 *
 * A healthy stream is never cut: yoga's SSE writes a ping every 12 s, and every write that reaches the socket
 * counts as progress. A response whose client reads, however slowly, makes progress too.
 */
import type { ServerResponse } from 'node:http';

interface Seen {
  bytes: number;
  since: number;
}

/**
 * Starts the sweep over `inflight` (every response not yet finished). `onCut` is told of each response cut, with
 * the bytes it still had unsent.
 */
export function startStallSweep(
  inflight: ReadonlySet<ServerResponse>,
  stallMs: number,
  onCut: (res: ServerResponse, unsentBytes: number) => void,
): { stop(): void } {
  const seen = new WeakMap<ServerResponse, Seen>();
  const sweep = () => {
    const now = Date.now();
    for (const res of inflight) {
      const socket = res.socket;
      if (!socket || res.destroyed) continue;
      // Bytes still queued in the response or the socket: the client is not taking what it was sent.
      const waiting = res.writableLength + socket.writableLength;
      if (waiting === 0) {
        seen.delete(res);
        continue;
      }
      const bytes = socket.bytesWritten;
      const last = seen.get(res);
      if (!last || last.bytes !== bytes) {
        seen.set(res, { bytes, since: now });
        continue;
      }
      if (now - last.since >= stallMs) {
        seen.delete(res);
        onCut(res, waiting);
        socket.destroy();
      }
    }
  };
  const timer = setInterval(sweep, Math.max(50, Math.min(1_000, Math.floor(stallMs / 4))));
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
