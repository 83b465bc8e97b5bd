import { BAGGAGE_HEADER, baggageWithHandle, baggageWithoutHandle, readBaggageHandles } from '../egress/baggage.js';
import type { OutboundAllow, OutboundDecision } from '../egress/outbound-check.js';
import type { IssuedToken } from '../issuer-client/issued-token.js';
import type { Allow, Decision, Deny } from '../vocabulary/decision.js';
import { DENY_CODES } from '../vocabulary/deny-codes.js';
import type { EgressConfig, EgressDestination } from '../vocabulary/egress-config.js';
import type { HopRequest } from '../vocabulary/hop-request.js';
import { IDENTITY_HEADERS, IDENTITY_PREFIX } from '../vocabulary/identity-headers.js';
import type { RouteConfig } from '../vocabulary/route.js';
import type { VerifiedToken } from '../vocabulary/verified-token.js';
import { encodeCheckResponseMessage, type CheckResponseMessage, type HeaderValueOption, type Struct, type StructValue } from './check-response-encoder.js';

/**
 * Decision → envoy.service.auth.v3.CheckResponse, as plain objects in the official messages'
 * shape (proto-loader's, keepCase), encoded by check-response-encoder.
 */

const REALM = 'hopguard';

// Current Envoy's default append_action appends: a client's forged x-hopguard-subject would
// survive beside ours. Overwrite explicitly; `append: false` for Envoys before append_action.
function setHeader(key: string, value: string): HeaderValueOption {
  return { header: { key, value }, append: { value: false }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' };
}

/** The service's response serializer: a Buffer is a response encoded before (see below). */
export function encodeCheckResponse(response: CheckResponseMessage | Buffer): Buffer {
  return Buffer.isBuffer(response) ? response : encodeCheckResponseMessage(response);
}

/**
 * An allow depends on the route, the token and the binding, and on the request only through
 * stray x-hopguard-* headers. So for a token the verification cache already knew, on a request
 * without such headers, the allow is encoded once and its bytes are sent again: a cache hit
 * allocates no response objects. Kept with the cached token, so it goes when the token does.
 */
const encodedAllows = new WeakMap<VerifiedToken, { route: RouteConfig; binding: Allow['binding']; bytes: Buffer }>();

/** Where inbound allows put the handle, when egress is on. */
export type HandleCarriers = Pick<EgressConfig, 'handleHeader' | 'handleBaggage'>;

/** `handles`: set when egress is on; an allow then sets the handle (token routes) or removes it. */
export function checkResponse(decision: Decision, request: HopRequest, traceId: string, handles?: HandleCarriers): CheckResponseMessage | Buffer {
  if (!decision.allowed) return denyResponse(decision, traceId);
  const { token } = decision;
  if (!token || !decision.cacheHit || hasIdentityHeader(request) || (handles?.handleBaggage && request.headers.has(BAGGAGE_HEADER))) {
    return allowResponse(decision, request, handles);
  }
  const known = encodedAllows.get(token);
  if (known && known.route === decision.route && known.binding === decision.binding) return known.bytes;
  const bytes = encodeCheckResponseMessage(allowResponse(decision, request, handles));
  encodedAllows.set(token, { route: decision.route, binding: decision.binding, bytes });
  return bytes;
}

function hasIdentityHeader(request: HopRequest): boolean {
  for (const name of request.headers.keys()) if (name.startsWith(IDENTITY_PREFIX)) return true;
  return false;
}

function allowResponse(decision: Allow, request: HopRequest, handles: HandleCarriers | undefined): CheckResponseMessage {
  const { route, token, handle } = decision;
  const set = [];
  const remove: string[] = [];
  if (!route.forwardToken) remove.push('authorization');
  if (token) {
    set.push(
      setHeader(IDENTITY_HEADERS.subject, token.sub),
      setHeader(IDENTITY_HEADERS.clientId, token.clientId),
      setHeader(IDENTITY_HEADERS.tokenId, token.jti),
    );
    // An empty value would be dropped, not overwritten, by Envoy: remove the header instead.
    if (token.scope !== '') set.push(setHeader(IDENTITY_HEADERS.scope, token.scope));
  }
  const handleHeader = handles?.handleHeader;
  if (handles !== undefined) {
    // Overwritten, never also removed: Envoy applies headers_to_remove after the headers it sets.
    if (handle !== undefined) set.push(setHeader(handles.handleHeader, handle));
    // A DPoP proof is a JWT too: with egress, the application holds none.
    remove.push('dpop');
    if (handles.handleBaggage) handleInBaggage(request.headers.get(BAGGAGE_HEADER), handle, set, remove);
  }
  const ours = new Set(set.map((h) => h.header.key));
  for (const name of request.headers.keys()) {
    if ((name.startsWith(IDENTITY_PREFIX) || name === handleHeader) && !ours.has(name)) remove.push(name);
  }
  return {
    status: { code: 0 },
    ok_response: { headers: set, headers_to_remove: remove },
    dynamic_metadata: struct({
      decision: 'allow',
      route: route.name,
      binding: decision.binding,
      ...(token && {
        iss: token.iss,
        sub: token.sub,
        client_id: token.clientId,
        scope: token.scope,
        jti: token.jti,
        ...(token.act && { act: token.act }),
      }),
    }),
  };
}

/**
 * `baggage` with our handle as its one `hopguard-handle` member, the application's others kept;
 * without a handle (public routes), a client's `hopguard-handle` members are taken out.
 */
function handleInBaggage(baggage: string | undefined, handle: string | undefined, set: HeaderValueOption[], remove: string[]) {
  if (handle !== undefined) {
    set.push(setHeader(BAGGAGE_HEADER, baggageWithHandle(readBaggageHandles(baggage ?? '').rest, handle)));
    return;
  }
  stripHandleFromBaggage(baggage, set, remove);
}

function stripHandleFromBaggage(baggage: string | undefined, set: HeaderValueOption[], remove: string[]) {
  const change = baggageWithoutHandle(baggage);
  if (change === undefined) return;
  if ('set' in change) set.push(setHeader(BAGGAGE_HEADER, change.set));
  else remove.push(BAGGAGE_HEADER);
}

/**
 * An outbound check's answer: on allow, `authorization: Bearer` for a destination (overwriting
 * whatever the application set) and the handle header removed, whatever the host: it never
 * leaves the pod, nor does a `hopguard-handle` member of `baggage`. The token is set, never
 * also removed (Envoy removes after it sets).
 */
export function outboundResponse(decision: OutboundDecision, request: HopRequest, handleHeader: string, traceId: string): CheckResponseMessage | Buffer {
  if (!decision.allowed) return denyResponse(decision, traceId);
  const { destination, token } = decision;
  // Without baggage to rewrite, an allow depends only on the token and its destination: as an
  // inbound cache hit's, it is encoded once and its bytes sent again while the token is cached.
  if (!token || !destination || destination.perRequest || request.headers.has(BAGGAGE_HEADER)) return outboundAllow(decision, request, handleHeader);
  const known = encodedOutboundAllows.get(token);
  if (known && known.destination === destination && known.handleHeader === handleHeader) return known.bytes;
  const bytes = encodeCheckResponseMessage(outboundAllow(decision, request, handleHeader));
  encodedOutboundAllows.set(token, { destination, handleHeader, bytes });
  return bytes;
}

const encodedOutboundAllows = new WeakMap<IssuedToken, { destination: EgressDestination; handleHeader: string; bytes: Buffer }>();

function outboundAllow(decision: OutboundAllow, request: HopRequest, handleHeader: string): CheckResponseMessage {
  const { destination, token } = decision;
  const set = token ? [setHeader('authorization', `Bearer ${token.accessToken}`)] : [];
  const remove = [handleHeader];
  stripHandleFromBaggage(request.headers.get(BAGGAGE_HEADER), set, remove);
  return {
    status: { code: 0 },
    ok_response: { headers: set, headers_to_remove: remove },
    dynamic_metadata: struct({
      decision: 'allow',
      ...(destination && { destination: destination.host, audience: destination.audience }),
    }),
  };
}

function denyResponse(decision: Deny, traceId: string): CheckResponseMessage {
  const spec = DENY_CODES[decision.code];
  const headers = [
    setHeader('content-type', 'application/json'),
    setHeader('cache-control', 'no-store'),
  ];
  const challenge = wwwAuthenticate(decision);
  if (challenge) headers.push(setHeader('www-authenticate', challenge));
  if (decision.dpopNonce) headers.push(setHeader('dpop-nonce', decision.dpopNonce));
  return {
    status: { code: spec.grpc, message: decision.code },
    denied_response: {
      status: { code: spec.http },
      headers,
      // A failed condition is named (config text), never what it read.
      body: JSON.stringify({
        error: decision.oauthError ?? spec.bodyError, code: decision.code, ...(decision.condition !== undefined && { condition: decision.condition }), trace_id: traceId,
      }),
    },
    dynamic_metadata: struct({
      decision: 'deny', code: decision.code, ...(decision.route && { route: decision.route.name }),
      ...(decision.condition !== undefined && { condition: decision.condition }),
    }),
  };
}

/**
 * RFC 6750 §3: no error attribute when no credentials were sent; `scope` on
 * insufficient_scope. RFC 9449 §7.1: a DPoP request is answered in the DPoP scheme, with `algs`.
 */
function wwwAuthenticate(decision: Deny): string | undefined {
  const spec = DENY_CODES[decision.code];
  const dpop = decision.scheme === 'DPoP';
  const scheme = dpop ? `DPoP realm="${REALM}", algs="${(decision.dpopAlgs ?? []).join(' ')}"` : `Bearer realm="${REALM}"`;
  // No credential sent: no error attribute (§3.1).
  if (decision.code === 'missing_token' || decision.code === 'handle_missing') return scheme;
  if (!('bearerError' in spec)) return undefined;
  let challenge = `${scheme}, error="${spec.bearerError}", error_description="${spec.description}"`;
  if (decision.scopes) challenge += `, scope="${decision.scopes.join(' ')}"`;
  return challenge;
}

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/**
 * JSON → google.protobuf.Struct. protobufjs defines the well-known types itself, with
 * camelCase field names even under keepCase: `stringValue`, not `string_value`.
 */
function struct(object: Record<string, unknown>): Struct {
  const fields: Record<string, StructValue> = {};
  // for…in visits what Object.entries would here (own keys of a plain object), without an array per member.
  for (const key in object) {
    const value = object[key];
    if (value !== undefined) fields[key] = protoValue(value as Json);
  }
  return { fields };
}

function protoValue(value: Json): StructValue {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(protoValue) } };
  return { structValue: struct(value) };
}
