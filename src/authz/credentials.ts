import type { HopRequest } from '../vocabulary/hop-request.js';

export type Credential =
  | { kind: 'none' }
  | { kind: 'bearer'; token: string }
  /** RFC 9449 §7.1: the DPoP scheme; `proof` is the one DPoP header, undefined if absent or repeated. */
  | { kind: 'dpop'; token: string; proof: string | undefined }
  | { kind: 'malformed'; reason: string };

// RFC 6750 §2.1 / RFC 9449 §7.1: scheme 1*SP b64token. A b64token has no "," so a joined pair is caught too.
const SCHEME = /^(bearer|dpop) +/i;
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
// A DPoP header is one JWT: no "," (a joined pair), no spaces.
const ONE_JWT = /^[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*$/;
// RFC 6750 headers are bounded well above any real token; anything longer is refused unparsed.
const MAX_AUTHORIZATION_LENGTH = 16 * 1024 + 64;

/**
 * The one credential of a request. Two credentials (two headers, a joined pair, a token in
 * the query as well), an unknown scheme, or a token in the query at all are malformed:
 * hopguard never picks "the first one".
 *
 * `verified(token)` says whether this exact token was verified before. Such a token passed the
 * b64token check then, so it is not scanned again: that scan is the one step of a cache hit
 * whose cost grows with the token (~18 µs for an 8 KB token).
 */
export function readCredential(request: HopRequest, verified: (token: string) => boolean): Credential {
  const inQuery = hasQueryToken(request.path);
  const authorization = request.headers.get('authorization');
  if (authorization === undefined) {
    return inQuery ? { kind: 'malformed', reason: 'access token in the query string' } : { kind: 'none' };
  }
  if (request.repeated.has('authorization') || authorization.includes(',')) {
    return { kind: 'malformed', reason: 'more than one authorization header' };
  }
  if (inQuery) return { kind: 'malformed', reason: 'access token in both the header and the query string' };
  if (authorization.length > MAX_AUTHORIZATION_LENGTH) return { kind: 'malformed', reason: 'authorization header too long' };
  const credential = authorization.trim();
  const scheme = SCHEME.exec(credential);
  const token = scheme ? credential.slice(scheme[0].length) : '';
  if (!scheme || !(verified(token) || B64TOKEN.test(token))) {
    return { kind: 'malformed', reason: 'authorization is not a single Bearer or DPoP token' };
  }
  if (scheme[1]!.toLowerCase() === 'bearer') return { kind: 'bearer', token };
  const proof = request.headers.get('dpop');
  const single = proof !== undefined && !request.repeated.has('dpop') && ONE_JWT.test(proof) ? proof : undefined;
  return { kind: 'dpop', token, proof: single };
}

/** RFC 6750 §2.3 `access_token` query parameter, in any percent-encoded spelling. */
function hasQueryToken(target: string): boolean {
  const q = target.indexOf('?');
  if (q === -1) return false;
  const query = target.slice(q + 1).split('#')[0]!;
  return query.split('&').some((pair) => {
    const name = pair.split('=')[0]!;
    try {
      return decodeURIComponent(name.replace(/\+/g, ' ')) === 'access_token';
    } catch {
      return false;
    }
  });
}
