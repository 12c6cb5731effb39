/**
 * One subscriber's side of a pub/sub topic, shared by the single-process registry and cluster mode: the listener
 * appends messages to an inbox at once (a slow client never backs up the others, and nothing is lost between two
 * reads); past `maxBacklog` queued events the stream ends with SLOW_CONSUMER (the client reconnects with `after`
 * and loses nothing).
 */
import { LiveFailure } from './errors.js';

/** The part of an EventTarget the inbox uses (yoga's pub/sub target, or redis-event-target's). */
export interface InboxTarget {
  addEventListener(topic: string, listener: EventListener): void;
  removeEventListener(topic: string, listener: EventListener): void;
}

export class SubscriberInbox<M extends { kind: string }> {
  private readonly inbox: M[] = [];
  private head = 0;
  private backlog = 0;
  private wake: (() => void) | undefined;
  private interrupt!: () => void;
  private readonly interrupted: Promise<undefined>;
  private isStopped = false;
  private closed = false;
  private listening = true;
  private readonly listener: (event: CustomEvent<M | null>) => void;
  /** Set when the stream must end with an error (overflow, shutdown): delivered by the stream. */
  failure: LiveFailure | undefined;

  constructor(
    private readonly target: InboxTarget,
    private readonly topic: string,
    stop: PromiseLike<unknown>,
    private readonly maxBacklog: number,
    private readonly onClose: () => void,
  ) {
    this.interrupted = new Promise<undefined>((resolve) => (this.interrupt = () => resolve(undefined)));
    Promise.resolve(stop).then(() => {
      this.isStopped = true;
      this.interrupt();
      this.wake?.();
    });
    this.listener = (event) => this.push(event.detail);
    target.addEventListener(topic, this.listener as EventListener);
  }

  get stopped(): boolean {
    return this.isStopped;
  }

  /** Queues a message for this subscriber (what the topic's listener does; also used for local nudges). */
  push(msg: M | null): void {
    if (this.failure || !msg) return;
    if (msg.kind === 'events') this.backlog += eventCount(msg);
    this.inbox.push(msg);
    if (this.backlog > this.maxBacklog) {
      this.fail(new LiveFailure('SLOW_CONSUMER', 'The client fell too far behind; reconnect with `after` to resume.'));
      return;
    }
    this.wake?.();
  }

  private unlisten(): void {
    if (!this.listening) return;
    this.listening = false;
    this.target.removeEventListener(this.topic, this.listener as EventListener);
  }

  /** Ends the stream with `failure` (after the item being delivered now). */
  fail(failure: LiveFailure): void {
    if (this.failure) return;
    this.failure = failure;
    this.inbox.length = 0;
    this.head = 0;
    this.backlog = 0;
    this.unlisten();
    this.interrupt();
    this.wake?.();
  }

  /** The next message on the topic; undefined once the stream is stopped or failed. */
  async take(): Promise<M | undefined> {
    for (;;) {
      if (this.isStopped || this.failure) return undefined;
      if (this.head < this.inbox.length) {
        const msg = this.inbox[this.head++]!;
        if (this.head === this.inbox.length) {
          this.inbox.length = 0;
          this.head = 0;
        }
        if (msg.kind === 'events') this.backlog -= eventCount(msg);
        return msg;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** `promise`'s value, or undefined if the stream is stopped or failed first. */
  until<T>(promise: Promise<T>): Promise<T | undefined> {
    return Promise.race([promise, this.interrupted]);
  }

  /** Stops listening and runs `onClose` (which drops the poller or watch reference). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unlisten();
    this.onClose();
  }
}

function eventCount(msg: { kind: string }): number {
  return (msg as { events?: readonly unknown[] }).events?.length ?? 0;
}
