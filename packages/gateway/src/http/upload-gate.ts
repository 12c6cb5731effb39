/**
 * The upload gate (issue 10): at most `maxConcurrent` uploads (multipart POSTs to /graphql) are processed at once
 * (MAX_CONCURRENT_UPLOADS, default 2), because each one holds its file in memory while it is parsed and sent on.
 * Further uploads wait in arrival order with their bodies unread: nothing reads the socket, so the client is held
 * back by TCP flow control and the waiting costs a socket, not the file. At most `maxWaiting` may wait (default
 * 4 × maxConcurrent), each at most `maxWaitMs`; beyond either, the upload is refused at once with 429, Retry-After
 * and a GraphQL error with code LIMIT_EXCEEDED and `limit: 'concurrentUploads'`. A refused upload's body is read
 * and dropped (so that the client, which is usually still sending, gets to read the answer); past `drainBytes`
 * the connection is cut.
 *
 * A slot is held from the moment the request is let through until its response is finished or its connection
 * closed. A waiter whose connection is closed by the server (REQUEST_TIMEOUT_MS, shutdown) leaves the queue at
 * once; one whose client hangs up is noticed only when its turn comes (its socket is not read until then, so the
 * end of the stream is not seen) and then ends at once, or at the wait bound. /metrics: ftgql_uploads_in_progress,
 * ftgql_uploads_waiting and ftgql_uploads_refused_total (by reason).
 *
 * Written here rather than taken from a library: what matters is where the request is held (before anything
 * reads its body, in the node:http handler) and releasing on the response's close; a semaphore package would
 * still need all of that around it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, type Registry } from 'prom-client';

export interface UploadGateOptions {
  /** Uploads processed at once (MAX_CONCURRENT_UPLOADS). */
  maxConcurrent: number;
  /** Uploads that may wait for a slot. Default 4 × maxConcurrent. */
  maxWaiting?: number;
  /** Longest wait for a slot, in ms. */
  maxWaitMs: number;
  /** Bytes of a refused upload's body read and dropped before the connection is cut. */
  drainBytes: number;
  /** Retry-After of a refusal, in seconds. Default 2. */
  retryAfterSeconds?: number;
  /** Where the gauges and the counter go (the server's /metrics registry). */
  registry?: Registry;
  /**
   * Why this caller may not upload at all (no or a wrong token), as the error to answer with, or undefined. Such an
   * upload is answered at once and takes no slot, so that unauthenticated clients cannot hold the slots.
   */
  refuseCaller?: (req: IncomingMessage) => { status: number; headers?: Record<string, string>; message: string; code: string } | undefined;
}

export interface UploadGate {
  /** Whether `req` is an upload the gate applies to: a POST with a multipart/form-data body. */
  isUpload(req: IncomingMessage): boolean;
  /** Calls `handle` once a slot is free (at once when one is), or answers 429 when the upload cannot wait. */
  admit(req: IncomingMessage, res: ServerResponse, handle: () => void): void;
  stats(): { inProgress: number; waiting: number };
}

type RefusalReason = 'queue_full' | 'wait_timeout';

interface Waiter {
  req: IncomingMessage;
  res: ServerResponse;
  handle: () => void;
  timer: NodeJS.Timeout;
  /** Removes the waiter's close listener. */
  forget: () => void;
}

export function createUploadGate(opts: UploadGateOptions): UploadGate {
  const maxConcurrent = Math.max(1, opts.maxConcurrent);
  const maxWaiting = opts.maxWaiting ?? 4 * maxConcurrent;
  const retryAfter = opts.retryAfterSeconds ?? 2;
  let inProgress = 0;
  const queue: Waiter[] = [];

  const registers = opts.registry ? [opts.registry] : [];
  new Gauge({
    name: 'ftgql_uploads_in_progress',
    help: `Uploads (multipart requests) being processed (at most MAX_CONCURRENT_UPLOADS=${maxConcurrent}).`,
    registers,
    collect() {
      this.set(inProgress);
    },
  });
  new Gauge({
    name: 'ftgql_uploads_waiting',
    help: `Uploads waiting for a slot, bodies unread (at most ${maxWaiting}).`,
    registers,
    collect() {
      this.set(queue.length);
    },
  });
  const refusedTotal = new Counter({
    name: 'ftgql_uploads_refused_total',
    help: 'Uploads refused with 429 LIMIT_EXCEEDED: too many waiting (queue_full) or waited too long (wait_timeout).',
    labelNames: ['reason'] as const,
    registers,
  });

  const start = (res: ServerResponse, handle: () => void) => {
    inProgress++;
    res.once('close', release);
    handle();
  };

  function release() {
    inProgress--;
    const next = queue.shift();
    if (!next) return;
    clearTimeout(next.timer);
    next.forget();
    start(next.res, next.handle);
  }

  /**
   * Answers an upload that will not be processed, then reads and drops what the client is still sending, so that it
   * gets to read the answer (a connection closed on unread data is reset, and the client may lose the answer with
   * it), up to a bound; the connection is then kept for the client's next request.
   */
  const answer = (req: IncomingMessage, res: ServerResponse, status: number, headers: Record<string, string>, error: Record<string, unknown>) => {
    const body = JSON.stringify({ errors: [error] });
    res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    let read = 0;
    req.on('data', (chunk: Buffer) => {
      read += chunk.length;
      if (read > opts.drainBytes) req.socket.destroy();
    });
    req.resume();
  };

  const refuse = (req: IncomingMessage, res: ServerResponse, reason: RefusalReason) => {
    refusedTotal.inc({ reason });
    const why =
      reason === 'queue_full'
        ? `${inProgress} uploads are being processed and ${queue.length} are waiting`
        : `no upload slot freed within ${Math.round(opts.maxWaitMs / 1000)} s`;
    const message = `Too many uploads at once: ${why} (at most ${maxConcurrent} at once, MAX_CONCURRENT_UPLOADS, and ${maxWaiting} waiting); retry in ${retryAfter} s.`;
    answer(
      req,
      res,
      429,
      { 'retry-after': String(retryAfter) },
      { message, extensions: { code: 'LIMIT_EXCEEDED', limit: 'concurrentUploads', reason, retryAfter } },
    );
  };

  return {
    isUpload(req) {
      if (req.method !== 'POST') return false;
      const type = req.headers['content-type'];
      return typeof type === 'string' && /^\s*multipart\/form-data/i.test(type);
    },
    admit(req, res, handle) {
      const refused = opts.refuseCaller?.(req);
      if (refused) return answer(req, res, refused.status, refused.headers ?? {}, { message: refused.message, extensions: { code: refused.code } });
      if (inProgress < maxConcurrent) return start(res, handle);
      if (queue.length >= maxWaiting) return refuse(req, res, 'queue_full');
      const waiter: Waiter = {
        req,
        res,
        handle,
        timer: setTimeout(() => {
          leave();
          refuse(req, res, 'wait_timeout');
        }, opts.maxWaitMs).unref(),
        forget: () => res.off('close', onClose),
      };
      const leave = () => {
        const i = queue.indexOf(waiter);
        if (i !== -1) queue.splice(i, 1);
        waiter.forget();
      };
      // The client went away while waiting.
      const onClose = () => {
        clearTimeout(waiter.timer);
        leave();
      };
      res.once('close', onClose);
      queue.push(waiter);
    },
    stats: () => ({ inProgress, waiting: queue.length }),
  };
}
