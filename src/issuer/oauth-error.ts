/**
 * An OAuth error response (RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 8707 §2, RFC 7009 §2.2.1).
 * `description` is fixed text for the client: never a token, a claim or key material.
 */
export class OAuthError extends Error {
  constructor(
    readonly error:
      | 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unauthorized_client' | 'unsupported_grant_type'
      | 'invalid_scope' | 'invalid_target' | 'unsupported_token_type' | 'slow_down' | 'temporarily_unavailable' | 'access_denied'
      | 'invalid_dpop_proof',
    readonly description: string,
    readonly status = error === 'invalid_client' ? 401 : 400,
  ) {
    super(description);
    this.name = 'OAuthError';
  }
}
