/**
 * The suite-wide secret-leak check (test/security/leak-tee.ts) is itself tested here: a secret planted in
 * each channel it watches is found, and our own server's traffic is really teed. The planted leaks are
 * cleared afterwards, so this file's own final check passes.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { startEmulator, type RunningEmulator } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';
import { findLeaks, registerSecret, resetTee, teeStats } from './leak-state.js';
import { wsOperation, wsSession } from './helpers.js';

const TOKEN = 'tok-leakcheck-0123456789abcdef';

let emu: RunningEmulator;
let api: ApiHandle;

beforeAll(async () => {
  emu = await startEmulator();
  api = await startApi({
    baseURL: emu.baseURL,
    apiKey: 'sk-leakcheck-server-key-0123',
    token: TOKEN,
    env: { AUTH_MODE: 'tokens', GATEWAY_TOKENS: JSON.stringify([{ token: TOKEN, scopes: ['read', 'write'] }]) },
  });
});

afterAll(async () => {
  await api?.close();
  await emu?.close();
});

describe('the secret-leak tee', () => {
  it("tees our server's responses, websocket frames and logs, and learns the tokens and keys in use", async () => {
    const before = teeStats();
    const r = await api.gql('{ __typename fineTuningJobs { edges { cursor } } }');
    expect(r.data.__typename).toBe('Query');
    const s = wsSession(api.url, { authorization: `Bearer ${TOKEN}` });
    const ws = await wsOperation(s.client, '{ __typename }');
    expect(ws.results[0]!.data).toEqual({ __typename: 'Query' });
    await s.dispose();
    const after = teeStats();
    expect(after.bytes).toBeGreaterThan(before.bytes);
    for (const channel of ['http-response', 'http-response-headers', 'websocket-frame', 'log-stream']) {
      expect(after.channels[channel] ?? 0, channel).toBeGreaterThan(before.channels[channel] ?? 0);
    }
    // The gateway token (seen at our server) and the server's key (seen at the upstream) are looked for.
    expect(after.secrets).toBeGreaterThanOrEqual(2);
    expect(findLeaks()).toEqual([]);
  });

  it('finds a secret planted in an HTTP response, a websocket frame, a log line, pino’s destination and a child’s output', async () => {
    const planted = 'sk-planted-secret-0123456789';
    // An HTTP server that echoes the Authorization header (the secret is learnt from the request).
    const echo = createServer((req, res) => res.end(`you sent ${req.headers.authorization}`));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const port = (echo.address() as AddressInfo).port;
    await (await fetch(`http://127.0.0.1:${port}/echo`, { headers: { authorization: `Bearer ${planted}` } })).text();
    echo.close();
    expect(findLeaks().map((l) => l.channel)).toContain('http-response');
    resetTee();

    // A websocket server that sends back the client's connection_init payload.
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    wss.on('connection', (sock) => sock.on('message', (m) => sock.send(`echo ${m.toString()}`)));
    await new Promise<void>((r) => wss.once('listening', () => r()));
    const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
    await new Promise<void>((r) => client.once('open', () => r()));
    const echoed = new Promise<void>((r) => client.once('message', () => r()));
    client.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${planted}` } }));
    await echoed;
    client.close();
    wss.close();
    expect(findLeaks().map((l) => l.channel)).toContain('websocket-frame');
    resetTee();

    // A log line (pino to a stream, as the servers in tests log) and pino's default destination.
    registerSecret(planted);
    const logger = pino({}, new Writable({ write: (_c, _e, cb) => cb() }));
    logger.info({ note: `key ${planted}` }, 'oops');
    expect(findLeaks().map((l) => l.channel)).toContain('log-stream');
    resetTee();
    registerSecret(planted);
    // (pino.destination is what pino() uses by default, on stdout)
    const dest = pino.destination({ dest: '/dev/null', sync: true });
    pino({}, dest).info(`key ${planted}`);
    dest.end();
    expect(findLeaks().map((l) => l.channel)).toContain('pino-destination');
    resetTee();

    // A child process given the secret in its environment, which prints it.
    const child = spawn(process.execPath, ['-e', 'console.log("key=" + process.env.OPENAI_API_KEY)'], {
      env: { ...process.env, OPENAI_API_KEY: planted },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    await new Promise((r) => child.once('close', r));
    expect(out).toContain('key=');
    const leaks = findLeaks();
    expect(leaks.map((l) => l.channel)).toContain('child-stdout');
    // The report never repeats the secret itself.
    expect(JSON.stringify(leaks)).not.toContain(planted);
    resetTee();
    expect(findLeaks()).toEqual([]);
  });
});
