import { timingSafeEqual } from 'node:crypto';
import { StoreUnavailableError, revocationSubject, type Store } from '../store/store.js';
import type { AccessTokenVerifier } from '../token/access-token-verifier.js';
import { TokenError } from '../token/token-error.js';
import { deny, type Deny } from '../vocabulary/decision.js';
import type { MessageIncoming } from '../vocabulary/messages-config.js';
import type { VerifiedToken } from '../vocabulary/verified-token.js';
import type { MessageClaims } from './message-claim.js';

/** POST /v1/messages/check, as read from its body. */
export interface CheckInput {
  token: string;
  destination: string;
  digest: string;
  /** The broker's own redelivery flag (a publisher cannot set it). */
  redelivered: boolean;
}

export type CheckDecision = CheckAllow | CheckDeny;

export interface CheckAllow {
  allowed: true;
  token: VerifiedToken;
  destination: string;
  /** The token was accepted before: this is the broker redelivering the same message. */
  redelivered: boolean;
  cacheHit: boolean;
}

export type CheckDeny = Deny & { destination?: string };

export interface CheckDeps {
  /** Verifies message tokens (typ hopguard-msg+jwt) for this service's audience. */
  verifier: AccessTokenVerifier;
  claims: MessageClaims;
  store: Store;
  incoming: readonly MessageIncoming[];
  clockSkewMs: number;
}

/**
 * The consumer's check, top to bottom: is this a destination we consume, is the token good (a
 * message token of a trusted issuer for us, fresh), was it sealed for this destination and this
 * very message, may it do this, is it still wanted, and last (so a message that fails anything
 * else never spends its token) its first acceptance across replicas. Deny by default.
 */
export async function decideCheck(input: CheckInput, deps: CheckDeps): Promise<CheckDecision> {
  const incoming = deps.incoming.find((entry) => entry.destination === input.destination);
  if (!incoming) return deny('no_destination', 'the destination is not one this service consumes');
  const { destination } = incoming;

  let verified;
  let claim;
  try {
    verified = await deps.verifier.verify(input.token);
    claim = deps.claims.claimOf(verified.token, input.token);
  } catch (err) {
    if (err instanceof TokenError) return { ...deny(err.code, err.message), destination };
    throw err;
  }
  const { token, cacheHit } = verified;
  const context = { token, cacheHit, destination };
  if (claim.destination !== destination) return { ...deny('destination_mismatch', 'the token was sealed for another destination'), ...context };
  if (!sameDigest(claim.digest, input.digest)) return { ...deny('digest_mismatch', 'the token was sealed for another message'), ...context };
  if (incoming.scopes.some((s) => !token.scopes.has(s))) {
    return { ...deny('insufficient_scope', 'the token lacks a scope this destination requires', { scopes: incoming.scopes }), ...context };
  }

  if (deps.store.health().state === 'unavailable') return { ...deny('state_unavailable', 'revocation state is too old to trust'), ...context };
  const revoked = deps.store.findRevocation(revocationSubject(token));
  if (revoked) return { ...deny('token_revoked', `token revoked (${revoked.revocation.kind})`), ...context };

  let first: boolean;
  try {
    first = await deps.store.markUsed(token.fingerprint, token.exp * 1000 + deps.clockSkewMs);
  } catch (err) {
    if (err instanceof StoreUnavailableError) return { ...deny('state_unavailable', 'first use cannot be recorded'), ...context };
    throw err;
  }
  if (!first && !input.redelivered) return { ...deny('token_replayed', 'the message token was already accepted'), ...context };
  return { allowed: true, token, destination, redelivered: !first, cacheHit };
}

/** Both are sha-256=:…: strings of one length when well-formed; compared in constant time. */
function sameDigest(sealed: string, presented: string): boolean {
  const a = Buffer.from(sealed, 'latin1');
  const b = Buffer.from(presented, 'latin1');
  return a.length === b.length && timingSafeEqual(a, b);
}
