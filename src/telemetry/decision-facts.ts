import type { Decision } from '../vocabulary/decision.js';
import type { HopRequest } from '../vocabulary/hop-request.js';

/**
 * What one check decided, as spans and audit records show it: names, identifiers and the
 * token's fingerprint (SHA-256 of iss and jti), never the token, its signature or claims
 * beyond these.
 */
export interface DecisionFacts {
  decision: 'allow' | 'deny';
  code?: string;
  route?: string;
  issuer?: string;
  subject?: string;
  client?: string;
  /** The mTLS peer identity Envoy saw (source.principal). */
  caller?: string;
  tokenFingerprint?: string;
  /** How possession was proved on an allow; on a deny, what the token is bound to. */
  binding: 'mtls' | 'dpop' | 'none';
  cacheHit: boolean;
  requestId?: string;
  /** On condition_failed: the condition's name. */
  condition?: string;
  /** The content hash of the config that decided. */
  configRevision?: string;
  /** The kind of leak the request showed (signals/leak-response.ts). */
  leak?: string;
}

// Envoy's x-request-id is a UUID. Anything else is client text, and could be a token pasted
// there: a compact JWS has dots and is longer than this, so it never passes.
const REQUEST_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function decisionFacts(decision: Decision, request: HopRequest): DecisionFacts {
  const { token } = decision;
  const requestId = request.headers.get('x-request-id');
  return {
    decision: decision.allowed ? 'allow' : 'deny',
    ...(!decision.allowed && { code: decision.code }),
    ...(!decision.allowed && decision.condition !== undefined && { condition: decision.condition }),
    ...(decision.route && { route: decision.route.name }),
    ...(token && { issuer: token.iss, subject: token.sub, client: token.clientId, tokenFingerprint: token.fingerprint }),
    ...(request.principal !== '' && { caller: request.principal }),
    binding: decision.allowed ? decision.binding : token?.cnf?.x5tS256 ? 'mtls' : token?.cnf?.jkt ? 'dpop' : 'none',
    cacheHit: decision.cacheHit ?? false,
    ...(requestId !== undefined && REQUEST_ID.test(requestId) && { requestId }),
    ...(decision.configRevision !== undefined && { configRevision: decision.configRevision }),
    ...(decision.leak !== undefined && { leak: decision.leak }),
  };
}
