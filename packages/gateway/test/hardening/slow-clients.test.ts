/**
 * Slow clients (issue 10, finding 12): a client that trickles its headers or its body is cut after
 * HEADERS_TIMEOUT_MS / REQUEST_TIMEOUT_MS (Node answers 408 and closes), so 200 connections sending one byte a
 * second no longer stay open for Node's default 300 s. Other clients are served meanwhile.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '@finetune-graphql/emulator/testing';
import { type ApiHandle, startApi } from '../helpers/server.js';

let emu: RunningEmulator;
let api: ApiHandle;
beforeAll(async () => {
  emu = await startEmulator();
  api = await startApi({ baseURL: emu.baseURL, env: { HEADERS_TIMEOUT_MS: '1000', REQUEST_TIMEOUT_MS: '2000' } });
});
afterAll(async () => {
  await api?.close();
  await emu?.close();
});

/** Opens a connection that sends `head` then one byte of `trickle` every 200 ms; resolves when the server closes it. */
function slowClient(head: string, trickle: string): { closedAfterMs: Promise<{ ms: number; answer: string }>; socket: Socket } {
  const started = Date.now();
  const socket = connect(api.port, '127.0.0.1');
  let answer = '';
  let timer: NodeJS.Timeout | undefined;
  const closedAfterMs = new Promise<{ ms: number; answer: string }>((resolve) => {
    socket.on('data', (d) => (answer += d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ ms: Date.now() - started, answer });
    });
  });
  socket.on('connect', () => {
    socket.write(head);
    let i = 0;
    timer = setInterval(() => {
      if (socket.destroyed) return;
      socket.write(trickle[i++ % trickle.length]!);
    }, 200);
  });
  return { closedAfterMs, socket };
}

describe('slow clients', () => {
  it('200 clients trickling headers or a multipart body are all cut within the timeouts; a normal query is served meanwhile', async () => {
    const clients = Array.from({ length: 200 }, (_, i) =>
      i % 2 === 0
        ? slowClient('POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n', 'X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n')
        : slowClient(
            'POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n',
            '--b\r\nContent-Disposition: form-data; name="operations"\r\n\r\n',
          ),
    );
    const started = Date.now();
    const res = await api.gql('{ fineTuningJobs(first: 1) { edges { node { id } } } }');
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(1_000);
    const closed = await Promise.all(clients.map((c) => c.closedAfterMs));
    // Node checks the timeouts every connectionsCheckingInterval (250 ms here): cut within the limit plus a margin.
    // Trickled uploads beyond the upload gate's room (MAX_CONCURRENT_UPLOADS, and 4x that waiting) are refused 429
    // first; they are cut all the same.
    for (const [i, c] of closed.entries()) {
      expect(c.ms).toBeLessThan(i % 2 === 0 ? 4_000 : 5_000);
      expect(c.answer).toMatch(i % 2 === 0 ? /^HTTP\/1\.1 408/ : /^HTTP\/1\.1 (408|429)/);
    }
    expect(closed.filter((c) => /^HTTP\/1\.1 408/.test(c.answer)).length).toBeGreaterThanOrEqual(100);
  });
});
