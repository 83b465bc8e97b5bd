import type { Meter } from '@opentelemetry/api';

/**
 * The issuer's instruments, on its admin listener's /metrics beside the process's telemetry
 * (Prometheus names in the README). Every label comes from a small fixed set (grant, OAuth error
 * code, event type name), never from a client: a flood of made-up values adds no series.
 */
export interface IssuerMetrics {
  /** One per /token answer: `event` issuance, exchange or refresh; `outcome` ok or the OAuth error. */
  recordToken(event: 'issuance' | 'exchange' | 'refresh', outcome: string): void;
  /** One per /revoke answer, and one per revocation a security event or a refresh-token reuse caused. */
  recordRevocation(source: 'revoke' | 'refresh_reuse' | 'security_event', outcome: string): void;
  /** A refresh token presented a second time: its family was revoked. */
  recordRefreshReuse(): void;
  /** A /token request refused with 429 before its body was read. */
  recordRateLimited(): void;
  /** One per event of a SET received at /ssf/events (`event` `unverified` for a SET refused before its events could be read). */
  recordSecurityEvent(event: string, outcome: string): void;
  /** A new signing key started signing. */
  recordKeyRotation(): void;
}

export function createIssuerMetrics(meter: Meter): IssuerMetrics {
  const tokens = meter.createCounter('hopguard.issuer.tokens', { description: 'POST /token answers by event (issuance, exchange, refresh) and outcome (ok or the OAuth error)' });
  const revocations = meter.createCounter('hopguard.issuer.revocations', { description: 'Revocations by source (revoke, refresh_reuse, security_event) and outcome' });
  const reuse = meter.createCounter('hopguard.issuer.refresh_token_reuse', { description: 'Refresh tokens presented a second time: each revoked its family' });
  const limited = meter.createCounter('hopguard.issuer.rate_limited', { description: 'POST /token requests refused 429 by the per-client rate limit' });
  const events = meter.createCounter('hopguard.issuer.security_events', { description: 'Security events received at /ssf/events by event type and outcome' });
  const rotations = meter.createCounter('hopguard.issuer.key_rotations', { description: 'Times a new signing key started signing' });
  // What the alert rules watch is present at 0 from the start: increase() misses a series that appears at 1.
  for (const event of ['issuance', 'exchange', 'refresh']) tokens.add(0, { event, outcome: 'ok' });
  for (const source of ['revoke', 'refresh_reuse', 'security_event']) revocations.add(0, { source, outcome: 'ok' });
  reuse.add(0);
  limited.add(0);
  rotations.add(0);
  for (const err of ['invalid_request', 'invalid_key', 'invalid_issuer', 'invalid_audience']) events.add(0, { event: 'unverified', outcome: err });
  events.add(0, { event: 'malformed', outcome: 'invalid_request' });
  return {
    recordToken: (event, outcome) => tokens.add(1, { event, outcome }),
    recordRevocation: (source, outcome) => revocations.add(1, { source, outcome }),
    recordRefreshReuse: () => reuse.add(1),
    recordRateLimited: () => limited.add(1),
    recordSecurityEvent: (event, outcome) => events.add(1, { event, outcome }),
    recordKeyRotation: () => rotations.add(1),
  };
}
