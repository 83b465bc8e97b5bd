import { TokenError } from './token-error.js';

/**
 * JSON.parse keeps the last of two members with the same name; RFC 8725 §3.3/RFC 7515
 * §5.2 say such a JOSE object must be refused, or two parsers may read two different
 * tokens. JSON.parse validates the syntax and decodes every name (so "a" and "\u0061" are
 * one name); a repeated name is then one member fewer in the result than in the text.
 */
export function parseJsonObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TokenError('malformed_token', `${what} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TokenError('malformed_token', `${what} is not a JSON object`);
  }
  if (membersInText(text) !== membersInValue(value)) {
    throw new TokenError('malformed_token', `${what} has duplicate member names`);
  }
  return value as Record<string, unknown>;
}

const QUOTE = 0x22, BACKSLASH = 0x5c, COLON = 0x3a;

/**
 * Every member of every object has exactly one colon outside strings, and nothing else has one.
 * Precondition: `text` is valid JSON. No allocation: this runs for every token not yet cached.
 */
function membersInText(text: string): number {
  let members = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === COLON) {
      members++;
    } else if (c === QUOTE) {
      // To the closing quote: the next one not escaped by an odd run of backslashes.
      let end = text.indexOf('"', i + 1);
      for (;;) {
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === BACKSLASH) backslashes++;
        if (backslashes % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      i = end;
    }
  }
  return members;
}

/** Members of every object in a parsed JSON value. */
function membersInValue(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  let members = 0;
  if (Array.isArray(value)) {
    for (const item of value) members += membersInValue(item);
    return members;
  }
  for (const name in value) members += 1 + membersInValue((value as Record<string, unknown>)[name]);
  return members;
}
