import { MAX_TOKEN_LENGTH } from '../token/compact-jws.js';
import { MESSAGE_DESTINATION, MESSAGE_DIGEST } from '../vocabulary/message-token.js';
import type { CheckInput } from './message-check.js';

/**
 * The bodies of seal and check, read strictly: a JSON object with exactly the documented
 * members, each of its type. A problem is a MessageRequestError whose message is fixed text
 * naming the member, never the value sent (it may be a token).
 */

/** Every body is far smaller: a token is at most 16 KiB. */
export const MAX_BODY_BYTES = 64 * 1024;

export class MessageRequestError extends Error {
  readonly code = 'malformed_request';
  constructor(message: string) {
    super(message);
    this.name = 'MessageRequestError';
  }
}

export function readSealBody(body: unknown): { destination: string; digest: string } {
  const fields = members(body, ['destination', 'digest'], []);
  return { destination: destination(fields.destination), digest: digest(fields.digest) };
}

export function readCheckBody(body: unknown): CheckInput {
  const fields = members(body, ['token', 'destination', 'digest'], ['redelivered']);
  const { token, redelivered = false } = fields;
  if (typeof token !== 'string' || token === '') throw new MessageRequestError('token must be a non-empty string');
  if (token.length > MAX_TOKEN_LENGTH) throw new MessageRequestError(`token must be at most ${MAX_TOKEN_LENGTH} characters`);
  if (typeof redelivered !== 'boolean') throw new MessageRequestError('redelivered must be true or false');
  return { token, destination: destination(fields.destination), digest: digest(fields.digest), redelivered };
}

/** JSON text → a value, or a MessageRequestError (never the parser's message: it quotes the input). */
export function parseJsonBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MessageRequestError('the body must be JSON');
  }
}

function members(body: unknown, required: string[], optional: string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new MessageRequestError('the body must be a JSON object');
  const fields = body as Record<string, unknown>;
  const known = new Set([...required, ...optional]);
  const unknown = Object.keys(fields).filter((key) => !known.has(key));
  if (unknown.length > 0) throw new MessageRequestError(`unknown member; expected only ${[...known].join(', ')}`);
  const missing = required.filter((key) => fields[key] === undefined);
  if (missing.length > 0) throw new MessageRequestError(`${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} required`);
  return fields;
}

function destination(value: unknown): string {
  if (typeof value !== 'string' || !MESSAGE_DESTINATION.test(value)) {
    throw new MessageRequestError('destination must be a queue, subject or topic name: 1 to 255 visible ASCII characters');
  }
  return value;
}

function digest(value: unknown): string {
  if (typeof value !== 'string' || !MESSAGE_DIGEST.test(value)) {
    throw new MessageRequestError('digest must be the SHA-256 of the message body as sha-256=:<base64>: (RFC 9530)');
  }
  return value;
}
