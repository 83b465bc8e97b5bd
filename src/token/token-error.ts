import type { DenyCode } from '../vocabulary/deny-codes.js';

/** A token was refused. `code` is a stable deny code; `message` never contains token data. */
export class TokenError extends Error {
  constructor(readonly code: DenyCode, message: string) {
    super(message);
    this.name = 'TokenError';
  }
}

/**
 * A valid token presented by someone who showed a different holder than the one it is bound to:
 * another certificate, or a valid DPoP proof by another key. `presented` is that holder's
 * thumbprint (x5t#S256 or jkt), public; what signals/leak-response.ts reports a leak with.
 */
export class HolderMismatch extends TokenError {
  constructor(
    code: 'binding_mismatch' | 'dpop_invalid', message: string,
    readonly leak: 'wrong_certificate' | 'wrong_dpop_key', readonly presented: string,
  ) {
    super(code, message);
  }
}
