/**
 * hopguard's stable deny vocabulary: each code fixes the HTTP status, the RFC 6750
 * error (if any) and the gRPC status carried in CheckResponse.status. Operators key
 * alerts and dashboards on these codes, so they never change meaning.
 */

export interface DenyCodeSpec {
  http: number;
  /** RFC 6750 §3.1 error for WWW-Authenticate; undefined when none applies. */
  bearerError?: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'use_dpop_nonce';
  /** The `error` member of the JSON body: the RFC 6750 code, else an RFC 6749 one. */
  bodyError: string;
  /** google.rpc.Code: 16 UNAUTHENTICATED for 400/401, 7 PERMISSION_DENIED otherwise (Envoy denies on any non-zero). */
  grpc: 7 | 16;
  /** Short, fixed text for error_description: never built from request data. */
  description: string;
}

const unauth = (description: string): DenyCodeSpec => ({
  http: 401, bearerError: 'invalid_token', bodyError: 'invalid_token', grpc: 16, description,
});

export const DENY_CODES = {
  missing_token: { http: 401, bodyError: 'unauthorized', grpc: 16, description: 'no access token was presented' },
  malformed_request: {
    http: 400, bearerError: 'invalid_request', bodyError: 'invalid_request', grpc: 16,
    description: 'the request carries credentials in an unsupported or ambiguous way',
  },
  malformed_token: unauth('the access token is not a well-formed signed JWT'),
  invalid_signature: unauth('the access token signature does not verify'),
  unknown_issuer: unauth('the access token issuer is not trusted'),
  unknown_key: unauth('the access token was signed with an unknown key'),
  disallowed_algorithm: unauth('the access token algorithm is not allowed'),
  wrong_token_type: unauth('the token is not an access token (typ at+jwt)'),
  token_expired: unauth('the access token has expired'),
  token_not_yet_valid: unauth('the access token is not valid yet'),
  token_lifetime_too_long: unauth('the access token lifetime exceeds the allowed maximum'),
  audience_mismatch: unauth('the access token is not meant for this service'),
  binding_required: unauth('the access token must be bound to the client certificate'),
  binding_mismatch: unauth('the access token is bound to a different client certificate'),
  dpop_invalid: {
    http: 401, bearerError: 'invalid_dpop_proof', bodyError: 'invalid_dpop_proof', grpc: 16,
    description: 'the DPoP proof is missing or invalid',
  },
  dpop_nonce_required: {
    http: 401, bearerError: 'use_dpop_nonce', bodyError: 'use_dpop_nonce', grpc: 16,
    description: 'the DPoP proof must carry the nonce in the DPoP-Nonce header',
  },
  token_revoked: unauth('the access token has been revoked'),
  token_replayed: unauth('the access token was already used on a one-time route'),
  insufficient_scope: {
    http: 403, bearerError: 'insufficient_scope', bodyError: 'insufficient_scope', grpc: 7,
    description: 'the access token lacks a scope this route requires',
  },
  caller_not_allowed: { http: 403, bodyError: 'access_denied', grpc: 7, description: 'this caller may not use this route' },
  no_route: { http: 403, bodyError: 'access_denied', grpc: 7, description: 'no route allows this request' },
  state_unavailable: {
    http: 503, bodyError: 'temporarily_unavailable', grpc: 7,
    description: 'authorization state is unavailable; try again',
  },
  // Outbound (egress.listen): the answer goes back to the application's outbound call.
  handle_missing: { http: 401, bodyError: 'unauthorized', grpc: 16, description: 'this destination needs the handle of the request being served' },
  handle_invalid: unauth('the handle was not issued by this sidecar, was altered, or has expired'),
  exchange_refused: {
    http: 403, bodyError: 'access_denied', grpc: 7,
    description: 'the issuer refused to exchange the token for this destination',
  },
  issuer_unavailable: {
    http: 503, bodyError: 'temporarily_unavailable', grpc: 7,
    description: 'the issuer could not be reached; try again',
  },
  no_destination: { http: 403, bodyError: 'access_denied', grpc: 7, description: 'this host is not a configured destination' },
  // Route conditions (`when:`, issue 15): a condition was false or could not be evaluated.
  condition_failed: { http: 403, bodyError: 'access_denied', grpc: 7, description: 'a condition of this route does not hold for this request' },
  // Messages (messages.listen, POST /v1/messages/check): the token was sealed for another message.
  digest_mismatch: unauth('the message token was sealed for a message with another digest'),
  destination_mismatch: unauth('the message token was sealed for another destination'),
  internal_error: {
    http: 500, bodyError: 'server_error', grpc: 7,
    description: 'hopguard failed to reach a decision; the request is denied',
  },
} as const satisfies Record<string, DenyCodeSpec>;

export type DenyCode = keyof typeof DENY_CODES;

/** The codes only the outbound check (egress.listen) answers. */
export const OUTBOUND_DENY_CODES: readonly DenyCode[] = ['handle_missing', 'handle_invalid', 'exchange_refused', 'issuer_unavailable', 'no_destination'];

/** The codes only the message check (messages.listen) answers; it answers no_destination too. */
export const MESSAGE_DENY_CODES: readonly DenyCode[] = ['digest_mismatch', 'destination_mismatch'];
