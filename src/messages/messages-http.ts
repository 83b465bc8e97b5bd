import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { listenFailure } from '../admin/listen-failure.js';
import { RequestAborted, readBody } from '../tls/request-body.js';
import { MAX_BODY_BYTES, parseJsonBody, MessageRequestError } from './message-requests.js';
import { badRequest, sealHandles, type Answer, type HandleSource, type MessagesApi } from './messages-api.js';

/** A body that has not arrived within this long is refused: the API is on loopback, callers are local. */
const BODY_DEADLINE_MS = 10_000;

/**
 * The messages API over loopback HTTP/1.1 and JSON: POST /v1/messages/seal, POST
 * /v1/messages/check, GET /healthz. Bad input is answered 400 before anything is decided.
 */
export async function startMessagesHttp(
  api: MessagesApi,
  listen: { host: string; port: number },
  handles: HandleSource,
): Promise<{ address: string; close: () => Promise<void> }> {
  const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 }, (req, res) => {
    serve(api, handles, req).then((answer) => send(res, answer), () => send(res, { status: 500, body: { code: 'internal_error', error: 'server_error' } }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenFailure('messages.listen', formatAddress(listen.host, listen.port), err)));
    // Not exclusive: the workers of `workers: N` share one listener through the primary.
    server.listen({ port: listen.port, host: listen.host }, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    address: formatAddress(listen.host, port),
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 1_000).unref();
    }),
  };
}

async function serve(api: MessagesApi, handles: HandleSource, req: http.IncomingMessage): Promise<Answer> {
  const path = (req.url ?? '').split('?')[0];
  if (path === '/healthz') return req.method === 'GET' || req.method === 'HEAD' ? { status: 200, body: { status: 'ok' } } : notAllowed('GET');
  if (path !== '/v1/messages/seal' && path !== '/v1/messages/check') {
    req.resume();
    return { status: 404, body: { code: 'not_found', error: 'not_found', message: 'POST /v1/messages/seal, POST /v1/messages/check or GET /healthz' } };
  }
  if (req.method !== 'POST') return notAllowed('POST');
  let body: unknown;
  try {
    body = parseJsonBody((await readBody(req, { maxBytes: MAX_BODY_BYTES, deadlineMs: BODY_DEADLINE_MS })).toString('utf8'));
  } catch (err) {
    if (err instanceof RequestAborted) {
      return badRequest(err.reason === 'too_large' ? `the body must be at most ${MAX_BODY_BYTES} bytes` : 'the body did not arrive whole');
    }
    if (err instanceof MessageRequestError) return badRequest(err.message);
    throw err;
  }
  const carrier = req.headers;
  if (path === '/v1/messages/check') return api.check(body, carrier);
  return api.seal(body, sealHandles(handles, req.headersDistinct[handles.header] ?? [], req.headersDistinct.baggage ?? []), carrier);
}

function notAllowed(method: string): Answer {
  return { status: 405, body: { code: 'method_not_allowed', error: 'invalid_request', message: `use ${method}` } };
}

function send(res: http.ServerResponse, answer: Answer): void {
  if (res.headersSent) return;
  const text = JSON.stringify(answer.body);
  res.writeHead(answer.status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function formatAddress(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
