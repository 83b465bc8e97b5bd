import type { DenyCode } from '../vocabulary/deny-codes.js';

/** A token was refused. `code` is a stable deny code; `message` never contains token data. */
export class TokenError extends Error {
  constructor(readonly code: DenyCode, message: string) {
    super(message);
    this.name = 'TokenError';
  }
}
