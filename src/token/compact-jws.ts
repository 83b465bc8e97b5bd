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
  // Found by position, not split: the segments are read once, and the signature's bytes are left
  // to the signature check, which writes them where it needs them.
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  if (second < 0 || token.indexOf('.', second + 1) >= 0) {
    if (token.split('.').length === 5) throw new TokenError('malformed_token', 'token is a JWE; a signed JWT (JWS) is required');
    throw new TokenError('malformed_token', 'token does not have three segments');
  }
  if (second + 1 < token.length) checkSignatureSegment(token.slice(second + 1));
  return {
    header: parseJsonObject(decodeText(token.slice(0, first), 'header'), 'token header'),
    payload: parseJsonObject(decodeText(token.slice(first + 1, second), 'payload'), 'token payload'),
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
  const bytes = Buffer.from(segment, 'base64url');
  // Node's decoder skips what is not base64 and reads both alphabets and padding, so the bytes
  // spelled back differ from any segment that is not canonical unpadded base64url: stray
  // characters, `+` `/` `=`, stray low bits in the last character, impossible lengths. A token
  // has exactly one form. The charset is only looked at to say which fault it was.
  if (segment === '' || bytes.toString('base64url') !== segment) throw notCanonical(segment, what);
  return bytes;
}

/** The signature, checked without decoding it: base64url characters, and a length and last character only the canonical spelling has. */
function checkSignatureSegment(segment: string): void {
  if (!BASE64URL.test(segment)) throw notCanonical(segment, 'signature');
  const tail = segment.length % 4;
  // 2 or 3 characters left over carry 1 or 2 bytes: the last one's low 4 or 2 bits are unused and must be 0.
  const unused = tail === 2 ? 0x0f : tail === 3 ? 0x03 : 0;
  if (tail === 1 || (sextet(segment.charCodeAt(segment.length - 1)) & unused) !== 0) throw notCanonical(segment, 'signature');
}

/** The value of a base64url character (A-Z a-z 0-9 - _). */
function sextet(c: number): number {
  if (c >= 0x61) return c - 0x61 + 26;
  if (c >= 0x41) return c === 0x5f ? 63 : c - 0x41;
  return c === 0x2d ? 62 : c - 0x30 + 52;
}

function notCanonical(segment: string, what: string): TokenError {
  return BASE64URL.test(segment)
    ? new TokenError('malformed_token', `token ${what} is not canonical base64url`)
    : new TokenError('malformed_token', `token ${what} is not base64url`);
}
