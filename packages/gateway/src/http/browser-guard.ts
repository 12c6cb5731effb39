/**
 * Two attacks a web page can make on a server listening on this machine, which CORS and CSRF prevention do not stop:
 *
 * - DNS rebinding: a page on `evil.example`, whose name the attacker then points at 127.0.0.1, is same-origin with
 *   this server as far as the browser knows, so it can read its answers. With AUTH_MODE=none every request runs
 *   with the server's own API key, so in that mode a request is refused (403 HOST_NOT_ALLOWED) unless its Host
 *   names this machine (localhost, *.localhost, 127.x.x.x, ::1) or one of ALLOWED_HOSTS, as Vite and
 *   webpack-dev-server do. Other modes need a credential the page does not have.
 * - Cross-site websocket hijacking: any page may open a websocket to any server (browsers send its Origin; CORS
 *   does not apply). A websocket upgrade that carries an Origin is refused (403) unless the origin is this server's
 *   own (GraphiQL) or is in CORS_ORIGINS. Clients that are not browsers send no Origin and are not concerned.
 */
import { isLoopbackHost } from '../config.js';

export interface BrowserGuard {
  /** Why a request with this Host header must be refused (a message for the client), or undefined. */
  refuseHost(host: string | undefined): string | undefined;
  /** Whether a websocket upgrade with this Origin and Host may proceed. */
  websocketAllowed(origin: string | undefined, host: string | undefined): boolean;
}

/** The name part of a Host header (`[::1]:4000` → `::1`, `Localhost:4000` → `localhost`). */
export function hostname(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') === -1 ? undefined : h.indexOf(']'));
  const colon = h.indexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

export function createBrowserGuard(opts: { authMode: string; allowedHosts: readonly string[]; corsOrigins: readonly string[] }): BrowserGuard {
  const allowed = new Set(opts.allowedHosts.map((h) => h.toLowerCase()));
  const cors = new Set(opts.corsOrigins);
  const checkHost = opts.authMode === 'none';
  /** Host header values already found allowed (a handful in practice; bounded): most requests need no parsing. */
  const known = new Set<string>();
  const refuseHost = (host: string | undefined): string | undefined => {
    if (!checkHost || host === undefined || known.has(host)) return undefined;
    const name = hostname(host);
    if (isLoopbackHost(name) || name.endsWith('.localhost') || allowed.has(name)) {
      if (known.size < 64) known.add(host);
      return undefined;
    }
    return `Host ${JSON.stringify(name.slice(0, 100))} is not allowed: without authentication (AUTH_MODE=none) this server answers only requests for localhost, 127.0.0.1 or ::1 (a defence against DNS rebinding); list other names in ALLOWED_HOSTS.`;
  };
  return {
    refuseHost,
    websocketAllowed(origin, host) {
      if (refuseHost(host)) return false;
      if (origin === undefined) return true;
      if (cors.has(origin)) return true;
      try {
        const url = new URL(origin);
        return (url.protocol === 'http:' || url.protocol === 'https:') && host !== undefined && url.host === host.trim().toLowerCase();
      } catch {
        return false; // "null" (sandboxed pages, files) and anything unparsable
      }
    },
  };
}
