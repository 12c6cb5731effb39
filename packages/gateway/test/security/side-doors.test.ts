/**
 * Side doors (issue 10, findings 4 and 11): the embedded local service's /v1 is reachable from outside only when
 * the gateway has no authentication to bypass (AUTH_MODE=none on loopback) or with its own EMBEDDED_V1_KEYS;
 * with tokens or passthrough every /v1 request is refused and nothing is stored. /ready, which needs no
 * authentication, answers from one upstream check per READY_CACHE_MS.
 */
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/app.js';
import { LOCAL_API_KEY, loadConfig } from '../../src/config.js';
import { startEmulator, trainingJsonl, type RunningEmulator } from '@finetune-graphql/emulator/testing';
import { registerEnvSecrets } from './leak-state.js';

const TOKEN = 'tok-side-doors-0123456789abcdef';
const V1_KEY = 'sk-v1-exposed-0123456789abcdef';

function embedded(env: Record<string, string>): Promise<RunningServer> {
  const full = { PORT: '0', HOST: '127.0.0.1', EMULATOR_DB: ':memory:', EMULATOR_STEP_MS: '5', LOG_LEVEL: 'silent', ...env };
  registerEnvSecrets(full);
  return startServer(loadConfig(full));
}

const sdk = (server: RunningServer, apiKey = LOCAL_API_KEY) => new OpenAI({ apiKey, baseURL: `${server.url}/v1`, maxRetries: 0, timeout: 5_000 });

async function filesSeenByGateway(server: RunningServer, token?: string): Promise<number> {
  const res = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query: '{ files(first: 100) { edges { node { id } } } }' }),
  });
  const body = (await res.json()) as { data?: { files: { edges: unknown[] } } };
  return body.data!.files.edges.length;
}

/** Every write an attacker tried in the finding: upload, create, delete; each must fail with `status`. */
async function expectRefused(server: RunningServer, status: number, apiKey = LOCAL_API_KEY) {
  const client = sdk(server, apiKey);
  const file = await toFile(Buffer.from(trainingJsonl(10)), 'train.jsonl');
  const attempts = [
    () => client.files.create({ file, purpose: 'fine-tune' }),
    () => client.fineTuning.jobs.create({ model: 'gpt-4o-mini-2024-07-18', training_file: 'file-abc' }),
    () => client.files.delete('file-abc'),
    () => client.files.list(),
  ];
  for (const attempt of attempts) await expect(attempt()).rejects.toMatchObject({ status });
}

describe('the embedded /v1 with AUTH_MODE=tokens', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await embedded({ AUTH_MODE: 'tokens', GATEWAY_TOKENS: JSON.stringify([{ token: TOKEN, scopes: ['read', 'write'] }]) });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('refuses every /v1 request with 404, whatever the key (the documented local key too), and stores nothing', async () => {
    await expectRefused(server, 404);
    await expectRefused(server, 404, 'sk-anything-at-all');
    const raw = await fetch(`${server.url}/v1/files`);
    expect(raw.status).toBe(404);
    expect(((await raw.json()) as { error: { message: string } }).error.message).toMatch(/EMBEDDED_V1_KEYS/);
    expect(await filesSeenByGateway(server, TOKEN)).toBe(0);
  });

  it('the gateway itself still reaches the embedded service (in-process)', async () => {
    const res = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ query: '{ fineTuningJobs(first: 1) { edges { node { id } } } }' }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { errors?: unknown }).errors).toBeUndefined();
  });
});

describe('the embedded /v1 with AUTH_MODE=passthrough', () => {
  it('refuses /v1 too (the gateway forwards the client key; /v1 must not take it directly)', async () => {
    const server = await embedded({ AUTH_MODE: 'passthrough' });
    try {
      await expectRefused(server, 404, 'sk-client-own-key-0123456789');
    } finally {
      await server.close();
    }
  });
});

describe('EMBEDDED_V1_KEYS: /v1 exposed explicitly with its own keys', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await embedded({
      AUTH_MODE: 'tokens',
      GATEWAY_TOKENS: JSON.stringify([{ token: TOKEN, scopes: ['read', 'write'] }]),
      EMBEDDED_V1_KEYS: V1_KEY,
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('a listed key works; any other key, the local key included, gets 401 and stores nothing', async () => {
    await expectRefused(server, 401);
    await expectRefused(server, 401, 'sk-not-listed-0123456789abcdef');
    const file = await sdk(server, V1_KEY).files.create({ file: await toFile(Buffer.from(trainingJsonl(10)), 'train.jsonl'), purpose: 'fine-tune' });
    expect(file.id).toMatch(/^file-/);
  });
});

describe('AUTH_MODE=none on loopback (npm start)', () => {
  it('/v1 stays open with the documented local key', async () => {
    const server = await embedded({});
    try {
      const list = await sdk(server).files.list();
      expect(Array.isArray(list.data)).toBe(true);
    } finally {
      await server.close();
    }
  });
});

describe('configuration', () => {
  it('HOST=0.0.0.0 with tokens: /v1 closed; /v1 can never be open on a non-loopback address', () => {
    const tokens = loadConfig({ HOST: '0.0.0.0', AUTH_MODE: 'tokens', GATEWAY_TOKENS: JSON.stringify([{ token: TOKEN, scopes: ['read'] }]) });
    expect(tokens.embeddedV1).toEqual({ mode: 'closed' });
    expect(() => loadConfig({ HOST: '0.0.0.0', AUTH_MODE: 'none' })).toThrow(/loopback/);
    expect(() => loadConfig({ EMBEDDED_V1_KEYS: 'short' })).toThrow(/EMBEDDED_V1_KEYS/);
    // Another upstream configured: nothing is mounted at /v1.
    expect(loadConfig({ OPENAI_BASE_URL: 'http://127.0.0.1:9/v1' }).embeddedV1).toEqual({ mode: 'closed' });
  });
});

describe('/ready is no amplifier', () => {
  let emu: RunningEmulator;
  let server: RunningServer;
  beforeAll(async () => {
    emu = await startEmulator();
    const env = {
      PORT: '0',
      HOST: '127.0.0.1',
      OPENAI_BASE_URL: emu.baseURL,
      OPENAI_API_KEY: 'sk-ready-0123456789',
      LOG_LEVEL: 'silent',
      READY_CACHE_MS: '60000',
    };
    registerEnvSecrets(env);
    server = await startServer(loadConfig(env));
  });
  afterAll(async () => {
    await server?.close();
    await emu?.close();
  });

  it('2,000 unauthenticated /ready requests make one upstream call', async () => {
    const before = emu.requests.length;
    const statuses = new Set<number>();
    for (let round = 0; round < 20; round++) {
      const batch = await Promise.all(Array.from({ length: 100 }, () => fetch(`${server.url}/ready`).then((r) => r.status)));
      for (const s of batch) statuses.add(s);
    }
    expect([...statuses]).toEqual([200]);
    expect(emu.requests.length - before).toBe(1);
  });
});
