/**
 * Issue 10, finding 12: a create with an idempotencyKey in cluster mode does not wait out a Redis stall. The
 * gateway reaches Redis through a TCP relay that stops passing bytes on (a stall of this gateway's connections
 * only: CLIENT PAUSE would stall every test sharing the Redis server) while a create comes in: the client gets
 * UPSTREAM_UNAVAILABLE within the store's command timeout (2 s) with nothing sent upstream, and the same key
 * works once Redis is back.
 */
import { randomUUID } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDIS_COMMAND_TIMEOUT_MS } from '../../src/upstream/idempotency-redis.js';
import { uploadTraining } from '@finetune-graphql/emulator/testing';
import { type Gateway, KEY, startGateway, startUpstream, type Upstream } from '../hardening/helpers.js';

const CREATE = `mutation Create($input: CreateFineTuningJobInput!) {
  createFineTuningJob(input: $input) {
    __typename
    ... on CreateFineTuningJobSuccess { job { id } }
    ... on Error { message }
  }
}`;

let up: Upstream;
let gw: Gateway;
let relay: Relay;
let trainingFile: string;

interface Relay {
  port: number;
  stall(on: boolean): void;
  close(): Promise<void>;
}

/** A TCP relay to Redis on 127.0.0.1:6379 whose forwarding can be held (bytes are kept, then delivered). */
async function startRelay(): Promise<Relay> {
  let stalled = false;
  const held: (() => void)[] = [];
  const sockets = new Set<Socket>();
  const pipe = (from: Socket, to: Socket) =>
    from.on('data', (chunk) => {
      if (stalled) held.push(() => to.write(chunk));
      else to.write(chunk);
    });
  const server: Server = createServer((client) => {
    const redis = connect(6379, '127.0.0.1');
    for (const s of [client, redis]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => (client.destroy(), redis.destroy()));
    }
    pipe(client, redis);
    pipe(redis, client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    stall(on) {
      stalled = on;
      if (!on) for (const release of held.splice(0)) release();
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

beforeAll(async () => {
  up = await startUpstream({ stepMs: 1000 });
  trainingFile = await uploadTraining(up.client(KEY));
  relay = await startRelay();
  gw = await startGateway(up.baseURL, {
    REDIS_URL: `redis://127.0.0.1:${relay.port}`,
    REDIS_KEY_PREFIX: `ftgql-stall-${randomUUID().slice(0, 8)}:`,
    UPSTREAM_TIMEOUT_MS: '3000',
  });
  await gw.cluster!.redis.ping();
});
afterAll(async () => {
  relay?.stall(false);
  await gw?.close();
  await relay?.close();
  await up?.close();
});

describe('a Redis stall during an idempotent create', () => {
  it('answers UPSTREAM_UNAVAILABLE within the command timeout, sends nothing upstream, and the key works afterwards', async () => {
    const input = { model: 'gpt-4o-mini-2024-07-18', trainingFile, suffix: 'stall', idempotencyKey: 'stall-key' };
    const postsBefore = up.count('POST /v1/fine_tuning/jobs');
    relay.stall(true);
    const started = Date.now();
    const stalled = await gw.gql(CREATE, { input });
    const tookMs = Date.now() - started;
    relay.stall(false);
    expect(tookMs).toBeLessThan(REDIS_COMMAND_TIMEOUT_MS + 1_500);
    expect(stalled.errors?.[0]?.extensions?.code).toBe('UPSTREAM_UNAVAILABLE');
    expect(up.count('POST /v1/fine_tuning/jobs')).toBe(postsBefore);

    // The timed-out claim may have landed in Redis once it resumed: its lease ends, and the repeat takes over.
    let ok: string | undefined;
    for (let i = 0; i < 30 && !ok; i++) {
      const r = await gw.gql(CREATE, { input });
      if (r.data?.createFineTuningJob?.__typename === 'CreateFineTuningJobSuccess') ok = r.data.createFineTuningJob.job.id;
      else await new Promise((res) => setTimeout(res, 500));
    }
    expect(ok).toMatch(/^ftjob-/);
    expect(up.count('POST /v1/fine_tuning/jobs')).toBe(postsBefore + 1);
  });
});
