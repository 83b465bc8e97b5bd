/**
 * What a `when:` condition sees: `request`, `token`, `now` and `data`, as the design names
 * them. Built only for routes that have conditions. The parts a condition may not need (the
 * query, the headers) are built when first read; a token's view is built once per verified
 * token, so a verification-cache hit reuses it.
 */

import type { HopRequest } from '../vocabulary/hop-request.js';
import type { ConditionVariables, PolicyData } from '../vocabulary/route-condition.js';
import type { VerifiedToken } from '../vocabulary/verified-token.js';

/** Never shown to a condition: the credential itself. */
const HIDDEN_HEADERS = new Set(['authorization']);

const tokenViews = new WeakMap<VerifiedToken, Readonly<Record<string, unknown>>>();

export function conditionVariables(request: HopRequest, path: string, token: VerifiedToken, data: PolicyData, nowMs: number): ConditionVariables {
  return { request: requestView(request, path), token: tokenView(token), now: new Date(nowMs), data };
}

/** `path` is the normalized path the route matched, without the query. */
function requestView(request: HopRequest, path: string): Readonly<Record<string, unknown>> {
  let query: Map<string, string> | undefined;
  let headers: Map<string, string> | undefined;
  return {
    method: request.method,
    path,
    host: request.host,
    get query() {
      return (query ??= queryOf(request.path));
    },
    get headers() {
      return (headers ??= visibleHeaders(request.headers));
    },
    source: { address: request.sourceAddress, principal: request.principal },
  };
}

function visibleHeaders(all: ReadonlyMap<string, string>): Map<string, string> {
  const visible = new Map<string, string>();
  for (const [name, value] of all) if (!HIDDEN_HEADERS.has(name)) visible.set(name, value);
  return visible;
}

/** The query's parameters, decoded; a name sent more than once has its values joined with "," as headers are. */
function queryOf(target: string): Map<string, string> {
  const query = new Map<string, string>();
  const start = target.indexOf('?');
  if (start === -1) return query;
  const end = target.indexOf('#', start);
  for (const [name, value] of new URLSearchParams(target.slice(start + 1, end === -1 ? undefined : end))) {
    const previous = query.get(name);
    query.set(name, previous === undefined ? value : `${previous},${value}`);
  }
  return query;
}

function tokenView(token: VerifiedToken): Readonly<Record<string, unknown>> {
  let view = tokenViews.get(token);
  if (!view) {
    view = Object.freeze({
      iss: token.iss,
      sub: token.sub,
      client_id: token.clientId,
      aud: token.aud,
      scopes: [...token.scopes],
      jti: token.jti,
      iat: token.iat,
      exp: token.exp,
      ...(token.act !== undefined && { act: token.act }),
      claims: token.claims,
    });
    tokenViews.set(token, view);
  }
  return view;
}
