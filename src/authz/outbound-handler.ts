import { decideOutbound, type OutboundDecision, type OutboundDeps } from '../egress/outbound-check.js';
import type { AuditOutbound } from '../egress/outbound-telemetry.js';
import type { StartCheckSpan } from '../telemetry/check-span.js';
import type { EgressMetrics } from '../telemetry/metrics.js';
import { internalError, type CheckHandler } from './authz-server.js';
import { outboundResponse } from './check-response.js';

/**
 * The outbound check on egress.listen, served by its own AuthzServer: the inbound listener
 * never reaches it, so an inbound check can never obtain a token. Its issuer requests are made
 * within its span, so the issuer's span and audit record join the request's trace.
 */
export function outboundHandler(deps: OutboundDeps & {
  metrics: EgressMetrics;
  startSpan: StartCheckSpan<OutboundDecision>;
  audit: AuditOutbound;
}): CheckHandler<OutboundDecision> {
  return {
    decide: (request, context) => decideOutbound(request, deps, context),
    failed: internalError,
    respond: (decision, request, traceId) => outboundResponse(decision, request, deps.egress.handleHeader, traceId),
    startSpan: deps.startSpan,
    record(decision, request, traceId, seconds) {
      deps.metrics.recordDecision(decision.allowed ? 'allowed' : decision.code, decision.destination?.audience ?? '', seconds);
      deps.audit(decision, request, traceId);
    },
  };
}
