import type { Http2Server, ServerHttp2Session } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
import { HTTP2_DEFAULT_WINDOW } from '../vocabulary/connection-window.js';

/**
 * Raises the HTTP/2 connection-level receive window of every connection `server` accepts.
 *
 * A connection starts with 64 KB of credit shared by all its streams. Envoy multiplexes checks
 * over few connections, so ~30 CheckRequests of ~2 KB in flight on one of them exhaust it and the
 * rest wait for a WINDOW_UPDATE. Node's remedy is `session.setLocalWindowSize()` in the server's
 * 'session' event, but @grpc/grpc-js (1.14) keeps its http2 servers private and has no server
 * option for it. So this wraps, on this one instance, the method that creates them: each
 * listener gets the 'session' listener before it accepts a connection.
 * Returns false if grpc-js no longer has that method (the window then stays at 64 KB).
 */
export function raiseConnectionWindow(server: Server, bytes: number): boolean {
  if (bytes <= HTTP2_DEFAULT_WINDOW) return true;
  const internals = server as unknown as { createHttp2Server?: (credentials: unknown) => Http2Server };
  const create = internals.createHttp2Server;
  if (typeof create !== 'function') return false;
  internals.createHttp2Server = (credentials) => {
    const http2Server = create.call(server, credentials);
    http2Server.on('session', (session: ServerHttp2Session) => {
      // A session torn down before this runs has no window to raise.
      if (!session.destroyed) session.setLocalWindowSize(bytes);
    });
    return http2Server;
  };
  return true;
}
