import type { LiveErrorCode, LiveEvent, LiveJob, LiveOptions } from '../types.js';

/**
 * What travels on a job's channels. Sequence numbers and versions are per (credential, job) and per epoch (one
 * epoch per baseline kept in Redis), the same on every instance, so subscribers dedupe across a leader handover.
 */
export type ClusterMessage<J extends LiveJob = LiveJob, E extends LiveEvent = LiveEvent> =
  /** A new baseline: the events after `cursor` get sequence numbers from seq + 1. (events channel) */
  | { kind: 'state'; epoch: string; seq: number; cursor: string | null }
  /** New events, oldest first; the i-th one has sequence number firstSeq + i. (events channel) */
  | { kind: 'events'; epoch: string; firstSeq: number; events: E[] }
  /** A changed job state, with the hash of its stable serialisation. (job channel) */
  | { kind: 'job'; epoch: string; version: number; hash: string; job: J }
  /** The job is terminal and `seq` is its last event. (both) */
  | { kind: 'end'; epoch: string; seq: number }
  /** A failure that ends every stream of the job. (both) */
  | { kind: 'error'; code: LiveErrorCode; message: string }
  /** Local only: the subscriber connection came back; messages may have been lost meanwhile, look at the state. */
  | { kind: 'check' };

/** Control messages between instances (ctl channel). */
export type ControlMessage = { kind: 'poke' } | { kind: 'released' };

/** The state hash of a job in Redis, parsed. */
export interface ClusterState {
  epoch: string;
  seq: number;
  /** The last published event id; null when the job had no events at the baseline and none was published since. */
  cursor: string | null;
  version: number;
  jobHash: string;
  job?: string;
  notify: string;
  ended: boolean;
}

export function parseState(raw: Record<string, string>): ClusterState | undefined {
  if (!raw.epoch) return undefined;
  return {
    epoch: raw.epoch,
    seq: Number(raw.seq ?? 0),
    cursor: raw.hasCursor === '1' ? (raw.cursor ?? null) : null,
    version: Number(raw.version ?? 0),
    jobHash: raw.jobHash ?? '',
    job: raw.job || undefined,
    notify: raw.notify ?? '0',
    ended: raw.ended === '1',
  };
}

/** Hooks for metrics. */
export interface ClusterObserver {
  /** How late a poll started against the time it was due, in ms. */
  pollLag?(ms: number): void;
  /** This instance became the poller of a job (`takeover`: another instance held it before). */
  leaseAcquired?(): void;
  /** This instance lost a lease it held (expired, or taken by another instance). */
  leaseLost?(): void;
  /** A stream caught up from the upstream after a gap, a reset state or a reconnect. */
  resync?(): void;
  /** A subscription was refused by a limit, named as in `extensions.limit` (see LiveOptions.observer). */
  refused?(limit: string): void;
}

export interface ClusterOptions extends LiveOptions {
  /** Name of this instance in leases and presence (INSTANCE_ID). */
  instanceId: string;
  /** Prefix of every Redis key and channel (REDIS_KEY_PREFIX, default `ftgql:`). */
  keyPrefix: string;
  /** Poller lease, in ms (LIVE_LEASE_MS): renewed every third of it; another instance takes over within it. */
  leaseMs: number;
  /** An instance's presence (it has subscribers of a job) lasts this long unless refreshed. Default leaseMs. */
  presenceTtlMs: number;
  /** The job state in Redis outlives its last leader by this much. Default 3 × leaseMs. */
  stateTtlMs: number;
  observer?: ClusterObserver;
}
