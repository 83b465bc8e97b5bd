import { SpanKind, SpanStatusCode, trace, type Context, type TextMapGetter } from '@opentelemetry/api';
import type { AuditRecorder } from '../audit/audit-log.js';
import type { AuditConfig } from '../audit/audit-config.js';
import { allowPolicy } from '../audit/validation-audit.js';
import { randomTraceId } from '../telemetry/check-span.js';
import { actors } from '../token/access-token-claims.js';
import type { MessagesMetrics } from '../telemetry/metrics.js';
import { incomingContext, type Tracing } from '../telemetry/tracing.js';
import { DENY_CODES } from '../vocabulary/deny-codes.js';
import type { CheckDecision } from './message-check.js';
import type { SealDecision } from './message-seal.js';

/**
 * What spans, metrics and audit records show of a seal or a check: operation, decision, code,
 * destination, audience, subject, the token's fingerprint. Never a token, a handle or a digest.
 */

export type Operation = 'seal' | 'check';
export type MessageDecision = SealDecision | CheckDecision;

export interface MessageSpan {
  readonly traceId: string;
  readonly context?: Context;
  end(decision: MessageDecision): void;
}

/** A carrier of W3C trace context: the HTTP request's headers, or the gRPC call's metadata as a map. */
export type TraceCarrier = Record<string, string | string[] | undefined>;

const carrierGetter: TextMapGetter<TraceCarrier> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** `hopguard.messages.seal` / `.check` SERVER spans, children of the caller's traceparent. */
export function messageSpans(tracing: Tracing, audience: string): (operation: Operation, carrier: TraceCarrier) => MessageSpan {
  if (!tracing.enabled) {
    return (_operation, carrier) => ({ traceId: trace.getSpanContext(incomingContext([carrier, carrierGetter]))?.traceId ?? randomTraceId(), end: () => undefined });
  }
  return (operation, carrier) => {
    const parent = incomingContext([carrier, carrierGetter]);
    const span = tracing.tracer.startSpan(`hopguard.messages.${operation}`, { kind: SpanKind.SERVER }, parent);
    return {
      traceId: span.spanContext().traceId,
      context: trace.setSpan(parent, span),
      end(decision) {
        if (span.isRecording()) {
          const facts = messageFacts(decision, audience);
          span.setAttributes({
            'hopguard.decision': facts.decision,
            'hopguard.deny_code': facts.code === 'allowed' ? undefined : facts.code,
            'hopguard.destination': facts.destination,
            'hopguard.audience': facts.audience,
            'hopguard.token.fingerprint': facts.tokenFingerprint,
            'hopguard.redelivered': facts.redelivered,
          });
          if (!decision.allowed && DENY_CODES[decision.code].http >= 500) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: decision.code });
            span.setAttribute('error.type', decision.code);
          }
        }
        span.end();
      },
    };
  };
}

export interface MessageFacts {
  decision: 'allow' | 'deny';
  code: string;
  /** The configured destination the request named; absent when it names none. */
  destination?: string;
  audience?: string;
  subject?: string;
  client?: string;
  scope?: string;
  /** The token's act chain, outermost (the producer) first. */
  actors?: string[];
  tokenFingerprint?: string;
  redelivered?: boolean;
}

/** `audience`: this service's, the audience of every token a check verifies. */
export function messageFacts(decision: MessageDecision, audience: string): MessageFacts {
  const code = decision.allowed ? 'allowed' : decision.code;
  const facts: MessageFacts = { decision: decision.allowed ? 'allow' : 'deny', code };
  if ('outgoing' in decision && decision.outgoing) {
    facts.destination = decision.outgoing.destination;
    facts.audience = decision.outgoing.audience;
    return facts;
  }
  if ('destination' in decision && decision.destination !== undefined) {
    facts.destination = decision.destination;
    facts.audience = audience;
  }
  const token = 'token' in decision ? decision.token : undefined;
  if (token && 'fingerprint' in token) {
    Object.assign(facts, { subject: token.sub, client: token.clientId, scope: token.scope, actors: actors(token.act), tokenFingerprint: token.fingerprint });
  }
  if (decision.allowed && 'redelivered' in decision) facts.redelivered = decision.redelivered;
  return facts;
}

export type RecordMessage = (operation: Operation, decision: MessageDecision, traceId: string, seconds: number) => void;

/**
 * Metrics for every answered seal and check; audit records for every denial, every seal (each
 * minted a token) and the check allows `audit.allows` keeps. With the audit log off, metrics only.
 */
export function messageRecorder(metrics: MessagesMetrics, audit: AuditRecorder, config: AuditConfig, audience: string): RecordMessage {
  const keepAllow = config.output ? allowPolicy(config) : () => false;
  return (operation, decision, traceId, seconds) => {
    const facts = messageFacts(decision, audience);
    metrics.recordDecision(operation, facts.code, facts.destination ?? '', seconds);
    if (!config.output) return;
    if (operation === 'check' && decision.allowed && !keepAllow(traceId)) return;
    const { decision: outcome, code, ...rest } = facts;
    audit.record({ event: operation === 'seal' ? 'message_seal' : 'message_check', decision: outcome, ...(outcome === 'deny' && { code }), ...rest, traceId });
  };
}
