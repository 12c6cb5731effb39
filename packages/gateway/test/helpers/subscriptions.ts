/**
 * Subscription clients shared by the test suites: a graphql-ws collector of one field of each payload, and the
 * parser of a GraphQL-over-SSE response body (blocks split on blank lines, `event:` and `data:` lines).
 */
import type { Client } from 'graphql-ws';

export interface Collected<T = any> {
  items: T[];
  errors: unknown[];
  /** Resolves when the stream completes (or errors). */
  done: Promise<void>;
  completed: boolean;
  /** Ends the subscription from the client side. */
  stop(): void;
}

/** Subscribes over graphql-ws and collects the `field` of each payload. */
export function collectWs<T = any>(client: Client, query: string, variables: Record<string, unknown>, field: string): Collected<T> {
  const out: Collected<T> = { items: [], errors: [], completed: false, done: Promise.resolve(), stop: () => {} };
  out.done = new Promise<void>((resolve) => {
    out.stop = client.subscribe<Record<string, T>>(
      { query, variables },
      {
        next: (r) => {
          if (r.errors?.length) out.errors.push(...r.errors);
          const v = r.data?.[field];
          if (v !== undefined && v !== null) out.items.push(v);
        },
        error: (e) => {
          out.errors.push(e);
          resolve();
        },
        complete: () => {
          out.completed = true;
          resolve();
        },
      },
    );
  });
  return out;
}

export interface SseEvent {
  /** The `event:` field ('message' when the block has none). */
  event: string;
  /** The `data:` lines joined with '\n'; undefined when the block has no data line. */
  data?: string;
}

/**
 * The events of a text/event-stream body (a fetch Response's body), in order. Stopping the iteration early
 * (break/return) cancels the body.
 */
export async function* sseEvents(body: ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      yield { event, data: data.length ? data.join('\n') : undefined };
    }
  }
}
