import type { IncomingMessage } from 'node:http';
import { readBody, RequestAborted, type BodyCut } from '../tls/request-body.js';
import { OAuthError } from './oauth-error.js';

const MAX_BODY_BYTES = 64 * 1024;

/** A body not read to its end: answered (if the client is still there) and logged with its reason. */
export class BodyAborted extends OAuthError {
  constructor(readonly reason: BodyCut) {
    super('invalid_request', BODY_ABORTED[reason], reason === 'timeout' ? 408 : 400);
  }
}

const BODY_ABORTED: Record<BodyCut, string> = {
  timeout: 'the request body took too long',
  too_large: 'the request body is too large',
  client_closed: 'the client closed the connection',
};

/**
 * The parameters of an application/x-www-form-urlencoded POST, each at most once (RFC 6749 §3.2),
 * read within `deadlineMs`.
 */
export async function readForm(req: IncomingMessage, deadlineMs: number): Promise<Map<string, string>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded');
  }
  let body: Buffer;
  try {
    body = await readBody(req, { maxBytes: MAX_BODY_BYTES, deadlineMs });
  } catch (err) {
    throw err instanceof RequestAborted ? new BodyAborted(err.reason) : err;
  }
  const params = new Map<string, string>();
  for (const [name, value] of new URLSearchParams(body.toString('utf8'))) {
    if (params.has(name)) throw new OAuthError('invalid_request', `parameter ${safeName(name)} is repeated`);
    params.set(name, value);
  }
  return params;
}

/**
 * Whether a body left unread (the request was answered before it: a 429, an invalid_client)
 * may be discarded to keep the connection: announced, and no larger than a form may be. For a
 * client flooding /token that is far cheaper than the new handshake a closed connection costs.
 */
export function discardableBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return false;
  return Number(req.headers['content-length'] ?? 0) <= MAX_BODY_BYTES;
}

/** Parameter names are echoed in errors only when they look like parameter names. */
function safeName(name: string): string {
  return /^[a-z_]{1,40}$/.test(name) ? name : '(a parameter)';
}
