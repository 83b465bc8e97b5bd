import type { AuthzConfig } from '../config/authz-config.js';
import type { InboundHandles } from '../egress/inbound-handles.js';
import { RequestPathError, normalizeRequestPath } from '../policy/request-path.js';
import { conditionVariables } from '../policy/condition-variables.js';
import { failedCondition } from '../policy/route-conditions.js';
import { callerAllowed, missingScopes } from '../policy/route-policy.js';
import type { RouteTable } from '../policy/route-table.js';
import { StoreUnavailableError, revocationSubject } from '../store/store.js';
import type { HeldUses, Store } from '../store/store.js';
import { fingerprint, type AccessTokenVerifier } from '../token/access-token-verifier.js';
import type { DpopNonces } from '../token/dpop-nonce.js';
import { normalizeHtu, verifyDpopProof } from '../token/dpop-proof.js';
import { bindingFor, checkCertificate, presentedCertificate } from '../token/token-binding.js';
import { HolderMismatch, TokenError } from '../token/token-error.js';
import type { LeakResponse } from '../signals/leak-response.js';
import { deny, type Decision } from '../vocabulary/decision.js';
import type { HopRequest } from '../vocabulary/hop-request.js';
import type { PolicyData } from '../vocabulary/route-condition.js';
import type { VerifiedToken } from '../vocabulary/verified-token.js';
import { readCredential, type Credential } from './credentials.js';

export interface AuthorizeDeps {
  config: Pick<AuthzConfig, 'binding' | 'clockSkewMs' | 'dpop'>;
  routes: RouteTable;
  verifier: AccessTokenVerifier;
  store: Store;
  /** Set when the service hands out DPoP nonces (dpop.nonce): every proof must carry a valid one. */
  dpopNonces?: DpopNonces;
  /** Leaked-token response (`leaks:`); none in tests that do not look for leaks. */
  leaks?: LeakResponse;
  /** Set with egress: an allow carries the token's handle. */
  handles?: InboundHandles;
  /** The `data:` files conditions read; none when absent. */
  data?: PolicyData;
  /** The content hash of the config these deps were built from: every decision carries it. */
  revision?: string;
}

const NO_DATA: PolicyData = Object.freeze({});

/**
 * The per-hop check, in the order a reader expects: which route, who is calling and
 * with what, is the token good, is it theirs, is it still wanted, may it do this, and
 * last (so a request that fails anything else never burns it) is this its first use.
 * Deny by default: every path that does not reach the end returns a denial.
 */
export async function authorize(request: HopRequest, deps: AuthorizeDeps): Promise<Decision> {
  // A use recorded (a DPoP proof's, say) by a check that is denied after all is given back.
  const held: HeldUses = [];
  let decision: Decision | undefined;
  try {
    decision = await decide(request, deps, held);
    if (deps.revision !== undefined) decision.configRevision = deps.revision;
    return decision;
  } finally {
    if (!decision?.allowed) for (const release of held) release();
  }
}

async function decide(request: HopRequest, deps: AuthorizeDeps, held: HeldUses): Promise<Decision> {
  let route;
  let path;
  try {
    path = normalizeRequestPath(request.path);
    route = deps.routes.match(request.method, path);
  } catch (err) {
    if (err instanceof RequestPathError) return deny('malformed_request', err.message);
    throw err;
  }
  if (!route) return deny('no_route', 'no route matches the method and path');

  if (route.public) return { allowed: true, route, binding: 'none', cacheHit: false };
  const credential = readCredential(request, (token) => deps.verifier.isCached(token));
  const dpopChallenge = { dpopAlgs: deps.config.dpop.algorithms };
  if (credential.kind === 'malformed') return deny('malformed_request', credential.reason, { route });
  if (credential.kind === 'none') {
    return deny('missing_token', 'no access token', { route, ...(deps.config.binding === 'dpop' && { scheme: 'DPoP', ...dpopChallenge }) });
  }
  const scheme = credential.kind === 'dpop' ? 'DPoP' : 'Bearer';
  const schemeContext = { scheme, ...(scheme === 'DPoP' && dpopChallenge) } as const;

  let verified;
  try {
    verified = await deps.verifier.verify(credential.token);
  } catch (err) {
    if (err instanceof TokenError) return deny(err.code, err.message, { route, ...schemeContext });
    throw err;
  }
  const { token, cacheHit } = verified;
  const context = { route, token, cacheHit, ...schemeContext };

  let binding;
  try {
    binding = bindingFor(token, deps.config.binding, scheme);
    if (binding === 'mtls') checkCertificate(token, presentedCertificate(request.certificate));
    if (binding === 'dpop' && credential.kind === 'dpop') await checkDpopProof(request, credential, token, deps, held);
  } catch (err) {
    // A valid token shown with another holder's certificate or DPoP key: it left its holder.
    const leak = err instanceof HolderMismatch && deps.leaks
      && await deps.leaks.leaked(token, { kind: err.leak, caller: request.principal, presented: err.presented }, { route: route.name, code: err.code }) !== 'none'
      ? { leak: err.leak } : {};
    if (err instanceof TokenError) {
      // RFC 9449 §9: tell the client the nonce to use in its next proof.
      const nonce = err.code === 'dpop_nonce_required' ? { dpopNonce: deps.dpopNonces!.issue(Date.now()) } : {};
      return deny(err.code, err.message, { ...context, ...nonce, ...leak });
    }
    if (err instanceof StoreUnavailableError) return deny('state_unavailable', 'DPoP proof replay cannot be checked', context);
    throw err;
  }

  const health = deps.store.health();
  if (health.state === 'unavailable') return deny('state_unavailable', 'revocation state is too old to trust', context);
  const revoked = deps.store.findRevocation(revocationSubject(token));
  if (revoked) return deny('token_revoked', `token revoked (${revoked.revocation.kind})`, context);
  // A bound token's certificate or DPoP proof already shows its sender is the holder; a bearer token shows nothing.
  let leak: 'two_callers' | undefined;
  if (deps.leaks && binding === 'none') {
    const other = deps.leaks.otherCaller(token, request.principal);
    const outcome = other === undefined ? 'none'
      : await deps.leaks.leaked(token, { kind: 'two_callers', caller: request.principal, otherCaller: other }, { route: route.name });
    if (outcome === 'revoked') return deny('token_revoked', 'token revoked (presented by two callers)', { ...context, leak: 'two_callers' });
    if (outcome === 'reported') leak = 'two_callers';
  }

  if (!callerAllowed(route, request.principal)) return deny('caller_not_allowed', 'caller principal is not allowed on this route', context);
  if (missingScopes(route, token.scopes).length > 0) {
    return deny('insufficient_scope', 'token lacks a required scope', { ...context, scopes: route.scopes });
  }
  // After scopes and callers: a condition is the finest rule, and may read what they admitted.
  if (route.conditions) {
    const failed = failedCondition(route.conditions, conditionVariables(request, path, token, deps.data ?? NO_DATA, Date.now()));
    if (failed !== undefined) return deny('condition_failed', 'a route condition does not hold', { ...context, condition: failed });
  }

  if (route.oneTime) {
    let first: boolean;
    try {
      first = await deps.store.markUsed(token.fingerprint, token.exp * 1000 + deps.config.clockSkewMs, held);
    } catch (err) {
      if (err instanceof StoreUnavailableError) return deny('state_unavailable', 'one-time use cannot be recorded', context);
      throw err;
    }
    if (!first) return deny('token_replayed', 'one-time token already used', context);
  }

  const handle = deps.handles?.handleFor(token, credential.token);
  return { allowed: true, route, token, binding, cacheHit, ...(handle !== undefined && { handle }), ...(leak && { leak }) };
}

/**
 * RFC 9449 §7.1: the one DPoP header is a valid proof for this request, this token and the
 * token's key, and its jti was never seen before (remembered across replicas in the store).
 */
async function checkDpopProof(
  request: HopRequest,
  credential: Extract<Credential, { kind: 'dpop' }>,
  token: VerifiedToken,
  deps: AuthorizeDeps,
  held: HeldUses,
): Promise<void> {
  if (credential.proof === undefined) throw new TokenError('dpop_invalid', 'exactly one DPoP header with one proof is required');
  const htu = normalizeHtu(`${request.scheme || 'https'}://${request.host}${request.path}`);
  if (htu === undefined) throw new TokenError('dpop_invalid', 'the request URI cannot be compared with htu');
  const now = Date.now();
  const { maxAgeMs, algorithms } = deps.config.dpop;
  const proof = await verifyDpopProof(credential.proof, {
    method: request.method, htu, accessToken: credential.token, jkt: token.cnf!.jkt!, algorithms,
    now, maxAgeMs, skewMs: deps.config.clockSkewMs,
  });
  if (deps.dpopNonces && !deps.dpopNonces.valid(proof.nonce, now)) {
    throw new TokenError('dpop_nonce_required', 'the DPoP proof lacks a current server nonce');
  }
  // Keyed by the token's key and the proof's jti: a proof is good for one request, anywhere in the mesh.
  const first = await deps.store.markUsed(
    fingerprint(`dpop:${token.cnf!.jkt}`, proof.jti),
    proof.iat * 1000 + maxAgeMs + 2 * deps.config.clockSkewMs,
    held,
  );
  if (!first) throw new TokenError('dpop_invalid', 'the DPoP proof was already used');
}
