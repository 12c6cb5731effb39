import { loadConfig } from './config.js';
import { startServer } from './app.js';

const server = await startServer(loadConfig());
console.log(server.startupLine);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void server.close().then(() => process.exit(0)));
}
