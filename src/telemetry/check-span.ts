import { randomFillSync } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { SpanKind, SpanStatusCode, trace, type Attributes, type Context, type TextMapGetter } from '@opentelemetry/api';
import type { Decision, Deny } from '../vocabulary/decision.js';
import { DENY_CODES } from '../vocabulary/deny-codes.js';
import type { HopRequest } from '../vocabulary/hop-request.js';
import { decisionFacts, type DecisionFacts } from './decision-facts.js';
import { incomingContext, mapGetter, type Tracing } from './tracing.js';

/** One check's trace: its id goes in a denial's body, `context` is the span's (for requests the check makes), and `end` closes it. */
export interface CheckSpan<D = Decision> {
  readonly traceId: string;
  readonly context?: Context;
  end(decision: D, request: HopRequest): void;
}

export type StartCheckSpan<D = Decision> = (metadata: Metadata, request: HopRequest) => CheckSpan<D>;

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (metadata) => Object.keys(metadata.getMap()),
  get: (metadata, key) => metadata.get(key).filter((value): value is string => typeof value === 'string'),
};

const RPC_ATTRIBUTES: Attributes = {
  'rpc.system': 'grpc',
  'rpc.service': 'envoy.service.auth.v3.Authorization',
  'rpc.method': 'Check',
};

const noEnd = () => undefined;

// Trace ids for checks without tracing come from a pool of random bytes refilled 256 ids at a
// time: randomBytes(16) per check is a call into OpenSSL's generator every time (~5 µs here).
const pool = Buffer.alloc(16 * 256);
let poolOffset = pool.length;

export function randomTraceId(): string {
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  poolOffset += 16;
  return pool.toString('hex', poolOffset - 16, poolOffset);
}

/** The trace a check belongs to, as Envoy passed it on (metadata, else the request's traceparent), else a fresh id. */
export function incomingTraceId(metadata: Metadata, request: HopRequest): string {
  const parent = trace.getSpanContext(incomingContext([metadata, metadataGetter], [request.headers, mapGetter]));
  return parent?.traceId ?? randomTraceId();
}

/**
 * A `hopguard.check` SERVER span per Check, child of the W3C context Envoy put in the gRPC
 * metadata (its ext_authz client span), else of the HTTP request's `traceparent`. With tracing
 * off nothing is created: the trace id is the incoming one, or a fresh one so that a denial's
 * `trace_id` always names something to search for.
 */
export function checkSpans(tracing: Tracing, audience: string): StartCheckSpan {
  return decisionSpans(tracing, 'hopguard.check', (decision, request) => spanAttributes(decisionFacts(decision, request), audience));
}

/**
 * A span named `name` per check of any listener (the inbound check, the outbound one), joined
 * to the incoming trace as checkSpans says; `attributes` describes the decision when it ends.
 */
export function decisionSpans<D extends { allowed: true } | Deny>(
  tracing: Tracing,
  name: string,
  attributes: (decision: D, request: HopRequest) => Attributes,
): StartCheckSpan<D> {
  if (!tracing.enabled) return (metadata, request) => ({ traceId: incomingTraceId(metadata, request), end: noEnd });
  return (metadata, request) => {
    const parent = incomingContext([metadata, metadataGetter], [request.headers, mapGetter]);
    const span = tracing.tracer.startSpan(name, { kind: SpanKind.SERVER, attributes: RPC_ATTRIBUTES }, parent);
    return {
      traceId: span.spanContext().traceId,
      context: trace.setSpan(parent, span),
      end(decision, finalRequest) {
        // A span the sampler dropped records nothing: skip building its attributes.
        if (span.isRecording()) {
          span.setAttributes(attributes(decision, finalRequest));
          // A denial is the check working; only a failure to decide is an error.
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

function spanAttributes(facts: DecisionFacts, audience: string): Attributes {
  return {
    'hopguard.decision': facts.decision,
    'hopguard.deny_code': facts.code,
    'hopguard.route': facts.route,
    'hopguard.issuer': facts.issuer,
    'hopguard.audience': audience,
    'hopguard.binding': facts.binding,
    'hopguard.caller': facts.caller,
    'hopguard.cache_hit': facts.cacheHit,
    'hopguard.token.fingerprint': facts.tokenFingerprint,
    'hopguard.condition': facts.condition,
    'hopguard.config.revision': facts.configRevision,
    'hopguard.leak': facts.leak,
    // Semantic conventions: a request header attribute is a string array.
    'http.request.header.x-request-id': facts.requestId === undefined ? undefined : [facts.requestId],
  };
}
