import type { BindingKind } from './binding.js';
import type { DenyCode } from './deny-codes.js';
import type { RouteConfig } from './route.js';
import type { VerifiedToken } from './verified-token.js';

/** The outcome of one check, before it is turned into Envoy's CheckResponse. */
export type Decision = Allow | Deny;

export interface Allow {
  allowed: true;
  route: RouteConfig;
  /** Absent on public routes. */
  token?: VerifiedToken;
  binding: BindingKind;
  cacheHit: boolean;
  /** With egress on, what the application gets instead of the token (token routes only). */
  handle?: string;
  /** The content hash of the config that decided (hopguard.config.revision). */
  configRevision?: string;
  /** The request presented a leaked token (hopguard.leak): its kind; allowed only under leaks: report. */
  leak?: string;
}

export interface Deny {
  allowed: false;
  code: DenyCode;
  /** For operators (logs, spans): fixed text, never request or token data. */
  reason: string;
  route?: RouteConfig;
  token?: VerifiedToken;
  /** The scheme the credential came with: its challenge answers in the same scheme (RFC 9449 §7.1). */
  scheme?: 'Bearer' | 'DPoP';
  /** Proof algorithms, for the DPoP challenge's `algs` (RFC 9449 §7.1). */
  dpopAlgs?: readonly string[];
  /** A fresh server nonce for the client's next proof (RFC 9449 §9), sent as DPoP-Nonce. */
  dpopNonce?: string;
  /** Route scopes, on insufficient_scope (RFC 6750 §3 `scope` attribute). */
  scopes?: string[];
  /** On exchange_refused: the issuer's OAuth error (RFC 6749 §5.2), the body's `error`. */
  oauthError?: string;
  cacheHit?: boolean;
  /** On condition_failed: the name of the condition that did not hold. */
  condition?: string;
  /** The content hash of the config that decided (hopguard.config.revision). */
  configRevision?: string;
  /** The request presented a leaked token (hopguard.leak): its kind. */
  leak?: string;
}

export function deny(code: DenyCode, reason: string, extra: Omit<Deny, 'allowed' | 'code' | 'reason'> = {}): Deny {
  return { allowed: false, code, reason, ...extra };
}
