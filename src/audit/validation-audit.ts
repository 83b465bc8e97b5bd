import { decisionFacts } from '../telemetry/decision-facts.js';
import type { Decision } from '../vocabulary/decision.js';
import type { HopRequest } from '../vocabulary/hop-request.js';
import type { AuditConfig } from './audit-config.js';
import type { AuditRecorder } from './audit-log.js';

/** Records one check's decision in the audit log, if the policy wants it. */
export type AuditCheck = (decision: Decision, request: HopRequest, traceId: string) => void;

/**
 * Every denial is recorded; allows as `audit.allows` says. Sampling is by trace id, so
 * every hop of a sampled request is audited, not a different random few at each hop.
 */
export function validationAudit(audit: AuditRecorder, config: AuditConfig, audience: string): AuditCheck {
  if (!config.output) return () => undefined;
  const keepAllow = allowPolicy(config);
  return (decision, request, traceId) => {
    if (decision.allowed && !keepAllow(traceId)) return;
    const { binding: _binding, cacheHit: _cacheHit, requestId: _requestId, ...facts } = decisionFacts(decision, request);
    audit.record({ event: 'validation', ...facts, audience, traceId });
  };
}

export function allowPolicy(config: AuditConfig): (traceId: string) => boolean {
  if (config.allows === 'all') return () => true;
  if (config.allows === 'none') return () => false;
  // The trace id's last 32 bits, read as a fraction of 2^32 (W3C trace ids are random there).
  const threshold = config.allowSampleRate * 2 ** 32;
  return (traceId) => Number.parseInt(traceId.slice(-8), 16) < threshold;
}
