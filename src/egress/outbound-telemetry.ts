import type { Attributes } from '@opentelemetry/api';
import type { AuditRecorder } from '../audit/audit-log.js';
import { decisionSpans, type StartCheckSpan } from '../telemetry/check-span.js';
import type { Tracing } from '../telemetry/tracing.js';
import type { HopRequest } from '../vocabulary/hop-request.js';
import { hostOf } from './destinations.js';
import type { OutboundDecision } from './outbound-check.js';

/**
 * What spans, metrics and audit records show of an outbound check: the destination, its
 * audience, the code and whether the cache had the token. Never the token nor the handle.
 */
export interface OutboundFacts {
  decision: 'allow' | 'deny';
  /** `allowed` on an allow, as the decisions metric counts it. */
  code: string;
  /** The configured destination host (`*.suffix` as written) the host matched. */
  destination?: string;
  audience?: string;
  /** The host called, when it looks like a host name or an address (see hostLike). */
  host?: string;
  cacheHit: boolean;
}

// DNS labels are at most 63 characters; a token's or a handle's segments are longer, so text an
// application put in :authority that could be one never reaches a span.
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*$/;
const IPV6 = /^[0-9a-f:.]{2,45}$/;

export function outboundFacts(decision: OutboundDecision, request: HopRequest): OutboundFacts {
  const host = hostOf(request.host);
  return {
    decision: decision.allowed ? 'allow' : 'deny',
    code: decision.allowed ? 'allowed' : decision.code,
    ...(decision.destination && { destination: decision.destination.host, audience: decision.destination.audience }),
    ...((HOST_NAME.test(host) || IPV6.test(host)) && { host }),
    cacheHit: decision.cacheHit ?? false,
  };
}

/** A `hopguard.egress` SERVER span per outbound check, joined to the request's trace as `hopguard.check` is. */
export function outboundSpans(tracing: Tracing): StartCheckSpan<OutboundDecision> {
  return decisionSpans(tracing, 'hopguard.egress', (decision, request) => spanAttributes(outboundFacts(decision, request)));
}

function spanAttributes(facts: OutboundFacts): Attributes {
  return {
    'hopguard.decision': facts.decision,
    'hopguard.deny_code': facts.decision === 'deny' ? facts.code : undefined,
    'hopguard.destination': facts.destination,
    'hopguard.audience': facts.audience,
    'server.address': facts.host,
    'hopguard.cache_hit': facts.cacheHit,
  };
}

export type AuditOutbound = (decision: OutboundDecision, request: HopRequest, traceId: string) => void;

/**
 * Every outbound denial, and every allow whose token this check obtained from the issuer (an
 * exchange, or this workload's own token): a token handed out from the cache was audited when
 * it was obtained. With the audit log off, nothing.
 */
export function outboundAudit(audit: AuditRecorder, enabled: boolean): AuditOutbound {
  if (!enabled) return () => undefined;
  return (decision, request, traceId) => {
    if (decision.allowed && !decision.issued) return;
    const { decision: outcome, code, destination, audience } = outboundFacts(decision, request);
    audit.record({ event: 'egress', decision: outcome, ...(outcome === 'deny' && { code }), destination, audience, traceId });
  };
}
