import { X509Certificate, createHash, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { BindingMode, BindingKind } from '../vocabulary/binding.js';
import type { AccessTokenClaims } from '../vocabulary/verified-token.js';
import { HolderMismatch, TokenError } from './token-error.js';

/** The presented certificate's RFC 8705 thumbprint, `invalid` if it does not parse, undefined if absent. */
export type PresentedCertificate = string | 'invalid' | undefined;

// A mesh has few peers and each certificate arrives with every request: parsing X.509
// costs tens of microseconds, a map lookup does not.
const thumbprints = new LRUCache<string, string>({ max: 4096 });
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----/g;
/** The last certificate that parsed, and its thumbprint. */
let last = { pem: '', thumbprint: '' };

/**
 * x5t#S256 (RFC 8705 §3.1) of the certificate Envoy forwards in `source.certificate`:
 * the URL-encoded PEM of the leaf. The thumbprint is over the DER, never the PEM text.
 */
export function presentedCertificate(urlEncodedPem: string): PresentedCertificate {
  if (urlEncodedPem === '') return undefined;
  // The peer of the last check is usually the peer of this one. The decoder then hands over the
  // last check's string again, so this is one comparison and no map lookup; a certificate
  // decoded anew is compared as text, ~1.6 KB, which still costs less than hashing it for the map.
  if (urlEncodedPem === last.pem) return last.thumbprint;
  const known = thumbprints.get(urlEncodedPem);
  if (known) {
    last = { pem: urlEncodedPem, thumbprint: known };
    return known;
  }
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
  last = { pem: urlEncodedPem, thumbprint };
  return thumbprint;
}

/**
 * Which proof of possession a request must give, from the token's `cnf`, the credential's
 * scheme, and the service's `binding` mode. A token that carries `cnf` is always held to it,
 * whatever the mode says: a bound token is never accepted as a bearer token. The mode only
 * limits which bindings this service accepts, and whether unbound tokens are accepted at all.
 */
export function bindingFor(claims: AccessTokenClaims, mode: BindingMode, scheme: 'Bearer' | 'DPoP'): BindingKind {
  const cnf = claims.cnf;
  if (!cnf) {
    if (scheme === 'DPoP') throw new TokenError('binding_mismatch', 'token is not DPoP-bound but was sent with the DPoP scheme');
    if (mode === 'none') return 'none';
    throw new TokenError('binding_required', 'token is not bound to a key or certificate');
  }
  if (cnf.other || (cnf.x5tS256 !== undefined) === (cnf.jkt !== undefined)) {
    throw new TokenError('binding_mismatch', 'token confirmation method is not supported');
  }
  const kind: BindingKind = cnf.x5tS256 !== undefined ? 'mtls' : 'dpop';
  // RFC 9449 §7.1: a DPoP-bound token under the Bearer scheme is refused, and the reverse.
  if ((kind === 'dpop') !== (scheme === 'DPoP')) {
    throw new TokenError('binding_mismatch', `a ${kind === 'dpop' ? 'DPoP' : 'certificate'}-bound token was sent with the ${scheme} scheme`);
  }
  if ((mode === 'mtls' && kind === 'dpop') || (mode === 'dpop' && kind === 'mtls')) {
    throw new TokenError('binding_mismatch', `this service does not accept ${kind === 'dpop' ? 'DPoP' : 'certificate'}-bound tokens`);
  }
  return kind;
}

/** RFC 8705 §3: the presented certificate's thumbprint equals cnf["x5t#S256"], compared in constant time. */
export function checkCertificate(claims: AccessTokenClaims, presented: PresentedCertificate): void {
  const bound = claims.cnf?.x5tS256;
  const message = 'token is bound to another client certificate';
  if (bound === undefined || presented === undefined || presented === 'invalid') throw new TokenError('binding_mismatch', message);
  if (!sameThumbprint(presented, bound)) throw new HolderMismatch('binding_mismatch', message, 'wrong_certificate', presented);
}

function sameThumbprint(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
