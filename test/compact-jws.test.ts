import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeCompactJws } from '../src/token/compact-jws.js';
import { TokenError } from '../src/token/token-error.js';

/**
 * The segments of a token are read once, and the signature is checked without being decoded
 * (issue 19). What is accepted must not change: every segment is unpadded canonical base64url,
 * as the plain definition (the charset, then the bytes spelled back equal the text) says.
 */
const CHARS = ['A', 'B', 'Q', 'g', 'w', 'z', '0', '9', '-', '_', '+', '/', '=', ' ', 'é', '\u0000'];
const segment = fc.array(fc.constantFrom(...CHARS), { maxLength: 12 }).map((chars) => chars.join(''));
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const HEADER = b64({ alg: 'ES256', typ: 'at+jwt' });
const PAYLOAD = b64({ sub: 'a' });

/** The plain definition, as the decoder had it before. */
function reference(text: string, what: string): string | undefined {
  if (!/^[A-Za-z0-9_-]+$/.test(text)) return `token ${what} is not base64url`;
  if (Buffer.from(text, 'base64url').toString('base64url') !== text) return `token ${what} is not canonical base64url`;
  return undefined;
}

function refusal(token: string): string | undefined {
  try {
    decodeCompactJws(token);
    return undefined;
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    return err.message;
  }
}

describe('decodeCompactJws: canonical base64url', () => {
  it('refuses a signature exactly when the plain definition does (an empty one is left to the signature check)', () => {
    fc.assert(fc.property(segment, (signature) => {
      const expected = signature === '' ? undefined : reference(signature, 'signature');
      expect(refusal(`${HEADER}.${PAYLOAD}.${signature}`)).toBe(expected);
    }), { numRuns: 3000 });
  });

  it('refuses a payload exactly when the plain definition does, before reading it as JSON', () => {
    fc.assert(fc.property(segment, (payload) => {
      const expected = payload === '' ? 'token payload is not base64url' : reference(payload, 'payload');
      const got = refusal(`${HEADER}.${payload}.AA`);
      if (expected !== undefined) expect(got).toBe(expected);
      else expect(got).not.toMatch(/base64url/);
    }), { numRuns: 3000 });
  });

  it('a valid prefix with one character more or changed in its last place', () => {
    for (const tail of ['B', 'C', 'D', 'Q', 'R', 'g', 'h', 'w', 'x']) {
      const signature = `AAAA${tail}`;
      expect(refusal(`${HEADER}.${PAYLOAD}.${signature}`)).toBe(reference(signature, 'signature'));
      for (const pad of ['A', 'AA', 'AAA']) {
        const longer = `${pad}${tail}`;
        expect(refusal(`${HEADER}.${PAYLOAD}.${longer}`)).toBe(reference(longer, 'signature'));
      }
    }
  });

  it('counts segments as split did: a JWE (five) and any other count are told apart', () => {
    expect(refusal('a.b.c.d.e')).toBe('token is a JWE; a signed JWT (JWS) is required');
    for (const token of ['', 'a', 'a.b', 'a.b.c.d', 'a.b.c.d.e.f', '..', '....']) {
      expect(refusal(token)).toBe(token.split('.').length === 5 ? 'token is a JWE; a signed JWT (JWS) is required' : token.split('.').length === 3 ? 'token header is not base64url' : 'token does not have three segments');
    }
    expect(decodeCompactJws(`${HEADER}.${PAYLOAD}.`)).toEqual({ header: { alg: 'ES256', typ: 'at+jwt' }, payload: { sub: 'a' } });
  });
});
