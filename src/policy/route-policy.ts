import type { RouteConfig } from '../vocabulary/route.js';

/** Route scopes the token lacks (all are required); empty when it has them all. */
export function missingScopes(route: RouteConfig, granted: ReadonlySet<string>): string[] {
  return route.scopes.filter((s) => !granted.has(s));
}

/** A route with no `callers` list admits any caller; otherwise the mTLS peer principal must be on it. */
export function callerAllowed(route: RouteConfig, principal: string): boolean {
  return route.callers.length === 0 || (principal !== '' && route.callers.includes(principal));
}
