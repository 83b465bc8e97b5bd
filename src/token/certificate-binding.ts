import { X509Certificate, createHash, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { BindingMode } from '../config/authz-config.js';
import type { AccessTokenClaims } from './access-token-claims.js';
import { TokenError } from './token-error.js';

/** How a request proved possession: by its mTLS certificate, or not at all (binding: none). */
export type BindingKind = 'mtls' | 'none';

/** The presented certificate's RFC 8705 thumbprint, `invalid` if it does not parse, undefined if absent. */
export type PresentedCertificate = string | 'invalid' | undefined;

// A mesh has few peers and each certificate arrives with every request: parsing X.509
// costs tens of microseconds, a map lookup does not.
const thumbprints = new LRUCache<string, string>({ max: 4096 });
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----/g;

/**
 * x5t#S256 (RFC 8705 §3.1) of the certificate Envoy forwards in `source.certificate`:
 * the URL-encoded PEM of the leaf. The thumbprint is over the DER, never the PEM text.
 */
export function presentedCertificate(urlEncodedPem: string): PresentedCertificate {
  if (urlEncodedPem === '') return undefined;
  const known = thumbprints.get(urlEncodedPem);
  if (known) return known;
  let pem: string;
  try {
    pem = decodeURIComponent(urlEncodedPem);
  } catch {
    return 'invalid';
  }
  // Exactly one certificate: a chain here would make "which one is the client" ambiguous.
  if (pem.match(PEM_CERTIFICATE)?.length !== 1) return 'invalid';
  let der: Buffer;
  try {
    der = new X509Certificate(pem).raw;
  } catch {
    return 'invalid';
  }
  const thumbprint = createHash('sha256').update(der).digest('base64url');
  thumbprints.set(urlEncodedPem, thumbprint);
  return thumbprint;
}

/**
 * A token that carries `cnf` is always held to it, whatever the mode says: a bound token
 * is never accepted as a bearer token. Without `cnf`, the mode decides.
 */
export function checkBinding(claims: AccessTokenClaims, mode: BindingMode, presented: PresentedCertificate): BindingKind {
  const cnf = claims.cnf;
  if (!cnf) {
    if (mode === 'none') return 'none';
    throw new TokenError('binding_required', 'token is not bound to a client certificate');
  }
  // DPoP proofs (cnf.jkt) and unknown confirmation methods cannot be checked here: deny.
  if (cnf.x5tS256 === undefined || cnf.jkt !== undefined || cnf.other) {
    throw new TokenError('binding_mismatch', 'token confirmation method is not supported');
  }
  if (presented === undefined || presented === 'invalid' || !sameThumbprint(presented, cnf.x5tS256)) {
    throw new TokenError('binding_mismatch', 'token is bound to another client certificate');
  }
  return 'mtls';
}

function sameThumbprint(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
