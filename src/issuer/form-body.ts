import type { IncomingMessage } from 'node:http';
import { OAuthError } from './oauth-error.js';

const MAX_BODY_BYTES = 64 * 1024;

/** The parameters of an application/x-www-form-urlencoded POST, each at most once (RFC 6749 §3.2). */
export async function readForm(req: IncomingMessage): Promise<Map<string, string>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new OAuthError('invalid_request', 'the body must be application/x-www-form-urlencoded');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new OAuthError('invalid_request', 'the request body is too large');
    chunks.push(chunk as Buffer);
  }
  const params = new Map<string, string>();
  for (const [name, value] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) {
    if (params.has(name)) throw new OAuthError('invalid_request', `parameter ${safeName(name)} is repeated`);
    params.set(name, value);
  }
  return params;
}

/** Parameter names are echoed in errors only when they look like parameter names. */
function safeName(name: string): string {
  return /^[a-z_]{1,40}$/.test(name) ? name : '(a parameter)';
}
