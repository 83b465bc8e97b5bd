import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseJsonObject } from '../src/token/strict-json.js';
import { TokenError } from '../src/token/token-error.js';

/**
 * JOSE headers and claims with a repeated member name are refused (RFC 7515 §5.2), however the
 * names are spelled and wherever the repeat is: nested, next to strings full of quotes, colons
 * and backslashes, in objects inside arrays.
 */

/** A JSON text written member by member (so it can repeat names), and whether it does. */
interface Written {
  text: string;
  repeats: boolean;
}

// Few distinct names, so repeats are common; characters that trip a naive scanner.
const name = fc.constantFrom('sub', 'aud', 'a', '', ':', '"', '\\', 'a"b', 'x\\"', 'é', '😀', '__proto__', 'toString');
const scalar = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('\\', '"', '":"', '\\"', 'a\\\\'), fc.integer(), fc.boolean(), fc.constant(null));

/** A name as JSON text: plain, or with some characters as \u escapes. */
const spelled = (text: string, escapes: boolean[]) => `"${[...text].map((ch, i) => (escapes[i % escapes.length]
  ? ch.split('').map((unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')
  : JSON.stringify(ch).slice(1, -1))).join('')}"`;

const written: fc.Arbitrary<Written> = fc.letrec<{ value: Written; object: Written; array: Written }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    scalar.map((v) => ({ text: JSON.stringify(v), repeats: false })), tie('object'), tie('array')),
  object: fc.array(fc.tuple(name, fc.array(fc.boolean(), { minLength: 1, maxLength: 3 }), tie('value')), { maxLength: 5 }).map((members) => ({
    text: `{${members.map(([n, escapes, v]) => `${spelled(n, escapes)} : ${v.text}`).join(',')}}`,
    repeats: new Set(members.map(([n]) => n)).size < members.length || members.some(([, , v]) => v.repeats),
  })),
  array: fc.array(tie('value'), { maxLength: 4 }).map((items) => ({
    text: `[${items.map((v) => v.text).join(', ')}]`,
    repeats: items.some((v) => v.repeats),
  })),
})).object;

function refusal(text: string): string | undefined {
  try {
    parseJsonObject(text, 'the header');
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(TokenError);
    return (error as TokenError).message;
  }
}

describe('parseJsonObject', () => {
  it('refuses an object exactly when some object in it repeats a member name', () => {
    fc.assert(fc.property(written, ({ text, repeats }) => {
      expect(refusal(text)).toBe(repeats ? 'the header has duplicate member names' : undefined);
    }), { numRuns: 2000 });
  });

  it('returns what JSON.parse returns', () => {
    const text = '{"iss":"https://sts","aud":["a","b"],"cnf":{"x5t#S256":"q:\\"z"},"n":1}';
    expect(parseJsonObject(text, 'the claims')).toEqual(JSON.parse(text));
  });

  it.each([
    ['{"a":1,"a":1}', 'the claims has duplicate member names'],
    ['{"a":{"b":1,"b":2}}', 'the claims has duplicate member names'],
    ['{"a":[{"b":1},{"b":1,"\\u0062":2}]}', 'the claims has duplicate member names'],
    ['{"a":1', 'the claims is not valid JSON'],
    ['[{"a":1}]', 'the claims is not a JSON object'],
    ['"{}"', 'the claims is not a JSON object'],
  ])('%s: %s', (text, message) => {
    expect(() => parseJsonObject(text, 'the claims')).toThrow(message);
  });
});
