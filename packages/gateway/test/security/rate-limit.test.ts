/**
 * Fair use per credential (issue 10): RATE_LIMIT_PER_MINUTE and a GATEWAY_TOKENS entry's own `ratePerMinute`,
 * over HTTP (the JSON fast path and yoga's path), SSE and graphql-ws, and one budget across two instances in
 * cluster mode. Refused operations get HTTP 429 with Retry-After (or a RATE_LIMITED error over the websocket)
 * and reach no upstream; other clients are unaffected. Upstream calls are counted at the local service.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';
import { errorCodes, sse, wsOperation, wsSession } from './helpers.js';

const SERVER_KEY = 'sk-server-key-rate-0123456789';
const TOKENS = { small: 'tok-small-0123456789abcdef', big: 'tok-big-0123456789abcdefgh' };
const GATEWAY_TOKENS = JSON.stringify([
  { token: TOKENS.small, scopes: ['read', 'write'], name: 'small', ratePerMinute: 5 },
  { token: TOKENS.big, scopes: ['read', 'write'], name: 'big' },
]);
const QUERY = '{ fineTuningJobs(first: 1) { edges { node { id } } } }';

let emu: RunningEmulator;
beforeAll(async () => {
  emu = await startEmulator();
});
afterAll(async () => {
  await emu?.close();
});

const upstreamCalls = () => emu.requests.length;

async function post(api: ApiHandle, token: string | undefined, opts: { yoga?: boolean } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (opts.yoga) headers.origin = api.url; // a browser-like request goes through yoga's own HTTP layer
  const res = await fetch(`${api.url}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query: QUERY }) });
  const body = (await res.json()) as { data?: unknown; errors?: { message: string; extensions?: Record<string, any> }[] };
  return { status: res.status, retryAfter: res.headers.get('retry-after'), ...body };
}

describe('per token (AUTH_MODE=tokens)', () => {
  let api: ApiHandle;
  beforeAll(async () => {
    api = await startApi({
      baseURL: emu.baseURL,
      apiKey: SERVER_KEY,
      env: { AUTH_MODE: 'tokens', GATEWAY_TOKENS, RATE_LIMIT_PER_MINUTE: '40' },
    });
  });
  afterAll(async () => {
    await api?.close();
  });

  it("a token's own ratePerMinute: the 6th operation gets 429, Retry-After and RATE_LIMITED on both HTTP paths, SSE and graphql-ws; another token is unaffected", async () => {
    const before = upstreamCalls();
    const allowed = [];
    for (let i = 0; i < 5; i++) allowed.push(await post(api, TOKENS.small, { yoga: i % 2 === 1 }));
    expect(allowed.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(allowed.every((r) => !r.errors)).toBe(true);
    const afterAllowed = upstreamCalls();
    expect(afterAllowed - before).toBe(5);

    for (const yoga of [false, true]) {
      const refused = await post(api, TOKENS.small, { yoga });
      expect(refused.status).toBe(429);
      const retryAfter = Number(refused.retryAfter);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(refused.errors?.[0]?.extensions).toMatchObject({ code: 'RATE_LIMITED', limit: 'rate', retryAfter });
      expect(refused.errors?.[0]?.message).toMatch(/at most 5 GraphQL operations per minute/);
      expect(refused.data ?? null).toBeNull();
    }

    const refusedSse = await sse(api.url, 'subscription { fineTuningJobUpdated(id: "ftjob-abc123") { id } }', {}, { token: TOKENS.small, timeoutMs: 5_000 });
    expect(JSON.stringify(refusedSse)).toContain('RATE_LIMITED');

    const ws = wsSession(api.url, { authorization: `Bearer ${TOKENS.small}` });
    try {
      const op = await wsOperation(ws.client, 'subscription { fineTuningJobUpdated(id: "ftjob-abc123") { id } }');
      const codes = op.error ? errorCodes(op.error) : op.results.flatMap((r) => (r.errors ?? []).map((e) => String(e.extensions?.code)));
      expect(codes).toContain('RATE_LIMITED');
    } finally {
      await ws.dispose();
    }
    // Nothing refused reached the upstream.
    expect(upstreamCalls()).toBe(afterAllowed);

    // The other token has the server's budget (40), untouched by the first one's.
    const other = await post(api, TOKENS.big);
    expect(other.status).toBe(200);
    expect(other.errors).toBeUndefined();
  });
});

describe('RATE_LIMIT_PER_MINUTE (AUTH_MODE=none)', () => {
  let api: ApiHandle;
  beforeAll(async () => {
    api = await startApi({ baseURL: emu.baseURL, apiKey: SERVER_KEY, env: { RATE_LIMIT_PER_MINUTE: '10' } });
  });
  afterAll(async () => {
    await api?.close();
  });

  it('subscriptions to jobs that do not exist count against the rate and start no lasting poller: 50 subscribes cost at most 10 upstream job reads', async () => {
    const before = emu.requests.length;
    const ws = wsSession(api.url);
    try {
      const ops = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          wsOperation(ws.client, 'subscription($id: ID!) { fineTuningJobUpdated(id: $id) { id } }', { id: `ftjob-missing${i}` }),
        ),
      );
      const codes = ops.flatMap((op) => (op.error ? errorCodes(op.error) : op.results.flatMap((r) => (r.errors ?? []).map((e) => String(e.extensions?.code)))));
      expect(codes.filter((c) => c === 'NOT_FOUND').length).toBe(10);
      expect(codes.filter((c) => c === 'RATE_LIMITED').length).toBe(40);
    } finally {
      await ws.dispose();
    }
    const jobReads = emu.requests.slice(before).filter((r) => r.method === 'GET' && /\/fine_tuning\/jobs\/ftjob-missing/.test(r.path));
    expect(jobReads.length).toBeGreaterThan(0);
    expect(jobReads.length).toBeLessThanOrEqual(10);
    expect(api.live.stats().pollers).toBe(0);
  });

  it('RATE_LIMIT_PER_MINUTE=0 turns the limit off', async () => {
    const unlimited = await startApi({ baseURL: emu.baseURL, apiKey: SERVER_KEY, env: { RATE_LIMIT_PER_MINUTE: '0' } });
    try {
      const statuses = [];
      for (let i = 0; i < 30; i++) statuses.push((await post(unlimited, undefined)).status);
      expect(new Set(statuses)).toEqual(new Set([200]));
    } finally {
      await unlimited.close();
    }
  });
});

describe('cluster mode (REDIS_URL): one budget across instances', () => {
  const prefix = `ftgql-rate-${randomUUID().slice(0, 8)}:`;
  let a: ApiHandle;
  let b: ApiHandle;
  beforeAll(async () => {
    const env = { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_KEY_PREFIX: prefix, RATE_LIMIT_PER_MINUTE: '8' };
    a = await startApi({ baseURL: emu.baseURL, apiKey: SERVER_KEY, env: { ...env, INSTANCE_ID: 'rate-a' } });
    b = await startApi({ baseURL: emu.baseURL, apiKey: SERVER_KEY, env: { ...env, INSTANCE_ID: 'rate-b' } });
    await a.cluster!.redis.ping();
    await b.cluster!.redis.ping();
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('8 operations spread over two instances use up the budget; the 9th is refused on either', async () => {
    const statuses = [];
    for (let i = 0; i < 8; i++) statuses.push((await post(i % 2 ? a : b, undefined)).status);
    expect(statuses).toEqual(Array(8).fill(200));
    const onA = await post(a, undefined);
    const onB = await post(b, undefined);
    expect([onA.status, onB.status]).toEqual([429, 429]);
    expect(onB.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
  });
});
