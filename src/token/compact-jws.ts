import { parseJsonObject } from './strict-json.js';
import { TokenError } from './token-error.js';

/** Tokens above this size are refused before any parsing (RFC 9068 tokens are ~1–4 KB). */
export const MAX_TOKEN_LENGTH = 16 * 1024;

const BASE64URL = /^[A-Za-z0-9_-]+$/;

export interface DecodedJws {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
}

/**
 * Splits and decodes a JWS compact serialization strictly, before any key is looked up:
 * exactly three segments, unpadded canonical base64url (jose accepts `=` padding; a token
 * has one spelling), JSON objects without duplicate members.
 * Nothing here is trusted until the signature verifies. `maxLength`: a SET may be longer than a token.
 * The signature alone may be empty, as in an Unsecured JWS (RFC 7519 §6.1): such a token
 * is still refused, but by its header (`alg: none` is disallowed_algorithm) or its signature.
 */
export function decodeCompactJws(token: string, maxLength = MAX_TOKEN_LENGTH): DecodedJws {
  if (token.length > maxLength) {
    throw new TokenError('malformed_token', `token is longer than ${maxLength} characters`);
  }
  const segments = token.split('.');
  if (segments.length === 5) throw new TokenError('malformed_token', 'token is a JWE; a signed JWT (JWS) is required');
  if (segments.length !== 3) throw new TokenError('malformed_token', 'token does not have three segments');
  const [header, payload, signature] = segments as [string, string, string];
  if (signature !== '') decodeSegment(signature, 'signature');
  return {
    header: parseJsonObject(decodeText(header, 'header'), 'token header'),
    payload: parseJsonObject(decodeText(payload, 'payload'), 'token payload'),
  };
}

// fatal: invalid UTF-8 is refused rather than silently replaced with U+FFFD.
const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeText(segment: string, what: string): string {
  try {
    return utf8.decode(decodeSegment(segment, what));
  } catch (err) {
    if (err instanceof TokenError) throw err;
    throw new TokenError('malformed_token', `token ${what} is not valid UTF-8`);
  }
}

function decodeSegment(segment: string, what: string): Buffer {
  if (!BASE64URL.test(segment)) throw new TokenError('malformed_token', `token ${what} is not base64url`);
  const bytes = Buffer.from(segment, 'base64url');
  // Non-canonical spellings (stray low bits in the last character, impossible lengths) decode
  // to the same bytes as the canonical one; refuse them so a token has exactly one form.
  if (bytes.toString('base64url') !== segment) {
    throw new TokenError('malformed_token', `token ${what} is not canonical base64url`);
  }
  return bytes;
}
