import { TokenError } from './token-error.js';

/**
 * JSON.parse keeps the last of two members with the same name; RFC 8725 §3.3/RFC 7515
 * §5.2 say such a JOSE object must be refused, or two parsers may read two different
 * tokens. JSON.parse validates the syntax, then one linear pass looks for repeats.
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
  if (hasDuplicateMembers(text)) {
    throw new TokenError('malformed_token', `${what} has duplicate member names`);
  }
  return value as Record<string, unknown>;
}

const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c;
const OPEN_OBJECT = 0x7b, CLOSE_OBJECT = 0x7d, OPEN_ARRAY = 0x5b, CLOSE_ARRAY = 0x5d;

/** Precondition: `text` is valid JSON (so strings are terminated and brackets balance). */
function hasDuplicateMembers(text: string): boolean {
  // One entry per open container: the member names seen so far, or null for an array.
  const open: (Set<string> | null)[] = [];
  let expectName = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === OPEN_OBJECT) {
      open.push(new Set());
      expectName = true;
    } else if (c === OPEN_ARRAY) {
      open.push(null);
      expectName = false;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      open.pop();
      expectName = false;
    } else if (c === COMMA) {
      expectName = open[open.length - 1] != null;
    } else if (c === QUOTE) {
      let end = i + 1;
      let escaped = false;
      while (text.charCodeAt(end) !== QUOTE) {
        const backslash = text.charCodeAt(end) === BACKSLASH;
        escaped ||= backslash;
        end += backslash ? 2 : 1;
      }
      if (expectName) {
        // Decode escapes (where there are any), so "a" and "\u0061" count as the same name.
        const name = escaped ? JSON.parse(text.slice(i, end + 1)) as string : text.slice(i + 1, end);
        const names = open[open.length - 1]!;
        if (names.has(name)) return true;
        names.add(name);
        expectName = false;
      }
      i = end;
    }
  }
  return false;
}
