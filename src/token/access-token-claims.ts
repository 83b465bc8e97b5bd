import type { AccessTokenClaims } from '../vocabulary/verified-token.js';
import { TokenError } from './token-error.js';

export interface FreshnessRules {
  /** Epoch seconds, fractional. */
  now: number;
  skewSeconds: number;
  maxTtlSeconds: number;
}

// Claims end up in HTTP headers for the application: printable ASCII only, bounded.
const HEADER_SAFE = /^[\x21-\x7e](?:[\x20-\x7e]{0,1022}[\x21-\x7e])?$/;
// RFC 6749 §3.3 scope-token, space-delimited.
const SCOPE = /^(?:[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*)?$/;
const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

/** Shape and type rules (RFC 7519, RFC 9068 §2.2). Time rules are separate: they change as time passes. */
export function readAccessTokenClaims(payload: Record<string, unknown>): AccessTokenClaims {
  const claims: AccessTokenClaims = {
    iss: requiredString(payload, 'iss'),
    sub: headerSafe(payload, 'sub'),
    clientId: headerSafe(payload, 'client_id'),
    jti: headerSafe(payload, 'jti'),
    aud: audiences(payload.aud),
    iat: numericDate(payload, 'iat', true)!,
    exp: numericDate(payload, 'exp', true)!,
    scope: scope(payload.scope),
    scopes: new Set(),
  };
  const nbf = numericDate(payload, 'nbf', false);
  if (nbf !== undefined) claims.nbf = nbf;
  if (claims.scope !== '') claims.scopes = new Set(claims.scope.split(' '));
  if (claims.exp <= claims.iat) throw new TokenError('malformed_token', 'token exp is not after iat');
  if (payload.cnf !== undefined) claims.cnf = confirmation(payload.cnf);
  if (payload.act !== undefined) {
    if (!isObject(payload.act)) throw new TokenError('malformed_token', 'token act claim is not an object');
    claims.act = payload.act;
  }
  return claims;
}

/** exp, nbf, iat against the clock with skew, and the lifetime bound. */
export function checkFreshness(claims: AccessTokenClaims, rules: FreshnessRules): void {
  const { now, skewSeconds } = rules;
  if (now >= claims.exp + skewSeconds) throw new TokenError('token_expired', 'token has expired');
  if (claims.nbf !== undefined && now + skewSeconds < claims.nbf) {
    throw new TokenError('token_not_yet_valid', 'token nbf is in the future');
  }
  // jose only refuses a future iat with maxTokenAge set; a token "issued" later than now is not fresh.
  if (now + skewSeconds < claims.iat) throw new TokenError('token_not_yet_valid', 'token iat is in the future');
  if (claims.exp - claims.iat > rules.maxTtlSeconds) {
    throw new TokenError('token_lifetime_too_long', 'token lifetime exceeds max_ttl');
  }
}

export function checkAudience(claims: AccessTokenClaims, audience: string): void {
  if (!claims.aud.includes(audience)) throw new TokenError('audience_mismatch', 'token aud does not name this service');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requiredString(payload: Record<string, unknown>, name: string): string {
  const value = payload[name];
  if (typeof value !== 'string' || value === '') throw new TokenError('malformed_token', `token ${name} is missing or not a string`);
  return value;
}

function headerSafe(payload: Record<string, unknown>, name: string): string {
  const value = requiredString(payload, name);
  if (!HEADER_SAFE.test(value)) throw new TokenError('malformed_token', `token ${name} has characters outside printable ASCII`);
  return value;
}

function numericDate(payload: Record<string, unknown>, name: string, required: boolean): number | undefined {
  const value = payload[name];
  if (value === undefined && !required) return undefined;
  // JSON.parse turns 1e400 into Infinity: refuse it with the other non-dates.
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new TokenError('malformed_token', `token ${name} is missing or not a NumericDate`);
  }
  return value;
}

function audiences(aud: unknown): string[] {
  if (typeof aud === 'string' && aud !== '') return [aud];
  if (Array.isArray(aud) && aud.length > 0 && aud.every((a) => typeof a === 'string' && a !== '')) return aud as string[];
  throw new TokenError('malformed_token', 'token aud is missing or not a string or list of strings');
}

function scope(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value !== 'string' || !SCOPE.test(value)) throw new TokenError('malformed_token', 'token scope is not a space-delimited string');
  return value;
}

function confirmation(cnf: unknown): NonNullable<AccessTokenClaims['cnf']> {
  if (!isObject(cnf)) throw new TokenError('malformed_token', 'token cnf claim is not an object');
  const result: NonNullable<AccessTokenClaims['cnf']> = { other: false };
  for (const [member, value] of Object.entries(cnf)) {
    if (member === 'x5t#S256') {
      if (typeof value !== 'string' || !THUMBPRINT.test(value)) throw new TokenError('malformed_token', 'token cnf x5t#S256 is not a SHA-256 thumbprint');
      result.x5tS256 = value;
    } else if (member === 'jkt') {
      if (typeof value !== 'string' || !THUMBPRINT.test(value)) throw new TokenError('malformed_token', 'token cnf jkt is not a SHA-256 thumbprint');
      result.jkt = value;
    } else {
      result.other = true;
    }
  }
  return result;
}

/** The RFC 8693 actors of an `act` claim, outermost first: its length is the delegation depth. */
export function actors(act: unknown): string[] {
  const chain: string[] = [];
  for (let a: unknown = act; typeof a === 'object' && a !== null; a = (a as { act?: unknown }).act) {
    chain.push(String((a as { sub?: unknown }).sub));
  }
  return chain;
}
