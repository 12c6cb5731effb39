/**
 * What a web page could do to a server on this machine that CORS and CSRF prevention do not stop: DNS rebinding
 * (a foreign host name pointed at 127.0.0.1; refused in AUTH_MODE=none unless in ALLOWED_HOSTS) and cross-site
 * websocket hijacking (an upgrade from another site's page; refused unless same-origin or in CORS_ORIGINS).
 * Requests are sent with raw node:http so that the Host header is exactly the one given.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { loadConfig } from '../../src/config.js';
import { startEmulator, type RunningEmulator } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';

const KEY = 'sk-server-key-browser-guard-0123';
const TOKEN = 'gw-token-browser-guard-0123456789';
let emu: RunningEmulator;
let open: ApiHandle;
let named: ApiHandle;
let tokens: ApiHandle;

beforeAll(async () => {
  emu = await startEmulator();
  open = await startApi({ baseURL: emu.baseURL, apiKey: KEY, env: { CORS_ORIGINS: 'https://app.example.com' } });
  named = await startApi({ baseURL: emu.baseURL, apiKey: KEY, env: { ALLOWED_HOSTS: 'my-laptop.local' } });
  tokens = await startApi({
    baseURL: emu.baseURL,
    apiKey: KEY,
    env: { AUTH_MODE: 'tokens', GATEWAY_TOKENS: JSON.stringify([{ token: TOKEN, scopes: ['read'], name: 'ci' }]) },
    token: TOKEN,
  });
});
afterAll(async () => {
  await open?.close();
  await named?.close();
  await tokens?.close();
  await emu?.close();
});

const portOf = (api: ApiHandle) => new URL(api.url).port;

/** POST /graphql (or GET `path`) with this Host header; resolves with the status and the parsed body. */
function send(api: ApiHandle, host: string, opts: { path?: string; token?: string } = {}): Promise<{ status: number; body: any }> {
  const body = JSON.stringify({ query: '{ fineTuningJobs(first: 1) { edges { cursor } } }' });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: portOf(api),
        path: opts.path ?? '/graphql',
        method: opts.path ? 'GET' : 'POST',
        headers: {
          host,
          'content-type': 'application/json',
          ...(opts.path ? {} : { 'content-length': Buffer.byteLength(body) }),
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
      },
    );
    req.on('error', reject);
    if (!opts.path) req.write(body);
    req.end();
  });
}

/** Opens a graphql-transport-ws websocket with these headers: the status of a refused upgrade, or 101. */
function upgrade(api: ApiHandle, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${api.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws', { headers });
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    ws.once('error', () => undefined);
  });
}

describe('DNS rebinding (AUTH_MODE=none)', () => {
  it("answers requests for this machine's names", async () => {
    for (const host of [
      `127.0.0.1:${portOf(open)}`,
      `localhost:${portOf(open)}`,
      `LOCALHOST:${portOf(open)}`,
      `app.localhost:${portOf(open)}`,
      `[::1]:${portOf(open)}`,
    ]) {
      const r = await send(open, host);
      expect(r.status, host).toBe(200);
      expect(r.body.data.fineTuningJobs, host).toBeDefined();
    }
  });

  it('refuses any other Host with 403 HOST_NOT_ALLOWED, on every path, before anything runs', async () => {
    const before = emu.requests.length;
    for (const host of [`evil.example:${portOf(open)}`, 'evil.example', `127.0.0.1.evil.example:${portOf(open)}`, `localhost.evil.example:${portOf(open)}`]) {
      const r = await send(open, host);
      expect(r.status, host).toBe(403);
      expect(r.body.errors[0].extensions.code, host).toBe('HOST_NOT_ALLOWED');
      expect(r.body.errors[0].message, host).toMatch(/ALLOWED_HOSTS/);
    }
    for (const path of ['/health', '/ready', '/v1/files', '/graphql?query=%7B__typename%7D']) {
      expect((await send(open, 'evil.example', { path })).status, path).toBe(403);
    }
    expect(emu.requests.length).toBe(before); // no upstream call was made
  });

  it('answers the names listed in ALLOWED_HOSTS too', async () => {
    expect((await send(named, `my-laptop.local:${portOf(named)}`)).status).toBe(200);
    expect((await send(named, `other.local:${portOf(named)}`)).status).toBe(403);
    expect(() => loadConfig({ ALLOWED_HOSTS: 'https://x.example' })).toThrow(/ALLOWED_HOSTS: "https:\/\/x.example" is not a host name/);
    expect(loadConfig({ ALLOWED_HOSTS: ' A.example , b.example ' }).allowedHosts).toEqual(['a.example', 'b.example']);
  });

  it('does not apply when requests must authenticate (the page has no credential)', async () => {
    const r = await send(tokens, 'gateway.example.com', { token: TOKEN });
    expect(r.status).toBe(200);
    expect(r.body.data.fineTuningJobs).toBeDefined();
  });
});

describe('cross-site websocket hijacking', () => {
  it("refuses an upgrade from another site's page (403), in every auth mode", async () => {
    for (const api of [open, tokens]) {
      for (const origin of ['https://evil.example', 'null', `http://localhost:${Number(portOf(api)) + 1}`]) {
        expect(await upgrade(api, { origin }), origin).toBe(403);
      }
    }
  });

  it("accepts this server's own pages (GraphiQL), CORS_ORIGINS and clients that are not browsers", async () => {
    const self = `http://127.0.0.1:${portOf(open)}`;
    expect(await upgrade(open, { origin: self })).toBe(101);
    expect(await upgrade(open, { origin: 'https://app.example.com' })).toBe(101);
    expect(await upgrade(open, {})).toBe(101);
  });

  it('refuses a foreign Host in AUTH_MODE=none, Origin or not', async () => {
    expect(await upgrade(open, { host: 'evil.example' })).toBe(403);
    expect(await upgrade(open, { host: `evil.example:${portOf(open)}`, origin: `http://evil.example:${portOf(open)}` })).toBe(403);
  });
});
