// A token hopguard verified: the claims it acts on, typed and checked.

/** The claims hopguard acts on, typed and checked. Built only from a verified payload. */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  clientId: string;
  jti: string;
  /** Audiences as sent: `aud` as a string becomes a one-element list. */
  aud: string[];
  /** Epoch seconds. */
  iat: number;
  exp: number;
  nbf?: number;
  /** The `scope` claim, and its space-delimited tokens. */
  scope: string;
  scopes: ReadonlySet<string>;
  /** cnf["x5t#S256"] (RFC 8705) and cnf.jkt (RFC 9449); `cnfOther` for any other confirmation member. */
  cnf?: { x5tS256?: string; jkt?: string; other: boolean };
  /** RFC 8693 actor chain, as sent (checked to be an object). */
  act?: Record<string, unknown>;
}
export interface VerifiedToken extends AccessTokenClaims {
  /** base64url(SHA-256(iss, jti)): names the token in stores, spans and audit, never the token itself. */
  fingerprint: string;
  /** The header's kid: which of the issuer's keys signed it, for key revocations. */
  kid?: string;
  /** Every claim of the verified payload, for `when:` conditions (`token.claims`); never logged or shown. */
  claims: Readonly<Record<string, unknown>>;
}
