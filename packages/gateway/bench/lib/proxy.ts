/** The baseline: a bare node:http reverse proxy with a keep-alive agent (one hop in, one hop out). */
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export async function startBareProxy(target: string, connections = 64): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const t = new URL(target);
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const server = createServer((req, res) => {
    const upstream = request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      agent.destroy();
    },
  };
}
