/**
 * Envoy's `x-forwarded-client-cert` (XFCC) header: a `,`-separated list of elements, one per
 * proxy hop that saw a client certificate, each a `;`-separated list of `Key=value` pairs. A
 * value that holds `,`, `;` or `=` is double-quoted, and a `"` inside it is escaped as `\"`.
 * Keys, as Envoy writes them: By, Hash (hex SHA-256 of the leaf's DER), Cert and Chain
 * (URL-encoded PEM), Subject, URI and DNS (these two once per SAN).
 *
 * Parsing is strict: anything Envoy would not write is malformed, never "the part that parsed".
 */

export interface XfccElement {
  by?: string;
  hash?: string;
  cert?: string;
  chain?: string;
  subject?: string;
  uris: string[];
  dns: string[];
}

export class XfccError extends Error {
  override readonly name = 'XfccError';
}

const SINGLE = { By: 'by', Hash: 'hash', Cert: 'cert', Chain: 'chain', Subject: 'subject' } as const;
const KEY = /^[A-Za-z]+$/;

export function parseXfcc(header: string): XfccElement[] {
  const elements: XfccElement[] = [];
  let element: XfccElement = { uris: [], dns: [] };
  let at = 0;
  const fail = (what: string): never => {
    throw new XfccError(`malformed x-forwarded-client-cert: ${what}`);
  };
  for (;;) {
    const eq = header.indexOf('=', at);
    if (eq < 0) fail('a pair without "="');
    // Elements joined by a proxy or by node (repeated headers) may have spaces after the comma.
    const key = header.slice(at, eq).replace(/^[ \t]+/, '');
    if (!KEY.test(key)) fail('a key that is not a word');
    at = eq + 1;
    let value = '';
    if (header[at] === '"') {
      at++;
      for (;;) {
        const c = header[at];
        if (c === undefined) fail('an unterminated quoted value');
        if (c === '"') break;
        if (c === '\\') {
          const next = header[at + 1];
          if (next !== '"' && next !== '\\') fail('an escape other than \\" or \\\\');
          value += next;
          at += 2;
          continue;
        }
        value += c;
        at++;
      }
      at++;
    } else {
      const end = header.slice(at).search(/[,;"]/);
      value = end < 0 ? header.slice(at) : header.slice(at, at + end);
      at += value.length;
      if (value.includes('=')) fail('an unquoted value with "="');
    }
    if (key === 'URI') element.uris.push(value);
    else if (key === 'DNS') element.dns.push(value);
    else if (key in SINGLE) {
      const field = SINGLE[key as keyof typeof SINGLE];
      if (element[field] !== undefined) fail(`${key} twice in one element`);
      element[field] = value;
    } else fail(`an unknown key ${key.length <= 16 ? key : `${key.slice(0, 16)}…`}`);
    const separator = header[at];
    if (separator === undefined) {
      elements.push(element);
      return elements;
    }
    at++;
    if (separator === ',') {
      elements.push(element);
      element = { uris: [], dns: [] };
    } else if (separator !== ';') fail('a value followed by something other than ";" or ","');
  }
}
