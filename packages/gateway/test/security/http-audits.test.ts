/**
 * graphql-http's GraphQL-over-HTTP audits (`serverAudits`) against the running server, each audit a test:
 * the default server (JSON POSTs on the fast path, the rest on yoga), yoga alone (GRAPHQL_FAST_PATH=0), and
 * AUTH_MODE=tokens with the client's token. Every audit passes — the MUSTs, and also every SHOULD and MAY
 * (a MAY that a server chooses not to do reports a "notice"; none does here).
 */
import { serverAudits } from 'graphql-http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';

const TOKEN = 'tok-audits-0123456789abcdef';

let emu: RunningEmulator;
beforeAll(async () => {
  emu = await startEmulator();
});
afterAll(async () => {
  await emu?.close();
});

const setups: [string, Record<string, string>, string | undefined][] = [
  ['default server (fast path for JSON POSTs)', {}, undefined],
  ['yoga only (GRAPHQL_FAST_PATH=0)', { GRAPHQL_FAST_PATH: '0' }, undefined],
  ['AUTH_MODE=tokens, with the token', { AUTH_MODE: 'tokens', GATEWAY_TOKENS: JSON.stringify([{ token: TOKEN, scopes: ['read', 'write'] }]) }, TOKEN],
];

describe.each(setups)('GraphQL over HTTP audits: %s', (_label, env, token) => {
  let api: ApiHandle;
  beforeAll(async () => {
    api = await startApi({ baseURL: emu.baseURL, apiKey: 'sk-server-key-audits-0123', env });
  });
  afterAll(async () => {
    await api?.close();
  });

  const fetchWithToken: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    if (token) headers.set('authorization', `Bearer ${token}`);
    return fetch(input, { ...init, headers });
  };
  const audits = serverAudits({ url: () => `${api.url}/graphql`, fetchFn: fetchWithToken });

  it('runs the full list', () => {
    expect(audits.length).toBeGreaterThanOrEqual(60);
    expect(audits.filter((a) => a.name.startsWith('MUST')).length).toBeGreaterThanOrEqual(10);
  });

  it.each(audits.map((a) => [`${a.id} ${a.name}`, a] as const))('%s', async (_name, audit) => {
    const result = await audit.fn();
    const detail = result.status === 'ok' ? '' : `${result.reason}${result.response ? ` (HTTP ${result.response.status})` : ''}`;
    expect(result.status, detail).toBe('ok');
  });
});
