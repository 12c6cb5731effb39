/**
 * The local fine-tuning service as a standalone listener on its own thread (a worker): an upstream with its
 * own event loop, like a remote API, inside the bench's process. Posts { port } once listening.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { createEmulator, requestListener } from '@finetune-graphql/emulator';

const { dbPath, stepMs } = workerData as { dbPath: string; stepMs: number };
const emulator = createEmulator({ dbPath, stepMs });
const server = createServer(requestListener(emulator));
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  emulator.start();
  parentPort!.postMessage({ port: (server.address() as AddressInfo).port });
});
parentPort!.on('message', (msg) => {
  if (msg === 'close') {
    server.closeAllConnections();
    server.close(() => void emulator.close().then(() => parentPort!.postMessage('closed')));
  }
});
