import { decodeCompactJws } from '../token/compact-jws.js';
import { TokenError } from '../token/token-error.js';
import { MESSAGE_DESTINATION, MESSAGE_DIGEST, type MessageClaim } from '../vocabulary/message-token.js';
import type { VerifiedToken } from '../vocabulary/verified-token.js';

/**
 * The `message` claim of verified message tokens, read once per verified token: the
 * verification cache hands out the same VerifiedToken on every hit, so a redelivered
 * message's token is not decoded again, and the claim goes when the cache entry does.
 */
export class MessageClaims {
  private readonly claims = new WeakMap<VerifiedToken, MessageClaim>();

  /** `raw`: the token `verified` was verified from (its signature already checked). */
  claimOf(verified: VerifiedToken, raw: string): MessageClaim {
    let claim = this.claims.get(verified);
    if (claim === undefined) {
      claim = readMessageClaim(decodeCompactJws(raw).payload);
      this.claims.set(verified, claim);
    }
    return claim;
  }
}

function readMessageClaim(payload: Record<string, unknown>): MessageClaim {
  const { message } = payload;
  if (typeof message !== 'object' || message === null || Array.isArray(message)) {
    throw new TokenError('malformed_token', 'token has no message claim');
  }
  const { destination, digest } = message as Record<string, unknown>;
  if (typeof destination !== 'string' || !MESSAGE_DESTINATION.test(destination)) {
    throw new TokenError('malformed_token', 'token message.destination is not a destination name');
  }
  if (typeof digest !== 'string' || !MESSAGE_DIGEST.test(digest)) throw new TokenError('malformed_token', 'token message.digest is not a SHA-256 digest');
  return { destination, digest };
}
