import { decideOutbound, type OutboundDecision, type OutboundDeps } from '../egress/outbound-check.js';
import { incomingTraceId } from '../telemetry/check-span.js';
import { internalError, type CheckHandler } from './authz-server.js';
import { outboundResponse } from './check-response.js';

/**
 * The outbound check on egress.listen, served by its own AuthzServer: the inbound listener
 * never reaches it, so an inbound check can never obtain a token. Its denials name their trace;
 * spans, metrics and audit of outbound checks are not recorded yet.
 */
export function outboundHandler(deps: OutboundDeps): CheckHandler<OutboundDecision> {
  return {
    decide: (request) => decideOutbound(request, deps),
    failed: internalError,
    respond: (decision, request, traceId) => outboundResponse(decision, request, deps.egress.handleHeader, traceId),
    startSpan: (metadata, request) => ({ traceId: incomingTraceId(metadata, request), end: () => undefined }),
    record: () => undefined,
  };
}
