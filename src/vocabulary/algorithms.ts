// Signature algorithm names: what configs allow and verifiers accept.

/** Algorithms an issuer may be allowed. `none` and HS* are never accepted (RFC 8725 §3.1, §3.2). */
export const ASYMMETRIC_ALGORITHMS = [
  'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
] as const;

export type Algorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];
