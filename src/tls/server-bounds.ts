import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Logger } from '../telemetry/log.js';
import { throttledLog } from '../telemetry/log-throttle.js';
import type { AbortReason } from './request-body.js';

/**
 * How long a client of hopguard's HTTPS servers (issuer, injector webhook) may take at each
 * step, and how many may be connected at once. Connections need no client certificate to
 * open, so without these anyone could hold them open for free.
 */
export interface ServerBounds {
  /** From accepting the TCP connection to the end of the TLS handshake. */
  handshakeMs: number;
  /** From the start of a request (or of a connection, for its first) to the end of its headers. */
  headersMs: number;
  /** From the end of the headers to the end of the body. */
  bodyMs: number;
  /** A keep-alive connection is closed this long after its last response. */
  keepAliveMs: number;
  /** A connection on which no byte moves either way for this long is closed (e.g. a client not reading its response). */
  idleMs: number;
  /** Connections beyond this are closed as they arrive: below a 1,024-descriptor limit, with room for the process's own files. */
  maxConnections: number;
}

/** The design's bounds (handshake 10 s, headers 10 s, body 30 s, idle at most 60 s). */
export const SERVER_BOUNDS: ServerBounds = {
  handshakeMs: 10_000, headersMs: 10_000, bodyMs: 30_000, keepAliveMs: 5_000, idleMs: 60_000, maxConnections: 900,
};

/** What a server says to a request it cannot read (the issuer answers OAuth JSON, the webhook text). */
export type Refusal = (status: 408 | 400, description: string) => { contentType: string; body: string };

export interface BoundedServerOptions {
  /** Absent: plain HTTP, for a server only its own proxy talks to (the issuer with client_auth: xfcc). */
  tls?: https.ServerOptions;
  bounds: ServerBounds;
  log: Logger;
  /** Prefixes the log events: `<name>_connection_refused`, `<name>_request_aborted`. */
  name: string;
  refusal: Refusal;
}

/** Where a request was when it was cut. */
export type AbortPhase = 'handshake' | 'request' | 'body';

/**
 * An HTTPS server held to `bounds`. Node checks the header and request timeouts on an interval,
 * so it runs often enough that a bound is not overshot by more than a quarter of itself.
 * Refused connections and aborted requests are logged with a reason, at most a line a second
 * for each kind; `aborted` is for the handlers to log theirs (a body cut short) the same way.
 */
type Listener = (req: IncomingMessage, res: ServerResponse) => void;
type Aborted = (reason: AbortReason, during: AbortPhase) => void;
export function createBoundedServer(options: BoundedServerOptions & { tls: https.ServerOptions }, listener: Listener): { server: https.Server; aborted: Aborted };
export function createBoundedServer(options: BoundedServerOptions, listener: Listener): { server: https.Server | http.Server; aborted: Aborted };
export function createBoundedServer(options: BoundedServerOptions, listener: Listener): { server: https.Server | http.Server; aborted: Aborted } {
  const { bounds, name } = options;
  const timeouts = {
    headersTimeout: bounds.headersMs,
    // Node's own cut, after the body's deadline (request-body.ts) that answers first.
    requestTimeout: bounds.headersMs + bounds.bodyMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, bounds.headersMs / 4)),
    keepAliveTimeout: bounds.keepAliveMs,
  };
  const server = options.tls === undefined ? http.createServer(timeouts, listener)
    : https.createServer({ ...options.tls, handshakeTimeout: bounds.handshakeMs, ...timeouts }, listener);
  server.maxConnections = bounds.maxConnections;
  server.timeout = bounds.idleMs;
  const warn = throttledLog(options.log, 'warn');
  const aborted = (reason: AbortReason, during: AbortPhase) => warn(`${name}_request_aborted`, { reason, during });
  server.on('drop', () => warn(`${name}_connection_refused`, { reason: 'max_connections reached', max_connections: bounds.maxConnections }));
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const cut = clientErrorCut(err.code ?? '');
    if (cut) aborted(cut.reason, cut.during);
    answer(socket, cut?.during === 'request' ? cut.reason : undefined, options.refusal);
  });
  return { server, aborted };
}

/**
 * What node's errors before a request reaches a handler mean. A client that closes, or fails
 * its handshake (a TCP probe, a scanner), aborted no request and is not logged.
 */
function clientErrorCut(code: string): { reason: AbortReason; during: AbortPhase } | undefined {
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return { reason: 'timeout', during: 'handshake' };
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return { reason: 'timeout', during: 'request' };
  if (code === 'HPE_HEADER_OVERFLOW') return { reason: 'too_large', during: 'request' };
  if (code.startsWith('HPE_')) return { reason: 'parse_error', during: 'request' };
  return undefined;
}

/**
 * A request node's parser refuses or that ran out of time is answered (408 or 400) before the
 * connection closes; any other socket error (a TLS alert, a reset, a handshake timeout) just
 * closes it, as node does.
 */
function answer(socket: Socket, reason: AbortReason | undefined, refusal: Refusal) {
  if (!reason || !socket.writable) return socket.destroy();
  // Bytes after an answered request (more than its Content-Length, or anything after
  // `connection: close`): the answer is written, so close after it, not over it. A destroy
  // here dropped the answer the client was owed.
  if (socket.bytesWritten > 0) return closeAfterWrites(socket);
  const timeout = reason === 'timeout';
  const { contentType, body } = refusal(timeout ? 408 : 400, timeout ? 'the request took too long' : 'the request is not valid HTTP/1.1');
  socket.end([
    `HTTP/1.1 ${timeout ? '408 Request Timeout' : '400 Bad Request'}`, `content-type: ${contentType}`, 'cache-control: no-store',
    'pragma: no-cache', `content-length: ${Buffer.byteLength(body)}`, 'connection: close', '', body,
  ].join('\r\n'), () => socket.destroy());
}

/** Ends the connection once what was written has gone out; a peer that never reads cannot hold it. */
function closeAfterWrites(socket: Socket) {
  socket.end();
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
}

const CLOSE_GRACE_MS = 1000;
