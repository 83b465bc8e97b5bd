import type { IssuerClient } from '../config/issuer-config.js';
import { OAuthError } from './oauth-error.js';

/** The rules of POST /token that need no keys and no state: pure functions of the client and the request. */

export function allowGrant(client: IssuerClient, grant: IssuerClient['grants'][number]): void {
  if (!client.grants.includes(grant)) throw new OAuthError('unauthorized_client', `this client may not use the ${grant} grant`);
}

/**
 * RFC 8707 `resource` or RFC 8693 `audience`: exactly one, and one the client may have
 * (`allowed`: its message_audiences for a message token).
 */
export function target(client: IssuerClient, params: Map<string, string>, allowed: readonly string[] = client.audiences): string {
  const audience = params.get('audience');
  const resource = params.get('resource');
  if (audience !== undefined && resource !== undefined && audience !== resource) {
    throw new OAuthError('invalid_target', 'audience and resource name different services: one audience per token');
  }
  const wanted = audience ?? resource;
  if (wanted === undefined) throw new OAuthError('invalid_request', 'audience (or resource) is required');
  if (!allowed.includes(wanted)) throw new OAuthError('invalid_target', 'this client may not have tokens for that audience');
  return wanted;
}

/** The requested scopes, each one allowed; all allowed ones when none are requested. */
export function narrowScope(requested: string | undefined, allowed: readonly string[]): string {
  if (requested === undefined) return allowed.join(' ');
  const scopes = requested.split(' ').filter((s) => s !== '');
  if (scopes.some((s) => !allowed.includes(s))) throw new OAuthError('invalid_scope', 'a requested scope is not available to this client here');
  return [...new Set(scopes)].join(' ');
}
