import { hash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Algorithm } from '../vocabulary/algorithms.js';
import type { IssuerConfig } from '../vocabulary/trusted-issuer.js';
import type { VerifiedToken } from '../vocabulary/verified-token.js';
import { checkAudience, checkFreshness, readAccessTokenClaims } from './access-token-claims.js';
import { decodeCompactJws } from './compact-jws.js';
import type { IssuerKeys } from './issuer-keys.js';
import { verifyJwsSignature } from './jws-signature.js';
import { TokenError } from './token-error.js';

export interface TrustedIssuer {
  config: IssuerConfig;
  keys: IssuerKeys;
  /** The `aud` this issuer's tokens must carry, when not the verifier's (an identity provider's, for the edge). */
  audience?: string;
  /** The `typ` values accepted, lower case; RFC 9068's access token types when absent. */
  types?: ReadonlySet<string>;
}

export interface VerifierOptions {
  audience: string;
  issuers: TrustedIssuer[];
  clockSkewMs: number;
  /** Verified tokens kept; 0 disables the cache. */
  cacheMaxEntries: number;
  /** Epoch ms; injectable for tests. */
  now?: () => number;
}

interface CacheEntry {
  /** The whole token: a hit must be this exact token, not just its signature. */
  raw: string;
  token: VerifiedToken;
  issuer: TrustedIssuer;
  /** The issuer's key-set generation when verified: a changed key set drops the entry. */
  generation: number;
}

// RFC 9068 §2.1; media types compare case-insensitively.
const ACCESS_TOKEN_TYPES: ReadonlySet<string> = new Set(['at+jwt', 'application/at+jwt']);

/**
 * Verifies RFC 9068 access tokens for one audience: strict decoding, issuer allowlist,
 * per-issuer algorithm allowlist, keys only from the issuer's JWKS, claims and freshness.
 * Binding, revocation, one-time use and route policy are per request and not done here.
 */
export class AccessTokenVerifier {
  readonly cacheSize: () => number;
  private readonly issuers: Map<string, TrustedIssuer>;
  private readonly cache: LRUCache<string, CacheEntry> | undefined;
  private readonly now: () => number;

  constructor(private readonly options: VerifierOptions) {
    this.issuers = new Map(options.issuers.map((i) => [i.config.issuer, i]));
    this.now = options.now ?? Date.now;
    // A hit is the whole token, compared in full: everything else the verdict depends on
    // (issuers, audience, skew) is fixed for this verifier's life, and the key set is checked
    // by generation. The map is keyed on the signature segment, not the whole token: a lookup
    // hashes its key, and hashing an 8 KB token costs ~14 µs on every check, a 86-character
    // ES256 signature well under 1. A forged token reusing a cached token's signature finds
    // that entry, fails the full comparison, and is verified (and refused) as a miss.
    // maxSize bounds memory by token length, so 16 KB tokens cannot blow the heap.
    this.cache = options.cacheMaxEntries > 0
      ? new LRUCache<string, CacheEntry>({
        max: options.cacheMaxEntries,
        maxSize: options.cacheMaxEntries * 2048,
        sizeCalculation: (entry) => entry.raw.length,
        // Read the clock on each lookup: at the default (1 ms) lru-cache instead keeps the time
        // and sets a timer to forget it, one timer a millisecond on the check path.
        ttlResolution: 0,
      })
      : undefined;
    this.cacheSize = () => this.cache?.size ?? 0;
  }

  /** Whether this exact token is in the cache (its verdict may still have expired). */
  isCached(token: string): boolean {
    return this.cache?.peek(signatureSegment(token))?.raw === token;
  }

  /** Resolves the verified token, or rejects with a TokenError carrying the deny code. */
  async verify(token: string): Promise<{ token: VerifiedToken; cacheHit: boolean }> {
    const cached = this.cache?.get(signatureSegment(token));
    if (cached && cached.raw === token && cached.generation === cached.issuer.keys.generation) {
      this.checkTime(cached.token, cached.issuer);
      return { token: cached.token, cacheHit: true };
    }
    const { verified, issuer, generation } = await this.verifyUncached(token);
    this.cache?.set(signatureSegment(token), { raw: token, token: verified, issuer, generation }, {
      ttl: Math.max(1, (verified.exp * 1000 + this.options.clockSkewMs) - this.now()),
    });
    return { token: verified, cacheHit: false };
  }

  private async verifyUncached(token: string) {
    const { header, payload } = decodeCompactJws(token);
    const alg = checkHeader(header);

    const iss = payload.iss;
    const issuer = typeof iss === 'string' ? this.issuers.get(iss) : undefined;
    // An access token of the wrong type is refused as such whoever signed it.
    const { typ } = header;
    const types = issuer?.types ?? ACCESS_TOKEN_TYPES;
    if (typeof typ !== 'string' || !types.has(typ.toLowerCase())) throw new TokenError('wrong_token_type', 'token typ is not at+jwt');
    if (!issuer) throw new TokenError('unknown_issuer', 'token issuer is not trusted');
    if (!(issuer.config.algorithms as string[]).includes(alg)) {
      throw new TokenError('disallowed_algorithm', 'token algorithm is not allowed for this issuer');
    }

    const kid = header.kid;
    if (kid !== undefined && (typeof kid !== 'string' || kid === '')) throw new TokenError('malformed_token', 'token kid is not a string');
    const generation = issuer.keys.generation;
    const key = await issuer.keys.resolve(kid, alg as Algorithm);
    if (!key) throw new TokenError('unknown_key', 'no trusted key matches the token kid and alg');
    const signature = await verifyJwsSignature(token, alg as Algorithm, key);
    if (signature === 'invalid') throw new TokenError('invalid_signature', 'token signature does not verify');
    // A key that cannot sign for `alg` (an RSA key under 2048 bits, say) verifies nothing.
    if (signature === 'unusable_key') throw new TokenError('malformed_token', 'token could not be verified');

    const claims = readAccessTokenClaims(payload);
    const verified: VerifiedToken = {
      ...claims, fingerprint: fingerprint(claims.iss, claims.jti), ...(kid !== undefined && { kid }), claims: Object.freeze(payload),
    };
    this.checkTime(verified, issuer);
    checkAudience(verified, issuer.audience ?? this.options.audience);
    return { verified, issuer, generation };
  }

  private checkTime(token: VerifiedToken, issuer: TrustedIssuer): void {
    checkFreshness(token, {
      now: this.now() / 1000,
      skewSeconds: this.options.clockSkewMs / 1000,
      maxTtlSeconds: issuer.config.maxTtlMs / 1000,
    });
  }
}

/** Header rules that need no issuer: returns the `alg`. */
function checkHeader(header: Record<string, unknown>): string {
  const { alg } = header;
  if (typeof alg !== 'string' || alg === '') throw new TokenError('malformed_token', 'token alg is missing');
  // Unsigned and symmetric algorithms are never trusted, whatever an issuer claims (RFC 8725 §3.1–3.2).
  if (alg.toLowerCase() === 'none' || /^hs/i.test(alg)) throw new TokenError('disallowed_algorithm', 'token algorithm is not allowed');
  if ('enc' in header || 'zip' in header) throw new TokenError('malformed_token', 'token header is a JWE header');
  if ('crit' in header || 'b64' in header) throw new TokenError('malformed_token', 'token header has critical extensions hopguard does not support');
  if ('cty' in header) throw new TokenError('wrong_token_type', 'token has a content type; nested tokens are not access tokens');
  return alg;
}

function signatureSegment(token: string): string {
  return token.slice(token.lastIndexOf('.') + 1);
}

export function fingerprint(iss: string, jti: string): string {
  // One-shot hash: a fifth of the cost of createHash().update().digest() for input this short.
  return hash('sha256', `${iss}\n${jti}`, 'base64url');
}
