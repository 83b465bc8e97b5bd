import type { AuthzConfig } from '../config/authz-config.js';
import { RequestPathError, normalizeRequestPath } from '../policy/request-path.js';
import { callerAllowed, missingScopes } from '../policy/route-policy.js';
import type { RouteTable } from '../policy/route-table.js';
import type { Store } from '../store/store.js';
import { StoreUnavailableError } from '../store/store.js';
import type { AccessTokenVerifier } from '../token/access-token-verifier.js';
import { checkBinding, presentedCertificate } from '../token/certificate-binding.js';
import { TokenError } from '../token/token-error.js';
import { readCredential } from './credentials.js';
import { deny, type Decision } from './decision.js';
import type { HopRequest } from './hop-request.js';

export interface AuthorizeDeps {
  config: Pick<AuthzConfig, 'binding' | 'clockSkewMs'>;
  routes: RouteTable;
  verifier: AccessTokenVerifier;
  store: Store;
}

/**
 * The per-hop check, in the order a reader expects: which route, who is calling and
 * with what, is the token good, is it theirs, is it still wanted, may it do this, and
 * last (so a request that fails anything else never burns it) is this its first use.
 * Deny by default: every path that does not reach the end returns a denial.
 */
export async function authorize(request: HopRequest, deps: AuthorizeDeps): Promise<Decision> {
  let path: string;
  try {
    path = normalizeRequestPath(request.path);
  } catch (err) {
    if (err instanceof RequestPathError) return deny('malformed_request', err.message);
    throw err;
  }
  const route = deps.routes.match(request.method, path);
  if (!route) return deny('no_route', 'no route matches the method and path');

  if (route.public) return { allowed: true, route, binding: 'none', cacheHit: false };
  const credential = readCredential(request);
  if (credential.kind === 'malformed') return deny('malformed_request', credential.reason, { route });
  if (credential.kind === 'none') return deny('missing_token', 'no access token', { route });

  let verified;
  try {
    verified = await deps.verifier.verify(credential.token);
  } catch (err) {
    if (err instanceof TokenError) return deny(err.code, err.message, { route });
    throw err;
  }
  const { token, cacheHit } = verified;
  const context = { route, token, cacheHit };

  let binding;
  try {
    binding = checkBinding(token, deps.config.binding, presentedCertificate(request.certificate));
  } catch (err) {
    if (err instanceof TokenError) return deny(err.code, err.message, context);
    throw err;
  }

  const health = deps.store.health();
  if (health.state === 'unavailable') return deny('state_unavailable', 'revocation state is too old to trust', context);
  const revoked = deps.store.findRevocation({
    jtiFingerprint: token.fingerprint,
    sub: token.sub,
    clientId: token.clientId,
    iat: token.iat,
    ...(token.cnf?.x5tS256 !== undefined && { certThumbprint: token.cnf.x5tS256 }),
  });
  if (revoked) return deny('token_revoked', `token revoked (${revoked.revocation.kind})`, context);

  if (!callerAllowed(route, request.principal)) return deny('caller_not_allowed', 'caller principal is not allowed on this route', context);
  if (missingScopes(route, token.scopes).length > 0) {
    return deny('insufficient_scope', 'token lacks a required scope', { ...context, scopes: route.scopes });
  }

  if (route.oneTime) {
    let first: boolean;
    try {
      first = await deps.store.markUsed(token.fingerprint, token.exp * 1000 + deps.config.clockSkewMs);
    } catch (err) {
      if (err instanceof StoreUnavailableError) return deny('state_unavailable', 'one-time use cannot be recorded', context);
      throw err;
    }
    if (!first) return deny('token_replayed', 'one-time token already used', context);
  }

  return { allowed: true, route, token, binding, cacheHit };
}
