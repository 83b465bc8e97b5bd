import type { IncomingMessage } from 'node:http';
import { SpanKind, SpanStatusCode, context as otelContext, defaultTextMapGetter, isSpanContextValid, type Tracer } from '@opentelemetry/api';
import type { AuditEvent } from '../audit/audit-event.js';
import type { AuditRecorder } from '../audit/audit-log.js';
import type { RevocationRecord } from '../store/store.js';
import { incomingContext } from '../telemetry/tracing.js';
import { OAuthError } from './oauth-error.js';
import type { IssuerMetrics } from '../telemetry/issuer-metrics.js';
import { FAMILY_REVOKED, RefreshTokenReused, TOKEN_EXCHANGE_GRANT, type IssuedToken } from './token-service.js';

/** What one /token or /revoke request came to; filled in as the request is served. */
export interface IssuerOutcome {
  caller?: string;
  /** The grant_type asked for, once the form is read. */
  grant?: string;
  issued?: IssuedToken;
  revoked?: RevocationRecord;
}

const EVENT_OF_GRANT: Record<IssuedToken['grant'], 'issuance' | 'exchange' | 'refresh'> = {
  client_credentials: 'issuance', token_exchange: 'exchange', refresh_token: 'refresh',
};

/**
 * A span (`hopguard.issuer.token` / `.revoke`, joined to the caller's traceparent) and an
 * audit record for every outcome, allowed or refused. Both carry identifiers only: client,
 * audience, subject, the token's fingerprint; never a token.
 */
export class IssuerEvents {
  constructor(
    private readonly tracer: Tracer, private readonly audit: AuditRecorder, private readonly issuer: string,
    private readonly metrics: IssuerMetrics,
  ) {}

  async observe<T>(kind: 'token' | 'revoke', req: IncomingMessage, run: (outcome: IssuerOutcome) => Promise<T>): Promise<T> {
    const parent = incomingContext([req.headers, defaultTextMapGetter]);
    const span = this.tracer.startSpan(`hopguard.issuer.${kind}`, { kind: SpanKind.SERVER }, parent);
    const spanContext = span.spanContext();
    const traceId = isSpanContextValid(spanContext) ? spanContext.traceId : undefined;
    const outcome: IssuerOutcome = {};
    try {
      const result = await otelContext.with(parent, () => run(outcome));
      this.finish(kind, span, outcome, undefined, traceId);
      return result;
    } catch (err) {
      if (err instanceof RefreshTokenReused) {
        this.metrics.recordRefreshReuse();
        this.metrics.recordRevocation('refresh_reuse', 'ok');
      }
      this.finish(kind, span, outcome, err instanceof OAuthError ? err.error : 'server_error', traceId);
      throw err;
    }
  }

  private finish(
    kind: 'token' | 'revoke', span: ReturnType<Tracer['startSpan']>, outcome: IssuerOutcome,
    code: string | undefined, traceId: string | undefined,
  ): void {
    const { issued, revoked, caller, grant } = outcome;
    span.setAttributes({
      'hopguard.decision': code === undefined ? 'allow' : 'deny',
      // The same names as the check spans (check-span.ts), so one query follows a token across both.
      ...(code !== undefined && { 'hopguard.deny_code': code }),
      ...(caller !== undefined && { 'hopguard.caller': caller }),
      ...(issued && { 'hopguard.grant': issued.grant, 'hopguard.audience': issued.audience, 'hopguard.token.fingerprint': issued.fingerprint }),
      ...(issued?.subjectIssuer !== undefined && { 'hopguard.subject_issuer': issued.subjectIssuer }),
      ...(issued?.destination !== undefined && { 'hopguard.token.type': 'message', 'hopguard.destination': issued.destination }),
      ...(revoked && { 'hopguard.revoked': revoked.revocation.kind }),
    });
    if (code !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: code });
    span.end();

    const common = { issuer: this.issuer, ...(caller !== undefined && { caller }), ...(traceId !== undefined && { traceId }) };
    let event: AuditEvent | undefined;
    if (kind === 'token') {
      this.metrics.recordToken(issued ? EVENT_OF_GRANT[issued.grant] : eventOfGrant(grant), code ?? 'ok');
      if (code === 'slow_down') this.metrics.recordRateLimited();
      event = issued
        ? {
          event: EVENT_OF_GRANT[issued.grant], decision: 'allow', ...common, audience: issued.audience, subject: issued.subject,
          client: issued.client, scope: issued.scope, actors: issued.actors, tokenFingerprint: issued.fingerprint,
          ...(issued.subjectIssuer !== undefined && { subjectIssuer: issued.subjectIssuer }),
          ...(issued.destination !== undefined && { destination: issued.destination }),
        }
        : { event: eventOfGrant(grant), decision: 'deny', code: code ?? 'server_error', ...common };
    } else if (revoked || code !== undefined) {
      this.metrics.recordRevocation('revoke', code ?? 'ok');
      const kindOf = revoked?.reason === FAMILY_REVOKED ? 'refresh_family' : revoked?.revocation.kind ?? 'jti';
      event = { event: 'revocation', revoked: kindOf, decision: code === undefined ? 'allow' : 'deny', ...(code !== undefined && { code }), ...common };
    }
    if (event) this.audit.record(event);
  }
}

/** The audit and metric event of a /token request by the grant_type asked for (issuance when unread or unknown). */
function eventOfGrant(grant: string | undefined): 'issuance' | 'exchange' | 'refresh' {
  return grant === TOKEN_EXCHANGE_GRANT ? 'exchange' : grant === 'refresh_token' ? 'refresh' : 'issuance';
}
