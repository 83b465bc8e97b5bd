import { createHash, timingSafeEqual } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, importJWK, type JWK } from 'jose';
import { decodeCompactJws } from './compact-jws.js';
import { HolderMismatch, TokenError } from './token-error.js';

/** What the resource server expects of a proof (RFC 9449 §4.3, §7.1). */
export interface DpopExpectation {
  /** The request method (`htm`). */
  method: string;
  /** The request URI, normalized with normalizeHtu: scheme, authority, path. */
  htu: string;
  /** The access token presented with the proof: `ath` must be its SHA-256. None at a token endpoint. */
  accessToken?: string;
  /** cnf.jkt of the access token: the proof key's RFC 7638 thumbprint must equal it. None at a token endpoint. */
  jkt?: string;
  algorithms: readonly string[];
  /** Epoch ms. */
  now: number;
  /** How old a proof's iat may be, and how far in the future (clock skew). */
  maxAgeMs: number;
  skewMs: number;
}

export interface VerifiedProof {
  jti: string;
  /** Epoch seconds. */
  iat: number;
  /** RFC 7638 thumbprint of the proof's key: what a token issued for it is bound to. */
  jkt: string;
  /** The proof's `nonce` claim, for a server that hands out nonces (RFC 9449 §9) to check. */
  nonce?: unknown;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'];
const MAX_JTI_LENGTH = 256;

const invalid = (message: string) => new TokenError('dpop_invalid', message);

/** Every check of RFC 9449 §4.3 that needs no state; the jti replay check is the caller's. */
export async function verifyDpopProof(proof: string, expected: DpopExpectation): Promise<VerifiedProof> {
  let header: Record<string, unknown>;
  let payload: Record<string, unknown>;
  try {
    ({ header, payload } = decodeCompactJws(proof));
  } catch (err) {
    throw invalid(`proof is not a well-formed JWT: ${(err as Error).message}`);
  }
  if (typeof header.typ !== 'string' || header.typ.toLowerCase() !== 'dpop+jwt') throw invalid('proof typ is not dpop+jwt');
  const alg = header.alg;
  if (typeof alg !== 'string' || !expected.algorithms.includes(alg)) throw invalid('proof algorithm is not allowed');
  if ('crit' in header || 'b64' in header) throw invalid('proof has critical header parameters');
  const jwk = header.jwk;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw invalid('proof has no jwk header');
  if (PRIVATE_MEMBERS.some((m) => m in jwk)) throw invalid('proof jwk holds private key material');

  let key: CryptoKey;
  try {
    key = (await importJWK(jwk as JWK, alg)) as CryptoKey;
  } catch {
    throw invalid('proof jwk is not a usable public key for its alg');
  }
  try {
    await compactVerify(proof, key, { algorithms: [alg] });
  } catch {
    throw invalid('proof signature does not verify');
  }

  const { jti, htm, htu, iat, ath } = payload;
  if (typeof jti !== 'string' || jti === '' || jti.length > MAX_JTI_LENGTH) throw invalid('proof jti is missing or too long');
  if (htm !== expected.method) throw invalid('proof htm does not match the request method');
  if (typeof htu !== 'string' || normalizeHtu(htu) !== expected.htu) throw invalid('proof htu does not match the request URI');
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalid('proof iat is missing');
  const ageMs = expected.now - iat * 1000;
  if (ageMs > expected.maxAgeMs + expected.skewMs || -ageMs > expected.skewMs) throw invalid('proof iat is outside the accepted window');
  if (expected.accessToken !== undefined && (typeof ath !== 'string' || !sameText(ath, accessTokenHash(expected.accessToken)))) {
    throw invalid('proof ath does not match the access token');
  }
  const jkt = await calculateJwkThumbprint(jwk as JWK, 'sha256');
  // Every other check passed: whoever sent this holds the token, and a key that is not its holder's.
  if (expected.jkt !== undefined && !sameText(jkt, expected.jkt)) {
    throw new HolderMismatch('dpop_invalid', 'proof key is not the key the token is bound to', 'wrong_dpop_key', jkt);
  }
  return { jti, iat, jkt, ...(payload.nonce !== undefined && { nonce: payload.nonce }) };
}

/** RFC 9449 §4.2 `ath`: base64url(SHA-256(ASCII access token)). */
export function accessTokenHash(accessToken: string): string {
  return createHash('sha256').update(accessToken, 'ascii').digest('base64url');
}

const UNRESERVED_ESCAPE = /%(2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff]|7[Ee])/g;

/**
 * `htu` and the request URI compare after RFC 3986 §6.2.2 and §6.2.3 normalization: case of
 * scheme and host, default port, dot segments, escapes of unreserved characters decoded and
 * the rest upper-cased; query and fragment ignored (RFC 9449 §4.3). undefined if not http(s).
 */
export function normalizeHtu(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
  const path = (url.pathname === '' ? '/' : url.pathname)
    .replace(UNRESERVED_ESCAPE, (escape) => String.fromCharCode(parseInt(escape.slice(1), 16)))
    .replace(/%[0-9a-f]{2}/gi, (escape) => escape.toUpperCase());
  return `${url.protocol}//${url.host}${path}`;
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
