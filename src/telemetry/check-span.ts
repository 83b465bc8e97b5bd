import { randomFillSync } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { SpanKind, SpanStatusCode, trace, type Attributes, type TextMapGetter } from '@opentelemetry/api';
import type { Decision } from '../vocabulary/decision.js';
import { DENY_CODES } from '../vocabulary/deny-codes.js';
import type { HopRequest } from '../vocabulary/hop-request.js';
import { decisionFacts, type DecisionFacts } from './decision-facts.js';
import { incomingContext, mapGetter, type Tracing } from './tracing.js';

/** One check's trace: its id goes in a denial's body, and `end` closes the span. */
export interface CheckSpan {
  readonly traceId: string;
  end(decision: Decision, request: HopRequest): void;
}

export type StartCheckSpan = (metadata: Metadata, request: HopRequest) => CheckSpan;

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

function randomTraceId(): string {
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
  if (!tracing.enabled) return (metadata, request) => ({ traceId: incomingTraceId(metadata, request), end: noEnd });
  return (metadata, request) => {
    const parent = incomingContext([metadata, metadataGetter], [request.headers, mapGetter]);
    const span = tracing.tracer.startSpan('hopguard.check', { kind: SpanKind.SERVER, attributes: RPC_ATTRIBUTES }, parent);
    return {
      traceId: span.spanContext().traceId,
      end(decision, finalRequest) {
        // A span the sampler dropped records nothing: skip building its attributes.
        if (span.isRecording()) {
          span.setAttributes(spanAttributes(decisionFacts(decision, finalRequest), audience));
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
    // Semantic conventions: a request header attribute is a string array.
    'http.request.header.x-request-id': facts.requestId === undefined ? undefined : [facts.requestId],
  };
}
