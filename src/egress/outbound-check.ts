import type { Context } from '@opentelemetry/api';
import { IssuerClientError } from '../issuer-client/issuer-client-error.js';
import type { IssuedToken } from '../issuer-client/issued-token.js';
import { deny, type Deny } from '../vocabulary/decision.js';
import type { EgressConfig, EgressDestination } from '../vocabulary/egress-config.js';
import type { HopRequest } from '../vocabulary/hop-request.js';
import { BAGGAGE_HEADER, readBaggageHandles } from './baggage.js';
import { matchDestination } from './destinations.js';
import type { OpenedHandles } from './opened-handles.js';
import type { OutboundToken, OutboundTokens } from './outbound-tokens.js';

/** The outcome of one outbound check, before it is turned into Envoy's CheckResponse. */
export type OutboundDecision = OutboundAllow | OutboundDeny;

/** A denial, with the destination the host matched (absent when none did, or before that was known). */
export type OutboundDeny = Deny & { destination?: EgressDestination };

export interface OutboundAllow {
  allowed: true;
  /** Absent under other_hosts: passthrough for a host no destination matches. */
  destination?: EgressDestination;
  /** What Envoy sends as `authorization: Bearer`; set with every destination. */
  token?: IssuedToken;
  /** The token came from the cache: no issuer request was waited on. */
  cacheHit: boolean;
  /** This check's own issuer request got the token (an exchange or client credentials to audit). */
  issued: boolean;
}

export interface OutboundDeps {
  egress: EgressConfig;
  handles: OpenedHandles;
  tokens: OutboundTokens;
}

/**
 * The outbound check, top to bottom: one handle header at most, which destination, the handle
 * opened (or this workload's own token where the destination allows none), then the token
 * from the issuer. Deny by default: every path that does not reach a token is a denial, but
 * for a host no destination names under other_hosts: passthrough. `context`: the check's trace,
 * which the issuer's requests join.
 */
export async function decideOutbound(request: HopRequest, deps: OutboundDeps, context?: Context): Promise<OutboundDecision> {
  const handle = readHandle(request, deps.egress);
  if (handle === TWO_HANDLES) return deny('malformed_request', 'more than one handle');

  const destination = matchDestination(deps.egress.destinations, request.host);
  if (!destination) {
    if (deps.egress.otherHosts === 'deny') return deny('no_destination', 'no destination matches the host');
    return { allowed: true, cacheHit: false, issued: false };
  }

  if (handle === undefined || handle === '') {
    if (destination.withoutHandle === 'deny') return { ...deny('handle_missing', 'the destination needs a handle'), destination };
    return fromIssuer(() => deps.tokens.own(destination, context), destination);
  }
  const opened = deps.handles.open(handle, Date.now());
  if (!opened.ok) return { ...deny('handle_invalid', `the handle is ${opened.reason.replace('_', ' ')}`), destination };
  return fromIssuer(() => deps.tokens.exchanged(opened.subject, destination, context), destination);
}

const TWO_HANDLES = Symbol('two handles');

/** The handle header, else (with handle_baggage) the baggage member; two of either is refused. */
function readHandle(request: HopRequest, egress: EgressConfig): string | undefined | typeof TWO_HANDLES {
  const header = request.headers.get(egress.handleHeader);
  // A handle is base64url: a "," is two headers joined.
  if (request.repeated.has(egress.handleHeader) || header?.includes(',')) return TWO_HANDLES;
  if (header !== undefined || !egress.handleBaggage) return header;
  const { handles } = readBaggageHandles(request.headers.get(BAGGAGE_HEADER) ?? '');
  return handles.length > 1 ? TWO_HANDLES : handles[0];
}

async function fromIssuer(obtain: () => Promise<OutboundToken>, destination: EgressDestination): Promise<OutboundDecision> {
  try {
    return { allowed: true, destination, ...await obtain() };
  } catch (err) {
    if (!(err instanceof IssuerClientError)) throw err;
    if (err.code === 'exchange_refused') {
      return { ...deny('exchange_refused', 'the issuer refused the token request', { oauthError: err.oauthError ?? 'access_denied' }), destination };
    }
    return { ...deny('issuer_unavailable', 'the issuer could not be reached'), destination };
  }
}
